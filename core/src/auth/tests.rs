//! Authenticator tests with an in-process platform: a JWKS endpoint that counts fetches and can
//! fail or hang, an in-memory key-value store and a clock the test moves. Tokens are signed here
//! with fixed test keys.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64ct::{Base64UrlUnpadded, Encoding};
use bytes::Bytes;
use futures_executor::block_on;
use futures_util::future::join_all;
use http::Response;
use jwt_compact::alg::{Ed25519, Es256, Hs256, Hs256Key, Rsa, RsaPrivateKey, SigningKey as _};
use jwt_compact::jwk::JsonWebKey;
use jwt_compact::{Algorithm as _, AlgorithmSignature as _};
use p384::ecdsa::signature::Signer as _;
use rsa::pkcs1::DecodeRsaPrivateKey as _;
use serde_json::{json, Value};

use super::*;
use crate::ports::*;
use crate::testing::TestPlatform;

const POOL: &str = "https://cognito-idp.us-east-1.amazonaws.com/us-east-1_Abc";
const JWKS_URL: &str =
    "https://cognito-idp.us-east-1.amazonaws.com/us-east-1_Abc/.well-known/jwks.json";
const OTHER: &str = "https://kc.example/realms/acme";
const OTHER_JWKS: &str = "https://kc.example/realms/acme/certs";
const T0: u64 = 1_700_000_000;

// ---------------------------------------------------------------- fake platform

#[derive(Clone, Copy, PartialEq, Eq)]
enum Endpoint {
    Up,
    Down,
    Hang,
}

/// The shared test platform, answering JWKS requests from `jwks` while `endpoint` is up.
struct Fake {
    platform: TestPlatform,
    jwks: Rc<RefCell<HashMap<String, Value>>>,
    endpoint: Rc<Cell<Endpoint>>,
}

impl std::ops::Deref for Fake {
    type Target = TestPlatform;
    fn deref(&self) -> &TestPlatform {
        &self.platform
    }
}

impl Fake {
    fn new() -> Self {
        let jwks: Rc<RefCell<HashMap<String, Value>>> = Rc::default();
        let endpoint = Rc::new(Cell::new(Endpoint::Up));
        let (keys, up) = (jwks.clone(), endpoint.clone());
        let platform = TestPlatform::new(Box::new(move |req| match up.get() {
            Endpoint::Hang => Err(OutboundError::Timeout(Duration::ZERO)),
            Endpoint::Down => Ok(Response::builder()
                .status(503)
                .body(Bytes::from_static(b"down"))
                .unwrap()),
            Endpoint::Up => match keys.borrow().get(&req.uri().to_string()) {
                Some(v) => Ok(Response::new(Bytes::from(v.to_string()))),
                None => Ok(Response::builder().status(404).body(Bytes::new()).unwrap()),
            },
        }))
        .with_kv();
        Self {
            platform,
            jwks,
            endpoint,
        }
    }

    /// JWKS requests sent so far.
    fn fetches(&self) -> usize {
        self.platform.count(None)
    }

    fn secs(&self) -> i64 {
        i64::try_from(self.now().duration_since(UNIX_EPOCH).unwrap().as_secs()).unwrap()
    }

    fn serve(&self, url: &str, keys: Vec<Value>) {
        self.jwks
            .borrow_mut()
            .insert(url.to_owned(), json!({ "keys": keys }));
    }
}

// ---------------------------------------------------------------- keys and tokens

enum Key {
    Rsa(RsaPrivateKey),
    P256(<Es256 as jwt_compact::Algorithm>::SigningKey),
    P384(p384::ecdsa::SigningKey),
    Ed(<Ed25519 as jwt_compact::Algorithm>::SigningKey),
}

fn rsa1() -> Key {
    Key::Rsa(RsaPrivateKey::from_pkcs1_pem(include_str!("testdata/rsa1.pem")).unwrap())
}
fn rsa2() -> Key {
    Key::Rsa(RsaPrivateKey::from_pkcs1_pem(include_str!("testdata/rsa2.pem")).unwrap())
}
fn p256() -> Key {
    Key::P256(jwt_compact::alg::SigningKey::<Es256>::from_slice(&[0x11; 32]).unwrap())
}
fn p384() -> Key {
    Key::P384(p384::ecdsa::SigningKey::from_slice(&[0x22; 48]).unwrap())
}
fn ed() -> Key {
    Key::Ed(jwt_compact::alg::SigningKey::<Ed25519>::from_slice(&[0x33; 32]).unwrap())
}

/// The public JWK for `key`, with `kid` and optionally `alg`.
fn public(key: &Key, kid: &str, alg: Option<&str>) -> Value {
    let mut v = match key {
        Key::Rsa(k) => serde_json::to_value(JsonWebKey::from(&k.to_public_key())).unwrap(),
        Key::P256(k) => serde_json::to_value(JsonWebKey::from(&k.to_verifying_key())).unwrap(),
        Key::P384(k) => {
            let point = k.verifying_key().to_encoded_point(false);
            json!({
                "kty": "EC", "crv": "P-384",
                "x": Base64UrlUnpadded::encode_string(point.x().unwrap()),
                "y": Base64UrlUnpadded::encode_string(point.y().unwrap()),
            })
        }
        Key::Ed(k) => serde_json::to_value(JsonWebKey::from(&k.to_verifying_key())).unwrap(),
    };
    v["kid"] = json!(kid);
    if let Some(alg) = alg {
        v["alg"] = json!(alg);
    }
    v["use"] = json!("sig");
    v
}

