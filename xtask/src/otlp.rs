//! A small OTLP/HTTP trace receiver for the stack: `POST /v1/traces` takes an
//! `ExportTraceServiceRequest` in OTLP's JSON encoding (what the edge sends, and what real
//! collectors accept on port 4318), checks its shape, and keeps its spans; `GET /_spans` lists
//! every span received so far, flattened (`traceId`, `spanId`, `parentSpanId`, `name`, `kind`,
//! times, `attributes` as a plain object, and the resource's attributes), so tests can read
//! traces back. A malformed export is 400, as a collector would answer.

use std::sync::{Arc, Mutex};

use anyhow::Result;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Json;
use serde_json::{json, Map, Value};

#[derive(Clone, Default)]
struct Shared {
    spans: Arc<Mutex<Vec<Value>>>,
}

pub struct OtlpReceiver {
    /// `OTEL_EXPORTER_OTLP_ENDPOINT`: `http://127.0.0.1:<port>`.
    pub endpoint: String,
    /// Every span received, `http://127.0.0.1:<port>/_spans`.
    pub spans_url: String,
    task: tokio::task::JoinHandle<()>,
}

impl OtlpReceiver {
    pub async fn start() -> Result<Self> {
        let app = axum::Router::new()
            .route("/v1/traces", post(export))
            .route("/_spans", get(spans))
            .with_state(Shared::default());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let endpoint = format!("http://{}", listener.local_addr()?);
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(Self {
            spans_url: format!("{endpoint}/_spans"),
            endpoint,
            task,
        })
    }
}

impl Drop for OtlpReceiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// OTLP's `KeyValue` list as a plain object: `{"stringValue": "x"}` → `"x"`, `intValue` (a
/// string or number in OTLP JSON) → a number.
fn attributes(list: &Value) -> Result<Map<String, Value>, String> {
    let mut out = Map::new();
    for kv in list.as_array().map(Vec::as_slice).unwrap_or_default() {
        let key = kv["key"].as_str().ok_or("an attribute without a key")?;
        let v = &kv["value"];
        let value = if let Some(s) = v.get("stringValue") {
            s.clone()
        } else if let Some(i) = v.get("intValue") {
            match i {
                Value::String(s) => json!(s.parse::<i64>().map_err(|_| "a bad intValue")?),
                Value::Number(_) => i.clone(),
                _ => return Err("a bad intValue".into()),
            }
        } else if let Some(b) = v.get("boolValue") {
            b.clone()
        } else if let Some(d) = v.get("doubleValue") {
            d.clone()
        } else {
            return Err(format!("attribute {key} has no known value type"));
        };
        out.insert(key.to_owned(), value);
    }
    Ok(out)
}

fn is_hex(v: &Value, len: usize) -> bool {
    v.as_str()
        .is_some_and(|s| s.len() == len && s.bytes().all(|b| b.is_ascii_hexdigit()))
}

fn flatten(body: &Value) -> Result<Vec<Value>, String> {
    let mut out = Vec::new();
    let resources = body["resourceSpans"]
        .as_array()
        .ok_or("resourceSpans must be an array")?;
    for rs in resources {
        let resource = attributes(&rs["resource"]["attributes"])?;
        for ss in rs["scopeSpans"]
            .as_array()
            .ok_or("scopeSpans must be an array")?
        {
            for span in ss["spans"].as_array().ok_or("spans must be an array")? {
                if !is_hex(&span["traceId"], 32) || !is_hex(&span["spanId"], 16) {
                    return Err("traceId/spanId must be 32/16 hex digits".into());
                }
                let parent = &span["parentSpanId"];
                if !(parent.is_null() || parent == "" || is_hex(parent, 16)) {
                    return Err("parentSpanId must be 16 hex digits".into());
                }
                for t in ["startTimeUnixNano", "endTimeUnixNano"] {
                    let ok = match &span[t] {
                        Value::String(s) => s.parse::<u64>().is_ok(),
                        Value::Number(n) => n.is_u64(),
                        _ => false,
                    };
                    if !ok {
                        return Err(format!("{t} must be nanoseconds"));
                    }
                }
                out.push(json!({
                    "traceId": span["traceId"],
                    "spanId": span["spanId"],
                    "parentSpanId": parent,
                    "name": span["name"],
                    "kind": span["kind"],
                    "startTimeUnixNano": span["startTimeUnixNano"],
                    "endTimeUnixNano": span["endTimeUnixNano"],
                    "status": span["status"],
                    "attributes": attributes(&span["attributes"])?,
                    "resource": resource,
                }));
            }
        }
    }
    Ok(out)
}

async fn export(State(s): State<Shared>, headers: HeaderMap, body: String) -> Response {
    let json_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if !json_type {
        return (StatusCode::UNSUPPORTED_MEDIA_TYPE, "application/json only").into_response();
    }
    let parsed = serde_json::from_str::<Value>(&body)
        .map_err(|e| e.to_string())
        .and_then(|v| flatten(&v));
    match parsed {
        Ok(spans) => {
            if let Ok(mut all) = s.spans.lock() {
                all.extend(spans);
            }
            // An ExportTraceServiceResponse with nothing rejected.
            Json(json!({})).into_response()
        }
        Err(e) => (StatusCode::BAD_REQUEST, e).into_response(),
    }
}

async fn spans(State(s): State<Shared>) -> Response {
    let all = s.spans.lock().map(|v| v.clone()).unwrap_or_default();
    Json(json!({ "spans": all })).into_response()
}
