//! Successful responses: a small builder with named cache policies, and [`IntoReply`], what a
//! handler may return. Problems are rendered by `error`; this module renders the rest.

use std::time::Duration;

use bytes::Bytes;
use http::{header, HeaderMap, HeaderName, HeaderValue, Response, StatusCode};
use serde::Serialize;
use siphasher::sip128::SipHasher13;

use crate::body::Body;
use crate::error::ApiError;
use crate::ids::hex;
use crate::input::{etag_matches, header_str};
use crate::json_writer::JsonObject;

/// How caches may keep a response. Each policy is one `Cache-Control` value, named once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cache {
    /// Nothing may keep it (health, streamed chat).
    NoStore,
    /// Only the caller's browser, and never stored: it carries bearer credentials such as
    /// presigned URLs, or someone's own data.
    Private,
    /// The caller's browser may keep it but must revalidate (admin documents with an ETag).
    Revalidate,
    /// Shared caches and CDNs may keep it `max_age`, and serve it stale five times as long
    /// while revalidating (the public storefront).
    Public { max_age: Duration },
}

impl Cache {
    /// The `Cache-Control` value.
    pub fn header_value(self) -> HeaderValue {
        match self {
            Self::NoStore => HeaderValue::from_static("no-store"),
            Self::Private => HeaderValue::from_static("private, no-store"),
            Self::Revalidate => HeaderValue::from_static("private, no-cache"),
            Self::Public { max_age } => {
                let s = max_age.as_secs();
                crate::request_headers::header_value(&format!(
                    "public, max-age={s}, stale-while-revalidate={}",
                    s.saturating_mul(5)
                ))
                .unwrap_or(HeaderValue::from_static("no-store"))
            }
        }
    }
}

/// A JSON (or empty) response under construction.
#[derive(Debug)]
pub struct Reply {
    status: StatusCode,
    body: Result<Bytes, String>,
    headers: http::HeaderMap,
    json: bool,
}

impl Reply {
    /// `status` with `value` as its JSON body.
    pub fn json<T: Serialize + ?Sized>(status: StatusCode, value: &T) -> Self {
        let body = serde_json::to_vec(value).map(Bytes::from);
        Self::new(status, body.map_err(|e| e.to_string()), true)
    }

    /// A reply with no headers yet; `json` when the body is a JSON document.
    fn new(status: StatusCode, body: Result<Bytes, String>, json: bool) -> Self {
        Self {
            status,
            body,
            headers: http::HeaderMap::new(),
            json,
        }
    }

    /// `200 OK` with a JSON body.
    pub fn ok<T: Serialize + ?Sized>(value: &T) -> Self {
        Self::json(StatusCode::OK, value)
    }

    /// `200 OK` with a JSON body written by [`JsonObject`] (the answers of the hottest routes,
    /// which `serde_json` would write through several layers per member).
    pub fn ok_written(body: JsonObject) -> Self {
        Self::new(StatusCode::OK, Ok(Bytes::from(body.finish_bytes())), true)
    }

    /// `201 Created` at `location`.
    pub fn created<T: Serialize + ?Sized>(location: &str, value: &T) -> Self {
        Self::json(StatusCode::CREATED, value).header(header::LOCATION, location)
    }

    /// `204 No Content`.
    pub fn no_content() -> Self {
        Self::new(StatusCode::NO_CONTENT, Ok(Bytes::new()), false)
    }

    pub fn cache(self, policy: Cache) -> Self {
        self.header_value(header::CACHE_CONTROL, policy.header_value())
    }

    /// Adds a header; a value that is not a valid header is left out (values come from our
    /// own ids and tags, never from clients).
    pub fn header(self, name: impl Into<HeaderName>, value: &str) -> Self {
        match crate::request_headers::header_value(value) {
            Ok(v) => self.header_value(name, v),
            Err(_) => self,
        }
    }

    fn header_value(mut self, name: impl Into<HeaderName>, value: HeaderValue) -> Self {
        self.headers.insert(name.into(), value);
        self
    }

    pub fn etag(self, tag: &str) -> Self {
        self.header(header::ETAG, tag)
    }

    /// A public, cacheable answer: its ETag is a digest of the body ([`body_tag`]), and a
    /// client that has that body already (`If-None-Match`) gets `304 Not Modified` without it.
    pub fn public(self, max_age: Duration, if_none_match: Option<&str>) -> Self {
        let Ok(body) = &self.body else {
            return self;
        };
        let etag = body_tag(body);
        self.tagged_public(&etag, max_age, if_none_match)
    }

