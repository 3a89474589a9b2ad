//! The platform API (`/v1/platform/tenants`: platform admins, on the platform host) and
//! self-service sign-up (`/v1/signup`: any signed-in user there). The router has already checked
//! the host and the caller. Every request is validated completely before any SQL is built, then
//! costs one call to a SECURITY DEFINER function of `migrations/functions/50_identity.sql`
//! (`platform_tenant_*`, `signup_create`), whose outcome Rust reads into a typed enum.
//!
//! Every change to a tenant forgets the tenant records cached for its hosts
//! ([`tenancy::invalidate`]): a suspension answers 403 from the tenant's next request on, and a
//! new tenant's subdomain works at once even if someone probed it (and cached "no such tenant")
//! before. A deleted tenant keeps its data until the operator's purge job (`platform_purge`,
//! which the app role may not call) removes it; [`purge_prefix`] removes its uploaded objects.

mod purge;

pub use purge::{purge, purge_prefix};

use http::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::config::Config;
use crate::cx::{
    Account, Extract, FromPath as _, IfMatch, Json, Path, PlatformAdmin, Query, RequestParts,
};
use crate::error::{ApiError, Code};
use crate::identity;
use crate::ids::{TenantId, Uuid};
use crate::input::{is_email, BodyCx, FromJson, FromQuery, JsonObject, QueryString, MAX_EMAIL};
use crate::page::{PageRequest, Select, Sort};
use crate::ports::Platform;
use crate::reply::{Cache, Reply};
use crate::resource_id;
use crate::settings::Domain;
use crate::sql::{Params, Statement};
use crate::team::{Invitation, InvitationToken};
use crate::tenancy::{self, Hosts, Slug, TenantStatus};

/// Page size when none is asked for.
pub const DEFAULT_LIMIT: i64 = 20;
const TIERS: &[&str] = &["basic", "premium", "enterprise"];
/// What `PATCH` may set; `deleted` is `DELETE`'s.
const PATCH_STATUSES: &[&str] = &["active", "suspended"];
const STATUSES: &[&str] = &["active", "suspended", "deleted"];
/// Longest tenant name, and longest `q` of a listing (characters).
const MAX_NAME: usize = 200;
/// Longest email address (RFC 5321's path limit).
/// Largest `settings` a tenant is created with (bytes of JSON).
pub const MAX_SETTINGS: usize = 16 * 1024;

resource_id!(
    /// A tenant's id, as a platform path names it.
    pub TenantRef,
    "tenant"
);

/// Listing orders; the first is the default (newest first).
pub const SORTS: &[Sort] = &[
    Sort {
        name: "-created_at",
        column: "t.created_at",
        key: "public.iso_utc(t.created_at)",
        cast: "timestamptz",
        descending: true,
    },
    Sort {
        name: "created_at",
        column: "t.created_at",
        key: "public.iso_utc(t.created_at)",
        cast: "timestamptz",
        descending: false,
    },
    Sort {
        name: "slug",
        column: "t.slug",
        key: "t.slug",
        cast: "text",
        descending: false,
    },
];

/// A tenant as the platform sees it (`public.platform_tenant_json`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PlatformTenant {
    pub id: TenantId,
    pub slug: Slug,
    pub name: String,
    pub tier: String,
    pub status: TenantStatus,
    /// `tenants.settings`, as stored.
    #[serde(default)]
    pub settings: Map<String, Value>,
    pub created_at: String,
    pub updated_at: String,
    /// When it was deleted (its data is purged a grace period later).
    pub deleted_at: Option<String>,
    pub version: i64,
    /// How many members it has.
    pub members: i64,
    pub domains: Vec<Domain>,
}

impl PlatformTenant {
    /// `"v{version}"`: the tenant's entity tag, for `If-Match`.
    pub fn etag(&self) -> String {
        format!("\"v{}\"", self.version)
    }
}

/// What `platform_tenant_create` decided.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "snake_case")]
enum CreateOutcome {
    Created {
        tenant: Box<PlatformTenant>,
        invitation: Invitation,
    },
    SlugTaken,
}

impl crate::outcome::Outcome for CreateOutcome {}

/// What `platform_tenant_update` decided.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "snake_case")]
enum UpdateOutcome {
    Updated {
        tenant: Box<PlatformTenant>,
        hosts: Hosts,
    },
    NotFound,
    VersionMismatch {
        tenant: Box<PlatformTenant>,
    },
}

impl crate::outcome::Outcome for UpdateOutcome {}

/// What `platform_tenant_delete` decided.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "snake_case")]
enum DeleteOutcome {
    Deleted {
        tenant: Box<PlatformTenant>,
        hosts: Hosts,
    },
    NotFound,
}

impl crate::outcome::Outcome for DeleteOutcome {}

/// What `signup_create` decided.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "snake_case")]
enum SignupOutcome {
    Created { tenant: Box<PlatformTenant> },
    SlugTaken,
    AlreadyMember,
}

impl crate::outcome::Outcome for SignupOutcome {}

fn slug_taken(slug: &Slug) -> ApiError {
    ApiError::new(
        Code::SlugTaken,
        format!(
            "Another tenant already uses the slug {slug} (a deleted tenant keeps it until it is purged)."
        ),
    )
}

fn not_found() -> ApiError {
    ApiError::not_found(TenantRef::KIND)
}

/// Whether `slug` may never name a tenant: a reserved label, or the platform host's own name
/// (`{slug}.{BASE_DOMAIN}` would be served the platform API, never the tenant).
fn is_reserved(slug: &Slug, config: &Config) -> bool {
    config.tenancy.reserved.iter().any(|r| r == slug.as_str())
        || format!("{slug}.{}", config.base_domain) == config.platform.host
}

