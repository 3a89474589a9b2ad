//! A tenant's own settings (`/v1/tenant`), custom domains (`/v1/tenant/domains`, verified
//! through DNS over HTTPS) and usage (`/v1/usage`), for its members to read and its owners to
//! change.
//!
//! Every request is validated completely before any SQL, then costs one SQL call to the
//! functions of `migrations/functions/50_identity.sql` (`tenant_json`, `tenant_update`,
//! `domain_*`, `tenant_usage`), which build the documents and decide what must hold under
//! concurrency (versions, who holds a verified hostname). Every change to what the edge
//! caches about the tenant (its record under each of its hosts) forgets those entries
//! ([`tenancy::invalidate`]), so it applies from the next request on.
//!
//! - this module: the documents, `GET`/`PATCH /v1/tenant` (`ETag` `"v{version}"`,
//!   `If-Match`), `GET /v1/usage`;
//! - [`patch`]: `PATCH /v1/tenant`'s body;
//! - [`domains`]: custom domains, their DNS proof and [`domains::Hostname`].

pub mod domains;
pub mod patch;

pub use domains::{add_domain, domains, remove_domain, verify_domain};

use bytes::Bytes;
use http::{header, Response, StatusCode};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::body::Body;
use crate::cx::{IfMatch, Json, Member};
use crate::error::{ApiError, Code};
use crate::input::etag_matches;
use crate::ports::Platform;
use crate::reply::{Cache, IntoReply, Reply};
use crate::sql::Statement;
use crate::tenancy::{self, Hosts, Slug, TenantId, TenantStatus};

use patch::TenantPatch;

/// A tenant as `GET /v1/tenant` shows it (`public.tenant_json`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TenantDoc {
    pub id: TenantId,
    pub slug: Slug,
    pub name: String,
    pub tier: String,
    pub status: TenantStatus,
    /// As stored, passed through: the edge's typed reading of it is
    /// [`tenancy::TenantSettings`].
    pub settings: Map<String, Value>,
    pub version: i64,
    pub created_at: String,
    pub updated_at: String,
    #[serde(default)]
    pub domains: Vec<Domain>,
}

impl TenantDoc {
    /// `"v{version}"`: the tenant's entity tag, for `If-Match`.
    pub fn etag(&self) -> String {
        format!("\"v{}\"", self.version)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DomainStatus {
    /// Claimed; routes nowhere until its TXT record is seen.
    Pending,
    /// Proven: requests for it reach this tenant.
    Verified,
}

/// A custom domain (the contract's domain document).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Domain {
    pub hostname: String,
    pub status: DomainStatus,
    pub verified_at: Option<String>,
    pub created_at: String,
    /// The DNS record that proves the claim.
    #[serde(default)]
    pub verification: Option<Verification>,
}

/// The record to publish: `TXT _edgefront-challenge.<hostname>` =
/// `edgefront-verify=<token>`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Verification {
    #[serde(rename = "type")]
    pub kind: String,
    pub name: String,
    /// `null` for domains verified before there were proofs (they have no token).
    pub value: Option<String>,
}

/// `public.tenant_usage()`: this period's consumption against the tier's limits (`null`:
/// unlimited), overrides in `settings.limits` applied.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Usage {
    pub period: Period,
    pub ai_tokens: Tokens,
    pub catalog_items: Counted,
    pub orders: Counted,
    pub storage_bytes: Counted,
    pub members: Counted,
    pub invitations_pending: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Period {
    pub start: String,
    pub end: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Counted {
    pub used: i64,
    pub limit: Option<i64>,
}

/// AI tokens: those used, and those reserved by turns still running.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Tokens {
    pub used: i64,
    pub reserved: i64,
    pub limit: Option<i64>,
}

/// What `tenant_update` decided.
#[derive(Deserialize)]
#[serde(rename_all = "snake_case")]
enum TenantWrite {
    Updated {
        tenant: Box<TenantDoc>,
        hosts: Hosts,
    },
    VersionMismatch {
        tenant: Box<TenantDoc>,
    },
    ImageNotReady,
}

