//! Back-off of failed Postgres logins, per (role, client address): the proxy must not be a
//! password-guessing service. After `free_failures` failed logins in a row, each further failure
//! locks that role for that client for `base`, doubling per failure up to `max`; while locked,
//! requests are answered 429 at once, without reaching Postgres. A success clears the record;
//! a record without failures for `forget_after` is dropped.
//!
//! Keyed by client as well as role, so a guesser locks out only itself — the edge (another
//! client) keeps working. Behind a load balancer every client shares its address: then the
//! lockout is per role (the bearer token, required off loopback, is what keeps strangers from
//! tripping it). While locked, even the right password is refused: letting proven credentials
//! through would make the lockout an oracle for them.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How failed logins are slowed down.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoginBackoff {
    /// Failed logins in a row before the first lockout.
    pub free_failures: u32,
    /// The first lockout; each further failure doubles it.
    pub base: Duration,
    /// The longest lockout.
    pub max: Duration,
    /// A record without a new failure for this long is forgotten.
    pub forget_after: Duration,
}

impl Default for LoginBackoff {
    fn default() -> Self {
        LoginBackoff {
            free_failures: 3,
            base: Duration::from_secs(1),
            max: Duration::from_secs(300),
            forget_after: Duration::from_secs(900),
        }
    }
}

/// Records beyond this are pruned of the forgettable ones before a new one is added, so a
/// flood of distinct roles or addresses cannot grow memory without bound.
const PRUNE_ABOVE: usize = 10_000;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct LoginKey {
    pub role: String,
    /// `None` when the server does not know the peer (in-process tests).
    pub client: Option<IpAddr>,
}

#[derive(Debug, Clone, Copy)]
struct Record {
    failures: u32,
    last_failure: Instant,
    locked_until: Option<Instant>,
}

pub(crate) struct LoginThrottle {
    cfg: LoginBackoff,
    records: Mutex<HashMap<LoginKey, Record>>,
}

impl LoginThrottle {
    pub fn new(cfg: LoginBackoff) -> Self {
        LoginThrottle {
            cfg,
            records: Mutex::new(HashMap::new()),
        }
    }

    /// `Err(wait)` while `key` is locked out: how long until it may try again.
    pub fn check(&self, key: &LoginKey, now: Instant) -> Result<(), Duration> {
        let records = lock(&self.records);
        match records.get(key).and_then(|r| r.locked_until) {
            Some(until) if until > now => Err(until - now),
            _ => Ok(()),
        }
    }

    /// Postgres refused the login: count it, and lock the key once past the free failures.
    /// Returns the lockout it started, if any.
    pub fn failed(&self, key: &LoginKey, now: Instant) -> Option<Duration> {
        let mut records = lock(&self.records);
        if records.len() >= PRUNE_ABOVE && !records.contains_key(key) {
            let forget_after = self.cfg.forget_after;
            records.retain(|_, r| {
                now.saturating_duration_since(r.last_failure) < forget_after
                    || r.locked_until.is_some_and(|u| u > now)
            });
        }
        let record = records.entry(key.clone()).or_insert(Record {
            failures: 0,
            last_failure: now,
            locked_until: None,
        });
        if now.saturating_duration_since(record.last_failure) >= self.cfg.forget_after {
            record.failures = 0;
        }
        record.failures = record.failures.saturating_add(1);
        record.last_failure = now;
        let lockout = self.lockout(record.failures);
        record.locked_until = lockout.map(|d| now + d);
        lockout
    }

    /// The login succeeded: the key starts afresh.
    pub fn succeeded(&self, key: &LoginKey) {
        lock(&self.records).remove(key);
    }

    /// The lockout after the `failures`-th failure in a row: none for the free ones, then
    /// `base`, `2 × base`, `4 × base`, … up to `max`.
    fn lockout(&self, failures: u32) -> Option<Duration> {
        let over = failures.checked_sub(self.cfg.free_failures)?;
        let factor = 1u32.checked_shl(over.min(31)).unwrap_or(u32::MAX);
        Some(
            self.cfg
                .base
                .checked_mul(factor)
                .unwrap_or(self.cfg.max)
                .min(self.cfg.max),
        )
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // Plain counters: a panic while holding the lock cannot leave them inconsistent.
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(role: &str, client: [u8; 4]) -> LoginKey {
        LoginKey {
            role: role.into(),
            client: Some(IpAddr::from(client)),
        }
    }

    #[test]
    fn locks_after_the_free_failures_and_doubles() {
        let t = LoginThrottle::new(LoginBackoff::default());
        let k = key("app", [10, 0, 0, 1]);
        let now = Instant::now();
        assert_eq!(t.failed(&k, now), None);
        assert_eq!(t.failed(&k, now), None);
        assert!(t.check(&k, now).is_ok());
        assert_eq!(t.failed(&k, now), Some(Duration::from_secs(1)));
        assert_eq!(t.check(&k, now), Err(Duration::from_secs(1)));
        let later = now + Duration::from_millis(1500);
        assert!(t.check(&k, later).is_ok(), "the lockout ends");
        assert_eq!(t.failed(&k, later), Some(Duration::from_secs(2)));
        assert_eq!(t.failed(&k, later), Some(Duration::from_secs(4)));
        for _ in 0..40 {
            t.failed(&k, later);
        }
        assert_eq!(t.check(&k, later), Err(Duration::from_secs(300)), "capped");
    }

    #[test]
    fn keyed_by_role_and_client() {
        let t = LoginThrottle::new(LoginBackoff::default());
        let now = Instant::now();
        let guesser = key("app", [10, 0, 0, 1]);
        for _ in 0..5 {
            t.failed(&guesser, now);
        }
        assert!(t.check(&guesser, now).is_err());
        assert!(t.check(&key("app", [10, 0, 0, 2]), now).is_ok());
        assert!(t.check(&key("other", [10, 0, 0, 1]), now).is_ok());
    }

    #[test]
    fn success_and_quiet_time_forget() {
        let t = LoginThrottle::new(LoginBackoff::default());
        let k = key("app", [10, 0, 0, 1]);
        let now = Instant::now();
        t.failed(&k, now);
        t.failed(&k, now);
        t.succeeded(&k);
        assert_eq!(t.failed(&k, now), None, "counting starts again");
        t.failed(&k, now);
        let much_later = now + Duration::from_secs(901);
        assert_eq!(t.failed(&k, much_later), None, "old failures are forgotten");
    }

    #[test]
    fn a_flood_of_keys_is_pruned() {
        let t = LoginThrottle::new(LoginBackoff {
            forget_after: Duration::from_secs(1),
            ..LoginBackoff::default()
        });
        let now = Instant::now();
        for i in 0..PRUNE_ABOVE as u32 {
            t.failed(&key(&i.to_string(), [10, 0, 0, 1]), now);
        }
        t.failed(&key("new", [10, 0, 0, 1]), now + Duration::from_secs(2));
        assert_eq!(lock(&t.records).len(), 1);
    }
}
