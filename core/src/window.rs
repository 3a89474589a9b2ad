//! The sliding-window counter behind rate limiting ([`crate::ratelimit`]): pure arithmetic
//! on two integers per key, so that every store (a Durable Object, a key-value entry, the
//! origin's memory, an instance's memory) runs the same algorithm. A leaf module: the ports name
//! its types.

use serde::{Deserialize, Serialize};

/// So many requests per window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rule {
    pub limit: u32,
    pub window_seconds: u32,
}

impl Rule {
    /// The window's length in milliseconds (at least one second).
    pub fn window_ms(&self) -> u64 {
        u64::from(self.window_seconds.max(1)) * 1000
    }
}

/// What a limiter answers for one key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Decision {
    pub allowed: bool,
    /// Requests left in the sliding window after this one (and after the `leased` ones).
    pub remaining: u32,
    /// Seconds until a request would be allowed again (0 while some remain), or, when some
    /// remain, until the budget is whole again.
    pub reset_seconds: u32,
    /// Hits counted beyond this request's own, granted to the caller to spend in this fixed
    /// window ([`Hit::lease`]); absent on the wire when none.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub leased: u32,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// Seconds until every request counted at `now_ms` under `rule` has slid out of the window
/// (what an allowed [`Decision`] says): the end of the next fixed window.
pub fn whole_again_seconds(now_ms: u64, rule: Rule) -> u32 {
    let window_ms = rule.window_ms();
    secs(2 * window_ms - now_ms % window_ms)
}

/// One key's sliding-window state: two integers and the window they belong to.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counter {
    /// Index of the current fixed window (`unix time / window`).
    pub window: u64,
    pub current: u32,
    pub previous: u32,
}

impl Counter {
    /// A compact encoding for byte stores (16 bytes, little-endian).
    pub fn to_bytes(&self) -> [u8; 16] {
        let mut b = [0u8; 16];
        let (w, rest) = b.split_at_mut(8);
        w.copy_from_slice(&self.window.to_le_bytes());
        let (c, p) = rest.split_at_mut(4);
        c.copy_from_slice(&self.current.to_le_bytes());
        p.copy_from_slice(&self.previous.to_le_bytes());
        b
    }

    /// Reads [`Counter::to_bytes`]; anything else is a fresh counter.
    pub fn from_bytes(b: &[u8]) -> Self {
        let (Some(w), Some(c), Some(p)) = (b.get(0..8), b.get(8..12), b.get(12..16)) else {
            return Self::default();
        };
        let (Ok(w), Ok(c), Ok(p)) = (w.try_into(), c.try_into(), p.try_into()) else {
            return Self::default();
        };
        if b.len() != 16 {
            return Self::default();
        }
        Self {
            window: u64::from_le_bytes(w),
            current: u32::from_le_bytes(c),
            previous: u32::from_le_bytes(p),
        }
    }

    /// Counts one request at `now_ms` (Unix milliseconds) under `rule`, unless that would exceed
    /// the limit; the decision says which, and what is left.
    pub fn admit(&mut self, now_ms: u64, rule: Rule) -> Decision {
        self.grant(now_ms, rule, 0)
    }

    /// Counts `hit` at `now_ms`: its request and up to [`Hit::lease`] more.
    pub fn admit_hit(&mut self, now_ms: u64, hit: &Hit<'_>) -> Decision {
        self.grant(now_ms, hit.rule, hit.lease)
    }

