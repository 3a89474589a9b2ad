//! The one in-process platform every unit test drives core with (quinn-proto style: the
//! network, the clock and randomness are inputs). Outbound calls are answered by a scripted
//! responder and recorded; the clock stands still until a test moves it; the key-value store
//! remembers only when a test asks it to.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::{Request, Response};

use std::rc::Rc;

use serde_json::{json, Value};

use crate::auth::{Authenticator, Principal};
use crate::config::{tests::dev_settings, Config};
use crate::cx::{Env, RequestParts};
use crate::identity::Identity;
use crate::ids::UserId;
use crate::ports::{Clock, Entropy, HttpClient, KeyValue, OutboundError, Platform};
use crate::tenancy::{Slug, Tenant, TenantId, TenantSettings, TenantStatus};

/// Answers an outbound request. `Err(OutboundError::Timeout(_))` means "the peer never
/// answers": the call hangs until core's timeout gives up on it.
pub type Responder = Box<dyn Fn(&Request<Bytes>) -> Result<Response<Bytes>, OutboundError>>;

/// Unix time at which every test clock starts (2023-11-14T22:13:20Z).
pub const T0: u64 = 1_700_000_000;

pub struct TestPlatform {
    respond: RefCell<Responder>,
    /// Every outbound request, in order.
    pub sent: RefCell<Vec<Request<Bytes>>>,
    /// Every log line, in order.
    pub logs: RefCell<Vec<String>>,
    now: Cell<SystemTime>,
    /// `None`: a store that never remembers (every lookup goes to the origin).
    kv: RefCell<Option<HashMap<String, Bytes>>>,
    /// Polls each answer stays pending, so concurrent requests overlap.
    pub delay_polls: Cell<usize>,
    /// Calls currently hanging on a silent peer: only then do timers fire.
    hanging: Cell<usize>,
    /// The byte every random buffer is filled with.
    pub entropy: Cell<u8>,
    /// `Some`: rate-limit counters shared by every instance (a Durable Object's), answering
    /// after [`Self::delay_polls`] polls; `None`: the platform has none.
    shared_limiter: RefCell<Option<HashMap<String, crate::window::Counter>>>,
    /// Calls to the shared counters so far.
    pub limiter_calls: Cell<u32>,
}

impl TestPlatform {
    pub fn new(respond: Responder) -> Self {
        Self {
            respond: RefCell::new(respond),
            sent: RefCell::new(Vec::new()),
            logs: RefCell::new(Vec::new()),
            now: Cell::new(UNIX_EPOCH + Duration::from_secs(T0)),
            kv: RefCell::new(None),
            delay_polls: Cell::new(0),
            hanging: Cell::new(0),
            entropy: Cell::new(7),
            shared_limiter: RefCell::new(None),
            limiter_calls: Cell::new(0),
        }
    }

    /// A platform with shared rate-limit counters ([`crate::ports::RateLimiter`]).
    pub fn with_shared_limiter(self) -> Self {
        *self.shared_limiter.borrow_mut() = Some(HashMap::new());
        self
    }

    /// What the shared counters hold for `key`.
    pub fn shared_counter(&self, key: &str) -> Option<crate::window::Counter> {
        self.shared_limiter.borrow().as_ref()?.get(key).copied()
    }

    /// A platform whose key-value store remembers what is put.
    pub fn with_kv(self) -> Self {
        *self.kv.borrow_mut() = Some(HashMap::new());
        self
    }

    pub fn advance(&self, secs: u64) {
        self.now.set(self.now.get() + Duration::from_secs(secs));
    }

    /// What the key-value store holds under `key` (with [`Self::with_kv`]).
    pub fn kv_get(&self, key: &str) -> Option<Bytes> {
        self.kv.borrow().as_ref().and_then(|m| m.get(key).cloned())
    }

    /// Puts a value straight into the store, as another instance (or corruption) would.
    pub fn kv_insert(&self, key: &str, value: Bytes) {
        if let Some(m) = self.kv.borrow_mut().as_mut() {
            m.insert(key.to_owned(), value);
        }
    }

    /// Requests sent so far (to `path`, when given).
    pub fn count(&self, path: Option<&str>) -> usize {
        self.sent
            .borrow()
            .iter()
            .filter(|r| path.is_none_or(|p| r.uri().path() == p))
            .count()
    }
}

/// Pending for `n` polls, waking itself each time.
struct YieldN(usize);

