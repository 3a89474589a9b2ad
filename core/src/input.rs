//! Reading what clients send: JSON bodies checked member by member (every problem is reported,
//! not just the first), query strings, opaque cursors and `If-Match`/`If-None-Match` tags.
//! Handlers validate everything before they build a single SQL statement, so a rejected request
//! writes nothing.

use std::collections::BTreeMap;

use base64ct::{Base64UrlUnpadded, Encoding};
use bytes::{Bytes, BytesMut};
use futures_util::{Stream, StreamExt};
use http::{header, HeaderMap, Uri};
use serde_json::{Map, Value};

use crate::config::Config;
use crate::error::{ApiError, FieldError};

/// A request body type: reads itself from a JSON object, recording every problem in `o`
/// (which `finish` then reports as one 400). Returns `None` only after recording a problem.
pub trait FromJson: Sized {
    /// The largest body accepted (bytes); a larger one is 413 before it is parsed.
    const MAX_BODY: usize = 16 * 1024;

    /// A refusal that comes before any field is validated (a member over its own size limit
    /// is 413, like a body over the endpoint's).
    fn check(_: &JsonObject) -> Result<(), ApiError> {
        Ok(())
    }

    fn from_json(o: &mut JsonObject, cx: &BodyCx<'_>) -> Option<Self>;
}

/// How much of a refused body an adapter reads and throws away after its 413 has gone out, so
/// that a client still sending receives the answer instead of a connection reset (a server that
/// closes with unread data in its socket resets the connection, and the client can lose the
/// response with it; `wrangler dev`'s proxy turns an unread body into a 503). Discarded chunk by
/// chunk, so memory stays flat; past this the connection is dropped.
pub const LINGER_BYTES: usize = 8 * 1024 * 1024;

/// How much of a refused body an adapter whose runtime must not answer mid-upload (Workers:
/// `wrangler dev`'s proxy and keep-alive connections break when the answer overtakes the body)
/// reads off and drops *before* answering: a declared body up to [`LINGER_BYTES`] whole, a
/// chunked one up to that bound, and nothing of a declared body over it (the client waits for
/// no more than the head, as with `Expect: 100-continue`, and is answered at once).
pub fn drain_budget(headers: &HeaderMap) -> usize {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    match declared {
        Some(n) if n <= LINGER_BYTES as u64 => usize::try_from(n).unwrap_or(LINGER_BYTES),
        Some(_) => 0,
        None => LINGER_BYTES,
    }
}

/// The largest declared body an adapter may read whole, in one call to its runtime, instead of
/// chunk by chunk: the largest body any route accepts (`settings`' 64 KiB). A bigger one, or one
/// without `Content-Length`, streams, so a route refuses it without reading it.
pub const WHOLE_BODY_BYTES: u64 = 64 * 1024;

/// Whether the request's body is declared (`Content-Length`) at most [`WHOLE_BODY_BYTES`]: an
/// adapter may then read it in one piece. Its route's own limit applies all the same.
pub fn body_is_small(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .is_some_and(|n| n <= WHOLE_BODY_BYTES)
}

/// Reads and drops what is left of a body, at most `max` bytes (see [`LINGER_BYTES`]). A body
/// already read to its end costs nothing (pass a fused stream).
pub async fn discard<S, C, E>(chunks: &mut S, max: usize)
where
    S: Stream<Item = Result<C, E>> + Unpin,
    C: AsRef<[u8]>,
{
    let mut seen = 0usize;
    while seen < max {
        match chunks.next().await {
            Some(Ok(c)) => seen = seen.saturating_add(c.as_ref().len()),
            _ => return,
        }
    }
}

/// The body limit of a route whose handler reads no body, and of requests that match no route:
/// small, since nothing there is read, but room for the `{}` some clients always send.
pub const NO_BODY_LIMIT: usize = 1024;

/// Reads a request body from the runtime's chunks without ever holding more than `limit` bytes:
/// a declared `Content-Length` over the limit is 413 before the first chunk is read, and a body
/// without one (chunked) or longer than it claimed is 413 as soon as it crosses the limit. The
/// rest is never read: dropping `chunks` tells the runtime to stop. Adapters read every request
/// through this, before routing or authentication, so an oversized body costs neither.
/// `limit` is asked for only when there is a body to measure against it (a declared length,
/// or a first chunk): a request without one (most GETs) costs no route lookup here.
pub async fn read_body<S, C, E>(
    headers: &HeaderMap,
    chunks: &mut S,
    limit: impl FnOnce() -> usize,
) -> Result<Bytes, ApiError>
where
    S: Stream<Item = Result<C, E>> + Unpin,
    C: AsRef<[u8]>,
{
    // An unparsable length is left to the cap below (runtimes refuse those themselves).
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    // Without a declared length, a body is what the first chunk starts; none, no body.
    let first = match declared {
        Some(_) => None,
        None => match chunks.next().await {
            Some(first) => Some(first),
            None => return Ok(Bytes::new()),
        },
    };
    let limit = limit();
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(ApiError::payload_too_large(limit));
    }
    let expected = declared.map_or(0, |n| usize::try_from(n).unwrap_or(limit));
    let mut body = BytesMut::with_capacity(expected.min(limit));
    let mut chunks = futures_util::stream::iter(first).chain(chunks);
    while let Some(chunk) = chunks.next().await {
        // The runtime's text says nothing useful to the client (who cut the body off).
        let chunk = chunk.map_err(|_| ApiError::bad_request("the body ended early"))?;
        let chunk = chunk.as_ref();
        if chunk.len() > limit.saturating_sub(body.len()) {
            return Err(ApiError::payload_too_large(limit));
        }
        body.extend_from_slice(chunk);
    }
    Ok(body.freeze())
}

