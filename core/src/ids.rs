//! Identifiers as newtypes that carry their invariant: [`Uuid`] (canonical lower-case
//! hyphenated text, the form Postgres prints) and [`TenantId`] (a tenant's UUID). Random v4
//! UUIDs come from the entropy port. A leaf module apart from that port.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::ports::{Entropy, OutboundError};

/// A UUID in canonical lower-case hyphenated form. Parsing accepts either case.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Deserialize)]
#[serde(try_from = "String")]
pub struct Uuid(String);

impl Uuid {
    pub fn parse(s: &str) -> Option<Self> {
        let b = s.as_bytes();
        let valid = b.len() == 36
            && b.iter().enumerate().all(|(i, c)| match i {
                8 | 13 | 18 | 23 => *c == b'-',
                _ => c.is_ascii_hexdigit(),
            });
        valid.then(|| Self(s.to_ascii_lowercase()))
    }

    /// A random (v4) UUID from the platform's entropy.
    pub fn random<P: Entropy + ?Sized>(platform: &P) -> Result<Self, OutboundError> {
        let mut b = [0u8; 16];
        platform
            .fill(&mut b)
            .map_err(|e| OutboundError::Invalid(format!("no randomness: {e}")))?;
        b[6] = (b[6] & 0x0f) | 0x40;
        b[8] = (b[8] & 0x3f) | 0x80;
        let h = hex(&b);
        let part = |r: std::ops::Range<usize>| h.get(r).unwrap_or_default();
        Ok(Self(format!(
            "{}-{}-{}-{}-{}",
            part(0..8),
            part(8..12),
            part(12..16),
            part(16..20),
            part(20..32)
        )))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for Uuid {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        Uuid::parse(&s).ok_or_else(|| format!("invalid UUID {s:?}"))
    }
}

impl From<Uuid> for String {
    fn from(u: Uuid) -> String {
        u.0
    }
}

/// Serialized as its text, without the copy `#[serde(into = "String")]` would make.
impl Serialize for Uuid {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl fmt::Display for Uuid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A tenant id: a UUID in canonical lower-case hyphenated form.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Deserialize)]
#[serde(try_from = "String")]
pub struct TenantId(Uuid);

impl TenantId {
    pub fn parse(s: &str) -> Option<Self> {
        Uuid::parse(s).map(Self)
    }

    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }
}

impl TryFrom<String> for TenantId {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        TenantId::parse(&s).ok_or_else(|| format!("invalid tenant id {s:?}"))
    }
}

impl From<TenantId> for String {
    fn from(t: TenantId) -> String {
        t.0.into()
    }
}

/// Serialized as its text, without the copy `#[serde(into = "String")]` would make.
impl Serialize for TenantId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl fmt::Display for TenantId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Our id for a person (`users.id`): one per (issuer, subject), whatever tenants they belong to.
/// Everything that records who did something keys them by this, never by a token's `sub`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct UserId(pub Uuid);

impl UserId {
    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }
}

impl fmt::Display for UserId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A UUID in canonical hyphenated form (either case).
pub fn is_uuid(s: &str) -> bool {
    Uuid::parse(s).is_some()
}

/// Lower-case hex, two digits a byte (one implementation: [`crate::obs::hex`]).
pub use crate::obs::{hex, hex_into};

#[cfg(test)]
mod tests {
    use super::*;

    use crate::testing::TestPlatform;

    #[test]
    fn hex_is_lower_case_two_digits_a_byte() {
        assert_eq!(hex(&[0x00, 0x0f, 0xa5, 0xff]), "000fa5ff");
        assert_eq!(hex(&[]), "");
    }

    #[test]
    fn random_uuids_are_version_4() {
        // All-ones randomness: the version and variant bits are forced over it.
        let p = TestPlatform::new(Box::new(|_| Err(OutboundError::Network("offline".into()))));
        p.entropy.set(0xff);
        let id = Uuid::random(&p).unwrap();
        assert_eq!(id.as_str(), "ffffffff-ffff-4fff-bfff-ffffffffffff");
        assert!(is_uuid(id.as_str()));
        assert!(!is_uuid("not-a-uuid"));
    }

    #[test]
    fn uuids_are_canonical_lower_case() {
        assert_eq!(
            Uuid::parse("00000000-0000-4000-8000-00000000AC3E")
                .unwrap()
                .as_str(),
            "00000000-0000-4000-8000-00000000ac3e"
        );
        assert!(serde_json::from_str::<Uuid>("\"x\"").is_err());
    }
}