impl Future for YieldN {
    type Output = ();
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.0 == 0 {
            Poll::Ready(())
        } else {
            self.0 -= 1;
            cx.waker().wake_by_ref();
            Poll::Pending
        }
    }
}

/// Counts a call hanging on a silent peer for as long as it hangs (until core's timeout drops
/// it).
struct Hang<'c>(&'c Cell<usize>);

impl<'c> Hang<'c> {
    fn start(count: &'c Cell<usize>) -> Self {
        count.set(count.get() + 1);
        Self(count)
    }
}

impl Drop for Hang<'_> {
    fn drop(&mut self) {
        self.0.set(self.0.get().saturating_sub(1));
    }
}

impl HttpClient for TestPlatform {
    async fn send(&self, req: Request<Bytes>) -> Result<Response<Bytes>, OutboundError> {
        let out = (self.respond.borrow())(&req);
        self.sent.borrow_mut().push(req);
        YieldN(self.delay_polls.get()).await;
        match out {
            Err(OutboundError::Timeout(_)) => {
                let _hang = Hang::start(&self.hanging);
                std::future::pending().await
            }
            other => other,
        }
    }
}

impl Clock for TestPlatform {
    fn now(&self) -> SystemTime {
        self.now.get()
    }

    async fn sleep(&self, duration: Duration) {
        // A pause of a millisecond or less (a request waiting for another's answer) passes at
        // the next poll.
        if duration <= Duration::from_millis(1) {
            return YieldN(1).await;
        }
        // The clock jumps straight to a deadline only when a peer hangs; otherwise the answer
        // always wins the race against the timer.
        std::future::poll_fn(|_| {
            if self.hanging.get() > 0 {
                Poll::Ready(())
            } else {
                Poll::Pending
            }
        })
        .await
    }
}

impl KeyValue for TestPlatform {
    async fn get(&self, key: &str) -> Result<Option<Bytes>, OutboundError> {
        Ok(self.kv.borrow().as_ref().and_then(|m| m.get(key).cloned()))
    }
    async fn put(&self, key: &str, value: Bytes, _: Duration) -> Result<(), OutboundError> {
        if let Some(m) = self.kv.borrow_mut().as_mut() {
            m.insert(key.to_owned(), value);
        }
        Ok(())
    }
    async fn delete(&self, key: &str) -> Result<(), OutboundError> {
        if let Some(m) = self.kv.borrow_mut().as_mut() {
            m.remove(key);
        }
        Ok(())
    }
}

impl Entropy for TestPlatform {
    fn fill(&self, buf: &mut [u8]) -> Result<(), OutboundError> {
        buf.fill(self.entropy.get());
        Ok(())
    }
}

impl crate::ports::RateLimiter for TestPlatform {
    async fn admit(
        &self,
        _anchor: &str,
        hits: &[crate::window::Hit<'_>],
        now: SystemTime,
    ) -> Option<Result<Vec<crate::window::Decision>, OutboundError>> {
        self.shared_limiter.borrow().as_ref()?;
        self.limiter_calls.set(self.limiter_calls.get() + 1);
        YieldN(self.delay_polls.get()).await;
        let now_ms = crate::ratelimit::unix_ms(now);
        let mut store = self.shared_limiter.borrow_mut();
        let counters = store.as_mut()?;
        Some(Ok(crate::window::admit_chain(hits, |h| {
            counters
                .entry(h.key.to_owned())
                .or_default()
                .admit_hit(now_ms, h)
        })))
    }
}

impl crate::ports::Telemetry for TestPlatform {
    fn log(&self, line: &str) {
        self.logs.borrow_mut().push(line.to_owned());
    }
}

impl Platform for TestPlatform {
    type Verifier = crate::auth::RustCrypto;

    fn verifier(&self) -> &Self::Verifier {
        &crate::auth::RustCrypto
    }

    fn runtime(&self) -> &'static str {
        "test"
    }
}

// ---------------------------------------------------------------------------------------------
// Fixtures: an instance, the demo tenant and its users, and the SQL proxy's answers.

/// The tenant every fixture belongs to.
pub const TENANT: &str = "00000000-0000-4000-8000-00000000d301";

