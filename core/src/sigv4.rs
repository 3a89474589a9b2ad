//! AWS Signature Version 4 (`AWS4-HMAC-SHA256`), as much of it as core's S3 requests use:
//! canonical requests signed in headers or in the query string, and the derived signing key
//! (cached per day and scope, as aws4fetch does: it changes at most once a day). Built on the
//! `hmac` and `sha2` crates; its output is byte-identical to aws-sigv4's and botocore's for the
//! same inputs (the AWS test-suite vectors below, and `tests/botocore.rs`).
//!
//! Time is always a parameter: callers take it from the clock port.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use crate::ids::hex;
use crate::rfc3339::Civil;
use std::sync::Mutex;
use std::time::SystemTime;

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

pub const ALGORITHM: &str = "AWS4-HMAC-SHA256";
pub const UNSIGNED_PAYLOAD: &str = "UNSIGNED-PAYLOAD";

/// Headers never signed: computed by signing (`authorization`), or changed on the way by
/// proxies and runtimes (aws-sigv4's default exclusions).
const EXCLUDED: &[&str] = &[
    "authorization",
    "user-agent",
    "x-amzn-trace-id",
    "transfer-encoding",
];

/// `20150830T123600Z` for `t`.
pub fn amz_date(t: SystemTime) -> String {
    Civil::from_system_time(t).basic()
}

fn hmac(key: &[u8], data: &[u8]) -> [u8; 32] {
    // HMAC takes a key of any length: `new_from_slice` cannot fail for it.
    match Hmac::<Sha256>::new_from_slice(key) {
        Ok(mut mac) => {
            mac.update(data);
            mac.finalize().into_bytes().into()
        }
        Err(_) => [0; 32],
    }
}

/// Lowercase hex SHA-256 of `bytes` (the payload hash, the canonical request's hash).
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

/// `kSigning = HMAC(HMAC(HMAC(HMAC("AWS4" + secret, day), region), service), "aws4_request")`.
pub fn derive_signing_key(secret: &str, day: &str, region: &str, service: &str) -> [u8; 32] {
    let k_date = hmac(format!("AWS4{secret}").as_bytes(), day.as_bytes());
    let k_region = hmac(&k_date, region.as_bytes());
    let k_service = hmac(&k_region, service.as_bytes());
    hmac(&k_service, b"aws4_request")
}

/// The signing key for `time`'s UTC day (aws-sigv4's `generate_signing_key`).
pub fn generate_signing_key(
    secret: &str,
    time: SystemTime,
    region: &str,
    service: &str,
) -> [u8; 32] {
    derive_signing_key(
        secret,
        &Civil::from_system_time(time).basic_date(),
        region,
        service,
    )
}

/// Lowercase hex `HMAC(signing_key, string_to_sign)` (aws-sigv4's `calculate_signature`).
pub fn calculate_signature(signing_key: impl AsRef<[u8]>, string_to_sign: &[u8]) -> String {
    hex(&hmac(signing_key.as_ref(), string_to_sign))
}

/// The last derived signing key and the (secret, day, region, service) it is for. Deriving one
/// costs four HMACs; a key is valid for its whole UTC day, so each request of the day after the
/// first costs one comparison. It lives in the S3 configuration (one per isolate or instance).
#[derive(Default)]
pub struct KeyCache(Mutex<Option<CachedKey>>);

#[derive(Clone)]
struct CachedKey {
    secret: String,
    day: String,
    region: String,
    service: String,
    key: [u8; 32],
}

impl KeyCache {
    /// The signing key for `secret` on `day` (`YYYYMMDD`) in `region` for `service`: the cached
    /// one when it is for the same scope, otherwise derived and cached.
    pub fn signing_key(&self, secret: &str, day: &str, region: &str, service: &str) -> [u8; 32] {
        // A poisoned lock (a panic elsewhere while held; wasm aborts instead) only costs the cache.
        let Ok(mut slot) = self.0.lock() else {
            return derive_signing_key(secret, day, region, service);
        };
        if let Some(c) = slot.as_ref() {
            if c.day == day && c.region == region && c.service == service && c.secret == secret {
                return c.key;
            }
        }
        let key = derive_signing_key(secret, day, region, service);
        *slot = Some(CachedKey {
            secret: secret.to_owned(),
            day: day.to_owned(),
            region: region.to_owned(),
            service: service.to_owned(),
            key,
        });
        key
    }