impl crate::outcome::Outcome for TenantWrite {}

/// The tenant document of the caller's tenant (one SQL call).
async fn tenant_doc<P: Platform>(cx: &Member<'_, P>) -> Result<TenantDoc, ApiError> {
    Ok(cx
        .db
        .call(Statement::new("SELECT public.tenant_json()", vec![]))
        .await?)
}

fn tenant_reply(reply: Reply, tenant: &TenantDoc) -> Reply {
    reply.etag(&tenant.etag()).cache(Cache::Private)
}

/// `GET /v1/tenant` → the tenant document with its `ETag`; `304` when `If-None-Match` names
/// the current version.
pub async fn get<'a, P: Platform>(cx: Member<'a, P>) -> Result<Response<Body<'a>>, ApiError> {
    let tenant = tenant_doc(&cx).await?;
    let if_none_match = cx
        .headers()
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok());
    let fresh = etag_matches(if_none_match, &tenant.etag());
    let mut resp = tenant_reply(Reply::ok(&tenant), &tenant).into_reply()?;
    if fresh {
        *resp.status_mut() = StatusCode::NOT_MODIFIED;
        *resp.body_mut() = Body::Full(Bytes::new());
        resp.headers_mut().remove(header::CONTENT_TYPE);
    }
    Ok(resp)
}

/// `PATCH /v1/tenant` (owners): a new name and/or settings members, each replacing the stored
/// one (`null` removes it); with `If-Match`, only if the tenant is still at that version.
pub async fn update<P: Platform>(
    cx: Member<'_, P>,
    Json(patch): Json<TenantPatch>,
    IfMatch(version): IfMatch,
) -> Result<Reply, ApiError> {
    let outcome: TenantWrite = cx
        .db
        .outcome(Statement::new(
            "SELECT public.tenant_update($1::int, $2, $3::jsonb)",
            vec![
                version.map(|v| v.to_string()),
                patch.name.clone(),
                Some(patch.settings.to_json()),
            ],
        ))
        .await?;
    match outcome {
        TenantWrite::Updated { tenant, hosts } => {
            tenancy::invalidate(cx.env.platform, &hosts).await;
            Ok(tenant_reply(Reply::ok(&tenant), &tenant))
        }
        TenantWrite::VersionMismatch { tenant } => {
            Err(ApiError::precondition_failed(Some(tenant.etag())))
        }
        TenantWrite::ImageNotReady => {
            let mut m = Map::new();
            m.insert("field".into(), Value::from("branding.logo_file_id"));
            Err(ApiError::new(
                Code::ImageNotReady,
                "branding.logo_file_id must name an uploaded, completed image file of this tenant.",
            )
            .with_members(m))
        }
    }
}

/// `GET /v1/usage`.
pub async fn usage<P: Platform>(cx: Member<'_, P>) -> Result<Reply, ApiError> {
    let usage: Usage = cx
        .db
        .call(Statement::new("SELECT public.tenant_usage()", vec![]))
        .await?;
    Ok(Reply::ok(&usage).cache(Cache::Private))
}

/// Unit-test fixtures shared by this module's tests and [`domains`]'.
#[cfg(test)]
mod fixtures {
    use super::*;

    use futures_executor::block_on;
    use http::{Method, Request};
    use serde_json::json;

    use crate::cx::{Handler, RequestParts};
    use crate::testing::{member, Instance, Responder, TestPlatform, TENANT};

    pub type P = TestPlatform;

    pub fn domain_doc(host: &str, verified: bool) -> Value {
        json!({
            "hostname": host,
            "status": if verified { "verified" } else { "pending" },
            "verified_at": if verified { json!("2023-11-14T22:10:00.000000Z") } else { Value::Null },
            "created_at": "2023-11-14T22:00:00.000000Z",
            "verification": {
                "type": "TXT",
                "name": format!("_edgefront-challenge.{host}"),
                "value": "edgefront-verify=0707070707070707070707070707070707",
            },
        })
    }

