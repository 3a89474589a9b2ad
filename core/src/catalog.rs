//! The catalog: tenant admin CRUD (`/v1/catalog`) and the listing queries the public storefront
//! shares. Every request is validated completely before any SQL is built, then costs exactly one
//! SQL batch (one HTTP round trip to the proxy); limits, idempotency and optimistic concurrency
//! are decided inside that batch by the functions of `migrations/0002_catalog.sql`.

use bytes::Bytes;
use http::{header, HeaderValue, Request, Response, StatusCode};
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};

use crate::error::{json_response, ApiError, FieldError};
use crate::ids::{hex, is_uuid};
use crate::input::{encode_cursor, JsonObject, Query};
use crate::ports::Platform;
use crate::routes::{Ctx, Scope};
use crate::sql::{self, Param, Statement};
use crate::tenancy::Tenant;

/// Largest catalog request body.
pub const MAX_BODY: usize = 16 * 1024;
/// Page sizes.
pub const DEFAULT_LIMIT: i64 = 20;
pub const MAX_LIMIT: i64 = 100;
/// Longest `q`, and how many words of it are matched.
const MAX_QUERY: usize = 100;
const MAX_QUERY_WORDS: usize = 5;
const STATUSES: &[&str] = &["draft", "active", "archived"];

/// Listing orders: name, SQL key expression (as text, for the cursor), its type, direction.
struct Sort {
    name: &'static str,
    key: &'static str,
    cast: &'static str,
    descending: bool,
}

const SORTS: &[Sort] = &[
    Sort {
        name: "-created_at",
        key: "public.iso_utc(i.created_at)",
        cast: "timestamptz",
        descending: true,
    },
    Sort {
        name: "created_at",
        key: "public.iso_utc(i.created_at)",
        cast: "timestamptz",
        descending: false,
    },
    Sort {
        name: "name",
        key: "i.name",
        cast: "text",
        descending: false,
    },
    Sort {
        name: "price",
        key: "i.price::text",
        cast: "numeric",
        descending: false,
    },
    Sort {
        name: "-price",
        key: "i.price::text",
        cast: "numeric",
        descending: true,
    },
];

/// Newest first.
const DEFAULT_SORT: &Sort = &SORTS[0];

impl Sort {
    /// The column the ORDER BY and the keyset comparison use.
    fn column(&self) -> &'static str {
        match self.cast {
            "timestamptz" => "i.created_at",
            "numeric" => "i.price",
            _ => "i.name",
        }
    }
}

/// Who is listing: admins see drafts and may filter by status; the storefront sees active
/// items only.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Audience {
    Admin,
    Storefront,
}

/// A validated listing request.
pub struct Listing {
    sort: &'static Sort,
    limit: i64,
    after: Option<(String, String)>,
    status: Option<String>,
    category: Option<String>,
    words: Vec<String>,
    audience: Audience,
}

impl Listing {
    pub fn from_query(req: &Request<Bytes>, audience: Audience) -> Result<Self, ApiError> {
        let mut q = Query::parse(req.uri());
        let sort_names: Vec<&str> = SORTS.iter().map(|s| s.name).collect();
        let sort = q
            .one_of("sort", &sort_names)
            .and_then(|n| SORTS.iter().find(|s| s.name == n))
            .unwrap_or(DEFAULT_SORT);
        let limit = q.integer("limit", 1, MAX_LIMIT, DEFAULT_LIMIT);
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
        let after = match q.cursor("cursor") {
            Some(key) => match key.as_slice() {
                [name, k, id] if name == sort.name && is_uuid(id) => Some((k.clone(), id.clone())),
                _ => {
                    q.error(
                        "cursor",
                        "invalid_cursor",
                        "belongs to another sort order or is malformed",
                    );
                    None
                }
            },
            None => None,
        };
        q.finish()?;
        Ok(Self {
            sort,
            limit,
            after,
            status,
            category,
            words,
            audience,
        })
    }

