//! Public answers kept in this instance's memory: the storefront's catalog pages and items,
//! served again without their SQL batch while they are fresh.
//!
//! A storefront answer already tells browsers and CDNs they may keep it
//! (`Cache-Control: public, max-age=…`), but on Workers nothing in front of the Worker keeps it:
//! every shopper's page view was a batch to the origin. An instance now keeps each public answer
//! it computed for [`Answers::ttl`] (`STOREFRONT_EDGE_CACHE_SECONDS`, at most the answers'
//! `max-age`) and serves it to the next shopper with an `Age` header, so shared caches downstream
//! count its age against `max-age` as RFC 9111 §4.2.3 asks.
//!
//! At its TTL a kept answer is not dropped at once: the first request after it computes its
//! successor, and the requests that come meanwhile get the old one (with its `Age`) instead of
//! each making the same batch, as long as it is younger than `max-age` (which the answer
//! declared it may be served for anyway). A computation that fails or is cancelled hands the
//! refresh to the next request; one that fails on the origin's side (a 5xx: the database
//! down or slow) serves the old answer instead of the failure, within `max-age` (RFC 5861's
//! `stale-if-error`), so a storefront's hot pages outlive a short outage.
//!
//! Fresh means:
//! - no older than the TTL;
//! - no write to the tenant since it was computed, through this instance: every successful
//!   non-safe request to a tenant ([`Answers::forget`], called by the router) drops what this
//!   instance kept for that tenant, and an answer whose batch ran while a write went through is
//!   not kept at all ([`Computing`]). Writes through other instances (or straight to the
//!   database) show within the TTL, as they would through any CDN within `max-age`.
//!
//! Bounded: [`MAX_BYTES`] of bodies and [`MAX_ENTRIES`] answers, the oldest kept going first;
//! an answer over [`MAX_BODY`] or a key over [`MAX_KEY`] is never kept. Keys an attacker
//! chooses (a fresh query string each time) push out other answers, which then cost one batch
//! again, as without this cache; they cannot grow it.
//!
//! On Spin an instance serves one request, so nothing is ever served from here: every answer
//! is computed.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::rc::Rc;
use std::time::{Duration, SystemTime};

use crate::ports::later;
use bytes::Bytes;

/// Bodies kept at most, in bytes.
pub const MAX_BYTES: usize = 8 << 20;
/// Answers kept at most.
pub const MAX_ENTRIES: usize = 2_048;
/// The largest body kept (a 100-item page with images is ≈ 120 KB).
pub const MAX_BODY: usize = 512 << 10;
/// The longest key kept (path and query).
pub const MAX_KEY: usize = 1_024;
/// Tenants whose last write is remembered; past that, every kept answer is dropped at once.
const MAX_TENANTS: usize = 10_000;

/// A slot's key: the tenant's id, then the answer's own key (a path cannot hold a line break).
fn slot_key(tenant: &str, key: &str) -> String {
    let mut k = String::with_capacity(tenant.len() + 1 + key.len());
    for part in [tenant, "\n", key] {
        k.push_str(part);
    }
    k
}

/// A kept answer, as [`Answers::get`] gives it back.
#[derive(Debug, Clone)]
pub struct Kept {
    pub body: Bytes,
    /// The body's strong ETag ([`crate::reply::body_tag`]), computed when it was kept.
    pub etag: Rc<str>,
    /// How long ago it was computed, in whole seconds (the `Age` header).
    pub age: Duration,
}

/// What [`Answers::find`] found for a request.
pub enum Found<'a> {
    /// Serve this: fresh, or past its TTL while another request computes its successor.
    Kept(Kept),
    /// Compute the answer, then [`Answers::keep`] it with this.
    Compute(Computing<'a>),
}

/// A computation [`Answers::find`] asked for: where writes stood when it began (the answer is
/// kept only if no write to its tenant came between), and, when it refreshes an answer past
/// its TTL, that answer's mark, lifted when this is dropped (kept, failed or cancelled).
pub struct Computing<'a> {
    answers: &'a Answers,
    ticket: u64,
    refreshing: Option<Rc<str>>,
    /// The answer it refreshes (with its age then): served instead of a failure to compute
    /// it ([`Computing::stale`]).
    stale: Option<Kept>,
}

