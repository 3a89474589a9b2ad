//! Cloudflare Workers adapter: translates the runtime's `Request` and `Response` to and from the
//! `http` types core speaks, and implements core's ports with `fetch`, KV, a Durable Object
//! (rate-limit counters, [`ratelimit`]), `Date` and `setTimeout` ([`sleep`]; workers-rs for the
//! bindings).
//! No behaviour lives here.

use std::cell::RefCell;
use std::future::Future;
use std::rc::Rc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use edgefront_core::ports::ByteStream;
use edgefront_core::request_headers::header_lines;
use edgefront_core::{Body, Clock, Edge, Entropy, HttpClient, KeyValue, OutboundError, Platform};
use futures_channel::oneshot;
use futures_util::StreamExt;
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use wasm_bindgen_futures::JsFuture;
use worker::{event, js_sys, Context, Env, KvStore, ObjectNamespace};

/// Name of the KV namespace binding in wrangler.toml.
const KV_BINDING: &str = "EDGEFRONT_KV";

mod ratelimit;
mod sleep;
mod webcrypto;

pub use ratelimit::RateLimiterObject;

pub struct WorkersPlatform {
    kv: Option<KvStore>,
    /// Rate-limit counters (Durable Objects); none when the binding is not configured.
    limiter: Option<ObjectNamespace>,
    crypto: webcrypto::WebCrypto,
}

/// One per isolate: configuration is read and validated once, not per request.
struct Instance {
    edge: Rc<Edge<WorkersPlatform>>,
    /// The request headers core reads ([`Edge::request_headers`]), as a JS array of names.
    wanted: js_sys::Array,
}

thread_local! {
    static INSTANCE: RefCell<Option<Instance>> = const { RefCell::new(None) };
}

fn instance(env: &Env) -> (Rc<Edge<WorkersPlatform>>, js_sys::Array) {
    INSTANCE.with(|cell| {
        let mut cell = cell.borrow_mut();
        let i = cell.get_or_insert_with(|| cold::build_instance(env));
        (i.edge.clone(), i.wanted.clone())
    })
}

/// Paths a request rarely takes, which `wasm-opt` must not inline (`*::cold::*`, in
/// `Cargo.toml`; see `edgefront_core::ports::cold`).
mod cold {
    use super::*;

    /// The instance's first request only. Kept out of [`instance`], which every request
    /// calls: inlined, the configuration's whole parse made that a 38 KB function, which V8
    /// recompiled with TurboFan in each new isolate (≈ 33 ms of CPU) for the few
    /// instructions a request runs in it.
    #[cold]
    #[inline(never)]
    pub(super) fn build_instance(env: &Env) -> Instance {
        let source = |name: &str| {
            env.secret(name)
                .map(|s| s.to_string())
                .or_else(|_| env.var(name).map(|v| v.to_string()))
                .ok()
        };
        let platform = WorkersPlatform {
            kv: env.kv(KV_BINDING).ok(),
            limiter: env.durable_object(ratelimit::BINDING).ok(),
            crypto: webcrypto::WebCrypto::default(),
        };
        let edge = Rc::new(Edge::new(&source, platform));
        let wanted = edge
            .request_headers()
            .iter()
            .map(|n| JsValue::from_str(n.as_str()))
            .collect();
        Instance { edge, wanted }
    }
}

#[wasm_bindgen(module = "cloudflare:workers")]
extern "C" {
    /// The Worker's bindings, importable at the top level since 2025.
    #[wasm_bindgen(thread_local_v2, js_name = env)]
    static IMPORTED_ENV: JsValue;
}

/// When the isolate starts (on Cloudflare, during the TLS handshake that precedes its first
/// request): the configuration is read and validated then, and one `/healthz` is served
/// internally ([`Edge::warm_up`]) so V8 has compiled the request path before a client waits.
#[event(start)]
fn start() {
    let env = IMPORTED_ENV.with(JsValue::clone);
    if env.is_object() {
        let _ = instance(&env.unchecked_into::<Env>()).0.warm_up();
    }
}

