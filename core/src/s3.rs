//! S3 requests signed with SigV4 ([`crate::sigv4`]), with the signing time taken from the clock
//! port. Works against AWS (virtual-hosted style), and path-style endpoints (MinIO, R2, local s3s).

use std::fmt;
use std::time::{Duration, SystemTime};

use base64ct::{Base64, Encoding};
use bytes::Bytes;
use http::{header, Method, Request, Uri};

use crate::config::S3Config;
use crate::ports::{Clock, HttpClient, OutboundError};
use crate::sigv4::{self as v4, Location, Signer};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum S3Error {
    /// The request could not be built or signed (a configuration problem).
    Signing(String),
    Unavailable(OutboundError),
    /// S3 answered with an unexpected status.
    Status(u16),
    /// S3 answered 2xx with a body we cannot read (a listing that is not one).
    Protocol(String),
}

impl fmt::Display for S3Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Signing(m) => write!(f, "cannot sign S3 request: {m}"),
            Self::Unavailable(e) => write!(f, "S3 unavailable: {e}"),
            Self::Status(s) => write!(f, "S3 answered HTTP {s}"),
            Self::Protocol(m) => write!(f, "S3 answered something unreadable: {m}"),
        }
    }
}

impl From<v4::SignError> for S3Error {
    fn from(e: v4::SignError) -> Self {
        Self::Signing(e.0)
    }
}

/// The longest validity SigV4 allows for a presigned request (7 days).
pub const MAX_PRESIGN_EXPIRY: Duration = Duration::from_secs(7 * 24 * 3600);

/// URI-encodes `s` the way SigV4 (and botocore) do: every byte but `A-Z a-z 0-9 - _ . ~` becomes
/// `%XX`; with `keep_slash`, `/` is kept too (object keys in paths).
pub fn uri_encode(s: &str, keep_slash: bool) -> String {
    v4::uri_encode(s, keep_slash)
}

/// URL of the bucket itself (`key == None`) or of an object, in the configured addressing style.
/// `key` must already be URI-encoded per segment.
pub fn url(cfg: &S3Config, key: Option<&str>) -> Result<Uri, S3Error> {
    let scheme = cfg.endpoint.scheme_str().unwrap_or("https");
    let authority = cfg
        .endpoint
        .authority()
        .map(|a| a.as_str())
        .ok_or_else(|| S3Error::Signing("endpoint has no host".into()))?;
    let base_path = cfg.endpoint.path().trim_end_matches('/');
    let s = match (cfg.path_style, key) {
        (true, None) => format!("{scheme}://{authority}{base_path}/{}", cfg.bucket),
        (true, Some(k)) => format!("{scheme}://{authority}{base_path}/{}/{k}", cfg.bucket),
        (false, None) => format!("{scheme}://{}.{authority}{base_path}/", cfg.bucket),
        (false, Some(k)) => format!("{scheme}://{}.{authority}{base_path}/{k}", cfg.bucket),
    };
    s.parse()
        .map_err(|e| S3Error::Signing(format!("bad URL {s}: {e}")))
}

/// Service `s3` in the configured region with the configured keys (and their cached signing key).
fn signer(cfg: &S3Config) -> Signer<'_> {
    Signer {
        access_key_id: &cfg.access_key_id,
        secret: cfg.secret_access_key.expose(),
        region: &cfg.region,
        service: "s3",
        keys: &cfg.signing_keys,
    }
}

/// The Host header SigV4 signs for `uri`: its authority, without a port that is the scheme's
/// default (as hyper sends it).
fn host(uri: &Uri) -> Result<&str, S3Error> {
    let authority = uri
        .authority()
        .ok_or_else(|| S3Error::Signing("request URI has no host".into()))?;
    let default_port = matches!(
        (uri.scheme_str(), authority.port_u16()),
        (Some("http"), Some(80)) | (Some("https"), Some(443))
    );
    Ok(if default_port {
        authority.host()
    } else {
        authority.as_str()
    })
}

