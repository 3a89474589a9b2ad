//! Core's whole share of a request, through `Edge::handle` with a platform that answers at
//! once: configuration lookups, routing, tenant resolution (from the instance's memory after
//! the first request), rate limiting (counted in memory), the handler, the response and the
//! JSON log line (written to nothing). What an adapter and a runtime add on top is measured end
//! to end by `cargo xtask bench --peer`; this isolates the part that is ours alone, natively and
//! on wasm32-wasip2 under wasmtime.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // Benchmark set-up.

use std::cell::Cell;
use std::hint::black_box;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use criterion::{criterion_group, Criterion};
use edgefront_core::auth::RustCrypto;
use edgefront_core::ports::{RateLimiter, Telemetry};
use edgefront_core::{Clock, Edge, Entropy, HttpClient, KeyValue, OutboundError, Platform};
use futures_executor::block_on;
use http::{Request, Response};

struct Bench {
    counter: Cell<u64>,
}

impl HttpClient for Bench {
    async fn send(&self, req: Request<Bytes>) -> Result<Response<Bytes>, OutboundError> {
        if String::from_utf8_lossy(req.body()).contains("resolve_tenant_by_slug") {
            return Ok(Response::new(Bytes::from_static(
                br#"{"command":"SELECT","rowCount":1,"fields":[],"rows":[["{\"id\":\"00000000-0000-4000-8000-00000000d301\",\"slug\":\"demo\",\"name\":\"Demo\",\"tier\":\"basic\",\"status\":\"active\",\"settings\":{\"currency\":\"EUR\"}}"]]}"#,
            )));
        }
        Err(OutboundError::Network("not in this benchmark".into()))
    }
}

impl Clock for Bench {
    fn now(&self) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000)
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

impl RateLimiter for Bench {}

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

fn edge() -> Edge<Bench> {
    let settings = [
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
    ];
    let source = move |k: &str| {
        settings
            .iter()
            .find(|(name, _)| *name == k)
            .map(|(_, v)| v.to_string())
    };
    Edge::new(
        &source,
        Bench {
            counter: Cell::new(0),
        },
    )
}

fn request(path: &str) -> Request<Bytes> {
    Request::get(path)
        .header("host", "demo.localhost:8787")
        .header("user-agent", "wrk")
        .header("accept", "*/*")
        .header("cf-connecting-ip", "203.0.113.9")
        .body(Bytes::new())
        .unwrap()
}

fn whole_request(c: &mut Criterion) {
    let edge = edge();
    let mut g = c.benchmark_group("request");
    for (name, path, status) in [
        ("healthz", "/healthz", 200),
        ("not_found", "/nope", 404),
        ("storefront_profile", "/v1/storefront", 200),
        ("me_without_token", "/v1/me", 401),
    ] {
        // Warm: the tenant is in the instance's memory from here on.
        let resp = block_on(edge.handle(request(path)));
        assert_eq!(resp.status(), status, "{name}: {:?}", resp.body());
        g.bench_function(name, |b| {
            b.iter(|| block_on(edge.handle(black_box(request(path)))))
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
            .map(|(p, n)| (p.to_owned(), n.to_owned()))
    }) {
        let edge = edge();
        for _ in 0..n.parse::<u32>().unwrap_or(1) {
            black_box(block_on(edge.handle(request(&path))));
        }
        return;
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}
