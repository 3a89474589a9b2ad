//! A local OpenAI-compatible provider for the test stack: `POST /v1/chat/completions` with
//! `stream: true` answers over real HTTP with server-sent events, usage in the final chunk and
//! `data: [DONE]`. It records every request (`GET /_requests`) so tests can read the prompts.
//!
//! Markers in the last user message pick a behaviour: `[slow]` (deltas 300 ms apart), `[error]`
//! (an error event mid-stream), `[cutoff]` (the connection drops mid-stream), `[hang]` (one
//! delta, then silence), `[fail]` (HTTP 500 before any byte).

use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Result;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Json;
use serde_json::{json, Value};

#[derive(Clone, Default)]
struct Shared {
    requests: Arc<Mutex<Vec<Value>>>,
    /// Each request's `X-Request-Id` (the edge's request id), in order; null when absent.
    request_ids: Arc<Mutex<Vec<Value>>>,
}

pub struct MockProvider {
    pub base_url: String,
    task: tokio::task::JoinHandle<()>,
}

fn chunk(v: &Value) -> Bytes {
    Bytes::from(format!("data: {v}\n\n"))
}

fn delta(text: &str) -> Bytes {
    chunk(&json!({
        "id": "chatcmpl-mock", "object": "chat.completion.chunk", "model": "mock",
        "choices": [{ "index": 0, "delta": { "content": text }, "finish_reason": null }],
    }))
}

async fn completions(
    State(s): State<Shared>,
    headers: axum::http::HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    if let Ok(mut r) = s.requests.lock() {
        r.push(body.clone());
    }
    if let Ok(mut r) = s.request_ids.lock() {
        r.push(
            headers
                .get("x-request-id")
                .and_then(|v| v.to_str().ok())
                .map_or(Value::Null, |v| json!(v)),
        );
    }
    let messages = body["messages"].as_array().cloned().unwrap_or_default();
    let last = messages
        .iter()
        .rev()
        .find(|m| m["role"] == "user")
        .and_then(|m| m["content"].as_str())
        .unwrap_or_default()
        .to_owned();
    if last.contains("[fail]") {
        return (
            StatusCode::INTERNAL_SERVER_ERROR,
            Json(json!({"error": {"message": "mock provider is down", "type": "server_error"}})),
        )
            .into_response();
    }
    let prompt_chars: usize = messages
        .iter()
        .filter_map(|m| m["content"].as_str())
        .map(|c| c.chars().count())
        .sum();
    let answer = format!("Echo: {last}");
    let words: Vec<String> = answer.split_inclusive(' ').map(str::to_owned).collect();
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(16);
    tokio::spawn(async move {
        let pause = if last.contains("[slow]") {
            Duration::from_millis(300)
        } else {
            Duration::from_millis(10)
        };
        let pieces: Vec<String> = words.chunks(2).map(|c| c.concat()).collect();
        for (i, piece) in pieces.iter().enumerate() {
            if tx.send(Ok(delta(piece))).await.is_err() {
                return;
            }
            if i == 1 && last.contains("[error]") {
                let _ = tx
                    .send(Ok(chunk(
                        &json!({"error": {"message": "mock provider failed mid-stream"}}),
                    )))
                    .await;
                return;
            }
            if i == 1 && last.contains("[cutoff]") {
                let _ = tx
                    .send(Err(std::io::Error::other("connection reset")))
                    .await;
                return;
            }
            if last.contains("[hang]") {
                tokio::time::sleep(Duration::from_secs(60)).await;
                return;
            }
            tokio::time::sleep(pause).await;
        }
        let usage = json!({
            "id": "chatcmpl-mock", "object": "chat.completion.chunk", "model": "mock", "choices": [],
            "usage": {
                "prompt_tokens": prompt_chars.div_ceil(4),
                "completion_tokens": answer.chars().count().div_ceil(4),
                "total_tokens": prompt_chars.div_ceil(4) + answer.chars().count().div_ceil(4),
            },
        });
        let _ = tx.send(Ok(chunk(&usage))).await;
        let _ = tx.send(Ok(Bytes::from_static(b"data: [DONE]\n\n"))).await;
    });
    let stream = tokio_stream_from(rx);
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "text/event-stream")
        .header(header::CACHE_CONTROL, "no-cache")
        .body(Body::from_stream(stream))
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}

fn tokio_stream_from(
    mut rx: tokio::sync::mpsc::Receiver<Result<Bytes, std::io::Error>>,
) -> impl futures_util::Stream<Item = Result<Bytes, std::io::Error>> {
    futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

async fn request_ids(State(s): State<Shared>) -> Result<Json<Value>, Infallible> {
    let all = s.request_ids.lock().map(|r| r.clone()).unwrap_or_default();
    Ok(Json(Value::Array(all)))
}

async fn requests(State(s): State<Shared>) -> Result<Json<Value>, Infallible> {
    let all = s.requests.lock().map(|r| r.clone()).unwrap_or_default();
    Ok(Json(Value::Array(all)))
}

impl MockProvider {
    pub async fn start() -> Result<Self> {
        let app = axum::Router::new()
            .route("/v1/chat/completions", post(completions))
            .route("/_requests", get(requests))
            .route("/_request_ids", get(request_ids))
            .with_state(Shared::default());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let base_url = format!("http://{}/v1", listener.local_addr()?);
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(Self { base_url, task })
    }
}

impl Drop for MockProvider {
    fn drop(&mut self) {
        self.task.abort();
    }
}
