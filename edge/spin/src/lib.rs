//! Fermyon Spin / `wasi:http` adapter: translates spin-sdk requests and responses to and from the
//! `http` types core speaks, and implements core's ports with outbound `wasi:http`, the
//! `wasi:cli` environment and `wasi:clocks`. No behaviour lives here.
//!
//! By default it imports nothing Spin-specific, so the same component runs under `spin up` and
//! `wasmtime serve`; caches then live per component instance (`wasmtime serve
//! --max-instance-reuse-count` keeps instances warm). The `spin-kv` feature (`cargo xtask build
//! spin`: what `spin build` runs and `spin up` serves, see spin.toml) adds Spin's key-value store
//! behind the same port, so caches survive Spin's instance-per-request model.

use std::cell::RefCell;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use edgefront_core::auth::RustCrypto;
use edgefront_core::ports::ByteStream;
use edgefront_core::{
    ApiError, Body, Clock, Edge, Entropy, HttpClient, KeyValue, OutboundError, Platform,
};
use futures_util::{SinkExt, StreamExt};
use spin_sdk::http::{Fields, IncomingRequest, OutgoingResponse, ResponseOutparam};
use wasi::clocks::monotonic_clock;

/// The ports on Spin / `wasi:http`.
#[derive(Default)]
pub struct SpinPlatform;

#[cfg(feature = "spin-kv")]
mod spin_kv {
    //! Spin's `default` key-value store (spin.toml grants it). Store errors read as misses and
    //! unwritten entries: the cache is an optimisation, core falls back to the origin.
    use spin_sdk::key_value::Store;

    pub struct DefaultStore(Store);

    pub fn open() -> Option<DefaultStore> {
        Store::open_default().ok().map(DefaultStore)
    }

    impl edgefront_core::expiring::RawStore for DefaultStore {
        fn get(&self, key: &str) -> Option<Vec<u8>> {
            self.0.get(key).ok().flatten()
        }

        fn set(&self, key: &str, value: &[u8]) {
            let _ = self.0.set(key, value);
        }

        fn delete(&self, key: &str) {
            let _ = self.0.delete(key);
        }

        fn keys(&self) -> Vec<String> {
            self.0.get_keys().unwrap_or_default()
        }
    }
}

thread_local! {
    // One Edge per component instance: configuration is read and validated once.
    static INSTANCE: RefCell<Option<Rc<Edge<SpinPlatform>>>> = const { RefCell::new(None) };
}

fn instance() -> Rc<Edge<SpinPlatform>> {
    INSTANCE.with(|cell| {
        cell.borrow_mut()
            .get_or_insert_with(|| {
                let source = |name: &str| std::env::var(name).ok();
                Rc::new(Edge::new(&source, SpinPlatform))
            })
            .clone()
    })
}