    pub fn tenant_json(version: i64) -> Value {
        json!({
            "id": TENANT, "slug": "demo", "name": "Demo", "tier": "premium", "status": "active",
            "settings": {"currency": "USD", "limits": {"ai_monthly_tokens": 5}},
            "version": version,
            "created_at": "2023-11-01T00:00:00.000000Z",
            "updated_at": "2023-11-14T22:00:00.000000Z",
            "domains": [domain_doc("shop.example.com", true), domain_doc("new.example.org", false)],
        })
    }

    pub fn request(method: Method, uri: &str, body: Option<&str>) -> Request<Bytes> {
        let mut b = Request::builder().method(method).uri(uri);
        if body.is_some() {
            b = b.header(header::CONTENT_TYPE, "application/json");
        }
        b.body(Bytes::from(body.unwrap_or_default().to_owned()))
            .unwrap()
    }

    /// An instance whose key-value store remembers.
    pub fn instance(respond: Responder) -> Instance {
        let i = Instance::new(&[], respond);
        Instance {
            platform: i.platform.with_kv(),
            ..i
        }
    }

    /// What the router hands a handler for `req` by an owner of the fixture tenant, with the
    /// path's `{id}`.
    pub fn parts<'a>(
        i: &'a Instance,
        id: Option<&str>,
        req: Request<Bytes>,
    ) -> RequestParts<'a, P> {
        i.parts("premium", Some(member("olivia", &["owner"])), id, req)
    }

    /// Runs `handler` to a whole response.
    pub fn call<'a, Args, H: Handler<'a, P, Args>>(
        handler: H,
        parts: RequestParts<'a, P>,
    ) -> Result<Response<Bytes>, ApiError> {
        block_on(handler.call(parts)).map(|resp| {
            let (head, body) = resp.into_parts();
            Response::from_parts(head, block_on(body.collect()))
        })
    }

    pub fn json_body(resp: &Response<Bytes>) -> Value {
        serde_json::from_slice(resp.body()).unwrap()
    }
}

#[cfg(test)]
mod tests {
    use super::fixtures::*;
    use super::*;

    use std::cell::RefCell;
    use std::rc::Rc;

    use http::{Method, Request};
    use serde_json::json;

    use crate::testing::{sql_answer, statement, Instance};

    fn get_tenant(i: &Instance, if_none_match: Option<&str>) -> Result<Response<Bytes>, ApiError> {
        let mut req = request(Method::GET, "/v1/tenant", None);
        if let Some(tag) = if_none_match {
            req.headers_mut()
                .insert(header::IF_NONE_MATCH, tag.parse().unwrap());
        }
        call(get::<P>, parts(i, None, req))
    }

    fn patch_tenant(
        i: &Instance,
        body: &str,
        if_match: Option<&str>,
    ) -> Result<Response<Bytes>, ApiError> {
        let mut req = request(Method::PATCH, "/v1/tenant", Some(body));
        if let Some(tag) = if_match {
            req.headers_mut()
                .insert(header::IF_MATCH, tag.parse().unwrap());
        }
        call(update::<P>, parts(i, None, req))
    }