    /// The page's statement: documents in order, one extra row to tell whether more follow.
    pub fn statement(&self, document: &str) -> Statement {
        let mut params: Vec<Param> = Vec::new();
        let mut bind = |v: String| {
            params.push(Some(v));
            format!("${}", params.len())
        };
        let mut filters: Vec<String> = Vec::new();
        match (self.audience, &self.status) {
            (Audience::Storefront, _) => filters.push("i.status = 'active'".into()),
            (Audience::Admin, Some(s)) => filters.push(format!("i.status = {}", bind(s.clone()))),
            (Audience::Admin, None) => filters.push("i.status <> 'archived'".into()),
        }
        if let Some(c) = &self.category {
            filters.push(format!("i.category = {}", bind(c.clone())));
        }
        // Every word must match; LIKE metacharacters in a word match literally. The longest
        // word (3+ characters: trigrams) goes through the index first, see
        // catalog_search_ids() in migrations/0002_catalog.sql.
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
                bind(pattern(longest))
            ));
        }
        for w in &self.words {
            filters.push(format!("i.search_text LIKE {}", bind(pattern(w))));
        }
        let (cmp, dir) = if self.sort.descending {
            ("<", "DESC")
        } else {
            (">", "ASC")
        };
        if let Some((k, id)) = &self.after {
            let k = bind(k.clone());
            let id = bind(id.clone());
            filters.push(format!(
                "({}, i.id) {cmp} ({k}::{}, {id}::uuid)",
                self.sort.column(),
                self.sort.cast
            ));
        }
        let limit = bind((self.limit + 1).to_string());
        let query = format!(
            "SELECT ({document})::text AS doc, {key} AS sort_key, i.id::text AS id \
             FROM public.catalog_items i WHERE {filters} \
             ORDER BY {col} {dir}, i.id {dir} LIMIT {limit}::int",
            key = self.sort.key,
            col = self.sort.column(),
            filters = filters.join(" AND "),
        );
        Statement::new(query, params)
    }

    /// Turns the statement's rows into `{items, next_cursor}`.
    pub fn page(
        &self,
        result: &sql::QueryResult,
        map: impl Fn(Value) -> Value,
    ) -> Result<Value, ApiError> {
        let docs = result.json_column("doc")?;
        let (k_col, id_col) = (result.column("sort_key"), result.column("id"));
        let more = docs.len() as i64 > self.limit;
        let shown = usize::try_from(self.limit)
            .unwrap_or(usize::MAX)
            .min(docs.len());
        let next = if more && shown > 0 {
            let row = result.rows.get(shown - 1);
            let cell = |c: Option<usize>| {
                row.and_then(|r| r.get(c?))
                    .and_then(|v| v.clone())
                    .unwrap_or_default()
            };
            Some(encode_cursor(&[
                self.sort.name.to_owned(),
                cell(k_col),
                cell(id_col),
            ]))
        } else {
            None
        };
        let items: Vec<Value> = docs.into_iter().take(shown).map(map).collect();
        Ok(json!({ "items": items, "next_cursor": next }))
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
        .get("currency")
        .and_then(Value::as_str)
        .filter(|c| is_currency(c))
        .unwrap_or("USD")
        .to_owned()
}