/// What a body or query reader may need to know besides the request itself.
pub struct BodyCx<'c> {
    pub config: &'c Config,
    /// Signed in (a principal), as opposed to an anonymous visitor.
    pub authenticated: bool,
}

/// A query-string type: reads its parameters, recording problems in `q`.
pub trait FromQuery: Sized {
    fn from_query(q: &mut QueryString, cx: &BodyCx<'_>) -> Self;
}

/// A JSON object body, consumed field by field. Members not taken by the time of
/// [`JsonObject::finish`] are reported as `unknown_field`.
pub struct JsonObject {
    map: Map<String, Value>,
    errors: Vec<FieldError>,
    /// Where this object sits in the body (`customer.`, `items[2].`), for error field names.
    prefix: String,
}

impl JsonObject {
    /// Checks the media type and size, then parses an object. Size is checked first, so an
    /// oversized body is never parsed.
    pub fn parse(headers: &HeaderMap, body: &Bytes, limit: usize) -> Result<Self, ApiError> {
        if body.len() > limit {
            return Err(ApiError::payload_too_large(limit));
        }
        let json_type = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .map(|v| {
                let v = v.trim().to_ascii_lowercase();
                v == "application/json" || (v.starts_with("application/") && v.ends_with("+json"))
            });
        if json_type != Some(true) {
            return Err(ApiError::unsupported_media_type("application/json"));
        }
        match serde_json::from_slice::<Value>(body) {
            Ok(Value::Object(map)) => Ok(Self {
                map,
                errors: Vec::new(),
                prefix: String::new(),
            }),
            Ok(_) => Err(ApiError::field(
                "",
                "wrong_type",
                "the body must be a JSON object",
            )),
            Err(e) => Err(ApiError::field(
                "",
                "invalid_json",
                format!("the body is not valid JSON: {e}"),
            )),
        }
    }

    pub fn error(&mut self, field: &str, code: &'static str, message: impl Into<String>) {
        let name = if field.is_empty() {
            self.prefix.trim_end_matches('.').to_owned()
        } else {
            format!("{}{field}", self.prefix)
        };
        self.errors.push(FieldError::new(name, code, message));
    }

    /// A member that is itself an object, read the same way (errors name it `field.member`);
    /// hand it back with [`Self::absorb`] when done.
    pub fn object_member(&mut self, field: &str, required: bool) -> Option<JsonObject> {
        match self.take(field, required)? {
            Value::Object(map) => Some(JsonObject {
                map,
                errors: Vec::new(),
                prefix: format!("{}{field}.", self.prefix),
            }),
            _ => {
                self.error(field, "wrong_type", "must be an object");
                None
            }
        }
    }

    /// A member that is an array of objects, at most `max` long (and at least one when
    /// required); each element reads as `field[i].member`. An element that is not an object is
    /// reported and comes back as `None`, so the others are still checked.
    pub fn objects_member(
        &mut self,
        field: &str,
        required: bool,
        max: usize,
    ) -> Option<Vec<Option<JsonObject>>> {
        match self.take(field, required)? {
            Value::Array(items) if items.is_empty() && required => {
                self.error(field, "empty", "must have at least one item");
                None
            }
            Value::Array(items) if items.len() > max => {
                self.error(field, "too_long", format!("must have at most {max} items"));
                None
            }
            Value::Array(items) => {
                let mut out = Vec::with_capacity(items.len());
                for (i, v) in items.into_iter().enumerate() {
                    let prefix = format!("{}{field}[{i}].", self.prefix);
                    match v {
                        Value::Object(map) => out.push(Some(JsonObject {
                            map,
                            errors: Vec::new(),
                            prefix,
                        })),
                        _ => {
                            self.errors.push(FieldError::new(
                                prefix.trim_end_matches('.'),
                                "wrong_type",
                                "must be an object",
                            ));
                            out.push(None);
                        }
                    }
                }
                Some(out)
            }
            _ => {
                self.error(field, "wrong_type", "must be an array");
                None
            }
        }
    }

