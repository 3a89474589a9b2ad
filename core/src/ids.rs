//! Identifiers as newtypes that carry their invariant: [`Uuid`] (canonical lower-case
//! hyphenated text, the form Postgres prints) and [`TenantId`] (a tenant's UUID). Random v4
//! UUIDs come from the entropy port. A leaf module apart from that port.

use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::ports::{Entropy, OutboundError};

/// A UUID in canonical lower-case hyphenated form. Parsing accepts either case.
///
/// Shared, not owned: every request copies its tenant's and its caller's ids into the
/// contexts it builds, and a copy is a reference count, never an allocation. (Held in place as
/// `[u8; 36]` the copies were `memcpy`s, which cost the Worker 6 KiB gzip: BENCHMARKS.md,
/// change 56.)
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Uuid(Arc<str>);

impl Uuid {
    /// The canonical form of `s`, if it is a UUID in hyphenated form. Text already canonical
    /// (what Postgres prints, what we hand out) is shared as it is: one allocation. The 32
    /// digits are classed by a table, a load a byte (a catalog page reads two UUIDs an item).
    pub fn parse(s: &str) -> Option<Self> {
        let b = s.as_bytes();
        if b.len() != 36 || [8, 13, 18, 23].iter().any(|&i| b.get(i) != Some(&b'-')) {
            return None;
        }
        let mut class = 0u8;
        for range in [0..8, 9..13, 14..18, 19..23, 24..36] {
            for &c in b.get(range).unwrap_or_default() {
                class |= HEX_CLASS[usize::from(c)];
            }
        }
        if class & NOT_HEX != 0 {
            return None;
        }
        Some(Self(if class & UPPER != 0 {
            s.to_ascii_lowercase().into()
        } else {
            Arc::from(s)
        }))
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
        Ok(Self(
            format!(
                "{}-{}-{}-{}-{}",
                part(0..8),
                part(8..12),
                part(12..16),
                part(16..20),
                part(20..32)
            )
            .into(),
        ))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// [`Uuid::parse`]'s classes of a byte: a lower-case hex digit or a decimal digit is 0.
const UPPER: u8 = 1;
const NOT_HEX: u8 = 2;
const HEX_CLASS: [u8; 256] = {
    let mut t = [NOT_HEX; 256];
    let mut c = 0;
    while c < 256 {
        let b = c as u8;
        if b.is_ascii_digit() || matches!(b, b'a'..=b'f') {
            t[c] = 0;
        } else if matches!(b, b'A'..=b'F') {
            t[c] = UPPER;
        }
        c += 1;
    }
    t
};

impl TryFrom<String> for Uuid {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        Uuid::parse(&s).ok_or_else(|| format!("invalid UUID {s:?}"))
    }
}

impl From<Uuid> for String {
    fn from(u: Uuid) -> String {
        u.as_str().to_owned()
    }
}

/// Read from a string as [`Uuid::parse`] reads it, without first copying the text into a
/// `String` of its own (what `#[serde(try_from = "String")]` would do: a catalog page holds
/// two UUIDs an item).
impl<'de> Deserialize<'de> for Uuid {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Text;
        impl serde::de::Visitor<'_> for Text {
            type Value = Uuid;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a UUID")
            }
            fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<Uuid, E> {
                Uuid::parse(s).ok_or_else(|| E::custom(format!("invalid UUID {s:?}")))
            }
        }
        d.deserialize_str(Text)
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
        f.write_str(self.as_str())
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
        // Longer than the 32 bytes written at a time.
        let long: Vec<u8> = (0..=70).collect();
        let want: String = long.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(hex(&long), want);
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
        // Read from JSON as `parse` reads it: escaped text, upper case; not a string at all.
        let escaped: Uuid =
            serde_json::from_str(r#""\u0037d1f3f4e-1b2c-4d5e-8f90-0A1B2C3D4E5F""#).unwrap();
        assert_eq!(escaped.as_str(), "7d1f3f4e-1b2c-4d5e-8f90-0a1b2c3d4e5f");
        assert!(serde_json::from_str::<Uuid>("7").is_err());
        assert!(serde_json::from_str::<Uuid>("null").is_err());
    }

    #[test]
    fn a_uuid_is_its_text_shared_by_its_copies() {
        let text = "7d1f3f4e-1b2c-4d5e-8f90-0a1b2c3d4e5f";
        let id: Uuid = serde_json::from_str(&format!("\"{text}\"")).unwrap();
        let copy = id.clone();
        assert_eq!((id.as_str(), copy.as_str()), (text, text));
        assert_eq!(serde_json::to_string(&id).unwrap(), format!("\"{text}\""));
        assert_eq!(format!("{id:?}"), format!("Uuid({text:?})"));
        assert_eq!(String::from(id.clone()), text);
        // Wrong length, misplaced hyphens, non-hex and non-ASCII text are refused.
        for bad in [
            "",
            &text[1..],
            "7d1f3f4e1-b2c-4d5e-8f90-0a1b2c3d4e5f",
            "7d1f3f4e-1b2c-4d5e-8f90-0a1b2c3d4e5g",
            "7d1f3f4e-1b2c-4d5e-8f90-0a1b2c3d4eé",
            "7d1f3f4e-1b2c-4d5e-8f90-0a1b2c3d4e-f",
            "7d1f3f4e-1b2c-4d5e-8f90-0A1B2C3D4E5G",
            "7d1f3f4e 1b2c-4d5e-8f90-0a1b2c3d4e5f",
        ] {
            assert!(Uuid::parse(bad).is_none(), "{bad}");
        }
        // Ordered as their text.
        let low = Uuid::parse("00000000-0000-4000-8000-000000000001").unwrap();
        assert!(low < id && TenantId::parse(text).is_some_and(|t| t.as_str() == text));
    }
}
