//! The ports through which core reaches the world. Adapters implement them with their runtime's
//! facilities (workers-rs `Fetch`/KV/`Date`, spin-sdk outbound HTTP and wasi clocks); tests
//! implement them in-process. Futures are not `Send`: wasm runtimes are single-threaded.
//! A leaf of the crate's module graph: it names only the key types of `jwk`, the counter of
//! `window` and the request record of `obs`, themselves leaves.
#![allow(async_fn_in_trait)]

use std::fmt;
use std::rc::Rc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use futures_util::future::{self, Either};
use http::{Request, Response};

use crate::jwk::{Algorithm, Jwk, KeyError};
use crate::obs::Trace;
use crate::window::{Decision, Hit};

/// Why an outbound call produced no response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OutboundError {
    /// No answer within the deadline.
    Timeout(Duration),
    /// The runtime could not send the request or read the answer (DNS, refused, reset, …).
    Network(String),
    /// The request could not be expressed on this runtime (bad URL, header, …).
    Invalid(String),
}

impl fmt::Display for OutboundError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Timeout(d) => write!(f, "no response within {} ms", d.as_millis()),
            Self::Network(m) => write!(f, "network error: {m}"),
            Self::Invalid(m) => write!(f, "invalid request: {m}"),
        }
    }
}

/// A response body arriving in chunks (server-sent events from an AI provider, …).
pub type ByteStream = futures_util::stream::LocalBoxStream<'static, Result<Bytes, OutboundError>>;

/// Outbound HTTP through the runtime's own client. Core makes every whole-body call through
/// [`HttpClient::send_within`], and wraps streaming calls in [`with_timeout`]: `send` itself
/// need not enforce a deadline.
pub trait HttpClient {
    async fn send(&self, req: Request<Bytes>) -> Result<Response<Bytes>, OutboundError>;

    /// [`HttpClient::send`], given up after `limit` with [`OutboundError::Timeout`]`(limit)`.
    /// The default races core's timer ([`with_timeout`]). A runtime whose own client takes a
    /// deadline overrides it (Workers: `fetch` with `AbortSignal.timeout`), which spares a
    /// timer set and cleared from wasm on every call.
    async fn send_within(
        &self,
        req: Request<Bytes>,
        limit: Duration,
    ) -> Result<Response<Bytes>, OutboundError>
    where
        Self: Clock,
    {
        with_timeout(self, limit, self.send(req)).await
    }

    /// Like [`HttpClient::send`], but hands over the body as it arrives. Runtimes that can
    /// stream override this; the default reads the whole body first (one chunk).
    async fn send_streaming(
        &self,
        req: Request<Bytes>,
    ) -> Result<Response<ByteStream>, OutboundError> {
        let resp = self.send(req).await?;
        Ok(resp.map(|b| Box::pin(futures_util::stream::once(async move { Ok(b) })) as ByteStream))
    }
}

/// Wall-clock time and timers. `now` must never call `SystemTime::now()` on
/// wasm32-unknown-unknown (it panics there): adapters read the runtime's clock.
pub trait Clock {
    fn now(&self) -> SystemTime;
    async fn sleep(&self, duration: Duration);
}

/// The instant `by` after `t` (a [`Clock`] reading), or `t` itself where `SystemTime` cannot
/// hold it: never panics, unlike `t + by`.
pub fn later(t: SystemTime, by: Duration) -> SystemTime {
    t.checked_add(by).unwrap_or(t)
}

/// A small key-value cache (Workers KV, Spin key-value, or in-memory). Values may expire early.
pub trait KeyValue {
    async fn get(&self, key: &str) -> Result<Option<Bytes>, OutboundError>;
    /// The value under `key` as `decode` reads it (`None`: absent, or `decode` refused it),
    /// shared. A platform that keeps values in memory ([`crate::memo::Memo`]) keeps the decoded
    /// value with them, so a key every request reads (the tenant) is decoded once per instance
    /// and value, not per request.
    async fn get_decoded<T: 'static>(
        &self,
        key: &str,
        decode: fn(&[u8]) -> Option<T>,
    ) -> Result<Option<Rc<T>>, OutboundError> {
        Ok(self.get(key).await?.and_then(|b| decode(&b)).map(Rc::new))
    }
    async fn put(&self, key: &str, value: Bytes, ttl: Duration) -> Result<(), OutboundError>;
    async fn delete(&self, key: &str) -> Result<(), OutboundError>;
}

