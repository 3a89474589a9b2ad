//! DNS over HTTPS, the JSON flavour (`application/dns-json`, as Cloudflare and Google serve
//! it): how core reads DNS, here the TXT records that prove a tenant controls a custom domain.
//! One GET per question, under the configured deadline, with a bounded answer; what the
//! resolver says in prose never leaves this module (errors carry statuses and codes only).
//!
//! A service module: it knows the platform's ports and the platform configuration, nothing of
//! requests or handlers.

use std::fmt;

use bytes::Bytes;
use futures_util::StreamExt as _;
use http::{header, Method, Request, StatusCode, Uri};
use serde::Deserialize;

use crate::config::PlatformConfig;
use crate::ports::{with_timeout, Clock, HttpClient, OutboundError};

/// The largest answer read (bytes); a larger one is refused unread.
pub const MAX_RESPONSE: usize = 64 * 1024;

/// The `type` of TXT records (RFC 1035).
const TXT: u16 = 16;
/// NXDOMAIN: the name does not exist, which for a TXT question means "no records".
const NXDOMAIN: u32 = 3;

/// Why a question got no answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DohError {
    /// The resolver could not be reached, or did not answer within `DOH_TIMEOUT_MS`.
    Unavailable(OutboundError),
    /// The resolver answered with another HTTP status than 200.
    Status(u16),
    /// The answer is larger than [`MAX_RESPONSE`].
    TooLarge,
    /// The answer is not a DNS JSON document; says what was wrong, never what was sent.
    Malformed(&'static str),
    /// The lookup failed in DNS itself (an RCODE other than NOERROR and NXDOMAIN: SERVFAIL,
    /// REFUSED, …).
    Rcode(u32),
}

impl fmt::Display for DohError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Unavailable(e) => write!(f, "DNS resolver unavailable: {e}"),
            Self::Status(s) => write!(f, "DNS resolver answered HTTP {s}"),
            Self::TooLarge => write!(
                f,
                "DNS resolver's answer is larger than {} KiB",
                MAX_RESPONSE / 1024
            ),
            Self::Malformed(what) => write!(f, "DNS resolver's answer is not DNS JSON: {what}"),
            Self::Rcode(code) => write!(f, "DNS lookup failed ({})", rcode_name(*code)),
        }
    }
}

fn rcode_name(code: u32) -> String {
    match code {
        1 => "FORMERR".into(),
        2 => "SERVFAIL".into(),
        4 => "NOTIMP".into(),
        5 => "REFUSED".into(),
        other => format!("RCODE {other}"),
    }
}

/// The TXT records of `name`, one string per record (its character-strings concatenated, as
/// RFC 7208 reads them). A name that does not exist has none: an empty list, not an error.
pub async fn txt<P: HttpClient + Clock>(
    platform: &P,
    config: &PlatformConfig,
    name: &str,
) -> Result<Vec<String>, DohError> {
    let req = request(&config.doh_url, name)?;
    let fetched = with_timeout(platform, config.doh_timeout, fetch(platform, req))
        .await
        .map_err(DohError::Unavailable)?;
    parse_txt(&fetched?)
}

/// `GET {resolver}?name=…&type=TXT`, asking for the JSON API.
fn request(resolver: &Uri, name: &str) -> Result<Request<Bytes>, DohError> {
    let base = resolver.to_string();
    let joiner = if resolver.query().is_some() { '&' } else { '?' };
    let uri = format!("{base}{joiner}name={}&type=TXT", percent_encode(name));
    Request::builder()
        .method(Method::GET)
        .uri(uri)
        .header(header::ACCEPT, "application/dns-json")
        .body(Bytes::new())
        .map_err(|_| {
            DohError::Unavailable(OutboundError::Invalid(
                "the DNS question cannot be expressed as a URL".into(),
            ))
        })
}