/// Reads the writable members of an item. `create` makes sku, name and price required.
fn read_item(o: &mut JsonObject, create: bool) -> Map<String, Value> {
    let mut doc = Map::new();
    let mut put = |k: &str, v: Option<Value>| {
        if let Some(v) = v {
            doc.insert(k.to_owned(), v);
        }
    };
    let sku = o.string("sku", create, 64);
    if let Some(s) = &sku {
        if !is_sku(s) {
            o.error(
                "sku",
                "invalid_value",
                "must be 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit",
            );
        }
    }
    put("sku", sku.map(Value::from));
    put("name", o.string("name", create, 200).map(Value::from));
    let description = o
        .nullable_string("description", 5000)
        .map(|d| Value::from(d.unwrap_or_default()));
    put("description", description);
    put("price", o.decimal("price", create, 9, 3).map(Value::from));
    let currency = o.string("currency", false, 3);
    if let Some(c) = &currency {
        if !is_currency(c) {
            o.error(
                "currency",
                "invalid_value",
                "must be an ISO 4217 code such as USD",
            );
        }
    }
    put("currency", currency.map(Value::from));
    put(
        "category",
        o.nullable_string("category", 100)
            .map(|c| c.map_or(Value::Null, Value::from)),
    );
    put(
        "inventory",
        o.integer("inventory", false, 0, i64::from(i32::MAX))
            .map(Value::from),
    );
    put(
        "status",
        o.one_of("status", false, STATUSES).map(Value::from),
    );
    let images = o.string_array("image_file_ids", 10, is_uuid, "a file id (UUID)");
    put(
        "image_file_ids",
        images.map(|v| {
            v.into_iter()
                .map(|s| Value::from(s.to_ascii_lowercase()))
                .collect()
        }),
    );
    doc
}

/// The `Idempotency-Key` header: 1-255 visible ASCII characters.
fn idempotency_key(req: &Request<Bytes>) -> Result<Option<String>, ApiError> {
    let Some(v) = req.headers().get("idempotency-key") else {
        return Ok(None);
    };
    match v.to_str() {
        Ok(k) if (1..=255).contains(&k.len()) && k.bytes().all(|b| b.is_ascii_graphic()) => {
            Ok(Some(k.to_owned()))
        }
        _ => Err(ApiError::Validation(vec![FieldError::new(
            "Idempotency-Key",
            "invalid_value",
            "must be 1-255 visible ASCII characters",
        )])),
    }
}

/// `"v{version}"`: the item's entity tag, for `If-Match`.
pub fn item_etag(doc: &Value) -> String {
    format!(
        "\"v{}\"",
        doc.get("version").and_then(Value::as_i64).unwrap_or(0)
    )
}

fn item_response(status: StatusCode, doc: &Value) -> Response<Bytes> {
    let mut resp = json_response(status, doc);
    let h = resp.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&item_etag(doc)) {
        h.insert(header::ETAG, v);
    }
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("private, no-cache"),
    );
    resp
}

/// One statement in one tenant-scoped batch; its only result.
pub(crate) async fn run_one<P: Platform>(
    ctx: &Ctx<'_, P>,
    tenant: &Tenant,
    stmt: Statement,
) -> Result<sql::QueryResult, ApiError> {
    let mut results =
        sql::tenant_transaction(ctx.platform, &ctx.config.origin, &tenant.id, &[stmt])
            .await
            .map_err(|e| {
                match e {
        // migrations/0005: images must be ready image files of this tenant.
        sql::SqlError::Db(db) if db.code == "P0001" && db.message == "image_not_ready" => {
            ApiError::Unprocessable {
                code: "image_not_ready",
                detail:
                    "image_file_ids may name only this tenant's uploaded, completed image files."
                        .into(),
            }
        }
        other => other.into(),
    }
            })?;
    results
        .pop()
        .ok_or_else(|| ApiError::Upstream("the SQL proxy returned no result".into()))
}

/// The JSON outcome a catalog function returned.
async fn call<P: Platform>(
    ctx: &Ctx<'_, P>,
    tenant: &Tenant,
    stmt: Statement,
) -> Result<Value, ApiError> {
    let result = run_one(ctx, tenant, stmt).await?;
    result
        .json_column("outcome")?
        .pop()
        .ok_or_else(|| ApiError::Upstream("the catalog function returned no row".into()))
}

