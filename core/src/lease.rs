//! Rate-limit leases: an instance spends pre-counted hits locally instead of asking the shared
//! store ([`crate::ports::RateLimiter`], a Durable Object on Workers) on every request.
//!
//! When a request needs the store, each key it sends asks for a lease ([`Hit::lease`]): the
//! store counts that many more hits at once and grants them ([`crate::window::Counter::grant`]),
//! and the next requests on this instance spend them without a call. Exactness:
//! - **Never over the limit.** Leased hits are counted when granted, never more than are left,
//!   and are spent only in the fixed window they were granted in (a sliding window's room only
//!   grows within a fixed window, so anything a lease lets through would have been let through
//!   one at a time too). An unspent lease expires with its window, erring on refusal.
//! - **Small limits are exact per request.** A lease is at most 1/16 of the limit
//!   ([`LEASE_SHARE`]), so a limit under 16 never leases, and what other instances cannot use
//!   because this one holds it is at most that share.
//! - **Slow start.** A key's first call leases nothing; each further call doubles the lease, up
//!   to the share. An instance that serves one request (Spin) never holds a lease it cannot
//!   spend.
//! - **Single flight.** While one request of an instance asks the store for a chain's keys,
//!   the instance's other requests on the same anchor wait for its answer instead of asking too.
//!   They wait by pausing ([`WAIT`], the clock port's sleep) and looking again, never by being
//!   woken from the asking request: on Workers a request's code must not run in another
//!   request's context, which a cross-request wake-up would do.
//! - **Refusals are the store's.** A key without a lease always asks, so `Retry-After` is exact.

use std::cell::RefCell;
use std::collections::{HashMap, HashSet};
use std::time::Duration;

use crate::window::{whole_again_seconds, Decision, Hit, Rule};

/// The largest lease, as a share of the limit: `limit / LEASE_SHARE` hits.
pub const LEASE_SHARE: u32 = 16;

/// How long a request waiting for another one's store call pauses before it looks again.
pub const WAIT: Duration = Duration::from_millis(1);

/// One key's lease on this instance.
struct Lease {
    /// The fixed window it was granted in (`now / window`), and under which rule.
    window: u64,
    rule: Rule,
    /// Hits granted and not spent yet.
    left: u32,
    /// What the store had left after granting them.
    store_remaining: u32,
    /// The lease the key's next call asks for.
    next: u32,
}

impl Lease {
    fn holds(&self, hit: &Hit<'_>, now_ms: u64) -> bool {
        self.rule == hit.rule && self.window == now_ms / hit.rule.window_ms()
    }
}

/// What [`Leases::reserve`] found for a request's chain.
pub struct Reserved {
    /// Per hit, in order: the decision when a lease paid for it.
    local: Vec<Option<Decision>>,
}

impl Reserved {
    /// Every hit was paid for locally: the decisions.
    pub fn all_local(&self) -> Option<Vec<Decision>> {
        self.local.iter().copied().collect()
    }
}

/// The instance's leases and the store calls in flight, bounded like the memory tier.
pub struct Leases {
    leases: RefCell<HashMap<String, Lease>>,
    /// The anchors a store call is in flight for.
    flights: RefCell<HashSet<String>>,
    capacity: usize,
}

/// A store call in flight for an anchor, until it is dropped (however the call ends).
pub struct Flight<'a> {
    leases: &'a Leases,
    anchor: String,
}

impl Drop for Flight<'_> {
    fn drop(&mut self) {
        self.leases.flights.borrow_mut().remove(&self.anchor);
    }
}

impl Leases {
    pub fn new(capacity: usize) -> Self {
        Self {
            leases: RefCell::new(HashMap::new()),
            flights: RefCell::new(HashSet::new()),
            capacity: capacity.max(1),
        }
    }

    /// Whether another request of this instance is asking the store for `anchor`.
    pub fn in_flight(&self, anchor: &str) -> bool {
        self.flights.borrow().contains(anchor)
    }

