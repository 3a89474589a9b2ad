//! Core's whole share of a request, through `Edge::handle` with a platform that answers at
//! once: configuration lookups, routing, tenant resolution (from the instance's memory after
//! the first request), rate limiting (counted in memory), the handler, the response, its
//! headers as the JSON record the Workers adapter hands to JS, and the JSON log line (written
//! to nothing). What an adapter and a runtime add on top is measured end
//! to end by `cargo xtask bench --peer`; this isolates the part that is ours alone, natively and
//! on wasm32-wasip2 under wasmtime.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // Benchmark set-up.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::hint::black_box;
use std::time::{Duration, SystemTime};

use base64ct::{Base64UrlUnpadded, Encoding};
use bytes::Bytes;
use criterion::{criterion_group, Criterion};
use edgefront_core::auth::{Authenticator, RustCrypto};
use edgefront_core::authz::{self, Role};
use edgefront_core::json_writer::JsonObject;
use edgefront_core::memo::Memo;
use edgefront_core::ports::{RateLimiter, Telemetry};
use edgefront_core::ratelimit::{self, admit_chain, Class, Counter, Decision, Hit};
use edgefront_core::{identity, me, tenancy};
use edgefront_core::{Clock, Config, Edge, Entropy, HttpClient, KeyValue, OutboundError, Platform};
use futures_executor::block_on;
use http::{HeaderMap, Method, Request, Response};
use jwt_compact::alg::{Rsa, RsaPrivateKey};
use jwt_compact::jwk::JsonWebKey;
use jwt_compact::{Algorithm as _, AlgorithmSignature as _};
use rsa::pkcs1::DecodeRsaPrivateKey as _;
use serde_json::{json, Value};

/// The bench's clock: it never moves.
const NOW: u64 = 1_700_000_000;

struct Bench {
    /// The SQL proxy's answer to the storefront catalog's batch: a page of 20 items and one
    /// more row (so the page has a next cursor), built once, as the proxy writes it.
    catalog: Bytes,
    counter: Cell<u64>,
    /// The shared counters, as the Workers rate-limit Durable Object keeps them: the request
    /// spends the leases they grant, as it does on Workers.
    limits: RefCell<HashMap<String, Counter>>,
}

/// The issuer of the benchmark's tokens, its key set's URL and the app client they are for.
const ISSUER: &str = "https://idp.example.com/pool";
const JWKS_URL: &str = "https://idp.example.com/pool/.well-known/jwks.json";
const CLIENT: &str = "app";

fn rsa_key() -> RsaPrivateKey {
    RsaPrivateKey::from_pkcs1_pem(include_str!("../src/auth/testdata/rsa1.pem")).unwrap()
}

/// A Cognito-shaped RS256 ID token from `rsa_key`, valid for an hour from the bench's clock.
fn id_token() -> String {
    let b64 = |v: &Value| Base64UrlUnpadded::encode_string(v.to_string().as_bytes());
    let now = NOW;
    let header = json!({ "alg": "RS256", "kid": "k1", "typ": "JWT" });
    let claims = json!({
        "iss": ISSUER, "sub": "5b8f0b3e-7c2d-4e1f-9a6b-3c4d5e6f7a8b", "aud": CLIENT,
        "token_use": "id", "iat": now, "exp": now + 3600, "auth_time": now,
        "cognito:username": "alice", "email": "alice@example.com", "email_verified": true,
        "cognito:groups": ["staff"], "event_id": "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0",
        "origin_jti": "1a2b3c4d-5e6f-4a7b-8c9d-0e1f2a3b4c5d",
        "jti": "9f8e7d6c-5b4a-4392-8170-6f5e4d3c2b1a",
    });
    let input = format!("{}.{}", b64(&header), b64(&claims));
    let sig = Rsa::rs256().sign(&rsa_key(), input.as_bytes());
    format!(
        "{input}.{}",
        Base64UrlUnpadded::encode_string(&sig.as_bytes())
    )
}

