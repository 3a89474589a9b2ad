//! The request headers core reads, and nothing else.
//!
//! An adapter hands core only these ([`RequestHeaders::names`]): on Workers each header a
//! request carries costs a JS string, an array and a copy into wasm memory, and a browser
//! sends a dozen core never looks at (`User-Agent`, `Sec-Fetch-*`, `Accept-Language`, …).
//! [`crate::Edge::serve`] drops every other header itself ([`RequestHeaders::keep`]), so
//! every runtime and every test sees a request the same way: a handler that starts reading a
//! header missing here gets nothing on any runtime, and the tests of what it does with it fail
//! until the header is added.

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName};
use http::request;

use crate::config::Config;

/// Idempotency keys on writes ([`crate::cx::IdempotencyKey`]).
pub(crate) const IDEMPOTENCY_KEY: HeaderName = HeaderName::from_static("idempotency-key");
/// The tenant's host behind a trusted proxy ([`crate::tenancy::request_host`]).
pub(crate) const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");

/// What every configuration reads, and who reads it.
const ALWAYS: [HeaderName; 11] = [
    // tenancy::request_host
    header::HOST,
    // routes::sign_in, health's operator routes
    header::AUTHORIZATION,
    // cors::allowed_origin; routes' preflight
    header::ORIGIN,
    header::ACCESS_CONTROL_REQUEST_METHOD,
    // chat: server-sent events or one JSON answer
    header::ACCEPT,
    // input: the body's type and declared length
    header::CONTENT_TYPE,
    header::CONTENT_LENGTH,
    // visitor: the anonymous visitor's cookie
    header::COOKIE,
    // storefront and settings: conditional GETs; cx::IfMatch: optimistic concurrency
    header::IF_NONE_MATCH,
    header::IF_MATCH,
    IDEMPOTENCY_KEY,
];

/// The names, fixed per configuration: [`ALWAYS`], and the headers the configuration trusts
/// (`TRUST_FORWARDED_HOST`, `CLIENT_IP_HEADER`, `REQUEST_ID_HEADER`).
#[derive(Debug, Clone)]
pub struct RequestHeaders {
    names: Vec<HeaderName>,
}

impl RequestHeaders {
    pub fn new(config: Option<&Config>) -> Self {
        let mut names = ALWAYS.to_vec();
        if let Some(c) = config {
            let forwarded = X_FORWARDED_HOST;
            let configured = [
                c.tenancy.trust_forwarded_host.then_some(&forwarded),
                c.chat.client_ip_header.as_ref(),
                c.telemetry.request_id_header.as_ref(),
            ];
            for name in configured.into_iter().flatten() {
                if !names.contains(name) {
                    names.push(name.clone());
                }
            }
        }
        Self { names }
    }

    /// Every header core may read (lower-case, as `http` spells them).
    pub fn names(&self) -> &[HeaderName] {
        &self.names
    }

    /// Whether core reads `name`.
    pub fn wanted(&self, name: &HeaderName) -> bool {
        self.names.contains(name)
    }

    /// Drops every header core does not read. A map that holds only wanted ones (what an
    /// adapter that asked for [`Self::names`] hands over) is left as it is, unallocated.
    pub fn keep(&self, headers: &mut HeaderMap) {
        if headers.keys().all(|n| self.wanted(n)) {
            return;
        }
        let all = std::mem::take(headers);
        let mut current: Option<HeaderName> = None;
        // `into_iter` names a header once, before the first of its values.
        for (name, value) in all {
            if let Some(name) = name {
                current = self.wanted(&name).then_some(name);
            }
            if let Some(name) = &current {
                headers.append(name.clone(), value);
            }
        }
    }
}

/// How many bytes a request's head usually takes as text (method, URL and the headers above,
/// a 1 KB bearer token included): what an adapter offers the runtime's encoder first.
pub const HEAD_BYTES: usize = 4096;

/// The most room [`head_bytes`] gives a second call: far over what a runtime accepts as a
/// request head (workerd: 128 KB of headers), so an encoder that asks for more is refused
/// rather than answered with an allocation that could abort the isolate.
pub const MAX_HEAD_BYTES: usize = 1 << 20;