impl Computing<'_> {
    /// The answer this computation refreshes, if any: what a request serves when its batch
    /// fails at `now` (RFC 5861's `stale-if-error`, within `max-age`) rather than a 5xx. It is
    /// then served as fresh for another TTL (never past `max-age`), so an outage costs the
    /// origin one failing batch per answer and TTL, not one per request.
    pub fn stale(mut self, now: SystemTime) -> Option<Kept> {
        let kept = self.stale.take()?;
        if let (Some(key), Ok(mut state)) = (
            self.refreshing.as_ref(),
            self.answers.state.try_borrow_mut(),
        ) {
            if let Some(slot) = state.slots.get_mut(&**key) {
                slot.expires = later(now, self.answers.ttl).min(slot.serve_until);
            }
        }
        Some(kept)
    }
}

impl Drop for Computing<'_> {
    fn drop(&mut self) {
        let Some(key) = self.refreshing.take() else {
            return;
        };
        if let Ok(mut state) = self.answers.state.try_borrow_mut() {
            if let Some(slot) = state.slots.get_mut(&*key) {
                slot.refreshing = false;
            }
        }
    }
}

struct Slot {
    kept: Kept,
    stored: SystemTime,
    /// Fresh until then (the TTL).
    expires: SystemTime,
    /// Served while a request computes its successor until then (`max-age`).
    serve_until: SystemTime,
    /// A request is computing its successor.
    refreshing: bool,
    /// The write counter when its computation began.
    ticket: u64,
    /// Its place in [`State::order`].
    stamp: u64,
}

#[derive(Default)]
struct State {
    /// [`slot_key`] → the answer. (`Rc<str>` keys, as the memory tier's: the same map types
    /// compile once for both.)
    slots: HashMap<Rc<str>, Slot>,
    /// Insertion stamp → key: the first is the oldest.
    order: BTreeMap<u64, Rc<str>>,
    bytes: usize,
    stamp: u64,
    /// Counts writes; a tenant's last write is the counter's value after it.
    writes: u64,
    written: HashMap<Rc<str>, u64>,
    /// Answers computed before this are stale (`written` was cleared when it grew too large).
    floor: u64,
}

impl State {
    /// Whether a write to `tenant` came after `ticket` (or everything before it was dropped).
    fn written_since(&self, tenant: &str, ticket: u64) -> bool {
        ticket < self.floor || self.written.get(tenant).is_some_and(|&w| w > ticket)
    }

    fn remove(&mut self, key: &str) {
        if let Some(slot) = self.slots.remove(key) {
            self.order.remove(&slot.stamp);
            self.bytes = self.bytes.saturating_sub(slot.kept.body.len());
        }
    }
}

/// This instance's public answers ([module docs](self)).
pub struct Answers {
    ttl: Duration,
    max_age: Duration,
    state: RefCell<State>,
}

impl Answers {
    /// Answers fresh for `ttl`, and served past it while their successor is computed until
    /// `max_age`; a zero `ttl` keeps none.
    pub fn new(ttl: Duration, max_age: Duration) -> Self {
        Self {
            ttl,
            max_age: max_age.max(ttl),
            state: RefCell::default(),
        }
    }

    /// The storefront's answers as `tenancy` configures them (`STOREFRONT_EDGE_CACHE_SECONDS`
    /// within `STOREFRONT_CACHE_SECONDS`); none for an instance without a configuration.
    pub fn for_storefront(tenancy: Option<&crate::config::TenancyConfig>) -> Self {
        tenancy.map_or_else(
            || Self::new(Duration::ZERO, Duration::ZERO),
            |t| Self::new(t.storefront_edge_ttl, t.storefront_max_age),
        )
    }

    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// Answers kept now (expired ones included until they are looked up or pushed out).
    pub fn len(&self) -> usize {
        self.state.borrow().slots.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The answer to serve for `tenant` under `key` at `now`, or the computation to make.
    pub fn find(&self, tenant: &str, key: &str, now: SystemTime) -> Found<'_> {
        let compute = |ticket, refreshing| {
            Found::Compute(Computing {
                answers: self,
                ticket,
                refreshing,
                stale: None,
            })
        };
        if self.ttl.is_zero() {
            return compute(0, None);
        }
        let Ok(mut state) = self.state.try_borrow_mut() else {
            // Never (single-threaded, never held across an await): the oldest ticket, which
            // any write to the tenant makes stale.
            return compute(0, None);
        };
        let ticket = state.writes;
        let key = slot_key(tenant, key);
        let Some(slot) = state.slots.get(&*key) else {
            return compute(ticket, None);
        };
        let usable = !state.written_since(tenant, slot.ticket) && now < slot.serve_until;
        let fresh = now < slot.expires;
        if !usable {
            state.remove(&key);
            return compute(ticket, None);
        }
        let mut kept = slot.kept.clone();
        kept.age = Duration::from_secs(
            now.duration_since(slot.stored)
                .unwrap_or_default()
                .as_secs(),
        );
        if !fresh && !slot.refreshing {
            let key: Rc<str> = Rc::from(key);
            if let Some(slot) = state.slots.get_mut(&*key) {
                slot.refreshing = true;
            }
            return Found::Compute(Computing {
                answers: self,
                ticket,
                refreshing: Some(key),
                stale: Some(kept),
            });
        }
        Found::Kept(kept)
    }

