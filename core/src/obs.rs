//! What one request did, for the operator: its id, and a record that core fills in as the
//! request goes (route, tenant, user, SQL batches, cache hits, outbound calls, the problem code,
//! an upstream's own error text). [`crate::telemetry`] turns the record into the request's one
//! JSON log line and, when configured, OTLP spans. A leaf: plain data, no I/O, no clock.

use std::cell::RefCell;
use std::fmt;
use std::time::SystemTime;

/// A request id: taken from a trusted header, or generated. Printable ASCII without spaces,
/// quotes or backslashes, at most [`RequestId::MAX_LEN`] bytes, so it can go into a header, a
/// log line and a problem document as it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestId(Box<str>);

impl RequestId {
    pub const MAX_LEN: usize = 128;

    /// An id another hop gave us, if it is well formed.
    pub fn parse(s: &str) -> Option<Self> {
        let ok = !s.is_empty()
            && s.len() <= Self::MAX_LEN
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.:/+=".contains(&b));
        ok.then(|| Self(s.into()))
    }

    /// A fresh id from 16 random bytes (32 hex digits, the shape of an OTLP trace id).
    pub fn from_random(bytes: [u8; 16]) -> Self {
        Self(hex(&bytes).into())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Lower-case hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 2);
    hex_into(&mut out, bytes);
    out
}

/// [`hex`], appended to `out`.
pub fn hex_into(out: &mut String, bytes: &[u8]) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let digit = |n: u8| DIGITS.get(usize::from(n)).copied().unwrap_or(b'0');
    // Up to 32 bytes (the ids) through a buffer and one append, not a `push` per digit.
    let mut buf = [0u8; 64];
    for chunk in bytes.chunks(buf.len() / 2) {
        for (pair, b) in buf.as_chunks_mut::<2>().0.iter_mut().zip(chunk) {
            *pair = [digit(b >> 4), digit(b & 0x0f)];
        }
        let text = buf.get(..chunk.len() * 2).unwrap_or_default();
        // Hex digits are ASCII: this never falls back.
        out.push_str(std::str::from_utf8(text).unwrap_or_default());
    }
}

/// What an outbound call was for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallKind {
    /// A batch to the SQL proxy.
    Sql,
    S3,
    Jwks,
    /// The AI provider.
    Provider,
    /// The shared rate-limit counter (the origin's, a Durable Object).
    RateLimit,
    /// DNS over HTTPS (custom-domain checks).
    Dns,
    Other,
}

impl CallKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Sql => "sql",
            Self::S3 => "s3",
            Self::Jwks => "jwks",
            Self::Provider => "provider",
            Self::RateLimit => "ratelimit",
            Self::Dns => "dns",
            Self::Other => "other",
        }
    }
}

/// How an outbound call ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// An HTTP answer with this status.
    Status(u16),
    Timeout,
    /// Network failure or a request the runtime could not send.
    Failed,
}

/// One outbound call: what for, where to (host only: never a path or query, which may hold
/// signatures), when it started and how long it took.
#[derive(Debug, Clone)]
pub struct Call {
    pub kind: CallKind,
    pub method: String,
    pub host: String,
    pub start: SystemTime,
    pub duration_ms: u64,
    pub outcome: Outcome,
    /// The span id this call had on the wire (`traceparent`), if tracing was on.
    pub span_id: Option<[u8; 8]>,
}

/// Hits and misses of one cache during the request.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CacheCount {
    pub hits: u32,
    pub misses: u32,
}

/// The caches a request reports on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cache {
    Tenant,
    Jwks,
    Membership,
    /// Bearer tokens whose signature this instance already verified.
    Token,
    /// Public answers the instance kept ([`crate::answers`]): a hit is an answer served
    /// without its SQL batch.
    Answer,
}

impl Cache {
    pub const ALL: [Self; 5] = [
        Self::Tenant,
        Self::Jwks,
        Self::Membership,
        Self::Token,
        Self::Answer,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Tenant => "tenant",
            Self::Jwks => "jwks",
            Self::Membership => "membership",
            Self::Token => "token",
            Self::Answer => "answer",
        }
    }

    fn index(self) -> usize {
        match self {
            Self::Tenant => 0,
            Self::Jwks => 1,
            Self::Membership => 2,
            Self::Token => 3,
            Self::Answer => 4,
        }
    }
}

/// Everything noted about the request so far.
#[derive(Debug, Clone, Default)]
pub struct Record {
    /// The route template (`/v1/catalog/{id}`), once routed.
    pub route: Option<&'static str>,
    pub tenant_id: Option<String>,
    pub tier: Option<String>,
    /// Our user id for the caller, once authenticated.
    pub user_id: Option<String>,
    /// The problem code of an error answer.
    pub code: Option<String>,
    /// An upstream's or backend's own words behind a failure (never sent to the client).
    pub error: Option<String>,
    pub sql_batches: u32,
    pub cache: [CacheCount; 5],
    pub calls: Vec<Call>,
}

impl Record {
    pub fn cache(&self, cache: Cache) -> CacheCount {
        self.cache.get(cache.index()).copied().unwrap_or_default()
    }
}

