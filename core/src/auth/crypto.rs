//! Signature verification as a port, like rustls' `CryptoProvider`: an adapter may bring its
//! runtime's crypto (WebCrypto on Workers); [`RustCrypto`] is the pure-Rust default that runs
//! everywhere, using jwt-compact's RSA, P-256 and Ed25519 backends and the `p384` crate.
#![allow(async_fn_in_trait)]

#[cfg(feature = "rust-crypto")]
pub use rust::RustCrypto;

/// The pure-Rust provider (feature `rust-crypto`, on by default; the Workers build leaves it out
/// and uses WebCrypto, which keeps the RSA and elliptic-curve code out of its bundle).
#[cfg(feature = "rust-crypto")]
mod rust {
    use std::borrow::Cow;

    use jwt_compact::alg::{Ed25519, Es256, Rsa, RsaPublicKey, RsaSignature};
    use jwt_compact::jwk::JsonWebKey;
    use jwt_compact::{Algorithm as _, AlgorithmSignature};
    use p384::ecdsa::signature::Verifier as _;

    use crate::jwk::{Algorithm, Jwk, KeyError};
    use crate::ports::SignatureVerifier;

    /// Pure-Rust verification; works on the host, wasm32-unknown-unknown and wasm32-wasip2.
    #[derive(Debug, Clone, Copy, Default)]
    pub struct RustCrypto;

    type P256Key = <Es256 as jwt_compact::Algorithm>::VerifyingKey;
    type P256Sig = <Es256 as jwt_compact::Algorithm>::Signature;
    type Ed25519Key = <Ed25519 as jwt_compact::Algorithm>::VerifyingKey;
    type Ed25519Sig = <Ed25519 as jwt_compact::Algorithm>::Signature;

    fn unusable(what: &str) -> KeyError {
        KeyError::Unusable(format!("the {what} key cannot be decoded"))
    }

    impl SignatureVerifier for RustCrypto {
        async fn verify(
            &self,
            alg: Algorithm,
            jwk: &Jwk,
            signing_input: &[u8],
            signature: &[u8],
        ) -> Result<bool, KeyError> {
            Ok(match alg {
                Algorithm::RS256 | Algorithm::RS384 | Algorithm::RS512 => {
                    let key = JsonWebKey::Rsa {
                        modulus: Cow::Owned(jwk.member("n")?),
                        public_exponent: Cow::Owned(jwk.member("e")?),
                        private_parts: None,
                    };
                    let key = RsaPublicKey::try_from(&key).map_err(|_| unusable("RSA"))?;
                    let Ok(sig) = RsaSignature::try_from_slice(signature) else {
                        return Ok(false);
                    };
                    let rsa = match alg {
                        Algorithm::RS384 => Rsa::rs384(),
                        Algorithm::RS512 => Rsa::rs512(),
                        _ => Rsa::rs256(),
                    };
                    rsa.verify_signature(&sig, &key, signing_input)
                }
                Algorithm::ES256 => {
                    let key = JsonWebKey::EllipticCurve {
                        curve: Cow::Borrowed("P-256"),
                        x: Cow::Owned(jwk.member("x")?),
                        y: Cow::Owned(jwk.member("y")?),
                        secret: None,
                    };
                    let key = P256Key::try_from(&key).map_err(|_| unusable("P-256"))?;
                    let Ok(sig) = P256Sig::try_from_slice(signature) else {
                        return Ok(false);
                    };
                    Es256.verify_signature(&sig, &key, signing_input)
                }
                Algorithm::ES384 => {
                    // jwt-compact has no P-384 backend: SEC1 point from the JWK coordinates, and the
                    // JWS signature is the fixed-size r‖s form (RFC 7518 §3.4).
                    let (x, y) = (jwk.member("x")?, jwk.member("y")?);
                    if x.len() != 48 || y.len() != 48 {
                        return Err(unusable("P-384"));
                    }
                    let mut sec1 = Vec::with_capacity(97);
                    sec1.push(4);
                    sec1.extend_from_slice(&x);
                    sec1.extend_from_slice(&y);
                    let key = p384::ecdsa::VerifyingKey::from_sec1_bytes(&sec1)
                        .map_err(|_| unusable("P-384"))?;
                    let Ok(sig) = p384::ecdsa::Signature::from_slice(signature) else {
                        return Ok(false);
                    };
                    key.verify(signing_input, &sig).is_ok()
                }
                Algorithm::EdDSA => {
                    let key = JsonWebKey::KeyPair {
                        curve: Cow::Borrowed("Ed25519"),
                        x: Cow::Owned(jwk.member("x")?),
                        secret: None,
                    };
                    let key = Ed25519Key::try_from(&key).map_err(|_| unusable("Ed25519"))?;
                    let Ok(sig) = Ed25519Sig::try_from_slice(signature) else {
                        return Ok(false);
                    };
                    Ed25519.verify_signature(&sig, &key, signing_input)
                }
            })
        }
    }
}
