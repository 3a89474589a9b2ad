//! Observability at work (issue 14): each request runs on its own [`Traced`] platform, which
//! stamps the request id (and, with tracing on, a `traceparent`) on every outbound call and
//! notes how each call went; [`finish`] then writes the request's one JSON log line (and an
//! `error` line with an upstream's own words when there was one) through the log port, and
//! exports the request's spans as OTLP/HTTP JSON when `OTEL_EXPORTER_OTLP_ENDPOINT` is set.
//!
//! Never logged: tokens, cookies, secrets, query strings (presigned URLs carry signatures
//! there), bodies. The log names routes by template and outbound calls by host.

use std::rc::Rc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::{HeaderName, Request, Response, Uri};
use serde_json::{json, Value};

use crate::config::{Config, LogLevel, TelemetryConfig};
use crate::json_key;
use crate::json_writer::JsonObject;
use crate::obs::{hex, Cache, Call, CallKind, Outcome, Record, RequestId, Trace};
use crate::ports::{
    ByteStream, Clock, Entropy, HttpClient, KeyValue, OutboundError, Platform, RateLimiter,
    Telemetry,
};
use crate::window::{Decision, Hit};

/// The header that carries the request id on responses and outbound calls. A name, not text:
/// a map given `&str` parses it on every insert.
pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
/// The W3C trace context on outbound calls.
const TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");

/// Which outbound calls are which, by authority and path prefix (the SQL proxy and the origin's
/// rate limiter may share a host), from the configuration.
#[derive(Debug, Default)]
pub struct Targets(Vec<(String, String, CallKind)>);

impl Targets {
    pub fn from_config(c: &Config) -> Self {
        let mut t = Vec::new();
        let mut add = |uri: &Uri, kind: CallKind| {
            if let Some(a) = uri.authority() {
                t.push((a.as_str().to_ascii_lowercase(), uri.path().to_owned(), kind));
            }
        };
        add(&c.origin.url, CallKind::Sql);
        if let Some(u) = &c.rate_limits.url {
            add(u, CallKind::RateLimit);
        }
        add(&c.s3.endpoint, CallKind::S3);
        add(&c.platform.doh_url, CallKind::Dns);
        for uri in c
            .chat
            .provider
            .iter()
            .map(|p| p.base_url.as_str())
            .chain(c.auth.issuers.iter().map(|i| i.jwks_url.as_str()))
            .filter_map(|u| u.parse::<Uri>().ok())
        {
            let kind = if c.auth.issuers.iter().any(|i| i.jwks_url == uri.to_string()) {
                CallKind::Jwks
            } else {
                CallKind::Provider
            };
            add(&uri, kind);
        }
        // The longest path prefix wins.
        t.sort_by_key(|b| std::cmp::Reverse(b.1.len()));
        Self(t)
    }

    pub fn kind(&self, uri: &Uri) -> CallKind {
        let Some(authority) = uri.authority() else {
            return CallKind::Other;
        };
        let authority = authority.as_str().to_ascii_lowercase();
        self.0
            .iter()
            .find(|(a, p, _)| *a == authority && uri.path().starts_with(p.as_str()))
            .map_or(CallKind::Other, |(_, _, k)| *k)
    }
}

/// A request's own platform: the instance's, plus the request's [`Trace`]. Everything core does
/// for the request goes through it, so every outbound call is stamped and noted.
pub struct Traced<P> {
    inner: Rc<P>,
    trace: Trace,
    targets: Rc<Targets>,
    /// Send `traceparent` (tracing is on).
    propagate: bool,
}

