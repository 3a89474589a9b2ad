//! Whole-instance tests with an in-process platform: scripted outbound answers and a fake clock.

use std::collections::HashMap;
use std::time::Duration;

use bytes::Bytes;
use futures_executor::block_on;
use futures_util::StreamExt;
use http::{Method, Request, Response};
use serde_json::Value;

use crate::config::tests::dev_settings;
use crate::ports::*;
use crate::Edge;

use crate::testing::{Responder, TestPlatform as FakePlatform};

fn healthy(req: &Request<Bytes>) -> Result<Response<Bytes>, OutboundError> {
    if req.uri().path() == "/sql" {
        Ok(Response::new(Bytes::from_static(
            br#"{"command":"SELECT","rowCount":1,"fields":[{"name":"?column?","dataTypeID":23}],"rows":[[1]]}"#,
        )))
    } else {
        Ok(Response::new(Bytes::new()))
    }
}

fn edge_with(settings: HashMap<&'static str, String>, respond: Responder) -> Edge<FakePlatform> {
    let platform = FakePlatform::new(respond);
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
fn warm_up_serves_health_without_a_log_line_or_a_call() {
    let edge = edge_with(dev_settings(), Box::new(healthy));
    assert_eq!(edge.warm_up(), Some(http::StatusCode::OK));
    assert!(edge.platform().sent.borrow().is_empty());
    assert!(edge.platform().logs.borrow().is_empty());
    // A misconfigured instance warms up too (its answer is the 500 every request gets).
    let mut broken = dev_settings();
    broken.remove("DATABASE_URL");
    let edge = edge_with(broken, Box::new(healthy));
    assert_eq!(
        edge.warm_up(),
        Some(http::StatusCode::INTERNAL_SERVER_ERROR)
    );
    assert!(edge.platform().logs.borrow().is_empty());
}

const OPERATOR_TOKEN: &str = "operator-token-0123456789";

fn operator_settings() -> HashMap<&'static str, String> {
    let mut settings = dev_settings();
    settings.insert("OPERATOR_TOKEN", OPERATOR_TOKEN.into());
    settings
}

/// `GET /healthz?deep=1`, with `Authorization: Bearer <token>` when given.
fn deep(edge: &Edge<FakePlatform>, token: Option<&str>) -> (u16, Value, Response<Bytes>) {
    let mut req = Request::builder()
        .method(Method::GET)
        .uri("/healthz?deep=1")
        .header("host", "demo.localhost:8787");
    if let Some(token) = token {
        req = req.header("authorization", format!("Bearer {token}"));
    }
    let resp = block_on(edge.handle(req.body(Bytes::new()).unwrap()));
    let body = serde_json::from_slice(resp.body()).unwrap_or(Value::Null);
    (resp.status().as_u16(), body, resp)
}