/// The Worker's `fetch` handler (the export that `entry.mjs` calls, through the handler
/// worker-build generates; workers-rs' `#[event(fetch)]` would make it an `async` export).
/// An answer that is ready when first polled (every request that waits on no I/O:
/// `/healthz`, `/v1/me` on warm caches, refusals, the storefront's `304`s) goes back as the
/// `Response` itself. Otherwise the runtime gets a promise of it. An `async` export always
/// pays for a promise, a spawned task and its microtasks (wasm-bindgen-futures), even for an
/// answer that was ready at once.
///
/// The first poll uses a waker that does nothing. A future left pending by it is then driven
/// by `future_to_promise`, whose first poll hands every pending leaf (a `JsFuture`, a
/// channel) its real waker, as a poll must.
#[wasm_bindgen(js_name = fetch)]
pub fn fetch_handler(
    req: web_sys::Request,
    env: Env,
    ctx: worker::worker_sys::Context,
) -> Result<JsValue, JsValue> {
    let mut answer = Box::pin(serve_request(req, env, Context::new(ctx)));
    let mut first = std::task::Context::from_waker(std::task::Waker::noop());
    match answer.as_mut().poll(&mut first) {
        std::task::Poll::Ready(r) => settle(r),
        std::task::Poll::Pending => {
            Ok(wasm_bindgen_futures::future_to_promise(async move { settle(answer.await) }).into())
        }
    }
}

/// The runtime's answer: the `Response`, or, when the adapter could not build one (a JS call
/// failed), the error in the log and a bare 500, as workers-rs' entry point answered.
fn settle(answer: worker::Result<web_sys::Response>) -> Result<JsValue, JsValue> {
    match answer {
        Ok(resp) => Ok(resp.into()),
        Err(e) => {
            worker::console_error!("{e}");
            let init = web_sys::ResponseInit::new();
            init.set_status(500);
            web_sys::Response::new_with_opt_str_and_init(Some("INTERNAL SERVER ERROR"), &init)
                .map(JsValue::from)
        }
    }
}

// A request comes in as the runtime's own `Request` and its answer goes out as a `Response`:
// workers-rs' conversion would read `request.cf`, the URL twice and each header with its own
// JS calls, and build the answer's `Headers` one `append` at a time. Here a request's head
// crosses into wasm in one string (method, URL and only the headers core reads) and an
// answer's head crosses out in one.
async fn serve_request(
    req: web_sys::Request,
    env: Env,
    ctx: Context,
) -> worker::Result<web_sys::Response> {
    let (edge, wanted) = instance(&env);
    let text = edge.read_head(|buf| request_head_into(&req, &wanted, buf));
    let head = match head_of_request(text, edge.request_headers()) {
        Ok(h) => h,
        Err(problem) => return Ok(respond(problem)?),
    };
    let Some(stream) = req.body() else {
        return Ok(serve_inline(edge, head, &ctx).await?);
    };
    // A small declared body (every JSON body a route accepts) is read in one `arrayBuffer()`
    // when core first asks for it: the stream reader's JS machinery (`getReader`, a promise per
    // `read`, `releaseLock`) cost more than the rest of an upload's adapter work. Any other body
    // stays the runtime's stream, read only as core asks (and not at all when its
    // Content-Length is over the route's limit).
    let mut body = if edgefront_core::input::body_is_small(&head.headers) {
        drop(stream);
        whole_body(req)
    } else {
        byte_stream(stream)
    }
    .fuse();
    // The request runs as a waitUntil task, so a streamed body's driver keeps running (and
    // settles its accounting) even if the client disconnects; the head comes back here.
    let (head_tx, head_rx) = oneshot::channel();
    // What of a refused body to read off before answering (see `input::drain_budget`): the
    // answer never goes out while this request still reads its body.
    let drain = edgefront_core::input::drain_budget(&head.headers);
    ctx.wait_until(async move {
        // The request's id and trace; its log line and spans go out once the answer has.
        let rp = edge.begin(&head);
        let (parts, out) = edge.serve_body(&rp, head, &mut body).await.into_parts();
        let status = parts.status.as_u16();
        if parts.status == http::StatusCode::PAYLOAD_TOO_LARGE {
            edgefront_core::input::discard(&mut body, drain).await;
        }
        // Past this the body is never read again: dropping it cancels the rest.
        drop(body);
        let bytes_out = match out {
            Body::Full(bytes) => {
                let size = u64::try_from(bytes.len()).ok();
                let _ = head_tx.send((parts, Ok(bytes)));
                size
            }
            Body::Stream { chunks, driver } => {
                let _ = head_tx.send((parts, Err(chunks)));
                driver.await;
                None
            }
        };
        edge.finish(&rp, status, bytes_out).await;
    });
    let (parts, body) = head_rx.await.map_err(|_| {
        worker::Error::RustError("the request task ended without a response".into())
    })?;
    Ok(match body {
        Ok(bytes) => respond(http::Response::from_parts(parts, bytes))?,
        Err(chunks) => respond_streaming(&parts, chunks)?,
    })
}