/// A request's head as bytes, from a runtime that encodes it into a buffer it is given
/// (Workers: `TextEncoder.encodeInto` straight into wasm memory, instead of wasm-bindgen's copy
/// of a returned string one UTF-16 unit at a time): its method, its URL, then a `name,value`
/// line for each header, as [`head_parts`] reads it. `encode` writes the head into the buffer
/// and returns the bytes written or, when it does not fit, minus the bytes it needs at most;
/// it is called once more with that much room. A head that is still not written comes back
/// empty (an adapter answers that 400, as any head `http` refuses).
pub fn head_bytes(mut encode: impl FnMut(&mut [u8]) -> i32) -> Vec<u8> {
    let mut buf = vec![0; HEAD_BYTES];
    let written = encode(&mut buf);
    if written < 0 {
        return larger(written, encode);
    }
    buf.truncate(written_len(written));
    buf
}

/// The head of an encoder that answered `written` (minus the bytes it needs at most) for the
/// first buffer: a buffer of that size and a second call, or nothing over [`MAX_HEAD_BYTES`].
fn larger(written: i32, mut encode: impl FnMut(&mut [u8]) -> i32) -> Vec<u8> {
    let needed = usize::try_from(written.unsigned_abs()).unwrap_or(usize::MAX);
    if needed > MAX_HEAD_BYTES {
        return Vec::new();
    }
    let mut buf = vec![0; needed];
    let written = encode(&mut buf);
    buf.truncate(written_len(written));
    buf
}

/// What an encoder says it wrote, as a length (never more than it was offered: callers
/// truncate or slice to it).
fn written_len(written: i32) -> usize {
    usize::try_from(written).unwrap_or(0)
}

/// The buffer a runtime writes request heads into ([`head_bytes`]'s, kept): one per instance,
/// zeroed once, so a request costs a copy of its head's bytes (≈ 1.2 KB with a token) instead
/// of a fresh zeroed 4 KB buffer.
#[derive(Debug, Default)]
pub struct HeadBuffer {
    buf: std::cell::RefCell<Vec<u8>>,
}

impl HeadBuffer {
    /// [`head_bytes`] into the kept buffer: the head written, as bytes of its own.
    pub fn read(&self, mut encode: impl FnMut(&mut [u8]) -> i32) -> Bytes {
        // An encoder cannot reach back into this buffer; if one ever did, it gets a fresh one.
        let Ok(mut buf) = self.buf.try_borrow_mut() else {
            return Bytes::from(head_bytes(encode));
        };
        if buf.len() < HEAD_BYTES {
            buf.resize(HEAD_BYTES, 0);
        }
        let written = encode(&mut buf);
        if written < 0 {
            // A head this large is rare: its own buffer, not a kept one this large.
            return Bytes::from(larger(written, encode));
        }
        Bytes::copy_from_slice(buf.get(..written_len(written)).unwrap_or_default())
    }
}

/// A request's head, [`head_bytes`]'s lines, as `http` parts: the method, the URL as the
/// runtime serialized it (absolute, host in ASCII), and each header line split at its first
/// comma (names are tokens; values hold no line break). The URL and every header value are
/// slices of the head's one buffer, not copies: an authenticated request's head holds a
/// 1 KB token. A name spelled as one of `known` is that name, cloned (see
/// [`header_lines`]); any other is parsed. An invalid method, URL, name or value is refused.
pub fn head_parts(head: Bytes, known: &[HeaderName]) -> Result<request::Parts, http::Error> {
    let mut lines = Lines { head: &head, at: 0 };
    let method = lines.next().unwrap_or(0..0);
    let method = http::Method::from_bytes(head.get(method).unwrap_or_default())?;
    let url = lines.next().unwrap_or(0..0);
    let uri = http::Uri::from_maybe_shared(slice(&head, url))?;
    let mut headers = HeaderMap::new();
    for line in lines.filter(|l| !l.is_empty()) {
        let text = head.get(line.clone()).unwrap_or_default();
        let (name, value) = match text.iter().position(|&b| b == b',') {
            Some(comma) => (
                text.get(..comma).unwrap_or_default(),
                line.start + comma + 1..line.end,
            ),
            None => (text, line.end..line.end),
        };
        headers.append(
            header_name(name, known)?,
            shared_header_value(slice(&head, value))?,
        );
    }
    let (mut parts, ()) = http::Request::new(()).into_parts();
    parts.method = method;
    parts.uri = uri;
    parts.headers = headers;
    Ok(parts)
}

/// `range` of `head`, sharing its buffer; empty for a range outside it (`Bytes::slice` would
/// panic, and the ranges here come from scans of the same bytes, so none is).
fn slice(head: &Bytes, range: std::ops::Range<usize>) -> Bytes {
    match head.get(range.clone()) {
        Some(_) => head.slice(range),
        None => Bytes::new(),
    }
}