    /// Takes back a nested object's problems (and its unknown members).
    pub fn absorb(&mut self, mut nested: JsonObject) {
        let unknown: Vec<String> = nested.map.keys().cloned().collect();
        for k in unknown {
            nested.error(&k, "unknown_field", "is not a known field");
        }
        self.errors.append(&mut nested.errors);
    }

    /// The member as sent, without taking it.
    pub fn peek(&self, field: &str) -> Option<&Value> {
        self.map.get(field)
    }

    /// Whether the member is present (even as `null`).
    pub fn has(&self, field: &str) -> bool {
        self.map.contains_key(field)
    }

    fn take(&mut self, field: &str, required: bool) -> Option<Value> {
        match self.map.remove(field) {
            None if required => {
                self.error(field, "required", "is required");
                None
            }
            v => v,
        }
    }

    /// A string, trimmed; empty after trimming is an error. `max` counts characters.
    pub fn string(&mut self, field: &str, required: bool, max: usize) -> Option<String> {
        match self.take(field, required)? {
            Value::String(s) => {
                let t = s.trim();
                if t.is_empty() {
                    self.error(field, "empty", "must not be empty");
                    None
                } else if t.chars().count() > max {
                    self.error(
                        field,
                        "too_long",
                        format!("must be at most {max} characters"),
                    );
                    None
                } else if t.chars().any(|c| c.is_control() && c != '\n' && c != '\t') {
                    self.error(
                        field,
                        "invalid_characters",
                        "must not contain control characters",
                    );
                    None
                } else {
                    Some(t.to_owned())
                }
            }
            _ => {
                self.error(field, "wrong_type", "must be a string");
                None
            }
        }
    }

    /// A string taken as sent (no trimming, no character checks), for values the handler
    /// sanitises itself (file names). `max` counts characters and only bounds abuse.
    pub fn raw_string(&mut self, field: &str, required: bool, max: usize) -> Option<String> {
        match self.take(field, required)? {
            Value::String(s) if s.chars().count() > max => {
                self.error(
                    field,
                    "too_long",
                    format!("must be at most {max} characters"),
                );
                None
            }
            Value::String(s) => Some(s),
            _ => {
                self.error(field, "wrong_type", "must be a string");
                None
            }
        }
    }

    /// Like [`Self::string`] but `null` is a value: `Some(None)` clears the field.
    pub fn nullable_string(&mut self, field: &str, max: usize) -> Option<Option<String>> {
        if matches!(self.map.get(field), Some(Value::Null)) {
            self.map.remove(field);
            return Some(None);
        }
        self.string(field, false, max).map(Some)
    }

    /// Like [`Self::integer`] but `null` is a value: `Some(None)` (unlimited, cleared, …).
    pub fn nullable_integer(&mut self, field: &str, min: i64, max: i64) -> Option<Option<i64>> {
        if matches!(self.map.get(field), Some(Value::Null)) {
            self.map.remove(field);
            return Some(None);
        }
        self.integer(field, false, min, max).map(Some)
    }

    /// One of `allowed`.
    pub fn one_of(&mut self, field: &str, required: bool, allowed: &[&str]) -> Option<String> {
        match self.take(field, required)? {
            Value::String(s) if allowed.contains(&s.as_str()) => Some(s),
            _ => {
                self.error(
                    field,
                    "invalid_value",
                    format!("must be one of: {}", allowed.join(", ")),
                );
                None
            }
        }
    }

    /// `true` or `false` (nothing else reads as one: not `"true"`, not `1`).
    pub fn boolean(&mut self, field: &str, required: bool) -> Option<bool> {
        match self.take(field, required)? {
            Value::Bool(b) => Some(b),
            _ => {
                self.error(field, "wrong_type", "must be true or false");
                None
            }
        }
    }

    /// A whole number in `min..=max`. `2.0` is not accepted as an integer.
    pub fn integer(&mut self, field: &str, required: bool, min: i64, max: i64) -> Option<i64> {
        match self.take(field, required)? {
            Value::Number(n) => match n.as_i64() {
                Some(i) if (min..=max).contains(&i) => Some(i),
                Some(_) => {
                    self.error(
                        field,
                        "out_of_range",
                        format!("must be between {min} and {max}"),
                    );
                    None
                }
                None => {
                    self.error(field, "wrong_type", "must be a whole number");
                    None
                }
            },
            _ => {
                self.error(field, "wrong_type", "must be a whole number");
                None
            }
        }
    }

