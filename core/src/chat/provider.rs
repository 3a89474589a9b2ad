//! The OpenAI-compatible provider: one streaming `POST {base}/chat/completions`, its
//! server-sent events relayed delta by delta. The response head must arrive within
//! `AI_TIMEOUT_MS` and the stream may fall silent for at most `AI_IDLE_TIMEOUT_MS`; whatever
//! happens, a [`Completion`] says how it ended, so the turn can settle.

use bytes::Bytes;
use futures_util::StreamExt;
use http::{header, Method, Request};
use serde::Serialize;
use serde_json::Value;

use super::prompt::PromptMessage;
use crate::config::ProviderConfig;
use crate::cx::Env;
use crate::error::{ApiError, Service};
use crate::ports::{with_timeout, ByteStream, OutboundError, Platform};

/// How a completion ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ending {
    Done,
    ProviderError(String),
    Timeout(String),
    ClientGone,
}

impl Ending {
    /// As the usage log records it (`ai_usage_log.outcome`).
    pub fn outcome(&self) -> &'static str {
        match self {
            Self::Done => "ok",
            Self::ProviderError(_) => "provider_error",
            Self::Timeout(_) => "timeout",
            Self::ClientGone => "client_disconnect",
        }
    }

    /// Why it did not finish, for the usage log.
    pub fn error(&self) -> Option<String> {
        match self {
            Self::ProviderError(e) | Self::Timeout(e) => Some(e.clone()),
            Self::ClientGone => Some("the client disconnected".into()),
            Self::Done => None,
        }
    }

    /// The problem the client gets for an ending other than [`Ending::Done`].
    pub fn api_error(&self) -> ApiError {
        match self {
            // The provider's own words (its error body, a stream's `error.message`) are logged,
            // never streamed to the visitor.
            Self::Timeout(e) => ApiError::service_timeout(Service::AiProvider, e),
            Self::ProviderError(e) => ApiError::service_failed(Service::AiProvider, e),
            _ => ApiError::service_failed(Service::AiProvider, "the completion did not finish"),
        }
    }
}

/// What a responder produced: the text sent to the client, the usage it reported, its ending.
#[derive(Debug)]
pub struct Completion {
    pub text: String,
    pub prompt_tokens: Option<u64>,
    pub completion_tokens: Option<u64>,
    pub ending: Ending,
}

impl Completion {
    fn new() -> Self {
        Self {
            text: String::new(),
            prompt_tokens: None,
            completion_tokens: None,
            ending: Ending::Done,
        }
    }
}

/// Sends `text` to the client; `false` when the client is gone.
pub type Emit<'e> = &'e mut dyn FnMut(&str) -> bool;

/// The request body (OpenAI's chat completions, streamed, with usage in the last event).
#[derive(Serialize)]
struct CompletionRequest<'r> {
    model: &'r str,
    messages: &'r [PromptMessage],
    stream: bool,
    stream_options: StreamOptions,
    max_tokens: u32,
}

#[derive(Serialize)]
struct StreamOptions {
    include_usage: bool,
}

/// One server-sent event block of an OpenAI-compatible stream, applied to `c`.
/// Returns false at `[DONE]`.
///
/// The events are read as loose JSON rather than typed: providers differ in what they add and
/// omit, and a member of an unexpected shape must not fail a stream that has an answer.
pub fn apply_sse_event(block: &str, c: &mut Completion, emit: Emit<'_>) -> bool {
    for line in block.lines() {
        let Some(data) = line.strip_prefix("data:") else {
            continue;
        };
        let data = data.trim();
        if data == "[DONE]" {
            return false;
        }
        let Ok(v) = serde_json::from_slice::<Value>(data.as_bytes()) else {
            c.ending = Ending::ProviderError("the provider sent an unreadable event".into());
            return false;
        };
        if let Some(err) = v.get("error") {
            let msg = err
                .get("message")
                .and_then(Value::as_str)
                .unwrap_or("error")
                .to_owned();
            c.ending = Ending::ProviderError(msg);
            return false;
        }
        if let Some(u) = v.get("usage").filter(|u| u.is_object()) {
            c.prompt_tokens = u.get("prompt_tokens").and_then(Value::as_u64);
            c.completion_tokens = u.get("completion_tokens").and_then(Value::as_u64);
        }
        let delta = v
            .pointer("/choices/0/delta/content")
            .and_then(Value::as_str)
            .unwrap_or_default();
        if !delta.is_empty() {
            if !emit(delta) {
                c.ending = Ending::ClientGone;
                return false;
            }
            c.text.push_str(delta);
        }
    }
    true
}