#[spin_sdk::http_component]
async fn handle(req: IncomingRequest, out: ResponseOutparam) {
    let edge = instance();
    let path = req.path_with_query().unwrap_or_default();
    let head = head_of(&req);
    // The body stays wasi:http's stream: core reads it within the route's limit (and not at all
    // when Content-Length is over it); what it does not read is never taken in.
    let mut body = Box::pin(req.into_body_stream()).fuse();
    // The request's id and trace; its log line and spans go out once the answer has.
    let rp = head.as_ref().ok().map(|h| edge.begin(h));
    let resp = match (head, &rp) {
        (Ok(head), Some(rp)) => edge.serve_body(rp, head, &mut body).await,
        (head, _) => {
            let why = head
                .err()
                .unwrap_or_else(|| "the request head is not valid HTTP".into());
            let instance = path.split('?').next().unwrap_or_default();
            ApiError::bad_request(why)
                .into_response(instance)
                .map(Body::Full)
        }
    };
    let (parts, resp_body) = resp.into_parts();
    let status = parts.status.as_u16();
    let entries: Vec<(String, Vec<u8>)> = parts
        .headers
        .iter()
        .map(|(n, v)| (n.as_str().to_owned(), v.as_bytes().to_vec()))
        .collect();
    let headers = Fields::from_list(&entries).unwrap_or_else(|_| Fields::new());
    let outgoing = OutgoingResponse::new(headers);
    let _ = outgoing.set_status_code(parts.status.as_u16());
    // After the answer, what is left of a refused body is read off (bounded) and dropped, so
    // the client receives the 413 rather than a reset.
    let linger = edgefront_core::input::discard(&mut body, edgefront_core::input::LINGER_BYTES);
    match resp_body {
        Body::Full(bytes) => {
            let size = u64::try_from(bytes.len()).ok();
            // A client that hung up shows up as a write error; there is nobody left to tell.
            let _ = out.set_with_body(outgoing, bytes.to_vec()).await;
            if let Some(rp) = &rp {
                edge.finish(rp, status, size).await;
            }
            linger.await;
        }
        Body::Stream { mut chunks, driver } => {
            let sink = outgoing.take_body();
            out.set(outgoing);
            let writer = async move {
                let mut sink = std::pin::pin!(sink);
                while let Some(chunk) = chunks.next().await {
                    if sink.send(chunk.to_vec()).await.is_err() {
                        break;
                    }
                }
                // Dropping the receiver tells the driver the client is gone (if it is).
                drop(chunks);
                let _ = sink.close().await;
            };
            // The driver runs to the end either way: it settles the request's accounting.
            futures_util::future::join3(driver, writer, linger).await;
            if let Some(rp) = &rp {
                edge.finish(rp, status, None).await;
            }
        }
    }
}

fn head_of(req: &IncomingRequest) -> Result<http::request::Parts, String> {
    let authority = req.authority().unwrap_or_default();
    let uri = format!(
        "http://{}{}",
        if authority.is_empty() {
            "localhost"
        } else {
            &authority
        },
        req.path_with_query().unwrap_or_else(|| "/".into())
    );
    let mut builder = http::Request::builder()
        .method(req.method().to_string().as_str())
        .uri(uri);
    let mut has_host = false;
    for (name, value) in req.headers().entries() {
        has_host |= name.eq_ignore_ascii_case("host");
        builder = builder.header(name, value);
    }
    // wasi:http carries the Host as the request's authority; core reads the Host header.
    if !has_host && !authority.is_empty() {
        builder = builder.header(http::header::HOST, authority);
    }
    let (head, ()) = builder.body(()).map_err(|e| e.to_string())?.into_parts();
    Ok(head)
}

fn network(e: impl std::fmt::Display) -> OutboundError {
    OutboundError::Network(e.to_string())
}

impl HttpClient for SpinPlatform {
    async fn send(
        &self,
        req: http::Request<Bytes>,
    ) -> Result<http::Response<Bytes>, OutboundError> {
        let req = req.map(|b| b.to_vec());
        let resp: spin_sdk::http::Response = spin_sdk::http::send(req).await.map_err(network)?;
        let mut out = http::Response::builder().status(*resp.status());
        for (name, value) in resp.headers() {
            out = out.header(name, value.as_bytes());
        }
        out.body(Bytes::from(resp.into_body())).map_err(network)
    }

    async fn send_streaming(
        &self,
        req: http::Request<Bytes>,
    ) -> Result<http::Response<ByteStream>, OutboundError> {
        let req = req.map(|b| b.to_vec());
        let resp: spin_sdk::http::IncomingResponse =
            spin_sdk::http::send(req).await.map_err(network)?;
        let mut out = http::Response::builder().status(resp.status());
        for (name, value) in resp.headers().entries() {
            out = out.header(name, value);
        }
        let chunks = resp.take_body_stream();
        // The response resource outlives its body stream (wasi:http child resources).
        let body: ByteStream = Box::pin(chunks.map(move |c| {
            let _parent = &resp;
            c.map(Bytes::from).map_err(network)
        }));
        out.body(body).map_err(network)
    }
}

/// Resolves when the monotonic clock passes `deadline`, waking spin's executor through a
/// `wasi:clocks` pollable (the SDK has no timer of its own).
struct Sleep {
    deadline: u64,
    _token: Option<spin_executor::CancelOnDropToken>,
}