/// One request's id, its trace context and its record. Interior mutability: core notes
/// things through shared references while the request runs (single-threaded, like wasm).
#[derive(Debug)]
pub struct Trace {
    id: RequestId,
    /// OTLP trace and root span ids (random; the trace id is the request id's bytes when the
    /// id was generated here).
    pub trace_id: [u8; 16],
    pub span_id: [u8; 8],
    pub start: SystemTime,
    pub method: String,
    /// The request path (never its query).
    pub path: String,
    record: RefCell<Record>,
    /// Whether notes are kept: not when nothing will be written from them (no log line at
    /// the configured level, no spans), so a quiet request does not build a record.
    kept: bool,
}

impl Trace {
    pub fn new(
        id: RequestId,
        trace_id: [u8; 16],
        span_id: [u8; 8],
        start: SystemTime,
        method: &str,
        path: &str,
    ) -> Self {
        Self {
            id,
            trace_id,
            span_id,
            start,
            method: method.to_owned(),
            path: path.to_owned(),
            record: RefCell::new(Record::default()),
            kept: true,
        }
    }

    /// The same trace, keeping no notes: [`Trace::record`] stays empty. For a request whose
    /// record nothing will read (`LOG_LEVEL` off and no OTLP endpoint).
    pub fn without_record(mut self) -> Self {
        self.kept = false;
        self
    }

    /// Whether notes are kept ([`Trace::without_record`]): a caller with work to do only for
    /// a note (timing a call) can skip it when they are not.
    pub fn keeps_record(&self) -> bool {
        self.kept
    }

    pub fn request_id(&self) -> &RequestId {
        &self.id
    }

    /// A copy of the record as it stands.
    pub fn record(&self) -> Record {
        self.record.borrow().clone()
    }

    fn note(&self, f: impl FnOnce(&mut Record)) {
        if !self.kept {
            return;
        }
        if let Ok(mut r) = self.record.try_borrow_mut() {
            f(&mut r);
        }
    }

    pub fn note_route(&self, template: &'static str) {
        self.note(|r| r.route = Some(template));
    }

    pub fn note_tenant(&self, id: &str, tier: &str) {
        self.note(|r| {
            r.tenant_id = Some(id.to_owned());
            r.tier = Some(tier.to_owned());
        });
    }

    pub fn note_user(&self, id: &str) {
        self.note(|r| r.user_id = Some(id.to_owned()));
    }

    /// The problem code of the answer, and a backend's words behind it if any. The first
    /// error noted wins: it is the cause; later ones are its consequences.
    pub fn note_error(&self, code: &str, why: Option<&str>) {
        self.note(|r| {
            if r.code.is_none() {
                r.code = Some(code.to_owned());
            }
            if r.error.is_none() {
                r.error = why.map(str::to_owned);
            }
        });
    }

    pub fn note_cache(&self, cache: Cache, hit: bool) {
        self.note(|r| {
            if let Some(c) = r.cache.get_mut(cache.index()) {
                if hit {
                    c.hits = c.hits.saturating_add(1);
                } else {
                    c.misses = c.misses.saturating_add(1);
                }
            }
        });
    }

    pub fn note_call(&self, call: Call) {
        self.note(|r| {
            if call.kind == CallKind::Sql {
                r.sql_batches = r.sql_batches.saturating_add(1);
            }
            // Bounded: a runaway loop must not grow a request's record without end.
            if r.calls.len() < 64 {
                r.calls.push(call);
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids_are_printable_and_bounded() {
        assert!(RequestId::parse("8d2f1c0e5a6b7c8d-AMS").is_some());
        assert!(RequestId::parse("a".repeat(128).as_str()).is_some());
        for bad in ["", "with space", "quote\"", "back\\slash", "new\nline", "é"] {
            assert!(RequestId::parse(bad).is_none(), "{bad:?}");
        }
        assert!(RequestId::parse("a".repeat(129).as_str()).is_none());
        let id = RequestId::from_random([0xab; 16]);
        assert_eq!(id.as_str(), "ab".repeat(16));
    }

    #[test]
    fn the_record_counts_batches_caches_and_keeps_the_first_error() {
        let t = Trace::new(
            RequestId::from_random([1; 16]),
            [1; 16],
            [2; 8],
            SystemTime::UNIX_EPOCH,
            "GET",
            "/v1/catalog",
        );
        t.note_cache(Cache::Tenant, true);
        t.note_cache(Cache::Tenant, false);
        t.note_cache(Cache::Jwks, true);
        for kind in [CallKind::Sql, CallKind::S3, CallKind::Sql] {
            t.note_call(Call {
                kind,
                method: "POST".into(),
                host: "db".into(),
                start: SystemTime::UNIX_EPOCH,
                duration_ms: 1,
                outcome: Outcome::Status(200),
                span_id: None,
            });
        }
        t.note_error("upstream_unavailable", Some("connection refused"));
        t.note_error("internal", Some("later"));
        let r = t.record();
        assert_eq!(r.sql_batches, 2);
        assert_eq!(r.calls.len(), 3);
        assert_eq!(r.cache(Cache::Tenant), CacheCount { hits: 1, misses: 1 });
        assert_eq!(r.cache(Cache::Jwks), CacheCount { hits: 1, misses: 0 });
        assert_eq!(r.code.as_deref(), Some("upstream_unavailable"));
        assert_eq!(r.error.as_deref(), Some("connection refused"));
    }
}