/// A request without a body (most of them: GET, HEAD, DELETE) has nothing to drive after the
/// answer, so it is served here and now, without the `waitUntil` task and the channel hop a
/// streamed body needs; only its log line and spans go out after the answer. (Only chat turns
/// stream their answer, and they are POSTs with a body; a streamed answer here would be
/// gathered, never lost.)
async fn serve_inline(
    edge: Rc<Edge<WorkersPlatform>>,
    head: http::request::Parts,
    ctx: &Context,
) -> Result<web_sys::Response, JsValue> {
    let rp = edge.begin(&head);
    let mut none = futures_util::stream::empty::<Result<Bytes, OutboundError>>();
    let (parts, out) = edge.serve_body(&rp, head, &mut none).await.into_parts();
    let bytes = out.collect().await;
    let status = parts.status.as_u16();
    let size = u64::try_from(bytes.len()).ok();
    let resp = respond(http::Response::from_parts(parts, bytes));
    // The log line is written now; only a span export (I/O) goes on as a waitUntil task.
    if let Some(spans) = edge.log_request(&rp, status, size) {
        ctx.wait_until(async move { edge.export_spans(&rp, spans).await });
    }
    resp
}

/// A JS `ReadableStream` of `Uint8Array` chunks as core's byte stream. Dropping it cancels
/// what is left unread.
fn byte_stream(stream: web_sys::ReadableStream) -> ByteStream {
    let chunks = wasm_streams::ReadableStream::from_raw(stream.unchecked_into()).into_stream();
    Box::pin(chunks.map(|chunk| {
        chunk
            .map(|c| match c.dyn_into::<js_sys::Uint8Array>() {
                Ok(bytes) => Bytes::from(bytes.to_vec()),
                Err(other) => Bytes::from(js_sys::Uint8Array::new(&other).to_vec()),
            })
            .map_err(js_error)
    }))
}

/// A request's whole body as a one-chunk stream, read when first polled.
fn whole_body(req: web_sys::Request) -> ByteStream {
    Box::pin(futures_util::stream::once(async move {
        array_buffer(req.array_buffer()).await
    }))
}

/// A body's `arrayBuffer()` promise, settled, as bytes: one copy into wasm memory.
async fn array_buffer(promise: Result<js_sys::Promise, JsValue>) -> Result<Bytes, OutboundError> {
    let buffer = JsFuture::from(promise.map_err(js_error)?)
        .await
        .map_err(js_error)?;
    Ok(Bytes::from(js_sys::Uint8Array::new(&buffer).to_vec()))
}

/// The path of a WHATWG-serialized URL (for a problem document's `instance`).
fn path_of(url: &str) -> &str {
    let after_scheme = url.find("://").map_or(0, |i| i + 3);
    let rest = url.get(after_scheme..).unwrap_or("");
    let path = rest.find('/').and_then(|i| rest.get(i..)).unwrap_or("/");
    path.split(['?', '#']).next().unwrap_or("/")
}

#[wasm_bindgen(module = "/src/request_head.js")]
extern "C" {
    /// A request's head in one crossing, written as UTF-8 into `buf` (wasm memory): its
    /// method, its URL, then a `name,value` line for each of the `wanted` headers it has
    /// (`Headers.get`: repeated ones joined, as iterating `Headers` joins them). A method is a
    /// token and a WHATWG-serialized URL holds no line break, nor does a header value. Returns
    /// the bytes written, or minus the bytes it needs when it does not fit
    /// ([`edgefront_core::request_headers::head_bytes`]).
    fn request_head_into(request: &web_sys::Request, wanted: &js_sys::Array, buf: &mut [u8])
        -> i32;
}

