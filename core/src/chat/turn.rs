//! One chat turn: two SQL batches around the completion.
//!
//! 1. `chat_begin` checks the conversation's owner and the visitor limits, reserves the turn's
//!    worst case (prompt estimate + `max_tokens`) against the tenant's monthly quota in one
//!    atomic update, and returns the conversation's memory and the catalog items matching the
//!    message;
//! 2. `chat_finish` settles that reservation exactly once: stores the messages on success,
//!    charges actual usage, releases the rest, and writes the usage log — on success, provider
//!    error, timeout and client disconnect alike. Nothing that can fail stands between the two:
//!    once [`Turn::begin`] has reserved, [`Turn::answer`] always settles. A streamed body's
//!    driver always runs to that point (adapters keep driving it after the client is gone).

use std::rc::Rc;

use bytes::Bytes;
use futures_channel::mpsc;
use http::{header, HeaderValue, Response};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::prompt::{
    build_prompt, estimate_tokens, local_answer, run_local, search_words, GroundedItem,
    PromptMessage, Remembered, CONTEXT_TOKENS, MEMORY_TOKENS,
};
use super::provider::{run_provider, Completion, Emit, Ending};
use super::{ConversationId, Owner};
use crate::body::Body;
use crate::config::ProviderConfig;
use crate::cx::{Env, FromPath as _};
use crate::error::{ApiError, Code};
use crate::ids::Uuid;
use crate::input::{BodyCx, FromJson, JsonObject};
use crate::ports::Platform;
use crate::reply::{Cache, IntoReply, Reply};
use crate::sql::{Db, Statement};
use crate::tenancy::Tenant;

/// Largest message, in bytes of UTF-8 (a bigger one is 413, like a bigger body).
pub const MAX_MESSAGE_BYTES: usize = 8 * 1024;
/// Anonymous visitors get shorter answers.
const VISITOR_MAX_TOKENS: u32 = 256;
/// Conversation messages `chat_begin` returns as memory (the prompt keeps what fits).
const MEMORY_MESSAGES: u32 = 40;
/// Catalog items offered to the model per turn.
const GROUNDING_ITEMS: usize = 5;
/// The `instance` of problems sent as SSE `error` events.
const EVENT_INSTANCE: &str = "/v1/chat";

/// A turn's body: `{message, conversation_id?, max_tokens?}`. `max_tokens` is capped by
/// `AI_MAX_TOKENS`, and for anonymous visitors also by [`VISITOR_MAX_TOKENS`].
#[derive(Debug)]
pub struct TurnRequest {
    pub conversation: Option<ConversationId>,
    pub message: String,
    pub max_tokens: u32,
}

impl FromJson for TurnRequest {
    /// A message over [`MAX_MESSAGE_BYTES`] is 413 at once, like a body over the limit.
    fn check(o: &JsonObject) -> Result<(), ApiError> {
        match o.peek("message") {
            Some(serde_json::Value::String(m)) if m.len() > MAX_MESSAGE_BYTES => {
                Err(ApiError::payload_too_large(MAX_MESSAGE_BYTES))
            }
            _ => Ok(()),
        }
    }

    fn from_json(o: &mut JsonObject, cx: &BodyCx<'_>) -> Option<Self> {
        let cap = if cx.authenticated {
            cx.config.chat.max_tokens
        } else {
            cx.config.chat.max_tokens.min(VISITOR_MAX_TOKENS)
        };
        let message = o.string("message", true, MAX_MESSAGE_BYTES);
        let conversation = match o.nullable_string("conversation_id", 36) {
            Some(Some(c)) => {
                let id = Uuid::parse(&c).map(ConversationId);
                if id.is_none() {
                    o.error(
                        "conversation_id",
                        "invalid_value",
                        "must be a conversation id (UUID)",
                    );
                }
                id
            }
            _ => None,
        };
        let max_tokens = o
            .integer("max_tokens", false, 1, i64::from(cap))
            .and_then(|n| u32::try_from(n).ok())
            .unwrap_or(cap);
        Some(Self {
            conversation,
            message: message?,
            max_tokens,
        })
    }
}

/// What `chat_begin` decided.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Begin {
    Ok {
        conversation_id: ConversationId,
        reservation_id: Uuid,
        memory: Vec<Remembered>,
        grounding: Vec<GroundedItem>,
    },
    NotFound,
    QuotaExhausted {
        #[serde(default)]
        scope: QuotaScope,
        used: i64,
        limit: i64,
        resets_at: String,
        retry_after: Option<u64>,
    },
    VisitorLimit {
        #[serde(default)]
        scope: LimitScope,
        retry_after: Option<u64>,
    },
}