impl HttpClient for Bench {
    async fn send(&self, req: Request<Bytes>) -> Result<Response<Bytes>, OutboundError> {
        if req.uri() == JWKS_URL {
            let mut jwk =
                serde_json::to_value(JsonWebKey::from(&rsa_key().to_public_key())).unwrap();
            jwk["kid"] = json!("k1");
            jwk["alg"] = json!("RS256");
            return Ok(Response::new(Bytes::from(
                json!({ "keys": [jwk] }).to_string(),
            )));
        }
        let body = String::from_utf8_lossy(req.body());
        if body.contains("identity_resolve") {
            let row = json!({ "user_id": "7d1f3f4e-1b2c-4d5e-8f90-0a1b2c3d4e5f", "role": "admin" });
            return Ok(Response::new(Bytes::from(
                json!({ "command": "SELECT", "rowCount": 1,
                    "fields": [{ "name": "identity_resolve", "dataTypeID": 3802 }],
                    "rows": [[row]] })
                .to_string(),
            )));
        }
        if body.contains("'sku', i.sku") {
            return Ok(Response::new(self.catalog.clone()));
        }
        if body.contains("resolve_tenant_by_slug") {
            return Ok(Response::new(Bytes::from_static(
                br#"{"command":"SELECT","rowCount":1,"fields":[],"rows":[["{\"id\":\"00000000-0000-4000-8000-00000000d301\",\"slug\":\"demo\",\"name\":\"Demo\",\"tier\":\"basic\",\"status\":\"active\",\"settings\":{\"currency\":\"EUR\"}}"]]}"#,
            )));
        }
        Err(OutboundError::Network("not in this benchmark".into()))
    }
}

impl Clock for Bench {
    fn now(&self) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(NOW)
    }
    async fn sleep(&self, _: Duration) {
        std::future::pending::<()>().await
    }
}

impl KeyValue for Bench {
    async fn get(&self, _: &str) -> Result<Option<Bytes>, OutboundError> {
        Ok(None)
    }
    async fn put(&self, _: &str, _: Bytes, _: Duration) -> Result<(), OutboundError> {
        Ok(())
    }
    async fn delete(&self, _: &str) -> Result<(), OutboundError> {
        Ok(())
    }
}

impl Entropy for Bench {
    fn fill(&self, buf: &mut [u8]) -> Result<(), OutboundError> {
        let n = self.counter.get() + 1;
        self.counter.set(n);
        for (i, b) in buf.iter_mut().enumerate() {
            *b = (n >> ((i % 8) * 8)) as u8 ^ i as u8;
        }
        Ok(())
    }
}

impl RateLimiter for Bench {
    async fn admit(
        &self,
        _anchor: &str,
        hits: &[Hit<'_>],
        now: SystemTime,
    ) -> Option<Result<Vec<Decision>, OutboundError>> {
        let now_ms = edgefront_core::ratelimit::unix_ms(now);
        let mut counters = self.limits.borrow_mut();
        Some(Ok(admit_chain(hits, |h| {
            counters
                .entry(h.key.to_owned())
                .or_default()
                .admit_hit(now_ms, h)
        })))
    }
}

impl Telemetry for Bench {
    fn log(&self, line: &str) {
        black_box(line);
    }
}

impl Platform for Bench {
    type Verifier = RustCrypto;
    fn verifier(&self) -> &RustCrypto {
        &RustCrypto
    }
    fn runtime(&self) -> &'static str {
        "bench"
    }
}

/// The benchmark's settings, as the dev stack's (its rate limits high enough for any run).
fn settings() -> Vec<(&'static str, &'static str)> {
    vec![
        ("BASE_DOMAIN", "localhost"),
        ("ORIGIN_SQL_URL", "http://127.0.0.1:4444/sql"),
        (
            "DATABASE_URL",
            "postgresql://edgefront_app:pw@localhost:5432/edgefront",
        ),
        ("S3_ENDPOINT", "http://127.0.0.1:9000"),
        ("S3_REGION", "us-east-1"),
        ("S3_BUCKET", "edgefront-dev"),
        ("S3_ACCESS_KEY_ID", "AKIDEXAMPLE"),
        (
            "S3_SECRET_ACCESS_KEY",
            "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
        ),
        (
            "JWT_ISSUERS",
            r#"[{"issuer":"https://idp.example.com/pool","client_ids":["app"],"token_use":["id","access"]}]"#,
        ),
        // Every storefront answer computed, its batch answered and read: the catalog rows
        // measure that path (`kept:` measures an answer served from the instance's memory).
        ("STOREFRONT_EDGE_CACHE_SECONDS", "0"),
        // The shared counters' limits: every request of a run stays under them.
        (
            "RATE_LIMITS",
            r#"{"ip":{"public_read":100000000,"auth_read":100000000},"tiers":{"basic":{"public_read":100000000,"auth_read":100000000}}}"#,
        ),
    ]
}

