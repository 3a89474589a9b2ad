//! Cloudflare Workers adapter: translates workers-rs requests and responses to and from the
//! `http` types core speaks, and implements core's ports with Fetch, KV, a Durable Object
//! (rate-limit counters, [`ratelimit`]), `Date` and `Delay`.
//! No behaviour lives here.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use edgefront_core::ports::ByteStream;
use edgefront_core::{Body, Clock, Edge, Entropy, HttpClient, KeyValue, OutboundError, Platform};
use futures_channel::oneshot;
use futures_util::StreamExt;
use worker::{
    event, js_sys, Context, Date, Delay, Env, Fetch, Headers, KvStore, Method, ObjectNamespace,
    RequestInit,
};

/// Name of the KV namespace binding in wrangler.toml.
const KV_BINDING: &str = "EDGEFRONT_KV";

mod ratelimit;
mod webcrypto;

pub use ratelimit::RateLimiterObject;

pub struct WorkersPlatform {
    kv: Option<KvStore>,
    /// Rate-limit counters (Durable Objects); none when the binding is not configured.
    limiter: Option<ObjectNamespace>,
    crypto: webcrypto::WebCrypto,
}

thread_local! {
    // One Edge per isolate: configuration is read and validated once, not per request.
    static INSTANCE: RefCell<Option<Rc<Edge<WorkersPlatform>>>> = const { RefCell::new(None) };
}

fn instance(env: &Env) -> Rc<Edge<WorkersPlatform>> {
    INSTANCE.with(|cell| {
        cell.borrow_mut()
            .get_or_insert_with(|| {
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
                Rc::new(Edge::new(&source, platform))
            })
            .clone()
    })
}

#[event(fetch)]
async fn fetch(
    mut req: worker::Request,
    env: Env,
    ctx: Context,
) -> worker::Result<worker::Response> {
    let edge = instance(&env);
    let head = match head_of_request(&req) {
        Ok(h) => h,
        Err(e) => {
            return from_http(edgefront_core::ApiError::bad_request(e).into_response(&req.path()))
        }
    };
    if req.inner().body().is_none() {
        return serve_inline(edge, head, &ctx).await;
    }
    // The body stays the runtime's stream: core reads it within the route's limit (and not at
    // all when Content-Length is over it).
    let mut body = body_chunks(&mut req);
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
    match body {
        Ok(bytes) => from_http(http::Response::from_parts(parts, bytes)),
        Err(chunks) => Ok(worker::Response::from_stream(
            chunks.map(|c| Ok::<Vec<u8>, worker::Error>(c.to_vec())),
        )?
        .with_status(parts.status.as_u16())
        .with_headers(headers_from(&parts.headers)?)),
    }
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
) -> worker::Result<worker::Response> {
    let rp = edge.begin(&head);
    let mut none = futures_util::stream::empty::<Result<Bytes, OutboundError>>();
    let (parts, out) = edge.serve_body(&rp, head, &mut none).await.into_parts();
    let bytes = out.collect().await;
    let status = parts.status.as_u16();
    let size = u64::try_from(bytes.len()).ok();
    let resp = from_http(http::Response::from_parts(parts, bytes));
    ctx.wait_until(async move { edge.finish(&rp, status, size).await });
    resp
}

/// The request body's chunks, read from the runtime only as core asks for them (none for a
/// request without a body). Dropping the stream cancels what is left unread.
fn body_chunks(req: &mut worker::Request) -> futures_util::stream::Fuse<ByteStream> {
    let chunks: ByteStream = match req.stream() {
        Ok(s) => Box::pin(s.map(|c| c.map(Bytes::from).map_err(network))),
        Err(_) => Box::pin(futures_util::stream::empty()),
    };
    chunks.fuse()
}

fn head_of_request(req: &worker::Request) -> Result<http::request::Parts, String> {
    // The runtime's URL, already WHATWG-serialized (host in ASCII): `http` parses it as is.
    // (`Request::url()` would parse it again with the `url` crate, whose IDNA tables alone
    // weigh more than this adapter.)
    let mut builder = http::Request::builder()
        .method(req.method().as_ref())
        .uri(req.inner().url());
    for (name, value) in req.headers() {
        builder = builder.header(name, value);
    }
    let (head, ()) = builder.body(()).map_err(|e| e.to_string())?.into_parts();
    Ok(head)
}

fn headers_from(map: &http::HeaderMap) -> worker::Result<Headers> {
    let headers = Headers::new();
    for (name, value) in map {
        if let Ok(v) = value.to_str() {
            headers.append(name.as_str(), v)?;
        }
    }
    Ok(headers)
}

fn from_http(resp: http::Response<Bytes>) -> worker::Result<worker::Response> {
    let (parts, body) = resp.into_parts();
    Ok(worker::Response::from_bytes(body.to_vec())?
        .with_status(parts.status.as_u16())
        .with_headers(headers_from(&parts.headers)?))
}

fn network(e: impl std::fmt::Display) -> OutboundError {
    OutboundError::Network(e.to_string())
}

fn outbound(req: http::Request<Bytes>) -> Result<worker::Request, OutboundError> {
    let (parts, body) = req.into_parts();
    let mut init = RequestInit::new();
    init.with_method(Method::from(parts.method.to_string()))
        .with_headers(headers_from(&parts.headers).map_err(network)?);
    if !body.is_empty() {
        init.with_body(Some(js_sys::Uint8Array::from(body.as_ref()).into()));
    }
    worker::Request::new_with_init(&parts.uri.to_string(), &init)
        .map_err(|e| OutboundError::Invalid(e.to_string()))
}

fn head_of(resp: &worker::Response) -> http::response::Builder {
    let mut out = http::Response::builder().status(resp.status_code());
    for (name, value) in resp.headers() {
        out = out.header(name, value);
    }
    out
}

impl HttpClient for WorkersPlatform {
    async fn send(
        &self,
        req: http::Request<Bytes>,
    ) -> Result<http::Response<Bytes>, OutboundError> {
        let mut resp = Fetch::Request(outbound(req)?)
            .send()
            .await
            .map_err(network)?;
        let head = head_of(&resp);
        let bytes = resp.bytes().await.map_err(network)?;
        head.body(Bytes::from(bytes)).map_err(network)
    }

    async fn send_streaming(
        &self,
        req: http::Request<Bytes>,
    ) -> Result<http::Response<ByteStream>, OutboundError> {
        let mut resp = Fetch::Request(outbound(req)?)
            .send()
            .await
            .map_err(network)?;
        let head = head_of(&resp);
        let body: ByteStream = match resp.stream() {
            Ok(s) => Box::pin(s.map(|c| c.map(Bytes::from).map_err(network))),
            // No body at all (204, HEAD): an empty stream.
            Err(_) => Box::pin(futures_util::stream::empty()),
        };
        head.body(body).map_err(network)
    }
}

impl Clock for WorkersPlatform {
    fn now(&self) -> SystemTime {
        // SystemTime::now() panics on wasm32-unknown-unknown; Date.now() is the runtime's clock.
        SystemTime::UNIX_EPOCH + Duration::from_millis(Date::now().as_millis())
    }

    async fn sleep(&self, duration: Duration) {
        Delay::from(duration).await;
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
        worker::console_log!("{line}");
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