impl crate::outcome::Outcome for Begin {}

/// Which monthly budget was spent.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
enum QuotaScope {
    /// The anonymous visitors' share (`settings.limits.visitor_monthly_tokens`, `…_turns`):
    /// the tenant's members can still chat.
    Visitors,
    /// The tenant's whole quota.
    #[default]
    #[serde(other)]
    Tenant,
}

/// Which visitor limit was reached.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
enum LimitScope {
    /// The store's limit for all its visitors together.
    Tenant,
    /// The limit per client IP, whatever the cookies.
    Client,
    /// The visitor's own.
    #[default]
    #[serde(other)]
    Visitor,
}

impl Begin {
    fn refusal(self) -> ApiError {
        match self {
            Self::NotFound => ApiError::not_found(ConversationId::KIND),
            // Visitors are not told the tenant's numbers.
            Self::QuotaExhausted {
                scope: QuotaScope::Visitors,
                resets_at,
                retry_after,
                ..
            } => ApiError::too_many(
                Code::QuotaExhausted,
                format!(
                    "This store's assistant has answered all the visitor messages it can this month; it resets at {resets_at}."
                ),
                retry_after,
            ),
            Self::QuotaExhausted {
                scope: QuotaScope::Tenant,
                used,
                limit,
                resets_at,
                retry_after,
            } => ApiError::too_many(
                Code::QuotaExhausted,
                format!(
                    "This tenant's AI quota for the month is used up ({used} of {limit} tokens); it resets at {resets_at}."
                ),
                retry_after,
            ),
            Self::VisitorLimit { scope, retry_after } => ApiError::too_many(
                Code::VisitorLimit,
                match scope {
                    LimitScope::Tenant => "This store's assistant is busy; try again later.",
                    LimitScope::Client => {
                        "Too many messages come from your network; try again later."
                    }
                    LimitScope::Visitor => "You have sent too many messages; try again later.",
                },
                retry_after,
            ),
            Self::Ok { .. } => ApiError::upstream("chat_begin succeeded where it was expected to refuse"),
        }
    }
}

/// What `chat_finish` did. A repeated settlement changes nothing and stores no message.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Finish {
    Settled {
        user_message_id: Option<Uuid>,
        assistant_message_id: Option<Uuid>,
    },
    AlreadySettled,
}

impl crate::outcome::Outcome for Finish {}

/// The turn's result: the `done` event, and the JSON answer's members besides `message`.
#[derive(Debug, Serialize)]
struct Done {
    conversation_id: ConversationId,
    user_message_id: Option<Uuid>,
    assistant_message_id: Option<Uuid>,
    usage: Usage,
    responder: &'static str,
}

#[derive(Debug, Serialize)]
struct Usage {
    prompt_tokens: u64,
    completion_tokens: u64,
    total_tokens: u64,
}

/// The JSON (not streamed) answer.
#[derive(Serialize)]
struct Answered<'t> {
    #[serde(flatten)]
    done: &'t Done,
    message: AssistantMessage<'t>,
}

#[derive(Serialize)]
struct AssistantMessage<'t> {
    id: Option<&'t Uuid>,
    role: &'static str,
    content: &'t str,
}

#[derive(Serialize)]
struct Delta<'d> {
    text: &'d str,
}

/// Who answers: the configured provider, or the local responder (no provider configured, or
/// the tenant chose it with `settings.ai.responder = "local"`).
#[derive(Clone, Copy)]
enum Responder<'a> {
    Provider(&'a ProviderConfig),
    Local,
}

impl Responder<'_> {
    fn name(self) -> &'static str {
        match self {
            Self::Provider(_) => "provider",
            Self::Local => "local",
        }
    }

    fn model(&self) -> &str {
        match self {
            Self::Provider(p) => &p.model,
            Self::Local => "edgefront-local",
        }
    }
}

/// A turn whose quota is reserved: everything needed to complete and settle it, owned (or
/// borrowed from the instance), so a streamed body's driver can take it along.
pub(super) struct Turn<'a, P> {
    env: Env<'a, P>,
    db: Db<'a, P>,
    tenant: Rc<Tenant>,
    owner: Owner,
    message: String,
    max_tokens: u32,
    conversation: ConversationId,
    reservation: Uuid,
    grounding: Vec<GroundedItem>,
    prompt: Vec<PromptMessage>,
    responder: Responder<'a>,
    /// The prompt's size, charged when the provider reports no usage.
    prompt_estimate: usize,
}

