//! Entries with an expiry in a key-value store that has none (Spin's key-value store): each value
//! carries its expiry (8 bytes, milliseconds since the epoch, big-endian) in front. An entry
//! read after its expiry is deleted; entries nobody reads again (a negative answer for a Host
//! sent once, a tenant gone quiet) are deleted by a bounded sweep that about one put in
//! [`SWEEP_EVERY`] runs: it examines at most [`SWEEP_MAX`] keys, continuing after the last key
//! the previous sweep examined (kept under [`SWEEP_CURSOR`]), so successive sweeps walk the
//! whole store and no put pays for more than a bounded amount of work beyond listing the keys.
//! The store then holds, besides live entries, at most the entries that expired since the
//! sweeps last passed them.
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;

/// What the cache needs of a store: Spin's `default` store, or a map in tests.
pub trait RawStore {
    fn get(&self, key: &str) -> Option<Vec<u8>>;
    fn set(&self, key: &str, value: &[u8]);
    fn delete(&self, key: &str);
    /// Every key in the store (Spin's `get_keys`); none when it cannot be listed.
    fn keys(&self) -> Vec<String>;
}

/// About one put in this many runs a sweep.
pub const SWEEP_EVERY: u64 = 32;
/// Keys one sweep examines at most.
pub const SWEEP_MAX: usize = 64;
/// Where the sweep remembers the last key it examined (raw, no expiry header; never swept).
pub const SWEEP_CURSOR: &str = "expiring:sweep-cursor";

fn millis(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// The entry's expiry, if it was written by `put`.
fn expiry(raw: &[u8]) -> Option<u64> {
    let head = raw.get(..8)?;
    Some(u64::from_be_bytes(head.try_into().ok()?))
}

/// The value if it is still fresh at `now`; None if expired or not written by `put`.
fn fresh(raw: &[u8], now: SystemTime) -> Option<&[u8]> {
    let (head, value) = raw.split_at_checked(8)?;
    let expires = u64::from_be_bytes(head.try_into().ok()?);
    (expires > millis(now)).then_some(value)
}

pub fn get(store: &impl RawStore, key: &str, now: SystemTime) -> Option<Bytes> {
    let raw = store.get(key)?;
    let value = fresh(&raw, now).map(Bytes::copy_from_slice);
    if value.is_none() {
        // Another instance may have written a fresh value since our read: deleting it costs
        // one cache miss, never a stale answer.
        store.delete(key);
    }
    value
}

/// Writes `value` under `key` until `now + ttl`, and on about one call in [`SWEEP_EVERY`]
/// sweeps expired entries (see the module documentation).
pub fn put(store: &impl RawStore, key: &str, value: &[u8], now: SystemTime, ttl: Duration) {
    let expires = crate::ports::later(now, ttl);
    let mut raw = millis(expires).to_be_bytes().to_vec();
    raw.extend_from_slice(value);
    store.set(key, &raw);
    if sweep_due(key, now) {
        sweep(store, now, SWEEP_MAX);
    }
}

/// Whether this put sweeps: a hash of the key and the time, so about one put in
/// [`SWEEP_EVERY`] does, on every instance, without a shared counter (Spin runs a fresh
/// instance per request: an in-memory count would never reach it).
fn sweep_due(key: &str, now: SystemTime) -> bool {
    let h = key
        .bytes()
        .chain(millis(now).to_be_bytes())
        .fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
        });
    h % SWEEP_EVERY == 0
}

