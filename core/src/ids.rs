//! Identifiers: UUID checks and random v4 UUIDs from the entropy port, hex encoding.

use crate::error::ApiError;
use crate::ports::Entropy;
use crate::tenancy::TenantId;

/// A UUID in canonical hyphenated form (either case).
pub fn is_uuid(s: &str) -> bool {
    TenantId::parse(s).is_some()
}

/// A random (v4) UUID from the platform's entropy.
pub fn new_uuid<P: Entropy + ?Sized>(platform: &P) -> Result<String, ApiError> {
    let mut b = [0u8; 16];
    platform
        .fill(&mut b)
        .map_err(|e| ApiError::Upstream(format!("no randomness: {e}")))?;
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h = hex(&b);
    Ok(format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    ))
}

/// Lower-case hex.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ports::OutboundError;

    struct Fixed;
    impl Entropy for Fixed {
        fn fill(&self, buf: &mut [u8]) -> Result<(), OutboundError> {
            buf.fill(0xff);
            Ok(())
        }
    }

    #[test]
    fn random_uuids_are_version_4() {
        let id = new_uuid(&Fixed).unwrap();
        assert_eq!(id, "ffffffff-ffff-4fff-bfff-ffffffffffff");
        assert!(is_uuid(&id));
        assert!(!is_uuid("not-a-uuid"));
    }
}