    /// The day of the cached key, if any (for tests).
    pub fn cached_day(&self) -> Option<String> {
        self.0.lock().ok()?.as_ref().map(|c| c.day.clone())
    }
}

impl Clone for KeyCache {
    fn clone(&self) -> Self {
        let cached = self.0.lock().ok().and_then(|c| c.clone());
        Self(Mutex::new(cached))
    }
}

impl std::fmt::Debug for KeyCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("KeyCache")
    }
}

/// Who signs, and for what scope.
pub struct Signer<'a> {
    pub access_key_id: &'a str,
    pub secret: &'a str,
    pub region: &'a str,
    pub service: &'a str,
    pub keys: &'a KeyCache,
}

/// Where the signature goes.
pub enum Location {
    /// `Authorization` header; `x-amz-date` is signed, and `x-amz-content-sha256` too when
    /// `content_sha256_header`.
    Headers { content_sha256_header: bool },
    /// A presigned URL valid for `expires_secs` (`X-Amz-*` query parameters).
    Query { expires_secs: u64 },
}

/// What a request to sign is made of. `path` is sent as is (S3: no normalisation, no double
/// encoding); `query` is the raw query string (without `?`), if any; `headers` are the
/// request's, in order (names any case); `host` the URI's authority as the Host header carries it.
pub struct Request<'a> {
    pub method: &'a str,
    pub path: &'a str,
    pub query: Option<&'a str>,
    pub host: &'a str,
    pub headers: &'a [(&'a str, &'a str)],
    /// The payload's hex SHA-256, or [`UNSIGNED_PAYLOAD`].
    pub payload_hash: &'a str,
}

