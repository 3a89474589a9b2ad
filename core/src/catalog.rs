//! The catalog: tenant admin CRUD (`/v1/catalog`) and the listing the public storefront
//! shares. Every request is validated completely before any SQL is built, then costs exactly one
//! SQL batch (one HTTP round trip to the proxy); limits, idempotency and optimistic concurrency
//! are decided inside that batch by the functions of `migrations/`, which also build the
//! documents (`catalog_item_json`); Rust reads their outcomes into [`Write`].

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use crate::cx::{FromPath as _, IdempotencyKey, IfMatch, Json, Member, Path, Query};
use crate::error::{ApiError, Code};
use crate::ids::{hex, is_uuid, Uuid};
use crate::input::{BodyCx, FromJson, FromQuery, JsonObject, QueryString};
use crate::page::{PageRequest, Select, Sort};
use crate::ports::Platform;
use crate::reply::{Cache, Reply};
use crate::resource_id;
use crate::sql::{Params, SqlError, Statement};
use crate::tenancy::Tenant;

/// Page size when none is asked for.
pub const DEFAULT_LIMIT: i64 = 20;
/// Longest `q`, and how many words of it are matched.
const MAX_QUERY: usize = 100;
const MAX_QUERY_WORDS: usize = 5;
const STATUSES: &[&str] = &["draft", "active", "archived"];

resource_id!(
    /// A catalog item's id, as a path names it.
    pub ItemId,
    "catalog item"
);

/// Listing orders; the first is the default (newest first).
pub const SORTS: &[Sort] = &[
    Sort {
        name: "-created_at",
        column: "i.created_at",
        key: "public.iso_utc(i.created_at)",
        cast: "timestamptz",
        descending: true,
    },
    Sort {
        name: "created_at",
        column: "i.created_at",
        key: "public.iso_utc(i.created_at)",
        cast: "timestamptz",
        descending: false,
    },
    Sort {
        name: "name",
        column: "i.name",
        key: "i.name",
        cast: "text",
        descending: false,
    },
    Sort {
        name: "price",
        column: "i.price",
        key: "i.price::text",
        cast: "numeric",
        descending: false,
    },
    Sort {
        name: "-price",
        column: "i.price",
        key: "i.price::text",
        cast: "numeric",
        descending: true,
    },
];

/// An item as the admin API shows it (`public.catalog_item_json`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Item {
    pub id: Uuid,
    pub sku: String,
    pub name: String,
    pub description: Option<String>,
    pub price: String,
    pub currency: String,
    pub category: Option<String>,
    pub inventory: Option<i64>,
    pub status: String,
    pub image_file_ids: Option<Vec<Uuid>>,
    pub version: i64,
    pub created_at: String,
    pub updated_at: String,
}

impl Item {
    /// `"v{version}"`: the item's entity tag, for `If-Match`.
    pub fn etag(&self) -> String {
        format!("\"v{}\"", self.version)
    }
}

/// What `catalog_create` and `catalog_update` decided.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Write {
    Created { item: Item },
    Replayed { item: Item },
    Updated { item: Item },
    NotFound,
    KeyReused,
    SkuTaken,
    TierLimit { limit: i64, count: i64 },
    PreconditionFailed { version: i64 },
}

impl crate::outcome::Outcome for Write {}

impl Write {
    fn refusal(self) -> ApiError {
        match self {
            Self::NotFound => ApiError::not_found(ItemId::KIND),
            Self::KeyReused => ApiError::new(
                Code::IdempotencyKeyReused,
                "This Idempotency-Key was used with a different request body.",
            ),
            Self::SkuTaken => ApiError::new(
                Code::SkuTaken,
                "Another item of this tenant already has this SKU.",
            ),
            Self::TierLimit { limit, count } => ApiError::tier_limit("catalog items", limit, count),
            Self::PreconditionFailed { version } => {
                ApiError::precondition_failed(Some(format!("\"v{version}\"")))
            }
            Self::Created { .. } | Self::Replayed { .. } | Self::Updated { .. } => {
                ApiError::upstream("a catalog write succeeded where it was expected to refuse")
            }
        }
    }
}

/// Maps what the database raises about items: the `catalog_items_check_images` trigger
/// (`migrations/functions/`) lets items reference only ready image files of their tenant.
fn write_error(e: SqlError) -> ApiError {
    match e {
        SqlError::Db(db) if db.code == "P0001" && db.message == Code::ImageNotReady.as_str() => {
            ApiError::new(
                Code::ImageNotReady,
                "image_file_ids may name only this tenant's uploaded, completed image files.",
            )
        }
        other => other.into(),
    }
}

/// Who is listing: admins see drafts and may filter by status; the storefront sees active
/// items only.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Audience {
    Admin,
    Storefront,
}