/// Reads `slug`: a DNS label ([`Slug`]) that is not reserved.
fn read_slug(o: &mut JsonObject, config: &Config) -> Option<Slug> {
    let raw = o.string("slug", true, 253)?;
    let Some(slug) = Slug::parse(&raw) else {
        o.error(
            "slug",
            "invalid_value",
            "must be 1-63 lower-case letters, digits or '-', starting and ending with a letter or digit",
        );
        return None;
    };
    if is_reserved(&slug, config) {
        o.error(
            "slug",
            "reserved",
            format!("{slug} is reserved and cannot name a tenant"),
        );
        return None;
    }
    Some(slug)
}

/// Reads an email address member, lower-cased (as invitations store and match them).
fn read_email(o: &mut JsonObject, field: &str) -> Option<String> {
    let email = o.string(field, true, MAX_EMAIL)?;
    if !is_email(&email) {
        o.error(
            field,
            "invalid_value",
            "must be an email address such as owner@example.com",
        );
        return None;
    }
    Some(email.to_lowercase())
}

/// `POST /v1/platform/tenants`'s body.
#[derive(Debug)]
pub struct NewTenant {
    slug: Slug,
    name: String,
    tier: String,
    owner_email: String,
    settings: Map<String, Value>,
}

impl FromJson for NewTenant {
    /// Room for the largest `settings` and the other members.
    const MAX_BODY: usize = 2 * MAX_SETTINGS;

    fn from_json(o: &mut JsonObject, cx: &BodyCx<'_>) -> Option<Self> {
        // Every member is read (and its problems recorded) before any `?`.
        let slug = read_slug(o, cx.config);
        let name = o.string("name", true, MAX_NAME);
        let tier = o.one_of("tier", true, TIERS);
        let owner_email = read_email(o, "owner_email");
        let settings = o.object("settings", MAX_SETTINGS).unwrap_or_default();
        Some(Self {
            slug: slug?,
            name: name?,
            tier: tier?,
            owner_email: owner_email?,
            settings,
        })
    }
}

/// `PATCH /v1/platform/tenants/{id}`'s body: at least one member.
#[derive(Debug, Default)]
pub struct TenantPatch {
    name: Option<String>,
    tier: Option<String>,
    status: Option<String>,
}

impl TenantPatch {
    /// The members as `platform_tenant_update` takes them (`jsonb`): only those sent.
    fn to_json(&self) -> Map<String, Value> {
        [
            ("name", &self.name),
            ("tier", &self.tier),
            ("status", &self.status),
        ]
        .into_iter()
        .filter_map(|(k, v)| v.as_ref().map(|v| (k.to_owned(), Value::from(v.as_str()))))
        .collect()
    }
}

impl FromJson for TenantPatch {
    fn from_json(o: &mut JsonObject, _: &BodyCx<'_>) -> Option<Self> {
        let name = o.string("name", false, MAX_NAME);
        let tier = o.one_of("tier", false, TIERS);
        let status = if o.peek("status").and_then(Value::as_str) == Some("deleted") {
            let _ = o.raw_string("status", false, 16);
            o.error(
                "status",
                "invalid_value",
                "a tenant is deleted with DELETE /v1/platform/tenants/{id}; PATCH sets active or suspended",
            );
            None
        } else {
            o.one_of("status", false, PATCH_STATUSES)
        };
        let patch = Self { name, tier, status };
        if patch.to_json().is_empty() {
            if o.is_clean() {
                o.error(
                    "",
                    "empty",
                    "name at least one of name, tier, status to change",
                );
            }
            return None;
        }
        Some(patch)
    }
}

/// `POST /v1/signup`'s body.
#[derive(Debug)]
pub struct NewSignup {
    slug: Slug,
    name: String,
}

impl FromJson for NewSignup {
    fn from_json(o: &mut JsonObject, cx: &BodyCx<'_>) -> Option<Self> {
        let slug = read_slug(o, cx.config);
        let name = o.string("name", true, MAX_NAME);
        Some(Self {
            slug: slug?,
            name: name?,
        })
    }
}

/// `GET /v1/platform/tenants?sort=&limit=&cursor=&status=&tier=&q=`.
#[derive(Debug)]
pub struct TenantListing {
    page: PageRequest,
    status: Option<String>,
    tier: Option<String>,
    /// Lower-cased: slugs are, and names are compared lower-cased.
    prefix: Option<String>,
}

impl FromQuery for TenantListing {
    fn from_query(q: &mut QueryString, _: &BodyCx<'_>) -> Self {
        let page = PageRequest::read(q, SORTS, DEFAULT_LIMIT);
        let status = q.one_of("status", STATUSES);
        let tier = q.one_of("tier", TIERS);
        let prefix = q.string("q", MAX_NAME).map(|s| s.to_lowercase());
        Self {
            page,
            status,
            tier,
            prefix,
        }
    }
}

impl TenantListing {
    /// The page's statement over every tenant.
    fn statement(&self) -> Statement {
        let mut params = Params::new();
        let mut filters = Vec::new();
        if let Some(s) = &self.status {
            filters.push(format!("t.status = {}", params.bind(s)));
        }
        if let Some(t) = &self.tier {
            filters.push(format!("t.tier = {}", params.bind(t)));
        }
        if let Some(p) = &self.prefix {
            // A prefix of the slug or of the name; LIKE metacharacters match literally.
            let escaped = p
                .replace('\\', "\\\\")
                .replace('%', "\\%")
                .replace('_', "\\_");
            let pattern = params.bind(format!("{escaped}%"));
            filters.push(format!(
                "(t.slug LIKE {pattern} OR lower(t.doc->>'name') LIKE {pattern})"
            ));
        }
        self.page.statement(
            Select {
                doc: "t.doc",
                from: "public.platform_tenant_rows() t",
                id: "t.id",
                filters,
            },
            params,
        )
    }
}