impl<'a, P: Platform> Turn<'a, P> {
    /// `chat_begin`: ownership, visitor limits and budget, and the quota reservation, in one
    /// batch. `client` is a visitor's client key (their hashed IP). Refusals (404, 429) reserve
    /// nothing.
    pub(super) async fn begin(
        env: Env<'a, P>,
        tenant: Rc<Tenant>,
        db: Db<'a, P>,
        owner: Owner,
        client: Option<String>,
        request: TurnRequest,
    ) -> Result<Self, ApiError> {
        let TurnRequest {
            conversation,
            message,
            max_tokens,
        } = request;
        let words = search_words(&message);
        let estimate =
            estimate_tokens(&message) + MEMORY_TOKENS + CONTEXT_TOKENS + max_tokens as usize;
        let limits = &tenant.settings.limits;
        let limits = json!({
            "monthly_tokens": limits.ai_monthly_tokens,
            "visitor_messages_per_hour": limits.visitor_messages_per_hour,
            "visitor_tenant_messages_per_hour": limits.visitor_tenant_messages_per_hour,
            "visitor_messages_per_ip_per_hour": limits.visitor_messages_per_ip_per_hour,
            "visitor_monthly_tokens": limits.visitor_monthly_tokens,
            "visitor_monthly_turns": limits.visitor_monthly_turns,
            "memory_messages": MEMORY_MESSAGES,
            "grounding_items": GROUNDING_ITEMS,
        });
        let outcome: Begin = db
            .outcome(Statement::new(
                "SELECT public.chat_begin($1, $2, $3, $4::uuid, $5, $6::bigint, ARRAY(SELECT jsonb_array_elements_text($7::jsonb)), $8::jsonb) AS outcome",
                vec![
                    Some(owner.kind().into()),
                    Some(owner.id().into()),
                    client,
                    conversation.map(|c| c.to_string()),
                    Some(message.clone()),
                    Some(estimate.to_string()),
                    Some(json!(words).to_string()),
                    Some(limits.to_string()),
                ],
            ))
            .await?;
        let Begin::Ok {
            conversation_id,
            reservation_id,
            memory,
            grounding,
        } = outcome
        else {
            return Err(outcome.refusal());
        };
        let prompt = build_prompt(&tenant, &memory, &grounding, &message);
        let responder = match &env.config.chat.provider {
            Some(p) if tenant.settings.ai.responder.as_deref() != Some("local") => {
                Responder::Provider(p)
            }
            _ => Responder::Local,
        };
        let prompt_estimate = prompt.iter().map(|m| estimate_tokens(&m.content)).sum();
        Ok(Self {
            env,
            db,
            tenant,
            owner,
            message,
            max_tokens,
            conversation: conversation_id,
            reservation: reservation_id,
            grounding,
            prompt,
            responder,
            prompt_estimate,
        })
    }

