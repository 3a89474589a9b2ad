//! AI chat: `POST /v1/chat` (signed-in users) and `POST /v1/storefront/chat` (anonymous
//! visitors, identified by a signed HttpOnly cookie), answered by an OpenAI-compatible provider
//! (or the built-in local responder) and streamed as server-sent events.
//!
//! A turn is two SQL batches around the completion:
//! 1. `chat_begin` checks the conversation's owner and the visitor limits, reserves the turn's
//!    worst case (prompt estimate + `max_tokens`) against the tenant's monthly quota in one
//!    atomic update, and returns the conversation's memory and the catalog items matching the
//!    message;
//! 2. `chat_finish` settles that reservation exactly once: stores the messages on success,
//!    charges actual usage, releases the rest, and writes the usage log — on success, provider
//!    error, timeout and client disconnect alike. The streamed body's driver always runs to
//!    this point (adapters keep driving it after the client is gone).

use std::fmt::Write as _;

use base64ct::{Base64UrlUnpadded, Encoding};
use bytes::Bytes;
use futures_channel::mpsc;
use futures_util::StreamExt;
use hmac::{Hmac, Mac};
use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use serde_json::{json, Value};
use sha2::Sha256;

use crate::body::Body;
use crate::config::ProviderConfig;
use crate::error::{json_response, ApiError, FieldError};
use crate::ids::{is_uuid, new_uuid};
use crate::input::{encode_cursor, JsonObject, Query};
use crate::ports::{with_timeout, ByteStream, OutboundError, Platform};
use crate::routes::{Ctx, Scope};
use crate::sql::{self, Statement};
use crate::tenancy::Tenant;

/// Largest request body.
pub const MAX_BODY: usize = 16 * 1024;
/// Largest message, in bytes of UTF-8 (a bigger one is 413, like a bigger body).
pub const MAX_MESSAGE_BYTES: usize = 8 * 1024;
/// Anonymous visitors get shorter answers.
const VISITOR_MAX_TOKENS: u32 = 256;
/// Tokens of conversation memory sent with a turn (newest messages first).
const MEMORY_TOKENS: usize = 2_000;
/// Tokens reserved for the grounding block and the system prompt.
const CONTEXT_TOKENS: usize = 800;
/// Catalog items offered to the model per turn.
const GROUNDING_ITEMS: usize = 5;
const COOKIE: &str = "ef_visitor";
const COOKIE_MAX_AGE: u64 = 60 * 60 * 24 * 365;

/// A conservative token estimate (≈ 3 characters per token; real tokenizers average ≈ 4 for
/// English), so reservations cover what providers report.
pub fn estimate_tokens(text: &str) -> usize {
    text.chars().count().div_ceil(3)
}

/// Who owns a conversation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Owner {
    User(String),
    Visitor(String),
}

impl Owner {
    fn kind(&self) -> &'static str {
        match self {
            Self::User(_) => "user",
            Self::Visitor(_) => "visitor",
        }
    }

    fn id(&self) -> &str {
        match self {
            Self::User(id) | Self::Visitor(id) => id,
        }
    }
}

type HmacSha256 = Hmac<Sha256>;

fn visitor_mac(secret: &[u8], tenant: &Tenant, visitor: &str) -> Option<String> {
    let mut mac = HmacSha256::new_from_slice(secret).ok()?;
    mac.update(tenant.id.as_str().as_bytes());
    mac.update(b":");
    mac.update(visitor.as_bytes());
    Some(Base64UrlUnpadded::encode_string(
        mac.finalize().into_bytes().get(..16)?,
    ))
}

/// The visitor named by a valid cookie for this tenant. Cookies are bound to the tenant, so one
/// tenant's cookie means nothing on another.
pub fn visitor_from_cookie(
    secret: &[u8],
    tenant: &Tenant,
    headers: &http::HeaderMap,
) -> Option<String> {
    let value = headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == COOKIE)
        .map(|(_, v)| v.trim())?;
    let (id, mac) = value.split_once('.')?;
    if !is_uuid(id) {
        return None;
    }
    let want = visitor_mac(secret, tenant, id)?;
    // Constant-time comparison.
    let same = want.len() == mac.len()
        && want
            .bytes()
            .zip(mac.bytes())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0;
    same.then(|| id.to_owned())
}