fn b64(v: &Value) -> String {
    Base64UrlUnpadded::encode_string(v.to_string().as_bytes())
}

fn sign(key: &Key, alg: &str, input: &[u8]) -> Vec<u8> {
    match key {
        Key::Rsa(k) => {
            let rsa = match alg {
                "RS384" => Rsa::rs384(),
                "RS512" => Rsa::rs512(),
                _ => Rsa::rs256(),
            };
            rsa.sign(k, input).as_bytes().to_vec()
        }
        Key::P256(k) => Es256.sign(k, input).as_bytes().to_vec(),
        Key::P384(k) => {
            let sig: p384::ecdsa::Signature = k.sign(input);
            sig.to_bytes().to_vec()
        }
        Key::Ed(k) => Ed25519.sign(k, input).as_bytes().to_vec(),
    }
}

fn token_with_header(key: &Key, header: &Value, claims: &Value) -> String {
    let alg = header["alg"].as_str().unwrap_or_default();
    let input = format!("{}.{}", b64(header), b64(claims));
    let sig = sign(key, alg, input.as_bytes());
    format!("{input}.{}", Base64UrlUnpadded::encode_string(&sig))
}

fn token(key: &Key, alg: &str, kid: &str, claims: &Value) -> String {
    token_with_header(
        key,
        &json!({ "alg": alg, "kid": kid, "typ": "JWT" }),
        claims,
    )
}

/// A Cognito ID token's claims, valid for an hour from the fake clock's now.
fn id_claims(p: &Fake) -> Value {
    let now = p.secs();
    json!({
        "iss": POOL, "sub": "user-1", "aud": "client-a", "token_use": "id",
        "iat": now, "exp": now + 3600, "auth_time": now,
        "cognito:username": "alice", "email": "alice@example.com",
        "custom:tenant_id": "acme", "custom:tenant_tier": "pro",
        "cognito:groups": ["admin", "tenant-acme"], "custom:role": "editor",
    })
}

fn access_claims(p: &Fake) -> Value {
    let now = p.secs();
    json!({
        "iss": POOL, "sub": "user-1", "client_id": "client-a", "token_use": "access",
        "iat": now, "exp": now + 3600, "scope": "aws.cognito.signin.user.admin",
        "cognito:groups": ["admin"],
    })
}

fn config() -> AuthConfig {
    AuthConfig::from_json(
        &format!(
            r#"[{{"issuer":"{POOL}","client_ids":["client-a"],"token_use":["id","access"],"platform_admin":true}},
                {{"issuer":"{OTHER}","jwks_url":"{OTHER_JWKS}","client_ids":["api://acme"],"token_use":["absent"],"leeway_seconds":0}}]"#
        ),
        None,
    )
    .unwrap()
}

/// A platform serving the pool's keys: RSA (as Cognito publishes it, `alg` RS256, plus the same
/// key without `alg`), P-256, P-384 and Ed25519.
fn setup() -> (Fake, Authenticator) {
    let p = Fake::new();
    p.serve(
        JWKS_URL,
        vec![
            public(&rsa1(), "rsa1", Some("RS256")),
            public(&rsa1(), "rsa1-any", None),
            public(&p256(), "ec256", Some("ES256")),
            public(&p384(), "ec384", Some("ES384")),
            public(&ed(), "ed1", Some("EdDSA")),
        ],
    );
    p.serve(OTHER_JWKS, vec![public(&p256(), "kc1", None)]);
    (p, Authenticator::new(config()))
}

fn run(p: &Fake, a: &Authenticator, token: &str) -> Result<Principal, AuthError> {
    block_on(a.authenticate(
        &p.platform,
        &RustCrypto,
        Some(format!("Bearer {token}").as_bytes()),
    ))
    .map(Rc::unwrap_or_clone)
}

fn run_header(p: &Fake, a: &Authenticator, header: Option<&str>) -> Result<Principal, AuthError> {
    block_on(a.authenticate(&p.platform, &RustCrypto, header.map(str::as_bytes)))
        .map(Rc::unwrap_or_clone)
}

// ---------------------------------------------------------------- happy paths

#[test]
fn cognito_id_token_yields_a_principal() {
    let (p, a) = setup();
    let principal = run(&p, &a, &token(&rsa1(), "RS256", "rsa1", &id_claims(&p))).unwrap();
    assert_eq!(
        principal,
        Principal {
            subject: "user-1".into(),
            email: Some("alice@example.com".into()),
            email_verified: false,
            name: Some("alice".into()),
            tenant_id: Some("acme".into()),
            roles: vec!["admin".into(), "tenant-acme".into(), "editor".into()],
            tier: Some("pro".into()),
            issuer: POOL.into(),
            token_use: Some("id".into()),
            expires_at: T0 + 3600,
            platform_admin_issuer: true,
            membership: MembershipMode::Membership,
            kept_user_key: Default::default(),
        }
    );
    assert_eq!(p.fetches(), 1);
}