impl<P: Platform> Traced<P> {
    /// Starts a request's trace: its id from `trusted` (a header the platform or a trusted proxy
    /// sets) when well formed, else a fresh one; trace and span ids from the entropy port.
    pub fn begin(
        inner: Rc<P>,
        targets: Rc<Targets>,
        cfg: Option<&TelemetryConfig>,
        head: &http::request::Parts,
    ) -> Self {
        let mut random = [0u8; 24];
        // Entropy failure leaves zeros: an id that is not unique, never a failed request.
        let _ = inner.fill(&mut random);
        let mut trace_id = [0u8; 16];
        let mut span_id = [0u8; 8];
        trace_id.copy_from_slice(random.get(..16).unwrap_or(&[0; 16]));
        span_id.copy_from_slice(random.get(16..).unwrap_or(&[0; 8]));
        let trusted = cfg
            .and_then(|c| c.request_id_header.as_ref())
            .and_then(|h| head.headers.get(h))
            .and_then(|v| v.to_str().ok())
            .and_then(RequestId::parse);
        let id = trusted.unwrap_or_else(|| RequestId::from_random(trace_id));
        let trace = Trace::new(
            id,
            trace_id,
            span_id,
            inner.now(),
            head.method.as_str(),
            head.uri.path(),
        );
        let trace = if writes(cfg) {
            trace
        } else {
            trace.without_record()
        };
        Self {
            inner,
            trace,
            targets,
            propagate: cfg.is_some_and(|c| c.otlp_endpoint.is_some()),
        }
    }

    pub fn inner(&self) -> &P {
        &self.inner
    }

    pub fn request_trace(&self) -> &Trace {
        &self.trace
    }

    /// Stamps the request id and trace context on an outbound request; returns the span id
    /// the call carries.
    fn stamp<B>(&self, req: &mut Request<B>) -> Option<[u8; 8]> {
        let h = req.headers_mut();
        if let Ok(v) = crate::request_headers::header_value(self.trace.request_id().as_str()) {
            h.insert(REQUEST_ID, v);
        }
        let span = self.new_span()?;
        let parent = format!("00-{}-{}-01", hex(&self.trace.trace_id), hex(&span));
        if let Ok(v) = crate::request_headers::header_value(&parent) {
            h.insert(TRACEPARENT, v);
        }
        Some(span)
    }

    /// A fresh span id for an outbound call, when tracing is on.
    fn new_span(&self) -> Option<[u8; 8]> {
        if !self.propagate {
            return None;
        }
        let mut span = [0u8; 8];
        let _ = self.inner.fill(&mut span);
        Some(span)
    }

    fn watch<B>(&self, req: &Request<B>, span_id: Option<[u8; 8]>) -> Watch<'_, P> {
        Watch {
            platform: self,
            kind: self.targets.kind(req.uri()),
            method: req.method().as_str().to_owned(),
            host: req
                .uri()
                .authority()
                .map(|a| a.as_str().to_owned())
                .unwrap_or_default(),
            start: self.inner.now(),
            span_id,
            done: false,
        }
    }
}

/// An outbound call in flight; noted when it ends, or as a timeout when it is dropped unfinished
/// (core's deadline gave up on it).
struct Watch<'a, P: Platform> {
    platform: &'a Traced<P>,
    kind: CallKind,
    method: String,
    host: String,
    start: SystemTime,
    span_id: Option<[u8; 8]>,
    done: bool,
}

impl<P: Platform> Watch<'_, P> {
    fn end(mut self, outcome: Outcome) {
        self.note(outcome);
        self.done = true;
    }

    fn note(&self, outcome: Outcome) {
        let now = self.platform.inner.now();
        self.platform.trace.note_call(Call {
            kind: self.kind,
            method: self.method.clone(),
            host: self.host.clone(),
            start: self.start,
            duration_ms: crate::ports::elapsed_ms(self.start, now),
            outcome,
            span_id: self.span_id,
        });
    }
}

impl<P: Platform> Drop for Watch<'_, P> {
    fn drop(&mut self) {
        if !self.done {
            self.note(Outcome::Timeout);
        }
    }
}

fn outcome_of<B>(r: &Result<Response<B>, OutboundError>) -> Outcome {
    match r {
        Ok(resp) => Outcome::Status(resp.status().as_u16()),
        Err(OutboundError::Timeout(_)) => Outcome::Timeout,
        Err(_) => Outcome::Failed,
    }
}

impl<P: Platform> HttpClient for Traced<P> {
    async fn send(&self, mut req: Request<Bytes>) -> Result<Response<Bytes>, OutboundError> {
        let span = self.stamp(&mut req);
        let watch = self.watch(&req, span);
        let r = self.inner.send(req).await;
        watch.end(outcome_of(&r));
        r
    }