/// The visitor of this request: from its cookie, or a new one with the `Set-Cookie` to send.
fn visitor<P: Platform>(
    ctx: &Ctx<'_, P>,
    tenant: &Tenant,
    req: &Request<Bytes>,
) -> Result<(String, Option<HeaderValue>), ApiError> {
    let secret = ctx.config.chat.visitor_secret.as_ref().ok_or_else(|| {
        ApiError::Config(crate::ConfigError {
            setting: "VISITOR_COOKIE_SECRET",
            problem: "is not set, so anonymous visitors cannot chat".into(),
        })
    })?;
    let secret = secret.expose().as_bytes();
    if let Some(id) = visitor_from_cookie(secret, tenant, req.headers()) {
        return Ok((id, None));
    }
    let id = new_uuid(ctx.platform)?;
    let mac = visitor_mac(secret, tenant, &id)
        .ok_or_else(|| ApiError::Upstream("cannot sign the visitor cookie".into()))?;
    // `Secure` except on plain-http development hosts (browsers drop Secure cookies there).
    let host = crate::tenancy::request_host(
        req.headers(),
        req.uri(),
        ctx.config.tenancy.trust_forwarded_host,
    )
    .unwrap_or_default();
    let secure = if host == "localhost" || host.ends_with(".localhost") {
        ""
    } else {
        "; Secure"
    };
    let cookie = format!(
        "{COOKIE}={id}.{mac}; Path=/v1/storefront; Max-Age={COOKIE_MAX_AGE}; HttpOnly; SameSite=Lax{secure}"
    );
    let value = HeaderValue::from_str(&cookie)
        .map_err(|_| ApiError::Upstream("cannot encode the visitor cookie".into()))?;
    Ok((id, Some(value)))
}

/// A validated turn request.
struct Turn {
    conversation: Option<String>,
    message: String,
    max_tokens: u32,
}

fn read_turn(req: &Request<Bytes>, max_tokens_cap: u32) -> Result<Turn, ApiError> {
    let mut o = JsonObject::parse(req.headers(), req.body(), MAX_BODY)?;
    if let Some(Value::String(m)) = o.peek("message") {
        if m.len() > MAX_MESSAGE_BYTES {
            return Err(ApiError::PayloadTooLarge {
                limit: MAX_MESSAGE_BYTES,
            });
        }
    }
    let message = o.string("message", true, MAX_MESSAGE_BYTES);
    let conversation = match o.nullable_string("conversation_id", 36) {
        Some(Some(c)) if is_uuid(&c) => Some(c.to_ascii_lowercase()),
        Some(Some(_)) => {
            o.error(
                "conversation_id",
                "invalid_value",
                "must be a conversation id (UUID)",
            );
            None
        }
        _ => None,
    };
    let max_tokens = o
        .integer("max_tokens", false, 1, i64::from(max_tokens_cap))
        .and_then(|n| u32::try_from(n).ok())
        .unwrap_or(max_tokens_cap);
    o.finish()?;
    let message = message.ok_or_else(|| {
        ApiError::Validation(vec![FieldError::new("message", "required", "is required")])
    })?;
    Ok(Turn {
        conversation,
        message,
        max_tokens,
    })
}

/// The words of a message worth searching the catalog for.
pub fn search_words(message: &str) -> Vec<String> {
    const STOP: &[&str] = &[
        "the", "and", "for", "you", "have", "any", "are", "with", "what", "that", "this", "can",
        "your", "how", "much", "does", "want", "need", "looking", "there", "some", "about",
        "would", "like", "please", "show", "find", "which", "who", "why", "was", "were", "has",
        "had", "not", "but", "all", "our", "out", "get", "got", "tell",
    ];
    let mut words: Vec<String> = Vec::new();
    for w in message
        .to_lowercase()
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| w.chars().count() >= 3 && !STOP.contains(w))
    {
        // Plural-insensitive: "shoes" finds "shoe".
        let w = w
            .strip_suffix('s')
            .filter(|s| s.chars().count() >= 3)
            .unwrap_or(w);
        if !words.iter().any(|x| x == w) {
            words.push(w.to_owned());
        }
        if words.len() == 8 {
            break;
        }
    }
    words
}

/// A catalog item from `chat_begin`'s grounding, read for prompts and local answers.
struct Grounded<'v>(&'v Value);