#[test]
fn every_supported_algorithm_verifies() {
    let (p, a) = setup();
    for (key, alg, kid) in [
        (rsa1(), "RS256", "rsa1"),
        (rsa1(), "RS256", "rsa1-any"),
        (rsa1(), "RS384", "rsa1-any"),
        (rsa1(), "RS512", "rsa1-any"),
        (p256(), "ES256", "ec256"),
        (p384(), "ES384", "ec384"),
        (ed(), "EdDSA", "ed1"),
    ] {
        let t = token(&key, alg, kid, &id_claims(&p));
        assert!(
            run(&p, &a, &t).is_ok(),
            "{alg} {kid}: {:?}",
            run(&p, &a, &t)
        );
    }
    assert_eq!(p.fetches(), 1, "one JWKS fetch serves every key");
}

#[test]
fn access_tokens_are_checked_against_client_id() {
    let (p, a) = setup();
    let principal = run(&p, &a, &token(&rsa1(), "RS256", "rsa1", &access_claims(&p))).unwrap();
    assert_eq!(principal.token_use.as_deref(), Some("access"));
    assert_eq!(principal.tenant_id, None);
    assert_eq!(principal.roles, vec!["admin"]);

    let mut c = access_claims(&p);
    c["client_id"] = json!("client-b");
    let t = token(&rsa1(), "RS256", "rsa1", &c);
    assert_eq!(run(&p, &a, &t), Err(AuthError::WrongAudience));

    // An access token's `aud` is not its audience: Cognito puts the client in `client_id`.
    let mut c = access_claims(&p);
    c.as_object_mut().unwrap().remove("client_id");
    c["aud"] = json!("client-a");
    let t = token(&rsa1(), "RS256", "rsa1", &c);
    assert_eq!(run(&p, &a, &t), Err(AuthError::WrongAudience));
}

#[test]
fn id_tokens_are_checked_against_aud_string_or_array() {
    let (p, a) = setup();
    for (aud, ok) in [
        (json!("client-b"), false),
        (json!(["client-b", "client-a"]), true),
        (json!([]), false),
        (json!(null), false),
        (json!(7), false),
    ] {
        let mut c = id_claims(&p);
        c["aud"] = aud.clone();
        let got = run(&p, &a, &token(&rsa1(), "RS256", "rsa1", &c));
        if ok {
            assert!(got.is_ok(), "{aud}: {got:?}");
        } else {
            assert_eq!(got, Err(AuthError::WrongAudience), "{aud}");
        }
    }
}

#[test]
fn token_use_must_be_allowed_by_the_issuer() {
    let (p, a) = setup();
    for tu in [json!("refresh"), json!(["id"]), json!(1)] {
        let mut c = id_claims(&p);
        c["token_use"] = tu;
        let t = token(&rsa1(), "RS256", "rsa1", &c);
        assert_eq!(run(&p, &a, &t), Err(AuthError::WrongTokenUse));
    }
    // The Cognito issuer does not list `absent`: a token without token_use is refused.
    let mut c = id_claims(&p);
    c.as_object_mut().unwrap().remove("token_use");
    let t = token(&rsa1(), "RS256", "rsa1", &c);
    assert_eq!(run(&p, &a, &t), Err(AuthError::WrongTokenUse));

    // An issuer accepting only access tokens refuses ID tokens.
    let mut cfg = config();
    cfg.issuers[0].token_use = vec![TokenUse::Access];
    let a = Authenticator::new(cfg);
    let t = token(&rsa1(), "RS256", "rsa1", &id_claims(&p));
    assert_eq!(run(&p, &a, &t), Err(AuthError::WrongTokenUse));
}

#[test]
fn non_cognito_issuer_uses_aud_and_configured_claim_paths() {
    let p = Fake::new();
    p.serve(OTHER_JWKS, vec![public(&p256(), "kc1", None)]);
    let mut cfg = config();
    cfg.claims = serde_json::from_str(
        r#"{"tenant":["custom:tenant_id","org_id"],"roles":["realm_access.roles","https://acme.example/roles"]}"#,
    )
    .unwrap();
    let a = Authenticator::new(cfg);
    let now = p.secs();
    let claims = json!({
        "iss": OTHER, "sub": 42, "aud": ["api://acme", "account"], "exp": now + 60,
        "org_id": "org-7", "realm_access": {"roles": ["viewer", "admin"]},
        "https://acme.example/roles": "admin",
    });
    let principal = run(&p, &a, &token(&p256(), "ES256", "kc1", &claims)).unwrap();
    assert_eq!(principal.subject, "42");
    assert_eq!(principal.tenant_id.as_deref(), Some("org-7"));
    assert_eq!(principal.roles, vec!["viewer", "admin"]);
    assert_eq!(principal.token_use, None);
    assert!(!principal.platform_admin_issuer);

    // The same issuer refuses Cognito-labelled tokens and other audiences.
    let mut c = claims.clone();
    c["token_use"] = json!("access");
    assert_eq!(
        run(&p, &a, &token(&p256(), "ES256", "kc1", &c)),
        Err(AuthError::WrongTokenUse)
    );
    let mut c = claims;
    c["aud"] = json!("api://other");
    assert_eq!(
        run(&p, &a, &token(&p256(), "ES256", "kc1", &c)),
        Err(AuthError::WrongAudience)
    );
}