/// Examines at most `max` keys, in key order after the one the previous sweep stopped at
/// (wrapping around), and deletes those expired at `now`. Entries without an expiry header
/// are left to `get`, which deletes them when read. Returns how many were deleted.
pub fn sweep(store: &impl RawStore, now: SystemTime, max: usize) -> usize {
    let after = store
        .get(SWEEP_CURSOR)
        .and_then(|c| String::from_utf8(c).ok())
        .unwrap_or_default();
    let mut keys: Vec<String> = store
        .keys()
        .into_iter()
        .filter(|k| k != SWEEP_CURSOR)
        .collect();
    keys.sort_unstable();
    let start = keys.partition_point(|k| k.as_str() <= after.as_str());
    let (before, rest) = keys.split_at(start);
    let batch: Vec<&String> = rest.iter().chain(before).take(max).collect();
    let now = millis(now);
    let mut deleted = 0;
    for key in &batch {
        if store
            .get(key)
            .and_then(|raw| expiry(&raw))
            .is_some_and(|e| e <= now)
        {
            store.delete(key);
            deleted += 1;
        }
    }
    match batch.last() {
        Some(last) => store.set(SWEEP_CURSOR, last.as_bytes()),
        None => store.delete(SWEEP_CURSOR),
    }
    deleted
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;
    use std::collections::HashMap;
    use std::time::{Duration, SystemTime};

    use super::*;

    #[derive(Default)]
    struct MapStore(RefCell<HashMap<String, Vec<u8>>>);

    impl RawStore for MapStore {
        fn get(&self, key: &str) -> Option<Vec<u8>> {
            self.0.borrow().get(key).cloned()
        }
        fn set(&self, key: &str, value: &[u8]) {
            self.0.borrow_mut().insert(key.to_owned(), value.to_vec());
        }
        fn delete(&self, key: &str) {
            self.0.borrow_mut().remove(key);
        }
        fn keys(&self) -> Vec<String> {
            self.0.borrow().keys().cloned().collect()
        }
    }

    /// `put` with an absolute expiry, as the tests think of it.
    fn put_until(store: &MapStore, key: &str, value: &[u8], expires: SystemTime) {
        let raw = [&millis(expires).to_be_bytes()[..], value].concat();
        store.set(key, &raw);
    }

    const T0: SystemTime = SystemTime::UNIX_EPOCH;

    fn at(secs: u64) -> SystemTime {
        T0 + Duration::from_secs(1_800_000_000 + secs)
    }

    #[test]
    fn fresh_entry_is_read_and_kept() {
        let store = MapStore::default();
        put(
            &store,
            "tenant:demo",
            b"record",
            at(0),
            Duration::from_secs(60),
        );
        let got = get(&store, "tenant:demo", at(59));
        assert_eq!(got.as_deref(), Some(&b"record"[..]));
        assert!(store.get("tenant:demo").is_some());
    }

    #[test]
    fn expired_entry_is_deleted_on_read() {
        let store = MapStore::default();
        put_until(&store, "tenant:nope.example", b"", at(60));
        put_until(&store, "jwks:tenants", b"keys", at(600));
        assert_eq!(get(&store, "tenant:nope.example", at(60)), None);
        assert!(
            store.get("tenant:nope.example").is_none(),
            "an expired entry stays in the store"
        );
        // Other entries are untouched.
        assert!(get(&store, "jwks:tenants", at(60)).is_some());
    }

    #[test]
    fn entry_without_expiry_header_is_deleted_on_read() {
        let store = MapStore::default();
        store.set("old-format", b"short");
        assert_eq!(get(&store, "old-format", at(0)), None);
        assert!(store.get("old-format").is_none());
    }

    #[test]
    fn a_sweep_deletes_expired_entries_nobody_reads_within_its_bound() {
        let store = MapStore::default();
        for i in 0..100 {
            put_until(&store, &format!("tenant:v2:miss:{i:03}"), b"", at(10));
        }
        put_until(&store, "jwks:tenants", b"keys", at(600));
        store.set("raw-foreign", b"x");
        // Each sweep examines at most 30 keys, continuing where the last one stopped.
        assert_eq!(sweep(&store, at(5), 30), 0, "nothing has expired yet");
        let mut swept = 0;
        for _ in 0..4 {
            let n = sweep(&store, at(20), 30);
            assert!(n <= 30);
            swept += n;
        }
        assert_eq!(swept, 100);
        let left: std::collections::BTreeSet<String> = store.keys().into_iter().collect();
        assert_eq!(
            left,
            ["jwks:tenants", "raw-foreign", SWEEP_CURSOR]
                .map(String::from)
                .into()
        );
        // An empty store is no error.
        let empty = MapStore::default();
        assert_eq!(sweep(&empty, at(20), 30), 0);
    }

    #[test]
    fn puts_alone_keep_a_store_of_one_off_keys_bounded() {
        // A flood of one-off keys (a negative answer per Host, each written once and never read
        // again), each living 60 s, one put per second: without reads, only the sweeps that
        // puts run keep the store from growing with the flood.
        let store = MapStore::default();
        let ttl = Duration::from_secs(60);
        let mut most = 0;
        for i in 0..5_000u64 {
            put(
                &store,
                &format!("tenant:v2:domain:h{i}.example"),
                b"{}",
                at(i),
                ttl,
            );
            most = most.max(store.0.borrow().len());
        }
        // 60 live entries at any time, plus the expired ones the sweeps have not reached yet:
        // sweeps examine SWEEP_MAX / SWEEP_EVERY = 2 keys per put, so a pass over a store of S
        // keys takes about S / 2 puts and the store settles near twice the live entries, give
        // or take the luck of which puts sweep (without the sweeps it would hold all 5,000).
        assert!(most <= 5 * 60, "the store grew to {most} entries");
        let sweeps = (0..5_000u64)
            .filter(|i| sweep_due(&format!("tenant:v2:domain:h{i}.example"), at(*i)))
            .count();
        assert!((50..400).contains(&sweeps), "{sweeps} sweeps in 5000 puts");
    }
}