    /// Marks a call to the store for `anchor` as in flight until the guard drops.
    pub fn fly(&self, anchor: &str) -> Flight<'_> {
        self.flights.borrow_mut().insert(anchor.to_owned());
        Flight {
            leases: self,
            anchor: anchor.to_owned(),
        }
    }

    /// Spends one leased hit for each hit of the chain that has one (none of them, if a
    /// hit before it has none: those come back with [`Leases::settle`] if the store refuses).
    pub fn reserve(&self, hits: &[Hit<'_>], now_ms: u64) -> Reserved {
        let mut leases = self.leases.borrow_mut();
        let local = hits
            .iter()
            .map(|hit| {
                let lease = leases.get_mut(hit.key)?;
                if !lease.holds(hit, now_ms) || lease.left == 0 {
                    return None;
                }
                lease.left -= 1;
                Some(Decision {
                    allowed: true,
                    remaining: lease.store_remaining.saturating_add(lease.left),
                    reset_seconds: whole_again_seconds(now_ms, hit.rule),
                    leased: 0,
                })
            })
            .collect();
        Reserved { local }
    }

    /// The hits of the chain that the store must count, each asking for its key's next lease.
    pub fn to_ask<'k>(&self, hits: &[Hit<'k>], reserved: &Reserved) -> Vec<Hit<'k>> {
        let leases = self.leases.borrow();
        hits.iter()
            .zip(&reserved.local)
            .filter(|(_, local)| local.is_none())
            .map(|(hit, _)| {
                let share = hit.rule.limit / LEASE_SHARE;
                let next = leases.get(hit.key).map_or(0, |l| l.next);
                Hit {
                    lease: next.min(share),
                    ..*hit
                }
            })
            .collect()
    }

    /// Gives back every hit [`Leases::reserve`] spent (the store was not reached).
    pub fn release(&self, hits: &[Hit<'_>], reserved: &Reserved, now_ms: u64) {
        for (hit, local) in hits.iter().zip(&reserved.local) {
            if local.is_some() {
                self.give_back(hit, now_ms);
            }
        }
    }

    fn give_back(&self, hit: &Hit<'_>, now_ms: u64) {
        if let Some(lease) = self.leases.borrow_mut().get_mut(hit.key) {
            if lease.holds(hit, now_ms) {
                lease.left = lease.left.saturating_add(1);
            }
        }
    }

    /// The chain's decisions, in order, from the local ones and the store's answers to
    /// `asked`: stops at the first refusal (as [`crate::window::admit_chain`]), giving back
    /// the leased hits after it; keeps what the store granted.
    pub fn settle(
        &self,
        hits: &[Hit<'_>],
        reserved: Reserved,
        asked: &[Hit<'_>],
        answers: Vec<Decision>,
        now_ms: u64,
    ) -> Vec<Decision> {
        let mut answers = asked.iter().zip(answers);
        let mut out = Vec::with_capacity(hits.len());
        let mut refused = false;
        for (hit, local) in hits.iter().zip(reserved.local) {
            if refused {
                if local.is_some() {
                    self.give_back(hit, now_ms);
                }
                continue;
            }
            let decision = match local {
                Some(d) => d,
                None => match answers.next() {
                    Some((asked, d)) => self.keep(asked, d, now_ms),
                    // The store stopped early without a refusal: nothing more is known.
                    None => break,
                },
            };
            refused = !decision.allowed;
            out.push(decision);
        }
        out
    }

    /// Keeps what the store granted for `asked`, and says what its request got (what is left
    /// counts the lease, which this instance will spend).
    fn keep(&self, asked: &Hit<'_>, d: Decision, now_ms: u64) -> Decision {
        let mut leases = self.leases.borrow_mut();
        if !d.allowed {
            if let Some(lease) = leases.get_mut(asked.key) {
                lease.left = 0;
            }
            return d;
        }
        if leases.len() >= self.capacity && !leases.contains_key(asked.key) {
            leases.retain(|_, l| l.window >= now_ms / l.rule.window_ms());
            if leases.len() >= self.capacity {
                // Forgetting leases only refuses early (they were counted).
                leases.clear();
            }
        }
        let share = asked.rule.limit / LEASE_SHARE;
        let window = now_ms / asked.rule.window_ms();
        let lease = leases.entry(asked.key.to_owned()).or_insert(Lease {
            window,
            rule: asked.rule,
            left: 0,
            store_remaining: 0,
            next: 0,
        });
        if !lease.holds(asked, now_ms) {
            lease.window = window;
            lease.rule = asked.rule;
            lease.left = 0;
        }
        lease.left = lease.left.saturating_add(d.leased);
        lease.store_remaining = d.remaining;
        lease.next = asked
            .lease
            .saturating_mul(2)
            .clamp(1, share.max(1))
            .min(share);
        Decision {
            remaining: d.remaining.saturating_add(lease.left),
            leased: 0,
            ..d
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::window::{admit_chain, Counter};

    /// A store: counters per key, counting what it is asked (and how often).
    #[derive(Default)]
    struct Store {
        counters: HashMap<String, Counter>,
        calls: u32,
    }

    impl Store {
        fn admit(&mut self, hits: &[Hit<'_>], now_ms: u64) -> Vec<Decision> {
            self.calls += 1;
            admit_chain(hits, |h| {
                self.counters
                    .entry(h.key.to_owned())
                    .or_default()
                    .admit_hit(now_ms, h)
            })
        }
    }

    /// What the memory tier does, with a synchronous store.
    fn admit(leases: &Leases, store: &mut Store, hits: &[Hit<'_>], now_ms: u64) -> Vec<Decision> {
        let reserved = leases.reserve(hits, now_ms);
        if let Some(local) = reserved.all_local() {
            return local;
        }
        let asked = leases.to_ask(hits, &reserved);
        let answers = store.admit(&asked, now_ms);
        leases.settle(hits, reserved, &asked, answers, now_ms)
    }

    const T0: u64 = 1_700_000_000_000; // the start of a 10 s and of a 60 s window

    fn rule(limit: u32) -> Rule {
        Rule {
            limit,
            window_seconds: 10,
        }
    }

    #[test]
    fn a_large_limit_is_spent_from_leases_exactly_and_calls_the_store_rarely() {
        let leases = Leases::new(100);
        let mut store = Store::default();
        let hits = [Hit::new("ip", rule(1_000)), Hit::new("tenant", rule(320))];
        let mut allowed = 0;
        let mut last_remaining = u32::MAX;
        for i in 0..330 {
            let d = admit(&leases, &mut store, &hits, T0 + i);
            if d.iter().all(|d| d.allowed) {
                allowed += 1;
                let tenant = d[1].remaining;
                assert!(tenant < last_remaining, "remaining goes down: {tenant}");
                last_remaining = tenant;
                assert_eq!(tenant, 320 - allowed, "what is left counts the lease");
            }
        }
        assert_eq!(allowed, 320, "exactly the tenant's limit");
        // Slow start to leases of 20 for the tenant: about 20 calls for 320, then one per
        // refusal (a key without a lease always asks).
        assert!(
            store.calls < 40,
            "{} store calls for 330 requests",
            store.calls
        );
        // The address's budget was charged for every request (the chain counts it before the
        // tenant's refuses, as the store does), plus at most one unspent lease.
        assert!(store.counters["ip"].current >= 330);
        assert!(store.counters["ip"].current <= 330 + 1_000 / LEASE_SHARE);
    }

    #[test]
    fn a_small_limit_never_leases_and_asks_every_time() {
        let leases = Leases::new(100);
        let mut store = Store::default();
        let hits = [Hit::new("ip", rule(5))];
        let got: Vec<bool> = (0..7)
            .map(|i| admit(&leases, &mut store, &hits, T0 + i)[0].allowed)
            .collect();
        assert_eq!(got, [true, true, true, true, true, false, false]);
        assert_eq!(store.calls, 7);
        assert_eq!(store.counters["ip"].current, 5);
    }

    #[test]
    fn a_lease_is_not_spent_in_the_next_window() {
        let leases = Leases::new(100);
        let mut store = Store::default();
        let hits = [Hit::new("k", rule(160))];
        for i in 0..4 {
            admit(&leases, &mut store, &hits, T0 + i);
        }
        let before = store.calls;
        // The next fixed window: the lease left over is not used.
        admit(&leases, &mut store, &hits, T0 + 10_000);
        assert_eq!(store.calls, before + 1);
    }

    #[test]
    fn a_refused_address_gives_the_leased_tenant_hit_back() {
        let leases = Leases::new(100);
        let mut store = Store::default();
        let ip = Hit::new("ip", rule(1));
        let tenant = Hit::new("tenant", rule(1_600));
        // Warm the tenant's lease: no lease, 1 (spent next), then 2.
        for i in 0..4 {
            admit(&leases, &mut store, &[tenant], T0 + i);
        }
        let counted = store.counters["tenant"].current;
        let first = admit(&leases, &mut store, &[ip, tenant], T0 + 10);
        assert!(first.iter().all(|d| d.allowed));
        let left = leases.leases.borrow()["tenant"].left;
        let refused = admit(&leases, &mut store, &[ip, tenant], T0 + 11);
        assert_eq!(refused.len(), 1);
        assert!(!refused[0].allowed);
        assert_eq!(
            leases.leases.borrow()["tenant"].left,
            left,
            "the refused request spent nothing of the tenant's"
        );
        assert_eq!(store.counters["tenant"].current, counted);
    }

    #[test]
    fn a_store_failure_gives_reserved_hits_back() {
        let leases = Leases::new(100);
        let mut store = Store::default();
        let ip = Hit::new("ip", rule(5));
        let tenant = Hit::new("tenant", rule(1_600));
        for i in 0..4 {
            admit(&leases, &mut store, &[tenant], T0 + i);
        }
        let left = leases.leases.borrow()["tenant"].left;
        assert_eq!(left, 2);
        let hits = [ip, tenant];
        let reserved = leases.reserve(&hits, T0 + 5);
        assert!(reserved.all_local().is_none());
        assert_eq!(leases.leases.borrow()["tenant"].left, left - 1);
        leases.release(&hits, &reserved, T0 + 5);
        assert_eq!(leases.leases.borrow()["tenant"].left, left);
    }

    #[test]
    fn a_flight_lasts_as_long_as_its_guard() {
        let leases = Leases::new(100);
        assert!(!leases.in_flight("a"));
        let flight = leases.fly("a");
        assert!(leases.in_flight("a"));
        assert!(!leases.in_flight("b"), "flights are per anchor");
        drop(flight);
        assert!(!leases.in_flight("a"));
    }
}