    /// Counts one request at `now_ms` under `rule` unless that would exceed the limit, and with
    /// it up to `extra` more that the caller spends later in this fixed window (a lease: they
    /// count now, so the limit holds whenever they are spent; the sliding window's room only
    /// grows within a fixed window, so nothing a lease lets through would have been refused).
    pub fn grant(&mut self, now_ms: u64, rule: Rule, extra: u32) -> Decision {
        let window_ms = rule.window_ms();
        let index = now_ms / window_ms;
        if index != self.window {
            let (current, previous) = if index == self.window.saturating_add(1) {
                (0, self.current)
            } else {
                (0, 0)
            };
            *self = Self {
                window: index,
                current,
                previous,
            };
        }
        let into = now_ms % window_ms;
        // The previous window's share still inside the sliding window, in requests (rounded up:
        // the limiter never lets more through than the limit).
        let weighted = |previous: u32, into: u64| -> u64 {
            (u64::from(previous) * (window_ms - into)).div_ceil(window_ms)
        };
        let used = weighted(self.previous, into) + u64::from(self.current);
        let limit = u64::from(rule.limit);
        if used < limit {
            let take = (limit - used).min(1 + u64::from(extra));
            let take32 = u32::try_from(take).unwrap_or(u32::MAX);
            self.current = self.current.saturating_add(take32);
            let remaining = limit - used - take;
            // Until every counted request has slid out: the end of the next window at the latest.
            let whole = if self.current > 0 {
                2 * window_ms - into
            } else {
                window_ms - into
            };
            return Decision {
                allowed: true,
                remaining: u32::try_from(remaining).unwrap_or(u32::MAX),
                reset_seconds: secs(whole),
                leased: take32 - 1,
            };
        }
        Decision {
            allowed: false,
            remaining: 0,
            reset_seconds: secs(self.wait_ms(into, window_ms, limit)).max(1),
            leased: 0,
        }
    }

    /// Milliseconds from `into` the current window until one more request fits under `limit`.
    fn wait_ms(&self, into: u64, window_ms: u64, limit: u64) -> u64 {
        let current = u64::from(self.current);
        let previous = u64::from(self.previous);
        if limit == 0 {
            // Nothing is ever allowed: say the window, clients should not hammer.
            return window_ms;
        }
        if current < limit {
            // Wait in this window until previous · (window − t) / window ≤ limit − 1 − current.
            let room = limit - 1 - current;
            // t ≥ window − room · window / previous
            let t = window_ms - (room * window_ms) / previous.max(1);
            return t.saturating_sub(into).max(1);
        }
        // Not this window: in the next one the current count becomes the previous one, and
        // current · (window − t) / window ≤ limit − 1 at t ≥ window − (limit − 1) · window / current.
        let t = window_ms - ((limit - 1) * window_ms) / current.max(1);
        (window_ms - into) + t
    }
}

/// One request to count against `key` under `rule`, and up to `lease` more to grant the caller
/// ([`Counter::grant`]; 0: just this one).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hit<'a> {
    pub key: &'a str,
    pub rule: Rule,
    pub lease: u32,
}

impl<'a> Hit<'a> {
    /// One request on `key` under `rule`, nothing leased.
    pub fn new(key: &'a str, rule: Rule) -> Self {
        Self {
            key,
            rule,
            lease: 0,
        }
    }
}

/// Counts one request against each of `hits` in order with `admit`, stopping at the first that
/// refuses: a refused hit, and those after it, are not counted (a request its client's budget
/// refuses must not spend its tenant's too). The decisions made, in order.
pub fn admit_chain<'h, 'k: 'h>(
    hits: impl IntoIterator<Item = &'h Hit<'k>>,
    mut admit: impl FnMut(&Hit<'k>) -> Decision,
) -> Vec<Decision> {
    let mut decisions = Vec::with_capacity(2);
    for hit in hits {
        let decision = admit(hit);
        decisions.push(decision);
        if !decision.allowed {
            break;
        }
    }
    decisions
}