/// Cryptographically secure randomness.
pub trait Entropy {
    fn fill(&self, buf: &mut [u8]) -> Result<(), OutboundError>;
}

/// Checks a JWS signature (the crypto provider, like rustls' `CryptoProvider`). `Ok(false)`
/// means "this key did not sign this input" (including a signature of the wrong shape); `Err`
/// means the key itself cannot be used. Callers have already checked that the key's type
/// matches `alg` ([`Jwk::check_usable_with`]).
pub trait SignatureVerifier {
    async fn verify(
        &self,
        alg: Algorithm,
        jwk: &Jwk,
        signing_input: &[u8],
        signature: &[u8],
    ) -> Result<bool, KeyError>;
}

/// Everything an instance needs from its runtime.
/// Rate-limit counters that every instance shares ([`crate::ratelimit`]): counts one request
/// against each of `hits` in order with [`crate::window::Counter::admit`], stopping at the
/// first refusal ([`crate::window::admit_chain`]), atomically where the store allows, and in
/// one round trip where it has any (a request's budgets are its client's and its tenant's).
/// `None` (the default): the platform has no shared store, and core counts in the instance's
/// memory.
/// `anchor` names where a request's counters live together (its last budget's key, the
/// tenant's): a store that shards by key keeps every key of one request's chain in the anchor's
/// shard, even when core sends only some of them (the rest spent from a lease,
/// [`crate::lease`]). A hit's [`Hit::lease`] asks the store to count and grant that many more
/// ([`crate::window::Counter::admit_hit`]).
pub trait RateLimiter {
    async fn admit(
        &self,
        anchor: &str,
        hits: &[Hit<'_>],
        now: SystemTime,
    ) -> Option<Result<Vec<Decision>, OutboundError>> {
        let _ = (anchor, hits, now);
        None
    }
}

/// The operator's view: the log sink, and the trace of the request being served.
pub trait Telemetry {
    /// Writes one log line, a JSON document (Workers: `console.log`, which Workers Logs and
    /// Logpush index as JSON; Spin: standard output).
    fn log(&self, line: &str);

    /// The record of the request being served, when this platform reference is the request's
    /// own ([`crate::telemetry::Traced`]); none for the instance's shared one.
    fn trace(&self) -> Option<&Trace> {
        None
    }
}

/// Notes something on the request's trace, if there is one.
pub fn note<T: Telemetry + ?Sized>(platform: &T, f: impl FnOnce(&Trace)) {
    if let Some(t) = platform.trace() {
        f(t);
    }
}

pub trait Platform: HttpClient + Clock + KeyValue + Entropy + RateLimiter + Telemetry {
    /// The crypto provider for JWS signatures (WebCrypto on Workers, pure Rust elsewhere),
    /// chosen by the adapter like rustls' `CryptoProvider`.
    type Verifier: SignatureVerifier;

    fn verifier(&self) -> &Self::Verifier;

    /// `"workers"`, `"spin"`, … as reported by `/healthz`.
    fn runtime(&self) -> &'static str;
}

/// Runs `fut` but gives up after `limit`, measured by the platform's clock. Every outbound call
/// in core goes through here or through [`HttpClient::send_within`], so no runtime can hang a
/// request on a silent peer.
pub async fn with_timeout<C: Clock + ?Sized, T>(
    clock: &C,
    limit: Duration,
    fut: impl std::future::Future<Output = Result<T, OutboundError>>,
) -> Result<T, OutboundError> {
    let fut = std::pin::pin!(fut);
    let timer = std::pin::pin!(clock.sleep(limit));
    match future::select(fut, timer).await {
        Either::Left((res, _)) => res,
        Either::Right(((), _)) => Err(OutboundError::Timeout(limit)),
    }
}

/// Paths a request rarely takes, kept out of line: see [`cold`](cold::cold).
pub mod cold {
    use std::future::Future;
    use std::pin::Pin;
    use std::task::{Context, Poll};

