//! A per-instance memory tier in front of the platform's key-value port.
//!
//! Runtime key-value stores are remote (Workers KV reads cost a network hop and are eventually
//! consistent: a value just written may not be visible to the next request for a while), so
//! every instance keeps what it read or wrote in memory until the entry's TTL, bounded in size.
//! [`Memo`] wraps a [`Platform`] and is itself one, so callers need not know.
//!
//! Past [`MAX_ENTRIES`], the least recently used entry goes: keys an attacker chooses (every
//! unseen Host is a lookup whose answer is cached) push out other cold keys, never the tenants
//! and keys that requests keep reading.
//!
//! It also draws randomness from the platform a pool at a time ([`EntropyPool`]), not a
//! request's few bytes at a time.

use std::any::Any;
use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::rc::Rc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::{Request, Response};

use crate::lease::Leases;
use crate::ports::{
    ByteStream, Clock, Entropy, HttpClient, KeyValue, OutboundError, Platform, RateLimiter,
    Telemetry,
};
use crate::window::{admit_chain, Counter, Decision, Hit};

/// Entries held at most; past that, the least recently used one is evicted.
const MAX_ENTRIES: usize = 10_000;
/// How long a value read from the store (whose TTL we do not know) is trusted in memory.
const READ_TTL: Duration = Duration::from_secs(30);

/// One remembered value: its bytes, until when it holds, and when it was last used; and the
/// bytes as a reader decoded them ([`KeyValue::get_decoded`]), which goes with the bytes.
struct Slot {
    value: Bytes,
    expires: SystemTime,
    used: u64,
    decoded: Option<Rc<dyn Any>>,
}

/// A bounded map that evicts the least recently used entry: a hash map for the entries and an
/// ordered map from "last used" ticks to keys, so a hit, an insert and an eviction each cost
/// O(log n), and no operation walks the whole map.
///
/// A hit moves its entry to the back of the order only when other operations came between
/// (more than [`Lru::settle`] ticks since its last move): the entries requests keep reading
/// are found by one hash lookup and no reordering, and an entry can be at most `settle` ticks
/// further forward in the order than its last use, out of `capacity`.
struct Lru {
    slots: HashMap<Rc<str>, Slot>,
    /// Tick of last use → key; the first entry is the least recently used.
    order: BTreeMap<u64, Rc<str>>,
    tick: u64,
    capacity: usize,
    /// Ticks a used entry stays where it is in the order: 1 (exact) under 16 entries, else an
    /// eighth of the capacity.
    settle: u64,
}

impl Lru {
    fn new(capacity: usize) -> Self {
        let capacity = capacity.max(1);
        Self {
            slots: HashMap::new(),
            order: BTreeMap::new(),
            tick: 0,
            capacity,
            settle: u64::try_from(capacity / 8).unwrap_or(u64::MAX).max(1),
        }
    }

    fn len(&self) -> usize {
        self.slots.len()
    }

    fn next_tick(&mut self) -> u64 {
        self.tick = self.tick.wrapping_add(1);
        self.tick
    }

    /// The value under `key` if it holds at `now` (and marks it used); forgets it if expired.
    fn get(&mut self, key: &str, now: SystemTime) -> Option<Bytes> {
        self.with_slot(key, now, |slot| slot.value.clone())
    }

    /// `f` of the slot under `key` if it holds at `now` (and marks it used); forgets it if
    /// expired. One hash lookup.
    fn with_slot<R>(
        &mut self,
        key: &str,
        now: SystemTime,
        f: impl FnOnce(&mut Slot) -> R,
    ) -> Option<R> {
        let tick = self.next_tick();
        let slot = self.slots.get_mut(key)?;
        if slot.expires <= now {
            let used = slot.used;
            self.slots.remove(key);
            self.order.remove(&used);
            return None;
        }
        if tick.wrapping_sub(slot.used) > self.settle {
            if let Some(k) = self.order.remove(&slot.used) {
                self.order.insert(tick, k);
            }
            slot.used = tick;
        }
        Some(f(slot))
    }