#[test]
fn tenant_falls_back_to_org_id_and_roles_merge_without_duplicates() {
    let (p, a) = setup();
    let mut c = id_claims(&p);
    let o = c.as_object_mut().unwrap();
    o.remove("custom:tenant_id");
    o.insert("org_id".into(), json!("org-9"));
    o.insert("custom:role".into(), json!("admin"));
    let principal = run(&p, &a, &token(&rsa1(), "RS256", "rsa1", &c)).unwrap();
    assert_eq!(principal.tenant_id.as_deref(), Some("org-9"));
    assert_eq!(principal.roles, vec!["admin", "tenant-acme"]);

    let mut c = id_claims(&p);
    let o = c.as_object_mut().unwrap();
    o.remove("cognito:groups");
    o.remove("custom:tenant_tier");
    let principal = run(&p, &a, &token(&rsa1(), "RS256", "rsa1", &c)).unwrap();
    assert_eq!(principal.roles, vec!["editor"]);
    assert_eq!(principal.tier, None);
}

// ---------------------------------------------------------------- time

#[test]
fn expiry_maturity_and_issuance_honour_the_leeway() {
    let (p, a) = setup();
    let now = p.secs();
    for (claim, value, want) in [
        ("exp", now - 61, Err(AuthError::Expired)),
        ("exp", now - 59, Ok(())),
        ("nbf", now + 61, Err(AuthError::NotYetValid)),
        ("nbf", now + 59, Ok(())),
        ("iat", now + 61, Err(AuthError::IssuedInFuture)),
        ("iat", now + 59, Ok(())),
    ] {
        let mut c = id_claims(&p);
        c[claim] = json!(value);
        let got = run(&p, &a, &token(&rsa1(), "RS256", "rsa1", &c)).map(|_| ());
        assert_eq!(got, want, "{claim} = now {:+}", value - now);
    }
    let mut c = id_claims(&p);
    c.as_object_mut().unwrap().remove("exp");
    assert_eq!(
        run(&p, &a, &token(&rsa1(), "RS256", "rsa1", &c)),
        Err(AuthError::MissingClaim("exp"))
    );
    let mut c = id_claims(&p);
    c["exp"] = json!("tomorrow");
    assert_eq!(
        run(&p, &a, &token(&rsa1(), "RS256", "rsa1", &c)),
        Err(AuthError::Malformed)
    );
}

#[test]
fn a_token_expires_as_the_clock_moves() {
    let (p, a) = setup();
    let t = token(&rsa1(), "RS256", "rsa1", &id_claims(&p));
    assert!(run(&p, &a, &t).is_ok());
    p.advance(3600 + 60);
    assert!(run(&p, &a, &t).is_ok(), "still inside the leeway");
    p.advance(1);
    assert_eq!(run(&p, &a, &t), Err(AuthError::Expired));
}

// ---------------------------------------------------------------- refusals before trust

#[test]
fn unknown_issuer_is_refused_without_fetching() {
    let (p, a) = setup();
    let mut c = id_claims(&p);
    c["iss"] = json!("https://cognito-idp.us-east-1.amazonaws.com/us-east-1_Evil");
    assert_eq!(
        run(&p, &a, &token(&rsa1(), "RS256", "rsa1", &c)),
        Err(AuthError::WrongIssuer)
    );
    let mut c = id_claims(&p);
    c["iss"] = json!(format!("{POOL}/"));
    assert_eq!(
        run(&p, &a, &token(&rsa1(), "RS256", "rsa1", &c)),
        Err(AuthError::WrongIssuer)
    );
    assert_eq!(p.fetches(), 0);
}

#[test]
fn alg_none_and_hmac_with_the_public_key_are_refused() {
    let (p, a) = setup();
    let claims = id_claims(&p);
    let none = format!(
        "{}.{}.{}",
        b64(&json!({"alg": "none", "kid": "rsa1"})),
        b64(&claims),
        "c2ln"
    );
    assert_eq!(run(&p, &a, &none), Err(AuthError::UnsupportedAlgorithm));
    let unsigned = format!(
        "{}.{}.",
        b64(&json!({"alg": "none", "kid": "rsa1"})),
        b64(&claims)
    );
    assert_eq!(run(&p, &a, &unsigned), Err(AuthError::UnsupportedAlgorithm));
    // A supported algorithm with no signature at all is malformed, not merely a bad signature.
    let empty_sig = format!(
        "{}.{}.",
        b64(&json!({"alg": "RS256", "kid": "rsa1"})),
        b64(&claims)
    );
    assert_eq!(run(&p, &a, &empty_sig), Err(AuthError::Malformed));

    // The classic confusion attack: HMAC keyed with the issuer's published RSA key.
    let jwks = p.jwks.borrow()[JWKS_URL].to_string();
    for alg in ["HS256", "HS384", "HS512"] {
        let header = json!({"alg": alg, "kid": "rsa1"});
        let input = format!("{}.{}", b64(&header), b64(&claims));
        let mac = Hs256.sign(&Hs256Key::new(jwks.as_bytes()), input.as_bytes());
        let forged = format!(
            "{input}.{}",
            Base64UrlUnpadded::encode_string(&mac.as_bytes())
        );
        assert_eq!(run(&p, &a, &forged), Err(AuthError::UnsupportedAlgorithm));
    }
    for alg in ["PS256", "rs256", "ES256K", "RS256 "] {
        let t = token_with_header(&rsa1(), &json!({"alg": alg, "kid": "rsa1"}), &claims);
        assert_eq!(
            run(&p, &a, &t),
            Err(AuthError::UnsupportedAlgorithm),
            "{alg}"
        );
    }
    assert_eq!(p.fetches(), 0, "refused before any key lookup");
}

