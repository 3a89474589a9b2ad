//! Whole-instance tests with an in-process platform: scripted outbound answers and a fake clock.

use std::cell::RefCell;
use std::collections::HashMap;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use futures_executor::block_on;
use http::{Method, Request, Response};
use serde_json::Value;

use crate::config::tests::dev_settings;
use crate::ports::*;
use crate::Edge;

type Responder = Box<dyn Fn(&Request<Bytes>) -> Result<Response<Bytes>, OutboundError>>;

struct FakePlatform {
    respond: Responder,
    sent: RefCell<Vec<Request<Bytes>>>,
    now: SystemTime,
}

impl HttpClient for FakePlatform {
    async fn send(&self, req: Request<Bytes>) -> Result<Response<Bytes>, OutboundError> {
        let out = (self.respond)(&req);
        self.sent.borrow_mut().push(req);
        match out {
            // A peer that never answers: only the timeout can end this call.
            Err(OutboundError::Timeout(_)) => std::future::pending().await,
            other => other,
        }
    }
}

impl Clock for FakePlatform {
    fn now(&self) -> SystemTime {
        self.now
    }
    async fn sleep(&self, _: Duration) {
        // The fake clock jumps straight to the deadline.
    }
}

impl KeyValue for FakePlatform {
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

impl Entropy for FakePlatform {
    fn fill(&self, buf: &mut [u8]) -> Result<(), OutboundError> {
        buf.fill(7);
        Ok(())
    }
}

impl Platform for FakePlatform {
    type Verifier = crate::auth::RustCrypto;

    fn verifier(&self) -> &Self::Verifier {
        &crate::auth::RustCrypto
    }

    fn runtime(&self) -> &'static str {
        "test"
    }
}

fn healthy(req: &Request<Bytes>) -> Result<Response<Bytes>, OutboundError> {
    if req.uri().path() == "/sql" {
        Ok(Response::new(Bytes::from_static(
            br#"{"command":"SELECT","rowCount":1,"fields":[{"name":"?column?","dataTypeID":23}],"rows":[["1"]]}"#,
        )))
    } else {
        Ok(Response::new(Bytes::new()))
    }
}

fn edge_with(settings: HashMap<&'static str, String>, respond: Responder) -> Edge<FakePlatform> {
    let platform = FakePlatform {
        respond,
        sent: RefCell::new(Vec::new()),
        now: SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000),
    };
    Edge::new(&move |k: &str| settings.get(k).cloned(), platform)
}

fn get(edge: &Edge<FakePlatform>, method: Method, uri: &str) -> (u16, Value, Response<Bytes>) {
    let req = Request::builder()
        .method(method)
        .uri(uri)
        .header("host", "demo.localhost:8787")
        .body(Bytes::new())
        .unwrap();
    let resp = block_on(edge.handle(req));
    let body = serde_json::from_slice(resp.body()).unwrap_or(Value::Null);
    (resp.status().as_u16(), body, resp)
}

#[test]
fn shallow_health_makes_no_outbound_call() {
    let edge = edge_with(dev_settings(), Box::new(healthy));
    let (status, body, _) = get(&edge, Method::GET, "/healthz");
    assert_eq!(status, 200);
    assert_eq!(body["status"], "ok");
    assert_eq!(body["runtime"], "test");
    assert_eq!(body["version"], crate::VERSION);
    assert!(edge.platform().sent.borrow().is_empty());
}

#[test]
fn deep_health_queries_the_proxy_and_signs_a_bucket_head() {
    let edge = edge_with(dev_settings(), Box::new(healthy));
    let (status, body, _) = get(&edge, Method::GET, "/healthz?deep=1");
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["checks"]["database"]["status"], "ok");
    assert_eq!(body["checks"]["storage"]["status"], "ok");
    let sent = edge.platform().sent.borrow();
    let sql = sent.iter().find(|r| r.uri().path() == "/sql").unwrap();
    let q: Value = serde_json::from_slice(sql.body()).unwrap();
    assert_eq!(q["query"], "SELECT 1");
    let head = sent.iter().find(|r| r.method() == Method::HEAD).unwrap();
    assert_eq!(head.uri(), "http://127.0.0.1:9000/edgefront-dev");
    assert!(head.headers()["authorization"]
        .to_str()
        .unwrap()
        .contains("/20231114/us-east-1/s3/aws4_request"));
}