fn secs(ms: u64) -> u32 {
    u32::try_from(ms.div_ceil(1000)).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chain_stops_at_its_first_refusal_and_counts_nothing_after() {
        let tight = Rule {
            limit: 1,
            window_seconds: 10,
        };
        let hits = [Hit::new("ip", tight), Hit::new("tenant", RULE)];
        let mut counters = std::collections::HashMap::<&str, Counter>::new();
        let mut run = |now| {
            admit_chain(&hits, |h| {
                counters.entry(h.key).or_default().admit(now, h.rule)
            })
        };
        let first = run(1_000_000);
        assert_eq!(first.len(), 2);
        assert!(first.iter().all(|d| d.allowed));
        let second = run(1_000_001);
        assert_eq!(
            second.len(),
            1,
            "the tenant is not asked once the address is refused"
        );
        assert!(!second[0].allowed);
        assert_eq!(
            counters["tenant"].current, 1,
            "the refused request spent nothing"
        );
        assert_eq!(counters["ip"].current, 1);
    }

    const RULE: Rule = Rule {
        limit: 5,
        window_seconds: 10,
    };

    #[test]
    fn the_limit_is_reached_then_refused_until_the_counted_requests_slide_out() {
        let mut c = Counter::default();
        let t0 = 1_000_000_000; // the start of a window
        for i in 0..5 {
            let d = c.admit(t0 + i, RULE);
            assert!(d.allowed);
            assert_eq!(d.remaining, 4 - i as u32);
        }
        let refused = c.admit(t0 + 5, RULE);
        assert!(!refused.allowed);
        assert_eq!(refused.remaining, 0);
        // 5 requests at the start of this window: in the next one they weigh 5·(1 − t/10 s),
        // ≤ 4 from t = 2 s; so 12 s from now.
        assert_eq!(refused.reset_seconds, 12);
        // Refusals are not counted: the wait does not grow.
        assert_eq!(c.admit(t0 + 6_000, RULE).reset_seconds, 6);
        assert!(!c.admit(t0 + 11_000, RULE).allowed);
        assert!(c.admit(t0 + 12_000, RULE).allowed);
    }

    #[test]
    fn a_burst_at_a_window_boundary_is_not_doubled() {
        let mut c = Counter::default();
        let end = 1_000_009_900; // 100 ms before a window ends
        for _ in 0..5 {
            assert!(c.admit(end, RULE).allowed);
        }
        // A fixed window would allow 5 more 100 ms later.
        assert!(!c.admit(end + 100, RULE).allowed);
        // Half a window on, half the previous burst has slid out.
        let d = c.admit(end + 100 + 5_000, RULE);
        assert!(d.allowed);
        assert_eq!(d.remaining, 1);
    }

    #[test]
    fn a_lease_counts_what_it_grants_and_never_more_than_is_left() {
        let mut c = Counter::default();
        let t0 = 1_000_000_000;
        let d = c.grant(t0, RULE, 3);
        assert_eq!((d.allowed, d.leased, d.remaining), (true, 3, 1));
        assert_eq!(
            c.current, 4,
            "the request and its lease are counted at once"
        );
        // Only one is left: a lease of 3 more gets none of them, and the next is refused.
        let d = c.grant(t0 + 1, RULE, 3);
        assert_eq!((d.allowed, d.leased, d.remaining), (true, 0, 0));
        let d = c.grant(t0 + 2, RULE, 3);
        assert_eq!((d.allowed, d.leased), (false, 0));
        assert_eq!(c.current, 5);
        // A lease taken late in a window is sized by the previous window's weight then.
        let mut c = Counter {
            window: (t0 / 10_000) - 1,
            current: 4,
            previous: 0,
        };
        let d = c.grant(t0 + 5_000, RULE, 10); // 4 · ½ = 2 of the previous still weigh
        assert_eq!((d.leased, d.remaining), (2, 0));
        assert_eq!(whole_again_seconds(t0 + 5_000, RULE), 15);
        assert_eq!(d.reset_seconds, 15);
    }

    #[test]
    fn a_lease_is_absent_on_the_wire_when_none() {
        let d = Counter::default().admit(5, RULE);
        let json = serde_json::to_string(&d).unwrap_or_default();
        assert!(!json.contains("leased"), "{json}");
        let back: Decision = serde_json::from_str(&json).unwrap_or(Decision {
            allowed: false,
            remaining: 9,
            reset_seconds: 9,
            leased: 9,
        });
        assert_eq!(back, d);
    }

    #[test]
    fn the_byte_encoding_round_trips() {
        let c = Counter {
            window: 170_000_000_123,
            current: 7,
            previous: 4_000_000_000,
        };
        assert_eq!(Counter::from_bytes(&c.to_bytes()), c);
        assert_eq!(Counter::from_bytes(b"short"), Counter::default());
        assert_eq!(Counter::from_bytes(&[1u8; 17]), Counter::default());
    }

    #[test]
    fn an_idle_key_starts_afresh() {
        let mut c = Counter::default();
        for _ in 0..5 {
            c.admit(1_000_000_000, RULE);
        }
        let d = c.admit(1_000_000_000 + 25_000, RULE);
        assert!(d.allowed);
        assert_eq!(d.remaining, 4);
        let zero = Rule {
            limit: 0,
            window_seconds: 10,
        };
        let d = Counter::default().admit(5, zero);
        assert!(!d.allowed);
        assert_eq!(d.reset_seconds, 10);
    }
}