    /// Completes and settles the turn: as server-sent events (`delta`…, then `done` or
    /// `error`), or as one JSON answer once it is settled.
    pub(super) async fn answer(self, events: bool) -> Result<Response<Body<'a>>, ApiError> {
        if events {
            Ok(self.stream())
        } else {
            self.reply().await
        }
    }

    /// Runs the completion, relaying deltas through `emit`, then settles it whatever the ending.
    async fn complete(&self, emit: Emit<'_>) -> (Completion, Result<Done, ApiError>) {
        let c = match self.responder {
            Responder::Provider(p) => {
                run_provider(self.env, p, &self.prompt, self.max_tokens, emit).await
            }
            Responder::Local => {
                let text = local_answer(&self.tenant, &self.grounding, &self.message);
                run_local(text, &self.prompt, emit).await
            }
        };
        let settled = self.finish(&c).await;
        (c, settled)
    }

    /// `chat_finish`: settles the reservation (once) and, on success, stores both messages.
    async fn finish(&self, c: &Completion) -> Result<Done, ApiError> {
        // Without reported usage (cut off, disconnected), charge what was sent and received.
        let prompt = c.prompt_tokens.unwrap_or(self.prompt_estimate as u64);
        let completion = c
            .completion_tokens
            .unwrap_or(estimate_tokens(&c.text) as u64);
        let outcome: Finish = self
            .db
            .outcome(Statement::new(
                "SELECT public.chat_finish($1::uuid, $2::uuid, $3, $4, $5, $6, $7, $8, $9::int, $10::int, $11) AS outcome",
                vec![
                    Some(self.reservation.to_string()),
                    Some(self.conversation.to_string()),
                    Some(self.owner.kind().into()),
                    Some(self.owner.id().into()),
                    Some(c.ending.outcome().into()),
                    Some(self.responder.model().into()),
                    Some(self.message.clone()),
                    Some(c.text.clone()),
                    Some(prompt.min(i32::MAX as u64).to_string()),
                    Some(completion.min(i32::MAX as u64).to_string()),
                    c.ending.error(),
                ],
            ))
            .await?;
        let (user_message_id, assistant_message_id) = match outcome {
            Finish::Settled {
                user_message_id,
                assistant_message_id,
            } => (user_message_id, assistant_message_id),
            Finish::AlreadySettled => (None, None),
        };
        Ok(Done {
            conversation_id: self.conversation.clone(),
            user_message_id,
            assistant_message_id,
            usage: Usage {
                prompt_tokens: prompt,
                completion_tokens: completion,
                total_tokens: prompt.saturating_add(completion),
            },
            responder: self.responder.name(),
        })
    }

    /// The answer as server-sent events. The driver owns the turn, so settlement happens even
    /// when the client goes away mid-stream (the next `delta` fails to send: `ClientGone`).
    fn stream(self) -> Response<Body<'a>> {
        let (tx, chunks) = mpsc::unbounded::<Bytes>();
        let env = self.env;
        let driver = Box::pin(async move {
            let mut emit = |text: &str| tx.unbounded_send(sse("delta", &Delta { text })).is_ok();
            let (c, settled) = self.complete(&mut emit).await;
            // A stream that ends in an error: the event names the request id, and the request's
            // log line (written once the driver is done) its code and the upstream's words.
            let trace = env.platform.trace();
            let last = match (&c.ending, settled) {
                (Ending::Done, Ok(done)) => sse("done", &done),
                (_, Err(e)) => sse("error", &e.to_traced_problem(EVENT_INSTANCE, trace)),
                (ending, Ok(_)) => sse(
                    "error",
                    &ending.api_error().to_traced_problem(EVENT_INSTANCE, trace),
                ),
            };
            let _ = tx.unbounded_send(last);
        });
        let mut resp = Response::new(Body::Stream { chunks, driver });
        let h = resp.headers_mut();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/event-stream"),
        );
        h.insert(header::CACHE_CONTROL, Cache::NoStore.header_value());
        // Proxies (nginx) must pass events on as they come.
        h.insert("x-accel-buffering", HeaderValue::from_static("no"));
        resp
    }

    /// The answer as one JSON document, once settled.
    async fn reply(self) -> Result<Response<Body<'a>>, ApiError> {
        let (c, settled) = self.complete(&mut |_: &str| true).await;
        let done = settled?;
        if c.ending != Ending::Done {
            return Err(c.ending.api_error());
        }
        let answered = Answered {
            done: &done,
            message: AssistantMessage {
                id: done.assistant_message_id.as_ref(),
                role: "assistant",
                content: &c.text,
            },
        };
        Reply::ok(&answered).cache(Cache::NoStore).into_reply()
    }
}