    /// The value under `key` as `decode` reads it, if the key holds at `now`: `Some(None)` when
    /// `decode` refuses the bytes. Decoded once per value: a slot keeps what it decoded to,
    /// for readers of the same type.
    fn get_decoded<T: 'static>(
        &mut self,
        key: &str,
        now: SystemTime,
        decode: fn(&[u8]) -> Option<T>,
    ) -> Option<Option<Rc<T>>> {
        self.with_slot(key, now, |slot| {
            if let Some(kept) = slot.decoded.clone().and_then(|d| d.downcast::<T>().ok()) {
                return Some(kept);
            }
            let decoded = Rc::new(decode(&slot.value)?);
            slot.decoded = Some(decoded.clone());
            Some(decoded)
        })
    }

    fn insert(&mut self, key: &str, value: Bytes, expires: SystemTime) {
        let tick = self.next_tick();
        if let Some(slot) = self.slots.get_mut(key) {
            let old = slot.used;
            *slot = Slot {
                value,
                expires,
                used: tick,
                decoded: None,
            };
            if let Some(k) = self.order.remove(&old) {
                self.order.insert(tick, k);
            }
            return;
        }
        while self.slots.len() >= self.capacity {
            let Some((_, lru)) = self.order.pop_first() else {
                break;
            };
            self.slots.remove(&lru);
        }
        let k: Rc<str> = Rc::from(key);
        self.order.insert(tick, k.clone());
        self.slots.insert(
            k,
            Slot {
                value,
                expires,
                used: tick,
                decoded: None,
            },
        );
    }

    fn remove(&mut self, key: &str) {
        if let Some(slot) = self.slots.remove(key) {
            self.order.remove(&slot.used);
        }
    }
}

pub struct Memo<P> {
    inner: P,
    memory: RefCell<Lru>,
    /// Rate-limit counters when the platform shares none: key → (counter, kept until, ms).
    counters: RefCell<HashMap<String, (Counter, u64)>>,
    /// Hits the platform's shared counters granted this instance ([`crate::lease`]).
    leases: Leases,
    capacity: usize,
    /// Random bytes drawn ahead from the platform ([`EntropyPool`]).
    entropy: RefCell<EntropyPool>,
}

/// Bytes drawn from the platform's CSPRNG in one call and handed out in order, each once:
/// every request takes 24 for its ids, and on Workers each draw is a call out of wasm into
/// `crypto.getRandomValues`. A byte is zeroed as it is handed out.
struct EntropyPool {
    bytes: Box<[u8; POOL_BYTES]>,
    /// Bytes before this were handed out (or never drawn).
    next: usize,
}

/// The pool's size; a request for more than a quarter of it goes to the platform directly.
const POOL_BYTES: usize = 1024;

impl<P> Memo<P> {
    pub fn new(inner: P) -> Self {
        Self::with_capacity(inner, MAX_ENTRIES)
    }

    /// A memory tier holding at most `capacity` entries.
    pub fn with_capacity(inner: P, capacity: usize) -> Self {
        Self {
            inner,
            memory: RefCell::new(Lru::new(capacity)),
            counters: RefCell::new(HashMap::new()),
            leases: Leases::new(capacity),
            capacity,
            entropy: RefCell::new(EntropyPool {
                bytes: Box::new([0; POOL_BYTES]),
                next: POOL_BYTES,
            }),
        }
    }

    pub fn inner(&self) -> &P {
        &self.inner
    }

    /// Entries held in memory now.
    pub fn len(&self) -> usize {
        self.memory.borrow().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn remember(&self, key: &str, value: Bytes, expires: SystemTime) {
        self.memory.borrow_mut().insert(key, value, expires);
    }
}

impl<P: HttpClient + Clock> HttpClient for Memo<P> {
    async fn send(&self, req: Request<Bytes>) -> Result<Response<Bytes>, OutboundError> {
        self.inner.send(req).await
    }

    async fn send_within(
        &self,
        req: Request<Bytes>,
        limit: Duration,
    ) -> Result<Response<Bytes>, OutboundError> {
        self.inner.send_within(req, limit).await
    }

