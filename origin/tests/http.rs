//! In-process tests of the HTTP surface that need no Postgres: routing, bearer auth, the role
//! and database allow-lists, limits, payload validation, the JSON error shape, and the absence
//! of CORS.

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
        allowed_roles: vec!["app".into()],
        allowed_databases: vec!["db".into()],
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

fn assert_no_cors(headers: &axum::http::HeaderMap) {
    for name in headers.keys() {
        assert!(
            !name.as_str().starts_with("access-control-"),
            "unexpected CORS header {name}"
        );
    }
}

#[tokio::test]
async fn unknown_path_is_404_without_cors() {
    let req = Request::post("/other").body(Body::empty()).unwrap();
    let (status, json, headers) = send(config(), req).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_no_cors(&headers);
    assert_eq!(json["code"], "");
}

#[tokio::test]
async fn other_methods_are_405() {
    let req = Request::get("/sql").body(Body::empty()).unwrap();
    let (status, _, headers) = send(config(), req).await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(headers["allow"], "POST");
    assert_no_cors(&headers);
}

#[tokio::test]
async fn no_cors_at_all_preflights_included() {
    // A browser's preflight is just another method but POST: 405, and nothing that would let
    // a web page read the proxy's answers.
    let req = Request::options("/sql")
        .header("Origin", "https://evil.example")
        .header("Access-Control-Request-Method", "POST")
        .header("Access-Control-Request-Headers", "neon-connection-string")
        .body(Body::empty())
        .unwrap();
    let (status, _, headers) = send(config(), req).await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    assert_no_cors(&headers);

    let req = post()
        .header("Origin", "https://evil.example")
        .body(Body::from(r#"{"query":"SELECT 1","params":[]}"#))
        .unwrap();
    let (_, _, headers) = send(config(), req).await;
    assert_no_cors(&headers);
}

#[tokio::test]
async fn roles_and_databases_outside_the_allow_lists_are_403_before_any_login() {
    let body = r#"{"query":"SELECT 1","params":[]}"#;
    for conn in [
        "postgresql://postgres:pw@localhost:5432/db",
        "postgresql://someone:pw@localhost:5432/db",
        "postgresql://app:pw@localhost:5432/postgres",
        "postgresql://app:pw@localhost:5432/template1",
    ] {
        let req = Request::post("/sql")
            .header("Neon-Connection-String", conn)
            .body(Body::from(body))
            .unwrap();
        let (status, json, _) = send(config(), req).await;
        // 403, not the 500 of a login attempt against the closed port.
        assert_eq!(status, StatusCode::FORBIDDEN, "{conn}: {json}");
        assert_eq!(json["code"], "");
        assert_eq!(json.as_object().unwrap().len(), 17);
    }
    // The allowed pair gets past the check (and then fails to reach Postgres).
    let req = post().body(Body::from(body)).unwrap();
    let (status, _, _) = send(config(), req).await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    // No allow-list at all allows nothing.
    let cfg = Config {
        allowed_roles: vec![],
        allowed_databases: vec![],
        ..config()
    };
    let req = post().body(Body::from(body)).unwrap();
    assert_eq!(send(cfg, req).await.0, StatusCode::FORBIDDEN);
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
