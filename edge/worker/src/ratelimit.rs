//! Rate-limit counters shared by every isolate: one Durable Object per key (binding
//! [`BINDING`], class [`RateLimiterObject`]). The worker POSTs a
//! [`RemoteHit`](edgefront_core::ratelimit::RemoteHit) to the key's object, which runs core's
//! [`Counter::admit`] and answers the [`Decision`] as JSON. A Durable Object handles one event
//! at a time and nothing here awaits between reading and writing a counter, so counting is exact.
//! Glue only: the algorithm is core's.

use std::cell::RefCell;
use std::collections::HashMap;
use std::time::SystemTime;

use edgefront_core::ratelimit::{Counter, Decision, RemoteHit, Rule};
use edgefront_core::OutboundError;
use worker::{
    durable_object, DurableObject, Env, Method, ObjectNamespace, Request, RequestInit, Response,
    State,
};

/// Name of the Durable Object namespace binding in wrangler.toml. Without it the worker counts
/// in each isolate's memory (core's fallback).
pub const BINDING: &str = "RATE_LIMITER";

/// The URL of the object's only endpoint (a Durable Object's fetch sees any URL; no network).
const ADMIT_URL: &str = "https://rate-limiter.internal/admit";

/// One rate-limit key's sliding-window counter (the worker addresses one object per key, by
/// name), held in memory only: a counter matters for two windows at most, so it is not worth a
/// storage write per request. When the runtime evicts an idle object (or restarts it elsewhere),
/// its successor starts afresh, which at worst lets one window's worth of requests through
/// again; that is acceptable for a limiter that already fails open.
#[durable_object(fetch)]
pub struct RateLimiterObject {
    /// Key → counter. One key per object in practice (objects are named by key); a map keeps
    /// a misrouted key from sharing another's counter.
    counters: RefCell<HashMap<String, Counter>>,
}

impl DurableObject for RateLimiterObject {
    fn new(_state: State, _env: Env) -> Self {
        Self {
            counters: RefCell::new(HashMap::new()),
        }
    }

    /// `POST` a [`RemoteHit`]: 200 with the [`Decision`], 400 for anything else. Never panics (a
    /// panic would take the isolate down with every object and request in it).
    async fn fetch(&self, mut req: Request) -> worker::Result<Response> {
        if req.method() != Method::Post {
            return Response::error("POST a rate-limit hit", 405);
        }
        let hit: RemoteHit = match req.bytes().await {
            Ok(body) => match serde_json::from_slice(&body) {
                Ok(hit) => hit,
                Err(e) => return Response::error(format!("not a rate-limit hit: {e}"), 400),
            },
            Err(e) => return Response::error(format!("unreadable body: {e}"), 400),
        };
        let rule = Rule {
            limit: hit.limit,
            window_seconds: hit.window_seconds,
        };
        let decision = self
            .counters
            .borrow_mut()
            .entry(hit.key)
            .or_default()
            .admit(hit.now_ms, rule);
        Response::from_json(&decision)
    }
}

/// Counts one request on `key` under `rule` at `now` in the key's object.
pub async fn admit(
    namespace: &ObjectNamespace,
    key: &str,
    rule: Rule,
    now: SystemTime,
) -> Result<Decision, OutboundError> {
    let hit = RemoteHit::new(key, rule, now);
    let body = serde_json::to_string(&hit).map_err(|e| OutboundError::Invalid(e.to_string()))?;
    let stub = namespace
        .id_from_name(key)
        .and_then(|id| id.get_stub())
        .map_err(crate::network)?;
    let mut init = RequestInit::new();
    init.with_method(Method::Post).with_body(Some(body.into()));
    let req = Request::new_with_init(ADMIT_URL, &init)
        .map_err(|e| OutboundError::Invalid(e.to_string()))?;
    let mut resp = stub.fetch_with_request(req).await.map_err(crate::network)?;
    if resp.status_code() != 200 {
        return Err(OutboundError::Network(format!(
            "rate limiter object answered {}",
            resp.status_code()
        )));
    }
    let bytes = resp.bytes().await.map_err(crate::network)?;
    serde_json::from_slice(&bytes).map_err(crate::network)
}