/// The head [`request_head_into`] wrote, as `http` parts (core's
/// [`edgefront_core::request_headers::head_parts`]); `wanted` is what it was asked for. A head
/// `http` refuses is answered 400, its problem naming the request's path.
fn head_of_request(
    text: Bytes,
    wanted: &[http::HeaderName],
) -> Result<http::request::Parts, http::Response<Bytes>> {
    // The parts are slices of this one buffer (one count of its owners, no copy).
    edgefront_core::request_headers::head_parts(text.clone(), wanted).map_err(|e| {
        let text = String::from_utf8_lossy(&text);
        let url = text.split('\n').nth(1).unwrap_or("");
        edgefront_core::ApiError::bad_request(format!("request head: {e}"))
            .into_response(path_of(url))
    })
}

/// Every header of a JS `Headers` in one crossing: `Array.from(headers).join("\n")` is
/// `name,value` lines.
fn read_headers(headers: &web_sys::Headers, map: &mut http::HeaderMap) -> Result<(), String> {
    let text = String::from(js_sys::Array::from(headers).join("\n"));
    header_lines(text.split('\n'), &ANSWER_HEADERS, map).map_err(|e| e.to_string())
}

/// The names an outbound answer usually carries (the SQL proxy's: type, length, date and its
/// request id), taken as they are by [`header_lines`].
const ANSWER_HEADERS: [http::HeaderName; 6] = [
    http::header::CONTENT_TYPE,
    http::header::CONTENT_LENGTH,
    http::header::DATE,
    http::header::CACHE_CONTROL,
    http::header::ETAG,
    edgefront_core::telemetry::REQUEST_ID,
];

/// A header map as a JS `HeadersInit`, built with one `JSON.parse` instead of a call per
/// header (core's [`edgefront_core::reply::headers_json`]: a record, or pairs when `Set-Cookie`
/// repeats).
fn headers_init(map: &http::HeaderMap) -> Result<JsValue, JsValue> {
    js_sys::JSON::parse(&headers_record(map)?)
}

/// The JSON text of [`headers_init`].
fn headers_record(map: &http::HeaderMap) -> Result<String, JsValue> {
    edgefront_core::reply::headers_json(map).map_err(|e| JsValue::from_str(&e.to_string()))
}

fn response_init(parts: &http::response::Parts) -> Result<web_sys::ResponseInit, JsValue> {
    let init = web_sys::ResponseInit::new();
    init.set_status(parts.status.as_u16());
    init.set_headers(&headers_init(&parts.headers)?);
    Ok(init)
}

#[wasm_bindgen(module = "/src/respond.js")]
extern "C" {
    /// `new Response(body, { status, headers })` in one crossing: `headers` is the JSON record
    /// [`edgefront_core::reply::headers_json`] writes, `body` is copied out of wasm memory.
    #[wasm_bindgen(catch, js_name = respond)]
    fn respond_with(status: u16, headers: &str, body: &[u8]) -> Result<web_sys::Response, JsValue>;
}

/// An answer with its whole body, as a JS `Response`.
fn respond(resp: http::Response<Bytes>) -> Result<web_sys::Response, JsValue> {
    let (parts, body) = resp.into_parts();
    respond_with(
        parts.status.as_u16(),
        &headers_record(&parts.headers)?,
        &body,
    )
}

/// A streamed answer (chat turns): each chunk goes out as core yields it.
fn respond_streaming(
    parts: &http::response::Parts,
    chunks: futures_channel::mpsc::UnboundedReceiver<Bytes>,
) -> Result<web_sys::Response, JsValue> {
    let init = response_init(parts)?;
    let js = chunks.map(|c| Ok::<JsValue, JsValue>(js_sys::Uint8Array::from(c.as_ref()).into()));
    let stream = wasm_streams::ReadableStream::from_stream(js).into_raw();
    web_sys::Response::new_with_opt_readable_stream_and_init(Some(stream.unchecked_ref()), &init)
}

fn network(e: impl std::fmt::Display) -> OutboundError {
    OutboundError::Network(e.to_string())
}