    /// `200 OK` with `body`, a JSON document whose tag ([`body_tag`]) is known already, made
    /// public as [`Reply::public`] makes it: for an answer kept in memory ([`crate::answers`]).
    pub fn public_json(
        body: Bytes,
        etag: &str,
        max_age: Duration,
        if_none_match: Option<&str>,
    ) -> Self {
        Self::new(StatusCode::OK, Ok(body), true).tagged_public(etag, max_age, if_none_match)
    }

    fn tagged_public(self, etag: &str, max_age: Duration, if_none_match: Option<&str>) -> Self {
        let mut reply = self.etag(etag).cache(Cache::Public { max_age });
        if etag_matches(if_none_match, etag) {
            reply.status = StatusCode::NOT_MODIFIED;
            reply.body = Ok(Bytes::new());
            reply.json = false;
        }
        reply
    }

    pub fn status(&self) -> StatusCode {
        self.status
    }
}

/// The key of [`body_tag`]'s SipHash. Fixed, so every isolate and every deployment gives a
/// body the same tag; it is not a secret.
const BODY_TAG_KEY: (u64, u64) = (0x6564_6765_6672_6f6e, 0x7420_6574_6167_2031);

/// A strong ETag for a body: `"` + 32 hex digits + `"`, the 128-bit SipHash-1-3 of its bytes.
/// A tag only has to change when the body does: two different bodies share one by accident
/// with odds of about 2⁻¹²⁸ a pair. Whoever could search for a colliding body already writes
/// what the body says (a tenant's own catalog), so no collision resistance against them is
/// needed, and SipHash is ≈ 10× cheaper than the SHA-256 it replaced (2.5% of the
/// storefront's V8 samples for a 20-item page; BENCHMARKS.md, change 45).
pub fn body_tag(body: &[u8]) -> String {
    let (k0, k1) = BODY_TAG_KEY;
    let digest = SipHasher13::new_with_keys(k0, k1).hash(body).as_bytes();
    let mut tag = String::with_capacity(34);
    tag.push('"');
    tag.push_str(&hex(&digest));
    tag.push('"');
    tag
}

/// What a handler returns.
pub trait IntoReply<'a> {
    fn into_reply(self) -> Result<Response<Body<'a>>, ApiError>;
}

impl<'a> IntoReply<'a> for Reply {
    fn into_reply(self) -> Result<Response<Body<'a>>, ApiError> {
        let body = self
            .body
            .map_err(|e| ApiError::upstream(format!("cannot encode the response: {e}")))?;
        let mut resp = Response::new(Body::Full(body));
        *resp.status_mut() = self.status;
        // The reply's own map becomes the answer's: one map a request, not a second one the
        // first is copied into.
        let mut headers = self.headers;
        if self.json {
            headers.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
        }
        *resp.headers_mut() = headers;
        Ok(resp)
    }
}

impl<'a> IntoReply<'a> for Response<Body<'a>> {
    fn into_reply(self) -> Result<Response<Body<'a>>, ApiError> {
        Ok(self)
    }
}