    /// A non-negative decimal with at most `scale` fractional and `int_digits` integer digits,
    /// as a JSON number or string; returned as a canonical decimal string for Postgres.
    pub fn decimal(
        &mut self,
        field: &str,
        required: bool,
        int_digits: usize,
        scale: usize,
    ) -> Option<String> {
        let text = match self.take(field, required)? {
            // serde_json prints the shortest text that round-trips, which for a value with at
            // most 15 significant digits is the decimal the client wrote.
            Value::Number(n) => n.to_string(),
            Value::String(s) => s,
            _ => {
                self.error(field, "wrong_type", "must be a decimal number");
                return None;
            }
        };
        match parse_decimal(&text, int_digits, scale) {
            Ok(d) => Some(d),
            Err((code, msg)) => {
                self.error(field, code, msg);
                None
            }
        }
    }

    /// An array of strings each accepted by `check`, at most `max` long.
    pub fn string_array(
        &mut self,
        field: &str,
        max: usize,
        check: impl Fn(&str) -> bool,
        what: &str,
    ) -> Option<Vec<String>> {
        match self.take(field, false)? {
            Value::Array(items) if items.len() <= max => {
                let out: Option<Vec<String>> = items
                    .into_iter()
                    .map(|v| match v {
                        Value::String(s) if check(&s) => Some(s),
                        _ => None,
                    })
                    .collect();
                if out.is_none() {
                    self.error(field, "invalid_value", format!("every item must be {what}"));
                }
                out
            }
            Value::Array(_) => {
                self.error(field, "too_long", format!("must have at most {max} items"));
                None
            }
            _ => {
                self.error(field, "wrong_type", "must be an array");
                None
            }
        }
    }

    /// Any JSON object (settings, metadata), serialised at most `max_bytes` long.
    pub fn object(&mut self, field: &str, max_bytes: usize) -> Option<Map<String, Value>> {
        match self.take(field, false)? {
            Value::Object(m) if Value::Object(m.clone()).to_string().len() <= max_bytes => Some(m),
            Value::Object(_) => {
                self.error(
                    field,
                    "too_long",
                    format!("must be at most {max_bytes} bytes"),
                );
                None
            }
            _ => {
                self.error(field, "wrong_type", "must be an object");
                None
            }
        }
    }

    /// No problem recorded and no member left unread (so far).
    pub fn is_clean(&self) -> bool {
        self.errors.is_empty() && self.map.is_empty()
    }

    /// Reports unknown members and every error collected so far.
    pub fn finish(mut self) -> Result<(), ApiError> {
        let unknown: Vec<String> = self.map.keys().cloned().collect();
        for k in unknown {
            self.error(&k, "unknown_field", "is not a known field");
        }
        if self.errors.is_empty() {
            Ok(())
        } else {
            Err(ApiError::validation(self.errors))
        }
    }
}

/// Parses a non-negative decimal with bounded digits into canonical text (`"12.5"`, `"0"`).
pub fn parse_decimal(
    text: &str,
    int_digits: usize,
    scale: usize,
) -> Result<String, (&'static str, String)> {
    let t = text.trim();
    if t.starts_with('-') {
        return Err(("out_of_range", "must not be negative".into()));
    }
    let (int, frac) = t.split_once('.').unwrap_or((t, ""));
    let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if int.is_empty() || !digits(int) || !digits(frac) || (t.contains('.') && frac.is_empty()) {
        return Err((
            "wrong_type",
            "must be a decimal number such as 12.50".into(),
        ));
    }
    let frac = frac.trim_end_matches('0');
    if frac.len() > scale {
        return Err((
            "too_many_decimals",
            format!("must have at most {scale} decimal places"),
        ));
    }
    let int = int.trim_start_matches('0');
    if int.len() > int_digits {
        return Err(("out_of_range", format!("must be less than 10^{int_digits}")));
    }
    let int = if int.is_empty() { "0" } else { int };
    Ok(if frac.is_empty() {
        int.to_owned()
    } else {
        format!("{int}.{frac}")
    })
}

/// Query parameters, decoded. Repeated parameters keep the last value.
pub struct QueryString {
    params: BTreeMap<String, String>,
    errors: Vec<FieldError>,
}

impl QueryString {
    pub fn parse(uri: &Uri) -> Self {
        let mut params = BTreeMap::new();
        for pair in uri
            .query()
            .unwrap_or("")
            .split('&')
            .filter(|p| !p.is_empty())
        {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            params.insert(percent_decode(k), percent_decode(v));
        }
        Self {
            params,
            errors: Vec::new(),
        }
    }

    pub fn error(&mut self, field: &str, code: &'static str, message: impl Into<String>) {
        self.errors.push(FieldError::new(field, code, message));
    }

    /// A parameter as sent (decoded), without checks.
    pub fn raw(&mut self, name: &str) -> Option<String> {
        self.params.remove(name)
    }

    /// A non-empty string of at most `max` characters.
    pub fn string(&mut self, name: &str, max: usize) -> Option<String> {
        let v = self.params.remove(name)?;
        let v = v.trim().to_owned();
        if v.is_empty() {
            return None;
        }
        if v.chars().count() > max || v.chars().any(char::is_control) {
            self.error(
                name,
                "invalid_value",
                format!("must be at most {max} printable characters"),
            );
            return None;
        }
        Some(v)
    }