fn outcome_error(outcome: &Value, current_etag: Option<String>) -> ApiError {
    let int = |k: &str| outcome.get(k).and_then(Value::as_i64).unwrap_or(0);
    match outcome.get("outcome").and_then(Value::as_str) {
        Some("not_found") => ApiError::ResourceNotFound("catalog item"),
        Some("key_reused") => ApiError::Conflict {
            code: "idempotency_key_reused",
            detail: "This Idempotency-Key was used with a different request body.".into(),
        },
        Some("sku_taken") => ApiError::Conflict {
            code: "sku_taken",
            detail: "Another item of this tenant already has this SKU.".into(),
        },
        Some("tier_limit") => ApiError::TierLimit {
            resource: "catalog items",
            limit: int("limit"),
            count: int("count"),
        },
        Some("precondition_failed") => ApiError::PreconditionFailed {
            current_etag: current_etag.or_else(|| Some(format!("\"v{}\"", int("version")))),
        },
        other => ApiError::Upstream(format!("unexpected catalog outcome {other:?}")),
    }
}

pub async fn list<P: Platform>(
    ctx: &Ctx<'_, P>,
    scope: &Scope,
    req: &Request<Bytes>,
) -> Result<Response<Bytes>, ApiError> {
    let tenant = scope.tenant()?;
    let listing = Listing::from_query(req, Audience::Admin)?;
    let result = run_one(
        ctx,
        tenant,
        listing.statement("public.catalog_item_json(i)"),
    )
    .await?;
    let body = listing.page(&result, |v| v)?;
    let mut resp = json_response(StatusCode::OK, &body);
    resp.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("private, no-cache"),
    );
    Ok(resp)
}

pub async fn create<P: Platform>(
    ctx: &Ctx<'_, P>,
    scope: &Scope,
    req: &Request<Bytes>,
) -> Result<Response<Bytes>, ApiError> {
    let tenant = scope.tenant()?;
    let key = idempotency_key(req)?;
    let mut o = JsonObject::parse(req.headers(), req.body(), MAX_BODY)?;
    let mut doc = read_item(&mut o, true);
    o.finish()?;
    doc.entry("currency")
        .or_insert_with(|| Value::from(tenant_currency(tenant)));
    let doc = Value::Object(doc);
    // The key is bound to what the request means, not its bytes: member order and
    // whitespace do not make a different request.
    let hash = hex(&Sha256::digest(doc.to_string().as_bytes()));
    let outcome = call(
        ctx,
        tenant,
        Statement::new(
            "SELECT public.catalog_create($1, $2, $3::jsonb)::text AS outcome",
            vec![key.clone(), key.map(|_| hash), Some(doc.to_string())],
        ),
    )
    .await?;
    let replayed = match outcome.get("outcome").and_then(Value::as_str) {
        Some("created") => false,
        Some("replayed") => true,
        _ => return Err(outcome_error(&outcome, None)),
    };
    let item = outcome.get("item").cloned().unwrap_or(Value::Null);
    let mut resp = item_response(StatusCode::CREATED, &item);
    let h = resp.headers_mut();
    if let Some(id) = item.get("id").and_then(Value::as_str) {
        if let Ok(v) = HeaderValue::from_str(&format!("/v1/catalog/{id}")) {
            h.insert(header::LOCATION, v);
        }
    }
    if replayed {
        h.insert("idempotent-replayed", HeaderValue::from_static("true"));
    }
    Ok(resp)
}

/// The item the path names, as built by `document` (an expression over `i`), among the
/// rows `condition` admits; 404 for a malformed id, another tenant's, or none at all.
pub(crate) async fn find_item<P: Platform>(
    ctx: &Ctx<'_, P>,
    scope: &Scope,
    document: &str,
    condition: &str,
) -> Result<Value, ApiError> {
    let tenant = scope.tenant()?;
    let id = scope.uuid("catalog item")?;
    let stmt = Statement::new(
        format!(
            "SELECT ({document})::text AS item FROM public.catalog_items i \
             WHERE i.id = $1::uuid AND {condition}"
        ),
        vec![Some(id)],
    );
    run_one(ctx, tenant, stmt)
        .await?
        .json_column("item")?
        .pop()
        .ok_or(ApiError::ResourceNotFound("catalog item"))
}