/// A header map as JSON for a runtime that builds its `Headers` from one `JSON.parse` (the
/// Workers adapter): a record, `{"name": "value", …}`, with a repeated name's values joined by
/// `", "` (RFC 9110 §5.3). workerd builds `Headers` from a record about twice as fast as from
/// `[[name, value], …]` pairs (≈ 25 µs a request for six headers; BENCHMARKS.md, change 28).
/// `Set-Cookie` cannot be joined, so a map that repeats it is written as pairs. Values that are
/// not visible ASCII are left out, as the runtime's `Headers` would refuse them.
pub fn headers_json(map: &HeaderMap) -> Result<String, serde_json::Error> {
    let mut record = JsonObject::with_capacity(48 * map.keys_len());
    // One pass: `iter` gives each name's values one after another, so a name is written once,
    // its values joined, with no lookup of it by name.
    let mut current: Option<(&HeaderName, std::borrow::Cow<'_, str>)> = None;
    let mut cookies = 0;
    for (name, value) in map {
        if name == header::SET_COOKIE {
            cookies += 1;
            if cookies > 1 {
                return header_pairs_json(map);
            }
        }
        let Some(value) = header_str(value) else {
            continue;
        };
        match &mut current {
            Some((same, joined)) if *same == name => {
                let joined = joined.to_mut();
                joined.push_str(", ");
                joined.push_str(value);
            }
            _ => {
                if let Some((done, joined)) = current.replace((name, value.into())) {
                    record.str(done.as_str(), &joined);
                }
            }
        }
    }
    if let Some((done, joined)) = current {
        record.str(done.as_str(), &joined);
    }
    Ok(record.finish())
}

/// [`headers_json`] for a map that repeats `Set-Cookie`: `[[name, value], …]`, one pair per
/// value, in order.
fn header_pairs_json(map: &HeaderMap) -> Result<String, serde_json::Error> {
    let pairs: Vec<(&str, &str)> = map
        .iter()
        .filter_map(|(name, value)| Some((name.as_str(), header_str(value)?)))
        .collect();
    serde_json::to_string(&pairs)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&'static str, &[u8])]) -> HeaderMap {
        let mut m = HeaderMap::new();
        for (k, v) in pairs {
            m.append(*k, HeaderValue::from_bytes(v).unwrap());
        }
        m
    }

    #[test]
    fn headers_cross_as_a_record_with_repeated_names_joined() {
        let m = map(&[
            ("content-type", b"application/json"),
            ("vary", b"Accept-Encoding"),
            ("vary", b"Origin"),
            ("x-request-id", b"ab12"),
            ("set-cookie", b"ef_v=1; Path=/"),
        ]);
        let v: serde_json::Value = serde_json::from_str(&headers_json(&m).unwrap()).unwrap();
        assert_eq!(
            v,
            serde_json::json!({
                "content-type": "application/json",
                "vary": "Accept-Encoding, Origin",
                "x-request-id": "ab12",
                "set-cookie": "ef_v=1; Path=/",
            })
        );
        // A name's values are joined however they were interleaved with other names.
        let m = map(&[("vary", b"A"), ("x-request-id", b"1"), ("vary", b"B")]);
        assert_eq!(
            headers_json(&m).unwrap(),
            r#"{"vary":"A, B","x-request-id":"1"}"#
        );
    }

    #[test]
    fn repeated_cookies_and_unsendable_values_are_kept_apart() {
        // Two cookies cannot share one line: pairs, in order, one per value.
        let m = map(&[
            ("set-cookie", b"a=1"),
            ("content-type", b"text/plain"),
            ("set-cookie", b"b=2"),
        ]);
        let v: serde_json::Value = serde_json::from_str(&headers_json(&m).unwrap()).unwrap();
        assert_eq!(
            v,
            serde_json::json!([
                ["set-cookie", "a=1"],
                ["set-cookie", "b=2"],
                ["content-type", "text/plain"]
            ])
        );
        // A value `Headers` would refuse is left out; a name with none left is left out.
        let m = map(&[("x-a", b"caf\xc3\xa9"), ("x-b", b"ok"), ("x-b", b"\xff")]);
        assert_eq!(headers_json(&m).unwrap(), r#"{"x-b":"ok"}"#);
        let m = map(&[("x-c", b"\xff"), ("x-c", b"ok"), ("x-d", b"\xff")]);
        assert_eq!(headers_json(&m).unwrap(), r#"{"x-c":"ok"}"#);
    }

    #[test]
    fn policies_are_named_once() {
        let r = Reply::ok(&1).cache(Cache::Revalidate);
        assert_eq!(r.headers[header::CACHE_CONTROL], "private, no-cache");
        let r = Reply::ok(&1).cache(Cache::Public {
            max_age: Duration::from_secs(60),
        });
        assert_eq!(
            r.headers[header::CACHE_CONTROL],
            "public, max-age=60, stale-while-revalidate=300"
        );
    }

    /// `body_tag` of `{"items":[]}`.
    const PINNED_TAG: &str = "\"634cb51216e4c630c687cda311f9699f\"";

    #[test]
    fn body_tags_are_fixed_quoted_digests_that_follow_the_body() {
        // Pinned: a tag must be the same in every isolate and deployment, so the key is fixed.
        let tag = body_tag(br#"{"items":[]}"#);
        assert_eq!(tag, body_tag(br#"{"items":[]}"#));
        assert_eq!(tag.len(), 34);
        assert!(tag.starts_with('"') && tag.ends_with('"'));
        assert!(tag[1..33]
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));
        assert_eq!(tag, PINNED_TAG);
        assert_ne!(body_tag(br#"{"items":[1]}"#), tag);
        assert_ne!(body_tag(b""), tag);
    }

    #[test]
    fn public_replies_revalidate_to_304() {
        let age = Duration::from_secs(60);
        let first = Reply::ok(&serde_json::json!({"a": 1})).public(age, None);
        let tag = first.headers[header::ETAG].to_str().unwrap().to_owned();
        assert_eq!(first.status, StatusCode::OK);
        let again = Reply::ok(&serde_json::json!({"a": 1})).public(age, Some(&tag));
        assert_eq!(again.status, StatusCode::NOT_MODIFIED);
        assert_eq!(again.body.as_deref().unwrap(), b"");
        let changed = Reply::ok(&serde_json::json!({"a": 2})).public(age, Some(&tag));
        assert_eq!(changed.status, StatusCode::OK);
    }
}