    /// A future polled by a function of its own, never inlined into its caller's, and kept in
    /// a box of its own: see [`cold`].
    #[must_use = "futures do nothing unless polled"]
    pub struct Cold<F> {
        inner: Pin<Box<F>>,
    }

    impl<F: Future> Future for Cold<F> {
        type Output = F::Output;

        #[inline(never)]
        fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
            self.inner.as_mut().poll(cx)
        }
    }

    /// Marks the path a request rarely takes (a cache miss, a verification, a remote call), so
    /// its code stays out of the hot path's function.
    ///
    /// An `async fn` awaited from one place is inlined into its caller's state machine, so a
    /// cache lookup that hits in nanoseconds ends up in one function with everything its
    /// misses do: up to 40 KB of wasm. V8 runs new wasm with its baseline compiler and
    /// recompiles a function with TurboFan, in the background and whole, once it is hot; a
    /// hot 40 KB function costs tens of milliseconds of CPU to recompile in every new isolate,
    /// for a path that runs a few hundred bytes of it. Awaiting `cold(miss())` keeps the miss
    /// in a function of its own, recompiled only if the misses themselves are hot.
    ///
    /// `#[inline(never)]` holds for LLVM; binaryen's `wasm-opt` would still inline a function
    /// with one caller, so the Worker's build tells it not to inline anything named
    /// `*::cold::*` (`edge/worker/Cargo.toml`; BENCHMARKS.md, change 53).
    ///
    /// The miss's state is boxed, allocated only when the miss is taken. Inline, each miss (a
    /// fetch, its timeout, the answer's decoding) made every future that awaits it as large as
    /// itself: the request's future was 6 KB on the host (3.4 KB boxed), and the native build
    /// moved it about for 9% of `/v1/me`'s instructions; the Worker's build did not
    /// (BENCHMARKS.md, "Nineteenth round").
    pub fn cold<F: Future>(inner: F) -> Cold<F> {
        Cold {
            inner: Box::pin(inner),
        }
    }

    #[cfg(test)]
    mod tests {
        use std::cell::Cell;
        use std::future::Future as _;
        use std::task::Poll;

        use super::cold;

        #[test]
        fn a_cold_future_is_the_future_it_wraps() {
            // Pending until its third poll, then its output, as the bare future would be.
            let polls = Cell::new(0);
            let inner = std::future::poll_fn(|_| {
                polls.set(polls.get() + 1);
                if polls.get() < 3 {
                    Poll::Pending
                } else {
                    Poll::Ready("done")
                }
            });
            let mut fut = std::pin::pin!(cold(inner));
            let waker = futures_util::task::noop_waker();
            let mut cx = std::task::Context::from_waker(&waker);
            assert_eq!(fut.as_mut().poll(&mut cx), Poll::Pending);
            assert_eq!(fut.as_mut().poll(&mut cx), Poll::Pending);
            assert_eq!(fut.as_mut().poll(&mut cx), Poll::Ready("done"));
            assert_eq!(polls.get(), 3);
        }

        #[test]
        fn a_cold_future_takes_one_pointer_in_its_callers_state() {
            // However large the miss's own state (a buffer, a fetch, its timeout), the future
            // that awaits it holds a pointer to it, allocated when the miss is taken.
            let big = async {
                let buf = [0u8; 4096];
                std::future::ready(()).await;
                buf.len()
            };
            assert!(std::mem::size_of_val(&big) >= 4096);
            let fut = cold(big);
            assert_eq!(std::mem::size_of_val(&fut), std::mem::size_of::<usize>());
            assert_eq!(futures_executor::block_on(fut), 4096);
        }
    }
}

pub use cold::cold;

/// Milliseconds between two clock readings, saturating at zero if the clock went backwards.
pub fn elapsed_ms(start: SystemTime, end: SystemTime) -> u64 {
    end.duration_since(start)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use super::later;

    #[test]
    fn later_adds_or_stays_where_the_clock_cannot_hold_the_sum() {
        let t = UNIX_EPOCH + Duration::from_secs(1_000);
        assert_eq!(later(t, Duration::from_secs(5)), t + Duration::from_secs(5));
        assert_eq!(later(t, Duration::MAX), t);
    }
}