    async fn send_within(
        &self,
        mut req: Request<Bytes>,
        limit: Duration,
    ) -> Result<Response<Bytes>, OutboundError> {
        let span = self.stamp(&mut req);
        let watch = self.watch(&req, span);
        let r = self.inner.send_within(req, limit).await;
        watch.end(outcome_of(&r));
        r
    }

    async fn send_streaming(
        &self,
        mut req: Request<Bytes>,
    ) -> Result<Response<ByteStream>, OutboundError> {
        let span = self.stamp(&mut req);
        let watch = self.watch(&req, span);
        let r = self.inner.send_streaming(req).await;
        // Until the response head: the stream's own time is the request's.
        watch.end(outcome_of(&r));
        r
    }
}

impl<P: Platform> Clock for Traced<P> {
    fn now(&self) -> SystemTime {
        self.inner.now()
    }
    async fn sleep(&self, duration: Duration) {
        self.inner.sleep(duration).await
    }
}

impl<P: Platform> KeyValue for Traced<P> {
    async fn get(&self, key: &str) -> Result<Option<Bytes>, OutboundError> {
        self.inner.get(key).await
    }
    async fn get_decoded<T: 'static>(
        &self,
        key: &str,
        decode: fn(&[u8]) -> Option<T>,
    ) -> Result<Option<std::rc::Rc<T>>, OutboundError> {
        self.inner.get_decoded(key, decode).await
    }
    async fn put(&self, key: &str, value: Bytes, ttl: Duration) -> Result<(), OutboundError> {
        self.inner.put(key, value, ttl).await
    }
    async fn delete(&self, key: &str) -> Result<(), OutboundError> {
        self.inner.delete(key).await
    }
}

impl<P: Platform> Entropy for Traced<P> {
    fn fill(&self, buf: &mut [u8]) -> Result<(), OutboundError> {
        self.inner.fill(buf)
    }
}

impl<P: Platform> RateLimiter for Traced<P> {
    async fn admit(
        &self,
        anchor: &str,
        hits: &[Hit<'_>],
        now: SystemTime,
    ) -> Option<Result<Vec<Decision>, OutboundError>> {
        if !self.trace.keeps_record() {
            return self.inner.admit(anchor, hits, now).await;
        }
        let start = self.inner.now();
        let r = self.inner.admit(anchor, hits, now).await;
        if let Some(r) = &r {
            // The platform's own shared store (a Durable Object, Spin KV); not an HTTP call.
            self.trace.note_call(Call {
                kind: CallKind::RateLimit,
                method: "admit".into(),
                host: "platform".into(),
                start,
                duration_ms: crate::ports::elapsed_ms(start, self.inner.now()),
                outcome: match r {
                    Ok(_) => Outcome::Status(200),
                    Err(OutboundError::Timeout(_)) => Outcome::Timeout,
                    Err(_) => Outcome::Failed,
                },
                span_id: self.new_span(),
            });
        }
        r
    }
}

impl<P: Platform> Telemetry for Traced<P> {
    fn log(&self, line: &str) {
        self.inner.log(line);
    }

    fn trace(&self) -> Option<&Trace> {
        Some(&self.trace)
    }
}

impl<P: Platform> Platform for Traced<P> {
    type Verifier = P::Verifier;

    fn verifier(&self) -> &Self::Verifier {
        self.inner.verifier()
    }

    fn runtime(&self) -> &'static str {
        self.inner.runtime()
    }
}

// ---------------------------------------------------------------------------------------------
// Log lines

/// `2026-12-03T05:00:00.123Z`.
pub fn timestamp(t: SystemTime) -> String {
    crate::rfc3339::millis(t)
}

fn line_outcome(o: &Outcome) -> (Option<u16>, &'static str) {
    match o {
        Outcome::Status(s) => (Some(*s), if *s < 500 { "ok" } else { "error" }),
        Outcome::Timeout => (None, "timeout"),
        Outcome::Failed => (None, "failed"),
    }
}