    async fn send_streaming(
        &self,
        req: Request<Bytes>,
    ) -> Result<Response<ByteStream>, OutboundError> {
        self.inner.send_streaming(req).await
    }
}

impl<P: Clock> Clock for Memo<P> {
    fn now(&self) -> SystemTime {
        self.inner.now()
    }
    async fn sleep(&self, duration: Duration) {
        self.inner.sleep(duration).await
    }
}

impl<P: Entropy> Entropy for Memo<P> {
    /// From the pool, drawn anew from the platform when it runs short. A failed draw is the
    /// caller's error, never old bytes.
    fn fill(&self, buf: &mut [u8]) -> Result<(), OutboundError> {
        if buf.len() > POOL_BYTES / 4 {
            return self.inner.fill(buf);
        }
        let mut pool = self.entropy.borrow_mut();
        if POOL_BYTES - pool.next < buf.len() {
            pool.next = POOL_BYTES;
            self.inner.fill(&mut pool.bytes[..])?;
            pool.next = 0;
        }
        let start = pool.next;
        let end = start + buf.len();
        let taken = pool
            .bytes
            .get_mut(start..end)
            .ok_or_else(|| OutboundError::Invalid("entropy pool".into()))?;
        buf.copy_from_slice(taken);
        taken.fill(0);
        pool.next = end;
        Ok(())
    }
}

impl<P: KeyValue + Clock> KeyValue for Memo<P> {
    async fn get(&self, key: &str) -> Result<Option<Bytes>, OutboundError> {
        let now = self.inner.now();
        let hit = self.memory.borrow_mut().get(key, now);
        if hit.is_some() {
            return Ok(hit);
        }
        let v = self.inner.get(key).await?;
        if let Some(v) = &v {
            self.remember(key, v.clone(), now + READ_TTL);
        }
        Ok(v)
    }

    async fn get_decoded<T: 'static>(
        &self,
        key: &str,
        decode: fn(&[u8]) -> Option<T>,
    ) -> Result<Option<Rc<T>>, OutboundError> {
        let now = self.inner.now();
        if let Some(hit) = self.memory.borrow_mut().get_decoded(key, now, decode) {
            return Ok(hit);
        }
        // Not in memory: `get` reads the store and remembers what it found.
        if crate::ports::cold(self.get(key)).await?.is_none() {
            return Ok(None);
        }
        Ok(self
            .memory
            .borrow_mut()
            .get_decoded(key, now, decode)
            .flatten())
    }

    async fn put(&self, key: &str, value: Bytes, ttl: Duration) -> Result<(), OutboundError> {
        let now = self.inner.now();
        self.remember(key, value.clone(), now + ttl);
        self.inner.put(key, value, ttl).await
    }

    async fn delete(&self, key: &str) -> Result<(), OutboundError> {
        self.memory.borrow_mut().remove(key);
        self.inner.delete(key).await
    }
}

/// The platform's shared counters, spent from this instance's leases where it holds some
/// ([`crate::lease`]); without shared counters, this instance's own (bounded like the memory
/// tier: past [`MAX_ENTRIES`] keys, those whose window has passed go, then all).
impl<P: Platform> RateLimiter for Memo<P> {
    async fn admit(
        &self,
        anchor: &str,
        hits: &[Hit<'_>],
        now: SystemTime,
    ) -> Option<Result<Vec<Decision>, OutboundError>> {
        let now_ms = crate::ratelimit::unix_ms(now);
        loop {
            // Another request of this instance is asking for this anchor: its answer may bring
            // the leases this one needs.
            if self.leases.in_flight(anchor) {
                self.inner.sleep(crate::lease::WAIT).await;
                continue;
            }
            let reserved = self.leases.reserve(hits, now_ms);
            if let Some(local) = reserved.all_local() {
                return Some(Ok(local));
            }
            let _flight = self.leases.fly(anchor);
            let asked = self.leases.to_ask(hits, &reserved);
            return match crate::ports::cold(self.inner.admit(anchor, &asked, now)).await {
                Some(Ok(answers)) => Some(Ok(self
                    .leases
                    .settle(hits, reserved, &asked, answers, now_ms))),
                Some(Err(e)) => {
                    self.leases.release(hits, &reserved, now_ms);
                    Some(Err(e))
                }
                // No shared store (so no leases either): count here.
                None => Some(Ok(self.count_here(hits, now_ms))),
            };
        }
    }
}

impl<P> Memo<P> {
    fn count_here(&self, hits: &[Hit<'_>], now_ms: u64) -> Vec<Decision> {
        let mut counters = self.counters.borrow_mut();
        admit_chain(hits, |hit| {
            if counters.len() >= self.capacity && !counters.contains_key(hit.key) {
                counters.retain(|_, (_, until)| *until > now_ms);
                if counters.len() >= self.capacity {
                    counters.clear();
                }
            }
            let (counter, until) = counters.entry(hit.key.to_owned()).or_default();
            // Both windows a counter spans: past that it starts afresh anyway.
            *until = now_ms.saturating_add(2_000 * u64::from(hit.rule.window_seconds));
            counter.admit(now_ms, hit.rule)
        })
    }
}

impl<P: Telemetry> Telemetry for Memo<P> {
    fn log(&self, line: &str) {
        self.inner.log(line);
    }
}

impl<P: Platform> Platform for Memo<P> {
    type Verifier = P::Verifier;