#[test]
fn deep_health_queries_the_proxy_and_signs_a_bucket_head() {
    let edge = edge_with(operator_settings(), Box::new(healthy));
    let (status, body, _) = deep(&edge, Some(OPERATOR_TOKEN));
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
fn deep_health_needs_the_operator_token_and_calls_nothing_without_it() {
    for (settings, token) in [
        (operator_settings(), None),
        (operator_settings(), Some("operator-token-012345678X")),
        (operator_settings(), Some("operator")),
        // Without OPERATOR_TOKEN nobody passes, whatever they send.
        (dev_settings(), Some(OPERATOR_TOKEN)),
        (dev_settings(), None),
    ] {
        let edge = edge_with(settings, Box::new(healthy));
        let (status, body, resp) = deep(&edge, token);
        assert_eq!(status, 401, "{token:?}: {body}");
        assert_eq!(body["code"], "missing_token");
        assert!(resp.headers().contains_key("www-authenticate"));
        assert!(body.get("checks").is_none());
        assert!(edge.platform().sent.borrow().is_empty(), "{token:?}");
        // The shallow check stays public.
        assert_eq!(get(&edge, Method::GET, "/healthz").0, 200);
    }
}

#[test]
fn deep_health_names_each_failing_dependency() {
    let edge = edge_with(
        operator_settings(),
        Box::new(|req| {
            if req.uri().path() == "/sql" {
                Err(OutboundError::Timeout(Duration::ZERO))
            } else {
                Ok(Response::builder().status(403).body(Bytes::new()).unwrap())
            }
        }),
    );
    let (status, body, resp) = deep(&edge, Some(OPERATOR_TOKEN));
    assert_eq!(status, 503);
    assert_eq!(resp.headers()["content-type"], "application/problem+json");
    assert_eq!(body["code"], "dependency_unavailable");
    assert_eq!(body["failing"], serde_json::json!(["database", "storage"]));
    assert_eq!(
        body["checks"]["database"],
        serde_json::json!({"status": "error", "latency_ms": 0, "error": "timeout"})
    );
    assert_eq!(body["checks"]["storage"]["error"], "refused");
}

#[test]
fn deep_health_errors_carry_no_backend_text() {
    const PG: &str = "password authentication failed for user \"edgefront_app\"";
    const S3: &str = "<Error><Code>InternalError</Code><HostId>s3-node-7.internal</HostId></Error>";
    let edge = edge_with(
        operator_settings(),
        Box::new(|req| {
            if req.uri().path() == "/sql" {
                let body = serde_json::json!({"message": PG, "code": "28P01"}).to_string();
                Ok(Response::builder()
                    .status(400)
                    .body(Bytes::from(body))
                    .unwrap())
            } else {
                Ok(Response::builder()
                    .status(500)
                    .body(Bytes::from(S3))
                    .unwrap())
            }
        }),
    );
    let (status, body, _) = deep(&edge, Some(OPERATOR_TOKEN));
    assert_eq!(status, 503);
    assert_eq!(body["checks"]["database"]["status"], "error");
    assert_eq!(body["checks"]["database"]["error"], "refused");
    assert_eq!(body["checks"]["storage"]["error"], "unexpected answer");
    let text = body.to_string();
    for leak in [
        "password",
        "edgefront_app",
        "28P01",
        "InternalError",
        "s3-node",
        "500",
    ] {
        assert!(!text.contains(leak), "{leak} leaked: {text}");
    }

    // A proxy that cannot be reached, and one that answers garbage.
    let edge = edge_with(
        operator_settings(),
        Box::new(|req| {
            if req.uri().path() == "/sql" {
                Err(OutboundError::Network(
                    "connect ECONNREFUSED 10.1.2.3:4444".into(),
                ))
            } else {
                Ok(Response::new(Bytes::new()))
            }
        }),
    );
    let (_, body, _) = deep(&edge, Some(OPERATOR_TOKEN));
    assert_eq!(body["checks"]["database"]["error"], "unreachable");
    assert!(!body.to_string().contains("10.1.2.3"));
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

fn on_host(edge: &Edge<FakePlatform>, method: Method, host: &str, uri: &str) -> (u16, Value) {
    let req = Request::builder()
        .method(method)
        .uri(uri)
        .header("host", host)
        .body(Bytes::new())
        .unwrap();
    let resp = block_on(edge.handle(req));
    let body = serde_json::from_slice(resp.body()).unwrap_or(Value::Null);
    (resp.status().as_u16(), body)
}

#[test]
fn the_platform_api_exists_only_on_the_platform_host_and_tenant_routes_only_elsewhere() {
    let edge = edge_with(dev_settings(), Box::new(healthy));
    // On a tenant host the platform API is no route at all: nothing is looked up or verified.
    for (method, path) in [
        (Method::GET, "/v1/platform/tenants"),
        (Method::POST, "/v1/signup"),
    ] {
        let (status, body) = on_host(&edge, method, "demo.localhost:8787", path);
        assert_eq!(
            (status, body["code"].as_str()),
            (404, Some("not_found")),
            "{path}"
        );
    }
    // On the platform host, tenant routes are no route either.
    let (status, body) = on_host(&edge, Method::GET, "admin.localhost:8787", "/v1/catalog");
    assert_eq!((status, body["code"].as_str()), (404, Some("not_found")));
    assert!(edge.platform().sent.borrow().is_empty());
    // The platform API wants credentials before anything else.
    let (status, body) = on_host(
        &edge,
        Method::GET,
        "admin.localhost",
        "/v1/platform/tenants",
    );
    assert_eq!(
        (status, body["code"].as_str()),
        (401, Some("missing_token"))
    );
    // Operational endpoints answer on every host.
    assert_eq!(
        on_host(&edge, Method::GET, "admin.localhost", "/healthz").0,
        200
    );
}

/// The proxy's answer to a tenant lookup by slug: the demo tenant.
fn demo_tenant(req: &Request<Bytes>) -> Result<Response<Bytes>, OutboundError> {
    let body = String::from_utf8_lossy(req.body());
    if body.contains("resolve_tenant_by_slug") {
        Ok(Response::new(Bytes::from_static(
            br#"{"command":"SELECT","rowCount":1,"fields":[],"rows":[["{\"id\":\"00000000-0000-4000-8000-00000000d301\",\"slug\":\"demo\",\"name\":\"Demo\",\"tier\":\"basic\",\"status\":\"active\",\"settings\":{\"currency\":\"EUR\"}}"]]}"#,
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

/// The demo tenant, and one active item for any catalog query.
fn demo_item(req: &Request<Bytes>) -> Result<Response<Bytes>, OutboundError> {
    if String::from_utf8_lossy(req.body()).contains("FROM public.catalog_items") {
        return Ok(crate::testing::sql_answer(&serde_json::json!({
            "id": ITEM, "sku": "MUG-1", "name": "Mug", "description": null, "price": "12.500",
            "currency": "EUR", "category": null, "in_stock": true, "images": [],
            "updated_at": "2026-12-06T10:00:00.000000Z",
        })));
    }
    demo_tenant(req)
}

const ITEM: &str = "c31b1765-83d9-4127-a7db-af6e67bdd33c";

fn item_batches(edge: &Edge<FakePlatform>) -> usize {
    edge.platform()
        .sent
        .borrow()
        .iter()
        .filter(|r| String::from_utf8_lossy(r.body()).contains("FROM public.catalog_items"))
        .count()
}

fn storefront_get(
    edge: &Edge<FakePlatform>,
    method: Method,
    etag: Option<&str>,
) -> Response<Bytes> {
    let uri = format!("/v1/storefront/catalog/{ITEM}");
    on_demo(edge, method, &uri, etag.map(|tag| ("if-none-match", tag)))
}

/// `method uri` on the demo tenant's host, with one more header when `header` is given.
fn on_demo(
    edge: &Edge<FakePlatform>,
    method: Method,
    uri: &str,
    header: Option<(&str, &str)>,
) -> Response<Bytes> {
    let mut req = Request::builder()
        .method(method)
        .uri(uri)
        .header("host", "demo.localhost:8787");
    if let Some((name, value)) = header {
        req = req.header(name, value);
    }
    block_on(edge.handle(req.body(Bytes::new()).unwrap()))
}

#[test]
fn a_storefront_answer_is_served_again_from_memory_with_its_age_until_its_ttl() {
    let edge = edge_with(dev_settings(), Box::new(demo_item));
    let first = storefront_get(&edge, Method::GET, None);
    assert_eq!(first.status(), 200);
    assert!(
        first.headers().get("age").is_none(),
        "a computed answer has no Age"
    );
    assert_eq!(item_batches(&edge), 1);
    let etag = first.headers()["etag"].to_str().unwrap().to_owned();

    edge.platform().advance(3);
    let again = storefront_get(&edge, Method::GET, None);
    assert_eq!(again.status(), 200);
    assert_eq!(again.body(), first.body());
    assert_eq!(again.headers()["etag"], etag.as_str());
    assert_eq!(again.headers()["age"], "3");
    assert_eq!(again.headers()["content-type"], "application/json");
    assert_eq!(
        again.headers()["cache-control"],
        first.headers()["cache-control"]
    );
    assert_eq!(item_batches(&edge), 1, "served without its batch");
    // The log line counts the kept answer as a hit (and the first request's as a miss).
    let answer_counts: Vec<(u64, u64)> = edge
        .platform()
        .logs
        .borrow()
        .iter()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|l| l["msg"] == "request")
        .map(|l| {
            let c = &l["cache"]["answer"];
            (c["hits"].as_u64().unwrap(), c["misses"].as_u64().unwrap())
        })
        .collect();
    assert_eq!(answer_counts, [(0, 1), (1, 0)]);
    // HEAD and a revalidation are served from the kept answer too.
    let head = storefront_get(&edge, Method::HEAD, None);
    assert_eq!((head.status().as_u16(), head.body().len()), (200, 0));
    let not_modified = storefront_get(&edge, Method::GET, Some(&etag));
    assert_eq!(not_modified.status(), 304);
    assert!(not_modified.body().is_empty());
    assert_eq!(not_modified.headers()["age"], "3");
    assert_eq!(item_batches(&edge), 1);

    // The default TTL is 10 s: at 10 s the answer is computed again, and kept anew.
    edge.platform().advance(7);
    let fresh = storefront_get(&edge, Method::GET, None);
    assert!(fresh.headers().get("age").is_none());
    assert_eq!(item_batches(&edge), 2);
    assert_eq!(
        storefront_get(&edge, Method::GET, None).headers()["age"],
        "0"
    );
    assert_eq!(item_batches(&edge), 2);
}

#[test]
fn a_kept_storefront_answer_outlives_a_database_outage_within_max_age() {
    let down = std::rc::Rc::new(std::cell::Cell::new(false));
    let failing = down.clone();
    let edge = edge_with(
        dev_settings(),
        Box::new(move |req: &Request<Bytes>| {
            let catalog = String::from_utf8_lossy(req.body()).contains("FROM public.catalog_items");
            if catalog && failing.get() {
                return Err(OutboundError::Network("connection refused".into()));
            }
            demo_item(req)
        }),
    );
    let first = storefront_get(&edge, Method::GET, None);
    assert_eq!(first.status(), 200);
    down.set(true);
    // Past the TTL the answer is computed again; its batch fails, so the old answer is served
    // (it is 12 s old, under max-age's 60), and the failure is logged.
    edge.platform().advance(12);
    let during = storefront_get(&edge, Method::GET, None);
    assert_eq!(during.status(), 200);
    assert_eq!(during.body(), first.body());
    assert_eq!(during.headers()["age"], "12");
    assert_eq!(item_batches(&edge), 2);
    let logged = edge.platform().logs.borrow().iter().any(|l| {
        serde_json::from_str::<Value>(l)
            .is_ok_and(|l| l["msg"] == "request" && l["status"] == 200 && l["code"].is_string())
    });
    assert!(logged, "the failure behind the old answer is logged");
    // It is then served for another TTL without a try (the origin gets one failing batch per
    // answer and TTL, not one per request), then tried again.
    assert_eq!(
        storefront_get(&edge, Method::GET, None).headers()["age"],
        "12"
    );
    assert_eq!(item_batches(&edge), 2);
    edge.platform().advance(10);
    assert_eq!(
        storefront_get(&edge, Method::GET, None).headers()["age"],
        "22"
    );
    assert_eq!(item_batches(&edge), 3);
    // At max-age the old answer is gone: the failure is the answer.
    edge.platform().advance(38);
    let late = storefront_get(&edge, Method::GET, None);
    assert!(late.status().is_server_error(), "{}", late.status());
    // Back up: computed and kept again.
    down.set(false);
    assert_eq!(storefront_get(&edge, Method::GET, None).status(), 200);
    assert_eq!(
        storefront_get(&edge, Method::GET, None).headers()["age"],
        "0"
    );
}

#[test]
fn storefront_answers_are_computed_every_time_when_the_edge_cache_is_off() {
    for (ttl, max_age) in [("0", "60"), ("30", "0"), ("10", "")] {
        let mut settings = dev_settings();
        settings.insert("STOREFRONT_EDGE_CACHE_SECONDS", ttl.into());
        if !max_age.is_empty() {
            settings.insert("STOREFRONT_CACHE_SECONDS", max_age.into());
        }
        let edge = edge_with(settings, Box::new(demo_item));
        let first = storefront_get(&edge, Method::GET, None);
        if max_age == "0" {
            // Not a valid max-age: the instance refuses to run, naming the setting.
            assert_eq!(first.status(), 500);
            continue;
        }
        let again = storefront_get(&edge, Method::GET, None);
        if ttl == "0" {
            assert_eq!(
                (first.status().as_u16(), again.status().as_u16()),
                (200, 200)
            );
            assert!(again.headers().get("age").is_none());
            assert_eq!(item_batches(&edge), 2, "TTL {ttl}");
        } else {
            assert_eq!(again.headers()["age"], "0");
            assert_eq!(item_batches(&edge), 1);
        }
    }
    // Nor is an edge TTL longer than max-age used: it is cut to max-age.
    let mut settings = dev_settings();
    settings.insert("STOREFRONT_EDGE_CACHE_SECONDS", "600".into());
    settings.insert("STOREFRONT_CACHE_SECONDS", "5".into());
    let edge = edge_with(settings, Box::new(demo_item));
    storefront_get(&edge, Method::GET, None);
    edge.platform().advance(5);
    assert!(storefront_get(&edge, Method::GET, None)
        .headers()
        .get("age")
        .is_none());
    assert_eq!(item_batches(&edge), 2);
    // A bad value is refused by name.
    let mut settings = dev_settings();
    settings.insert("STOREFRONT_EDGE_CACHE_SECONDS", "ten".into());
    let edge = edge_with(settings, Box::new(demo_item));
    let (status, body, _) = get(&edge, Method::GET, "/healthz");
    assert_eq!(status, 500);
    assert!(
        body.to_string().contains("STOREFRONT_EDGE_CACHE_SECONDS"),
        "{body}"
    );
}

// ---------------------------------------------------------------------------------------------
// Uploads, driven through the handlers with a scripted SQL proxy and S3.

mod uploads {
    use super::*;
    use crate::body::Body;
    use crate::cx::{Handler, RequestParts};
    use crate::error::{ApiError, Code};
    use crate::testing::{member, sql_answer, user_of, Instance, TENANT};
    use serde_json::json;

    const FILE: &str = "11111111-1111-4111-8111-111111111111";

    /// What the router hands a handler for `req` by `user` with `roles`, on `{id}` = FILE.
    fn parts<'a>(
        i: &'a Instance,
        user: &str,
        roles: &[&str],
        req: Request<Bytes>,
    ) -> RequestParts<'a, FakePlatform> {
        i.parts("premium", Some(member(user, roles)), Some(FILE), req)
    }

    fn full(r: Result<Response<Body<'_>>, ApiError>) -> Result<Response<Bytes>, ApiError> {
        r.map(|resp| {
            let (head, body) = resp.into_parts();
            Response::from_parts(head, block_on(body.collect()))
        })
    }

    fn request(method: Method, uri: &str) -> Request<Bytes> {
        Request::builder()
            .method(method)
            .uri(uri)
            .body(Bytes::new())
            .unwrap()
    }

    /// `POST /v1/uploads/{FILE}/complete` by `user`.
    fn complete(i: &Instance, user: &str) -> Result<Response<Bytes>, ApiError> {
        let req = request(Method::POST, &format!("/v1/uploads/{FILE}/complete"));
        full(block_on(Handler::call(
            crate::uploads::complete::<FakePlatform>,
            parts(i, user, &["member"], req),
        )))
    }

    /// `DELETE /v1/files/{FILE}` by `user` with `role`.
    fn delete(i: &Instance, user: &str, role: &str) -> Result<Response<Bytes>, ApiError> {
        let req = request(Method::DELETE, &format!("/v1/files/{FILE}"));
        full(block_on(Handler::call(
            crate::uploads::delete::<FakePlatform>,
            parts(i, user, &[role], req),
        )))
    }

    fn pending_file() -> Value {
        json!({
            "id": FILE, "key": format!("{TENANT}/{FILE}/photo.png"), "filename": "photo.png",
            "content_type": "image/png", "declared_size": 10, "max_size": 100,
            "status": "pending", "size": null, "etag": null, "created_by": user_of("alice"),
            "created_at": "2023-11-14T22:00:00.000000Z", "updated_at": "2023-11-14T22:00:00.000000Z",
            "completed_at": null, "expires_at": "2023-11-14T22:28:20.000000Z",
        })
    }

    fn run<T>(respond: Responder, f: impl FnOnce(&Instance) -> T) -> (T, Vec<Request<Bytes>>) {
        let i = Instance::new(&[], respond);
        let out = f(&i);
        (out, i.platform.sent.take())
    }

    /// `POST /v1/uploads` with this JSON body, by alice (a member).
    fn create(i: &Instance, body: &'static str) -> Result<Response<Bytes>, ApiError> {
        let req = Request::builder()
            .method(Method::POST)
            .uri("/v1/uploads")
            .header("content-type", "application/json")
            .body(Bytes::from(body))
            .unwrap();
        full(block_on(Handler::call(
            crate::uploads::create::<FakePlatform>,
            parts(i, "alice", &["member"], req),
        )))
    }

    fn sql_query(req: &Request<Bytes>) -> String {
        let v: Value = serde_json::from_slice(req.body()).unwrap();
        v["queries"][1]["query"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    #[test]
    fn create_records_a_pending_file_and_presigns_put_and_post() {
        let (resp, sent) = run(
            Box::new(|req| {
                let v: Value = serde_json::from_slice(req.body()).unwrap();
                let p = &v["queries"][1]["params"];
                let mut file = pending_file();
                file["id"] = p[0].clone();
                file["key"] = p[1].clone();
                Ok(sql_answer(&json!({ "outcome": "created", "file": file })))
            }),
            |env| {
                create(
                    env,
                    r#"{"filename":"../x/My Photo.PNG","content_type":"image/png","size":10}"#,
                )
            },
        );
        let resp = resp.unwrap();
        assert_eq!(resp.status(), 201);
        assert_eq!(resp.headers()["cache-control"], "private, no-store");
        let body: Value = serde_json::from_slice(resp.body()).unwrap();
        let key = body["file"]["key"].as_str().unwrap();
        let id = body["file"]["id"].as_str().unwrap();
        // The id comes from the entropy port (all 7s here), as a v4 UUID.
        assert_eq!(id, "07070707-0707-4707-8707-070707070707");
        assert_eq!(key, format!("{TENANT}/{id}/My_Photo.png"));
        assert_eq!(
            resp.headers()["location"],
            format!("/v1/files/{id}").as_str()
        );
        // The client writes the staging key only, with the declared length signed.
        let staging = format!("{TENANT}/staging/{id}/My_Photo.png");
        let put = body["upload"]["put"]["url"].as_str().unwrap();
        assert!(put.starts_with(&format!("http://127.0.0.1:9000/edgefront-dev/{staging}?")));
        assert!(put.contains("X-Amz-Date=20231114T221320Z&X-Amz-Expires=900&"));
        assert!(put.contains("X-Amz-SignedHeaders=content-length%3Bcontent-type%3Bhost&"));
        assert_eq!(body["upload"]["put"]["headers"]["content-length"], "10");
        assert_eq!(body["upload"]["max_size"], 10);
        assert_eq!(body["upload"]["expires_at"], "2023-11-14T22:28:20Z");
        let fields = &body["upload"]["post"]["fields"];
        assert_eq!(fields["key"], staging.as_str());
        assert_eq!(fields["Content-Type"], "image/png");
        assert_eq!(
            body["upload"]["post"]["url"],
            "http://127.0.0.1:9000/edgefront-dev"
        );
        // One SQL round trip, tenant-scoped, and no S3 call at all.
        assert_eq!(sent.len(), 1);
        assert!(sql_query(&sent[0]).contains("public.upload_create"));
        let v: Value = serde_json::from_slice(sent[0].body()).unwrap();
        assert_eq!(v["queries"][0]["query"], crate::sql::TENANT_PRELUDE);
        assert_eq!(v["queries"][0]["params"][0], TENANT);
        // The audit log's actor (our user id) and request id (none: the test platform traces
        // nothing), in the same prelude statement.
        assert_eq!(v["queries"][0]["params"][1], user_of("alice").as_str());
        assert_eq!(v["queries"][0]["params"][2], "");
        assert_eq!(v["queries"][1]["params"][2], "My Photo.PNG");
        assert_eq!(v["queries"][1]["params"][5], user_of("alice").as_str());
        // The row expires with its URLs.
        assert_eq!(v["queries"][1]["params"][6], "900");
    }

    #[test]
    fn create_deletes_the_staging_objects_of_swept_uploads_whatever_the_outcome() {
        let (resp, sent) = run(
            Box::new(|req| {
                if req.uri().path() == "/sql" {
                    return Ok(sql_answer(&json!({
                        "outcome": "storage_limit", "limit": 100, "used": 95,
                        "swept": [format!("{TENANT}/{FILE}/old.png")],
                    })));
                }
                Ok(Response::builder().status(204).body(Bytes::new()).unwrap())
            }),
            |env| {
                create(
                    env,
                    r#"{"filename":"a.png","content_type":"image/png","size":10}"#,
                )
            },
        );
        let err = resp.unwrap_err();
        assert_eq!(
            (err.status().as_u16(), err.code()),
            (403, Code::TierLimitReached)
        );
        assert_eq!(sent.len(), 2);
        assert_eq!(sent[1].method(), Method::DELETE);
        assert_eq!(
            sent[1].uri().to_string(),
            format!("http://127.0.0.1:9000/edgefront-dev/{TENANT}/staging/{FILE}/old.png")
        );
    }

    #[test]
    fn complete_after_expiry_is_410_without_touching_s3() {
        for (status, expires_at) in [
            ("expired", "2023-11-14T22:28:20.000000Z"),
            ("pending", "2023-11-14T22:13:20.000000Z"),
        ] {
            let (resp, sent) = run(
                Box::new(move |_| {
                    let mut f = pending_file();
                    f["status"] = json!(status);
                    f["expires_at"] = json!(expires_at);
                    Ok(sql_answer(&f))
                }),
                |env| complete(env, "bob"),
            );
            let err = resp.unwrap_err();
            assert_eq!(
                (err.status().as_u16(), err.code()),
                (410, Code::UploadExpired)
            );
            assert_eq!(sent.len(), 1, "{status}: only the row was read");
        }
    }

    #[test]
    fn create_reports_tier_refusals() {
        for (outcome, code) in [
            (
                json!({"outcome": "type_not_allowed", "allowed": ["image/png"], "max_bytes": 5}),
                "content_type_not_allowed",
            ),
            (
                json!({"outcome": "too_large", "max_bytes": 5}),
                "file_too_large",
            ),
        ] {
            let answer = outcome.clone();
            let (resp, _) = run(Box::new(move |_| Ok(sql_answer(&answer))), |env| {
                create(
                    env,
                    r#"{"filename":"a.png","content_type":"image/png","size":10}"#,
                )
            });
            let err = resp.unwrap_err();
            assert_eq!(err.status(), 422);
            assert_eq!(err.code(), code);
        }
    }

    #[test]
    fn complete_deletes_an_object_of_the_wrong_type_and_answers_422() {
        let (resp, sent) = run(
            Box::new(|req| {
                if req.uri().path() == "/sql" {
                    return Ok(sql_answer(&pending_file()));
                }
                if req.method() == Method::HEAD {
                    return Ok(Response::builder()
                        .header("content-length", "10")
                        .header("content-type", "text/html")
                        .header("etag", "\"abc\"")
                        .body(Bytes::new())
                        .unwrap());
                }
                Ok(Response::builder().status(204).body(Bytes::new()).unwrap())
            }),
            |env| complete(env, "bob"),
        );
        let err = resp.unwrap_err();
        assert_eq!(err.code(), "content_type_mismatch");
        let object =
            format!("http://127.0.0.1:9000/edgefront-dev/{TENANT}/staging/{FILE}/photo.png");
        let methods: Vec<(Method, String)> = sent
            .iter()
            .map(|r| (r.method().clone(), r.uri().to_string()))
            .collect();
        assert_eq!(
            methods,
            vec![
                (Method::POST, "http://127.0.0.1:4444/sql".to_owned()),
                (Method::HEAD, object.clone()),
                (Method::DELETE, object),
            ]
        );
        for r in &sent[1..] {
            assert!(r.headers()["authorization"]
                .to_str()
                .unwrap()
                .starts_with("AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20231114/us-east-1/s3/"));
        }
    }

    #[test]
    fn complete_without_an_object_is_409_and_a_silent_s3_is_504() {
        let (resp, _) = run(
            Box::new(|req| {
                if req.uri().path() == "/sql" {
                    return Ok(sql_answer(&pending_file()));
                }
                Ok(Response::builder().status(404).body(Bytes::new()).unwrap())
            }),
            |env| complete(env, "bob"),
        );
        let err = resp.unwrap_err();
        assert_eq!(
            (err.status().as_u16(), err.code()),
            (409, Code::UploadMissing)
        );

        let (resp, _) = run(
            Box::new(|req| {
                if req.uri().path() == "/sql" {
                    return Ok(sql_answer(&pending_file()));
                }
                Err(OutboundError::Timeout(Duration::ZERO))
            }),
            |env| complete(env, "bob"),
        );
        assert_eq!(resp.unwrap_err().code(), Code::UpstreamTimeout);
    }

    #[test]
    fn complete_marks_a_good_object_ready_with_its_size_and_etag() {
        let (resp, sent) = run(
            Box::new(|req| {
                if req.uri().path() == "/sql" {
                    if sql_query(req).contains("upload_complete") {
                        let mut f = pending_file();
                        f["status"] = json!("ready");
                        f["size"] = json!(7);
                        f["etag"] = json!("\"abc\"");
                        return Ok(sql_answer(&json!({"outcome": "completed", "file": f})));
                    }
                    return Ok(sql_answer(&pending_file()));
                }
                Ok(Response::builder()
                    .header("content-length", "7")
                    .header("content-type", "image/png")
                    .header("etag", "\"abc\"")
                    .body(Bytes::new())
                    .unwrap())
            }),
            |env| complete(env, "bob"),
        );
        let resp = resp.unwrap();
        let body: Value = serde_json::from_slice(resp.body()).unwrap();
        assert_eq!(body["status"], "ready");
        let url = body["download"]["url"].as_str().unwrap();
        assert!(
            url.contains("response-content-disposition=attachment%3B%20filename%3D%22photo.png%22")
        );
        assert!(url.contains("X-Amz-Expires=300&"));
        // HEAD of the staging object, a CopyObject of exactly that ETag to the file's key, the
        // row, then the staging object deleted.
        let bucket = "http://127.0.0.1:9000/edgefront-dev";
        let staging = format!("{TENANT}/staging/{FILE}/photo.png");
        let methods: Vec<(Method, String)> = sent
            .iter()
            .map(|r| (r.method().clone(), r.uri().to_string()))
            .collect();
        assert_eq!(
            methods,
            vec![
                (Method::POST, "http://127.0.0.1:4444/sql".to_owned()),
                (Method::HEAD, format!("{bucket}/{staging}")),
                (Method::PUT, format!("{bucket}/{TENANT}/{FILE}/photo.png")),
                (Method::POST, "http://127.0.0.1:4444/sql".to_owned()),
                (Method::DELETE, format!("{bucket}/{staging}")),
            ]
        );
        assert_eq!(
            sent[2].headers()["x-amz-copy-source"],
            format!("/edgefront-dev/{staging}").as_str()
        );
        assert_eq!(sent[2].headers()["x-amz-copy-source-if-match"], "\"abc\"");
        assert!(sent[2].headers()["authorization"]
            .to_str()
            .unwrap()
            .contains("x-amz-copy-source;x-amz-copy-source-if-match;"));
        let v: Value = serde_json::from_slice(sent[3].body()).unwrap();
        assert_eq!(v["queries"][1]["params"], json!([FILE, "7", "\"abc\""]));
    }

    #[test]
    fn only_the_uploader_or_an_admin_may_delete() {
        let respond = || -> Responder {
            Box::new(|req| {
                if req.uri().path() == "/sql" {
                    if sql_query(req).contains("file_delete") {
                        return Ok(sql_answer(&json!({"outcome": "deleted"})));
                    }
                    return Ok(sql_answer(&pending_file()));
                }
                Ok(Response::builder().status(204).body(Bytes::new()).unwrap())
            })
        };
        let (resp, sent) = run(respond(), |env| delete(env, "mallory", "member"));
        assert_eq!(resp.unwrap_err().code(), "insufficient_role");
        assert_eq!(sent.len(), 1, "no S3 call for a refused delete");
        for (user, role) in [("alice", "member"), ("carol", "admin")] {
            let (resp, sent) = run(respond(), |env| delete(env, user, role));
            assert_eq!(resp.unwrap().status(), 204);
            assert_eq!(sent[1].method(), Method::DELETE);
            assert!(sql_query(&sent[2]).contains("file_delete"));
        }
    }
}

#[test]
fn an_oversized_body_is_413_before_the_tenant_or_the_caller_is_looked_up() {
    let edge = edge_with(dev_settings(), Box::new(healthy));
    // Through `serve_body`, as the adapters read: a declared length over POST /v1/catalog's
    // 16 KiB is refused without taking a chunk, and a chunked one once it crosses the limit.
    let head = |len: Option<&str>| {
        let mut b = Request::builder()
            .method(Method::POST)
            .uri("/v1/catalog")
            .header("host", "demo.localhost:8787")
            .header("content-type", "application/json");
        if let Some(len) = len {
            b = b.header("content-length", len);
        }
        b.body(()).unwrap().into_parts().0
    };
    let mut untouched = futures_util::stream::iter(vec![Ok::<_, String>(vec![0u8; 1])])
        .map(|_| -> Result<Vec<u8>, String> { panic!("the body was read") });
    let declared = head(Some("314572800"));
    let rp = edge.begin(&declared);
    let resp = block_on(edge.serve_body(&rp, declared, &mut untouched));
    assert_eq!(resp.status(), 413);
    let mut endless = futures_util::stream::repeat_with(|| Ok::<_, String>(vec![b' '; 4096]));
    let chunked = head(None);
    let rp = edge.begin(&chunked);
    let resp = block_on(edge.serve_body(&rp, chunked, &mut endless));
    assert_eq!(resp.status(), 413);
    let body = block_on(resp.into_body().collect());
    let problem: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(problem["code"], "payload_too_large");
    assert_eq!(problem["limit_bytes"], 16 * 1024);
    // A route without a body takes 1 KiB, however the body arrives.
    let req = Request::builder()
        .method(Method::GET)
        .uri("/v1/catalog")
        .header("host", "demo.localhost:8787")
        .body(Bytes::from(vec![b' '; 2048]))
        .unwrap();
    assert_eq!(block_on(edge.handle(req)).status(), 413);
    // Nothing went out: no tenant lookup, no key fetch.
    assert!(edge.platform().sent.borrow().is_empty());
}

// ---------------------------------------------------------------------------------------------
// Rate limits, counted in the instance's memory (the test platform shares no store).

mod rate_limits {
    use super::*;
    use crate::ratelimit::RemoteHit;

    fn limited() -> HashMap<&'static str, String> {
        let mut settings = dev_settings();
        settings.insert(
            "RATE_LIMITS",
            r#"{"window_seconds": 10, "ip": {"public_read": 3}, "tiers": {"basic": {"public_read": 5}}}"#
                .into(),
        );
        settings
    }

    fn from(edge: &Edge<FakePlatform>, ip: Option<&str>) -> Response<Bytes> {
        let ip = ip.map(|ip| ("cf-connecting-ip", ip));
        on_demo(edge, Method::GET, "/v1/storefront", ip)
    }

    #[test]
    fn an_ip_is_refused_past_its_limit_with_the_headers_and_recovers() {
        let edge = edge_with(limited(), Box::new(demo_tenant));
        for remaining in [2, 1, 0] {
            let resp = from(&edge, Some("203.0.113.7"));
            assert_eq!(resp.status(), 200);
            assert_eq!(
                resp.headers()["ratelimit-policy"],
                "\"ip\";q=3;w=10, \"tenant\";q=5;w=10"
            );
            let state = resp.headers()["ratelimit"].to_str().unwrap().to_owned();
            assert!(
                state.starts_with(&format!("\"ip\";r={remaining};")),
                "{state}"
            );
        }
        let refused = from(&edge, Some("203.0.113.7"));
        assert_eq!(refused.status(), 429);
        let retry: u64 = refused.headers()["retry-after"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!((1..=20).contains(&retry), "{retry}");
        assert!(refused.headers()["ratelimit"]
            .to_str()
            .unwrap()
            .starts_with("\"ip\";r=0;"));
        let problem: Value = serde_json::from_slice(refused.body()).unwrap();
        assert_eq!(problem["code"], "rate_limited");
        assert_eq!(problem["retry_after"], retry);
        // Another address still gets through, until the tenant's own 5 are spent.
        assert_eq!(from(&edge, Some("198.51.100.1")).status(), 200);
        assert_eq!(from(&edge, Some("198.51.100.2")).status(), 200);
        let tenant_wide = from(&edge, Some("198.51.100.3"));
        assert_eq!(tenant_wide.status(), 429);
        assert!(tenant_wide.headers()["ratelimit"]
            .to_str()
            .unwrap()
            .starts_with("\"tenant\";r=0;"));
        // After the wait it says, the first address is served again.
        edge.platform().advance(retry);
        assert_eq!(from(&edge, Some("203.0.113.7")).status(), 200);
    }

    #[test]
    fn without_a_client_address_only_the_tenant_counts_and_health_is_never_limited() {
        let edge = edge_with(limited(), Box::new(demo_tenant));
        for _ in 0..5 {
            let resp = from(&edge, None);
            assert_eq!(resp.status(), 200);
            assert_eq!(resp.headers()["ratelimit-policy"], "\"tenant\";q=5;w=10");
        }
        assert_eq!(from(&edge, None).status(), 429);
        for _ in 0..10 {
            let (status, _, resp) = get(&edge, Method::GET, "/healthz");
            assert_eq!(status, 200);
            assert!(resp.headers().get("ratelimit").is_none());
        }
    }

    #[test]
    fn a_failing_limiter_lets_requests_through() {
        let mut settings = limited();
        settings.insert("RATE_LIMIT_URL", "http://127.0.0.1:9/ratelimit".into());
        let edge = edge_with(
            settings,
            Box::new(|req: &Request<Bytes>| {
                if req.uri().path() == "/ratelimit" {
                    Err(OutboundError::Network("connection refused".into()))
                } else {
                    demo_tenant(req)
                }
            }),
        );
        for _ in 0..8 {
            let resp = from(&edge, Some("203.0.113.7"));
            assert_eq!(resp.status(), 200);
            assert!(resp.headers().get("ratelimit").is_none());
        }
        let sent = edge.platform().sent.borrow();
        let asked: Vec<_> = sent
            .iter()
            .filter(|r| r.uri().path() == "/ratelimit")
            .collect();
        assert_eq!(asked.len(), 8, "one call per request");
        for r in asked {
            let hits: Vec<RemoteHit> = serde_json::from_slice(r.body()).unwrap();
            let keys: Vec<&str> = hits.iter().map(|h| h.key.as_str()).collect();
            assert!(
                matches!(keys.as_slice(), [ip, tenant] if ip.contains(":ip:") && tenant.contains(":t:")),
                "both budgets, the address's first: {keys:?}"
            );
        }
    }
}

#[test]
fn a_request_keeps_its_record_only_when_a_line_or_a_span_will_be_written() {
    for (level, otlp, kept, lines) in [
        ("off", false, false, 0),
        ("off", true, true, 0),
        ("error", false, true, 0),
        ("info", false, true, 1),
    ] {
        let mut settings = operator_settings();
        settings.insert("LOG_LEVEL", level.into());
        if otlp {
            settings.insert(
                "OTEL_EXPORTER_OTLP_ENDPOINT",
                "http://127.0.0.1:4318".into(),
            );
        }
        let edge = edge_with(settings, Box::new(healthy));
        // A request that is routed and calls out: both are noted when notes are kept.
        let req = Request::get("/healthz?deep=1")
            .header("host", "demo.localhost:8787")
            .header("authorization", format!("Bearer {OPERATOR_TOKEN}"))
            .body(Bytes::new())
            .unwrap();
        let (head, body) = req.into_parts();
        let rp = edge.begin(&head);
        let status = block_on(edge.serve(&rp, Request::from_parts(head, body))).status();
        assert_eq!(status, 200, "{level}");
        let record = rp.request_trace().record();
        assert_eq!(record.route == Some("/healthz"), kept, "{level} {otlp}");
        assert_eq!(
            record.calls.len(),
            if kept { 2 } else { 0 },
            "{level} {otlp}"
        );
        let spans = edge.log_request(&rp, 200, None);
        assert_eq!(spans.is_some(), otlp, "{level} {otlp}");
        assert_eq!(edge.platform().logs.borrow().len(), lines, "{level} {otlp}");
        // The request id is the trace's either way.
        assert_eq!(rp.request_trace().request_id().as_str().len(), 32);
    }
}

#[test]
fn a_quiet_request_is_still_limited_and_notes_no_calls() {
    for (level, kept) in [("off", false), ("info", true)] {
        let mut settings = dev_settings();
        settings.insert("LOG_LEVEL", level.into());
        let edge = edge_with(settings, Box::new(demo_tenant));
        let req = Request::get("/v1/storefront")
            .header("host", "demo.localhost:8787")
            .body(Bytes::new())
            .unwrap();
        let (head, body) = req.into_parts();
        let rp = edge.begin(&head);
        let resp = block_on(edge.serve(&rp, Request::from_parts(head, body)));
        assert_eq!(resp.status(), 200, "{level}");
        assert!(resp.headers().contains_key("ratelimit-policy"), "{level}");
        let kinds: Vec<_> = rp
            .request_trace()
            .record()
            .calls
            .iter()
            .map(|c| c.kind)
            .collect();
        let expected = if kept {
            vec![crate::obs::CallKind::Sql, crate::obs::CallKind::RateLimit]
        } else {
            vec![]
        };
        assert_eq!(kinds, expected, "{level}");
    }
}