/// The request's log line: one JSON object, every field always present (null when unknown),
/// keys in alphabetical order. Written straight into the line from borrowed fields
/// ([`JsonObject`]): it runs on every request.
pub fn request_line(
    trace: &Trace,
    record: &Record,
    runtime: &str,
    status: u16,
    bytes_out: Option<u64>,
    now: SystemTime,
) -> String {
    let mut line = JsonObject::with_capacity(512);
    line.opt_num(json_key!("bytes_out"), bytes_out);
    line.open(json_key!("cache"));
    for (name, cache) in [
        (json_key!("answer"), Cache::Answer),
        (json_key!("jwks"), Cache::Jwks),
        (json_key!("membership"), Cache::Membership),
        (json_key!("tenant"), Cache::Tenant),
        (json_key!("token"), Cache::Token),
    ] {
        let n = record.cache(cache);
        line.open(name);
        line.num(json_key!("hits"), n.hits.into());
        line.num(json_key!("misses"), n.misses.into());
        line.close();
    }
    line.close();
    line.open_array(json_key!("calls"));
    for c in &record.calls {
        let (status, outcome) = line_outcome(&c.outcome);
        line.element();
        line.num(json_key!("duration_ms"), c.duration_ms);
        line.str(json_key!("host"), &c.host);
        line.str(json_key!("kind"), c.kind.as_str());
        line.str(json_key!("method"), &c.method);
        line.str(json_key!("outcome"), outcome);
        line.opt_num(json_key!("status"), status.map(u64::from));
        line.close();
    }
    line.end_array();
    line.opt_str(json_key!("code"), record.code.as_deref());
    line.num(
        json_key!("duration_ms"),
        crate::ports::elapsed_ms(trace.start, now),
    );
    line.str(json_key!("level"), "info");
    line.str(json_key!("method"), &trace.method);
    line.str(json_key!("msg"), "request");
    line.str(json_key!("request_id"), trace.request_id().as_str());
    line.opt_str(json_key!("route"), record.route);
    line.str(json_key!("runtime"), runtime);
    line.num(json_key!("sql_batches"), record.sql_batches.into());
    line.num(json_key!("status"), status.into());
    line.opt_str(json_key!("tenant_id"), record.tenant_id.as_deref());
    line.opt_str(json_key!("tier"), record.tier.as_deref());
    line.str(json_key!("ts"), &timestamp(now));
    line.opt_str(json_key!("user_id"), record.user_id.as_deref());
    line.finish()
}

/// The line for a failure behind the answer, in the upstream's or backend's own words.
pub fn error_line(trace: &Trace, record: &Record, why: &str, now: SystemTime) -> String {
    let mut line = JsonObject::with_capacity(256 + why.len());
    line.opt_str(json_key!("code"), record.code.as_deref());
    line.str(json_key!("error"), why);
    line.str(json_key!("level"), "error");
    line.str(json_key!("method"), &trace.method);
    line.str(json_key!("msg"), "upstream error");
    line.str(json_key!("request_id"), trace.request_id().as_str());
    line.opt_str(json_key!("route"), record.route);
    line.opt_str(json_key!("tenant_id"), record.tenant_id.as_deref());
    line.str(json_key!("ts"), &timestamp(now));
    line.finish()
}

// ---------------------------------------------------------------------------------------------
// OTLP

/// Spans waiting to be exported together (per instance), when `OTEL_BSP_SCHEDULE_DELAY` > 0:
/// under load one export carries many requests' spans instead of one subrequest each.
#[derive(Debug, Default)]
pub struct SpanBatch {
    pending: std::cell::RefCell<Vec<Value>>,
    flushing: std::cell::Cell<bool>,
}

fn nanos(t: SystemTime) -> String {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos().to_string())
        .unwrap_or_else(|_| "0".into())
}

fn attr(key: &str, value: Value) -> Option<Value> {
    let v = match value {
        Value::String(s) => json!({ "stringValue": s }),
        Value::Number(n) => json!({ "intValue": n.to_string() }),
        Value::Bool(b) => json!({ "boolValue": b }),
        _ => return None,
    };
    Some(json!({ "key": key, "value": v }))
}

fn attrs(pairs: Vec<(&str, Value)>) -> Vec<Value> {
    pairs.into_iter().filter_map(|(k, v)| attr(k, v)).collect()
}