#[test]
fn key_type_must_match_the_algorithm() {
    let (p, a) = setup();
    let c = id_claims(&p);
    for (key, alg, kid) in [
        (p256(), "ES256", "rsa1"),  // EC signature, RSA key
        (rsa1(), "RS384", "rsa1"),  // the JWK says RS256
        (rsa1(), "RS256", "ec256"), // RSA signature, EC key
        (p384(), "ES384", "ec256"), // P-384 signature, P-256 key
        (p256(), "ES256", "ec384"),
        (p256(), "ES256", "ed1"),
        (ed(), "EdDSA", "rsa1-any"),
    ] {
        assert_eq!(
            run(&p, &a, &token(&key, alg, kid, &c)),
            Err(AuthError::AlgorithmMismatch),
            "{alg} with {kid}"
        );
    }
}

#[test]
fn tampering_breaks_the_signature() {
    let (p, a) = setup();
    for (key, alg, kid) in [
        (rsa1(), "RS256", "rsa1"),
        (p256(), "ES256", "ec256"),
        (p384(), "ES384", "ec384"),
        (ed(), "EdDSA", "ed1"),
    ] {
        let t = token(&key, alg, kid, &id_claims(&p));
        let parts: Vec<&str> = t.split('.').collect();
        let mut c = id_claims(&p);
        c["custom:tenant_id"] = json!("globex");
        let forged = format!("{}.{}.{}", parts[0], b64(&c), parts[2]);
        assert_eq!(run(&p, &a, &forged), Err(AuthError::BadSignature), "{alg}");

        // Another valid key's signature.
        let other = token(&rsa2(), alg, kid, &id_claims(&p));
        let other_sig = other.rsplit('.').next().unwrap();
        let swapped = format!("{}.{}.{other_sig}", parts[0], parts[1]);
        assert_eq!(run(&p, &a, &swapped), Err(AuthError::BadSignature), "{alg}");

        // A flipped signature byte, and a truncated signature.
        let mut sig = Base64UrlUnpadded::decode_vec(parts[2]).unwrap();
        sig[5] ^= 1;
        let flipped = format!(
            "{}.{}.{}",
            parts[0],
            parts[1],
            Base64UrlUnpadded::encode_string(&sig)
        );
        assert_eq!(run(&p, &a, &flipped), Err(AuthError::BadSignature), "{alg}");
        let short = format!(
            "{}.{}.{}",
            parts[0],
            parts[1],
            Base64UrlUnpadded::encode_string(&sig[..sig.len() - 2])
        );
        assert_eq!(run(&p, &a, &short), Err(AuthError::BadSignature), "{alg}");
    }
}

#[test]
fn malformed_and_oversized_tokens_are_refused_early() {
    let (p, a) = setup();
    let good = token(&rsa1(), "RS256", "rsa1", &id_claims(&p));
    let parts: Vec<&str> = good.split('.').collect();
    for bad in [
        "abc".to_owned(),
        format!("{}.{}", parts[0], parts[1]),
        format!("{good}.{}", parts[2]),
        format!(
            "{}.{}.{}.{}.{}",
            parts[0], parts[1], parts[2], parts[2], parts[2]
        ),
        format!("{}=.{}.{}", parts[0], parts[1], parts[2]),
        format!("{}.{}.{}==", parts[0], parts[1], parts[2]),
        format!("{}.{}+.{}", parts[0], parts[1], parts[2]),
        format!("{}..{}", parts[0], parts[2]),
        good[..good.len() - 1].to_owned() + "!",
        format!("{}.{}.{}", b64(&json!("not an object")), parts[1], parts[2]),
        format!("{}.{}.{}", parts[0], b64(&json!([1, 2])), parts[2]),
        format!("{}.{}.{}", parts[0], "bm90IGpzb24", parts[2]),
        good[..good.len() / 2].to_owned(),
        "\u{e9}t\u{e9}.a.b".to_owned(),
    ] {
        assert_eq!(run(&p, &a, &bad), Err(AuthError::Malformed), "{bad}");
    }
    // No kid, or critical extensions this verifier does not know.
    for header in [
        json!({"alg": "RS256"}),
        json!({"alg": "RS256", "kid": ""}),
        json!({"alg": "RS256", "kid": "rsa1", "crit": ["b64"], "b64": false}),
    ] {
        let t = token_with_header(&rsa1(), &header, &id_claims(&p));
        assert_eq!(run(&p, &a, &t), Err(AuthError::Malformed), "{header}");
    }
    for (h, want) in [
        (None, AuthError::Missing),
        (Some(""), AuthError::Missing),
        (Some("Bearer "), AuthError::Missing),
        (Some("Bearer"), AuthError::Missing),
        (Some("Token abc.def.ghi"), AuthError::Malformed),
        (Some("Basic dXNlcjpwYXNz"), AuthError::Malformed),
    ] {
        assert_eq!(run_header(&p, &a, h), Err(want), "{h:?}");
    }
    assert!(run_header(&p, &a, Some(&format!("bearer  {good}"))).is_ok());
    // A header is taken as bytes: bytes that are not UTF-8 are no token.
    let not_text = block_on(a.authenticate(&p.platform, &RustCrypto, Some(b"Bearer \xff.a.b")));
    assert_eq!(not_text.err(), Some(AuthError::Malformed));

    let huge = "a".repeat(8193);
    assert_eq!(run(&p, &a, &huge), Err(AuthError::TooLarge));
    let huge = format!("{}.{}.{}", parts[0], "A".repeat(10_000), parts[2]);
    assert_eq!(run(&p, &a, &huge), Err(AuthError::TooLarge));
    assert_eq!(
        run_header(&p, &a, Some(&"x".repeat(1 << 20))),
        Err(AuthError::TooLarge)
    );
    assert_eq!(
        p.fetches(),
        1,
        "only the well-formed token reached the key lookup"
    );
}