    fn verifier(&self) -> &Self::Verifier {
        self.inner.verifier()
    }

    fn runtime(&self) -> &'static str {
        self.inner.runtime()
    }
}

#[cfg(test)]
mod tests {
    use futures_executor::block_on;

    use super::*;
    use crate::testing::TestPlatform;
    use crate::window::Rule;

    fn at(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000 + secs)
    }

    /// `n` requests at once on one instance, each a chain of an address's budget and a
    /// tenant's: what each was told, in order of completion.
    fn concurrently(memo: &Memo<TestPlatform>, n: usize, ip: Rule, tenant: Rule) -> Vec<bool> {
        use futures_util::future::join_all;
        let now = memo.now();
        let runs = (0..n).map(|_| async move {
            let hits = [Hit::new("ip", ip), Hit::new("tenant", tenant)];
            match memo.admit("tenant", &hits, now).await {
                Some(Ok(d)) => d.len() == 2 && d.iter().all(|d| d.allowed),
                _ => false,
            }
        });
        block_on(join_all(runs))
    }

    fn per_minute(limit: u32) -> Rule {
        Rule {
            limit,
            window_seconds: 60,
        }
    }

    #[test]
    fn concurrent_requests_share_one_store_call_and_its_leases_exactly() {
        let platform = TestPlatform::new(Box::new(|_| Err(OutboundError::Network("none".into()))))
            .with_shared_limiter();
        platform.delay_polls.set(3);
        let memo = Memo::new(platform);
        // Slow start: 1, 2, 4, … up to 1/16 of the limit per call.
        let warm = concurrently(&memo, 8, per_minute(1_000_000), per_minute(160));
        assert!(warm.iter().all(|ok| *ok));
        let calls = memo.inner().limiter_calls.get();
        assert!(calls < 8, "{calls} store calls for 8 concurrent requests");
        // 200 more at once against a tenant limit of 160: exactly 152 more go through.
        let got = concurrently(&memo, 200, per_minute(1_000_000), per_minute(160));
        assert_eq!(got.iter().filter(|ok| **ok).count(), 152);
        let calls = memo.inner().limiter_calls.get();
        assert!(calls < 70, "{calls} store calls for 208 requests");
        assert_eq!(
            memo.inner().shared_counter("tenant").map(|c| c.current),
            Some(160),
            "the store counted exactly the limit, leases included"
        );
    }

    #[test]
    fn concurrent_requests_under_a_small_limit_are_counted_one_by_one() {
        let platform = TestPlatform::new(Box::new(|_| Err(OutboundError::Network("none".into()))))
            .with_shared_limiter();
        platform.delay_polls.set(2);
        let memo = Memo::new(platform);
        let got = concurrently(&memo, 20, per_minute(5), per_minute(1_000));
        assert_eq!(got.iter().filter(|ok| **ok).count(), 5);
        assert_eq!(memo.inner().limiter_calls.get(), 20);
        assert_eq!(
            memo.inner().shared_counter("ip").map(|c| c.current),
            Some(5)
        );
    }

