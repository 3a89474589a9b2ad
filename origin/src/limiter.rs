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
use edgefront_core::window::{Counter, Decision, Rule};

/// Largest request body (a key, two numbers and a timestamp).
pub const MAX_BODY: usize = 2048;
/// Keys held at most.
pub const MAX_KEYS: usize = 200_000;
const MAX_KEY_LEN: usize = 512;

#[derive(Default)]
pub struct Limiter {
    /// Key → its counter and when it may be forgotten.
    counters: Mutex<HashMap<String, (Counter, Instant)>>,
}

impl Limiter {
    /// Counts the hit described by `body` (JSON [`RemoteHit`]) and answers the decision.
    pub fn hit(&self, body: &[u8], now: Instant) -> Result<Decision, String> {
        let hit: RemoteHit =
            serde_json::from_slice(body).map_err(|e| format!("invalid rate-limit hit: {e}"))?;
        if hit.key.is_empty() || hit.key.len() > MAX_KEY_LEN {
            return Err(format!("key must be 1 to {MAX_KEY_LEN} bytes"));
        }
        if !(1..=86_400).contains(&hit.window_seconds) {
            return Err("window_seconds must be 1 to 86400".into());
        }
        let rule = Rule {
            limit: hit.limit,
            window_seconds: hit.window_seconds,
        };
        let keep = now + Duration::from_secs(2 * u64::from(hit.window_seconds));
        // A poisoned lock only means another request panicked mid-update: the counters are
        // plain integers, still usable.
        let mut counters = self.counters.lock().unwrap_or_else(|p| p.into_inner());
        if counters.len() >= MAX_KEYS && !counters.contains_key(&hit.key) {
            counters.retain(|_, (_, until)| *until > now);
            if counters.len() >= MAX_KEYS {
                counters.clear();
            }
        }
        let (counter, until) = counters
            .entry(hit.key)
            .or_insert((Counter::default(), keep));
        *until = keep;
        Ok(counter.admit(hit.now_ms, rule))
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
        })
        .unwrap()
    }

    #[test]
    fn counts_per_key_and_refuses_past_the_limit() {
        let l = Limiter::default();
        let now = Instant::now();
        let t = 1_000_000_000;
        assert!(l.hit(&hit("a", t), now).unwrap().allowed);
        assert_eq!(l.hit(&hit("a", t + 1), now).unwrap().remaining, 0);
        let refused = l.hit(&hit("a", t + 2), now).unwrap();
        assert!(!refused.allowed);
        assert!(refused.reset_seconds >= 1);
        assert!(l.hit(&hit("b", t + 2), now).unwrap().allowed);
        assert_eq!(l.len(), 2);
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
