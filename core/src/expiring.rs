//! Entries with an expiry in a key-value store that has none (Spin's key-value store): each value
//! carries its expiry (8 bytes, milliseconds since the epoch, big-endian) in front. An entry
//! read after its expiry is deleted, so the store does not keep every tenant record, negative
//! answer and JWKS it ever cached.
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;

/// What the cache needs of a store: Spin's `default` store, or a map in tests.
pub trait RawStore {
    fn get(&self, key: &str) -> Option<Vec<u8>>;
    fn set(&self, key: &str, value: &[u8]);
    fn delete(&self, key: &str);
}

fn millis(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
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

pub fn put(store: &impl RawStore, key: &str, value: &[u8], expires: SystemTime) {
    let mut raw = millis(expires).to_be_bytes().to_vec();
    raw.extend_from_slice(value);
    store.set(key, &raw);
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
    }

    const T0: SystemTime = SystemTime::UNIX_EPOCH;

    fn at(secs: u64) -> SystemTime {
        T0 + Duration::from_secs(1_800_000_000 + secs)
    }

    #[test]
    fn fresh_entry_is_read_and_kept() {
        let store = MapStore::default();
        put(&store, "tenant:demo", b"record", at(60));
        let got = get(&store, "tenant:demo", at(59));
        assert_eq!(got.as_deref(), Some(&b"record"[..]));
        assert!(store.get("tenant:demo").is_some());
    }

    #[test]
    fn expired_entry_is_deleted_on_read() {
        let store = MapStore::default();
        put(&store, "tenant:nope.example", b"", at(60));
        put(&store, "jwks:tenants", b"keys", at(600));
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
}
