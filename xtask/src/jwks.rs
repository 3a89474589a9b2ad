//! The dev identity provider's JWKS endpoints: `GET /{issuer}/.well-known/jwks.json` serves
//! `{dir}/{issuer}.json`, counting fetches (`GET /_stats`). A `{issuer}.down` file makes it
//! answer 503, and a `{issuer}.hang` file makes it say nothing for a minute (then 503), so tests
//! can rotate keys and simulate outages and silent peers by writing files.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use anyhow::Result;
use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Json;

#[derive(Clone)]
struct Shared {
    dir: PathBuf,
    fetches: Arc<Mutex<HashMap<String, u64>>>,
}

pub struct JwksServer {
    pub base_url: String,
    task: tokio::task::JoinHandle<()>,
}

async fn jwks(State(s): State<Shared>, Path(name): Path<String>) -> impl IntoResponse {
    if let Ok(mut m) = s.fetches.lock() {
        *m.entry(name.clone()).or_default() += 1;
    }
    let valid = !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
    if !valid {
        return (
            StatusCode::NOT_FOUND,
            [(header::CONTENT_TYPE, "text/plain")],
            String::new(),
        );
    }
    if s.dir.join(format!("{name}.hang")).exists() {
        // A peer that takes the request and never answers: the caller's deadline must end it.
        tokio::time::sleep(std::time::Duration::from_secs(60)).await;
    }
    if s.dir.join(format!("{name}.down")).exists() || s.dir.join(format!("{name}.hang")).exists() {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            [(header::CONTENT_TYPE, "text/plain")],
            "down".into(),
        );
    }
    match std::fs::read_to_string(s.dir.join(format!("{name}.json"))) {
        Ok(body) => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "application/json")],
            body,
        ),
        Err(_) => (
            StatusCode::NOT_FOUND,
            [(header::CONTENT_TYPE, "text/plain")],
            String::new(),
        ),
    }
}

async fn stats(State(s): State<Shared>) -> Json<HashMap<String, u64>> {
    Json(s.fetches.lock().map(|m| m.clone()).unwrap_or_default())
}

impl JwksServer {
    pub async fn start(dir: PathBuf) -> Result<Self> {
        let shared = Shared {
            dir,
            fetches: Arc::default(),
        };
        let app = axum::Router::new()
            .route("/_stats", get(stats))
            .route("/{name}/.well-known/jwks.json", get(jwks))
            .with_state(shared);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let base_url = format!("http://{}", listener.local_addr()?);
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(Self { base_url, task })
    }
}

impl Drop for JwksServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}