    /// An RFC 3339 time (`2026-12-01T00:00:00Z`, any offset, read as UTC) in the years the
    /// database and every client agree on, 1970 to 9999.
    pub fn time(&mut self, name: &str) -> Option<std::time::SystemTime> {
        /// 10000-01-01T00:00:00Z.
        const YEAR_10000: std::time::Duration = std::time::Duration::from_secs(253_402_300_800);
        let raw = self.string(name, 64)?;
        let before_10000 = |t: std::time::SystemTime| {
            t.duration_since(std::time::UNIX_EPOCH)
                .is_ok_and(|d| d < YEAR_10000)
        };
        match crate::rfc3339::parse(&raw) {
            Some(t) if before_10000(t) => Some(t),
            _ => {
                self.error(
                    name,
                    "invalid_value",
                    "must be an RFC 3339 time such as 2026-12-01T00:00:00Z",
                );
                None
            }
        }
    }

    pub fn one_of(&mut self, name: &str, allowed: &[&str]) -> Option<String> {
        let v = self.params.remove(name)?;
        if allowed.contains(&v.as_str()) {
            Some(v)
        } else {
            self.error(
                name,
                "invalid_value",
                format!("must be one of: {}", allowed.join(", ")),
            );
            None
        }
    }

    /// `limit`-style integers in `min..=max`, else `default`.
    pub fn integer(&mut self, name: &str, min: i64, max: i64, default: i64) -> i64 {
        let Some(v) = self.params.remove(name) else {
            return default;
        };
        match v.parse::<i64>() {
            Ok(i) if (min..=max).contains(&i) => i,
            _ => {
                self.error(
                    name,
                    "out_of_range",
                    format!("must be a whole number between {min} and {max}"),
                );
                default
            }
        }
    }

    /// An opaque cursor from an earlier page: decodes to the sort key it was made from.
    pub fn cursor(&mut self, name: &str) -> Option<Vec<String>> {
        let v = self.params.remove(name)?;
        match decode_cursor(&v) {
            Some(k) => Some(k),
            None => {
                self.error(name, "invalid_cursor", "is not a cursor this API issued");
                None
            }
        }
    }