    #[test]
    fn the_tenant_is_one_call_with_its_version_as_etag() {
        let i = instance(Box::new(|_| Ok(sql_answer(&tenant_json(7)))));
        let resp = get_tenant(&i, None).unwrap();
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.headers()["etag"], "\"v7\"");
        assert_eq!(resp.headers()["cache-control"], "private, no-store");
        let body = json_body(&resp);
        assert_eq!(body["slug"], "demo");
        assert_eq!(body["version"], 7);
        // Settings pass through as stored.
        assert_eq!(
            body["settings"],
            json!({"currency": "USD", "limits": {"ai_monthly_tokens": 5}})
        );
        assert_eq!(body["domains"][1]["status"], "pending");
        assert_eq!(
            body["domains"][1]["verification"]["name"],
            "_edgefront-challenge.new.example.org"
        );
        let sent = i.platform.sent.borrow();
        assert_eq!(sent.len(), 1);
        assert_eq!(statement(&sent[0])["query"], "SELECT public.tenant_json()");
    }

    #[test]
    fn domains_verified_before_proofs_existed_are_read() {
        // domain_json of a row without a verification token.
        let mut t = tenant_json(1);
        t["domains"][0]["verification"]["value"] = Value::Null;
        let i = instance(Box::new(move |_| Ok(sql_answer(&t))));
        let body = json_body(&get_tenant(&i, None).unwrap());
        assert_eq!(body["domains"][0]["verification"]["value"], Value::Null);
        assert_eq!(body["domains"][0]["status"], "verified");
    }

    #[test]
    fn a_client_with_the_current_version_gets_304() {
        let i = instance(Box::new(|_| Ok(sql_answer(&tenant_json(7)))));
        let resp = get_tenant(&i, Some("W/\"v7\"")).unwrap();
        assert_eq!(resp.status(), 304);
        assert!(resp.body().is_empty());
        assert_eq!(resp.headers()["etag"], "\"v7\"");
        assert!(resp.headers().get("content-type").is_none());
        assert_eq!(get_tenant(&i, Some("\"v6\"")).unwrap().status(), 200);
    }

    #[test]
    fn a_patch_is_one_call_and_forgets_the_cached_tenant_under_every_host() {
        let i = instance(Box::new(|req| {
            let s = statement(req);
            assert_eq!(
                s["query"],
                "SELECT public.tenant_update($1::int, $2, $3::jsonb)"
            );
            assert_eq!(s["params"][0], "4");
            assert_eq!(s["params"][1], "Acme");
            let settings: Value = serde_json::from_str(s["params"][2].as_str().unwrap()).unwrap();
            assert_eq!(settings, json!({"currency": "EUR", "description": null}));
            let mut t = tenant_json(5);
            t["name"] = json!("Acme");
            Ok(sql_answer(&json!({"outcome": "updated", "tenant": t,
                "hosts": {"slug": "demo", "domains": ["shop.example.com"]}})))
        }));
        for key in [
            "tenant:v2:slug:demo",
            "tenant:v2:domain:shop.example.com",
            "tenant:v2:slug:other",
        ] {
            i.platform
                .kv_insert(key, Bytes::from_static(b"{\"tenant\":null}"));
        }
        let resp = patch_tenant(
            &i,
            r#"{"name":"Acme","currency":"EUR","description":null}"#,
            Some("\"v4\""),
        )
        .unwrap();
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.headers()["etag"], "\"v5\"");
        assert_eq!(json_body(&resp)["name"], "Acme");
        assert!(i.platform.kv_get("tenant:v2:slug:demo").is_none());
        assert!(i
            .platform
            .kv_get("tenant:v2:domain:shop.example.com")
            .is_none());
        assert!(i.platform.kv_get("tenant:v2:slug:other").is_some());
        assert_eq!(i.platform.count(Some("/sql")), 1);
    }

    #[test]
    fn without_if_match_the_version_is_not_checked() {
        let seen = Rc::new(RefCell::new(Value::Null));
        let s2 = seen.clone();
        let i = instance(Box::new(move |req| {
            *s2.borrow_mut() = statement(req)["params"].clone();
            Ok(sql_answer(
                &json!({"outcome": "updated", "tenant": tenant_json(2),
                "hosts": {"slug": "demo", "domains": []}}),
            ))
        }));
        patch_tenant(&i, r#"{"ai":{"responder":"local"}}"#, None).unwrap();
        assert_eq!(
            *seen.borrow(),
            json!([null, null, "{\"ai\":{\"responder\":\"local\"}}"])
        );
    }

    #[test]
    fn a_stale_version_is_412_with_the_current_tag() {
        let i = instance(Box::new(|_| {
            Ok(sql_answer(
                &json!({"outcome": "version_mismatch", "tenant": tenant_json(9)}),
            ))
        }));
        i.platform.kv_insert(
            "tenant:v2:slug:demo",
            Bytes::from_static(b"{\"tenant\":null}"),
        );
        let e = patch_tenant(&i, r#"{"name":"X"}"#, Some("\"v3\"")).unwrap_err();
        assert_eq!(e.code(), Code::PreconditionFailed);
        assert_eq!(e.to_problem("/")["current_etag"], "\"v9\"");
        // Nothing changed: nothing is forgotten.
        assert!(i.platform.kv_get("tenant:v2:slug:demo").is_some());
        // A tag that is not one of ours never reaches SQL.
        let e = patch_tenant(&i, r#"{"name":"X"}"#, Some("\"abc\"")).unwrap_err();
        assert_eq!(e.code(), Code::PreconditionFailed);
        assert_eq!(i.platform.count(Some("/sql")), 1);
    }

    #[test]
    fn a_logo_that_is_not_a_ready_image_is_422_naming_the_field() {
        let i = instance(Box::new(|_| {
            Ok(sql_answer(&json!({"outcome": "image_not_ready"})))
        }));
        let e = patch_tenant(
            &i,
            r#"{"branding":{"logo_file_id":"11111111-1111-4111-8111-111111111111"}}"#,
            None,
        )
        .unwrap_err();
        assert_eq!(e.code(), Code::ImageNotReady);
        assert_eq!(e.status(), 422);
        assert_eq!(e.to_problem("/")["field"], "branding.logo_file_id");
    }

    #[test]
    fn an_invalid_patch_lists_every_field_and_sends_nothing() {
        let i = instance(Box::new(|_| panic!("no SQL for an invalid patch")));
        let e = patch_tenant(
            &i,
            r#"{"name":"","currency":"usd","cors_origins":["http://evil.example"],"limits":{}}"#,
            Some("\"v1\""),
        )
        .unwrap_err();
        assert_eq!(e.code(), Code::ValidationFailed);
        let mut fields: Vec<_> = e.field_errors().iter().map(|f| f.field.as_str()).collect();
        fields.sort();
        assert_eq!(fields, vec!["cors_origins", "currency", "limits", "name"]);
        assert!(i.platform.sent.borrow().is_empty());
    }

    #[test]
    fn proxy_failures_are_502() {
        let i = instance(Box::new(|_| {
            Ok(http::Response::builder()
                .status(500)
                .body(Bytes::from_static(b"boom"))
                .unwrap())
        }));
        let e = get_tenant(&i, None).unwrap_err();
        assert_eq!(e.status(), 502);
    }

    #[test]
    fn usage_is_typed_and_private() {
        let doc = json!({
            "period": {"start": "2023-11-01T00:00:00.000000Z", "end": "2023-12-01T00:00:00.000000Z"},
            "ai_tokens": {"used": 1200, "reserved": 300, "limit": 100000},
            "catalog_items": {"used": 12, "limit": 500},
            "orders": {"used": 3, "limit": null},
            "storage_bytes": {"used": 1048576, "limit": null},
            "members": {"used": 3, "limit": 50},
            "invitations_pending": 1,
        });
        let d2 = doc.clone();
        let i = instance(Box::new(move |_| Ok(sql_answer(&d2))));
        let req = Request::builder()
            .uri("/v1/usage")
            .body(Bytes::new())
            .unwrap();
        let resp = call(usage::<P>, parts(&i, None, req)).unwrap();
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.headers()["cache-control"], "private, no-store");
        assert_eq!(json_body(&resp), doc);
        assert_eq!(
            statement(&i.platform.sent.borrow()[0])["query"],
            "SELECT public.tenant_usage()"
        );
        // A document of another shape is a 502, not a guess.
        let i = instance(Box::new(|_| Ok(sql_answer(&json!({"period": 1})))));
        let req = Request::builder()
            .uri("/v1/usage")
            .body(Bytes::new())
            .unwrap();
        assert_eq!(
            call(usage::<P>, parts(&i, None, req)).unwrap_err().status(),
            502
        );
    }
}