/// Adds SigV4 `Authorization`, `x-amz-date` and `x-amz-content-sha256` headers to `req`.
pub fn sign_request(
    cfg: &S3Config,
    req: &mut Request<Bytes>,
    now: SystemTime,
) -> Result<(), S3Error> {
    // Runtimes may set or drop Content-Length themselves (fetch does): never sign it.
    let headers: Vec<(&str, &str)> = req
        .headers()
        .iter()
        .filter(|(k, _)| *k != header::CONTENT_LENGTH)
        .filter_map(|(k, v)| Some((k.as_str(), v.to_str().ok()?)))
        .collect();
    let payload_hash = v4::sha256_hex(req.body());
    let signed = v4::sign(
        &signer(cfg),
        &v4::Request {
            method: req.method().as_str(),
            path: req.uri().path(),
            query: req.uri().query(),
            host: host(req.uri())?,
            headers: &headers,
            payload_hash: &payload_hash,
        },
        &Location::Headers {
            content_sha256_header: true,
        },
        now,
    )?;
    for (name, value) in signed.headers {
        let value = http::HeaderValue::from_str(&value)
            .map_err(|e| S3Error::Signing(format!("header value: {e}")))?;
        req.headers_mut().insert(name, value);
    }
    Ok(())
}

/// `20150830T123600Z`: SigV4's timestamp format.
fn amz_date(t: SystemTime) -> String {
    v4::amz_date(t)
}

fn check_expiry(expires: Duration) -> Result<(), S3Error> {
    if expires.as_secs() == 0 || expires > MAX_PRESIGN_EXPIRY {
        return Err(S3Error::Signing(format!(
            "presigned expiry must be 1 s to 7 days, not {} s",
            expires.as_secs()
        )));
    }
    Ok(())
}

/// A presigned URL for `method` on `key`: SigV4 in the query string, payload `UNSIGNED-PAYLOAD`,
/// `headers` signed (the client must send them unchanged) and `query` (operation parameters,
/// such as `response-content-disposition`) placed before the auth parameters, as botocore does,
/// so the URL is byte-identical to `generate_presigned_url`'s for the same inputs.
fn presign(
    cfg: &S3Config,
    method: &Method,
    key: &str,
    headers: &[(&str, &str)],
    query: &[(&str, &str)],
    now: SystemTime,
    expires: Duration,
) -> Result<String, S3Error> {
    check_expiry(expires)?;
    let base = url(cfg, Some(&uri_encode(key, true)))?.to_string();
    let op_query = query
        .iter()
        .map(|(k, v)| format!("{}={}", uri_encode(k, false), uri_encode(v, false)))
        .collect::<Vec<_>>()
        .join("&");
    let to_sign = if op_query.is_empty() {
        base.clone()
    } else {
        format!("{base}?{op_query}")
    };
    let uri: Uri = to_sign
        .parse()
        .map_err(|e| S3Error::Signing(format!("bad URL {to_sign}: {e}")))?;
    let signed = v4::sign(
        &signer(cfg),
        &v4::Request {
            method: method.as_str(),
            path: uri.path(),
            query: uri.query(),
            host: host(&uri)?,
            headers,
            payload_hash: v4::UNSIGNED_PAYLOAD,
        },
        &Location::Query {
            expires_secs: expires.as_secs(),
        },
        now,
    )?;
    let auth_query = signed
        .params
        .iter()
        .map(|(k, v)| format!("{}={}", uri_encode(k, false), uri_encode(v, false)))
        .collect::<Vec<_>>()
        .join("&");
    Ok(if op_query.is_empty() {
        format!("{base}?{auth_query}")
    } else {
        format!("{base}?{op_query}&{auth_query}")
    })
}

/// A presigned `PUT` of `key`. The content type and the length are signed: the upload must send
/// exactly this `Content-Type` and a `Content-Length` of `content_length` bytes, or S3 rejects
/// the signature, so the URL cannot store an object of any other size.
pub fn presign_put(
    cfg: &S3Config,
    key: &str,
    content_type: &str,
    content_length: u64,
    now: SystemTime,
    expires: Duration,
) -> Result<String, S3Error> {
    let length = content_length.to_string();
    presign(
        cfg,
        &Method::PUT,
        key,
        &[("content-length", &length), ("content-type", content_type)],
        &[],
        now,
        expires,
    )
}

/// A presigned `GET` of `key`, optionally making S3 answer with this `Content-Disposition`.
pub fn presign_get(
    cfg: &S3Config,
    key: &str,
    now: SystemTime,
    expires: Duration,
    disposition: Option<&str>,
) -> Result<String, S3Error> {
    let query: Vec<(&str, &str)> = disposition
        .map(|d| ("response-content-disposition", d))
        .into_iter()
        .collect();
    presign(cfg, &Method::GET, key, &[], &query, now, expires)
}

/// A browser-form upload (`POST` to the bucket URL, `multipart/form-data`): the form fields to
/// send, in order, before the `file` part.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PresignedPost {
    pub url: String,
    pub fields: Vec<(String, String)>,
}