    /// Unknown parameters are ignored (caches and analytics add their own); collected errors
    /// become one 400.
    pub fn finish(self) -> Result<(), ApiError> {
        if self.errors.is_empty() {
            Ok(())
        } else {
            Err(ApiError::validation(self.errors))
        }
    }
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = b
                    .get(i + 1..i + 3)
                    .and_then(|h| std::str::from_utf8(h).ok())
                    .and_then(|h| u8::from_str_radix(h, 16).ok());
                match hex {
                    Some(v) => {
                        out.push(v);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

const CURSOR_VERSION: &str = "c1";

/// Encodes a page's last sort key as an opaque token. It is not a secret (RLS confines any
/// forged cursor to the caller's own tenant) but clients must treat it as opaque.
pub fn encode_cursor(key: &[String]) -> String {
    let json = Value::from(
        std::iter::once(CURSOR_VERSION.to_owned())
            .chain(key.iter().cloned())
            .collect::<Vec<_>>(),
    );
    Base64UrlUnpadded::encode_string(json.to_string().as_bytes())
}

pub fn decode_cursor(token: &str) -> Option<Vec<String>> {
    if token.len() > 1024 {
        return None;
    }
    let raw = Base64UrlUnpadded::decode_vec(token).ok()?;
    let items: Vec<String> = serde_json::from_slice(&raw).ok()?;
    let (version, key) = items.split_first()?;
    (version == CURSOR_VERSION && !key.is_empty()).then(|| key.to_vec())
}

/// Entity tags from `If-Match`/`If-None-Match`: `*` or a list of (weak or strong) tags,
/// compared weakly.
pub fn etag_matches(header_value: Option<&str>, etag: &str) -> bool {
    let Some(v) = header_value else {
        return false;
    };
    let bare = |t: &str| {
        t.trim()
            .trim_start_matches("W/")
            .trim_matches('"')
            .to_owned()
    };
    let want = bare(etag);
    v.split(',').any(|t| t.trim() == "*" || bare(t) == want)
}

/// Longest email address accepted: the longest a mail path can carry (RFC 5321).
pub const MAX_EMAIL: usize = 254;

/// A deliverable-looking address, at most [`MAX_EMAIL`] long: one `@`; a local part of at most
/// 64 characters without spaces, quotes or brackets, no leading, trailing or doubled dot; a
/// domain of at least two dot-separated labels of letters, digits and inner hyphens (non-ASCII
/// letters allowed: internationalised addresses), each at most 63 long. Sending mail is the
/// real proof; this refuses what can never be one, and what would make a confusing invitation.
pub fn is_email(s: &str) -> bool {
    let Some((local, domain)) = s.split_once('@') else {
        return false;
    };
    let local_ok = (1..=64).contains(&local.chars().count())
        && !local.starts_with('.')
        && !local.ends_with('.')
        && !local.contains("..")
        && local.chars().all(|c| {
            c.is_ascii_alphanumeric()
                || "!#$%&'*+-/=?^_`{|}~.".contains(c)
                || (!c.is_ascii() && !c.is_control() && !c.is_whitespace())
        });
    let labels: Vec<&str> = domain.split('.').collect();
    let domain_ok = labels.len() >= 2
        && labels.iter().all(|l| {
            (1..=63).contains(&l.chars().count())
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.chars().all(|c| {
                    c.is_ascii_alphanumeric() || c == '-' || (!c.is_ascii() && c.is_alphanumeric())
                })
        });
    s.len() <= MAX_EMAIL && local_ok && domain_ok
}

/// An email address as stored and compared (`tenant_invitations.email` is lower-case): the
/// same lowering for the invitation's address and the accepting token's, so they meet.
pub fn normalize_email(s: &str) -> String {
    s.to_lowercase()
}

/// A header value as text, when it is visible ASCII (or tabs): `HeaderValue::to_str`'s answer,
/// checked a word at a time by std's UTF-8 and ASCII scans instead of a byte at a time. A
/// `HeaderValue` holds no control byte but the tab, so an ASCII value is a visible one.
pub fn header_str(value: &http::HeaderValue) -> Option<&str> {
    std::str::from_utf8(value.as_bytes())
        .ok()
        .filter(|s| s.is_ascii())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_str_answers_as_to_str_does() {
        for bytes in [
            &b"Bearer abc.def"[..],
            b"a\tb",
            b"",
            b"caf\xc3\xa9",
            b"\xff",
            b"~!\"\\",
        ] {
            let v = http::HeaderValue::from_bytes(bytes).unwrap();
            assert_eq!(header_str(&v), v.to_str().ok(), "{bytes:?}");
        }
    }

    #[test]
    fn emails_are_plausible_bounded_addresses() {
        for ok in [
            "a@b.co",
            "first.last+tag@sub.example.org",
            "o'brien@example.ie",
            "ü@bücher.de",
            &format!("{}@example.com", "x".repeat(64)),
        ] {
            assert!(is_email(ok), "{ok}");
        }
        for bad in [
            "",
            "a",
            "@b.co",
            "a@b",
            "a@.b",
            "a@b.",
            "a b@c.de",
            "a@b@c.de",
            ".a@b.co",
            "a.@b.co",
            "a..b@c.de",
            "\"a\"@b.co",
            "a@-b.co",
            "a@b-.co",
            "a@b_c.co",
            "<a@b.co>",
            "a@b..co",
            "a\u{0}@b.co",
            &format!("{}@example.com", "x".repeat(65)),
            &format!("a@{}.com", "x".repeat(64)),
            &format!("a@{}.com", vec!["x".repeat(60); 5].join(".")),
        ] {
            assert!(!is_email(bad), "{bad}");
        }
        assert_eq!(normalize_email("Ann@Example.COM"), "ann@example.com");
    }

    use http::HeaderValue;

    fn json_headers() -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json; charset=utf-8"),
        );
        h
    }

    fn codes(e: ApiError) -> Vec<(String, &'static str)> {
        assert_eq!(e.code(), "validation_failed", "{e:?}");
        e.field_errors()
            .iter()
            .map(|e| (e.field.clone(), e.code))
            .collect()
    }

    #[test]
    fn every_field_problem_is_reported_at_once() {
        let body = Bytes::from(r#"{"name":"  ","price":-1,"inventory":1.5,"extra":true}"#);
        let mut o = JsonObject::parse(&json_headers(), &body, 1024).unwrap();
        assert_eq!(o.string("name", true, 10), None);
        assert_eq!(o.decimal("price", true, 9, 3), None);
        assert_eq!(o.integer("inventory", false, 0, 10), None);
        assert_eq!(o.string("sku", true, 10), None);
        let got = codes(o.finish().unwrap_err());
        assert_eq!(
            got,
            vec![
                ("name".into(), "empty"),
                ("price".into(), "out_of_range"),
                ("inventory".into(), "wrong_type"),
                ("sku".into(), "required"),
                ("extra".into(), "unknown_field"),
            ]
        );
    }

    #[test]
    fn bodies_are_checked_for_size_type_and_shape() {
        let h = json_headers();
        let err = JsonObject::parse(&h, &Bytes::from(vec![b' '; 11]), 10).err();
        assert_eq!(
            err.map(|e| (e.code(), e.to_problem("/")["limit_bytes"].clone())),
            Some((crate::error::Code::PayloadTooLarge, serde_json::json!(10)))
        );
        let err = JsonObject::parse(&HeaderMap::new(), &Bytes::from("{}"), 10).err();
        assert_eq!(
            err.map(|e| e.code()),
            Some(crate::error::Code::UnsupportedMediaType)
        );
        assert_eq!(
            codes(
                JsonObject::parse(&h, &Bytes::from("[1]"), 10)
                    .err()
                    .unwrap()
            ),
            vec![("".into(), "wrong_type")]
        );
        assert_eq!(
            codes(JsonObject::parse(&h, &Bytes::from("{"), 10).err().unwrap()),
            vec![("".into(), "invalid_json")]
        );
    }

    #[test]
    fn decimals_are_exact_and_bounded() {
        assert_eq!(parse_decimal("12.500", 9, 3).unwrap(), "12.5");
        assert_eq!(parse_decimal("0007", 9, 3).unwrap(), "7");
        assert_eq!(parse_decimal("0.001", 9, 3).unwrap(), "0.001");
        assert_eq!(
            parse_decimal("0.0001", 9, 3).unwrap_err().0,
            "too_many_decimals"
        );
        assert_eq!(parse_decimal("1e3", 9, 3).unwrap_err().0, "wrong_type");
        assert_eq!(parse_decimal("1.", 9, 3).unwrap_err().0, "wrong_type");
        assert_eq!(parse_decimal("-0.5", 9, 3).unwrap_err().0, "out_of_range");
        assert_eq!(
            parse_decimal("1000000000", 9, 3).unwrap_err().0,
            "out_of_range"
        );
        assert_eq!(
            parse_decimal("999999999.999", 9, 3).unwrap(),
            "999999999.999"
        );
        // A JSON number goes through serde_json's shortest round-trip text.
        let body = Bytes::from(r#"{"a":19.99,"b":0.1,"c":1.2345}"#);
        let mut o = JsonObject::parse(&json_headers(), &body, 100).unwrap();
        assert_eq!(o.decimal("a", true, 9, 3).as_deref(), Some("19.99"));
        assert_eq!(o.decimal("b", true, 9, 3).as_deref(), Some("0.1"));
        assert_eq!(o.decimal("c", true, 9, 3), None);
    }

    #[test]
    fn cursors_round_trip_and_reject_forgeries() {
        let key = vec!["2026-01-01T00:00:00Z".to_owned(), "abc".to_owned()];
        let c = encode_cursor(&key);
        assert_eq!(decode_cursor(&c), Some(key));
        assert_eq!(decode_cursor("not-a-cursor"), None);
        assert_eq!(
            decode_cursor(&Base64UrlUnpadded::encode_string(b"[\"c9\",\"x\"]")),
            None
        );
        assert_eq!(
            decode_cursor(&Base64UrlUnpadded::encode_string(b"[\"c1\"]")),
            None
        );
    }

    #[test]
    fn queries_decode_and_validate() {
        let uri: Uri = "/x?q=red%20shoe&limit=500&status=bogus&cursor=zz&x=1"
            .parse()
            .unwrap();
        let mut q = QueryString::parse(&uri);
        assert_eq!(q.string("q", 100).as_deref(), Some("red shoe"));
        assert_eq!(q.integer("limit", 1, 100, 20), 20);
        assert_eq!(q.one_of("status", &["draft"]), None);
        assert_eq!(q.cursor("cursor"), None);
        let got = codes(q.finish().unwrap_err());
        assert_eq!(got.len(), 3);
        assert_eq!(percent_decode("a+b%2Fc%"), "a b/c%");
    }

    #[test]
    fn entity_tags_compare_weakly() {
        assert!(etag_matches(Some("\"v3\""), "\"v3\""));
        assert!(etag_matches(Some("W/\"v3\", \"v4\""), "\"v4\""));
        assert!(etag_matches(Some("*"), "\"v1\""));
        assert!(!etag_matches(Some("\"v2\""), "\"v3\""));
        assert!(!etag_matches(None, "\"v3\""));
    }

    /// A body stream that counts the chunks taken from it.
    fn chunks<'t>(
        sizes: &[usize],
        taken: &'t std::cell::Cell<usize>,
    ) -> impl Stream<Item = Result<Vec<u8>, String>> + 't {
        let sizes = sizes.to_vec();
        futures_util::stream::iter(sizes).map(move |n| {
            taken.set(taken.get() + 1);
            Ok(vec![b'x'; n])
        })
    }

    fn declaring(len: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::CONTENT_LENGTH, HeaderValue::from_str(len).unwrap());
        h
    }