impl Future for Sleep {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if monotonic_clock::now() >= self.deadline {
            return Poll::Ready(());
        }
        let pollable = monotonic_clock::subscribe_instant(self.deadline);
        let token = spin_executor::push_waker_and_get_token(pollable, cx.waker().clone());
        self._token = Some(token.into());
        Poll::Pending
    }
}

impl Clock for SpinPlatform {
    fn now(&self) -> SystemTime {
        // wasi:clocks/wall-clock backs SystemTime on wasm32-wasip2.
        SystemTime::now()
    }

    async fn sleep(&self, duration: Duration) {
        let nanos = u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX);
        Sleep {
            deadline: monotonic_clock::now().saturating_add(nanos),
            _token: None,
        }
        .await
    }
}

/// Spin's key-value store with the `spin-kv` feature; otherwise no store at all, and core's
/// per-instance memory tier (`edgefront_core::memo`) is the cache.
impl KeyValue for SpinPlatform {
    async fn get(&self, key: &str) -> Result<Option<Bytes>, OutboundError> {
        #[cfg(feature = "spin-kv")]
        return Ok(spin_kv::open().and_then(|s| edgefront_core::expiring::get(&s, key, self.now())));
        #[cfg(not(feature = "spin-kv"))]
        {
            let _ = key;
            Ok(None)
        }
    }

    async fn put(&self, key: &str, value: Bytes, ttl: Duration) -> Result<(), OutboundError> {
        #[cfg(feature = "spin-kv")]
        if let Some(s) = spin_kv::open() {
            edgefront_core::expiring::put(&s, key, &value, self.now(), ttl);
        }
        let _ = (key, value, ttl);
        Ok(())
    }

    async fn delete(&self, key: &str) -> Result<(), OutboundError> {
        #[cfg(feature = "spin-kv")]
        if let Some(s) = spin_kv::open() {
            edgefront_core::expiring::RawStore::delete(&s, key);
        }
        let _ = key;
        Ok(())
    }
}

impl Entropy for SpinPlatform {
    fn fill(&self, buf: &mut [u8]) -> Result<(), OutboundError> {
        getrandom::getrandom(buf).map_err(network)
    }
}

/// With the `spin-kv` feature, rate-limit counters live in Spin's key-value store, shared by
/// every instance: read, count with core's [`edgefront_core::window::Counter`], write back.
/// Not atomic (two instances counting the same key at once may both pass), so the limit is
/// approximate under concurrency. Without the feature core counts per instance, or at the
/// origin when `RATE_LIMIT_URL` is set (what the dev stack does under `wasmtime serve`).
impl edgefront_core::ports::RateLimiter for SpinPlatform {
    #[cfg(feature = "spin-kv")]
    async fn admit(
        &self,
        _anchor: &str,
        hits: &[edgefront_core::window::Hit<'_>],
        now: SystemTime,
    ) -> Option<Result<Vec<edgefront_core::window::Decision>, OutboundError>> {
        use edgefront_core::expiring;
        use edgefront_core::window::{admit_chain, Counter};
        let store = spin_kv::open()?;
        let now_ms = edgefront_core::ratelimit::unix_ms(now);
        Some(Ok(admit_chain(hits, |hit| {
            let mut counter = expiring::get(&store, hit.key, now)
                .map(|b| Counter::from_bytes(&b))
                .unwrap_or_default();
            let decision = counter.admit_hit(now_ms, hit);
            if decision.allowed {
                // Kept for the two windows a counter spans; the store sweep drops it after.
                let ttl = Duration::from_secs(2 * u64::from(hit.rule.window_seconds));
                expiring::put(&store, hit.key, &counter.to_bytes(), now, ttl);
            }
            decision
        })))
    }
}

impl edgefront_core::ports::Telemetry for SpinPlatform {
    /// Standard output: Spin keeps it per component (`spin up` logs, or a log shipper).
    fn log(&self, line: &str) {
        println!("{line}");
    }
}

impl Platform for SpinPlatform {
    type Verifier = RustCrypto;

    fn verifier(&self) -> &RustCrypto {
        &RustCrypto
    }

    fn runtime(&self) -> &'static str {
        "spin"
    }
}