    #[test]
    fn the_least_recently_used_entry_goes_first() {
        let mut lru = Lru::new(3);
        for k in ["a", "b", "c"] {
            lru.insert(k, Bytes::from(k), at(60));
        }
        // Reading `a` makes `b` the least recently used.
        assert!(lru.get("a", at(0)).is_some());
        lru.insert("d", Bytes::from_static(b"d"), at(60));
        assert_eq!(lru.len(), 3);
        assert!(lru.get("b", at(0)).is_none());
        for k in ["a", "c", "d"] {
            assert!(lru.get(k, at(0)).is_some(), "{k}");
        }
        // Rewriting a key neither grows the map nor evicts anyone.
        lru.insert("c", Bytes::from_static(b"c2"), at(60));
        assert_eq!(lru.len(), 3);
        assert_eq!(lru.get("c", at(0)).as_deref(), Some(&b"c2"[..]));
        // Expired entries are forgotten when read; removal keeps both maps in step.
        assert!(lru.get("a", at(60)).is_none());
        lru.remove("d");
        assert_eq!((lru.len(), lru.order.len()), (1, 1));
    }

    #[test]
    fn a_hit_reorders_only_after_other_operations_and_order_stays_within_settle() {
        // 64 entries: a hit moves its entry only when more than 8 ticks passed since it last did.
        let mut lru = Lru::new(64);
        assert_eq!(lru.settle, 8);
        lru.insert("hot", Bytes::from_static(b"h"), at(60));
        let mut moved = 0;
        for i in 0..1_000 {
            let before = lru.slots["hot"].used;
            assert!(lru.get("hot", at(0)).is_some());
            if lru.slots["hot"].used != before {
                moved += 1;
            }
            // A read and an insert per round: the order and the map stay in step, and the hot
            // entry is never more than `settle` ticks behind, so a flood never evicts it.
            lru.insert(&format!("cold{i}"), Bytes::from_static(b"c"), at(60));
            assert_eq!(lru.slots.len(), lru.order.len());
            assert!(lru.tick - lru.slots["hot"].used <= lru.settle + 1);
            assert!(lru.order.values().all(|k| lru.slots.contains_key(k)));
        }
        // It moved about once every four rounds (two ticks a round), not on every read.
        assert!((200..=300).contains(&moved), "moved {moved} times");
        assert_eq!(lru.len(), 64);
        // The entries left are the 63 newest cold keys and the hot one.
        assert!(lru.get("cold936", at(0)).is_none());
        assert!(lru.get("cold937", at(0)).is_some());
    }

    #[test]
    fn hot_entries_survive_a_flood_of_unique_keys() {
        // The store forgets everything (as a remote store right after a write): only the
        // memory tier can answer.
        let memo = Memo::with_capacity(TestPlatform::new(Box::new(|_| unreachable!())), 100);
        let ttl = Duration::from_secs(600);
        block_on(memo.put("tenant:v2:slug:hot", Bytes::from_static(b"hot"), ttl)).unwrap();
        for i in 0..20_000 {
            let junk = format!("tenant:v2:domain:h{i}.attacker.example");
            block_on(memo.put(&junk, Bytes::from_static(b"{}"), ttl)).unwrap();
            // Requests for the hot tenant keep arriving among the junk.
            if i % 50 == 0 {
                let hot = block_on(memo.get("tenant:v2:slug:hot")).unwrap();
                assert_eq!(hot.as_deref(), Some(&b"hot"[..]), "evicted after {i} keys");
            }
            assert!(memo.len() <= 100);
        }
        assert_eq!(memo.len(), 100);
        // Cold junk went, oldest first.
        assert!(block_on(memo.get("tenant:v2:domain:h0.attacker.example"))
            .unwrap()
            .is_none());
        assert!(
            block_on(memo.get("tenant:v2:domain:h19999.attacker.example"))
                .unwrap()
                .is_some()
        );
    }

    thread_local! {
        static DECODES: std::cell::Cell<u32> = const { std::cell::Cell::new(0) };
    }

    /// A decoder that counts its calls and refuses what is not a number.
    fn number(bytes: &[u8]) -> Option<u64> {
        DECODES.with(|d| d.set(d.get() + 1));
        std::str::from_utf8(bytes).ok()?.parse().ok()
    }

    fn length(bytes: &[u8]) -> Option<usize> {
        Some(bytes.len())
    }