    /// Keeps `body` (tagged `etag`) for `tenant` under `key`, as [`Answers::find`] asked for it
    /// (`computing`) and as of `now`, unless a write to the tenant came between or it is over the
    /// bounds. Pushes out the oldest answers to make room.
    pub fn keep(
        &self,
        computing: Computing<'_>,
        tenant: &str,
        key: &str,
        body: Bytes,
        etag: &str,
        now: SystemTime,
    ) {
        let ticket = computing.ticket;
        // Its mark (if it refreshed) goes with the answer it replaces, or stays lifted.
        drop(computing);
        if self.ttl.is_zero() || body.len() > MAX_BODY || key.len() > MAX_KEY {
            return;
        }
        let Ok(mut state) = self.state.try_borrow_mut() else {
            return;
        };
        if state.written_since(tenant, ticket) {
            return;
        }
        let key: Rc<str> = Rc::from(slot_key(tenant, key));
        state.remove(&key);
        while state.slots.len() >= MAX_ENTRIES || state.bytes + body.len() > MAX_BYTES {
            let Some((_, oldest)) = state.order.pop_first() else {
                break;
            };
            state.remove(&oldest);
        }
        state.stamp += 1;
        let stamp = state.stamp;
        state.bytes += body.len();
        state.order.insert(stamp, key.clone());
        state.slots.insert(
            key,
            Slot {
                kept: Kept {
                    body,
                    etag: Rc::from(etag),
                    age: Duration::ZERO,
                },
                stored: now,
                expires: later(now, self.ttl),
                serve_until: later(now, self.max_age),
                refreshing: false,
                ticket,
                stamp,
            },
        );
    }

    /// A write to `tenant` went through: nothing kept for it before now is served again, and
    /// nothing being computed now is kept.
    pub fn forget(&self, tenant: &str) {
        if self.ttl.is_zero() {
            return;
        }
        let Ok(mut state) = self.state.try_borrow_mut() else {
            return;
        };
        state.writes += 1;
        let writes = state.writes;
        if let Some(w) = state.written.get_mut(tenant) {
            *w = writes;
            return;
        }
        if state.written.len() >= MAX_TENANTS {
            state.written.clear();
            state.floor = writes;
        }
        state.written.insert(Rc::from(tenant), writes);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: &str = "00000000-0000-4000-8000-00000000d301";
    const U: &str = "00000000-0000-4000-8000-00000000d302";

    fn at(s: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000 + s)
    }

    fn answers(ttl: u64) -> Answers {
        Answers::new(Duration::from_secs(ttl), Duration::from_secs(60))
    }

