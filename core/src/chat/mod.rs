//! AI chat: `POST /v1/chat` (signed-in members) and `POST /v1/storefront/chat` (anonymous
//! visitors, identified by a signed HttpOnly cookie), answered by an OpenAI-compatible provider
//! (or the built-in local responder) and streamed as server-sent events; and the caller's own
//! conversations and messages.
//!
//! A turn is two SQL batches around the completion (see [`turn`]): `chat_begin` reserves the
//! turn's worst case against the tenant's monthly quota, and `chat_finish` settles that
//! reservation exactly once, whichever way the completion ends.
//!
//! - [`prompt`]: what the model sees (search words, grounding, memory) and the local responder;
//! - [`provider`]: the OpenAI-compatible streaming request and its server-sent events;
//! - [`turn`]: one turn, from the request body to settlement, streamed or whole;
//! - [`history`]: the conversation and message lists, on the shared pager.

mod history;
mod prompt;
mod provider;
mod turn;

use http::{header, HeaderMap, Response};

use crate::body::Body;
use crate::cx::{Json, Member, Path, Public, Query};
use crate::error::ApiError;
use crate::ports::Platform;
use crate::reply::{Cache, Reply};
use crate::resource_id;
use crate::visitor::{KnownVisitor, Visitor};

// What the handlers' signatures name.
pub use history::{ConversationPage, MessagePage};
pub use turn::{TurnRequest, MAX_MESSAGE_BYTES};

use turn::Turn;

resource_id!(
    /// A conversation's id, as a path or a turn request names it.
    pub ConversationId,
    "conversation"
);

/// Who owns a conversation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Owner {
    /// A signed-in user (the token's subject).
    User(String),
    /// An anonymous visitor (the id in their cookie).
    Visitor(String),
}

impl Owner {
    /// As `conversations.owner_kind` stores it.
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

/// Whether the client asked for server-sent events rather than one JSON answer.
fn wants_events(headers: &HeaderMap) -> bool {
    headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("text/event-stream"))
}

/// `POST /v1/chat`: a member's turn.
pub async fn post_member<'a, P: Platform>(
    cx: Member<'a, P>,
    Json(request): Json<TurnRequest>,
) -> Result<Response<Body<'a>>, ApiError> {
    let owner = Owner::User(cx.user().to_owned());
    let events = wants_events(cx.headers());
    let turn = Turn::begin(cx.env, cx.tenant, cx.db, owner, None, request).await?;
    turn.answer(events).await
}

/// `POST /v1/storefront/chat`: a visitor's turn. The visitor is established (and the cookie
/// secret checked) before the body is read; a new visitor's cookie comes with the answer.
/// Visitors are limited per cookie, per client IP and all together per hour, and share a
/// monthly budget inside the tenant's (see `chat_begin`), so the team can always chat.
pub async fn post_visitor<'a, P: Platform>(
    cx: Public<'a, P>,
    visitor: Visitor,
    Json(request): Json<TurnRequest>,
) -> Result<Response<Body<'a>>, ApiError> {
    let events = wants_events(cx.headers());
    let owner = Owner::Visitor(visitor.id);
    let turn = Turn::begin(cx.env, cx.tenant, cx.db, owner, visitor.client, request).await?;
    let mut resp = turn.answer(events).await?;
    if let Some(cookie) = visitor.set_cookie {
        resp.headers_mut().insert(header::SET_COOKIE, cookie);
    }
    Ok(resp)
}

/// `GET /v1/chat/conversations`: the caller's conversations, most recent first.
pub async fn conversations<P: Platform>(
    cx: Member<'_, P>,
    Query(page): Query<ConversationPage>,
) -> Result<Reply, ApiError> {
    let owner = Owner::User(cx.user().to_owned());
    let page = history::conversations(&cx.db, &owner, &page).await?;
    Ok(Reply::ok(&page).cache(Cache::Private))
}

/// `GET /v1/chat/conversations/{id}/messages`: a conversation of the caller's, oldest first.
pub async fn messages_member<P: Platform>(
    cx: Member<'_, P>,
    Path(id): Path<ConversationId>,
    Query(page): Query<MessagePage>,
) -> Result<Reply, ApiError> {
    let owner = Owner::User(cx.user().to_owned());
    let page = history::messages(&cx.db, &owner, &id, &page).await?;
    Ok(Reply::ok(&page).cache(Cache::Private))
}

/// `GET /v1/storefront/chat/conversations/{id}/messages`: the visitor's own conversation only;
/// without a valid cookie there is none (404).
pub async fn messages_visitor<P: Platform>(
    cx: Public<'_, P>,
    KnownVisitor(visitor, _): KnownVisitor<ConversationId>,
    Path(id): Path<ConversationId>,
    Query(page): Query<MessagePage>,
) -> Result<Reply, ApiError> {
    let owner = Owner::Visitor(visitor);
    let page = history::messages(&cx.db, &owner, &id, &page).await?;
    Ok(Reply::ok(&page).cache(Cache::Private))
}

#[cfg(test)]
mod tests {
    use crate::tenancy::Tenant;

    /// A tenant with default settings.
    pub(super) fn tenant(id: &str) -> Tenant {
        crate::testing::tenant(id, "basic")
    }
}