impl<'v> Grounded<'v> {
    fn of(item: &'v Value) -> Self {
        Self(item)
    }

    fn field(&self, k: &str) -> &'v str {
        self.0.get(k).and_then(Value::as_str).unwrap_or_default()
    }

    fn stock(&self) -> &'static str {
        if self.0.get("in_stock").and_then(Value::as_bool) == Some(true) {
            "in stock"
        } else {
            "out of stock"
        }
    }
}

/// The conversation as the model sees it: system prompt with grounding, memory, the message.
pub fn build_prompt(
    tenant: &Tenant,
    memory: &[Value],
    grounding: &[Value],
    message: &str,
) -> Vec<Value> {
    let ai = tenant.settings.get("ai");
    let mut system = ai
        .and_then(|a| a.get("system_prompt"))
        .and_then(Value::as_str)
        .map(str::to_owned)
        .unwrap_or_else(|| {
            format!(
                "You are the shopping assistant of {}. Answer briefly and only recommend items from the catalog below.",
                tenant.name
            )
        });
    if grounding.is_empty() {
        system.push_str("\n\nNo catalog items match the customer's message.");
    } else {
        system.push_str("\n\nCatalog items matching the customer's message:");
        for item in grounding {
            let g = Grounded::of(item);
            let _ = write!(
                system,
                "\n- {} (SKU {}): {} {}, {}. {}",
                g.field("name"),
                g.field("sku"),
                g.field("price"),
                g.field("currency"),
                g.stock(),
                g.field("description")
            );
        }
    }
    // Memory window: the newest messages that fit the budget, in order.
    let mut budget = MEMORY_TOKENS;
    let mut kept: Vec<Value> = Vec::new();
    for m in memory.iter().rev() {
        let content = m.get("content").and_then(Value::as_str).unwrap_or_default();
        let cost = estimate_tokens(content) + 4;
        if cost > budget {
            break;
        }
        budget -= cost;
        kept.push(json!({
            "role": m.get("role").and_then(Value::as_str).unwrap_or("user"),
            "content": content,
        }));
    }
    kept.reverse();
    let mut messages = vec![json!({ "role": "system", "content": system })];
    messages.extend(kept);
    messages.push(json!({ "role": "user", "content": message }));
    messages
}

/// How a completion ended.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Ending {
    Done,
    ProviderError(String),
    Timeout(String),
    ClientGone,
}

impl Ending {
    fn outcome(&self) -> &'static str {
        match self {
            Self::Done => "ok",
            Self::ProviderError(_) => "provider_error",
            Self::Timeout(_) => "timeout",
            Self::ClientGone => "client_disconnect",
        }
    }

    fn error(&self) -> Option<String> {
        match self {
            Self::ProviderError(e) | Self::Timeout(e) => Some(e.clone()),
            Self::ClientGone => Some("the client disconnected".into()),
            Self::Done => None,
        }
    }

    fn api_error(&self) -> ApiError {
        match self {
            Self::Timeout(e) => ApiError::GatewayTimeout(format!("AI provider: {e}")),
            Self::ProviderError(e) => ApiError::Upstream(format!("AI provider: {e}")),
            _ => ApiError::Upstream("the completion did not finish".into()),
        }
    }
}

struct Completion {
    text: String,
    prompt_tokens: Option<u64>,
    completion_tokens: Option<u64>,
    ending: Ending,
}

/// Sends `text` to the client; `false` when the client is gone.
type Emit<'e> = &'e mut dyn FnMut(&str) -> bool;

/// The built-in responder: answers from the grounding alone, clearly marked, so the product
/// works without a provider (and offline).
fn local_answer(tenant: &Tenant, grounding: &[Value], message: &str) -> String {
    let mut text = format!(
        "(Local assistant: no AI provider is configured for {}, so this answer comes from the catalog search alone.) ",
        tenant.name
    );
    if grounding.is_empty() {
        let _ = write!(
            text,
            "I found nothing in the catalog matching \u{201c}{}\u{201d}.",
            message.chars().take(80).collect::<String>()
        );
    } else {
        text.push_str("Here is what I found:");
        for (i, item) in grounding.iter().enumerate() {
            let g = Grounded::of(item);
            let _ = write!(
                text,
                "\n{}. {}: {} {} ({})",
                i + 1,
                g.field("name"),
                g.field("price"),
                g.field("currency"),
                g.stock()
            );
        }
    }
    text
}