#[test]
fn missing_user_id_is_refused_after_verification() {
    let (p, a) = setup();
    let mut c = id_claims(&p);
    c.as_object_mut().unwrap().remove("sub");
    assert_eq!(
        run(&p, &a, &token(&rsa1(), "RS256", "rsa1", &c)),
        Err(AuthError::MissingClaim("user_id"))
    );
    let mut c = id_claims(&p);
    c["sub"] = json!("");
    assert_eq!(
        run(&p, &a, &token(&rsa1(), "RS256", "rsa1", &c)),
        Err(AuthError::MissingClaim("user_id"))
    );
}

#[test]
fn short_rsa_keys_in_the_jwks_are_not_used() {
    let (p, a) = setup();
    let mut weak = public(&rsa1(), "weak", None);
    let n = Base64UrlUnpadded::decode_vec(weak["n"].as_str().unwrap()).unwrap();
    weak["n"] = json!(Base64UrlUnpadded::encode_string(&n[..128])); // 1024 bits
    p.serve(JWKS_URL, vec![weak]);
    let got = run(&p, &a, &token(&rsa1(), "RS256", "weak", &id_claims(&p)));
    assert!(matches!(got, Err(AuthError::UnusableKey(_))), "{got:?}");
    assert!(got.unwrap_err().is_unavailable());
}

// ---------------------------------------------------------------- JWKS cache

#[test]
fn unknown_kid_refetches_once_per_penalty_window() {
    let (p, a) = setup();
    assert!(run(&p, &a, &token(&rsa1(), "RS256", "rsa1", &id_claims(&p))).is_ok());
    assert_eq!(p.fetches(), 1);

    p.advance(11);
    let t = token(&rsa2(), "RS256", "nope-0", &id_claims(&p));
    assert_eq!(run(&p, &a, &t), Err(AuthError::UnknownKey));
    assert_eq!(p.fetches(), 2, "one refetch for an unknown kid");

    for i in 1..50 {
        p.advance(u64::from(i % 10 == 0)); // the flood spans a few seconds of the window
        let t = token(&rsa2(), "RS256", &format!("nope-{i}"), &id_claims(&p));
        assert_eq!(run(&p, &a, &t), Err(AuthError::UnknownKey));
    }
    assert_eq!(
        p.fetches(),
        2,
        "a flood of unknown kids costs no more fetches"
    );
    // Known keys keep working meanwhile, from memory.
    assert!(run(&p, &a, &token(&p256(), "ES256", "ec256", &id_claims(&p))).is_ok());

    p.advance(11);
    let t = token(&rsa2(), "RS256", "nope-x", &id_claims(&p));
    assert_eq!(run(&p, &a, &t), Err(AuthError::UnknownKey));
    assert_eq!(p.fetches(), 3, "after the window, one more");
}

#[test]
fn the_penalty_window_holds_across_instances() {
    // Spin starts an instance per request: each has a fresh Authenticator, and only the
    // key-value store carries over.
    let (p, a) = setup();
    assert!(run(&p, &a, &token(&rsa1(), "RS256", "rsa1", &id_claims(&p))).is_ok());
    p.advance(11);
    let fresh = || Authenticator::new(config());
    let t = token(&rsa2(), "RS256", "nope-0", &id_claims(&p));
    assert_eq!(run(&p, &fresh(), &t), Err(AuthError::UnknownKey));
    assert_eq!(p.fetches(), 2, "one refetch for an unknown kid");
    for i in 1..15 {
        let t = token(&rsa2(), "RS256", &format!("nope-{i}"), &id_claims(&p));
        assert_eq!(run(&p, &fresh(), &t), Err(AuthError::UnknownKey));
    }
    assert_eq!(p.fetches(), 2, "fresh instances honour the window too");
    // A known key on a fresh instance comes from the store, without a fetch.
    assert!(run(
        &p,
        &fresh(),
        &token(&p256(), "ES256", "ec256", &id_claims(&p))
    )
    .is_ok());
    assert_eq!(p.fetches(), 2);

    // A failed fetch is remembered as well: an outage is not hammered by every instance.
    p.advance(11);
    p.endpoint.set(Endpoint::Down);
    let t = token(&rsa2(), "RS256", "nope-y", &id_claims(&p));
    assert_eq!(run(&p, &fresh(), &t), Err(AuthError::UnknownKey));
    assert_eq!(p.fetches(), 3);
    assert_eq!(run(&p, &fresh(), &t), Err(AuthError::UnknownKey));
    assert_eq!(p.fetches(), 3);
    assert!(run(
        &p,
        &fresh(),
        &token(&rsa1(), "RS256", "rsa1", &id_claims(&p))
    )
    .is_ok());
}

