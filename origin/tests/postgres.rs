//! Tests against a real Postgres, run only when EDGEFRONT_TEST_DATABASE_URL names a superuser
//! URL of a scratch database (e.g. postgres://postgres:pw@127.0.0.1:55432/edgefront).

// Test helpers outside #[test] fns are not covered by clippy.toml's allow-*-in-tests.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;

use axum::body::{to_bytes, Body};
use axum::http::Request;
use edgefront_origin::{migrate, parse_connection_string, router, Config};
use serde_json::{json, Value};
use tower::ServiceExt;

fn database_url() -> String {
    std::env::var("EDGEFRONT_TEST_DATABASE_URL").expect(
        "EDGEFRONT_TEST_DATABASE_URL must name a superuser database (cargo xtask test sets it)",
    )
}

fn scratch_dir(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("edgefront-origin-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

async fn sql(config: &Config, url: &str, body: Value) -> (u16, Value) {
    let req = Request::post("/sql")
        .header("Neon-Connection-String", url)
        .body(Body::from(body.to_string()))
        .unwrap();
    let resp = router(config.clone()).oneshot(req).await.unwrap();
    let status = resp.status().as_u16();
    let bytes = to_bytes(resp.into_body(), usize::MAX).await.unwrap();
    (status, serde_json::from_slice(&bytes).unwrap())
}

fn config_for(url: &str) -> Config {
    let info = parse_connection_string(url).unwrap();
    Config {
        pg_host: info.host,
        pg_port: info.port.unwrap_or(5432),
        ..Config::default()
    }
}

#[tokio::test]
#[ignore = "needs Postgres; `cargo xtask test` runs it with --include-ignored"]
async fn migrations_apply_once_and_refuse_edits() {
    let url = database_url();
    // Versions far beyond real migrations so this never collides with them.
    let table = format!("mig_test_{}", std::process::id());
    let dir = scratch_dir("migrate");
    std::fs::write(
        dir.join("9001_first.sql"),
        format!("CREATE TABLE {table} (x int);"),
    )
    .unwrap();
    std::fs::write(
        dir.join("9002_second.sql"),
        format!("INSERT INTO {table} VALUES (1); INSERT INTO {table} VALUES (2);"),
    )
    .unwrap();
    std::fs::write(
        dir.join("9003_broken.sql"),
        format!("INSERT INTO {table} VALUES (3); SELEC;"),
    )
    .unwrap();

    let err = migrate::apply(&url, &dir).await.unwrap_err();
    assert!(
        matches!(err, migrate::Error::Migration { ref file, .. } if file == "9003_broken"),
        "{err}"
    );
    std::fs::remove_file(dir.join("9003_broken.sql")).unwrap();
    // 9001 and 9002 were applied before the failure; running again applies nothing.
    assert!(migrate::apply(&url, &dir).await.unwrap().is_empty());

    let config = config_for(&url);
    let (status, body) = sql(
        &config,
        &url,
        json!({"query": format!("SELECT count(*) FROM {table}")}),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(
        body["rows"],
        json!([["2"]]),
        "the broken file's insert was rolled back"
    );

    std::fs::write(dir.join("9001_first.sql"), "-- edited\n").unwrap();
    let err = migrate::apply(&url, &dir).await.unwrap_err();
    assert!(
        matches!(err, migrate::Error::ChecksumMismatch { .. }),
        "{err}"
    );

    let cleanup = json!({"queries": [
        {"query": format!("DROP TABLE {table}")},
        {"query": "DELETE FROM schema_migrations WHERE version IN ('9001', '9002', '9003')"},
    ]});
    assert_eq!(sql(&config, &url, cleanup).await.0, 200);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
#[ignore = "needs Postgres; `cargo xtask test` runs it with --include-ignored"]
async fn text_results_and_errors_in_process() {
    let url = database_url();
    let config = config_for(&url);
    let (status, body) = sql(
        &config,
        &url,
        json!({"query": "SELECT $1::int + 1 AS n, $2::int[] AS a, $3::jsonb AS j, 0.1::float4 AS f",
               "params": ["41", [1, null], {"k": true}]}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["rows"],
        json!([["42", "{1,NULL}", "{\"k\": true}", "0.1"]])
    );
    assert_eq!(body["fields"][1]["dataTypeID"], 1007);

    let (status, body) = sql(&config, &url, json!({"query": "SELECT 1/0"})).await;
    assert_eq!(status, 400);
    assert_eq!(body["code"], "22012");
    assert_eq!(body["severity"], "ERROR");
    assert!(body["detail"].is_null());
}