/// What signing adds to the request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signed {
    /// Headers to set (replacing any of the same name), in aws-sigv4's order: `x-amz-date`,
    /// `authorization`, then `x-amz-content-sha256` when asked for. Empty for a presigned URL.
    pub headers: Vec<(&'static str, String)>,
    /// Query parameters to append (not yet encoded), in botocore's order: algorithm,
    /// credential, date, expires, signed headers, signature. Empty for header signing.
    pub params: Vec<(&'static str, String)>,
    pub signature: String,
}

/// Why a request cannot be signed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignError(pub String);

impl std::fmt::Display for SignError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// URI-encodes `s` as SigV4 does: every byte but `A-Z a-z 0-9 - _ . ~` becomes `%XX`; with
/// `keep_slash`, `/` is kept too.
pub fn uri_encode(s: &str, keep_slash: bool) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric()
            || matches!(b, b'-' | b'_' | b'.' | b'~')
            || (keep_slash && b == b'/')
        {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// `application/x-www-form-urlencoded` decoding of one name or value (`+` is a space; `%XX`
/// a byte; a `%` not followed by two hex digits is itself), invalid UTF-8 replaced.
fn form_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        let hex_at = |j: usize| bytes.get(j).and_then(|c| char::from(*c).to_digit(16));
        match b {
            b'+' => out.push(b' '),
            b'%' => match (hex_at(i + 1), hex_at(i + 2)) {
                (Some(h), Some(l)) => {
                    out.push(u8::try_from(h * 16 + l).unwrap_or_default());
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            _ => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Collapses runs of spaces to one and trims spaces at both ends (only spaces, as S3 does).
fn trim_all(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for c in v.trim_matches(' ').chars() {
        if !(c == ' ' && out.ends_with(' ')) {
            out.push(c);
        }
    }
    out
}

/// A header value `http` would accept: visible ASCII, spaces, tabs, and bytes 0x80 and up.
fn valid_header_value(v: &str) -> bool {
    v.bytes().all(|b| b == b'\t' || (b >= 0x20 && b != 0x7f))
}

/// Signs `req` as `signer` at `now`.
pub fn sign(
    signer: &Signer<'_>,
    req: &Request<'_>,
    location: &Location,
    now: SystemTime,
) -> Result<Signed, SignError> {
    let civil = Civil::from_system_time(now);
    let date_time = civil.basic();
    let day = civil.basic_date();
    let scope = format!("{day}/{}/{}/aws4_request", signer.region, signer.service);

    // Canonical headers: lowercased names, sorted; a name's values in order, joined by commas.
    let mut headers: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (name, value) in req.headers {
        let value = trim_all(value);
        if !valid_header_value(&value) {
            return Err(SignError(format!("invalid value for header {name}")));
        }
        headers
            .entry(name.to_ascii_lowercase())
            .or_default()
            .push(value);
    }
    headers
        .entry("host".to_owned())
        .or_insert_with(|| vec![req.host.to_owned()]);
    if let Location::Headers {
        content_sha256_header,
    } = location
    {
        headers.insert("x-amz-date".to_owned(), vec![date_time.clone()]);
        if *content_sha256_header {
            headers.insert(
                "x-amz-content-sha256".to_owned(),
                vec![req.payload_hash.to_owned()],
            );
        }
    }
    let signed: Vec<(&String, &Vec<String>)> = headers
        .iter()
        .filter(|(name, _)| !EXCLUDED.contains(&name.as_str()))
        .collect();
    let signed_headers = signed
        .iter()
        .map(|(name, _)| name.as_str())
        .collect::<Vec<_>>()
        .join(";");

    // Canonical query: every parameter decoded, re-encoded, sorted by name then value.
    let credential = format!("{}/{scope}", signer.access_key_id);
    let mut params: Vec<(String, String)> = req
        .query
        .unwrap_or_default()
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (form_decode(k), form_decode(v))
        })
        .collect();
    if let Location::Query { expires_secs } = location {
        params.extend([
            ("X-Amz-Date".to_owned(), date_time.clone()),
            ("X-Amz-Expires".to_owned(), expires_secs.to_string()),
            ("X-Amz-Algorithm".to_owned(), ALGORITHM.to_owned()),
            ("X-Amz-Credential".to_owned(), credential.clone()),
            ("X-Amz-SignedHeaders".to_owned(), signed_headers.clone()),
        ]);
    }
    let mut params: Vec<(String, String)> = params
        .iter()
        .map(|(k, v)| (uri_encode(k, false), uri_encode(v, false)))
        .collect();
    params.sort();
    let query = params
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&");

    let mut canonical = String::with_capacity(256);
    canonical.push_str(req.method);
    canonical.push('\n');
    canonical.push_str(req.path);
    canonical.push('\n');
    canonical.push_str(&query);
    canonical.push('\n');
    for (name, values) in &signed {
        canonical.push_str(name);
        canonical.push(':');
        canonical.push_str(&values.join(","));
        canonical.push('\n');
    }
    canonical.push('\n');
    canonical.push_str(&signed_headers);
    canonical.push('\n');
    canonical.push_str(req.payload_hash);

    let string_to_sign = format!(
        "{ALGORITHM}\n{date_time}\n{scope}\n{}",
        sha256_hex(canonical.as_bytes())
    );
    let key = signer
        .keys
        .signing_key(signer.secret, &day, signer.region, signer.service);
    let signature = calculate_signature(key, string_to_sign.as_bytes());

    Ok(match location {
        Location::Headers {
            content_sha256_header,
        } => {
            let mut out = vec![
                ("x-amz-date", date_time),
                (
                    "authorization",
                    format!(
                        "{ALGORITHM} Credential={credential}, SignedHeaders={signed_headers}, \
                         Signature={signature}"
                    ),
                ),
            ];
            if *content_sha256_header {
                out.push(("x-amz-content-sha256", req.payload_hash.to_owned()));
            }
            Signed {
                headers: out,
                params: Vec::new(),
                signature,
            }
        }
        Location::Query { expires_secs } => Signed {
            headers: Vec::new(),
            params: vec![
                ("X-Amz-Algorithm", ALGORITHM.to_owned()),
                ("X-Amz-Credential", credential),
                ("X-Amz-Date", date_time),
                ("X-Amz-Expires", expires_secs.to_string()),
                ("X-Amz-SignedHeaders", signed_headers),
                ("X-Amz-Signature", signature.clone()),
            ],
            signature,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// 2015-08-30T12:36:00Z, the AWS SigV4 test suite's time.
    fn suite_time() -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_440_938_160)
    }

    const SUITE_SECRET: &str = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";

    fn suite_signer(keys: &KeyCache) -> Signer<'_> {
        Signer {
            access_key_id: "AKIDEXAMPLE",
            secret: SUITE_SECRET,
            region: "us-east-1",
            service: "service",
            keys,
        }
    }

    fn authorization(signed: &Signed) -> &str {
        signed
            .headers
            .iter()
            .find(|(k, _)| *k == "authorization")
            .map(|(_, v)| v.as_str())
            .unwrap()
    }

    #[test]
    fn amz_dates_are_truncated_to_the_second() {
        let t = SystemTime::UNIX_EPOCH + Duration::from_millis(1_440_938_160_999);
        assert_eq!(amz_date(t), "20150830T123600Z");
    }

    /// AWS SigV4 test suite: `get-vanilla`.
    #[test]
    fn get_vanilla() {
        let keys = KeyCache::default();
        let signed = sign(
            &suite_signer(&keys),
            &Request {
                method: "GET",
                path: "/",
                query: None,
                host: "example.amazonaws.com",
                headers: &[],
                payload_hash: &sha256_hex(b""),
            },
            &Location::Headers {
                content_sha256_header: false,
            },
            suite_time(),
        )
        .unwrap();
        assert_eq!(
            authorization(&signed),
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, \
             SignedHeaders=host;x-amz-date, \
             Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31"
        );
        assert_eq!(signed.headers[0], ("x-amz-date", "20150830T123600Z".into()));
    }

    /// AWS SigV4 test suite: `get-vanilla-query-order-key-case` (parameters sorted by their
    /// encoded name, uppercase first).
    #[test]
    fn get_vanilla_query_order_key_case() {
        let keys = KeyCache::default();
        let signed = sign(
            &suite_signer(&keys),
            &Request {
                method: "GET",
                path: "/",
                query: Some("Param2=value2&Param1=value1"),
                host: "example.amazonaws.com",
                headers: &[],
                payload_hash: &sha256_hex(b""),
            },
            &Location::Headers {
                content_sha256_header: false,
            },
            suite_time(),
        )
        .unwrap();
        assert!(authorization(&signed).ends_with(
            "Signature=b97d918cfa904a5beff61c982a1b6f458b799221646efd99d3219ec94cdf2500"
        ));
    }

    /// AWS SigV4 test suite: `post-x-www-form-urlencoded` (a signed `Content-Type`; the body's
    /// hash in the canonical request).
    #[test]
    fn post_x_www_form_urlencoded() {
        let keys = KeyCache::default();
        let signed = sign(
            &suite_signer(&keys),
            &Request {
                method: "POST",
                path: "/",
                query: None,
                host: "example.amazonaws.com",
                headers: &[("Content-Type", "application/x-www-form-urlencoded")],
                payload_hash: &sha256_hex(b"Param1=value1"),
            },
            &Location::Headers {
                content_sha256_header: false,
            },
            suite_time(),
        )
        .unwrap();
        assert_eq!(
            authorization(&signed),
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, \
             SignedHeaders=content-type;host;x-amz-date, \
             Signature=ff11897932ad3f4e8b18135d722051e5ac45fc38421b1da7b9d196a0fe09473a"
        );
    }

    /// The S3 documentation's presigned URL ("Authenticating Requests: Using Query
    /// Parameters"): GET of `test.txt` in `examplebucket`, 2013-05-24, valid 86 400 s.
    #[test]
    fn s3_presigned_get_example() {
        let keys = KeyCache::default();
        let signer = Signer {
            access_key_id: "AKIAIOSFODNN7EXAMPLE",
            secret: "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
            region: "us-east-1",
            service: "s3",
            keys: &keys,
        };
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(1_369_353_600);
        let signed = sign(
            &signer,
            &Request {
                method: "GET",
                path: "/test.txt",
                query: None,
                host: "examplebucket.s3.amazonaws.com",
                headers: &[],
                payload_hash: UNSIGNED_PAYLOAD,
            },
            &Location::Query {
                expires_secs: 86_400,
            },
            t,
        )
        .unwrap();
        assert_eq!(
            signed.signature,
            "aeeed9bbccd4d02ee5c0109b86d86835f995330da4c265957d157751f604d404"
        );
        let names: Vec<&str> = signed.params.iter().map(|(k, _)| *k).collect();
        assert_eq!(
            names,
            [
                "X-Amz-Algorithm",
                "X-Amz-Credential",
                "X-Amz-Date",
                "X-Amz-Expires",
                "X-Amz-SignedHeaders",
                "X-Amz-Signature"
            ]
        );
        assert_eq!(
            signed.params[1].1,
            "AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request"
        );
        assert_eq!(signed.params[4].1, "host");
    }

    /// The signing key of the SigV4 documentation's example ("Calculate the signature").
    #[test]
    fn signing_key_derivation_matches_the_documentation() {
        let key = derive_signing_key(SUITE_SECRET, "20150830", "us-east-1", "iam");
        assert_eq!(
            hex(&key),
            "c4afb1cc5771d871763a393e44b703571b55cc28424d1a5e86da6ed3c154a4b9"
        );
    }

    #[test]
    fn the_signing_key_is_derived_once_per_day_and_scope() {
        let keys = KeyCache::default();
        assert_eq!(keys.cached_day(), None);
        let a = keys.signing_key(SUITE_SECRET, "20150830", "us-east-1", "s3");
        assert_eq!(keys.cached_day().as_deref(), Some("20150830"));
        assert_eq!(
            a,
            derive_signing_key(SUITE_SECRET, "20150830", "us-east-1", "s3")
        );
        assert_eq!(
            a,
            keys.signing_key(SUITE_SECRET, "20150830", "us-east-1", "s3")
        );
        // Another day, region or service is another key, and replaces the cached one.
        let b = keys.signing_key(SUITE_SECRET, "20150831", "us-east-1", "s3");
        assert_ne!(a, b);
        assert_eq!(keys.cached_day().as_deref(), Some("20150831"));
        assert_ne!(
            b,
            keys.signing_key(SUITE_SECRET, "20150831", "eu-west-3", "s3")
        );
        assert_ne!(
            keys.signing_key(SUITE_SECRET, "20150831", "eu-west-3", "s3"),
            keys.signing_key(SUITE_SECRET, "20150831", "eu-west-3", "iam")
        );
        // Another secret is another key.
        assert_ne!(
            keys.signing_key(SUITE_SECRET, "20150831", "eu-west-3", "iam"),
            keys.signing_key("other", "20150831", "eu-west-3", "iam")
        );
        // A clone starts with what was cached, then goes its own way.
        let copy = keys.clone();
        assert_eq!(copy.cached_day().as_deref(), Some("20150831"));
        copy.signing_key(SUITE_SECRET, "20150901", "eu-west-3", "iam");
        assert_eq!(keys.cached_day().as_deref(), Some("20150831"));
    }

    #[test]
    fn query_parameters_are_decoded_then_reencoded() {
        assert_eq!(form_decode("a+b%2Fc%zz%4"), "a b/c%zz%4");
        assert_eq!(uri_encode("a b/c~", false), "a%20b%2Fc~");
        assert_eq!(uri_encode("a b/c~", true), "a%20b/c~");
        assert_eq!(trim_all("  a   b  c "), "a b c");
    }
}