#[test]
fn concurrent_requests_share_one_fetch() {
    let (p, a) = setup();
    p.delay_polls.set(5);
    let good = token(&rsa1(), "RS256", "rsa1", &id_claims(&p));
    let bad: Vec<String> = (0..8)
        .map(|i| token(&rsa2(), "RS256", &format!("rogue-{i}"), &id_claims(&p)))
        .collect();
    let results = block_on(join_all(
        std::iter::once(&good)
            .chain(bad.iter())
            .chain(std::iter::once(&good))
            .map(|t| {
                let h = format!("Bearer {t}");
                let a = &a;
                let p = &p;
                async move {
                    a.authenticate(&p.platform, &RustCrypto, Some(h.as_bytes()))
                        .await
                }
            }),
    ));
    assert_eq!(p.fetches(), 1, "cold cache, ten requests, one fetch");
    assert!(results[0].is_ok() && results[9].is_ok());
    for r in &results[1..9] {
        assert_eq!(r, &Err(AuthError::UnknownKey));
    }
}

#[test]
fn rotated_key_is_picked_up_by_a_refetch() {
    let (p, a) = setup();
    assert!(run(&p, &a, &token(&rsa1(), "RS256", "rsa1", &id_claims(&p))).is_ok());
    // The pool rotates: rsa2 is published next to rsa1.
    p.serve(
        JWKS_URL,
        vec![
            public(&rsa1(), "rsa1", Some("RS256")),
            public(&rsa2(), "rsa2", Some("RS256")),
        ],
    );
    p.advance(30);
    assert!(run(&p, &a, &token(&rsa2(), "RS256", "rsa2", &id_claims(&p))).is_ok());
    assert_eq!(p.fetches(), 2);
    // Then rsa1 is withdrawn; after the cache's TTL the old key stops working.
    p.serve(JWKS_URL, vec![public(&rsa2(), "rsa2", Some("RS256"))]);
    p.advance(3601);
    assert_eq!(
        run(&p, &a, &token(&rsa1(), "RS256", "rsa1", &id_claims(&p))),
        Err(AuthError::UnknownKey)
    );
    assert!(run(&p, &a, &token(&rsa2(), "RS256", "rsa2", &id_claims(&p))).is_ok());
    assert_eq!(p.fetches(), 3);
}

#[test]
fn keys_survive_an_issuer_outage_for_a_bounded_time() {
    let (p, a) = setup();
    assert!(run(&p, &a, &token(&rsa1(), "RS256", "rsa1", &id_claims(&p))).is_ok());
    p.endpoint.set(Endpoint::Down);
    p.advance(2 * 3600); // past the TTL: a refresh is due and fails
    assert!(run(&p, &a, &token(&rsa1(), "RS256", "rsa1", &id_claims(&p))).is_ok());
    assert_eq!(p.fetches(), 2);
    // Within the penalty window the failed refresh is not retried on every request.
    assert!(run(&p, &a, &token(&rsa1(), "RS256", "rsa1", &id_claims(&p))).is_ok());
    assert_eq!(p.fetches(), 2);
    // A hanging issuer is cut off by the timeout; stale keys still serve.
    p.endpoint.set(Endpoint::Hang);
    p.advance(60);
    assert!(run(&p, &a, &token(&rsa1(), "RS256", "rsa1", &id_claims(&p))).is_ok());
    assert_eq!(p.fetches(), 3);
    // Past the stale bound the keys are no longer trusted.
    p.endpoint.set(Endpoint::Down);
    p.advance(23 * 3600);
    let got = run(&p, &a, &token(&rsa1(), "RS256", "rsa1", &id_claims(&p)));
    assert!(
        matches!(&got, Err(AuthError::JwksUnavailable(d)) if d.contains("503")),
        "{got:?}"
    );
    // The issuer comes back: after the penalty window everything works again.
    p.endpoint.set(Endpoint::Up);
    p.advance(11);
    assert!(run(&p, &a, &token(&rsa1(), "RS256", "rsa1", &id_claims(&p))).is_ok());
}

#[test]
fn cold_cache_with_issuer_down_is_unavailable() {
    let (p, a) = setup();
    p.endpoint.set(Endpoint::Down);
    let t = token(&rsa1(), "RS256", "rsa1", &id_claims(&p));
    let got = run(&p, &a, &t);
    assert!(
        matches!(&got, Err(AuthError::JwksUnavailable(d)) if d.contains("HTTP 503")),
        "{got:?}"
    );
    assert!(got.as_ref().unwrap_err().is_unavailable());
    assert_eq!(got.unwrap_err().code(), "jwks_unavailable");

    let (p, a) = setup();
    p.endpoint.set(Endpoint::Hang);
    let got = run(&p, &a, &t);
    assert!(
        matches!(&got, Err(AuthError::JwksUnavailable(d)) if d.contains("no response within 3000 ms")),
        "{got:?}"
    );
    // A JWKS that is not a key set is no better.
    let (p, a) = setup();
    p.jwks
        .borrow_mut()
        .insert(JWKS_URL.into(), json!({"keys": "nope"}));
    assert!(matches!(
        run(&p, &a, &t),
        Err(AuthError::JwksUnavailable(_))
    ));
}