/// A validated listing request.
#[derive(Debug)]
pub struct Listing {
    page: PageRequest,
    status: Option<String>,
    category: Option<String>,
    words: Vec<String>,
    audience: Audience,
}

/// The admin listing's query (`status` allowed).
pub struct AdminListing(pub Listing);
/// The storefront's listing query (active items only).
pub struct StorefrontListing(pub Listing);

impl FromQuery for AdminListing {
    fn from_query(q: &mut QueryString, _: &BodyCx<'_>) -> Self {
        Self(Listing::read(q, Audience::Admin))
    }
}

impl FromQuery for StorefrontListing {
    fn from_query(q: &mut QueryString, _: &BodyCx<'_>) -> Self {
        Self(Listing::read(q, Audience::Storefront))
    }
}

impl Listing {
    fn read(q: &mut QueryString, audience: Audience) -> Self {
        let sort_first = PageRequest::read(q, SORTS, DEFAULT_LIMIT);
        let status = match audience {
            Audience::Admin => q.one_of("status", STATUSES),
            Audience::Storefront => None,
        };
        let category = q.string("category", 100);
        let words = q
            .string("q", MAX_QUERY)
            .map(|s| {
                s.to_lowercase()
                    .split_whitespace()
                    .take(MAX_QUERY_WORDS)
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default();
        Self {
            page: sort_first,
            status,
            category,
            words,
            audience,
        }
    }

    /// The page's statement, each row's document built by `document` (an expression over `i`).
    pub fn statement(&self, document: &str) -> Statement {
        let mut params = Params::new();
        let mut filters: Vec<String> = Vec::new();
        match (self.audience, &self.status) {
            (Audience::Storefront, _) => filters.push("i.status = 'active'".into()),
            (Audience::Admin, Some(s)) => filters.push(format!("i.status = {}", params.bind(s))),
            (Audience::Admin, None) => filters.push("i.status <> 'archived'".into()),
        }
        if let Some(c) = &self.category {
            filters.push(format!("i.category = {}", params.bind(c)));
        }
        // Every word must match; LIKE metacharacters in a word match literally. The longest
        // word (3+ characters: trigrams) goes through the index first, see
        // catalog_search_ids() in migrations/.
        let pattern = |w: &str| {
            let escaped = w
                .replace('\\', "\\\\")
                .replace('%', "\\%")
                .replace('_', "\\_");
            format!("%{escaped}%")
        };
        if let Some(longest) = self
            .words
            .iter()
            .filter(|w| w.chars().count() >= 3)
            .max_by_key(|w| w.chars().count())
        {
            filters.push(format!(
                "i.id IN (SELECT public.catalog_search_ids({}))",
                params.bind(pattern(longest))
            ));
        }
        for w in &self.words {
            filters.push(format!("i.search_text LIKE {}", params.bind(pattern(w))));
        }
        self.page.statement(
            Select {
                doc: document,
                from: "public.catalog_items i",
                id: "i.id",
                filters,
            },
            params,
        )
    }

    pub fn page(&self) -> &PageRequest {
        &self.page
    }
}

fn is_sku(s: &str) -> bool {
    let b = s.as_bytes();
    (1..=64).contains(&b.len())
        && b.first().is_some_and(u8::is_ascii_alphanumeric)
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b'-'))
}

fn is_currency(s: &str) -> bool {
    s.len() == 3 && s.bytes().all(|b| b.is_ascii_uppercase())
}

/// The tenant's default currency (`settings.currency`), else USD.
pub fn tenant_currency(tenant: &Tenant) -> String {
    tenant
        .settings
        .currency
        .as_deref()
        .filter(|c| is_currency(c))
        .unwrap_or("USD")
        .to_owned()
}

/// The writable members of an item, as sent (only those present).
#[derive(Debug, Default, Serialize)]
pub struct ItemInput {
    #[serde(skip_serializing_if = "Option::is_none")]
    sku: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<String>,
    /// `null` clears it (stored as an empty description).
    #[serde(skip_serializing_if = "Option::is_none")]
    description: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    price: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    currency: Option<String>,
    /// `Some(None)`: `null`, which clears it.
    #[serde(skip_serializing_if = "Option::is_none")]
    category: Option<Option<String>>,
    /// `Some(None)`: `null`, untracked stock (never runs out).
    #[serde(skip_serializing_if = "Option::is_none")]
    inventory: Option<Option<i64>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    status: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    image_file_ids: Option<Vec<String>>,
}