pub async fn get<P: Platform>(
    ctx: &Ctx<'_, P>,
    scope: &Scope,
) -> Result<Response<Bytes>, ApiError> {
    let item = find_item(ctx, scope, "public.catalog_item_json(i)", "true").await?;
    Ok(item_response(StatusCode::OK, &item))
}

/// `If-Match`: `None` when absent or `*`, the version it names, or 412 for a tag that can
/// never match (not one of ours).
fn if_match_version(req: &Request<Bytes>) -> Result<Option<i64>, ApiError> {
    let Some(v) = req.headers().get(header::IF_MATCH) else {
        return Ok(None);
    };
    let v = v.to_str().unwrap_or_default().trim();
    if v == "*" {
        return Ok(None);
    }
    v.trim_start_matches("W/")
        .trim_matches('"')
        .strip_prefix('v')
        .and_then(|n| n.parse::<i64>().ok())
        .filter(|n| *n > 0 && *n <= i64::from(i32::MAX))
        .map(Some)
        .ok_or(ApiError::PreconditionFailed { current_etag: None })
}

async fn apply_update<P: Platform>(
    ctx: &Ctx<'_, P>,
    scope: &Scope,
    req: &Request<Bytes>,
    patch: Value,
) -> Result<Response<Bytes>, ApiError> {
    let tenant = scope.tenant()?;
    let version = if_match_version(req)?;
    let id = scope.uuid("catalog item")?;
    let outcome = call(
        ctx,
        tenant,
        Statement::new(
            "SELECT public.catalog_update($1::uuid, $2::int, $3::jsonb)::text AS outcome",
            vec![
                Some(id),
                version.map(|v| v.to_string()),
                Some(patch.to_string()),
            ],
        ),
    )
    .await?;
    match outcome.get("outcome").and_then(Value::as_str) {
        Some("updated") => Ok(item_response(
            StatusCode::OK,
            outcome.get("item").unwrap_or(&Value::Null),
        )),
        _ => Err(outcome_error(&outcome, None)),
    }
}

pub async fn update<P: Platform>(
    ctx: &Ctx<'_, P>,
    scope: &Scope,
    req: &Request<Bytes>,
) -> Result<Response<Bytes>, ApiError> {
    let mut o = JsonObject::parse(req.headers(), req.body(), MAX_BODY)?;
    let doc = read_item(&mut o, false);
    let empty = doc.is_empty();
    o.finish()?;
    if empty {
        return Err(ApiError::Validation(vec![FieldError::new(
            "",
            "empty",
            "name at least one field to change",
        )]));
    }
    apply_update(ctx, scope, req, Value::Object(doc)).await
}

/// `DELETE` archives: the item leaves listings and the storefront but keeps its history and
/// its SKU; `PATCH {"status": …}` brings it back (within the tier limit).
pub async fn archive<P: Platform>(
    ctx: &Ctx<'_, P>,
    scope: &Scope,
    req: &Request<Bytes>,
) -> Result<Response<Bytes>, ApiError> {
    apply_update(ctx, scope, req, json!({ "status": "archived" })).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listing(uri: &str, audience: Audience) -> Result<Listing, ApiError> {
        let req = Request::get(uri).body(Bytes::new()).unwrap();
        Listing::from_query(&req, audience)
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
        match listing(
            "/x?limit=0&status=gone&sort=random&cursor=%%%",
            Audience::Admin,
        ) {
            Err(ApiError::Validation(errors)) => {
                let fields: Vec<_> = errors.iter().map(|e| e.field.as_str()).collect();
                assert_eq!(fields, vec!["sort", "limit", "status", "cursor"]);
            }
            other => panic!("{:?}", other.err()),
        }
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
        let mut o = JsonObject::parse(&h, &body, MAX_BODY).unwrap();
        let _ = read_item(&mut o, true);
        match o.finish() {
            Err(ApiError::Validation(errors)) => {
                let mut fields: Vec<_> = errors.iter().map(|e| e.field.clone()).collect();
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