    /// A computation begun now, whatever is kept (to keep over a fresh answer).
    fn computing(a: &Answers) -> Computing<'_> {
        Computing {
            answers: a,
            ticket: a.state.borrow().writes,
            refreshing: None,
            stale: None,
        }
    }

    fn keep(a: &Answers, tenant: &str, key: &str, body: &str, now: SystemTime) {
        let c = computing(a);
        a.keep(c, tenant, key, Bytes::from(body.to_owned()), "\"t\"", now);
    }

    /// `"old"` kept at 0 s under `T`'s `"k"`, and the computation that refreshes it, begun
    /// at 12 s (past a 10 s TTL).
    fn refreshing_old(a: &Answers) -> Computing<'_> {
        keep(a, T, "k", "old", at(0));
        match a.find(T, "k", at(12)) {
            Found::Compute(c) => c,
            Found::Kept(_) => panic!("past its TTL the answer is computed again"),
        }
    }

    fn body(a: &Answers, tenant: &str, key: &str, now: SystemTime) -> Option<String> {
        match a.find(tenant, key, now) {
            Found::Kept(k) => Some(String::from_utf8(k.body.to_vec()).unwrap()),
            Found::Compute(_) => None,
        }
    }

    #[test]
    fn an_answer_is_served_until_its_ttl_with_its_age() {
        let a = answers(10);
        keep(&a, T, "/v1/storefront/catalog", "page", at(0));
        let Found::Kept(hit) = a.find(T, "/v1/storefront/catalog", at(3)) else {
            panic!("kept");
        };
        assert_eq!(&hit.body[..], b"page");
        assert_eq!(&*hit.etag, "\"t\"");
        assert_eq!(hit.age, Duration::from_secs(3));
        assert!(body(&a, T, "/v1/storefront/catalog", at(9)).is_some());
        assert!(body(&a, T, "/v1/storefront/catalog", at(10)).is_none());
    }

    #[test]
    fn past_its_ttl_one_request_computes_while_the_others_get_the_old_answer() {
        let a = answers(10);
        keep(&a, T, "k", "old", at(0));
        // The first request past the TTL computes; meanwhile others get the old answer.
        let Found::Compute(refresh) = a.find(T, "k", at(12)) else {
            panic!("the first request past the TTL computes");
        };
        let Found::Kept(meanwhile) = a.find(T, "k", at(13)) else {
            panic!("the others get the old answer");
        };
        assert_eq!(
            (&meanwhile.body[..], meanwhile.age),
            (&b"old"[..], Duration::from_secs(13))
        );
        assert!(body(&a, T, "k", at(14)).is_some());
        a.keep(refresh, T, "k", Bytes::from_static(b"new"), "\"n\"", at(14));
        let Found::Kept(fresh) = a.find(T, "k", at(15)) else {
            panic!("kept");
        };
        assert_eq!(
            (&fresh.body[..], fresh.age),
            (&b"new"[..], Duration::from_secs(1))
        );
        assert_eq!(a.len(), 1);
    }

    #[test]
    fn a_refresh_that_fails_hands_the_refresh_to_the_next_request() {
        let a = answers(10);
        let refresh = refreshing_old(&a);
        assert!(body(&a, T, "k", at(12)).is_some());
        // Its batch failed (or the request was cancelled): nothing kept.
        drop(refresh);
        assert!(matches!(a.find(T, "k", at(13)), Found::Compute(_)));
        // (That one was dropped too.) The old answer is still served while another computes.
        let Found::Compute(_again) = a.find(T, "k", at(13)) else {
            panic!("computes");
        };
        assert_eq!(body(&a, T, "k", at(13)).as_deref(), Some("old"));
    }

    #[test]
    fn a_refresh_carries_the_old_answer_to_serve_if_it_fails() {
        let a = answers(10);
        let refresh = refreshing_old(&a);
        let stale = refresh.stale(at(13)).expect("the answer it refreshes");
        assert_eq!(
            (&stale.body[..], stale.age),
            (&b"old"[..], Duration::from_secs(12))
        );
        // Then it is served for another TTL without a try, never past max-age.
        assert_eq!(body(&a, T, "k", at(22)).as_deref(), Some("old"));
        let Found::Compute(again) = a.find(T, "k", at(23)) else {
            panic!("tried again after a TTL");
        };
        assert!(again.stale(at(55)).is_some());
        assert_eq!(body(&a, T, "k", at(59)).as_deref(), Some("old"));
        assert_eq!(body(&a, T, "k", at(60)), None);
        // A computation with nothing to refresh has nothing to fall back on.
        let Found::Compute(first) = a.find(T, "other", at(12)) else {
            panic!("computes");
        };
        assert!(first.stale(at(12)).is_none());
    }

    #[test]
    fn an_old_answer_is_never_served_past_max_age_or_a_write() {
        let a = answers(10);
        let _refresh = refreshing_old(&a);
        // At max-age (60 s) it is not served even while its successor is computed.
        assert!(body(&a, T, "k", at(60)).is_none());
        let a = answers(10);
        let _refresh = refreshing_old(&a);
        a.forget(T);
        assert!(body(&a, T, "k", at(13)).is_none());
    }

    #[test]
    fn keys_and_tenants_are_kept_apart() {
        let a = answers(10);
        keep(&a, T, "/v1/storefront/catalog?limit=2", "two", at(0));
        assert_eq!(body(&a, T, "/v1/storefront/catalog?limit=3", at(1)), None);
        assert_eq!(body(&a, U, "/v1/storefront/catalog?limit=2", at(1)), None);
        assert_eq!(
            body(&a, T, "/v1/storefront/catalog?limit=2", at(1)).as_deref(),
            Some("two")
        );
        keep(&a, U, "/v1/storefront/catalog?limit=2", "other", at(1));
        assert_eq!(
            body(&a, T, "/v1/storefront/catalog?limit=2", at(2)).as_deref(),
            Some("two")
        );
        assert_eq!(
            body(&a, U, "/v1/storefront/catalog?limit=2", at(2)).as_deref(),
            Some("other")
        );
    }

    #[test]
    fn a_write_drops_the_tenants_answers_and_no_others() {
        let a = answers(10);
        keep(&a, T, "t1", "a", at(0));
        keep(&a, U, "u1", "b", at(0));
        a.forget(T);
        assert_eq!(body(&a, T, "t1", at(1)), None);
        assert_eq!(body(&a, U, "u1", at(1)).as_deref(), Some("b"));
        // Answers computed after the write are kept again.
        keep(&a, T, "t1", "a2", at(1));
        assert_eq!(body(&a, T, "t1", at(2)).as_deref(), Some("a2"));
    }

    #[test]
    fn an_answer_computed_while_a_write_went_through_is_not_kept() {
        let a = answers(10);
        let Found::Compute(c) = a.find(T, "t1", at(0)) else {
            panic!("nothing kept yet");
        };
        let Found::Compute(other) = a.find(U, "u1", at(0)) else {
            panic!("nothing kept yet");
        };
        // The page's batch runs; meanwhile a write to the tenant commits.
        a.forget(T);
        a.keep(c, T, "t1", Bytes::from_static(b"old"), "\"o\"", at(0));
        assert_eq!(body(&a, T, "t1", at(0)), None);
        // Another tenant's answer computed meanwhile is kept.
        a.keep(other, U, "u1", Bytes::from_static(b"u"), "\"u\"", at(0));
        assert_eq!(body(&a, U, "u1", at(0)).as_deref(), Some("u"));
    }

    #[test]
    fn a_zero_ttl_keeps_nothing() {
        let a = answers(0);
        keep(&a, T, "k", "x", at(0));
        assert!(a.is_empty());
        assert_eq!(body(&a, T, "k", at(0)), None);
    }

    #[test]
    fn the_oldest_answers_go_first_past_the_bounds() {
        let a = answers(60);
        for i in 0..MAX_ENTRIES + 5 {
            keep(&a, T, &format!("k{i}"), "x", at(0));
        }
        assert_eq!(a.len(), MAX_ENTRIES);
        assert_eq!(body(&a, T, "k0", at(1)), None);
        assert_eq!(body(&a, T, "k4", at(1)), None);
        assert!(body(&a, T, "k5", at(1)).is_some());
        // Bytes: each body the largest kept, until the byte bound pushes out.
        let a = answers(60);
        let big = "y".repeat(MAX_BODY);
        let fit = MAX_BYTES / MAX_BODY;
        for i in 0..fit + 2 {
            keep(&a, T, &format!("b{i}"), &big, at(0));
        }
        assert_eq!(a.len(), fit);
        assert_eq!(body(&a, T, "b0", at(1)), None);
        assert!(body(&a, T, &format!("b{}", fit + 1), at(1)).is_some());
        assert!(a.state.borrow().bytes <= MAX_BYTES);
        // Over the bounds: never kept.
        keep(&a, T, "huge", &"z".repeat(MAX_BODY + 1), at(0));
        assert_eq!(body(&a, T, "huge", at(1)), None);
        keep(&a, T, &"k".repeat(MAX_KEY + 1), "x", at(0));
        assert_eq!(a.len(), fit);
    }

    #[test]
    fn keeping_a_key_again_replaces_it_and_its_bytes() {
        let a = answers(60);
        keep(&a, T, "k", "first", at(0));
        keep(&a, T, "k", "second!", at(1));
        assert_eq!(a.len(), 1);
        assert_eq!(a.state.borrow().bytes, "second!".len());
        assert_eq!(a.state.borrow().order.len(), 1);
        assert_eq!(body(&a, T, "k", at(2)).as_deref(), Some("second!"));
    }

    #[test]
    fn too_many_written_tenants_drop_everything_kept_before() {
        let a = answers(60);
        keep(&a, U, "u", "kept", at(0));
        for i in 0..MAX_TENANTS + 1 {
            a.forget(&format!("tenant-{i}"));
        }
        assert!(a.state.borrow().written.len() <= MAX_TENANTS);
        assert_eq!(body(&a, U, "u", at(1)), None);
        keep(&a, U, "u", "again", at(1));
        assert_eq!(body(&a, U, "u", at(2)).as_deref(), Some("again"));
    }
}
