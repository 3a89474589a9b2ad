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

#[cfg(any(feature = "spin-kv", test))]
mod expiring {
    //! Entries with an expiry in a store that has none (Spin's key-value store): each value
    //! carries its expiry (8 bytes, milliseconds since the epoch, big-endian) in front. An entry
    //! read after its expiry is deleted, so the store does not keep every tenant record, negative
    //! answer and JWKS it ever cached.
    use std::time::{SystemTime, UNIX_EPOCH};

    use bytes::Bytes;

    /// What the cache needs of a store: Spin's `default` store, or a map in tests.
    pub trait RawStore {
        fn get(&self, key: &str) -> Option<Vec<u8>>;
        fn set(&self, key: &str, value: &[u8]);
        fn delete(&self, key: &str);
    }

    fn millis(t: SystemTime) -> u64 {
        t.duration_since(UNIX_EPOCH)
            .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
            .unwrap_or(0)
    }

    /// The value if it is still fresh at `now`; None if expired or not written by `put`.
    fn fresh(raw: &[u8], now: SystemTime) -> Option<&[u8]> {
        let (head, value) = raw.split_at_checked(8)?;
        let expires = u64::from_be_bytes(head.try_into().ok()?);
        (expires > millis(now)).then_some(value)
    }

    pub fn get(store: &impl RawStore, key: &str, now: SystemTime) -> Option<Bytes> {
        let raw = store.get(key)?;
        let value = fresh(&raw, now).map(Bytes::copy_from_slice);
        if value.is_none() {
            // Another instance may have written a fresh value since our read: deleting it costs
            // one cache miss, never a stale answer.
            store.delete(key);
        }
        value
    }

    pub fn put(store: &impl RawStore, key: &str, value: &[u8], expires: SystemTime) {
        let mut raw = millis(expires).to_be_bytes().to_vec();
        raw.extend_from_slice(value);
        store.set(key, &raw);
    }
}

#[cfg(feature = "spin-kv")]
mod spin_kv {
    //! Spin's `default` key-value store (spin.toml grants it). Store errors read as misses and
    //! unwritten entries: the cache is an optimisation, core falls back to the origin.
    use spin_sdk::key_value::Store;

    pub struct DefaultStore(Store);

    pub fn open() -> Option<DefaultStore> {
        Store::open_default().ok().map(DefaultStore)
    }

    impl super::expiring::RawStore for DefaultStore {
        fn get(&self, key: &str) -> Option<Vec<u8>> {
            self.0.get(key).ok().flatten()
        }

        fn set(&self, key: &str, value: &[u8]) {
            let _ = self.0.set(key, value);
        }

        fn delete(&self, key: &str) {
            let _ = self.0.delete(key);
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
    let resp = match into_http(req).await {
        Ok(r) => edge.serve(r).await,
        Err(e) => {
            let instance = path.split('?').next().unwrap_or_default();
            ApiError::bad_request(e)
                .into_response(instance)
                .map(Body::Full)
        }
    };
    let (parts, body) = resp.into_parts();
    let entries: Vec<(String, Vec<u8>)> = parts
        .headers
        .iter()
        .map(|(n, v)| (n.as_str().to_owned(), v.as_bytes().to_vec()))
        .collect();
    let headers = Fields::from_list(&entries).unwrap_or_else(|_| Fields::new());
    let outgoing = OutgoingResponse::new(headers);
    let _ = outgoing.set_status_code(parts.status.as_u16());
    match body {
        Body::Full(bytes) => {
            // A client that hung up shows up as a write error; there is nobody left to tell.
            let _ = out.set_with_body(outgoing, bytes.to_vec()).await;
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
            futures_util::future::join(driver, writer).await;
        }
    }
}

async fn into_http(req: IncomingRequest) -> Result<http::Request<Bytes>, String> {
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
    let body = req.into_body().await.map_err(|e| e.to_string())?;
    builder.body(Bytes::from(body)).map_err(|e| e.to_string())
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
        return Ok(spin_kv::open().and_then(|s| expiring::get(&s, key, self.now())));
        #[cfg(not(feature = "spin-kv"))]
        {
            let _ = key;
            Ok(None)
        }
    }

    async fn put(&self, key: &str, value: Bytes, ttl: Duration) -> Result<(), OutboundError> {
        #[cfg(feature = "spin-kv")]
        if let Some(s) = spin_kv::open() {
            expiring::put(&s, key, &value, self.now() + ttl);
        }
        let _ = (key, value, ttl);
        Ok(())
    }

    async fn delete(&self, key: &str) -> Result<(), OutboundError> {
        #[cfg(feature = "spin-kv")]
        if let Some(s) = spin_kv::open() {
            expiring::RawStore::delete(&s, key);
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

impl Platform for SpinPlatform {
    type Verifier = RustCrypto;

    fn verifier(&self) -> &RustCrypto {
        &RustCrypto
    }

    fn runtime(&self) -> &'static str {
        "spin"
    }
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;
    use std::collections::HashMap;
    use std::time::{Duration, SystemTime};

    use super::expiring::{self, RawStore};

    #[derive(Default)]
    struct MapStore(RefCell<HashMap<String, Vec<u8>>>);

    impl RawStore for MapStore {
        fn get(&self, key: &str) -> Option<Vec<u8>> {
            self.0.borrow().get(key).cloned()
        }
        fn set(&self, key: &str, value: &[u8]) {
            self.0.borrow_mut().insert(key.to_owned(), value.to_vec());
        }
        fn delete(&self, key: &str) {
            self.0.borrow_mut().remove(key);
        }
    }

    const T0: SystemTime = SystemTime::UNIX_EPOCH;

    fn at(secs: u64) -> SystemTime {
        T0 + Duration::from_secs(1_800_000_000 + secs)
    }

    #[test]
    fn fresh_entry_is_read_and_kept() {
        let store = MapStore::default();
        expiring::put(&store, "tenant:demo", b"record", at(60));
        let got = expiring::get(&store, "tenant:demo", at(59));
        assert_eq!(got.as_deref(), Some(&b"record"[..]));
        assert!(store.get("tenant:demo").is_some());
    }

    #[test]
    fn expired_entry_is_deleted_on_read() {
        let store = MapStore::default();
        expiring::put(&store, "tenant:nope.example", b"", at(60));
        expiring::put(&store, "jwks:tenants", b"keys", at(600));
        assert_eq!(expiring::get(&store, "tenant:nope.example", at(60)), None);
        assert!(
            store.get("tenant:nope.example").is_none(),
            "an expired entry stays in the store"
        );
        // Other entries are untouched.
        assert!(expiring::get(&store, "jwks:tenants", at(60)).is_some());
    }

    #[test]
    fn entry_without_expiry_header_is_deleted_on_read() {
        let store = MapStore::default();
        store.set("old-format", b"short");
        assert_eq!(expiring::get(&store, "old-format", at(0)), None);
        assert!(store.get("old-format").is_none());
    }
}
