//! JSON Web Keys as issuers publish them, the six JWS algorithms the edge accepts, and the rule
//! that ties them together: a key is only ever used with the algorithm its type allows.
//! A leaf module: the verifier port (`ports::SignatureVerifier`) speaks these types.

use std::fmt;

use base64ct::{Base64UrlUnpadded, Encoding};
use serde::{Deserialize, Serialize};

/// Why a key cannot verify a token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyError {
    /// The token's algorithm is not one this key's type allows.
    AlgorithmMismatch,
    /// The key itself is unusable (RSA under 2048 bits, bad coordinates, bad encoding).
    Unusable(String),
}

/// The asymmetric JWS algorithms the edge verifies. Everything else — `none`, the HMAC family
/// (whose "secret" an attacker could set to a published public key), PS* — is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Algorithm {
    RS256,
    RS384,
    RS512,
    ES256,
    ES384,
    EdDSA,
}

impl Algorithm {
    /// Exact, case-sensitive match on the JOSE name (RFC 7518 names are case-sensitive).
    pub fn from_name(name: &str) -> Option<Self> {
        Some(match name {
            "RS256" => Self::RS256,
            "RS384" => Self::RS384,
            "RS512" => Self::RS512,
            "ES256" => Self::ES256,
            "ES384" => Self::ES384,
            "EdDSA" => Self::EdDSA,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::RS256 => "RS256",
            Self::RS384 => "RS384",
            Self::RS512 => "RS512",
            Self::ES256 => "ES256",
            Self::ES384 => "ES384",
            Self::EdDSA => "EdDSA",
        }
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One public key of a JWKS (RFC 7517). Binary members stay base64url text, decoded when used.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Jwk {
    #[serde(default)]
    pub kty: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kid: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alg: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub crv: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub n: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub e: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub x: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub y: Option<String>,
    #[serde(rename = "use", default, skip_serializing_if = "Option::is_none")]
    pub use_: Option<String>,
}

/// A JSON Web Key Set.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Jwks {
    pub keys: Vec<Jwk>,
}

impl Jwks {
    /// The first key with this `kid`.
    pub fn find(&self, kid: &str) -> Option<&Jwk> {
        self.keys.iter().find(|k| k.kid.as_deref() == Some(kid))
    }
}

pub(crate) const MIN_RSA_BITS: u64 = 2048;

impl Jwk {
    /// Decodes a base64url member, naming it if absent or malformed.
    pub fn member(&self, name: &'static str) -> Result<Vec<u8>, KeyError> {
        let v = match name {
            "n" => &self.n,
            "e" => &self.e,
            "x" => &self.x,
            "y" => &self.y,
            _ => &None,
        };
        let v = v
            .as_deref()
            .ok_or_else(|| KeyError::Unusable(format!("the key has no `{name}`")))?;
        Base64UrlUnpadded::decode_vec(v)
            .map_err(|_| KeyError::Unusable(format!("the key's `{name}` is not base64url")))
    }

    /// Refuses to use this key with `alg` unless its type, curve and declared algorithm all agree,
    /// and refuses RSA keys shorter than 2048 bits. Runs before any signature check.
    pub fn check_usable_with(&self, alg: Algorithm) -> Result<(), KeyError> {
        let (kty, crv) = match alg {
            Algorithm::RS256 | Algorithm::RS384 | Algorithm::RS512 => ("RSA", None),
            Algorithm::ES256 => ("EC", Some("P-256")),
            Algorithm::ES384 => ("EC", Some("P-384")),
            Algorithm::EdDSA => ("OKP", Some("Ed25519")),
        };
        if self.kty != kty {
            return Err(KeyError::AlgorithmMismatch);
        }
        if crv.is_some() && self.crv.as_deref() != crv {
            return Err(KeyError::AlgorithmMismatch);
        }
        if self.alg.as_deref().is_some_and(|a| a != alg.name()) {
            return Err(KeyError::AlgorithmMismatch);
        }
        // An encryption key must not verify signatures (RFC 7517 §4.2).
        if self.use_.as_deref().is_some_and(|u| u != "sig") {
            return Err(KeyError::AlgorithmMismatch);
        }
        if kty == "RSA" {
            let n = self.member("n")?;
            let bits = modulus_bits(&n);
            if bits < MIN_RSA_BITS {
                return Err(KeyError::Unusable(format!(
                    "RSA key of {bits} bits; at least {MIN_RSA_BITS} are required"
                )));
            }
        }
        Ok(())
    }
}

fn modulus_bits(n: &[u8]) -> u64 {
    let mut bytes = n.iter().skip_while(|b| **b == 0);
    match bytes.next() {
        None => 0,
        Some(first) => {
            let rest = u64::try_from(bytes.count()).unwrap_or(u64::MAX);
            rest.saturating_mul(8)
                .saturating_add(u64::from(8 - first.leading_zeros()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(kty: &str, crv: Option<&str>, alg: Option<&str>) -> Jwk {
        Jwk {
            kty: kty.into(),
            crv: crv.map(Into::into),
            alg: alg.map(Into::into),
            n: Some(Base64UrlUnpadded::encode_string(&[0xff; 256])),
            e: Some("AQAB".into()),
            ..Jwk::default()
        }
    }

    #[test]
    fn only_the_six_algorithms_parse() {
        for a in ["RS256", "RS384", "RS512", "ES256", "ES384", "EdDSA"] {
            assert_eq!(Algorithm::from_name(a).unwrap().name(), a);
        }
        for a in [
            "none", "None", "HS256", "HS384", "HS512", "PS256", "rs256", "ES256K", "",
        ] {
            assert!(Algorithm::from_name(a).is_none(), "{a}");
        }
    }

    #[test]
    fn key_type_curve_and_alg_must_agree() {
        assert!(key("RSA", None, Some("RS256"))
            .check_usable_with(Algorithm::RS256)
            .is_ok());
        assert!(key("RSA", None, None)
            .check_usable_with(Algorithm::RS512)
            .is_ok());
        for (k, alg) in [
            (key("RSA", None, Some("RS256")), Algorithm::RS384),
            (key("RSA", None, None), Algorithm::ES256),
            (key("EC", Some("P-256"), None), Algorithm::ES384),
            (key("EC", Some("P-384"), None), Algorithm::ES256),
            (key("EC", Some("P-256"), None), Algorithm::RS256),
            (key("OKP", Some("X25519"), None), Algorithm::EdDSA),
            (key("oct", None, None), Algorithm::RS256),
        ] {
            assert_eq!(
                k.check_usable_with(alg),
                Err(KeyError::AlgorithmMismatch),
                "{k:?} {alg}"
            );
        }
        let mut enc = key("RSA", None, None);
        enc.use_ = Some("enc".into());
        assert_eq!(
            enc.check_usable_with(Algorithm::RS256),
            Err(KeyError::AlgorithmMismatch)
        );
    }

    #[test]
    fn short_rsa_keys_are_unusable() {
        let mut k = key("RSA", None, None);
        let mut n = vec![0u8; 1];
        n.extend([0x7f; 256]); // leading zero byte, then 2047 bits
        k.n = Some(Base64UrlUnpadded::encode_string(&n));
        assert!(matches!(
            k.check_usable_with(Algorithm::RS256),
            Err(KeyError::Unusable(_))
        ));
        assert_eq!(modulus_bits(&[0x01, 0, 0]), 17);
        assert_eq!(modulus_bits(&[]), 0);
    }
}
