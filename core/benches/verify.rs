//! JWS signature verification per algorithm with the pure-Rust provider (Spin and native).
//! On Workers the WebCrypto provider is used instead; see the closing notes for its numbers.
#![allow(clippy::unwrap_used)] // Benchmark set-up, not a request path.
use base64ct::{Base64UrlUnpadded, Encoding};
use criterion::{criterion_group, criterion_main, Criterion};
use edgefront_core::auth::{Algorithm, Jwk, RustCrypto, SignatureVerifier};
use futures_executor::block_on;
use jwt_compact::alg::{Ed25519, Es256, Rsa, RsaPrivateKey, SigningKey as _};
use jwt_compact::jwk::JsonWebKey;
use jwt_compact::Algorithm as _;
use jwt_compact::AlgorithmSignature as _;
use rsa::pkcs1::DecodeRsaPrivateKey;
use serde_json::{json, Value};
use std::hint::black_box;

const INPUT: &[u8] =
    b"eyJhbGciOiJSUzI1NiIsImtpZCI6ImsifQ.eyJzdWIiOiJiZW5jaCIsImV4cCI6NDEwMjQ0NDgwMH0";

fn jwk(v: Value) -> Jwk {
    serde_json::from_value(v).unwrap_or_default()
}

fn cases() -> Vec<(&'static str, Algorithm, Jwk, Vec<u8>)> {
    let rsa = RsaPrivateKey::from_pkcs1_pem(include_str!("../src/auth/testdata/rsa1.pem")).unwrap();
    let rsa_jwk = jwk(serde_json::to_value(JsonWebKey::from(&rsa.to_public_key())).unwrap());
    let p256 = jwt_compact::alg::SigningKey::<Es256>::from_slice(&[0x11; 32]).unwrap();
    let p256_jwk = jwk(serde_json::to_value(JsonWebKey::from(&p256.to_verifying_key())).unwrap());
    let p384 = p384::ecdsa::SigningKey::from_slice(&[0x22; 48]).unwrap();
    let point = p384.verifying_key().to_encoded_point(false);
    let p384_jwk = jwk(json!({
        "kty": "EC", "crv": "P-384",
        "x": Base64UrlUnpadded::encode_string(point.x().unwrap()),
        "y": Base64UrlUnpadded::encode_string(point.y().unwrap()),
    }));
    let p384_sig: p384::ecdsa::Signature = p384::ecdsa::signature::Signer::sign(&p384, INPUT);
    let ed = jwt_compact::alg::SigningKey::<Ed25519>::from_slice(&[0x33; 32]).unwrap();
    let ed_jwk = jwk(serde_json::to_value(JsonWebKey::from(&ed.to_verifying_key())).unwrap());
    vec![
        (
            "RS256",
            Algorithm::RS256,
            rsa_jwk,
            Rsa::rs256().sign(&rsa, INPUT).as_bytes().to_vec(),
        ),
        (
            "ES256",
            Algorithm::ES256,
            p256_jwk,
            Es256.sign(&p256, INPUT).as_bytes().to_vec(),
        ),
        (
            "ES384",
            Algorithm::ES384,
            p384_jwk,
            p384_sig.to_bytes().to_vec(),
        ),
        (
            "EdDSA",
            Algorithm::EdDSA,
            ed_jwk,
            Ed25519.sign(&ed, INPUT).as_bytes().to_vec(),
        ),
    ]
}

fn verify(c: &mut Criterion) {
    let mut g = c.benchmark_group("verify_rust_crypto");
    for (name, alg, key, sig) in cases() {
        assert_eq!(
            block_on(RustCrypto.verify(alg, &key, INPUT, &sig)),
            Ok(true),
            "{name}"
        );
        g.bench_function(name, |b| {
            b.iter(|| block_on(RustCrypto.verify(alg, black_box(&key), INPUT, black_box(&sig))))
        });
    }
    g.finish();
}

criterion_group!(benches, verify);
criterion_main!(benches);