/// The request's spans as an OTLP/HTTP JSON `ExportTraceServiceRequest`: a SERVER span for the
/// request, a CLIENT span under it per outbound call.
pub fn otlp_spans(
    trace: &Trace,
    record: &Record,
    cfg: &TelemetryConfig,
    runtime: &str,
    status: u16,
    now: SystemTime,
) -> Value {
    export_document(cfg, runtime, request_spans(trace, record, status, now))
}

/// The request's spans: its SERVER span and a CLIENT span per outbound call.
pub fn request_spans(trace: &Trace, record: &Record, status: u16, now: SystemTime) -> Vec<Value> {
    let trace_id = hex(&trace.trace_id);
    let root = hex(&trace.span_id);
    let name = match record.route {
        Some(r) => format!("{} {r}", trace.method),
        None => trace.method.clone(),
    };
    let opt = |v: &Option<String>| v.clone().map_or(Value::Null, Value::String);
    let mut spans = vec![json!({
        "traceId": trace_id,
        "spanId": root,
        "name": name,
        "kind": 2,
        "startTimeUnixNano": nanos(trace.start),
        "endTimeUnixNano": nanos(now),
        "attributes": attrs(vec![
            ("http.request.method", json!(trace.method)),
            ("http.route", record.route.map_or(Value::Null, |r| json!(r))),
            ("http.response.status_code", json!(status)),
            ("edgefront.request_id", json!(trace.request_id().as_str())),
            ("edgefront.tenant_id", opt(&record.tenant_id)),
            ("edgefront.tier", opt(&record.tier)),
            ("edgefront.code", opt(&record.code)),
            ("edgefront.sql_batches", json!(record.sql_batches)),
        ]),
        "status": { "code": if status >= 500 { 2 } else { 1 } },
    })];
    // Calls without a span id were made while tracing was off (none, in practice).
    for c in record.calls.iter().filter(|c| c.span_id.is_some()) {
        let (code, outcome) = line_outcome(&c.outcome);
        let end = c
            .start
            .checked_add(Duration::from_millis(c.duration_ms))
            .unwrap_or(c.start);
        let span_id = c.span_id.map(|s| hex(&s)).unwrap_or_default();
        spans.push(json!({
            "traceId": trace_id,
            "spanId": span_id,
            "parentSpanId": root,
            "name": format!("{} {}", c.kind.as_str(), c.method),
            "kind": 3,
            "startTimeUnixNano": nanos(c.start),
            "endTimeUnixNano": nanos(end),
            "attributes": attrs(vec![
                ("edgefront.call.kind", json!(c.kind.as_str())),
                ("http.request.method", json!(c.method)),
                ("server.address", json!(c.host)),
                ("http.response.status_code", code.into()),
                ("edgefront.call.outcome", json!(outcome)),
                ("edgefront.tenant_id", opt(&record.tenant_id)),
                ("http.route", record.route.map_or(Value::Null, |r| json!(r))),
            ]),
            "status": { "code": if outcome == "ok" { 1 } else { 2 } },
        }));
    }
    spans
}

/// An `ExportTraceServiceRequest` holding `spans` (of one or more requests of this instance).
pub fn export_document(cfg: &TelemetryConfig, runtime: &str, spans: Vec<Value>) -> Value {
    json!({
        "resourceSpans": [{
            "resource": { "attributes": attrs(vec![
                ("service.name", json!(cfg.service_name)),
                ("service.version", json!(crate::VERSION)),
                ("edgefront.runtime", json!(runtime)),
            ]) },
            "scopeSpans": [{
                "scope": { "name": "edgefront", "version": crate::VERSION },
                "spans": spans,
            }],
        }],
    })
}

/// After the response: the request's log lines, then its spans to the OTLP endpoint (bounded by
/// `OTEL_EXPORTER_OTLP_TIMEOUT`; a failed export is one `error` line, never the request's).
pub async fn finish<P: Platform>(
    traced: &Traced<P>,
    cfg: Option<&TelemetryConfig>,
    batch: &SpanBatch,
    status: u16,
    bytes_out: Option<u64>,
) {
    if let Some(spans) = log_request(traced, cfg, status, bytes_out) {
        export(traced, cfg, batch, spans).await;
    }
}

/// A request's spans, still to be sent to the OTLP endpoint.
pub struct PendingSpans(Vec<Value>);

