//! The caller's conversations (newest first) and a conversation's messages (oldest first), on
//! the shared keyset pager. An owner sees only their own: another owner's conversation is 404,
//! exactly like one that does not exist.

use serde::{Deserialize, Serialize};

use super::{ConversationId, Owner};
use crate::cx::FromPath as _;
use crate::error::ApiError;
use crate::ids::Uuid;
use crate::input::{BodyCx, FromQuery, QueryString};
use crate::page::{Page, PageRequest, Select, Sort};
use crate::ports::Platform;
use crate::sql::{Db, Params, Statement};

/// Conversations, most recently active first.
const CONVERSATION_SORTS: &[Sort] = &[Sort {
    name: "-updated_at",
    column: "c.updated_at",
    key: "public.iso_utc(c.updated_at)",
    cast: "timestamptz",
    descending: true,
}];

/// Messages, in the order they were written.
const MESSAGE_SORTS: &[Sort] = &[Sort {
    name: "created_at",
    column: "m.created_at",
    key: "public.iso_utc(m.created_at)",
    cast: "timestamptz",
    descending: false,
}];

/// `GET /v1/chat/conversations`' `limit` (default 20) and `cursor`.
pub struct ConversationPage(PageRequest);

impl ConversationPage {
    fn read(q: &mut QueryString) -> Self {
        Self(PageRequest::read(q, CONVERSATION_SORTS, 20))
    }
}

impl FromQuery for ConversationPage {
    fn from_query(q: &mut QueryString, _: &BodyCx<'_>) -> Self {
        Self::read(q)
    }
}

/// A message list's `limit` (default 50) and `cursor`.
pub struct MessagePage(PageRequest);

impl MessagePage {
    fn read(q: &mut QueryString) -> Self {
        Self(PageRequest::read(q, MESSAGE_SORTS, 50))
    }
}

impl FromQuery for MessagePage {
    fn from_query(q: &mut QueryString, _: &BodyCx<'_>) -> Self {
        Self::read(q)
    }
}

const CONVERSATION: &str = "json_build_object('id', c.id, 'title', c.title, \
    'created_at', public.iso_utc(c.created_at), 'updated_at', public.iso_utc(c.updated_at))";

#[derive(Debug, Serialize, Deserialize)]
pub struct Conversation {
    pub id: ConversationId,
    pub title: String,
    pub created_at: String,
    pub updated_at: String,
}

const MESSAGE: &str = "json_build_object('id', m.id, 'role', m.role, 'content', m.content, \
    'prompt_tokens', m.prompt_tokens, 'completion_tokens', m.completion_tokens, \
    'created_at', public.iso_utc(m.created_at))";

#[derive(Debug, Serialize, Deserialize)]
pub struct Message {
    pub id: Uuid,
    pub role: String,
    pub content: String,
    pub prompt_tokens: i64,
    pub completion_tokens: i64,
    pub created_at: String,
}

fn conversations_statement(owner: &Owner, page: &ConversationPage) -> Statement {
    let mut params = Params::new();
    let filters = vec![
        format!("c.owner_kind = {}", params.bind(owner.kind())),
        format!("c.owner_id = {}", params.bind(owner.id())),
    ];
    page.0.statement(
        Select {
            doc: CONVERSATION,
            from: "public.conversations c",
            id: "c.id",
            filters,
        },
        params,
    )
}

pub(super) async fn conversations<P: Platform>(
    db: &Db<'_, P>,
    owner: &Owner,
    page: &ConversationPage,
) -> Result<Page<Conversation>, ApiError> {
    let result = db.one(conversations_statement(owner, page)).await?;
    Ok(page.0.page(&result)?)
}

/// Whether `owner` owns conversation `id`, and the page of its complete messages.
fn messages_statements(owner: &Owner, id: &ConversationId, page: &MessagePage) -> [Statement; 2] {
    let owned = Statement::new(
        "SELECT to_json(count(*) = 1) AS owned FROM public.conversations \
         WHERE id = $1::uuid AND owner_kind = $2 AND owner_id = $3",
        vec![
            Some(id.to_string()),
            Some(owner.kind().into()),
            Some(owner.id().into()),
        ],
    );
    let mut params = Params::new();
    let filters = vec![
        format!("m.conversation_id = {}::uuid", params.bind(id.to_string())),
        format!("c.owner_kind = {}", params.bind(owner.kind())),
        format!("c.owner_id = {}", params.bind(owner.id())),
        "m.status = 'complete'".to_owned(),
    ];
    let list = page.0.statement(
        Select {
            doc: MESSAGE,
            from: "public.messages m JOIN public.conversations c \
                   ON c.tenant_id = m.tenant_id AND c.id = m.conversation_id",
            id: "m.id",
            filters,
        },
        params,
    );
    [owned, list]
}

pub(super) async fn messages<P: Platform>(
    db: &Db<'_, P>,
    owner: &Owner,
    id: &ConversationId,
    page: &MessagePage,
) -> Result<Page<Message>, ApiError> {
    let results = db.batch(&messages_statements(owner, id, page)).await?;
    let [owned, list] = results.as_slice() else {
        return Err(ApiError::upstream("the message list returned no result"));
    };
    if !owned.doc::<bool>()? {
        return Err(ApiError::not_found(ConversationId::KIND));
    }
    Ok(page.0.page(list)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "00000000-0000-4000-8000-0000000000c1";

    fn query(uri: &str) -> QueryString {
        QueryString::parse(&uri.parse().unwrap())
    }

    #[test]
    fn conversations_are_the_owners_newest_first() {
        let owner = Owner::User("alice".into());
        let s = conversations_statement(&owner, &ConversationPage::read(&mut query("/x?limit=5")));
        assert!(
            s.query.contains("WHERE c.owner_kind = $1 AND c.owner_id = $2 ORDER BY c.updated_at DESC, c.id DESC LIMIT $3::int"),
            "{}",
            s.query
        );
        assert_eq!(
            s.params,
            vec![Some("user".into()), Some("alice".into()), Some("6".into())]
        );
    }

    #[test]
    fn messages_are_the_owners_complete_ones_oldest_first() {
        let owner = Owner::Visitor("v1".into());
        let id = ConversationId(Uuid::parse(ID).unwrap());
        let [owned, list] = messages_statements(&owner, &id, &MessagePage::read(&mut query("/x")));
        assert_eq!(
            owned.params,
            vec![Some(ID.into()), Some("visitor".into()), Some("v1".into())]
        );
        assert!(
            list.query.contains("m.status = 'complete'"),
            "{}",
            list.query
        );
        assert!(list.query.contains("ORDER BY m.created_at ASC, m.id ASC"));
        assert_eq!(list.params.last(), Some(&Some("51".into())));
    }
}
