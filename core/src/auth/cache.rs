//! Issuers' key sets, cached per instance and in the platform's key-value store, fetched at most
//! once at a time and at most once per penalty window per URL, and kept usable through an
//! issuer outage for a bounded time. All timing comes from the platform clock.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::{header, Method, Request, StatusCode};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::config::JwksPolicy;
use super::AuthError;
use crate::jwk::{Jwk, Jwks};
use crate::obs::Cache;
use crate::ports::{with_timeout, Clock, HttpClient, KeyValue, Telemetry};

/// Key sets by JWKS URL. Lives as long as the instance; single-threaded, hence `RefCell`.
#[derive(Default)]
pub struct JwksCache {
    urls: RefCell<HashMap<String, Rc<UrlState>>>,
}

#[derive(Default)]
struct UrlState {
    flight: Flight,
    keys: RefCell<Option<Cached>>,
    /// When this instance last asked the issuer (success or not): starts the penalty window.
    last_fetch: Cell<Option<SystemTime>>,
    last_error: RefCell<Option<String>>,
    /// The key-value store is read once per URL per instance; later misses go to the issuer.
    kv_checked: Cell<bool>,
}

#[derive(Clone)]
struct Cached {
    jwks: Rc<Jwks>,
    fetched_at: SystemTime,
}

/// What goes into the key-value store: the set and when it was fetched, so a fresh instance
/// knows how old it is, and when the issuer was last asked, so the penalty window holds across
/// instances too (Spin starts one per request: without this, every token with an unknown `kid`
/// would cost a fetch).
#[derive(Serialize, Deserialize)]
struct Persisted {
    /// 0 when no set was ever fetched (only the attempt is recorded).
    fetched_at: u64,
    jwks: Jwks,
    #[serde(default)]
    attempted_at: u64,
}

impl JwksCache {
    pub fn new() -> Self {
        Self::default()
    }

    /// The key `kid` from the set at `url`, fetching the set if needed and allowed.
    pub async fn key<P: HttpClient + Clock + KeyValue + Telemetry>(
        &self,
        platform: &P,
        policy: &JwksPolicy,
        url: &str,
        kid: &str,
    ) -> Result<Jwk, AuthError> {
        let state = self.state(url);
        let mut fetched = false;
        loop {
            let now = platform.now();
            let cached = state.keys.borrow().clone();
            let found = cached.as_ref().and_then(|c| c.jwks.find(kid).cloned());
            let set_age = cached.as_ref().map(|c| age(c.fetched_at, now));
            if let (Some(key), Some(set_age)) = (&found, set_age) {
                if set_age < policy.ttl {
                    if !fetched {
                        crate::ports::note(platform, |t| t.note_cache(Cache::Jwks, true));
                    }
                    return Ok(key.clone());
                }
            }
            if state.flight.running() {
                // Someone on this instance is already refreshing this set: share their answer.
                state.flight.landing().await;
                continue;
            }
            if !state.kv_checked.get() {
                let _flight = state.flight.start();
                state.kv_checked.set(true);
                let (persisted, attempted) = load(platform, policy, url).await;
                if let Some(c) = persisted {
                    let newer = state
                        .keys
                        .borrow()
                        .as_ref()
                        .is_none_or(|old| old.fetched_at < c.fetched_at);
                    if newer {
                        *state.keys.borrow_mut() = Some(c);
                    }
                }
                if attempted > state.last_fetch.get() {
                    state.last_fetch.set(attempted);
                }
                continue;
            }
            let penalised = state
                .last_fetch
                .get()
                .is_some_and(|t| age(t, now) < policy.refetch_penalty);
            if fetched || penalised {
                break;
            }
            let _flight = state.flight.start();
            fetched = true;
            crate::ports::note(platform, |t| t.note_cache(Cache::Jwks, false));
            state.last_fetch.set(Some(now));
            match fetch(platform, policy, url).await {
                Ok(jwks) => {
                    let c = Cached {
                        jwks: Rc::new(jwks),
                        fetched_at: now,
                    };
                    store(platform, policy, url, Some(&c), now).await;
                    *state.keys.borrow_mut() = Some(c);
                    *state.last_error.borrow_mut() = None;
                }
                Err(e) => {
                    // Remember the attempt (with the set we still have) for other instances.
                    let kept = state.keys.borrow().clone();
                    store(platform, policy, url, kept.as_ref(), now).await;
                    *state.last_error.borrow_mut() = Some(e);
                }
            }
        }
        // No fresh answer and no fetch allowed now: fall back on what was last seen.
        let now = platform.now();
        let cached = state.keys.borrow().clone();
        let usable = cached.filter(|c| age(c.fetched_at, now) < policy.max_stale);
        let unavailable = || {
            AuthError::JwksUnavailable(
                state
                    .last_error
                    .borrow()
                    .clone()
                    .unwrap_or_else(|| "no usable key set".into()),
            )
        };
        match usable {
            Some(c) => c.jwks.find(kid).cloned().ok_or(AuthError::UnknownKey),
            None => Err(unavailable()),
        }
    }