    #[test]
    fn a_declared_length_over_the_limit_is_refused_before_reading() {
        let taken = std::cell::Cell::new(0);
        let err = futures_executor::block_on(read_body(
            &declaring("314572800"),
            &mut Box::pin(chunks(&[1024; 4], &taken)),
            || 16 * 1024,
        ))
        .unwrap_err();
        assert_eq!(err.code(), crate::error::Code::PayloadTooLarge);
        assert_eq!(err.status(), 413);
        assert_eq!(taken.get(), 0, "no chunk is read");
    }

    #[test]
    fn a_chunked_body_is_refused_as_soon_as_it_crosses_the_limit() {
        let taken = std::cell::Cell::new(0);
        // No Content-Length: 10 chunks of 1 KiB against a 4 KiB limit.
        let err = futures_executor::block_on(read_body(
            &HeaderMap::new(),
            &mut Box::pin(chunks(&[1024; 10], &taken)),
            || 4 * 1024,
        ))
        .unwrap_err();
        assert_eq!(err.code(), crate::error::Code::PayloadTooLarge);
        assert_eq!(
            taken.get(),
            5,
            "the chunk that crosses the limit is the last read"
        );
        // A body that declares less than it sends is cut off the same way.
        let taken = std::cell::Cell::new(0);
        let err = futures_executor::block_on(read_body(
            &declaring("100"),
            &mut Box::pin(chunks(&[3000, 3000], &taken)),
            || 4 * 1024,
        ))
        .unwrap_err();
        assert_eq!(err.code(), crate::error::Code::PayloadTooLarge);
    }

