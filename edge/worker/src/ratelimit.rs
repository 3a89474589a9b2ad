//! Rate-limit counters shared by every isolate, in Durable Objects (binding [`BINDING`], class
//! [`RateLimiterObject`]). A request's hits that core's leases do not cover
//! ([`edgefront_core::lease`]) go in one POST of
//! [`RemoteHit`](edgefront_core::ratelimit::RemoteHit)s to the object named by the anchor core
//! gives (the tenant's key: so a tenant's counters, per address included, live together in one
//! object), which runs core's [`RemoteHit::admit_received`] (granting the leases asked for) and
//! answers the [`Decision`]s as JSON. A Durable Object handles one event at a time and nothing here awaits between reading
//! and writing a counter, so counting is exact.
//! Glue only: the algorithm is core's.

use std::cell::RefCell;
use std::collections::HashMap;
use std::time::SystemTime;

use edgefront_core::ratelimit::{Counter, Decision, Hit, RemoteHit};
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

/// Sliding-window counters of the keys routed here (the worker names objects by a request's
/// anchor), held in memory only: a counter matters for two windows at most, so it is not worth a
/// storage write per request. When the runtime evicts an idle object (or restarts it elsewhere),
/// its successor starts afresh, which at worst lets one window's worth of requests through
/// again; that is acceptable for a limiter that already fails open.
#[durable_object(fetch)]
pub struct RateLimiterObject {
    /// Key → counter: the tenant's own key and its addresses' keys.
    counters: RefCell<HashMap<String, Counter>>,
}

impl DurableObject for RateLimiterObject {
    fn new(_state: State, _env: Env) -> Self {
        Self {
            counters: RefCell::new(HashMap::new()),
        }
    }

    /// `POST` an array of [`RemoteHit`]s: 200 with the [`Decision`]s, 400 for anything else.
    /// Never panics (a panic would take the isolate down with every object and request in it).
    async fn fetch(&self, mut req: Request) -> worker::Result<Response> {
        if req.method() != Method::Post {
            return Response::error("POST rate-limit hits", 405);
        }
        let hits: Vec<RemoteHit> = match req.bytes().await {
            Ok(body) => match serde_json::from_slice(&body) {
                Ok(hits) => hits,
                Err(e) => return Response::error(format!("not rate-limit hits: {e}"), 400),
            },
            Err(e) => return Response::error(format!("unreadable body: {e}"), 400),
        };
        let mut counters = self.counters.borrow_mut();
        let decisions = RemoteHit::admit_received(&hits, |hit, now_ms| {
            counters
                .entry(hit.key.to_owned())
                .or_default()
                .admit_hit(now_ms, hit)
        });
        Response::from_json(&decisions)
    }
}

/// Counts one request against each of `hits` at `now` (with the leases they ask for), in one
/// call to the object named `anchor` (the request's tenant key: it holds every key of the
/// request's chain, also when core sends only some of them).
pub async fn admit(
    namespace: &ObjectNamespace,
    anchor: &str,
    hits: &[Hit<'_>],
    now: SystemTime,
) -> Result<Vec<Decision>, OutboundError> {
    if hits.is_empty() {
        return Ok(Vec::new());
    }
    let body = serde_json::to_string(&RemoteHit::all(hits, now))
        .map_err(|e| OutboundError::Invalid(e.to_string()))?;
    let stub = namespace
        .id_from_name(anchor)
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