async fn run_local(text: String, prompt: &[Value], emit: Emit<'_>) -> Completion {
    let mut sent = String::new();
    let mut ending = Ending::Done;
    // A few words per event, like a model's deltas.
    let words: Vec<&str> = text.split_inclusive(' ').collect();
    for chunk in words.chunks(6) {
        let piece: String = chunk.concat();
        if !emit(&piece) {
            ending = Ending::ClientGone;
            break;
        }
        sent.push_str(&piece);
    }
    let prompt_text: String = prompt
        .iter()
        .filter_map(|m| m.get("content").and_then(Value::as_str))
        .collect();
    Completion {
        prompt_tokens: Some(estimate_tokens(&prompt_text) as u64),
        completion_tokens: Some(estimate_tokens(&sent) as u64),
        text: sent,
        ending,
    }
}

/// One server-sent event block of an OpenAI-compatible stream, applied to `c`.
/// Returns false at `[DONE]`.
fn apply_sse_event(block: &str, c: &mut Completion, emit: Emit<'_>) -> bool {
    for line in block.lines() {
        let Some(data) = line.strip_prefix("data:") else {
            continue;
        };
        let data = data.trim();
        if data == "[DONE]" {
            return false;
        }
        let Ok(v) = serde_json::from_str::<Value>(data) else {
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

async fn run_provider<P: Platform>(
    ctx: &Ctx<'_, P>,
    provider: &ProviderConfig,
    prompt: &[Value],
    max_tokens: u32,
    emit: Emit<'_>,
) -> Completion {
    let mut c = Completion {
        text: String::new(),
        prompt_tokens: None,
        completion_tokens: None,
        ending: Ending::Done,
    };
    let body = json!({
        "model": provider.model,
        "messages": prompt,
        "stream": true,
        "stream_options": { "include_usage": true },
        "max_tokens": max_tokens,
    });
    let mut builder = Request::builder()
        .method(Method::POST)
        .uri(format!("{}/chat/completions", provider.base_url))
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::ACCEPT, "text/event-stream");
    if let Some(key) = &provider.api_key {
        builder = builder.header(header::AUTHORIZATION, format!("Bearer {}", key.expose()));
    }
    let req = match builder.body(Bytes::from(body.to_string())) {
        Ok(r) => r,
        Err(e) => {
            c.ending = Ending::ProviderError(format!("cannot build the request: {e}"));
            return c;
        }
    };
    let cfg = &ctx.config.chat;
    let resp = match with_timeout(ctx.platform, cfg.timeout, ctx.platform.send_streaming(req)).await
    {
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
        while let Ok(Some(Ok(chunk))) = next_chunk(ctx.platform, idle, &mut stream).await {
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
        match next_chunk(ctx.platform, idle, &mut stream).await {
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

fn sse(event: &str, data: &Value) -> Bytes {
    Bytes::from(format!("event: {event}\ndata: {data}\n\n"))
}

/// Everything `chat_begin` established.
struct Begun {
    conversation: String,
    reservation: String,
    memory: Vec<Value>,
    grounding: Vec<Value>,
}

async fn begin<P: Platform>(
    ctx: &Ctx<'_, P>,
    tenant: &Tenant,
    owner: &Owner,
    turn: &Turn,
    estimate: usize,
    words: &[String],
) -> Result<Begun, ApiError> {
    let limits = tenant
        .settings
        .get("limits")
        .cloned()
        .unwrap_or_else(|| json!({}));
    let limits = json!({
        "monthly_tokens": limits.get("ai_monthly_tokens"),
        "visitor_messages_per_hour": limits.get("visitor_messages_per_hour"),
        "visitor_tenant_messages_per_hour": limits.get("visitor_tenant_messages_per_hour"),
        "memory_messages": 40,
        "grounding_items": GROUNDING_ITEMS,
    });
    let mut results = sql::tenant_transaction(
        ctx.platform,
        &ctx.config.origin,
        &tenant.id,
        &[Statement::new(
            "SELECT public.chat_begin($1, $2, $3::uuid, $4, $5::bigint, ARRAY(SELECT jsonb_array_elements_text($6::jsonb)), $7::jsonb)::text AS outcome",
            vec![
                Some(owner.kind().into()),
                Some(owner.id().into()),
                turn.conversation.clone(),
                Some(turn.message.clone()),
                Some(estimate.to_string()),
                Some(json!(words).to_string()),
                Some(limits.to_string()),
            ],
        )],
    )
    .await?;
    let outcome = results
        .pop()
        .ok_or_else(|| ApiError::Upstream("no result from chat_begin".into()))?
        .json_column("outcome")?
        .pop()
        .unwrap_or(Value::Null);
    let s = |k: &str| outcome.get(k).and_then(Value::as_str).map(str::to_owned);
    match s("outcome").as_deref() {
        Some("ok") => Ok(Begun {
            conversation: s("conversation_id").unwrap_or_default(),
            reservation: s("reservation_id").unwrap_or_default(),
            memory: outcome
                .get("memory")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default(),
            grounding: outcome
                .get("grounding")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default(),
        }),
        Some("not_found") => Err(ApiError::ResourceNotFound("conversation")),
        Some("quota_exhausted") => Err(ApiError::TooManyRequests {
            code: "quota_exhausted",
            detail: format!(
                "This tenant's AI quota for the month is used up ({} of {} tokens); it resets at {}.",
                outcome.get("used").and_then(Value::as_i64).unwrap_or(0),
                outcome.get("limit").and_then(Value::as_i64).unwrap_or(0),
                s("resets_at").unwrap_or_default()
            ),
            retry_after: outcome.get("retry_after").and_then(Value::as_u64),
        }),
        Some("visitor_limit") => Err(ApiError::TooManyRequests {
            code: "visitor_limit",
            detail: if s("scope").as_deref() == Some("tenant") {
                "This store's assistant is busy; try again later.".into()
            } else {
                "You have sent too many messages; try again later.".into()
            },
            retry_after: outcome.get("retry_after").and_then(Value::as_u64),
        }),
        other => Err(ApiError::Upstream(format!("unexpected chat_begin outcome {other:?}"))),
    }
}

/// What `chat_finish` records about a turn.
struct Record<'r> {
    tenant: &'r Tenant,
    owner: &'r Owner,
    begun: &'r Begun,
    model: &'r str,
    message: &'r str,
    prompt_estimate: usize,
}

async fn finish<P: Platform>(
    ctx: &Ctx<'_, P>,
    r: Record<'_>,
    c: &Completion,
) -> Result<Value, ApiError> {
    let Record {
        tenant,
        owner,
        begun,
        model,
        message,
        prompt_estimate,
    } = r;
    // Without reported usage (cut off, disconnected), charge what was sent and received.
    let prompt = c.prompt_tokens.unwrap_or(prompt_estimate as u64);
    let completion = c
        .completion_tokens
        .unwrap_or(estimate_tokens(&c.text) as u64);
    let mut results = sql::tenant_transaction(
        ctx.platform,
        &ctx.config.origin,
        &tenant.id,
        &[Statement::new(
            "SELECT public.chat_finish($1::uuid, $2::uuid, $3, $4, $5, $6, $7, $8, $9::int, $10::int, $11)::text AS outcome",
            vec![
                Some(begun.reservation.clone()),
                Some(begun.conversation.clone()),
                Some(owner.kind().into()),
                Some(owner.id().into()),
                Some(c.ending.outcome().into()),
                Some(model.into()),
                Some(message.into()),
                Some(c.text.clone()),
                Some(prompt.min(i32::MAX as u64).to_string()),
                Some(completion.min(i32::MAX as u64).to_string()),
                c.ending.error(),
            ],
        )],
    )
    .await?;
    let outcome = results
        .pop()
        .ok_or_else(|| ApiError::Upstream("no result from chat_finish".into()))?
        .json_column("outcome")?
        .pop()
        .unwrap_or(Value::Null);
    Ok(json!({
        "conversation_id": begun.conversation,
        "user_message_id": outcome.get("user_message_id"),
        "assistant_message_id": outcome.get("assistant_message_id"),
        "usage": {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
        },
    }))
}

/// `POST /v1/chat` and `POST /v1/storefront/chat`.
pub async fn post<'a, P: Platform>(
    ctx: Ctx<'a, P>,
    scope: Scope,
    req: &Request<Bytes>,
) -> Result<Response<Body<'a>>, ApiError> {
    let tenant = scope.tenant()?.clone();
    let (owner, cookie, cap) = match &scope.principal {
        Some(p) => (
            Owner::User(p.user_id.clone()),
            None,
            ctx.config.chat.max_tokens,
        ),
        None => {
            let (id, cookie) = visitor(&ctx, &tenant, req)?;
            (
                Owner::Visitor(id),
                cookie,
                ctx.config.chat.max_tokens.min(VISITOR_MAX_TOKENS),
            )
        }
    };
    let turn = read_turn(req, cap)?;
    let streaming = req
        .headers()
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("text/event-stream"));
    let words = search_words(&turn.message);
    let prompt_estimate = estimate_tokens(&turn.message) + MEMORY_TOKENS + CONTEXT_TOKENS;
    let estimate = prompt_estimate + turn.max_tokens as usize;
    let begun = begin(&ctx, &tenant, &owner, &turn, estimate, &words).await?;
    let prompt = build_prompt(&tenant, &begun.memory, &begun.grounding, &turn.message);
    let local = ctx.config.chat.provider.is_none()
        || tenant
            .settings
            .pointer("/ai/responder")
            .and_then(Value::as_str)
            == Some("local");
    let model = match (&ctx.config.chat.provider, local) {
        (Some(p), false) => p.model.clone(),
        _ => "edgefront-local".to_owned(),
    };
    let responder = if local { "local" } else { "provider" };
    let prompt_tokens_estimate: usize = prompt
        .iter()
        .filter_map(|m| m.get("content").and_then(Value::as_str))
        .map(estimate_tokens)
        .sum();

    // Runs the completion and settles it; `emit` relays deltas.
    let complete = {
        let tenant = tenant.clone();
        let owner = owner.clone();
        let message = turn.message.clone();
        let max_tokens = turn.max_tokens;
        move |mut emit: Box<dyn FnMut(&str) -> bool + 'a>| async move {
            let c = match (&ctx.config.chat.provider, local) {
                (Some(p), false) => run_provider(&ctx, p, &prompt, max_tokens, &mut *emit).await,
                _ => {
                    let text = local_answer(&tenant, &begun.grounding, &message);
                    run_local(text, &prompt, &mut *emit).await
                }
            };
            let record = Record {
                tenant: &tenant,
                owner: &owner,
                begun: &begun,
                model: &model,
                message: &message,
                prompt_estimate: prompt_tokens_estimate,
            };
            let settled = finish(&ctx, record, &c).await;
            (c, settled)
        }
    };

    let mut resp = if streaming {
        let (tx, rx) = mpsc::unbounded::<Bytes>();
        let driver = Box::pin(async move {
            let tx2 = tx.clone();
            let (c, settled) = complete(Box::new(move |delta: &str| {
                tx2.unbounded_send(sse("delta", &json!({ "text": delta })))
                    .is_ok()
            }))
            .await;
            let last = match (&c.ending, settled) {
                (Ending::Done, Ok(mut done)) => {
                    done["responder"] = json!(responder);
                    sse("done", &done)
                }
                (Ending::Done, Err(e)) | (_, Err(e)) => sse("error", &problem_value(e, "/v1/chat")),
                (ending, Ok(_)) => sse("error", &problem_value(ending.api_error(), "/v1/chat")),
            };
            let _ = tx.unbounded_send(last);
        });
        let mut r = Response::new(Body::Stream { chunks: rx, driver });
        let h = r.headers_mut();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/event-stream"),
        );
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        h.insert("x-accel-buffering", HeaderValue::from_static("no"));
        r
    } else {
        let (c, settled) = complete(Box::new(|_: &str| true)).await;
        let mut done = settled?;
        if c.ending != Ending::Done {
            return Err(c.ending.api_error());
        }
        done["responder"] = json!(responder);
        done["message"] = json!({
            "id": done.get("assistant_message_id"),
            "role": "assistant",
            "content": c.text,
        });
        let mut r = json_response(StatusCode::OK, &done).map(Body::Full);
        r.headers_mut()
            .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        r
    };
    if let Some(cookie) = cookie {
        resp.headers_mut().insert(header::SET_COOKIE, cookie);
    }
    Ok(resp)
}