/// A presigned POST whose policy pins the bucket, the exact key, the content type and a
/// `content-length-range` of `[1, max_bytes]`. The policy document is serialised exactly as
/// botocore's `generate_presigned_post` does (Python `json.dumps`), conditions in its order, so
/// fields are byte-identical to botocore's for the same inputs.
pub fn presign_post(
    cfg: &S3Config,
    key: &str,
    content_type: &str,
    max_bytes: u64,
    now: SystemTime,
    expires: Duration,
) -> Result<PresignedPost, S3Error> {
    check_expiry(expires)?;
    let date = amz_date(now);
    let day = date.get(..8).unwrap_or_default();
    let credential = format!("{}/{day}/{}/s3/aws4_request", cfg.access_key_id, cfg.region);
    let expiration = crate::rfc3339::seconds(crate::ports::later(now, expires));
    let eq = |k: &str, v: &str| format!("{{{}: {}}}", py_json_str(k), py_json_str(v));
    let conditions = [
        eq("Content-Type", content_type),
        format!("[\"content-length-range\", 1, {max_bytes}]"),
        eq("bucket", &cfg.bucket),
        eq("key", key),
        eq("x-amz-algorithm", "AWS4-HMAC-SHA256"),
        eq("x-amz-credential", &credential),
        eq("x-amz-date", &date),
    ];
    let policy = format!(
        "{{\"expiration\": {}, \"conditions\": [{}]}}",
        py_json_str(&expiration),
        conditions.join(", ")
    );
    let policy = Base64::encode_string(policy.as_bytes());
    let signing_key =
        cfg.signing_keys
            .signing_key(cfg.secret_access_key.expose(), day, &cfg.region, "s3");
    let signature = v4::calculate_signature(signing_key, policy.as_bytes());
    let fields = [
        ("Content-Type", content_type),
        ("key", key),
        ("x-amz-algorithm", "AWS4-HMAC-SHA256"),
        ("x-amz-credential", &credential),
        ("x-amz-date", &date),
        ("policy", &policy),
        ("x-amz-signature", &signature),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    Ok(PresignedPost {
        url: url(cfg, None)?.to_string(),
        fields,
    })
}

/// A JSON string as Python's `json.dumps` writes it (`ensure_ascii`: non-ASCII as `\uXXXX`).
fn py_json_str(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c if (' '..='~').contains(&c) => out.push(c),
            c => {
                let mut units = [0u16; 2];
                for u in c.encode_utf16(&mut units) {
                    out.push_str(&format!("\\u{u:04x}"));
                }
            }
        }
    }
    out.push('"');
    out
}

/// What a `HEAD` of an object tells.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectInfo {
    pub size: u64,
    pub content_type: Option<String>,
    pub etag: Option<String>,
}

fn object_request(cfg: &S3Config, method: Method, key: &str) -> Result<Request<Bytes>, S3Error> {
    let mut req = Request::builder()
        .method(method.clone())
        .uri(url(cfg, Some(&uri_encode(key, true)))?);
    if method == Method::DELETE || method == Method::PUT {
        // An empty DELETE (or CopyObject PUT) must say so: without it some clients (wasi:http)
        // send a chunked body and S3 answers 411 Length Required.
        req = req.header(header::CONTENT_LENGTH, "0");
    }
    req.body(Bytes::new())
        .map_err(|e| S3Error::Signing(e.to_string()))
}