    #[test]
    fn a_value_is_decoded_once_until_it_changes() {
        let memo = Memo::new(
            TestPlatform::new(Box::new(|_| Err(OutboundError::Network("none".into())))).with_kv(),
        );
        let decodes = || DECODES.with(|d| d.get());
        let ttl = Duration::from_secs(60);
        memo.inner().kv_insert("k", Bytes::from_static(b"7"));
        // Read from the store, decoded once; then the same value from memory, not decoded again.
        for _ in 0..3 {
            let v = block_on(memo.get_decoded("k", number)).unwrap();
            assert_eq!(v.as_deref(), Some(&7));
        }
        assert_eq!(decodes(), 1);
        // Another reader type decodes for itself.
        assert_eq!(
            block_on(memo.get_decoded("k", length)).unwrap().as_deref(),
            Some(&1)
        );
        // A new value is decoded anew; a value the decoder refuses reads as absent, from memory.
        block_on(memo.put("k", Bytes::from_static(b"8"), ttl)).unwrap();
        assert_eq!(
            block_on(memo.get_decoded("k", number)).unwrap().as_deref(),
            Some(&8)
        );
        block_on(memo.put("k", Bytes::from_static(b"x"), ttl)).unwrap();
        memo.inner().kv_insert("k", Bytes::from_static(b"9"));
        assert_eq!(block_on(memo.get_decoded("k", number)).unwrap(), None);
        // Deleted, or expired: read from the store again.
        block_on(memo.delete("k")).unwrap();
        assert_eq!(block_on(memo.get_decoded("k", number)).unwrap(), None);
        memo.inner().kv_insert("k", Bytes::from_static(b"10"));
        assert_eq!(
            block_on(memo.get_decoded("k", number)).unwrap().as_deref(),
            Some(&10)
        );
        memo.inner().kv_insert("k", Bytes::from_static(b"11"));
        memo.inner().advance(READ_TTL.as_secs() + 1);
        assert_eq!(
            block_on(memo.get_decoded("k", number)).unwrap().as_deref(),
            Some(&11)
        );
        // Decoded: 7, 8, x, 10, 11 (the deleted key was absent, nothing to decode).
        assert_eq!(decodes(), 5);
    }

    /// Counts draws; each draw's bytes are its number, then 1, 2, 3, … (never zero).
    struct Draws(std::cell::Cell<u8>, bool);

    impl Entropy for Draws {
        fn fill(&self, buf: &mut [u8]) -> Result<(), OutboundError> {
            if self.1 {
                return Err(OutboundError::Network("no randomness".into()));
            }
            self.0.set(self.0.get() + 1);
            for (i, b) in buf.iter_mut().enumerate() {
                *b = self.0.get().wrapping_mul(31).wrapping_add(i as u8) | 1;
            }
            Ok(())
        }
    }

    #[test]
    fn entropy_comes_from_one_draw_per_pool_each_byte_once() {
        let memo = Memo::new(Draws(std::cell::Cell::new(0), false));
        let mut seen = Vec::new();
        for _ in 0..POOL_BYTES / 24 {
            let mut id = [0u8; 24];
            memo.fill(&mut id).unwrap();
            assert!(id.iter().all(|b| *b != 0));
            seen.extend_from_slice(&id);
        }
        assert_eq!(
            memo.inner.0.get(),
            1,
            "one draw for every id the pool holds"
        );
        // Handed out in order, so no byte was given twice.
        let mut whole = [0u8; POOL_BYTES];
        Draws(std::cell::Cell::new(0), false)
            .fill(&mut whole)
            .unwrap();
        assert_eq!(seen, whole[..seen.len()]);
        // Handed-out bytes are gone from the pool.
        assert!(memo.entropy.borrow().bytes[..seen.len()]
            .iter()
            .all(|b| *b == 0));
        // The next id needs more than is left: a new draw.
        let mut id = [0u8; 24];
        memo.fill(&mut id).unwrap();
        assert_eq!(memo.inner.0.get(), 2);
        // A large request goes to the platform as it is.
        let mut big = [0u8; POOL_BYTES];
        memo.fill(&mut big).unwrap();
        assert_eq!(memo.inner.0.get(), 3);
    }

    #[test]
    fn a_failed_draw_fails_the_request_and_hands_out_nothing() {
        let memo = Memo::new(Draws(std::cell::Cell::new(0), true));
        let mut id = [7u8; 24];
        assert!(memo.fill(&mut id).is_err());
        assert!(memo.fill(&mut id).is_err(), "an empty pool is never served");
        assert_eq!(id, [7u8; 24]);
    }
}