/// Lets `POST /v1/signup` through only when the instance allows self-service sign-up. An
/// argument before the body, so a disabled sign-up says so whatever was sent.
pub struct SignupOpen;

impl<'a, P> Extract<'a, P> for SignupOpen {
    fn extract(parts: &RequestParts<'a, P>) -> Result<Self, ApiError> {
        if parts.env.config.platform.signup_enabled {
            Ok(Self)
        } else {
            Err(ApiError::new(
                Code::SignupDisabled,
                "Self-service sign-up is turned off here; the platform's administrators create tenants.",
            ))
        }
    }
}

/// `POST /v1/platform/tenants`'s answer: the token is shown this once.
#[derive(Serialize)]
struct CreatedTenant<'a> {
    tenant: &'a PlatformTenant,
    invitation: &'a Invitation,
    token: &'a str,
    accept_path: String,
}

/// `POST /v1/signup`'s answer.
#[derive(Serialize)]
struct SignedUp<'a> {
    tenant: &'a PlatformTenant,
}

fn tenant_reply(reply: Reply, tenant: &PlatformTenant) -> Reply {
    reply.etag(&tenant.etag()).cache(Cache::Revalidate)
}

/// Forgets every cached record of a tenant that has no custom domain yet (a new one).
async fn forget_new<P: Platform>(platform: &P, slug: &Slug) {
    let hosts = Hosts {
        slug: slug.clone(),
        domains: Vec::new(),
    };
    tenancy::invalidate(platform, &hosts).await;
}

/// `POST /v1/platform/tenants` `{slug, name, tier, owner_email, settings?}`: creates the tenant
/// and an owner invitation for `owner_email`. The owner gets in by signing in with a verified
/// token for that address (the first request to the tenant's host accepts the invitation), or
/// with the returned token at `accept_path`. 201 at `/v1/platform/tenants/{id}`; 409
/// `slug_taken`.
pub async fn create<P: Platform>(
    cx: PlatformAdmin<'_, P>,
    Json(new): Json<NewTenant>,
) -> Result<Reply, ApiError> {
    let platform = cx.env.platform;
    let id = Uuid::random(platform)?;
    let invitation_id = Uuid::random(platform)?;
    let token = InvitationToken::generate(platform)?;
    let ttl = cx.env.config.platform.invitation_ttl.as_secs();
    let outcome: CreateOutcome = cx
        .db
        .outcome(Statement::new(
            "SELECT public.platform_tenant_create($1::uuid, $2, $3, $4, $5::jsonb, $6, $7::uuid, \
             $8, $9::int)",
            vec![
                Some(id.to_string()),
                Some(new.slug.to_string()),
                Some(new.name),
                Some(new.tier),
                Some(Value::Object(new.settings).to_string()),
                Some(new.owner_email),
                Some(invitation_id.to_string()),
                Some(token.hash()),
                Some(ttl.to_string()),
            ],
        ))
        .await?;
    let (tenant, invitation) = match outcome {
        CreateOutcome::Created { tenant, invitation } => (tenant, invitation),
        CreateOutcome::SlugTaken => return Err(slug_taken(&new.slug)),
    };
    forget_new(platform, &tenant.slug).await;
    let body = CreatedTenant {
        tenant: &tenant,
        invitation: &invitation,
        token: token.as_str(),
        accept_path: token.accept_path(),
    };
    Ok(
        Reply::created(&format!("/v1/platform/tenants/{}", tenant.id), &body)
            .etag(&tenant.etag())
            .cache(Cache::NoStore),
    )
}

/// `GET /v1/platform/tenants`: every tenant (deleted ones too, unless filtered), on the shared
/// pager.
pub async fn list<P: Platform>(
    cx: PlatformAdmin<'_, P>,
    Query(listing): Query<TenantListing>,
) -> Result<Reply, ApiError> {
    let result = cx.db.one(listing.statement()).await?;
    let page = listing.page.page::<PlatformTenant>(&result)?;
    Ok(Reply::ok(&page).cache(Cache::Private))
}

/// `GET /v1/platform/tenants/{id}`, with its version as ETag.
pub async fn get<P: Platform>(
    cx: PlatformAdmin<'_, P>,
    Path(id): Path<TenantRef>,
) -> Result<Reply, ApiError> {
    // JSON null (or, defensively, SQL NULL) for no such tenant.
    let tenant: Option<PlatformTenant> = cx
        .db
        .call(Statement::new(
            "SELECT coalesce(public.platform_tenant_get($1::uuid), 'null')",
            vec![Some(id.to_string())],
        ))
        .await?;
    let tenant = tenant.ok_or_else(not_found)?;
    Ok(tenant_reply(Reply::ok(&tenant), &tenant))
}

/// `PATCH /v1/platform/tenants/{id}` `{name?, tier?, status?}` (`If-Match` optional):
/// renames, changes tier, suspends or reactivates (which also restores a deleted tenant). The
/// change applies on the tenant's hosts from their next request.
pub async fn update<P: Platform>(
    cx: PlatformAdmin<'_, P>,
    Json(patch): Json<TenantPatch>,
    IfMatch(version): IfMatch,
    Path(id): Path<TenantRef>,
) -> Result<Reply, ApiError> {
    let outcome: UpdateOutcome = cx
        .db
        .outcome(Statement::new(
            "SELECT public.platform_tenant_update($1::uuid, $2::int, $3::jsonb)",
            vec![
                Some(id.to_string()),
                version.map(|v| v.to_string()),
                Some(Value::Object(patch.to_json()).to_string()),
            ],
        ))
        .await?;
    match outcome {
        UpdateOutcome::Updated { tenant, hosts } => {
            tenancy::invalidate(cx.env.platform, &hosts).await;
            Ok(tenant_reply(Reply::ok(&tenant), &tenant))
        }
        UpdateOutcome::NotFound => Err(not_found()),
        UpdateOutcome::VersionMismatch { tenant } => {
            Err(ApiError::precondition_failed(Some(tenant.etag())))
        }
    }
}