/// Whether anything is written from a request's record: a log line at the configured level
/// (an error line at `error`, the request line at `info`; `info` when there is no
/// configuration), or spans to an OTLP endpoint.
fn writes(cfg: Option<&TelemetryConfig>) -> bool {
    cfg.is_none_or(|c| c.log_level > LogLevel::Off || c.otlp_endpoint.is_some())
}

/// The first part of [`finish`]: the request's log lines, written now. Returns its spans when
/// an OTLP endpoint is configured (their export, [`export`], waits on I/O), else `None`: an
/// adapter then has nothing left to run after the response.
pub fn log_request<P: Platform>(
    traced: &Traced<P>,
    cfg: Option<&TelemetryConfig>,
    status: u16,
    bytes_out: Option<u64>,
) -> Option<PendingSpans> {
    let trace = traced.request_trace();
    // Kept when the request began only if something will be written ([`writes`]).
    if !trace.keeps_record() {
        return None;
    }
    let platform = traced.inner();
    let record = trace.record();
    let now = platform.now();
    let level = cfg.map_or(LogLevel::Info, |c| c.log_level);
    let runtime = platform.runtime();
    if level >= LogLevel::Error {
        if let Some(why) = &record.error {
            platform.log(&error_line(trace, &record, why, now));
        }
    }
    if level >= LogLevel::Info {
        platform.log(&request_line(
            trace, &record, runtime, status, bytes_out, now,
        ));
    }
    cfg.and_then(|c| c.otlp_endpoint.as_ref())?;
    Some(PendingSpans(request_spans(trace, &record, status, now)))
}