/// Runs the completion at `provider`, relaying deltas through `emit`.
pub async fn run_provider<P: Platform>(
    env: Env<'_, P>,
    provider: &ProviderConfig,
    prompt: &[PromptMessage],
    max_tokens: u32,
    emit: Emit<'_>,
) -> Completion {
    let mut c = Completion::new();
    let body = CompletionRequest {
        model: &provider.model,
        messages: prompt,
        stream: true,
        stream_options: StreamOptions {
            include_usage: true,
        },
        max_tokens,
    };
    let mut builder = Request::builder()
        .method(Method::POST)
        .uri(format!("{}/chat/completions", provider.base_url))
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::ACCEPT, "text/event-stream");
    if let Some(key) = &provider.api_key {
        builder = builder.header(header::AUTHORIZATION, format!("Bearer {}", key.expose()));
    }
    let req = serde_json::to_vec(&body)
        .map_err(|e| e.to_string())
        .and_then(|b| builder.body(Bytes::from(b)).map_err(|e| e.to_string()));
    let req = match req {
        Ok(r) => r,
        Err(e) => {
            c.ending = Ending::ProviderError(format!("cannot build the request: {e}"));
            return c;
        }
    };
    let cfg = &env.config.chat;
    let platform = env.platform;
    let resp = match with_timeout(platform, cfg.timeout, platform.send_streaming(req)).await {
        Ok(r) => r,
        Err(OutboundError::Timeout(d)) => {
            c.ending = Ending::Timeout(format!("no response within {} ms", d.as_millis()));
            return c;
        }
        Err(e) => {
            c.ending = Ending::ProviderError(e.to_string());
            return c;
        }
    };
    let status = resp.status();
    let mut stream: ByteStream = resp.into_body();
    let idle = cfg.idle_timeout;
    if !status.is_success() {
        let mut detail = String::new();
        while let Ok(Some(Ok(chunk))) = next_chunk(platform, idle, &mut stream).await {
            detail.push_str(&String::from_utf8_lossy(&chunk));
            if detail.len() > 300 {
                break;
            }
        }
        c.ending = Ending::ProviderError(format!(
            "HTTP {}: {}",
            status.as_u16(),
            detail.chars().take(300).collect::<String>()
        ));
        return c;
    }
    let mut buf = String::new();
    loop {
        match next_chunk(platform, idle, &mut stream).await {
            Ok(Some(Ok(chunk))) => {
                buf.push_str(&String::from_utf8_lossy(&chunk));
                if buf.contains('\r') {
                    buf = buf.replace("\r\n", "\n");
                }
                while let Some(end) = buf.find("\n\n") {
                    let block: String = buf.drain(..end + 2).collect();
                    if !apply_sse_event(&block, &mut c, emit) {
                        return c;
                    }
                }
            }
            // The stream ended without [DONE]: complete only if something usable arrived.
            Ok(None) => {
                if !buf.trim().is_empty() && !apply_sse_event(&buf, &mut c, emit) {
                    return c;
                }
                if c.text.is_empty() {
                    c.ending = Ending::ProviderError("the stream ended without an answer".into());
                } else if c.completion_tokens.is_none() {
                    c.ending = Ending::ProviderError("the stream was cut off".into());
                }
                return c;
            }
            Ok(Some(Err(e))) => {
                c.ending = Ending::ProviderError(format!("the stream broke: {e}"));
                return c;
            }
            Err(OutboundError::Timeout(d)) => {
                c.ending = Ending::Timeout(format!("the stream stalled for {} ms", d.as_millis()));
                return c;
            }
            Err(e) => {
                c.ending = Ending::ProviderError(e.to_string());
                return c;
            }
        }
    }
}

/// The stream's next chunk, unless it stays silent for `idle`.
async fn next_chunk<P: Platform>(
    platform: &P,
    idle: std::time::Duration,
    s: &mut ByteStream,
) -> Result<Option<Result<Bytes, OutboundError>>, OutboundError> {
    with_timeout(platform, idle, async { Ok(s.next().await) }).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn provider_events_are_parsed_with_usage_and_errors() {
        let mut c = Completion {
            text: String::new(),
            prompt_tokens: None,
            completion_tokens: None,
            ending: Ending::Done,
        };
        let mut got = Vec::new();
        let mut emit = |d: &str| {
            got.push(d.to_owned());
            true
        };
        assert!(apply_sse_event(
            "data: {\"choices\":[{\"delta\":{\"content\":\"Hel\"}}]}\n\n",
            &mut c,
            &mut emit
        ));
        assert!(apply_sse_event(
            "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":12,\"completion_tokens\":3}}\n\n",
            &mut c,
            &mut emit
        ));
        assert!(!apply_sse_event("data: [DONE]\n\n", &mut c, &mut emit));
        assert_eq!(got, vec!["Hel"]);
        let mut emit = |_: &str| true;
        assert_eq!((c.prompt_tokens, c.completion_tokens), (Some(12), Some(3)));
        assert!(!apply_sse_event(
            "data: {\"error\":{\"message\":\"overloaded\"}}\n\n",
            &mut c,
            &mut emit
        ));
        assert_eq!(c.ending, Ending::ProviderError("overloaded".into()));
    }
}