/// Every byte but the unreserved ones (`A-Z a-z 0-9 - _ . ~`) as `%XX`.
fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Sends the question and reads at most [`MAX_RESPONSE`] bytes of a 200 answer. The outer
/// `Result` is the transport (raced against the deadline); the inner one the answer.
async fn fetch<P: HttpClient>(
    platform: &P,
    req: Request<Bytes>,
) -> Result<Result<Vec<u8>, DohError>, OutboundError> {
    let resp = platform.send_streaming(req).await?;
    if resp.status() != StatusCode::OK {
        return Ok(Err(DohError::Status(resp.status().as_u16())));
    }
    let declared = resp
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > MAX_RESPONSE as u64) {
        return Ok(Err(DohError::TooLarge));
    }
    let mut body = resp.into_body();
    let mut buf = Vec::new();
    while let Some(chunk) = body.next().await {
        let chunk = chunk?;
        if buf.len() + chunk.len() > MAX_RESPONSE {
            return Ok(Err(DohError::TooLarge));
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(Ok(buf))
}

/// The JSON API's answer, as far as a TXT question needs it.
#[derive(Deserialize)]
struct Answer {
    #[serde(rename = "Status")]
    status: u32,
    #[serde(rename = "Answer", default)]
    answer: Option<Vec<Record>>,
}

#[derive(Deserialize)]
struct Record {
    #[serde(rename = "type")]
    kind: u16,
    #[serde(default)]
    data: Option<String>,
}

/// The TXT strings of a DNS JSON answer. Records of other types (the CNAMEs of a chain) are
/// skipped, and so is a record whose data cannot be read.
pub fn parse_txt(body: &[u8]) -> Result<Vec<String>, DohError> {
    let answer: Answer = serde_json::from_slice(body)
        .map_err(|_| DohError::Malformed("expected {\"Status\": …, \"Answer\": […]}"))?;
    match answer.status {
        0 => {}
        NXDOMAIN => return Ok(Vec::new()),
        other => return Err(DohError::Rcode(other)),
    }
    Ok(answer
        .answer
        .unwrap_or_default()
        .into_iter()
        .filter(|r| r.kind == TXT)
        .filter_map(|r| r.data.as_deref().and_then(txt_data))
        .collect())
}

/// One TXT record's `data`: one or more quoted character-strings (`"a" "b"`), concatenated,
/// with `\"`, `\\` and `\DDD` (a byte in decimal) unescaped. Some resolvers (Google's) give a
/// single string unquoted; that is taken as it is. `None` for an unterminated string.
pub fn txt_data(data: &str) -> Option<String> {
    let data = data.trim();
    if !data.starts_with('"') {
        return Some(data.to_owned());
    }
    let b = data.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b.get(i) {
            Some(b'"') => {}
            // Between strings: whitespace only.
            Some(c) if c.is_ascii_whitespace() => {
                i += 1;
                continue;
            }
            _ => return None,
        }
        // Inside a string, after its opening quote.
        i += 1;
        loop {
            match b.get(i)? {
                b'"' => {
                    i += 1;
                    break;
                }
                b'\\' => {
                    let digits = b
                        .get(i + 1..i + 4)
                        .filter(|d| d.iter().all(u8::is_ascii_digit));
                    match digits {
                        Some(d) => {
                            let v = d.iter().fold(0u32, |v, c| v * 10 + u32::from(c - b'0'));
                            out.push(u8::try_from(v).ok()?);
                            i += 4;
                        }
                        None => {
                            out.push(*b.get(i + 1)?);
                            i += 2;
                        }
                    }
                }
                c => {
                    out.push(*c);
                    i += 1;
                }
            }
        }
    }
    Some(String::from_utf8_lossy(&out).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::time::Duration;

    use futures_executor::block_on;
    use http::Response;

    use crate::config::{tests::dev_settings, Config};
    use crate::testing::TestPlatform;

    fn config(overrides: &[(&'static str, &str)]) -> PlatformConfig {
        let mut m = dev_settings();
        for (k, v) in overrides {
            m.insert(k, (*v).to_owned());
        }
        Config::load(&|k: &str| m.get(k).cloned()).unwrap().platform
    }

    fn answer(body: &str) -> Vec<String> {
        parse_txt(body.as_bytes()).unwrap()
    }

    #[test]
    fn txt_data_is_read_as_quoted_character_strings() {
        assert_eq!(
            txt_data(r#""edgefront-verify=abc""#).unwrap(),
            "edgefront-verify=abc"
        );
        // Several strings of one record are one value (RFC 7208 §3.3).
        assert_eq!(txt_data(r#""v=spf1 " "-all""#).unwrap(), "v=spf1 -all");
        assert_eq!(txt_data(r#""a"  "b"	"c""#).unwrap(), "abc");
        assert_eq!(
            txt_data(r#""say \"hi\" \\ ok""#).unwrap(),
            r#"say "hi" \ ok"#
        );
        // \DDD is a byte, in decimal: UTF-8 sequences come back whole.
        assert_eq!(txt_data(r#""caf\195\169""#).unwrap(), "café");
        assert_eq!(txt_data(r#""\065\b""#).unwrap(), "Ab");
        assert_eq!(txt_data(r#""""#).unwrap(), "");
        // Unquoted (Google's form) is taken as it is.
        assert_eq!(txt_data("v=spf1 -all").unwrap(), "v=spf1 -all");
        assert_eq!(
            txt_data(" edgefront-verify=x ").unwrap(),
            "edgefront-verify=x"
        );
    }

    #[test]
    fn unreadable_txt_data_is_refused_without_panicking() {
        for bad in [
            r#""open"#,
            r#""a" b"#,
            r#""a"b"#,
            r#""ends with \"#,
            r#""\999""#,
            r#""\"#,
            "\"",
        ] {
            assert_eq!(txt_data(bad), None, "{bad}");
        }
    }

    #[test]
    fn answers_give_the_txt_records_only() {
        let got = answer(
            r#"{"Status":0,"TC":false,"Question":[{"name":"x.","type":16}],
                "Answer":[
                  {"name":"_edgefront-challenge.shop.example.com.","type":5,"TTL":60,"data":"elsewhere.example.net."},
                  {"name":"elsewhere.example.net.","type":16,"TTL":60,"data":"\"edgefront-verify=abc\""},
                  {"name":"elsewhere.example.net.","type":16,"TTL":60,"data":"\"part \" \"two\""},
                  {"name":"elsewhere.example.net.","type":16,"TTL":60,"data":"\"broken"},
                  {"name":"elsewhere.example.net.","type":16,"TTL":60}
                ]}"#,
        );
        assert_eq!(got, vec!["edgefront-verify=abc", "part two"]);
    }

    #[test]
    fn no_records_and_no_name_are_empty_lists_and_other_failures_are_errors() {
        assert!(answer(r#"{"Status":0}"#).is_empty());
        assert!(answer(r#"{"Status":0,"Answer":null}"#).is_empty());
        assert!(answer(r#"{"Status":0,"Answer":[]}"#).is_empty());
        // NXDOMAIN.
        assert!(answer(r#"{"Status":3,"Authority":[{"type":6,"data":"ns. x"}]}"#).is_empty());
        assert_eq!(
            parse_txt(br#"{"Status":2}"#).unwrap_err(),
            DohError::Rcode(2)
        );
        assert_eq!(
            parse_txt(br#"{"Status":5}"#).unwrap_err().to_string(),
            "DNS lookup failed (REFUSED)"
        );
        for bad in [
            &b"<html>oops</html>"[..],
            b"[]",
            b"{}",
            br#"{"Status":"0"}"#,
        ] {
            assert!(matches!(parse_txt(bad), Err(DohError::Malformed(_))));
        }
        // What a resolver wrote never reaches the error's text.
        let e = parse_txt(b"secret resolver text").unwrap_err();
        assert!(!e.to_string().contains("secret"));
    }

    #[test]
    fn questions_are_get_requests_for_the_json_api() {
        let req = request(
            &Uri::from_static("https://cloudflare-dns.com/dns-query"),
            "_edgefront-challenge.shop.example.com",
        )
        .unwrap();
        assert_eq!(req.method(), Method::GET);
        assert_eq!(
            req.uri(),
            "https://cloudflare-dns.com/dns-query?name=_edgefront-challenge.shop.example.com&type=TXT"
        );
        assert_eq!(req.headers()[header::ACCEPT], "application/dns-json");
        assert!(req.body().is_empty());
        // Anything but unreserved characters is escaped; a resolver URL with a query keeps it.
        let req = request(
            &Uri::from_static("http://127.0.0.1:5380/dns-query?ct=json"),
            "a b&type=A#.example",
        )
        .unwrap();
        assert_eq!(
            req.uri(),
            "http://127.0.0.1:5380/dns-query?ct=json&name=a%20b%26type%3DA%23.example&type=TXT"
        );
    }

    fn resolver(respond: impl Fn() -> Response<Bytes> + 'static) -> TestPlatform {
        TestPlatform::new(Box::new(move |_| Ok(respond())))
    }

    #[test]
    fn lookups_go_to_the_configured_resolver() {
        let p = resolver(|| {
            Response::new(Bytes::from_static(
                br#"{"Status":0,"Answer":[{"type":16,"data":"\"edgefront-verify=t\""}]}"#,
            ))
        });
        let cfg = config(&[("DOH_RESOLVER_URL", "http://127.0.0.1:5380/dns-query")]);
        let got = block_on(txt(&p, &cfg, "_edgefront-challenge.a.example")).unwrap();
        assert_eq!(got, vec!["edgefront-verify=t"]);
        let sent = p.sent.borrow();
        assert_eq!(sent.len(), 1);
        assert_eq!(
            sent[0].uri(),
            "http://127.0.0.1:5380/dns-query?name=_edgefront-challenge.a.example&type=TXT"
        );
    }

    #[test]
    fn failures_are_typed_and_bounded() {
        let cfg = config(&[]);
        let ask = |p: &TestPlatform| block_on(txt(p, &cfg, "a.example"));
        let p = resolver(|| {
            Response::builder()
                .status(500)
                .body(Bytes::from_static(b"internal details"))
                .unwrap()
        });
        assert_eq!(ask(&p).unwrap_err(), DohError::Status(500));
        let p = resolver(|| Response::new(Bytes::from(vec![b' '; MAX_RESPONSE + 1])));
        assert_eq!(ask(&p).unwrap_err(), DohError::TooLarge);
        let p = resolver(|| {
            Response::builder()
                .header(header::CONTENT_LENGTH, "1000000")
                .body(Bytes::from_static(br#"{"Status":0}"#))
                .unwrap()
        });
        assert_eq!(ask(&p).unwrap_err(), DohError::TooLarge);
        // Just under the bound is read.
        let mut doc = br#"{"Status":0}"#.to_vec();
        doc.resize(MAX_RESPONSE, b' ');
        let p = resolver(move || Response::new(Bytes::from(doc.clone())));
        assert_eq!(ask(&p).unwrap(), Vec::<String>::new());
        // A resolver that never answers is given up on at DOH_TIMEOUT_MS.
        let p = TestPlatform::new(Box::new(|_| Err(OutboundError::Timeout(Duration::ZERO))));
        assert_eq!(
            ask(&p).unwrap_err(),
            DohError::Unavailable(OutboundError::Timeout(Duration::from_millis(3000)))
        );
        let p = TestPlatform::new(Box::new(|_| Err(OutboundError::Network("refused".into()))));
        assert!(matches!(
            ask(&p).unwrap_err(),
            DohError::Unavailable(OutboundError::Network(_))
        ));
    }
}