fn problem_value(e: ApiError, instance: &str) -> Value {
    let resp = e.into_response(instance);
    serde_json::from_slice(resp.body()).unwrap_or(Value::Null)
}

/// `GET /v1/chat/conversations`: the caller's conversations, most recent first.
pub async fn conversations<P: Platform>(
    ctx: &Ctx<'_, P>,
    scope: &Scope,
    req: &Request<Bytes>,
) -> Result<Response<Bytes>, ApiError> {
    let tenant = scope.tenant()?;
    let owner = scope
        .principal
        .as_ref()
        .map(|p| Owner::User(p.user_id.clone()))
        .ok_or(ApiError::ResourceNotFound("conversation"))?;
    let mut q = Query::parse(req.uri());
    let limit = q.integer("limit", 1, 100, 20);
    let after = q.keyset("cursor");
    q.finish()?;
    let mut params = vec![
        Some(owner.kind().into()),
        Some(owner.id().into()),
        Some((limit + 1).to_string()),
    ];
    let filter = after_clause(&mut params, after, "c.updated_at, c.id", "<");
    let stmt = Statement::new(
        format!(
            "SELECT json_build_object('id', c.id, 'title', c.title, \
               'created_at', public.iso_utc(c.created_at), \
               'updated_at', public.iso_utc(c.updated_at))::text AS doc \
             FROM public.conversations c WHERE c.owner_kind = $1 AND c.owner_id = $2{filter} \
             ORDER BY c.updated_at DESC, c.id DESC LIMIT $3::int"
        ),
        params,
    );
    let mut results =
        sql::tenant_transaction(ctx.platform, &ctx.config.origin, &tenant.id, &[stmt]).await?;
    let docs = results
        .pop()
        .ok_or_else(|| ApiError::Upstream("no result".into()))?
        .json_column("doc")?;
    let page = page_of(docs, limit, "updated_at");
    Ok(private_json(&page))
}

