//! A per-instance memory tier in front of the platform's key-value port.
//!
//! Runtime key-value stores are remote (Workers KV reads cost a network hop and are eventually
//! consistent: a value just written may not be visible to the next request for a while), so
//! every instance keeps what it read or wrote in memory until the entry's TTL, bounded in size.
//! [`Memo`] wraps a [`Platform`] and is itself one, so callers need not know.

use std::cell::RefCell;
use std::collections::HashMap;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::{Request, Response};

use crate::ports::{ByteStream, Clock, Entropy, HttpClient, KeyValue, OutboundError, Platform};

/// Entries held at most; past that, expired entries go first, then everything.
const MAX_ENTRIES: usize = 10_000;
/// How long a value read from the store (whose TTL we do not know) is trusted in memory.
const READ_TTL: Duration = Duration::from_secs(30);

pub struct Memo<P> {
    inner: P,
    memory: RefCell<HashMap<String, (Bytes, SystemTime)>>,
}

impl<P> Memo<P> {
    pub fn new(inner: P) -> Self {
        Self {
            inner,
            memory: RefCell::new(HashMap::new()),
        }
    }

    pub fn inner(&self) -> &P {
        &self.inner
    }

    fn remember(&self, key: &str, value: Bytes, expires: SystemTime, now: SystemTime) {
        let mut m = self.memory.borrow_mut();
        if m.len() >= MAX_ENTRIES && !m.contains_key(key) {
            m.retain(|_, (_, e)| *e > now);
            if m.len() >= MAX_ENTRIES {
                m.clear();
            }
        }
        m.insert(key.to_owned(), (value, expires));
    }
}

impl<P: HttpClient> HttpClient for Memo<P> {
    async fn send(&self, req: Request<Bytes>) -> Result<Response<Bytes>, OutboundError> {
        self.inner.send(req).await
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
    fn fill(&self, buf: &mut [u8]) -> Result<(), OutboundError> {
        self.inner.fill(buf)
    }
}

impl<P: KeyValue + Clock> KeyValue for Memo<P> {
    async fn get(&self, key: &str) -> Result<Option<Bytes>, OutboundError> {
        let now = self.inner.now();
        let hit = {
            let mut m = self.memory.borrow_mut();
            match m.get(key) {
                Some((v, expires)) if *expires > now => Some(v.clone()),
                Some(_) => {
                    m.remove(key);
                    None
                }
                None => None,
            }
        };
        if hit.is_some() {
            return Ok(hit);
        }
        let v = self.inner.get(key).await?;
        if let Some(v) = &v {
            self.remember(key, v.clone(), now + READ_TTL, now);
        }
        Ok(v)
    }

    async fn put(&self, key: &str, value: Bytes, ttl: Duration) -> Result<(), OutboundError> {
        let now = self.inner.now();
        self.remember(key, value.clone(), now + ttl, now);
        self.inner.put(key, value, ttl).await
    }

    async fn delete(&self, key: &str) -> Result<(), OutboundError> {
        self.memory.borrow_mut().remove(key);
        self.inner.delete(key).await
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