impl ItemInput {
    /// Reads the members; `create` makes sku, name and price required.
    fn read(o: &mut JsonObject, create: bool) -> Self {
        let sku = o.string("sku", create, 64);
        if sku.as_deref().is_some_and(|s| !is_sku(s)) {
            o.error(
                "sku",
                "invalid_value",
                "must be 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit",
            );
        }
        let name = o.string("name", create, 200);
        let description = o
            .nullable_string("description", 5000)
            .map(Option::unwrap_or_default);
        let price = o.decimal("price", create, 9, 3);
        let currency = o.string("currency", false, 3);
        if currency.as_deref().is_some_and(|c| !is_currency(c)) {
            o.error(
                "currency",
                "invalid_value",
                "must be an ISO 4217 code such as USD",
            );
        }
        let category = o.nullable_string("category", 100);
        let inventory = o.nullable_integer("inventory", 0, i64::from(i32::MAX));
        let status = o.one_of("status", false, STATUSES);
        let image_file_ids = o
            .string_array("image_file_ids", 10, is_uuid, "a file id (UUID)")
            .map(|v| v.into_iter().map(|s| s.to_ascii_lowercase()).collect());
        Self {
            sku,
            name,
            description,
            price,
            currency,
            category,
            inventory,
            status,
            image_file_ids,
        }
    }

    /// The members as the SQL functions take them (`jsonb`). A JSON object's members are
    /// sorted, so equal inputs give equal text whatever order the client sent.
    fn to_json(&self) -> Value {
        serde_json::to_value(self).unwrap_or(Value::Object(Map::new()))
    }
}

/// `POST /v1/catalog`'s body.
pub struct NewItem(ItemInput);

impl FromJson for NewItem {
    fn from_json(o: &mut JsonObject, _: &BodyCx<'_>) -> Option<Self> {
        Some(Self(ItemInput::read(o, true)))
    }
}

/// `PATCH /v1/catalog/{id}`'s body: at least one member.
pub struct ItemPatch(ItemInput);

impl FromJson for ItemPatch {
    fn from_json(o: &mut JsonObject, _: &BodyCx<'_>) -> Option<Self> {
        let input = ItemInput::read(o, false);
        if input.to_json().as_object().is_some_and(Map::is_empty) {
            if o.is_clean() {
                o.error("", "empty", "name at least one field to change");
            }
            return None;
        }
        Some(Self(input))
    }
}

fn item_reply(reply: Reply, item: &Item) -> Reply {
    reply.etag(&item.etag()).cache(Cache::Revalidate)
}

pub async fn list<P: Platform>(
    cx: Member<'_, P>,
    Query(AdminListing(listing)): Query<AdminListing>,
) -> Result<Reply, ApiError> {
    let result = cx
        .db
        .one(listing.statement("public.catalog_item_json(i)"))
        .await?;
    let page = listing.page().page::<Item>(&result)?;
    Ok(Reply::ok(&page).cache(Cache::Revalidate))
}

pub async fn create<P: Platform>(
    cx: Member<'_, P>,
    IdempotencyKey(key): IdempotencyKey,
    Json(NewItem(mut item)): Json<NewItem>,
) -> Result<Reply, ApiError> {
    item.currency
        .get_or_insert_with(|| tenant_currency(&cx.tenant));
    let doc = item.to_json().to_string();
    // The key is bound to what the request means, not its bytes: member order and
    // whitespace do not make a different request.
    let hash = key.as_ref().map(|_| hex(&Sha256::digest(doc.as_bytes())));
    let outcome: Write = cx
        .db
        .outcome(Statement::new(
            "SELECT public.catalog_create($1, $2, $3::jsonb) AS outcome",
            vec![key, hash, Some(doc)],
        ))
        .await
        .map_err(write_error)?;
    let (item, replayed) = match outcome {
        Write::Created { item } => (item, false),
        Write::Replayed { item } => (item, true),
        refused => return Err(refused.refusal()),
    };
    let reply = Reply::created(&format!("/v1/catalog/{}", item.id), &item);
    let reply = if replayed {
        reply.header(http::HeaderName::from_static("idempotent-replayed"), "true")
    } else {
        reply
    };
    Ok(item_reply(reply, &item))
}

/// The item `id` as built by `document` (an expression over `i`), among the rows
/// `condition` admits; 404 for another tenant's id or none at all.
pub(crate) async fn find_item<P: Platform, T: serde::de::DeserializeOwned>(
    db: &crate::sql::Db<'_, P>,
    id: &ItemId,
    document: &str,
    condition: &str,
) -> Result<T, ApiError> {
    db.find(Statement::new(
        format!(
            "SELECT ({document}) AS item FROM public.catalog_items i \
             WHERE i.id = $1::uuid AND {condition}"
        ),
        vec![Some(id.to_string())],
    ))
    .await?
    .ok_or_else(|| ApiError::not_found(ItemId::KIND))
}

pub async fn get<P: Platform>(
    cx: Member<'_, P>,
    Path(id): Path<ItemId>,
) -> Result<Reply, ApiError> {
    let item: Item = find_item(&cx.db, &id, "public.catalog_item_json(i)", "true").await?;
    Ok(item_reply(Reply::ok(&item), &item))
}