/// Binds a (time, id) keyset cursor and returns the condition that continues after it
/// (`cmp` is `<` for newest-first lists, `>` for oldest-first), or nothing without a cursor.
fn after_clause(
    params: &mut Vec<sql::Param>,
    after: Option<(String, String)>,
    columns: &str,
    cmp: &str,
) -> String {
    let Some((t, id)) = after else {
        return String::new();
    };
    params.push(Some(t));
    params.push(Some(id));
    let n = params.len();
    format!(
        " AND ({columns}) {cmp} (${}::timestamptz, ${n}::uuid)",
        n - 1
    )
}

/// `{items, next_cursor}` from `limit + 1` documents ordered by (`time_field`, `id`).
fn page_of(mut docs: Vec<Value>, limit: i64, time_field: &str) -> Value {
    let key = |d: &Value| {
        [time_field, "id"]
            .iter()
            .map(|f| {
                d.get(*f)
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned()
            })
            .collect::<Vec<_>>()
    };
    let limit = usize::try_from(limit).unwrap_or(usize::MAX);
    let more = docs.len() > limit;
    docs.truncate(limit);
    let next = if more {
        docs.last().map(|d| encode_cursor(&key(d)))
    } else {
        None
    };
    json!({ "items": docs, "next_cursor": next })
}