/// Signed `HEAD` of an object: `None` when there is no such object.
pub async fn head_object<P: HttpClient + Clock>(
    platform: &P,
    cfg: &S3Config,
    key: &str,
) -> Result<Option<ObjectInfo>, S3Error> {
    let mut req = object_request(cfg, Method::HEAD, key)?;
    sign_request(cfg, &mut req, platform.now())?;
    let resp = platform
        .send_within(req, cfg.timeout)
        .await
        .map_err(S3Error::Unavailable)?;
    let status = resp.status();
    if status == http::StatusCode::NOT_FOUND {
        return Ok(None);
    }
    if !status.is_success() {
        return Err(S3Error::Status(status.as_u16()));
    }
    let text = |name: header::HeaderName| {
        resp.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let size = text(header::CONTENT_LENGTH)
        .and_then(|v| v.trim().parse::<u64>().ok())
        .ok_or_else(|| S3Error::Signing("HEAD answered without a Content-Length".into()))?;
    Ok(Some(ObjectInfo {
        size,
        content_type: text(header::CONTENT_TYPE),
        etag: text(header::ETAG),
    }))
}

/// Signed `DELETE` of an object. Deleting a missing object succeeds, as on S3.
pub async fn delete_object<P: HttpClient + Clock>(
    platform: &P,
    cfg: &S3Config,
    key: &str,
) -> Result<(), S3Error> {
    let mut req = object_request(cfg, Method::DELETE, key)?;
    sign_request(cfg, &mut req, platform.now())?;
    let resp = platform
        .send_within(req, cfg.timeout)
        .await
        .map_err(S3Error::Unavailable)?;
    let status = resp.status();
    if status.is_success() || status == http::StatusCode::NOT_FOUND {
        Ok(())
    } else {
        Err(S3Error::Status(status.as_u16()))
    }
}

/// Signed server-side copy (`CopyObject`: a `PUT` of `to` with `x-amz-copy-source`) of `from`
/// to `to` in the bucket, metadata (content type) copied. With `if_match`, S3 copies only if the
/// source still has that ETag (`x-amz-copy-source-if-match`), so what is copied is what was
/// checked. `Ok(false)`: the source is missing or changed (404 or 412).
pub async fn copy_object<P: HttpClient + Clock>(
    platform: &P,
    cfg: &S3Config,
    from: &str,
    to: &str,
    if_match: Option<&str>,
) -> Result<bool, S3Error> {
    let mut req = object_request(cfg, Method::PUT, to)?;
    let source = format!("/{}/{}", cfg.bucket, uri_encode(from, true));
    let value = |v: &str| {
        http::HeaderValue::from_str(v).map_err(|e| S3Error::Signing(format!("header value: {e}")))
    };
    req.headers_mut()
        .insert("x-amz-copy-source", value(&source)?);
    if let Some(etag) = if_match {
        req.headers_mut()
            .insert("x-amz-copy-source-if-match", value(etag)?);
    }
    sign_request(cfg, &mut req, platform.now())?;
    let resp = platform
        .send_within(req, cfg.timeout)
        .await
        .map_err(S3Error::Unavailable)?;
    let status = resp.status();
    if status == http::StatusCode::NOT_FOUND || status == http::StatusCode::PRECONDITION_FAILED {
        return Ok(false);
    }
    if !status.is_success() {
        return Err(S3Error::Status(status.as_u16()));
    }
    // S3 may answer 200 and report a failure in the body (a copy that failed midway).
    let body = std::str::from_utf8(resp.body()).unwrap_or_default();
    if body.contains("<Error>") {
        return Err(S3Error::Protocol(
            "CopyObject answered 200 with an error".into(),
        ));
    }
    Ok(true)
}

/// Signed `HEAD` of the bucket: proves the endpoint, the credentials and the bucket.
pub async fn head_bucket<P: HttpClient + Clock>(
    platform: &P,
    cfg: &S3Config,
) -> Result<(), S3Error> {
    let mut req = Request::builder()
        .method(Method::HEAD)
        .uri(url(cfg, None)?)
        .body(Bytes::new())
        .map_err(|e| S3Error::Signing(e.to_string()))?;
    sign_request(cfg, &mut req, platform.now())?;
    let resp = platform
        .send_within(req, cfg.timeout)
        .await
        .map_err(S3Error::Unavailable)?;
    if resp.status().is_success() {
        Ok(())
    } else {
        Err(S3Error::Status(resp.status().as_u16()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{tests::dev_settings, Config};
    use std::time::Duration;

    fn cfg(path_style: bool) -> S3Config {
        let mut m = dev_settings();
        if !path_style {
            m.remove("S3_ENDPOINT");
            m.insert("S3_FORCE_PATH_STYLE", "false".into());
        }
        Config::load(&|k: &str| m.get(k).cloned()).unwrap().s3
    }

    #[test]
    fn urls_follow_the_addressing_style() {
        assert_eq!(
            url(&cfg(true), None).unwrap(),
            "http://127.0.0.1:9000/edgefront-dev"
        );
        assert_eq!(
            url(&cfg(true), Some("t/f/a%20b.png")).unwrap(),
            "http://127.0.0.1:9000/edgefront-dev/t/f/a%20b.png"
        );
        assert_eq!(
            url(&cfg(false), None).unwrap(),
            "https://edgefront-dev.s3.us-east-1.amazonaws.com/"
        );
    }

    #[test]
    fn presigned_urls_sign_what_they_pin_and_refuse_impossible_expiries() {
        let c = cfg(true);
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(1_440_938_160);
        let ttl = Duration::from_secs(900);
        let put = presign_put(&c, "t/f/a.png", "image/png", 10, t, ttl).unwrap();
        assert!(put.starts_with(
            "http://127.0.0.1:9000/edgefront-dev/t/f/a.png?X-Amz-Algorithm=AWS4-HMAC-SHA256&\
             X-Amz-Credential=AKIDEXAMPLE%2F20150830%2Fus-east-1%2Fs3%2Faws4_request&\
             X-Amz-Date=20150830T123600Z&X-Amz-Expires=900&\
             X-Amz-SignedHeaders=content-length%3Bcontent-type%3Bhost&X-Amz-Signature="
        ));
        // Another content type, or another length, is another signature.
        let other = presign_put(&c, "t/f/a.png", "text/html", 10, t, ttl).unwrap();
        assert_ne!(put, other);
        let longer = presign_put(&c, "t/f/a.png", "image/png", 11, t, ttl).unwrap();
        assert_ne!(put, longer);
        let get = presign_get(&c, "t/f/a.png", t, Duration::from_secs(60), Some("inline")).unwrap();
        assert!(get.contains("/t/f/a.png?response-content-disposition=inline&X-Amz-Algorithm="));
        assert!(get.contains("X-Amz-SignedHeaders=host&"));
        for bad in [Duration::ZERO, MAX_PRESIGN_EXPIRY + Duration::from_secs(1)] {
            assert!(matches!(
                presign_get(&c, "k", t, bad, None),
                Err(S3Error::Signing(_))
            ));
            assert!(presign_post(&c, "k", "image/png", 1, t, bad).is_err());
        }
        assert!(presign_get(&c, "k", t, MAX_PRESIGN_EXPIRY, None).is_ok());
    }

    #[test]
    fn post_policies_pin_bucket_key_type_and_size() {
        let c = cfg(false);
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(1_440_938_160);
        let post =
            presign_post(&c, "t/f/a.png", "image/png", 5, t, Duration::from_secs(900)).unwrap();
        assert_eq!(
            post.url,
            "https://edgefront-dev.s3.us-east-1.amazonaws.com/"
        );
        let names: Vec<&str> = post.fields.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(
            names,
            [
                "Content-Type",
                "key",
                "x-amz-algorithm",
                "x-amz-credential",
                "x-amz-date",
                "policy",
                "x-amz-signature"
            ]
        );
        let policy = &post.fields[5].1;
        let doc: serde_json::Value =
            serde_json::from_slice(&Base64::decode_vec(policy).unwrap()).unwrap();
        assert_eq!(doc["expiration"], "2015-08-30T12:51:00Z");
        assert_eq!(
            doc["conditions"],
            serde_json::json!([
                {"Content-Type": "image/png"}, ["content-length-range", 1, 5],
                {"bucket": "edgefront-dev"}, {"key": "t/f/a.png"},
                {"x-amz-algorithm": "AWS4-HMAC-SHA256"},
                {"x-amz-credential": "AKIDEXAMPLE/20150830/us-east-1/s3/aws4_request"},
                {"x-amz-date": "20150830T123600Z"}
            ])
        );
        // The signature is over the base64 policy with the SigV4 signing key.
        let key = v4::generate_signing_key(c.secret_access_key.expose(), t, "us-east-1", "s3");
        assert_eq!(
            post.fields[6].1,
            v4::calculate_signature(key, policy.as_bytes())
        );
        assert_eq!(py_json_str("é\"\u{1F600}"), "\"\\u00e9\\\"\\ud83d\\ude00\"");
    }

    #[test]
    fn signing_is_deterministic_for_a_given_time_and_changes_with_it() {
        let c = cfg(true);
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(1_440_938_160);
        let sign_at = |t| {
            let mut req = Request::builder()
                .method(Method::HEAD)
                .uri(url(&c, None).unwrap())
                .body(Bytes::new())
                .unwrap();
            sign_request(&c, &mut req, t).unwrap();
            req
        };
        let a = sign_at(t);
        let auth = a.headers()["authorization"].to_str().unwrap().to_owned();
        assert!(auth.starts_with(
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/s3/aws4_request"
        ));
        assert!(auth.contains("SignedHeaders=host;x-amz-content-sha256;x-amz-date"));
        assert_eq!(a.headers()["x-amz-date"], "20150830T123600Z");
        assert_eq!(
            a.headers()["x-amz-content-sha256"],
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(sign_at(t).headers()["authorization"], auth.as_str());
        assert_ne!(
            sign_at(t + Duration::from_secs(1)).headers()["authorization"],
            auth.as_str()
        );
    }
}