async fn apply_update<P: Platform>(
    cx: &Member<'_, P>,
    id: &ItemId,
    version: Option<i64>,
    patch: Value,
) -> Result<Reply, ApiError> {
    let outcome: Write = cx
        .db
        .outcome(Statement::new(
            "SELECT public.catalog_update($1::uuid, $2::int, $3::jsonb) AS outcome",
            vec![
                Some(id.to_string()),
                version.map(|v| v.to_string()),
                Some(patch.to_string()),
            ],
        ))
        .await
        .map_err(write_error)?;
    match outcome {
        Write::Updated { item } => Ok(item_reply(Reply::ok(&item), &item)),
        refused => Err(refused.refusal()),
    }
}

pub async fn update<P: Platform>(
    cx: Member<'_, P>,
    Json(ItemPatch(patch)): Json<ItemPatch>,
    IfMatch(version): IfMatch,
    Path(id): Path<ItemId>,
) -> Result<Reply, ApiError> {
    apply_update(&cx, &id, version, patch.to_json()).await
}

/// `DELETE` archives: the item leaves listings and the storefront but keeps its history and
/// its SKU; `PATCH {"status": …}` brings it back (within the tier limit).
pub async fn archive<P: Platform>(
    cx: Member<'_, P>,
    IfMatch(version): IfMatch,
    Path(id): Path<ItemId>,
) -> Result<Reply, ApiError> {
    let patch = ItemInput {
        status: Some("archived".into()),
        ..ItemInput::default()
    };
    apply_update(&cx, &id, version, patch.to_json()).await
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::input::encode_cursor;
    use bytes::Bytes;
    use http::{header, HeaderValue};

    fn listing(uri: &str, audience: Audience) -> Result<Listing, ApiError> {
        let mut q = QueryString::parse(&uri.parse().unwrap());
        let l = Listing::read(&mut q, audience);
        q.finish().map(|()| l)
    }

    #[test]
    fn storefront_listings_only_ever_show_active_items() {
        let l = listing("/x?status=draft&q=red", Audience::Storefront).unwrap();
        let s = l.statement("1");
        assert!(s.query.contains("i.status = 'active'"), "{}", s.query);
        assert!(!s.params.contains(&Some("draft".into())));
    }

    #[test]
    fn search_words_are_bound_and_escaped() {
        let l = listing("/x?q=100%25%20_off%20x", Audience::Admin).unwrap();
        let s = l.statement("1");
        assert!(
            s.params.contains(&Some("%100\\%%".into())),
            "{:?}",
            s.params
        );
        assert!(s.params.contains(&Some("%\\_off%".into())));
        assert!(!s.query.contains("off"));
    }

    #[test]
    fn cursors_continue_after_the_last_row_in_the_same_order() {
        let c = encode_cursor(&[
            "name".into(),
            "Shoe".into(),
            "00000000-0000-4000-8000-000000000001".into(),
        ]);
        let l = listing(&format!("/x?sort=name&cursor={c}"), Audience::Admin).unwrap();
        let s = l.statement("1");
        assert!(
            s.query.contains("(i.name, i.id) > ($1::text, $2::uuid)"),
            "{}",
            s.query
        );
        assert!(s.query.contains("ORDER BY i.name ASC, i.id ASC"));
        // A cursor from another order is refused rather than misread.
        assert!(listing(&format!("/x?sort=price&cursor={c}"), Audience::Admin).is_err());
    }

    #[test]
    fn bad_listing_parameters_are_all_reported() {
        let err = listing(
            "/x?limit=0&status=gone&sort=random&cursor=%%%",
            Audience::Admin,
        )
        .unwrap_err();
        let fields: Vec<_> = err
            .field_errors()
            .iter()
            .map(|e| e.field.as_str())
            .collect();
        // The pager's parameters first, then the listing's own.
        assert_eq!(fields, vec!["sort", "limit", "cursor", "status"]);
    }

    #[test]
    fn items_are_read_with_every_error_named() {
        let h = {
            let mut h = http::HeaderMap::new();
            h.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            h
        };
        let body = Bytes::from(
            r#"{"sku":"bad sku","name":"","price":"1.2345","currency":"usd","inventory":-1,"status":"gone","image_file_ids":["x"],"colour":"red"}"#,
        );
        let mut o = JsonObject::parse(&h, &body, 16 * 1024).unwrap();
        let _ = ItemInput::read(&mut o, true);
        match o.finish() {
            Err(e) => {
                let mut fields: Vec<_> = e.field_errors().iter().map(|e| e.field.clone()).collect();
                fields.sort();
                assert_eq!(
                    fields,
                    vec![
                        "colour",
                        "currency",
                        "image_file_ids",
                        "inventory",
                        "name",
                        "price",
                        "sku",
                        "status"
                    ]
                );
            }
            other => panic!("{other:?}"),
        }
    }
}