fn private_json(v: &Value) -> Response<Bytes> {
    let mut r = json_response(StatusCode::OK, v);
    r.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("private, no-store"),
    );
    r
}

/// `GET /v1/chat/conversations/{id}/messages` (users) and
/// `GET /v1/storefront/chat/conversations/{id}/messages` (the visitor's own only).
pub async fn messages<P: Platform>(
    ctx: &Ctx<'_, P>,
    scope: &Scope,
    req: &Request<Bytes>,
) -> Result<Response<Bytes>, ApiError> {
    let tenant = scope.tenant()?;
    let owner = match &scope.principal {
        Some(p) => Owner::User(p.user_id.clone()),
        None => {
            let secret = ctx.config.chat.visitor_secret.as_ref();
            match secret
                .and_then(|k| visitor_from_cookie(k.expose().as_bytes(), tenant, req.headers()))
            {
                Some(v) => Owner::Visitor(v),
                None => return Err(ApiError::ResourceNotFound("conversation")),
            }
        }
    };
    let id = scope.uuid("conversation")?;
    let mut q = Query::parse(req.uri());
    let limit = q.integer("limit", 1, 100, 50);
    let after = q.keyset("cursor");
    q.finish()?;
    let owned = Statement::new(
        "SELECT count(*)::text AS n FROM public.conversations WHERE id = $1::uuid AND owner_kind = $2 AND owner_id = $3",
        vec![Some(id.clone()), Some(owner.kind().into()), Some(owner.id().into())],
    );
    let mut params = vec![
        Some(id),
        Some(owner.kind().into()),
        Some(owner.id().into()),
        Some((limit + 1).to_string()),
    ];
    let filter = after_clause(&mut params, after, "m.created_at, m.id", ">");
    let list = Statement::new(
        format!(
            "SELECT json_build_object('id', m.id, 'role', m.role, 'content', m.content, \
               'prompt_tokens', m.prompt_tokens, 'completion_tokens', m.completion_tokens, \
               'created_at', public.iso_utc(m.created_at))::text AS doc \
             FROM public.messages m JOIN public.conversations c ON c.tenant_id = m.tenant_id AND c.id = m.conversation_id \
             WHERE m.conversation_id = $1::uuid AND c.owner_kind = $2 AND c.owner_id = $3 AND m.status = 'complete'{filter} \
             ORDER BY m.created_at, m.id LIMIT $4::int"
        ),
        params,
    );
    let results =
        sql::tenant_transaction(ctx.platform, &ctx.config.origin, &tenant.id, &[owned, list])
            .await?;
    if results.first().and_then(|r| r.first("n")) != Some("1") {
        return Err(ApiError::ResourceNotFound("conversation"));
    }
    let docs = results
        .get(1)
        .ok_or_else(|| ApiError::Upstream("no result".into()))?
        .json_column("doc")?;
    let page = page_of(docs, limit, "created_at");
    Ok(private_json(&page))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tenancy::{Slug, TenantId, TenantStatus};

    fn tenant(id: &str) -> Tenant {
        Tenant {
            id: TenantId::parse(id).unwrap(),
            slug: Slug::parse("demo").unwrap(),
            name: "Demo".into(),
            tier: "basic".into(),
            status: TenantStatus::Active,
            settings: json!({}),
        }
    }

    #[test]
    fn visitor_cookies_verify_only_for_their_tenant() {
        let secret = b"0123456789abcdef0123456789abcdef";
        let a = tenant("00000000-0000-4000-8000-00000000000a");
        let b = tenant("00000000-0000-4000-8000-00000000000b");
        let id = "00000000-0000-4000-8000-0000000000ff";
        let mac = visitor_mac(secret, &a, id).unwrap();
        let mut h = http::HeaderMap::new();
        h.insert(
            header::COOKIE,
            HeaderValue::from_str(&format!("x=1; {COOKIE}={id}.{mac}")).unwrap(),
        );
        assert_eq!(visitor_from_cookie(secret, &a, &h).as_deref(), Some(id));
        assert_eq!(visitor_from_cookie(secret, &b, &h), None);
        let mut forged = http::HeaderMap::new();
        forged.insert(
            header::COOKIE,
            HeaderValue::from_str(&format!(
                "{COOKIE}=00000000-0000-4000-8000-0000000000fe.{mac}"
            ))
            .unwrap(),
        );
        assert_eq!(visitor_from_cookie(secret, &a, &forged), None);
    }

    #[test]
    fn search_words_skip_noise_and_fold_plurals() {
        assert_eq!(
            search_words("Do you have any trail shoes? Shoes for RUNNING please"),
            vec!["trail", "shoe", "running"]
        );
    }

    #[test]
    fn prompts_carry_grounding_and_the_newest_memory_that_fits() {
        let t = tenant("00000000-0000-4000-8000-00000000000a");
        let old = "x".repeat(MEMORY_TOKENS * 3);
        let memory = vec![
            json!({"role": "user", "content": old}),
            json!({"role": "user", "content": "my name is Zed"}),
            json!({"role": "assistant", "content": "Hello Zed"}),
        ];
        let grounding = vec![
            json!({"name": "Trail shoe", "sku": "T1", "price": "99.000", "currency": "USD", "in_stock": true, "description": ""}),
        ];
        let p = build_prompt(&t, &memory, &grounding, "what is my name?");
        assert_eq!(p.len(), 4, "the oversized oldest message is dropped: {p:?}");
        assert!(p[0]["content"]
            .as_str()
            .unwrap()
            .contains("Trail shoe (SKU T1): 99.000 USD, in stock"));
        assert_eq!(p[1]["content"], "my name is Zed");
        assert_eq!(p[3]["content"], "what is my name?");
    }

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