/// The benchmark's settings with `extra` in front (an earlier setting wins).
fn source(extra: &[(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
    let all: Vec<_> = extra.iter().copied().chain(settings()).collect();
    move |k: &str| {
        all.iter()
            .find(|(name, _)| *name == k)
            .map(|(_, v)| v.to_string())
    }
}

fn bench_platform() -> Bench {
    Bench {
        catalog: catalog_answer(),
        counter: Cell::new(0),
        limits: RefCell::default(),
    }
}

fn edge() -> Edge<Bench> {
    edge_with(&[])
}

fn edge_with(extra: &[(&'static str, &'static str)]) -> Edge<Bench> {
    Edge::new(&source(extra), bench_platform())
}

/// `GET /v1/me`'s required work, through core's own parts and nothing else: the tenant from
/// the memory tier, the limiter's counters, the token from the verified cache, the caller's
/// role, a request id, the document and the answer's headers as the JSON record the Workers
/// adapter hands JS. No request path: no `http` request or response, no route table, no
/// trace, no log line. The floor a request path could reach with core's caches and limiter
/// as they are (`cargo xtask bench --instructions`, BENCHMARKS.md's eighteenth round).
struct Required {
    config: Config,
    auth: Authenticator,
    platform: Memo<Bench>,
    bearer: String,
}

impl Required {
    fn new(token: &str) -> Self {
        let config = Config::load(&source(&[("LOG_LEVEL", "off")])).unwrap();
        Self {
            auth: Authenticator::new(config.auth.clone()),
            config,
            platform: Memo::new(bench_platform()),
            bearer: format!("Bearer {token}"),
        }
    }

    /// The answer's headers (a JSON record) and body; `None` for any refusal.
    async fn serve(&self) -> Option<(String, Vec<u8>)> {
        let (config, platform) = (&self.config, &self.platform);
        let tenant = tenancy::resolve(platform, config, Some("demo.localhost"))
            .await
            .ok()?;
        let class = Class::of(&Method::GET, true);
        let none = HeaderMap::new();
        let verdict = ratelimit::check(platform, config, class, Some(&tenant), &none).await;
        if verdict.refusal().is_some() {
            return None;
        }
        let principal = self
            .auth
            .authenticate(platform, platform.verifier(), Some(self.bearer.as_bytes()))
            .await
            .ok()?;
        let identity = identity::resolve(platform, config, &principal, Some(&tenant))
            .await
            .ok()?;
        let role = authz::authorize(&principal, identity.role, &tenant, Role::Member).ok()?;
        let body = me::answer(&principal, &tenant, role, &identity.user).finish_bytes();
        let mut id = [0u8; 16];
        platform.fill(&mut id).ok()?;
        let mut request_id = String::with_capacity(32);
        edgefront_core::obs::hex_into(&mut request_id, &id);
        let mut headers = JsonObject::with_capacity(256);
        headers.str("content-type", "application/json");
        headers.str("cache-control", "private, no-store");
        headers.str("vary", "Origin");
        if let Some((policy, limit)) = verdict.header_values() {
            headers.str("ratelimit-policy", &policy);
            headers.str("ratelimit", &limit);
        }
        headers.str("x-request-id", &request_id);
        Some((headers.finish(), body))
    }
}

/// The proxy's answer to a storefront catalog batch (`?limit=20`): the prelude's result, then
/// 21 rows of `{"doc", "key", "id"}` as Postgres's text output (Neon's raw text mode), items
/// shaped as the demo tenant's are (no images).
fn catalog_answer() -> Bytes {
    let rows: Vec<Value> = (0..21)
        .map(|i| {
            let id = format!("{i:08x}-83d9-4127-a7db-af6e67bdd33c");
            let updated = format!("2026-12-05T03:51:{:02}.642446Z", i % 60);
            let row = json!({
                "doc": {
                    "id": id, "sku": format!("SKU-{i}"), "name": format!("Waterproof shell jacket {i}"),
                    "description": format!("Waterproof shell jacket {i} from Demo Outfitters"),
                    "price": "189.000", "currency": "USD", "category": "apparel",
                    "in_stock": true, "images": [], "updated_at": updated,
                },
                "key": updated,
                "id": id,
            });
            json!([row])
        })
        .collect();
    let text = |name: &str| json!({ "name": name, "dataTypeID": 25 });
    let answer = json!({ "results": [
        { "command": "SELECT", "rowCount": 1,
          "fields": [text("set_config"), text("set_config"), text("set_config")],
          "rows": [["00000000-0000-4000-8000-00000000d301", "", ""]] },
        { "command": "SELECT", "rowCount": 21,
          "fields": [{ "name": "row", "dataTypeID": 114 }], "rows": rows },
    ] });
    Bytes::from(answer.to_string())
}

/// A request's head as wrk sends it, as `request_head.js` writes it: the method, the URL and
/// each header core reads that the request has, as `name,value` lines. `/v1/me` carries a
/// bearer token, and a request from a client with an address (`address`) names it as
/// Cloudflare does.
fn head(edge: &Edge<Bench>, path: &str, token: &str, address: bool) -> String {
    let bearer = format!("Bearer {token}");
    let sent = [
        ("host", "demo.localhost:8787"),
        ("authorization", if path == "/v1/me" { &bearer } else { "" }),
        ("user-agent", "wrk"),
        ("accept", "*/*"),
        ("cf-connecting-ip", if address { "203.0.113.9" } else { "" }),
    ];
    let mut head = format!("GET\nhttp://demo.localhost:8787{path}");
    for name in edge.request_headers() {
        if let Some((_, value)) = sent
            .iter()
            .find(|(n, v)| *n == name.as_str() && !v.is_empty())
        {
            for part in ["\n", name.as_str(), ",", value] {
                head.push_str(part);
            }
        }
    }
    head
}

/// The request of `head` ([`head`]), read as the Workers adapter reads one: the runtime
/// writes the head into the instance's buffer in wasm memory (`Edge::read_head`; here a copy
/// stands for `TextEncoder.encodeInto`), and `request_headers::head_parts` makes `http` parts
/// of it.
fn request(edge: &Edge<Bench>, head: &str) -> Request<Bytes> {
    let bytes = edge.read_head(|buf| {
        let room = buf.get_mut(..head.len()).expect("a head under 4 KB");
        room.copy_from_slice(head.as_bytes());
        head.len() as i32
    });
    let parts = edgefront_core::request_headers::head_parts(bytes, edge.request_headers())
        .expect("the benchmark's head");
    Request::from_parts(parts, Bytes::new())
}

fn whole_request(c: &mut Criterion) {
    let edge = edge();
    let mut g = c.benchmark_group("request");
    for (name, path, status) in [
        ("healthz", "/healthz", 200),
        ("not_found", "/nope", 404),
        ("storefront_profile", "/v1/storefront", 200),
        ("storefront_catalog", "/v1/storefront/catalog?limit=20", 200),
        ("me_without_token", "/v1/me", 401),
        ("me", "/v1/me", 200),
    ] {
        let token = if name == "me" {
            id_token()
        } else {
            String::new()
        };
        // Warm: the tenant (and the token, the user, the membership) are in the instance's
        // memory from here on.
        let head = head(&edge, path, &token, true);
        let resp = block_on(edge.handle(request(&edge, &head)));
        assert_eq!(resp.status(), status, "{name}: {:?}", resp.body());
        g.bench_function(name, |b| {
            b.iter(|| {
                let resp = block_on(edge.handle(black_box(request(&edge, &head))));
                black_box(edgefront_core::reply::headers_json(resp.headers()).ok());
                resp
            })
        });
    }
    g.finish();
}

criterion_group!(benches, whole_request);

/// `EDGEFRONT_PROFILE=<path>:<n>` runs `n` requests for `path` and nothing else, for an
/// instruction profile (`valgrind --tool=callgrind`): counts, unlike times, do not depend on
/// what else the machine is doing.
fn main() {
    if let Some((path, n)) = std::env::var("EDGEFRONT_PROFILE").ok().and_then(|v| {
        v.rsplit_once(':')
            .map(|(p, n)| (p.to_owned(), n.parse::<u32>().unwrap_or(1)))
    }) {
        let token = id_token();
        // `required:` is the floor above; `quiet:` is the request as the Workers benchmark's
        // quiet rows make it (`LOG_LEVEL` off, no client address); `kept:` a storefront answer
        // served from the instance's memory; anything else, a request as wrk sends it through
        // a dev stack.
        if let Some(path) = path.strip_prefix("required:") {
            assert_eq!(path, "/v1/me", "the required work is /v1/me's");
            let required = Required::new(&token);
            for _ in 0..n {
                black_box(block_on(required.serve()).expect("/v1/me's required work"));
            }
            return;
        }
        let (edge, path, address) = if let Some(path) = path.strip_prefix("quiet:") {
            (edge_with(&[("LOG_LEVEL", "off")]), path.to_owned(), false)
        } else if let Some(path) = path.strip_prefix("kept:") {
            // The bench's clock never moves: every request after the first is served from
            // the answer the first one kept.
            let kept = edge_with(&[("STOREFRONT_EDGE_CACHE_SECONDS", "10")]);
            (kept, path.to_owned(), true)
        } else {
            (edge(), path, true)
        };
        let head = head(&edge, &path, &token, address);
        // The first request warms the caches; it must be answered as a run would be.
        let first = block_on(edge.handle(request(&edge, &head)));
        eprintln!("{path}: {}", first.status());
        for _ in 1..n {
            let resp = block_on(edge.handle(request(&edge, &head)));
            // What the Workers adapter does next: the answer's headers as one JSON record.
            black_box(edgefront_core::reply::headers_json(resp.headers()).ok());
            black_box(resp);
        }
        return;
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}