/// What a thrown JS value says: an `Error`'s message, a string as is, else its debug form.
fn js_text(e: &JsValue) -> String {
    e.dyn_ref::<js_sys::Error>()
        .map(|e| String::from(e.message()))
        .or_else(|| e.as_string())
        .unwrap_or_else(|| format!("{e:?}"))
}

fn js_error(e: JsValue) -> OutboundError {
    OutboundError::Network(js_text(&e))
}

#[wasm_bindgen]
extern "C" {
    /// The runtime's global `fetch`.
    #[wasm_bindgen(js_name = fetch, catch)]
    fn global_fetch(url: &str, init: &web_sys::RequestInit) -> Result<js_sys::Promise, JsValue>;
}

/// One outbound fetch: the request's head crosses out in two strings, the answer's head comes
/// back in one.
async fn fetch_head(
    req: http::Request<Bytes>,
) -> Result<(http::response::Builder, web_sys::Response), OutboundError> {
    let (parts, body) = req.into_parts();
    let init = web_sys::RequestInit::new();
    init.set_method(parts.method.as_str());
    let headers = headers_init(&parts.headers).map_err(|e| OutboundError::Invalid(js_text(&e)))?;
    init.set_headers(&headers);
    if !body.is_empty() {
        init.set_body(&js_sys::Uint8Array::from(body.as_ref()));
    }
    let promise = global_fetch(&parts.uri.to_string(), &init)
        .map_err(|e| OutboundError::Invalid(js_text(&e)))?;
    let resp: web_sys::Response = JsFuture::from(promise)
        .await
        .map_err(js_error)?
        .unchecked_into();
    let mut head = http::Response::builder().status(resp.status());
    if let Some(map) = head.headers_mut() {
        read_headers(&resp.headers(), map).map_err(network)?;
    }
    Ok((head, resp))
}

#[wasm_bindgen(module = "/src/fetch.js")]
extern "C" {
    /// `fetch`, the answer's `arrayBuffer()` and its head, in one crossing and one promise
    /// (`src/fetch.js`): `headers` is the JSON record [`edgefront_core::reply::headers_json`]
    /// writes, `body` is copied out of wasm memory, `ms` > 0 is the deadline
    /// (`AbortSignal.timeout`). Resolves to a [`WholeAnswer`].
    fn fetch_whole(url: &str, method: &str, headers: &str, body: &[u8], ms: u32)
        -> js_sys::Promise;

    /// What [`fetch_whole`] resolves to.
    type WholeAnswer;

    /// The status, then a `name,value` line per header.
    #[wasm_bindgen(method, getter)]
    fn head(this: &WholeAnswer) -> String;

    /// The whole body.
    #[wasm_bindgen(method, getter)]
    fn body(this: &WholeAnswer) -> js_sys::Uint8Array;
}

/// A request whose whole answer core wants, through [`fetch_whole`]; `limit`, if any, is
/// enforced by the runtime and reported as [`OutboundError::Timeout`].
async fn send_whole(
    req: http::Request<Bytes>,
    limit: Option<Duration>,
) -> Result<http::Response<Bytes>, OutboundError> {
    let (parts, body) = req.into_parts();
    let headers =
        headers_record(&parts.headers).map_err(|e| OutboundError::Invalid(js_text(&e)))?;
    let ms = limit.map_or(0, |l| {
        u32::try_from(l.as_millis()).unwrap_or(u32::MAX).max(1)
    });
    let promise = fetch_whole(
        &parts.uri.to_string(),
        parts.method.as_str(),
        &headers,
        &body,
        ms,
    );
    let answer: WholeAnswer = JsFuture::from(promise)
        .await
        .map_err(|e| match limit {
            Some(limit) if is_timeout(&e) => OutboundError::Timeout(limit),
            _ => js_error(e),
        })?
        .unchecked_into();
    let head = answer.head();
    let mut lines = head.split('\n');
    let status = lines
        .next()
        .and_then(|s| s.parse::<u16>().ok())
        .ok_or_else(|| network("an answer without a status"))?;
    let mut builder = http::Response::builder().status(status);
    if let Some(map) = builder.headers_mut() {
        header_lines(lines, &ANSWER_HEADERS, map).map_err(network)?;
    }
    builder
        .body(Bytes::from(answer.body().to_vec()))
        .map_err(network)
}