    #[test]
    fn a_body_at_the_limit_is_read_whole() {
        let taken = std::cell::Cell::new(0);
        let body = futures_executor::block_on(read_body(
            &declaring("4096"),
            &mut Box::pin(chunks(&[1000, 3000, 96, 0], &taken)),
            || 4 * 1024,
        ))
        .unwrap();
        assert_eq!(body.len(), 4096);
        let empty = futures_executor::block_on(read_body(
            &HeaderMap::new(),
            &mut Box::pin(chunks(&[], &taken)),
            || NO_BODY_LIMIT,
        ))
        .unwrap();
        assert!(empty.is_empty());
    }

    #[test]
    fn the_limit_is_asked_for_only_when_there_is_a_body() {
        let taken = std::cell::Cell::new(0);
        let asked = std::cell::Cell::new(0);
        let limit = || {
            asked.set(asked.get() + 1);
            1024
        };
        // No length declared and no chunk: nothing to measure.
        let empty = futures_executor::block_on(read_body(
            &HeaderMap::new(),
            &mut Box::pin(chunks(&[], &taken)),
            limit,
        ))
        .unwrap();
        assert!(empty.is_empty());
        assert_eq!(asked.get(), 0);
        // A first chunk is measured against it, as is a declared length (even of 0).
        let err = futures_executor::block_on(read_body(
            &HeaderMap::new(),
            &mut Box::pin(chunks(&[2048], &taken)),
            limit,
        ))
        .unwrap_err();
        assert_eq!(err.status(), 413);
        let body = futures_executor::block_on(read_body(
            &declaring("0"),
            &mut Box::pin(chunks(&[], &taken)),
            limit,
        ))
        .unwrap();
        assert!(body.is_empty());
        assert_eq!(asked.get(), 2);
    }

    #[test]
    fn a_body_cut_off_is_a_400_without_the_runtime_text() {
        let mut broken = futures_util::stream::iter(vec![
            Ok(vec![b'{']),
            Err("connection reset by peer (os error 104)".to_owned()),
        ]);
        let err = futures_executor::block_on(read_body(&HeaderMap::new(), &mut broken, || 1024))
            .unwrap_err();
        assert_eq!(err.status(), 400);
        assert!(!format!("{:?}", err).contains("os error"));
    }

    #[test]
    fn the_drain_budget_covers_small_declared_and_chunked_bodies_only() {
        assert_eq!(drain_budget(&declaring("20000")), 20_000);
        assert_eq!(drain_budget(&declaring("314572800")), 0);
        assert_eq!(drain_budget(&HeaderMap::new()), LINGER_BYTES);
    }

    #[test]
    fn only_small_declared_bodies_are_read_whole() {
        assert!(body_is_small(&declaring("0")));
        assert!(body_is_small(&declaring(" 65536 ")));
        assert!(!body_is_small(&declaring("65537")));
        assert!(!body_is_small(&declaring("-1")));
        assert!(!body_is_small(&declaring("lots")));
        // Chunked: its length is unknown, so it streams.
        assert!(!body_is_small(&HeaderMap::new()));
    }

    #[test]
    fn what_is_left_of_a_refused_body_is_discarded_up_to_a_bound() {
        let taken = std::cell::Cell::new(0);
        let mut rest = Box::pin(chunks(&[1024; 100], &taken));
        futures_executor::block_on(discard(&mut rest, 10 * 1024));
        assert_eq!(taken.get(), 10, "reading stops at the bound");
    }
}