    /// Number of key sets held in memory (for tests and diagnostics).
    pub fn len(&self) -> usize {
        self.urls.borrow().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn state(&self, url: &str) -> Rc<UrlState> {
        // The URL set is bounded: only configured issuers' URLs ever get here.
        Rc::clone(self.urls.borrow_mut().entry(url.to_owned()).or_default())
    }
}

fn age(then: SystemTime, now: SystemTime) -> Duration {
    // A clock that stepped back counts as "just now": never extends trust, only delays refetches.
    now.duration_since(then).unwrap_or(Duration::ZERO)
}

pub(crate) fn kv_key(url: &str) -> String {
    let digest = Sha256::digest(url.as_bytes());
    format!("jwks:v1:{}", crate::ids::hex(&digest))
}

/// The persisted set (if one was ever fetched) and when the issuer was last asked.
async fn load<P: Clock + KeyValue>(
    platform: &P,
    policy: &JwksPolicy,
    url: &str,
) -> (Option<Cached>, Option<SystemTime>) {
    // The store is a cache: an error or a bad record is a miss.
    let record = with_timeout(platform, policy.fetch_timeout, platform.get(&kv_key(url)))
        .await
        .ok()
        .flatten()
        .and_then(|bytes| serde_json::from_slice::<Persisted>(&bytes).ok());
    let Some(p) = record else {
        return (None, None);
    };
    let at = |secs: u64| (secs > 0).then(|| UNIX_EPOCH + Duration::from_secs(secs));
    let cached = at(p.fetched_at).map(|fetched_at| Cached {
        jwks: Rc::new(p.jwks),
        fetched_at,
    });
    (cached, at(p.attempted_at))
}

fn unix_secs(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Records the set `c` (if any) and the fetch attempted at `attempted`.
async fn store<P: Clock + KeyValue>(
    platform: &P,
    policy: &JwksPolicy,
    url: &str,
    c: Option<&Cached>,
    attempted: SystemTime,
) {
    let p = Persisted {
        fetched_at: c.map_or(0, |c| unix_secs(c.fetched_at)),
        jwks: c.map(|c| (*c.jwks).clone()).unwrap_or_default(),
        attempted_at: unix_secs(attempted),
    };
    if let Ok(json) = serde_json::to_vec(&p) {
        let key = kv_key(url);
        let put = platform.put(&key, Bytes::from(json), policy.max_stale);
        // Best effort: a failed write only costs a fresh instance one fetch.
        let _ = with_timeout(platform, policy.fetch_timeout, put).await;
    }
}

async fn fetch<P: HttpClient + Clock>(
    platform: &P,
    policy: &JwksPolicy,
    url: &str,
) -> Result<Jwks, String> {
    let req = Request::builder()
        .method(Method::GET)
        .uri(url)
        .header(header::ACCEPT, "application/json")
        .body(Bytes::new())
        .map_err(|e| format!("bad JWKS URL: {e}"))?;
    let resp = platform
        .send_within(req, policy.fetch_timeout)
        .await
        .map_err(|e| format!("JWKS fetch failed: {e}"))?;
    if resp.status() != StatusCode::OK {
        return Err(format!(
            "JWKS fetch answered HTTP {}",
            resp.status().as_u16()
        ));
    }
    if resp.body().len() > policy.max_jwks_bytes {
        return Err(format!("JWKS larger than {} bytes", policy.max_jwks_bytes));
    }
    serde_json::from_slice(resp.body()).map_err(|e| format!("JWKS is not a key set: {e}"))
}

/// A single-flight latch for one URL: the first caller runs the refresh, later callers await
/// its end. The fetch future stays owned by the request that started it (so it may borrow the
/// platform); if that request is dropped mid-fetch, the guard's `Drop` still releases waiters.
#[derive(Default)]
struct Flight {
    running: Cell<bool>,
    generation: Cell<u64>,
    waiters: RefCell<Vec<Waker>>,
}

struct FlightGuard<'a>(&'a Flight);

struct Landing<'a> {
    flight: &'a Flight,
    generation: u64,
}

impl Flight {
    fn running(&self) -> bool {
        self.running.get()
    }

    fn start(&self) -> FlightGuard<'_> {
        self.running.set(true);
        FlightGuard(self)
    }

    fn landing(&self) -> Landing<'_> {
        Landing {
            flight: self,
            generation: self.generation.get(),
        }
    }
}

impl Drop for FlightGuard<'_> {
    fn drop(&mut self) {
        self.0.running.set(false);
        self.0
            .generation
            .set(self.0.generation.get().wrapping_add(1));
        for w in self.0.waiters.take() {
            w.wake();
        }
    }
}

impl Future for Landing<'_> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.flight.generation.get() != self.generation || !self.flight.running.get() {
            return Poll::Ready(());
        }
        let mut waiters = self.flight.waiters.borrow_mut();
        if !waiters.iter().any(|w| w.will_wake(cx.waker())) {
            waiters.push(cx.waker().clone());
        }
        Poll::Pending
    }
}