#[test]
fn deep_health_names_each_failing_dependency() {
    let edge = edge_with(
        dev_settings(),
        Box::new(|req| {
            if req.uri().path() == "/sql" {
                Err(OutboundError::Timeout(Duration::ZERO))
            } else {
                Ok(Response::builder().status(403).body(Bytes::new()).unwrap())
            }
        }),
    );
    let (status, body, resp) = get(&edge, Method::GET, "/healthz?deep=1");
    assert_eq!(status, 503);
    assert_eq!(resp.headers()["content-type"], "application/problem+json");
    assert_eq!(body["code"], "dependency_unavailable");
    assert_eq!(body["failing"], serde_json::json!(["database", "storage"]));
    assert!(body["checks"]["database"]["error"]
        .as_str()
        .unwrap()
        .contains("no response within 5000 ms"));
    assert!(body["checks"]["storage"]["error"]
        .as_str()
        .unwrap()
        .contains("403"));
}

#[test]
fn unknown_paths_are_problem_json_404() {
    let edge = edge_with(dev_settings(), Box::new(healthy));
    let (status, body, resp) = get(&edge, Method::GET, "/nope?token=secret");
    assert_eq!(status, 404);
    assert_eq!(resp.headers()["content-type"], "application/problem+json");
    assert_eq!(body["instance"], "/nope");
}

#[test]
fn wrong_method_is_405_and_head_is_get_without_body() {
    let edge = edge_with(dev_settings(), Box::new(healthy));
    let (status, _, resp) = get(&edge, Method::POST, "/healthz");
    assert_eq!(status, 405);
    assert_eq!(resp.headers()["allow"], "GET, HEAD");
    let (status, _, resp) = get(&edge, Method::HEAD, "/healthz");
    assert_eq!(status, 200);
    assert!(resp.body().is_empty());
}

#[test]
fn bad_configuration_answers_500_naming_the_setting() {
    let mut settings = dev_settings();
    settings.insert("ORIGIN_SQL_URL", "nonsense".into());
    let edge = edge_with(settings, Box::new(healthy));
    let (status, body, _) = get(&edge, Method::GET, "/healthz");
    assert_eq!(status, 500);
    assert_eq!(body["code"], "misconfigured");
    assert_eq!(body["setting"], "ORIGIN_SQL_URL");
}

/// The proxy's answer to a tenant lookup by slug: the demo tenant.
fn demo_tenant(req: &Request<Bytes>) -> Result<Response<Bytes>, OutboundError> {
    let body = String::from_utf8_lossy(req.body());
    if body.contains("resolve_tenant_by_slug") {
        Ok(Response::new(Bytes::from_static(
            br#"{"command":"SELECT","rowCount":1,"fields":[],"rows":[["00000000-0000-4000-8000-00000000d301","demo","Demo","basic","active","{\"currency\":\"EUR\"}"]]}"#,
        )))
    } else {
        Ok(Response::builder().status(500).body(Bytes::new()).unwrap())
    }
}

#[test]
fn a_hot_tenant_is_served_from_the_instance_memory_even_when_the_kv_store_forgets() {
    // FakePlatform's key-value store never returns what was put (like an eventually
    // consistent store right after a write): the memory tier must carry the record.
    let edge = edge_with(dev_settings(), Box::new(demo_tenant));
    for _ in 0..3 {
        let (status, body, resp) = get(&edge, Method::GET, "/v1/storefront");
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["currency"], "EUR");
        assert!(resp.headers()["cache-control"]
            .to_str()
            .unwrap()
            .starts_with("public, max-age=60"));
    }
    assert_eq!(edge.platform().sent.borrow().len(), 1);
}

#[test]
fn storefront_answers_304_for_a_matching_if_none_match() {
    let edge = edge_with(dev_settings(), Box::new(demo_tenant));
    let (_, _, first) = get(&edge, Method::GET, "/v1/storefront");
    let etag = first.headers()["etag"].clone();
    let req = Request::builder()
        .uri("/v1/storefront")
        .header("host", "demo.localhost:8787")
        .header("if-none-match", etag.clone())
        .body(Bytes::new())
        .unwrap();
    let resp = block_on(edge.handle(req));
    assert_eq!(resp.status(), 304);
    assert!(resp.body().is_empty());
    assert_eq!(resp.headers()["etag"], etag);
}