#[test]
fn key_sets_persist_in_key_value_for_fresh_instances() {
    let (p, a) = setup();
    let t = token(&rsa1(), "RS256", "rsa1", &id_claims(&p));
    assert!(run(&p, &a, &t).is_ok());
    assert_eq!(p.fetches(), 1);
    assert!(p.kv_get(&cache::kv_key(JWKS_URL)).is_some());
    assert!(cache::kv_key(JWKS_URL).starts_with("jwks:v1:"));

    // A new instance on the same store: no fetch.
    let fresh = Authenticator::new(config());
    assert!(run(&p, &fresh, &t).is_ok());
    assert_eq!(p.fetches(), 1);

    // A persisted set older than the TTL is refreshed, and still used if the refresh fails.
    p.advance(2 * 3600);
    p.endpoint.set(Endpoint::Down);
    let fresh = Authenticator::new(config());
    assert!(run(&p, &fresh, &token(&rsa1(), "RS256", "rsa1", &id_claims(&p))).is_ok());
    assert_eq!(p.fetches(), 2);

    // A corrupt record is a miss, not an error.
    p.endpoint.set(Endpoint::Up);
    p.kv_insert(&cache::kv_key(JWKS_URL), Bytes::from_static(b"{not json"));
    let fresh = Authenticator::new(config());
    assert!(run(&p, &fresh, &token(&rsa1(), "RS256", "rsa1", &id_claims(&p))).is_ok());
    assert_eq!(p.fetches(), 3);
}

#[test]
fn errors_have_stable_codes_and_never_echo_the_token() {
    let (p, a) = setup();
    let mut c = id_claims(&p);
    c["exp"] = json!(p.secs() - 3600);
    let t = token(&rsa1(), "RS256", "rsa1", &c);
    let err = run(&p, &a, &t).unwrap_err();
    assert_eq!(err.code(), "expired");
    assert!(!err.detail().contains(&t[..20]));
    assert!(!err.to_string().contains(&t[..20]));
    let all = [
        AuthError::Missing,
        AuthError::Malformed,
        AuthError::TooLarge,
        AuthError::UnsupportedAlgorithm,
        AuthError::AlgorithmMismatch,
        AuthError::UnknownKey,
        AuthError::UnusableKey("x".into()),
        AuthError::BadSignature,
        AuthError::Expired,
        AuthError::NotYetValid,
        AuthError::IssuedInFuture,
        AuthError::WrongIssuer,
        AuthError::WrongAudience,
        AuthError::WrongTokenUse,
        AuthError::MissingClaim("sub"),
        AuthError::JwksUnavailable("x".into()),
    ];
    // Every client-side refusal has its own code; the two server-side failures (keys
    // unreachable, keys unusable) are one code to the client: 503 jwks_unavailable.
    let client: Vec<_> = all.iter().filter(|e| !e.is_unavailable()).collect();
    let codes: std::collections::HashSet<_> = client.iter().map(|e| e.code()).collect();
    assert_eq!(codes.len(), client.len());
    for e in all.iter().filter(|e| e.is_unavailable()) {
        assert_eq!(e.code(), crate::code::Code::JwksUnavailable);
        assert_eq!(crate::error::ApiError::from(e.clone()).status(), 503);
    }
    for e in client {
        assert_eq!(crate::error::ApiError::from(e.clone()).status(), 401);
    }
}

// ---------------------------------------------------------------- verified-token cache

/// Counts signature verifications.
#[derive(Default)]
struct Counting(Cell<u32>);

impl SignatureVerifier for Counting {
    async fn verify(
        &self,
        alg: crate::jwk::Algorithm,
        jwk: &crate::jwk::Jwk,
        signing_input: &[u8],
        signature: &[u8],
    ) -> Result<bool, crate::jwk::KeyError> {
        self.0.set(self.0.get() + 1);
        RustCrypto.verify(alg, jwk, signing_input, signature).await
    }
}

#[test]
fn a_verified_token_is_not_verified_again_but_still_expires() {
    let (p, a) = setup();
    let v = Counting::default();
    let mut claims = id_claims(&p);
    claims["exp"] = json!(p.secs() + 100);
    let t = token(&rsa1(), "RS256", "rsa1", &claims);
    let bearer = format!("Bearer {t}");
    for _ in 0..3 {
        let principal = block_on(a.authenticate(&p.platform, &v, Some(bearer.as_bytes()))).unwrap();
        assert_eq!(principal.subject, "user-1");
    }
    assert_eq!(v.0.get(), 1, "one verification for three requests");
    assert_eq!(p.fetches(), 1);

    // Another signature is another token: verified (and refused) on its own.
    let (head, sig) = t.rsplit_once('.').unwrap();
    let mut bytes = Base64UrlUnpadded::decode_vec(sig).unwrap();
    bytes[0] ^= 1;
    let forged = format!("Bearer {head}.{}", Base64UrlUnpadded::encode_string(&bytes));
    let err = block_on(a.authenticate(&p.platform, &v, Some(forged.as_bytes()))).unwrap_err();
    assert!(matches!(err, AuthError::BadSignature), "{err:?}");
    assert_eq!(v.0.get(), 2);

    // Expiry is checked on every request: past `exp` (and the leeway) but within the cache's
    // time, the cached token is refused without another verification.
    p.advance(100 + 61);
    assert!(p.now() < SystemTime::UNIX_EPOCH + Duration::from_secs(T0) + verified::TTL);
    let err = block_on(a.authenticate(&p.platform, &v, Some(bearer.as_bytes()))).unwrap_err();
    assert!(matches!(err, AuthError::Expired), "{err:?}");
    assert_eq!(v.0.get(), 2);
}