/// The byte ranges of a head's `\n`-separated lines, in order, each found eight bytes at a
/// time ([`crate::words::first`]).
struct Lines<'h> {
    head: &'h [u8],
    at: usize,
}

impl Iterator for Lines<'_> {
    type Item = std::ops::Range<usize>;

    fn next(&mut self) -> Option<Self::Item> {
        let rest = self.head.get(self.at..)?;
        let len = crate::words::first(rest, |v| crate::words::equal(v, b'\n'), |b| b == b'\n')
            .unwrap_or(rest.len());
        let line = self.at..self.at + len;
        self.at = line.end + 1;
        Some(line)
    }
}

/// `name,value` lines (what an adapter reads a runtime's headers as: [`head_bytes`]'s header
/// lines, or a JS `Headers` joined) into `map`. Names are tokens (no comma) and values never
/// hold a line break, so each line splits at its first comma. A name spelled as one of `known`
/// is that name, cloned: `http`'s parser of a name (a 12 KB match over the standard names,
/// which V8 recompiles with TurboFan in every new isolate: BENCHMARKS.md, change 55) then
/// stays off the request path. Any other name is parsed; an invalid name or value is refused.
pub fn header_lines<'a>(
    lines: impl Iterator<Item = &'a str>,
    known: &[HeaderName],
    map: &mut HeaderMap,
) -> Result<(), http::Error> {
    for line in lines.filter(|l| !l.is_empty()) {
        let (name, value) = line.split_once(',').unwrap_or((line, ""));
        map.append(header_name(name.as_bytes(), known)?, header_value(value)?);
    }
    Ok(())
}

/// A header's name: one of `known` when it is spelled as one (cloned, not parsed), else parsed.
fn header_name(
    name: &[u8],
    known: &[HeaderName],
) -> Result<HeaderName, http::header::InvalidHeaderName> {
    match known.iter().find(|k| k.as_str().as_bytes() == name) {
        Some(k) => Ok(k.clone()),
        None => HeaderName::from_bytes(name),
    }
}

/// A header value, as `http::HeaderValue::from_str` takes it: refused with a control byte
/// other than a tab. `http` checks a byte at a time, which at the Worker's `opt-level = "z"`
/// costs ≈ 16 instructions a byte, a tenth of an authenticated request's work with its ≈ 1 KB
/// bearer token (BENCHMARKS.md, change 57). A value of visible ASCII alone, which
/// [`crate::words::visible_ascii`] finds eight bytes at a time, is what nearly every header holds, and is
/// valid: it is taken without `http` checking it again. Any other value goes through `http`'s
/// own check.
pub fn header_value(value: &str) -> Result<http::HeaderValue, http::header::InvalidHeaderValue> {
    shared_header_value(Bytes::copy_from_slice(value.as_bytes()))
}