/// Whether a rejected `fetch` ran out of time: `AbortSignal.timeout` rejects with a
/// `DOMException` named `TimeoutError`.
fn is_timeout(e: &JsValue) -> bool {
    js_sys::Reflect::get(e, &JsValue::from_str("name"))
        .ok()
        .and_then(|n| n.as_string())
        .is_some_and(|n| n == "TimeoutError")
}

impl HttpClient for WorkersPlatform {
    async fn send(
        &self,
        req: http::Request<Bytes>,
    ) -> Result<http::Response<Bytes>, OutboundError> {
        send_whole(req, None).await
    }

    async fn send_within(
        &self,
        req: http::Request<Bytes>,
        limit: Duration,
    ) -> Result<http::Response<Bytes>, OutboundError> {
        send_whole(req, Some(limit)).await
    }

    async fn send_streaming(
        &self,
        req: http::Request<Bytes>,
    ) -> Result<http::Response<ByteStream>, OutboundError> {
        let (head, resp) = fetch_head(req).await?;
        let body: ByteStream = match resp.body() {
            Some(stream) => byte_stream(stream),
            // No body at all (204, HEAD): an empty stream.
            None => Box::pin(futures_util::stream::empty()),
        };
        head.body(body).map_err(network)
    }
}

impl Clock for WorkersPlatform {
    fn now(&self) -> SystemTime {
        // SystemTime::now() panics on wasm32-unknown-unknown; Date.now() is the runtime's clock
        // (one call, where workers-rs' `Date::now()` builds a `Date` object and asks it).
        // `as` saturates (a NaN would be 0), so no clock value can panic here.
        SystemTime::UNIX_EPOCH + Duration::from_millis(js_sys::Date::now() as u64)
    }

    async fn sleep(&self, duration: Duration) {
        sleep::Sleep::new(duration).await;
    }
}

impl WorkersPlatform {
    fn kv(&self) -> Result<&KvStore, OutboundError> {
        self.kv.as_ref().ok_or_else(|| {
            OutboundError::Invalid(format!(
                "KV namespace binding {KV_BINDING} is not configured"
            ))
        })
    }
}

impl KeyValue for WorkersPlatform {
    async fn get(&self, key: &str) -> Result<Option<Bytes>, OutboundError> {
        let v = self.kv()?.get(key).bytes().await.map_err(network)?;
        Ok(v.map(Bytes::from))
    }

    async fn put(&self, key: &str, value: Bytes, ttl: Duration) -> Result<(), OutboundError> {
        // Workers KV refuses TTLs under 60 s.
        let ttl = ttl.as_secs().max(60);
        self.kv()?
            .put_bytes(key, &value)
            .map_err(network)?
            .expiration_ttl(ttl)
            .execute()
            .await
            .map_err(network)
    }

    async fn delete(&self, key: &str) -> Result<(), OutboundError> {
        self.kv()?.delete(key).await.map_err(network)
    }
}

impl Entropy for WorkersPlatform {
    fn fill(&self, buf: &mut [u8]) -> Result<(), OutboundError> {
        getrandom::getrandom(buf).map_err(network)
    }
}

impl edgefront_core::ports::RateLimiter for WorkersPlatform {
    /// One Durable Object call when `RATE_LIMITER` is bound; otherwise `None`, and core counts
    /// in this isolate's memory.
    async fn admit(
        &self,
        anchor: &str,
        hits: &[edgefront_core::ratelimit::Hit<'_>],
        now: SystemTime,
    ) -> Option<Result<Vec<edgefront_core::ratelimit::Decision>, OutboundError>> {
        let namespace = self.limiter.as_ref()?;
        Some(ratelimit::admit(namespace, anchor, hits, now).await)
    }
}

impl edgefront_core::ports::Telemetry for WorkersPlatform {
    /// `console.log`: Workers Logs and Logpush index a JSON line's fields.
    fn log(&self, line: &str) {
        // The line as it is, in one call: `console_log!` would format it into a copy first.
        web_sys::console::log_1(&JsValue::from_str(line));
    }
}

impl Platform for WorkersPlatform {
    type Verifier = webcrypto::WebCrypto;

    fn verifier(&self) -> &webcrypto::WebCrypto {
        &self.crypto
    }

    fn runtime(&self) -> &'static str {
        "workers"
    }
}
