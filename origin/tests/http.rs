//! In-process tests of the HTTP surface that need no Postgres: routing, bearer auth, limits,
//! payload validation and the JSON error shape.

// Test helpers outside #[test] fns are not covered by clippy.toml's allow-*-in-tests.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use axum::body::{to_bytes, Body};
use axum::http::{Request, StatusCode};
use edgefront_origin::{router, Config};
use serde_json::Value;
use tower::ServiceExt;

const CONN: &str = "postgresql://app:pw@localhost:5432/db";

fn config() -> Config {
    Config {
        // Nothing listens on port 1, so anything that reaches Postgres fails fast.
        pg_port: 1,
        max_request_bytes: 1024,
        ..Config::default()
    }
}

async fn send(config: Config, req: Request<Body>) -> (StatusCode, Value, axum::http::HeaderMap) {
    let resp = router(config).oneshot(req).await.unwrap();
    let status = resp.status();
    let headers = resp.headers().clone();
    let bytes = to_bytes(resp.into_body(), usize::MAX).await.unwrap();
    let json = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    (status, json, headers)
}

fn post() -> axum::http::request::Builder {
    Request::post("/sql")
        .header("Neon-Connection-String", CONN)
        .header("Content-Type", "text/plain;charset=UTF-8")
}

#[tokio::test]
async fn unknown_path_is_404_with_cors() {
    let req = Request::post("/other").body(Body::empty()).unwrap();
    let (status, json, headers) = send(config(), req).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(headers["access-control-allow-origin"], "*");
    assert_eq!(json["code"], "");
}

#[tokio::test]
async fn other_methods_are_405() {
    let req = Request::get("/sql").body(Body::empty()).unwrap();
    let (status, _, headers) = send(config(), req).await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(headers["access-control-allow-origin"], "*");
}

#[tokio::test]
async fn bearer_token_is_enforced() {
    let cfg = Config {
        bearer_token: Some("t0ken".into()),
        ..config()
    };
    let body = r#"{"query":"SELECT 1","params":[]}"#;
    let req = post().body(Body::from(body)).unwrap();
    let (status, json, _) = send(cfg.clone(), req).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(json["severity"], "");

    // With the right token the request gets past auth (and then fails to reach Postgres).
    let req = post()
        .header("Authorization", "Bearer t0ken")
        .body(Body::from(body))
        .unwrap();
    let (status, json, _) = send(cfg, req).await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(json["code"], "");
    assert_eq!(json.as_object().unwrap().len(), 17);
}

#[tokio::test]
async fn oversized_body_is_413() {
    let body = format!(r#"{{"query":"SELECT '{}'"}}"#, "x".repeat(2000));
    let req = post().body(Body::from(body)).unwrap();
    let (status, json, _) = send(config(), req).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(json["message"].as_str().unwrap().contains("too large"));
}

#[tokio::test]
async fn missing_or_bad_connection_string_is_400() {
    let body = r#"{"query":"SELECT 1"}"#;
    let req = Request::post("/sql").body(Body::from(body)).unwrap();
    let (status, json, _) = send(config(), req).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(json["message"]
        .as_str()
        .unwrap()
        .contains("Neon-Connection-String"));

    let req = Request::post("/sql")
        .header("Neon-Connection-String", "postgresql://localhost/db")
        .body(Body::from(body))
        .unwrap();
    let (status, _, _) = send(config(), req).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn bad_payload_and_isolation_level_are_400() {
    for body in ["nope", r#"{"params":[]}"#, r#"{"queries":{}}"#] {
        let req = post().body(Body::from(body)).unwrap();
        let (status, _, _) = send(config(), req).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    }
    let body = r#"{"queries":[{"query":"SELECT 1","params":[]}]}"#;
    let req = post()
        .header("Neon-Batch-Isolation-Level", "Whatever")
        .body(Body::from(body))
        .unwrap();
    let (status, json, _) = send(config(), req).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(json["message"], "invalid isolation level");
}