/// The second part of [`finish`]: sends the spans [`log_request`] returned.
pub async fn export<P: Platform>(
    traced: &Traced<P>,
    cfg: Option<&TelemetryConfig>,
    batch: &SpanBatch,
    PendingSpans(mut spans): PendingSpans,
) {
    let Some((cfg, endpoint)) = cfg.and_then(|c| c.otlp_endpoint.as_ref().map(|e| (c, e))) else {
        return;
    };
    let platform = traced.inner();
    let trace = traced.request_trace();
    let level = cfg.log_level;
    let runtime = platform.runtime();
    if !cfg.otlp_delay.is_zero() {
        // Batched: the first request to find the batch idle waits out the delay (after its own
        // response, inside its waitUntil) and sends what every request added meanwhile.
        batch.pending.borrow_mut().append(&mut spans);
        if batch.flushing.replace(true) {
            return;
        }
        platform.sleep(cfg.otlp_delay).await;
        spans = batch.pending.take();
        batch.flushing.set(false);
    }
    let body = export_document(cfg, runtime, spans).to_string();
    let url = format!("{}/v1/traces", endpoint.to_string().trim_end_matches('/'));
    let req = Request::post(url)
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(Bytes::from(body));
    let failed = match req {
        Ok(req) => match platform.send_within(req, cfg.otlp_timeout).await {
            Ok(resp) if resp.status().is_success() => None,
            Ok(resp) => Some(format!("OTLP endpoint answered {}", resp.status().as_u16())),
            Err(e) => Some(format!("OTLP export: {e}")),
        },
        Err(e) => Some(format!("OTLP export: {e}")),
    };
    if let (Some(why), true) = (failed, level >= LogLevel::Error) {
        platform.log(
            &json!({
                "ts": timestamp(platform.now()),
                "level": "error",
                "msg": "trace export failed",
                "request_id": trace.request_id().as_str(),
                "error": why,
            })
            .to_string(),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::obs::{CacheCount, Call, CallKind, Outcome, RequestId};
    use std::time::Duration;

    /// The line as `serde_json` writes the same members (`Value` keeps keys in order).
    fn expected(
        trace: &Trace,
        r: &Record,
        status: u16,
        out: Option<u64>,
        now: SystemTime,
    ) -> String {
        let count = |c| {
            let n = r.cache(c);
            json!({ "hits": n.hits, "misses": n.misses })
        };
        let calls: Vec<Value> = r
            .calls
            .iter()
            .map(|c| {
                let (status, outcome) = line_outcome(&c.outcome);
                json!({ "duration_ms": c.duration_ms, "host": c.host, "kind": c.kind.as_str(),
                    "method": c.method, "outcome": outcome, "status": status })
            })
            .collect();
        json!({
            "bytes_out": out,
            "cache": { "answer": count(Cache::Answer), "jwks": count(Cache::Jwks),
                "membership": count(Cache::Membership),
                "tenant": count(Cache::Tenant), "token": count(Cache::Token) },
            "calls": calls, "code": r.code, "duration_ms": crate::ports::elapsed_ms(trace.start, now),
            "level": "info", "method": trace.method, "msg": "request",
            "request_id": trace.request_id().as_str(), "route": r.route, "runtime": "test",
            "sql_batches": r.sql_batches, "status": status, "tenant_id": r.tenant_id,
            "tier": r.tier, "ts": timestamp(now), "user_id": r.user_id,
        })
        .to_string()
    }

    #[test]
    fn timestamps_are_rfc3339_to_the_millisecond_in_utc() {
        for (secs, nanos) in [
            (0, 0),
            (951_782_400, 5_000_000), // 2000-02-29
            (1_700_000_000, 999_999_999),
            (4_102_444_799, 123_456_789), // 2099-12-31T23:59:59
        ] {
            let t = UNIX_EPOCH + Duration::new(secs, nanos);
            let chrono = chrono::DateTime::<chrono::Utc>::from(t)
                .to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
            assert_eq!(timestamp(t), chrono);
        }
        assert_eq!(
            timestamp(UNIX_EPOCH + Duration::from_millis(1_700_000_000_042)),
            "2023-11-14T22:13:20.042Z"
        );
    }

    /// A request's trace, started at the test clock's zero.
    fn started(method: &str, path: &str) -> (SystemTime, Trace) {
        let t0 = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let id = RequestId::from_random([1; 16]);
        (t0, Trace::new(id, [2; 16], [3; 8], t0, method, path))
    }

    #[test]
    fn the_error_line_is_what_serde_json_writes() {
        let (t0, trace) = started("POST", "/v1/uploads");
        let record = Record {
            code: Some("upstream_unavailable".into()),
            route: Some("/v1/uploads"),
            ..Record::default()
        };
        let why = "S3 answered 503: \"slow down\"\n";
        assert_eq!(
            error_line(&trace, &record, why, t0),
            json!({
                "code": "upstream_unavailable", "error": why, "level": "error", "method": "POST",
                "msg": "upstream error", "request_id": trace.request_id().as_str(),
                "route": "/v1/uploads", "tenant_id": null, "ts": timestamp(t0),
            })
            .to_string()
        );
    }

    #[test]
    fn the_request_line_is_what_serde_json_writes() {
        let (t0, trace) = started("GET", "/v1/me");
        let now = t0 + Duration::from_millis(1_234);
        let call = |kind, host: &str, outcome| Call {
            kind,
            method: "POST".into(),
            host: host.into(),
            start: t0,
            duration_ms: 17,
            outcome,
            span_id: None,
        };
        let quiet = Record::default();
        let mut busy = Record {
            route: Some("/v1/catalog/{id}"),
            tenant_id: Some("00000000-0000-4000-8000-00000000d301".into()),
            tier: Some("basic".into()),
            user_id: Some("7d1f3f4e-1b2c-4d5e-8f90-0a1b2c3d4e5f".into()),
            code: Some("rate_limited".into()),
            error: None,
            sql_batches: 2,
            cache: [CacheCount { hits: 1, misses: 0 }; 5],
            calls: vec![
                call(CallKind::Sql, "127.0.0.1:4444", Outcome::Status(200)),
                call(
                    CallKind::S3,
                    "s3.\"quoted\"\\back\u{1}slash\u{e9}",
                    Outcome::Timeout,
                ),
                call(CallKind::Jwks, "idp", Outcome::Failed),
            ],
        };
        busy.cache[2] = CacheCount { hits: 0, misses: 3 };
        busy.cache[4] = CacheCount { hits: 2, misses: 5 };
        for (record, out) in [(&quiet, None), (&busy, Some(4_096))] {
            let line = request_line(&trace, record, "test", 200, out, now);
            assert_eq!(line, expected(&trace, record, 200, out, now));
        }
    }
}
