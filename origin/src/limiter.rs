//! `POST /ratelimit`: the edge's rate-limit counters for runtimes without a shared store of
//! their own (a Spin component under `wasmtime serve`, or any deployment that sets the edge's
//! `RATE_LIMIT_URL`). One process holds every key, so the count is global and exact; the
//! algorithm is the edge's own ([`edgefront_core::window::Counter`]), run under a mutex, and the
//! windows are the caller's clock (`now_ms`), so the edge and this endpoint never disagree about
//! when a window starts.
//!
//! Memory is bounded: past [`MAX_KEYS`] keys, those idle for two of their windows go, and if every
//! key is live the map starts afresh (counting errs on the side of letting requests through).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use edgefront_core::ratelimit::RemoteHit;
use edgefront_core::window::{Counter, Decision};
use serde::{Deserialize, Serialize};

/// Largest request body (a few keys, two numbers and a timestamp each).
pub const MAX_BODY: usize = 4096;
/// Hits per request at most (a request has two budgets today).
pub const MAX_HITS: usize = 4;
/// Keys held at most.
pub const MAX_KEYS: usize = 200_000;
const MAX_KEY_LEN: usize = 512;

#[derive(Default)]
pub struct Limiter {
    /// Key → its counter and when it may be forgotten.
    counters: Mutex<HashMap<String, (Counter, Instant)>>,
}

/// A body: the edge's hits for one request (an array, counted as
/// [`RemoteHit::admit_received`] does, all under one lock), or a single hit.
#[derive(Deserialize)]
#[serde(untagged)]
enum Hits {
    Chain(Vec<RemoteHit>),
    One(RemoteHit),
}

/// The answer, shaped like the question.
#[derive(Debug, Serialize)]
#[serde(untagged)]
pub enum Answer {
    Chain(Vec<Decision>),
    One(Decision),
}

impl Limiter {
    /// Counts the hits described by `body` (JSON [`RemoteHit`] or an array of at most
    /// [`MAX_HITS`]) and answers the decisions.
    pub fn hit(&self, body: &[u8], now: Instant) -> Result<Answer, String> {
        let hits: Hits =
            serde_json::from_slice(body).map_err(|e| format!("invalid rate-limit hit: {e}"))?;
        let (hits, chain) = match hits {
            Hits::Chain(h) => (h, true),
            Hits::One(h) => (vec![h], false),
        };
        if hits.is_empty() || hits.len() > MAX_HITS {
            return Err(format!("send 1 to {MAX_HITS} hits"));
        }
        for hit in &hits {
            if hit.key.is_empty() || hit.key.len() > MAX_KEY_LEN {
                return Err(format!("key must be 1 to {MAX_KEY_LEN} bytes"));
            }
            if !(1..=86_400).contains(&hit.window_seconds) {
                return Err("window_seconds must be 1 to 86400".into());
            }
        }
        // A poisoned lock only means another request panicked mid-update: the counters are
        // plain integers, still usable.
        let mut counters = self.counters.lock().unwrap_or_else(|p| p.into_inner());
        let decisions = RemoteHit::admit_received(&hits, |hit, now_ms| {
            let keep = now + Duration::from_secs(2 * u64::from(hit.rule.window_seconds));
            if counters.len() >= MAX_KEYS && !counters.contains_key(hit.key) {
                counters.retain(|_, (_, until)| *until > now);
                if counters.len() >= MAX_KEYS {
                    counters.clear();
                }
            }
            let (counter, until) = counters
                .entry(hit.key.to_owned())
                .or_insert((Counter::default(), keep));
            *until = keep;
            counter.admit_hit(now_ms, hit)
        });
        Ok(if chain {
            Answer::Chain(decisions)
        } else {
            match decisions.first() {
                Some(d) => Answer::One(*d),
                None => return Err("nothing counted".into()),
            }
        })
    }

    pub fn len(&self) -> usize {
        self.counters.lock().map(|c| c.len()).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hit(key: &str, now_ms: u64) -> Vec<u8> {
        serde_json::to_vec(&RemoteHit {
            key: key.into(),
            limit: 2,
            window_seconds: 10,
            now_ms,
            lease: 0,
        })
        .unwrap()
    }

    fn one(a: Answer) -> Decision {
        match a {
            Answer::One(d) => d,
            Answer::Chain(c) => panic!("expected one decision, got {c:?}"),
        }
    }

    #[test]
    fn a_chain_is_counted_in_order_and_stops_at_a_refusal() {
        let l = Limiter::default();
        let now = Instant::now();
        let t = 1_000_000_000;
        let chain = |a: &str, b: &str, at| {
            let hits: Vec<serde_json::Value> = [a, b]
                .iter()
                .map(|k| serde_json::from_slice(&hit(k, at)).unwrap())
                .collect();
            serde_json::to_vec(&hits).unwrap()
        };
        for i in 0..2 {
            match l.hit(&chain("ip", "tenant", t + i), now).unwrap() {
                Answer::Chain(d) => assert!(d.len() == 2 && d.iter().all(|d| d.allowed)),
                Answer::One(_) => panic!("a chain is answered with a chain"),
            }
        }
        match l.hit(&chain("ip", "tenant", t + 2), now).unwrap() {
            Answer::Chain(d) => assert!(d.len() == 1 && !d[0].allowed),
            Answer::One(_) => panic!("a chain is answered with a chain"),
        }
        // The tenant's budget was not spent by the refused request.
        assert_eq!(l.counters.lock().unwrap()["tenant"].0.current, 2);
        assert!(l.hit(b"[]", now).is_err());
    }

    #[test]
    fn counts_per_key_and_refuses_past_the_limit() {
        let l = Limiter::default();
        let now = Instant::now();
        let t = 1_000_000_000;
        assert!(one(l.hit(&hit("a", t), now).unwrap()).allowed);
        assert_eq!(one(l.hit(&hit("a", t + 1), now).unwrap()).remaining, 0);
        let refused = one(l.hit(&hit("a", t + 2), now).unwrap());
        assert!(!refused.allowed);
        assert!(refused.reset_seconds >= 1);
        assert!(one(l.hit(&hit("b", t + 2), now).unwrap()).allowed);
        assert_eq!(l.len(), 2);
    }

    #[test]
    fn a_hit_asking_for_a_lease_is_granted_what_is_left_and_counted() {
        let l = Limiter::default();
        let now = Instant::now();
        let body = br#"{"key":"k","limit":2,"window_seconds":10,"now_ms":1000000000,"lease":5}"#;
        let d = one(l.hit(body, now).unwrap());
        assert_eq!((d.allowed, d.leased, d.remaining), (true, 1, 0));
        assert!(!one(l.hit(&hit("k", 1_000_000_001), now).unwrap()).allowed);
        assert_eq!(l.counters.lock().unwrap()["k"].0.current, 2);
    }

    #[test]
    fn refuses_malformed_hits() {
        let l = Limiter::default();
        let now = Instant::now();
        assert!(l.hit(b"{}", now).is_err());
        assert!(l.hit(&hit("", 1), now).is_err());
        assert!(l.hit(&hit(&"k".repeat(600), 1), now).is_err());
        let zero = br#"{"key":"k","limit":1,"window_seconds":0,"now_ms":1}"#;
        assert!(l.hit(zero, now).is_err());
        assert!(l.is_empty());
    }
}