/// `DELETE /v1/platform/tenants/{id}`: 200 with the tenant as it now is (status `deleted`,
/// `deleted_at` set: its data is purged a grace period later; `PATCH {"status": "active"}`
/// restores it until then). Its hosts answer 410 from their next request on. Deleting a
/// deleted tenant keeps its first `deleted_at`.
pub async fn delete<P: Platform>(
    cx: PlatformAdmin<'_, P>,
    Path(id): Path<TenantRef>,
) -> Result<Reply, ApiError> {
    let outcome: DeleteOutcome = cx
        .db
        .outcome(Statement::new(
            "SELECT public.platform_tenant_delete($1::uuid)",
            vec![Some(id.to_string())],
        ))
        .await?;
    match outcome {
        DeleteOutcome::Deleted { tenant, hosts } => {
            tenancy::invalidate(cx.env.platform, &hosts).await;
            Ok(tenant_reply(Reply::ok(&tenant), &tenant))
        }
        DeleteOutcome::NotFound => Err(not_found()),
    }
}

/// `POST /v1/signup` `{slug, name}` (when `SIGNUP_ENABLED`): a `basic` tenant with the caller
/// as its owner, for a user who belongs to no tenant yet. 201 `{tenant}` (no `Location`: the
/// tenant is reached on its own host, `/v1/tenant`); 409 `slug_taken` or `already_member`.
pub async fn signup<P: Platform>(
    cx: Account<'_, P>,
    _open: SignupOpen,
    Json(new): Json<NewSignup>,
) -> Result<Reply, ApiError> {
    let platform = cx.env.platform;
    let id = Uuid::random(platform)?;
    let outcome: SignupOutcome = cx
        .db
        .outcome(Statement::new(
            "SELECT public.signup_create($1::uuid, $2::uuid, $3, $4)",
            vec![
                Some(cx.user.to_string()),
                Some(id.to_string()),
                Some(new.slug.to_string()),
                Some(new.name),
            ],
        ))
        .await?;
    match outcome {
        SignupOutcome::Created { tenant } => {
            forget_new(platform, &tenant.slug).await;
            // A probe of the new subdomain may have cached "no role" for the caller.
            identity::invalidate_member(platform, &tenant.id, &cx.user).await;
            Ok(
                Reply::json(StatusCode::CREATED, &SignedUp { tenant: &tenant })
                    .etag(&tenant.etag())
                    .cache(Cache::NoStore),
            )
        }
        SignupOutcome::SlugTaken => Err(slug_taken(&new.slug)),
        SignupOutcome::AlreadyMember => Err(ApiError::new(
            Code::AlreadyMember,
            "You already belong to a tenant; sign-up creates a first tenant only.",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::rc::Rc;

    use bytes::Bytes;
    use futures_executor::block_on;
    use http::{header, Method, Request, Response};
    use serde_json::json;

    use crate::auth::{MembershipMode, Principal};
    use crate::cx::Handler;
    use crate::identity::{member_key, Identity};
    use crate::ids::UserId;
    use crate::testing::{member, user_of, Instance, Responder, TestPlatform};

    const ID: &str = "00000000-0000-4000-8000-0000000000e1";
    /// What every random buffer of the test platform holds (bytes of 7).
    const RANDOM_ID: &str = "07070707-0707-4707-8707-070707070707";

    /// A platform administrator: the platform-admin group, from a platform-admin issuer.
    fn root() -> Principal {
        let mut p = member("root", &["platform-admin"]);
        p.platform_admin_issuer = true;
        p.tenant_id = None;
        p
    }

    /// Someone signed in, with no special rights.
    fn someone() -> Principal {
        let mut p = member("someone", &[]);
        p.tenant_id = None;
        p.membership = MembershipMode::Membership;
        p
    }

    /// An instance with a remembering key-value store, whose SQL proxy answers with `respond`.
    fn instance(overrides: &[(&'static str, &str)], respond: Responder) -> Instance {
        let mut i = Instance::new(overrides, Box::new(|_| Ok(Response::new(Bytes::new()))));
        i.platform = TestPlatform::new(respond).with_kv();
        i
    }

    /// The proxy's answer to a one-statement platform batch (no tenant `set_config`, the
    /// audit prelude's row first): `docs` as its rows.
    fn rows(docs: &[Value]) -> Response<Bytes> {
        let rows: Vec<Vec<&Value>> = docs.iter().map(|d| vec![d]).collect();
        let prelude = json!({ "command": "SELECT", "rowCount": 1,
            "fields": [{ "name": "set_config", "dataTypeID": 25 },
                       { "name": "set_config", "dataTypeID": 25 }], "rows": [["", ""]] });
        let one = json!({ "command": "SELECT", "rowCount": rows.len(),
            "fields": [{ "name": "doc", "dataTypeID": 3802 }], "rows": rows });
        Response::new(Bytes::from(
            json!({ "results": [prelude, one] }).to_string(),
        ))
    }

    fn answer(doc: Value) -> Responder {
        Box::new(move |_| Ok(rows(std::slice::from_ref(&doc))))
    }

    fn no_sql() -> Responder {
        Box::new(|req| panic!("no SQL expected, got {:?}", req.body()))
    }

    /// The only statement of the only batch sent, after the audit prelude (`{query, params}`).
    fn sent(i: &Instance) -> Value {
        let sent = i.platform.sent.borrow();
        assert_eq!(sent.len(), 1, "one batch per request");
        let v: Value = serde_json::from_slice(sent[0].body()).unwrap();
        assert_eq!(v["queries"].as_array().unwrap().len(), 2);
        assert_eq!(v["queries"][0]["query"], crate::sql::PLATFORM_PRELUDE);
        v["queries"][1].clone()
    }

    fn tenant_doc(slug: &str, status: &str, version: i64) -> Value {
        json!({
            "id": ID, "slug": slug, "name": "Acme", "tier": "basic", "status": status,
            "settings": {"currency": "EUR"}, "created_at": "2026-01-01T00:00:00.000000Z",
            "updated_at": "2026-01-01T00:00:00.000000Z", "deleted_at": null,
            "version": version, "members": 0,
            "domains": [{"hostname": "shop.acme.test", "status": "verified",
                "verified_at": "2026-01-01T00:00:00.000000Z",
                "created_at": "2026-01-01T00:00:00.000000Z",
                "verification": {"type": "TXT", "name": "_edgefront-challenge.shop.acme.test",
                    "value": "edgefront-verify=abc"}}]
        })
    }

    fn hosts() -> Value {
        json!({"slug": "acme", "domains": ["shop.acme.test"]})
    }

    fn request(method: Method, uri: &str, body: Option<&str>) -> Request<Bytes> {
        let b = Request::builder().method(method).uri(uri);
        let b = match body {
            Some(_) => b.header(header::CONTENT_TYPE, "application/json"),
            None => b,
        };
        b.body(Bytes::from(body.unwrap_or_default().to_owned()))
            .unwrap()
    }

    /// Runs `handler` as the router would for `caller` on the platform host (no tenant).
    fn call<'a, Args>(
        i: &'a Instance,
        handler: impl Handler<'a, TestPlatform, Args>,
        caller: Principal,
        id: Option<&str>,
        req: Request<Bytes>,
    ) -> Result<(Response<Bytes>, Value), ApiError> {
        let (head, body) = req.into_parts();
        let identity = Identity {
            user: user_of(&caller.subject),
            role: None,
            platform_admin: crate::authz::is_platform_admin(&caller),
        };
        let parts = RequestParts {
            env: i.env(),
            head: Rc::new(head),
            body,
            tenant: None,
            principal: Some(Rc::new(caller)),
            identity: Some(Rc::new(identity)),
            id: id.map(str::to_owned),
        };
        let resp = block_on(handler.call(parts))?;
        let (head, body) = resp.into_parts();
        let body = block_on(body.collect());
        let json = serde_json::from_slice(&body).unwrap_or(Value::Null);
        Ok((Response::from_parts(head, body), json))
    }

    fn fields(e: &ApiError) -> Vec<(String, &'static str)> {
        assert_eq!(e.code(), Code::ValidationFailed, "{e:?}");
        e.field_errors()
            .iter()
            .map(|f| (f.field.clone(), f.code))
            .collect()
    }

    /// A cached tenant record under `key`, as an earlier lookup left it.
    fn cache(i: &Instance, key: &str) {
        i.platform
            .kv_insert(key, Bytes::from_static(b"{\"tenant\":null}"));
    }

    fn create(i: &Instance, body: &str) -> Result<(Response<Bytes>, Value), ApiError> {
        call(
            i,
            super::create::<TestPlatform>,
            root(),
            None,
            request(Method::POST, "/v1/platform/tenants", Some(body)),
        )
    }

    #[test]
    fn new_tenants_are_refused_with_every_problem_named_and_no_sql() {
        let i = instance(&[], no_sql());
        let err = create(
            &i,
            r#"{"slug":"Not A Slug","name":"  ","tier":"gold","owner_email":"nobody",
                "settings":[1],"colour":"red"}"#,
        )
        .unwrap_err();
        assert_eq!(
            fields(&err),
            vec![
                ("slug".into(), "invalid_value"),
                ("name".into(), "empty"),
                ("tier".into(), "invalid_value"),
                ("owner_email".into(), "invalid_value"),
                ("settings".into(), "wrong_type"),
                ("colour".into(), "unknown_field"),
            ]
        );
        let err = create(&i, r#"{"slug":"www","name":"W","tier":"basic"}"#).unwrap_err();
        assert_eq!(
            fields(&err),
            vec![
                ("slug".into(), "reserved"),
                ("owner_email".into(), "required")
            ]
        );
        let big = format!(
            r#"{{"slug":"acme","name":"A","tier":"basic","owner_email":"a@b.test",
                "settings":{{"x":"{}"}}}}"#,
            "y".repeat(MAX_SETTINGS)
        );
        assert_eq!(
            fields(&create(&i, &big).unwrap_err()),
            vec![("settings".into(), "too_long")]
        );
        assert_eq!(i.platform.count(None), 0);
    }

    #[test]
    fn the_platform_hosts_own_name_is_no_slug() {
        let i = instance(&[("PLATFORM_HOST", "platform.localhost")], no_sql());
        let err = create(
            &i,
            r#"{"slug":"platform","name":"P","tier":"basic","owner_email":"a@b.test"}"#,
        )
        .unwrap_err();
        assert_eq!(fields(&err), vec![("slug".into(), "reserved")]);
    }

    #[test]
    fn a_created_tenant_comes_with_its_owners_invitation_and_a_fresh_cache() {
        let invitation = json!({"id": RANDOM_ID, "email": "boss@acme.test", "role": "owner",
            "status": "pending", "created_at": "2026-01-01T00:00:00.000000Z",
            "expires_at": "2026-01-08T00:00:00.000000Z", "accepted_at": null});
        let i = instance(
            &[],
            answer(
                json!({"outcome": "created", "tenant": tenant_doc("acme", "active", 1),
                "invitation": invitation}),
            ),
        );
        // Someone probed acme.localhost before it existed.
        cache(&i, "tenant:v2:slug:acme");
        let (resp, body) = create(
            &i,
            r#"{"slug":"acme","name":" Acme ","tier":"premium","owner_email":"Boss@Acme.TEST",
                "settings":{"currency":"EUR"}}"#,
        )
        .unwrap();
        assert_eq!(resp.status(), StatusCode::CREATED);
        assert_eq!(
            resp.headers()[header::LOCATION],
            format!("/v1/platform/tenants/{ID}").as_str()
        );
        assert_eq!(resp.headers()[header::CACHE_CONTROL], "no-store");
        let token = body["token"].as_str().unwrap();
        assert_eq!(token.len(), 43, "32 bytes, base64url");
        assert_eq!(
            body["accept_path"],
            format!("/v1/invitations/{token}/accept")
        );
        assert_eq!(body["tenant"]["slug"], "acme");
        assert_eq!(body["invitation"]["role"], "owner");
        let s = sent(&i);
        assert!(s["query"]
            .as_str()
            .unwrap()
            .starts_with("SELECT public.platform_tenant_create("));
        assert_eq!(
            s["params"],
            json!([
                RANDOM_ID,
                "acme",
                "Acme",
                "premium",
                r#"{"currency":"EUR"}"#,
                "boss@acme.test",
                RANDOM_ID,
                InvitationToken::parse(token).unwrap().hash(),
                "604800"
            ])
        );
        assert!(i.platform.kv_get("tenant:v2:slug:acme").is_none());
    }

    #[test]
    fn a_probe_of_the_subdomain_before_creation_does_not_hide_the_new_tenant() {
        let created = json!({"outcome": "created", "tenant": tenant_doc("acme", "active", 1),
            "invitation": {"id": RANDOM_ID, "email": "a@acme.test", "role": "owner",
                "status": "pending", "created_at": "2026-01-01T00:00:00.000000Z",
                "expires_at": "2026-01-08T00:00:00.000000Z", "accepted_at": null}});
        let i = instance(
            &[],
            Box::new(move |req| {
                let body: Value = serde_json::from_slice(req.body()).unwrap();
                if body.get("queries").is_some() {
                    return Ok(rows(std::slice::from_ref(&created)));
                }
                // The tenant lookup (one autocommit query): no such tenant.
                Ok(Response::new(Bytes::from(
                    json!({"command": "SELECT", "rowCount": 0,
                        "fields": [{"name": "row_to_json", "dataTypeID": 114}], "rows": []})
                    .to_string(),
                )))
            }),
        );
        let lookup = || {
            block_on(tenancy::lookup_host(
                &i.platform,
                &i.config,
                "acme.localhost",
            ))
        };
        assert!(lookup().unwrap().is_none());
        assert!(lookup().unwrap().is_none());
        assert_eq!(i.platform.count(None), 1, "the miss is cached");
        create(
            &i,
            r#"{"slug":"acme","name":"Acme","tier":"basic","owner_email":"a@acme.test"}"#,
        )
        .unwrap();
        lookup().unwrap();
        assert_eq!(i.platform.count(None), 3, "the cached miss was forgotten");
    }

    #[test]
    fn a_taken_slug_is_a_conflict() {
        let i = instance(&[], answer(json!({"outcome": "slug_taken"})));
        let err = create(
            &i,
            r#"{"slug":"acme","name":"Acme","tier":"basic","owner_email":"a@acme.test"}"#,
        )
        .unwrap_err();
        assert_eq!(err.code(), Code::SlugTaken);
        // Settings default to an empty object.
        assert_eq!(sent(&i)["params"][4], "{}");
    }

    fn list(i: &Instance, query: &str) -> Result<(Response<Bytes>, Value), ApiError> {
        call(
            i,
            super::list::<TestPlatform>,
            root(),
            None,
            request(Method::GET, &format!("/v1/platform/tenants{query}"), None),
        )
    }

    #[test]
    fn listings_filter_by_status_tier_and_an_escaped_prefix() {
        let row = |slug: &str| {
            json!({"doc": tenant_doc(slug, "active", 1),
                "key": "2026-01-01T00:00:00.000000Z", "id": ID})
        };
        let i = instance(
            &[],
            Box::new(move |_| Ok(rows(&[row("acme"), row("acme-2")]))),
        );
        let (resp, body) = list(&i, "?status=suspended&tier=premium&q=A_c%25&limit=1").unwrap();
        assert_eq!(resp.headers()[header::CACHE_CONTROL], "private, no-store");
        assert_eq!(body["items"].as_array().unwrap().len(), 1);
        assert!(body["next_cursor"].is_string());
        let s = sent(&i);
        let q = s["query"].as_str().unwrap();
        assert!(q.contains("FROM public.platform_tenant_rows() t WHERE t.status = $1 AND t.tier = $2 AND (t.slug LIKE $3 OR lower(t.doc->>'name') LIKE $3)"), "{q}");
        assert!(q.contains("ORDER BY t.created_at DESC, t.id DESC"), "{q}");
        assert_eq!(
            s["params"],
            json!(["suspended", "premium", "a\\_c\\%%", "2"])
        );
    }

    #[test]
    fn bad_listing_parameters_cost_no_sql() {
        let i = instance(&[], no_sql());
        let err = list(&i, "?status=gone&tier=gold&sort=name").unwrap_err();
        assert_eq!(
            fields(&err),
            vec![
                ("sort".into(), "invalid_value"),
                ("status".into(), "invalid_value"),
                ("tier".into(), "invalid_value")
            ]
        );
    }

    fn get(i: &Instance, id: &str) -> Result<(Response<Bytes>, Value), ApiError> {
        call(
            i,
            super::get::<TestPlatform>,
            root(),
            Some(id),
            request(Method::GET, &format!("/v1/platform/tenants/{id}"), None),
        )
    }

    #[test]
    fn a_tenant_is_read_with_its_version_or_is_not_found() {
        let i = instance(&[], answer(tenant_doc("acme", "active", 3)));
        let (resp, body) = get(&i, ID).unwrap();
        assert_eq!(resp.headers()[header::ETAG], "\"v3\"");
        assert_eq!(body["domains"][0]["verification"]["type"], "TXT");
        assert_eq!(sent(&i)["params"], json!([ID]));
        let i = instance(&[], answer(Value::Null));
        assert_eq!(get(&i, ID).unwrap_err().code(), Code::NotFound);
        let i = instance(&[], no_sql());
        assert_eq!(get(&i, "acme").unwrap_err().code(), Code::NotFound);
    }

    fn patch(
        i: &Instance,
        body: &str,
        if_match: Option<&str>,
    ) -> Result<(Response<Bytes>, Value), ApiError> {
        let mut req = request(
            Method::PATCH,
            &format!("/v1/platform/tenants/{ID}"),
            Some(body),
        );
        if let Some(tag) = if_match {
            req.headers_mut()
                .insert(header::IF_MATCH, tag.parse().unwrap());
        }
        call(i, super::update::<TestPlatform>, root(), Some(ID), req)
    }

    #[test]
    fn patches_are_validated_before_any_sql() {
        let i = instance(&[], no_sql());
        assert_eq!(
            fields(&patch(&i, "{}", None).unwrap_err()),
            vec![("".into(), "empty")]
        );
        assert_eq!(
            fields(&patch(&i, r#"{"status":"deleted"}"#, None).unwrap_err()),
            vec![("status".into(), "invalid_value")]
        );
        assert_eq!(
            fields(&patch(&i, r#"{"name":"","tier":"gold","slug":"x"}"#, None).unwrap_err()),
            vec![
                ("name".into(), "empty"),
                ("tier".into(), "invalid_value"),
                ("slug".into(), "unknown_field")
            ]
        );
    }

    #[test]
    fn a_suspension_forgets_every_host_of_the_tenant() {
        let i = instance(
            &[],
            answer(
                json!({"outcome": "updated", "tenant": tenant_doc("acme", "suspended", 4),
                "hosts": hosts()}),
            ),
        );
        cache(&i, "tenant:v2:slug:acme");
        cache(&i, "tenant:v2:domain:shop.acme.test");
        cache(&i, "tenant:v2:slug:other");
        let (resp, body) = patch(&i, r#"{"status":"suspended"}"#, Some("\"v3\"")).unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        assert_eq!(resp.headers()[header::ETAG], "\"v4\"");
        assert_eq!(body["status"], "suspended");
        assert_eq!(
            sent(&i)["params"],
            json!([ID, "3", r#"{"status":"suspended"}"#])
        );
        assert!(i.platform.kv_get("tenant:v2:slug:acme").is_none());
        assert!(i
            .platform
            .kv_get("tenant:v2:domain:shop.acme.test")
            .is_none());
        assert!(i.platform.kv_get("tenant:v2:slug:other").is_some());
    }

    #[test]
    fn update_refusals_map_to_404_and_412() {
        let i = instance(&[], answer(json!({"outcome": "not_found"})));
        assert_eq!(
            patch(&i, r#"{"name":"X"}"#, None).unwrap_err().code(),
            Code::NotFound
        );
        // Without If-Match, no version is checked.
        assert_eq!(sent(&i)["params"][1], Value::Null);
        let i = instance(
            &[],
            answer(
                json!({"outcome": "version_mismatch", "tenant": tenant_doc("acme", "active", 7)}),
            ),
        );
        cache(&i, "tenant:v2:slug:acme");
        let err = patch(&i, r#"{"tier":"enterprise"}"#, Some("\"v6\"")).unwrap_err();
        assert_eq!(err.code(), Code::PreconditionFailed);
        assert_eq!(err.to_problem("/")["current_etag"], "\"v7\"");
        // Nothing changed, nothing forgotten.
        assert!(i.platform.kv_get("tenant:v2:slug:acme").is_some());
    }

    fn delete(i: &Instance) -> Result<(Response<Bytes>, Value), ApiError> {
        call(
            i,
            super::delete::<TestPlatform>,
            root(),
            Some(ID),
            request(Method::DELETE, &format!("/v1/platform/tenants/{ID}"), None),
        )
    }

    #[test]
    fn a_deletion_answers_the_deleted_tenant_and_forgets_its_hosts() {
        let mut doc = tenant_doc("acme", "deleted", 5);
        doc["deleted_at"] = json!("2026-02-01T00:00:00.000000Z");
        let i = instance(
            &[],
            answer(json!({"outcome": "deleted", "tenant": doc, "hosts": hosts()})),
        );
        cache(&i, "tenant:v2:slug:acme");
        cache(&i, "tenant:v2:domain:shop.acme.test");
        let (resp, body) = delete(&i).unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        assert_eq!(body["status"], "deleted");
        assert_eq!(body["deleted_at"], "2026-02-01T00:00:00.000000Z");
        assert!(sent(&i)["query"]
            .as_str()
            .unwrap()
            .contains("platform_tenant_delete($1::uuid)"));
        assert!(i.platform.kv_get("tenant:v2:slug:acme").is_none());
        assert!(i
            .platform
            .kv_get("tenant:v2:domain:shop.acme.test")
            .is_none());
        let i = instance(&[], answer(json!({"outcome": "not_found"})));
        assert_eq!(delete(&i).unwrap_err().code(), Code::NotFound);
    }

    fn signup(i: &Instance, body: &str) -> Result<(Response<Bytes>, Value), ApiError> {
        call(
            i,
            super::signup::<TestPlatform>,
            someone(),
            None,
            request(Method::POST, "/v1/signup", Some(body)),
        )
    }

    const OPEN: (&str, &str) = ("SIGNUP_ENABLED", "true");

    #[test]
    fn signup_is_refused_when_disabled_whatever_the_body() {
        let i = instance(&[], no_sql());
        for body in [r#"{"slug":"mine","name":"Mine"}"#, "not json"] {
            assert_eq!(signup(&i, body).unwrap_err().code(), Code::SignupDisabled);
        }
        let i = instance(&[OPEN], no_sql());
        assert_eq!(
            fields(&signup(&i, r#"{"slug":"api","name":""}"#).unwrap_err()),
            vec![("slug".into(), "reserved"), ("name".into(), "empty")]
        );
    }

    #[test]
    fn a_signup_creates_the_callers_tenant_and_forgets_what_was_cached() {
        let i = instance(
            &[OPEN],
            answer(json!({"outcome": "created", "tenant": tenant_doc("mine", "active", 1)})),
        );
        let user: UserId = user_of("someone");
        let tenant = TenantId::parse(ID).unwrap();
        cache(&i, "tenant:v2:slug:mine");
        i.platform.kv_insert(
            &member_key(&tenant, &user),
            Bytes::from_static(b"{\"role\":null}"),
        );
        let (resp, body) = signup(&i, r#"{"slug":"mine","name":"Mine"}"#).unwrap();
        assert_eq!(resp.status(), StatusCode::CREATED);
        assert_eq!(body["tenant"]["slug"], "mine");
        assert_eq!(
            sent(&i)["params"],
            json!([user.as_str(), RANDOM_ID, "mine", "Mine"])
        );
        assert!(i.platform.kv_get("tenant:v2:slug:mine").is_none());
        assert!(i.platform.kv_get(&member_key(&tenant, &user)).is_none());
    }

    #[test]
    fn signup_conflicts_are_409() {
        for (outcome, code) in [
            ("slug_taken", Code::SlugTaken),
            ("already_member", Code::AlreadyMember),
        ] {
            let i = instance(&[OPEN], answer(json!({ "outcome": outcome })));
            let err = signup(&i, r#"{"slug":"mine","name":"Mine"}"#).unwrap_err();
            assert_eq!(err.code(), code);
            assert_eq!(err.status(), StatusCode::CONFLICT);
        }
    }

    #[test]
    fn purge_removes_objects_before_rows_and_keeps_a_tenant_whose_objects_remain() {
        const A: &str = "00000000-0000-4000-8000-0000000000a1";
        const B: &str = "00000000-0000-4000-8000-0000000000b2";
        let i = instance(
            &[],
            Box::new(|req| {
                let path = req.uri().path().to_owned();
                let query = req.uri().query().unwrap_or_default().to_owned();
                if path == "/sql" {
                    let body = String::from_utf8_lossy(req.body()).into_owned();
                    return Ok(if body.contains("platform_purge_candidates") {
                        rows(&[json!({ "tenants": [A, B] })])
                    } else {
                        rows(&[json!({ "purged": [A] })])
                    });
                }
                // S3: A's one object lists and deletes; listing B's fails.
                if req.method() == Method::GET && query.contains(&format!("prefix={B}")) {
                    return Ok(Response::builder().status(500).body(Bytes::new()).unwrap());
                }
                if req.method() == Method::GET {
                    let xml = format!(
                        "<ListBucketResult><Contents><Key>{A}/f/x.png</Key></Contents>\
                         <IsTruncated>false</IsTruncated></ListBucketResult>"
                    );
                    return Ok(Response::new(Bytes::from(xml)));
                }
                Ok(Response::builder().status(204).body(Bytes::new()).unwrap())
            }),
        );
        let (resp, body) = call(
            &i,
            purge::<TestPlatform>,
            root(),
            None,
            request(Method::POST, "/v1/platform/purge?grace_days=0", None),
        )
        .unwrap();
        assert_eq!(resp.status(), 200);
        assert_eq!(body["purged"], json!([A]));
        assert_eq!(body["objects_deleted"], 1);
        assert_eq!(body["failed"][0]["tenant"], B);
        let sent = i.platform.sent.borrow();
        let sql: Vec<Value> = sent
            .iter()
            .filter(|r| r.uri().path() == "/sql")
            .map(|r| serde_json::from_slice(r.body()).unwrap())
            .collect();
        assert_eq!(sql.len(), 2);
        assert_eq!(sql[0]["queries"][1]["params"], json!(["0", "20"]));
        // Every platform batch records the platform admin as the actor.
        assert_eq!(
            sql[0]["queries"][0]["params"][0],
            format!("platform:{}", user_of("root").as_str())
        );
        // Only the tenant whose objects are gone reaches the database purge.
        assert_eq!(
            sql[1]["queries"][1]["params"],
            json!([format!("{{{A}}}"), "0"])
        );
        let deletes = sent.iter().filter(|r| r.method() == Method::DELETE).count();
        assert_eq!(deletes, 1);
        // S3 calls come before the purge of rows.
        let last = sent.last().unwrap();
        assert_eq!(last.uri().path(), "/sql");
    }
}