/// The demo tenant on `tier`, with default settings.
pub fn tenant(id: &str, tier: &str) -> Tenant {
    Tenant {
        id: TenantId::parse(id).unwrap(),
        slug: Slug::parse("demo").unwrap(),
        name: "Demo".into(),
        tier: tier.into(),
        status: TenantStatus::Active,
        settings: TenantSettings::default(),
        domains: Vec::new(),
    }
}

/// A user of [`TENANT`] whose token names `roles`.
pub fn member(user: &str, roles: &[&str]) -> Principal {
    Principal {
        subject: user.into(),
        email: Some(format!("{user}@example.com")),
        email_verified: true,
        name: None,
        tenant_id: Some(TENANT.into()),
        roles: roles.iter().map(|r| r.to_string()).collect(),
        tier: None,
        issuer: "https://idp.example.com/pool".into(),
        token_use: Some("id".into()),
        expires_at: 2_000_000_000,
        platform_admin_issuer: false,
        membership: crate::auth::MembershipMode::Claims,
        kept_user_key: Default::default(),
    }
}

/// The user id a fixture principal's subject stands for (a UUID derived from it).
pub fn user_of(subject: &str) -> UserId {
    use sha2::{Digest, Sha256};
    let h = crate::ids::hex(&Sha256::digest(subject.as_bytes()));
    let part = |r: std::ops::Range<usize>| h.get(r).unwrap_or_default().to_owned();
    let text = format!(
        "{}-{}-4{}-8{}-{}",
        part(0..8),
        part(8..12),
        part(13..16),
        part(17..20),
        part(20..32)
    );
    UserId(crate::ids::Uuid::parse(&text).unwrap())
}

/// One instance: the dev configuration (with `overrides`), its authenticator and a test
/// platform answering with `respond`.
pub struct Instance {
    pub config: Config,
    pub auth: Authenticator,
    pub platform: TestPlatform,
    pub answers: crate::answers::Answers,
}

impl Instance {
    pub fn new(overrides: &[(&'static str, &str)], respond: Responder) -> Self {
        let mut m = dev_settings();
        for (k, v) in overrides {
            m.insert(k, (*v).to_owned());
        }
        let config = Config::load(&|k: &str| m.get(k).cloned()).unwrap();
        let auth = Authenticator::new(config.auth.clone());
        Self {
            answers: crate::answers::Answers::for_storefront(Some(&config.tenancy)),
            config,
            auth,
            platform: TestPlatform::new(respond),
        }
    }

    pub fn env(&self) -> Env<'_, TestPlatform> {
        Env {
            config: &self.config,
            platform: &self.platform,
            auth: &self.auth,
            answers: &self.answers,
        }
    }

    /// What the router hands a tenant route's handler for `req`: [`TENANT`] on `tier`, the
    /// principal when signed in, the path's `{id}`.
    pub fn parts(
        &self,
        tier: &str,
        principal: Option<Principal>,
        id: Option<&str>,
        req: Request<Bytes>,
    ) -> RequestParts<'_, TestPlatform> {
        let (head, body) = req.into_parts();
        RequestParts {
            env: self.env(),
            head: Rc::new(head),
            body,
            tenant: Some(Rc::new(tenant(TENANT, tier))),
            identity: principal.as_ref().map(|p| {
                Rc::new(Identity {
                    user: user_of(&p.subject),
                    role: crate::authz::claimed_role(p, &tenant(TENANT, tier)),
                    platform_admin: crate::authz::is_platform_admin(p),
                })
            }),
            principal: principal.map(Rc::new),
            id: id.map(str::to_owned),
        }
    }
}

/// The proxy's answer to a one-statement tenant batch: the tenant's `set_config`, then `doc`
/// as the statement's only row, a `jsonb` value as typed output writes it.
pub fn sql_answer(doc: &Value) -> Response<Bytes> {
    let one = json!({ "command": "SELECT", "rowCount": 1,
        "fields": [{ "name": "doc", "dataTypeID": 3802 }], "rows": [[doc]] });
    let set = json!({ "command": "SELECT", "rowCount": 1,
        "fields": [{ "name": "set_config", "dataTypeID": 25 }], "rows": [[TENANT]] });
    Response::new(Bytes::from(json!({ "results": [set, one] }).to_string()))
}

/// The statement of a tenant batch after its `set_config` (`{query, params}`).
pub fn statement(req: &Request<Bytes>) -> Value {
    let v: Value = serde_json::from_slice(req.body()).unwrap_or(Value::Null);
    v["queries"][1].clone()
}