/// [`header_value`] for bytes of their own (a slice of a head's buffer: no copy).
#[allow(unsafe_code)]
fn shared_header_value(
    value: Bytes,
) -> Result<http::HeaderValue, http::header::InvalidHeaderValue> {
    if !crate::words::visible_ascii(&value) {
        return http::HeaderValue::from_maybe_shared(value);
    }
    // SAFETY: `from_maybe_shared_unchecked`'s one requirement is that the bytes are UTF-8 and a
    // valid header value (no byte under 0x20 but the tab, no 0x7f). `words::visible_ascii` just
    // established more: every byte is 0x20..=0x7e, which is ASCII and so UTF-8.
    Ok(unsafe { http::HeaderValue::from_maybe_shared_unchecked(value) })
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    #[test]
    fn header_values_are_taken_as_http_takes_them() {
        let token = format!("Bearer {}", "eyJhbGciOiJSUzI1NiJ9.".repeat(50));
        for value in [
            token.as_str(),
            "",
            " ",
            "a\tb",
            "café",
            "ok\u{7f}",
            "a\u{0}b",
            "line\nbreak",
            "~!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}",
            "\u{1f}",
        ] {
            let ours = header_value(value);
            let shared = shared_header_value(Bytes::copy_from_slice(value.as_bytes()));
            let http = HeaderValue::from_str(value);
            assert_eq!(ours.is_ok(), http.is_ok(), "{value:?}");
            assert_eq!(shared.is_ok(), http.is_ok(), "{value:?}");
            if let (Ok(a), Ok(s), Ok(b)) = (ours, shared, http) {
                assert_eq!(a, b);
                assert_eq!(s, b);
                assert_eq!(a.as_bytes(), value.as_bytes());
            }
        }
    }

    /// `head` read by [`head_bytes`] from an encoder like request_head.js's (which answers a
    /// buffer too small with minus three bytes per UTF-16 unit), and how many calls it took.
    fn read(head: &str) -> (Vec<u8>, usize) {
        let mut calls = 0;
        let bytes = head_bytes(|buf| {
            calls += 1;
            match buf.get_mut(..head.len()) {
                Some(room) => {
                    room.copy_from_slice(head.as_bytes());
                    i32::try_from(head.len()).unwrap()
                }
                None => -3 * i32::try_from(head.encode_utf16().count()).unwrap(),
            }
        });
        (bytes, calls)
    }

    #[test]
    fn head_bytes_takes_a_second_call_only_for_a_head_over_the_first_buffer() {
        let small = "GET\nhttps://demo.example.com/v1/me\nauthorization,Bearer abc";
        assert_eq!(read(small), (small.as_bytes().to_vec(), 1));
        // Over 4 KB, with multi-byte characters: the second call has room for it.
        let big = format!(
            "GET\nhttps://demo.example.com/\ncookie,{}",
            "é".repeat(3000)
        );
        assert_eq!(read(&big), (big.as_bytes().to_vec(), 2));

        // An encoder that never fits, or asks for more than any head: an empty head.
        assert_eq!(head_bytes(|_| -1), b"");
        let mut calls = 0;
        let asked = head_bytes(|_| {
            calls += 1;
            i32::MIN
        });
        assert_eq!((asked.as_slice(), calls), (&b""[..], 1));
    }

    #[test]
    fn a_kept_buffer_reads_heads_as_head_bytes_does() {
        let kept = HeadBuffer::default();
        let encoder = |head: String| {
            move |buf: &mut [u8]| match buf.get_mut(..head.len()) {
                Some(room) => {
                    room.copy_from_slice(head.as_bytes());
                    i32::try_from(head.len()).unwrap()
                }
                None => -3 * i32::try_from(head.encode_utf16().count()).unwrap(),
            }
        };
        let long =
            "GET\nhttps://a.example.com/\nauthorization,Bearer ".to_owned() + &"x".repeat(1000);
        let short = "GET\nhttps://a.example.com/".to_owned();
        let big = format!("GET\nhttps://a.example.com/\ncookie,{}", "é".repeat(3000));
        // One after another, each head is itself: nothing of a longer one before it is left.
        for head in [&long, &short, &big, &short] {
            assert_eq!(kept.read(encoder(head.clone())), head.as_bytes());
            assert_eq!(head_bytes(encoder(head.clone())), head.as_bytes());
        }
        assert_eq!(kept.read(|_| i32::MIN), Bytes::new());
        assert_eq!(kept.read(|_| -1), Bytes::new());
    }

    #[test]
    fn a_head_is_read_as_http_would_build_it() {
        let known = [header::AUTHORIZATION, header::HOST];
        let token = format!("Bearer {}", "eyJhbGciOiJSUzI1NiJ9.".repeat(50));
        let text = format!(
            "POST\nhttps://acme.example.com/v1/catalog?x=1\nhost,acme.example.com\n\
             authorization,{token}\n\ncookie,a=1\ncookie,b=2\nx-note,caf\u{e9}, ok\naccept"
        );
        let parts = head_parts(Bytes::from(text.clone()), &known).unwrap();
        let mut lines = text.split('\n');
        let mut built = http::Request::builder()
            .method(lines.next().unwrap())
            .uri(lines.next().unwrap());
        header_lines(lines, &[], built.headers_mut().unwrap()).unwrap();
        let (want, ()) = built.body(()).unwrap().into_parts();
        assert_eq!(parts.method, want.method);
        assert_eq!(parts.uri, want.uri);
        assert_eq!(parts.uri.path(), "/v1/catalog");
        assert_eq!(parts.headers, want.headers);
        assert_eq!(parts.headers[header::AUTHORIZATION], token.as_str());
        assert_eq!(
            parts.headers["x-note"].as_bytes(),
            "caf\u{e9}, ok".as_bytes()
        );
        assert_eq!(parts.headers.len(), 6);

        // An empty head, or an invalid method, URL, name or value, is refused.
        for bad in [
            "",
            "G ET\nhttps://a.example.com/",
            "GET\nhttps://a.example.com/ x",
            "GET\nhttps://a.example.com/\nbad name,v",
            "GET\nhttps://a.example.com/\nx-ok,a\u{7f}b",
        ] {
            assert!(head_parts(Bytes::from(bad), &known).is_err(), "{bad:?}");
        }
    }

    fn config(overrides: &[(&'static str, &str)]) -> Config {
        let mut m = crate::config::tests::dev_settings();
        for (k, v) in overrides {
            m.insert(k, (*v).to_owned());
        }
        Config::load(&|k: &str| m.get(k).cloned()).unwrap()
    }

    #[test]
    fn keeps_what_core_reads_with_every_value_and_drops_the_rest() {
        let wanted = RequestHeaders::new(None);
        let mut h = HeaderMap::new();
        h.append("user-agent", HeaderValue::from_static("Mozilla/5.0"));
        h.append(header::COOKIE, HeaderValue::from_static("a=1"));
        h.append("sec-fetch-mode", HeaderValue::from_static("cors"));
        h.append(header::COOKIE, HeaderValue::from_static("b=2"));
        h.append(header::HOST, HeaderValue::from_static("acme.example.com"));
        h.append(
            "x-forwarded-host",
            HeaderValue::from_static("evil.example.com"),
        );
        wanted.keep(&mut h);
        assert_eq!(h.len(), 3);
        let cookies: Vec<_> = h.get_all(header::COOKIE).iter().collect();
        assert_eq!(cookies, ["a=1", "b=2"]);
        assert_eq!(h[header::HOST], "acme.example.com");
        assert!(!h.contains_key("user-agent") && !h.contains_key("x-forwarded-host"));
    }

    #[test]
    fn a_map_of_wanted_headers_is_left_alone() {
        let wanted = RequestHeaders::new(None);
        let mut h = HeaderMap::new();
        h.append(header::AUTHORIZATION, HeaderValue::from_static("Bearer x"));
        h.append(header::HOST, HeaderValue::from_static("acme.example.com"));
        let before = h.clone();
        wanted.keep(&mut h);
        assert_eq!(h, before);
    }

    #[test]
    fn trusted_headers_are_read_only_when_configured() {
        let plain = RequestHeaders::new(Some(&config(&[("CLIENT_IP_HEADER", "none")])));
        assert!(!plain.wanted(&X_FORWARDED_HOST));
        assert!(!plain.wanted(&HeaderName::from_static("cf-ray")));
        assert!(!plain.wanted(&HeaderName::from_static("cf-connecting-ip")));
        let trusting = RequestHeaders::new(Some(&config(&[
            ("TRUST_FORWARDED_HOST", "true"),
            ("CLIENT_IP_HEADER", "x-real-ip"),
            ("REQUEST_ID_HEADER", "cf-ray"),
        ])));
        for name in ["x-forwarded-host", "x-real-ip", "cf-ray", "authorization"] {
            assert!(trusting.wanted(&HeaderName::from_static(name)), "{name}");
        }
        // The default client IP header is Cloudflare's.
        let default = RequestHeaders::new(Some(&config(&[])));
        assert!(default.wanted(&HeaderName::from_static("cf-connecting-ip")));
        assert_eq!(default.names().len(), ALWAYS.len() + 1);
    }

    #[test]
    fn header_lines_take_known_names_and_parse_the_rest() {
        let known = [header::AUTHORIZATION, IDEMPOTENCY_KEY];
        let mut map = HeaderMap::new();
        let text = "authorization,Bearer a,b\n\nIdempotency-Key,k1\nx-custom,1\nx-custom,2\naccept";
        header_lines(text.split('\n'), &known, &mut map).unwrap();
        // The value keeps its commas; a name not spelled as a known one is parsed (and
        // lower-cased), repeats append, and a line without a comma is a name with no value.
        assert_eq!(map[header::AUTHORIZATION], "Bearer a,b");
        assert_eq!(map[IDEMPOTENCY_KEY], "k1");
        let custom: Vec<_> = map.get_all("x-custom").iter().collect();
        assert_eq!(custom, ["1", "2"]);
        assert_eq!(map[header::ACCEPT], "");
        assert_eq!(map.len(), 5);

        // The same lines without known names give the same map.
        let mut parsed = HeaderMap::new();
        header_lines(text.split('\n'), &[], &mut parsed).unwrap();
        assert_eq!(parsed, map);

        // An invalid name or value is refused.
        for bad in ["bad name,v", "x-ok,a\u{7f}b"] {
            assert!(header_lines(std::iter::once(bad), &known, &mut HeaderMap::new()).is_err());
        }
    }
}