/// One server-sent event.
fn sse<T: Serialize + ?Sized>(event: &str, data: &T) -> Bytes {
    let data = serde_json::to_string(data).unwrap_or_else(|_| "null".into());
    Bytes::from(format!("event: {event}\ndata: {data}\n\n"))
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;

    use futures_executor::block_on;
    use http::{Method, Request};
    use serde_json::Value;

    use super::*;
    use crate::chat::{post_member, post_visitor};
    use crate::cx::Handler;
    use crate::testing::{
        member as member_fixture, sql_answer, statement, Instance, Responder as Script,
        TestPlatform,
    };
    const CONVERSATION: &str = "00000000-0000-4000-8000-0000000000c1";
    const RESERVATION: &str = "00000000-0000-4000-8000-0000000000e1";
    const SECRET: &str = "0123456789abcdef0123456789abcdef";

    /// A proxy that begins every turn and settles it; the local responder answers.
    fn proxy() -> Script {
        Box::new(|req| {
            let q = statement(req)["query"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            let doc = if q.contains("chat_begin") {
                json!({ "outcome": "ok", "conversation_id": CONVERSATION,
                    "reservation_id": RESERVATION, "memory": [],
                    "grounding": [{ "id": RESERVATION, "sku": "T1", "name": "Trail shoe",
                        "price": "99.000", "currency": "EUR", "category": null,
                        "in_stock": true, "description": "" }],
                    "quota": { "limit": 1, "used": 0, "reserved": 1 } })
            } else {
                json!({ "outcome": "settled",
                    "user_message_id": "00000000-0000-4000-8000-0000000000a1",
                    "assistant_message_id": "00000000-0000-4000-8000-0000000000a2" })
            };
            Ok(sql_answer(&doc))
        })
    }

    fn instance(settings: &[(&'static str, &str)], script: Script) -> Instance {
        Instance::new(settings, script)
    }

    /// Turns as a member (alice) or a visitor would send them.
    trait Turns {
        fn post(
            &self,
            member: bool,
            events: bool,
            body: &str,
        ) -> Result<Response<Body<'_>>, ApiError>;
        fn calls(&self, function: &str) -> Vec<Value>;
    }

    impl Turns for Instance {
        /// `POST` a turn with `body`, streamed when `events`.
        fn post(
            &self,
            member: bool,
            events: bool,
            body: &str,
        ) -> Result<Response<Body<'_>>, ApiError> {
            let mut req = Request::builder()
                .method(Method::POST)
                .uri("/v1/chat")
                .header(header::CONTENT_TYPE, "application/json");
            if events {
                req = req.header(header::ACCEPT, "text/event-stream");
            }
            let principal = member.then(|| member_fixture("alice", &["member"]));
            let req = req.body(Bytes::from(body.to_owned())).unwrap();
            let parts = self.parts("basic", principal, None, req);
            if member {
                block_on(Handler::call(post_member::<TestPlatform>, parts))
            } else {
                block_on(Handler::call(post_visitor::<TestPlatform>, parts))
            }
        }

        /// The statements sent to the proxy, by SQL function.
        fn calls(&self, function: &str) -> Vec<Value> {
            self.platform
                .sent
                .borrow()
                .iter()
                .map(statement)
                .filter(|s| s["query"].as_str().unwrap_or_default().contains(function))
                .collect()
        }
    }

    fn refused(r: Result<Response<Body<'_>>, ApiError>) -> ApiError {
        match r {
            Err(e) => e,
            Ok(resp) => panic!("answered {}", resp.status()),
        }
    }

    fn events(body: &[u8]) -> Vec<(String, Value)> {
        String::from_utf8_lossy(body)
            .split("\n\n")
            .filter(|b| !b.is_empty())
            .map(|b| {
                let (event, data) = b.split_once('\n').unwrap();
                (
                    event.trim_start_matches("event: ").to_owned(),
                    serde_json::from_str(data.trim_start_matches("data: ")).unwrap(),
                )
            })
            .collect()
    }

    #[test]
    fn visitors_are_checked_before_their_body() {
        // No cookie secret: 500 naming the setting, whatever the body.
        let i = instance(&[], proxy());
        let err = refused(i.post(false, false, "not json"));
        assert_eq!(err.code(), Code::Misconfigured);
        let big = json!({ "message": "x".repeat(MAX_MESSAGE_BYTES + 1), "colour": 1 });
        // A message over the limit is 413 before any other member is looked at.
        let i = instance(&[("VISITOR_COOKIE_SECRET", SECRET)], proxy());
        let err = refused(i.post(false, false, &big.to_string()));
        assert_eq!(err.code(), Code::PayloadTooLarge);
        assert_eq!(err.to_problem("/")["limit_bytes"], MAX_MESSAGE_BYTES);
        assert!(i.platform.sent.borrow().is_empty(), "nothing reserved");
    }

    #[test]
    fn visitors_get_shorter_answers_than_members() {
        let i = instance(&[("VISITOR_COOKIE_SECRET", SECRET)], proxy());
        let body = r#"{"message":"hi","max_tokens":300}"#;
        let err = refused(i.post(false, false, body));
        assert_eq!(err.field_errors()[0].field, "max_tokens");
        i.post(true, false, body).unwrap();
        // Unasked, each gets their cap: reserved with the estimate.
        i.post(false, false, r#"{"message":"hi"}"#).unwrap();
        let begins = i.calls("chat_begin");
        let estimate = |n: usize| {
            begins[n]["params"][5]
                .as_str()
                .unwrap()
                .parse::<usize>()
                .unwrap()
        };
        let base = estimate_tokens("hi") + MEMORY_TOKENS + CONTEXT_TOKENS;
        assert_eq!(estimate(0), base + 300);
        assert_eq!(estimate(1), base + VISITOR_MAX_TOKENS as usize);
        assert_eq!(begins[1]["params"][0], "visitor");
    }

    #[test]
    fn a_json_turn_answers_once_settled_and_a_new_visitor_gets_a_cookie() {
        let i = instance(&[("VISITOR_COOKIE_SECRET", SECRET)], proxy());
        let resp = i
            .post(false, false, r#"{"message":"trail shoes?"}"#)
            .unwrap();
        assert_eq!(resp.headers()[header::CACHE_CONTROL], "no-store");
        let cookie = resp.headers()[header::SET_COOKIE].to_str().unwrap();
        assert!(cookie.starts_with("ef_visitor=07070707-0707-4707-8707-070707070707."));
        assert!(cookie
            .ends_with("; Path=/v1/storefront; Max-Age=31536000; HttpOnly; SameSite=Lax; Secure"));
        let Body::Full(body) = resp.into_body() else {
            panic!("a JSON answer is whole");
        };
        let done: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(done["conversation_id"], CONVERSATION);
        assert_eq!(done["responder"], "local");
        assert_eq!(
            done["message"]["id"],
            "00000000-0000-4000-8000-0000000000a2"
        );
        assert!(done["message"]["content"]
            .as_str()
            .unwrap()
            .contains("1. Trail shoe: 99.000 EUR (in stock)"));
        let finish = &i.calls("chat_finish")[0]["params"];
        assert_eq!(finish[4], "ok");
        assert_eq!(finish[5], "edgefront-local");
        assert_eq!(
            done["usage"]["total_tokens"],
            finish[8].as_str().unwrap().parse::<u64>().unwrap()
                + finish[9].as_str().unwrap().parse::<u64>().unwrap()
        );
    }

    #[test]
    fn a_streamed_turn_sends_deltas_then_done() {
        let i = instance(&[], proxy());
        let resp = i.post(true, true, r#"{"message":"trail shoes?"}"#).unwrap();
        assert_eq!(resp.headers()[header::CONTENT_TYPE], "text/event-stream");
        assert_eq!(resp.headers()[header::CACHE_CONTROL], "no-store");
        assert_eq!(resp.headers()["x-accel-buffering"], "no");
        let all = events(&block_on(resp.into_body().collect()));
        let (last, deltas) = all.split_last().unwrap();
        assert!(deltas.len() > 1 && deltas.iter().all(|(e, _)| e == "delta"));
        assert_eq!(last.0, "done");
        assert_eq!(last.1["responder"], "local");
        assert_eq!(
            last.1["user_message_id"],
            "00000000-0000-4000-8000-0000000000a1"
        );
        assert!(last.1.get("message").is_none());
        assert_eq!(i.calls("chat_finish").len(), 1);
    }

    #[test]
    fn a_client_gone_mid_stream_still_settles_exactly_once() {
        let i = instance(&[], proxy());
        let resp = i.post(true, true, r#"{"message":"trail shoes?"}"#).unwrap();
        let Body::Stream { chunks, driver } = resp.into_body() else {
            panic!("an event stream");
        };
        drop(chunks);
        block_on(driver);
        let finish = i.calls("chat_finish");
        assert_eq!(finish.len(), 1);
        assert_eq!(finish[0]["params"][4], "client_disconnect");
        assert_eq!(finish[0]["params"][10], "the client disconnected");
    }

    #[test]
    fn provider_answers_stream_and_their_failures_end_in_an_error_event() {
        let ai = [
            ("AI_BASE_URL", "http://127.0.0.1:8080/v1"),
            ("VISITOR_COOKIE_SECRET", SECRET),
        ];
        let script = |events: &'static str| -> Script {
            let sql = proxy();
            Box::new(move |req| {
                if req.uri().path() == "/v1/chat/completions" {
                    Ok(Response::new(Bytes::from_static(events.as_bytes())))
                } else {
                    sql(req)
                }
            })
        };
        let i = instance(
            &ai,
            script(
                "data: {\"choices\":[{\"delta\":{\"content\":\"Hel\"}}]}\n\n\
                 data: {\"choices\":[{\"delta\":{\"content\":\"lo\"}}]}\n\n\
                 data: {\"choices\":[],\"usage\":{\"prompt_tokens\":7,\"completion_tokens\":2}}\n\n\
                 data: [DONE]\n\n",
            ),
        );
        let resp = i.post(false, true, r#"{"message":"hi"}"#).unwrap();
        assert!(resp.headers().contains_key(header::SET_COOKIE));
        let all = events(&block_on(resp.into_body().collect()));
        let texts: Vec<&str> = all.iter().filter_map(|(_, d)| d["text"].as_str()).collect();
        assert_eq!(texts, ["Hel", "lo"]);
        let (event, done) = all.last().unwrap();
        assert_eq!(event, "done");
        assert_eq!(done["responder"], "provider");
        assert_eq!(
            done["usage"],
            json!({"prompt_tokens": 7, "completion_tokens": 2, "total_tokens": 9})
        );
        let sent = i.platform.sent.borrow();
        let ask = sent
            .iter()
            .find(|r| r.uri().path() == "/v1/chat/completions")
            .unwrap();
        let ask: Value = serde_json::from_slice(ask.body()).unwrap();
        assert_eq!(ask["max_tokens"], VISITOR_MAX_TOKENS);
        assert_eq!(ask["stream"], true);
        assert_eq!(ask["messages"][1], json!({"role": "user", "content": "hi"}));
        drop(sent);

        let i = instance(
            &ai,
            script("data: {\"choices\":[{\"delta\":{\"content\":\"Hel\"}}]}\n\ndata: {\"error\":{\"message\":\"overloaded\"}}\n\n"),
        );
        let resp = i.post(true, true, r#"{"message":"hi"}"#).unwrap();
        let all = events(&block_on(resp.into_body().collect()));
        let (event, problem) = all.last().unwrap();
        assert_eq!(event, "error");
        assert_eq!(problem["code"], "upstream_unavailable");
        assert_eq!(problem["instance"], EVENT_INSTANCE);
        // The provider's message is logged, never streamed to the client.
        assert_eq!(
            problem["detail"],
            "The AI provider did not answer as expected."
        );
        let finish = i.calls("chat_finish");
        assert_eq!(finish.len(), 1);
        assert_eq!(finish[0]["params"][4], "provider_error");
        assert_eq!(finish[0]["params"][7], "Hel");
    }

    #[test]
    fn refusals_reserve_nothing_and_keep_their_codes() {
        let refusals = [
            (json!({ "outcome": "not_found" }), Code::NotFound, None),
            (
                json!({ "outcome": "quota_exhausted", "used": 10, "limit": 10, "reserved": 0,
                    "resets_at": "2023-12-01T00:00:00Z", "retry_after": 99 }),
                Code::QuotaExhausted,
                Some("This tenant's AI quota for the month is used up (10 of 10 tokens); it resets at 2023-12-01T00:00:00Z."),
            ),
            (
                json!({ "outcome": "visitor_limit", "scope": "tenant", "retry_after": 3600 }),
                Code::VisitorLimit,
                Some("This store's assistant is busy; try again later."),
            ),
            (
                json!({ "outcome": "visitor_limit", "scope": "client", "retry_after": 3600 }),
                Code::VisitorLimit,
                Some("Too many messages come from your network; try again later."),
            ),
            (
                json!({ "outcome": "quota_exhausted", "scope": "visitors", "used": 9, "limit": 10,
                    "reserved": 0, "resets_at": "2023-12-01T00:00:00Z", "retry_after": 99 }),
                Code::QuotaExhausted,
                Some("This store's assistant has answered all the visitor messages it can this month; it resets at 2023-12-01T00:00:00Z."),
            ),
        ];
        for (outcome, code, detail) in refusals {
            let seen = Rc::new(RefCell::new(0));
            let count = seen.clone();
            let i = instance(
                &[],
                Box::new(move |_| {
                    *count.borrow_mut() += 1;
                    Ok(sql_answer(&outcome))
                }),
            );
            let err = refused(i.post(true, true, r#"{"message":"hi"}"#));
            assert_eq!(err.code(), code);
            if let Some(d) = detail {
                assert_eq!(err.detail(), d);
            }
            assert_eq!(*seen.borrow(), 1, "chat_begin only");
        }
    }
}
