//! Members: the list (`GET /v1/members`, any member), role changes (`PATCH /v1/members/{id}`,
//! admins) and removal (`DELETE /v1/members/{id}`: anyone may leave, removing someone else
//! needs admin). `{id}` is the member's user id. The rules that need the current roles (the
//! target must not outrank the caller; a tenant always keeps an owner) are decided by
//! `member_update_role` and `member_remove` under a lock of the tenant's owners; what the
//! caller's own role alone settles is refused here, before any SQL.

use serde::Deserialize;
use serde_json::{json, Map};

use super::{read_role, TeamMember, MAX_BODY};
use crate::authz::Role;
use crate::cx::{FromPath as _, Json, Member, Path, Query};
use crate::error::{ApiError, Code};
use crate::identity;
use crate::ids::UserId;
use crate::input::{BodyCx, FromJson, FromQuery, JsonObject, QueryString};
use crate::page::{PageRequest, Select, Sort};
use crate::ports::Platform;
use crate::reply::{Cache, Reply};
use crate::sql::{Params, Statement};

/// Page size when none is asked for.
const DEFAULT_LIMIT: i64 = 50;

/// Listing orders; the first is the default (who joined first, first).
const SORTS: &[Sort] = &[
    Sort {
        name: "joined_at",
        column: "m.created_at",
        key: "public.iso_utc(m.created_at)",
        cast: "timestamptz",
        descending: false,
    },
    Sort {
        name: "-joined_at",
        column: "m.created_at",
        key: "public.iso_utc(m.created_at)",
        cast: "timestamptz",
        descending: true,
    },
];

/// `GET /v1/members?role=&sort=&limit=&cursor=`.
pub struct MemberListing {
    page: PageRequest,
    role: Option<Role>,
}

impl FromQuery for MemberListing {
    fn from_query(q: &mut QueryString, _: &BodyCx<'_>) -> Self {
        let page = PageRequest::read(q, SORTS, DEFAULT_LIMIT);
        let role = q
            .one_of("role", super::ROLES)
            .as_deref()
            .and_then(Role::parse);
        Self { page, role }
    }
}

/// `GET /v1/members`: the tenant's members, pages in join order.
pub async fn list<P: Platform>(
    cx: Member<'_, P>,
    Query(listing): Query<MemberListing>,
) -> Result<Reply, ApiError> {
    let mut params = Params::new();
    let mut filters = Vec::new();
    if let Some(role) = listing.role {
        filters.push(format!("m.doc->>'role' = {}", params.bind(role.as_str())));
    }
    let stmt = listing.page.statement(
        Select {
            doc: "m.doc",
            from: "public.member_rows() m",
            id: "m.user_id",
            filters,
        },
        params,
    );
    let page = listing.page.page::<TeamMember>(&cx.db.one(stmt).await?)?;
    Ok(Reply::ok(&page).cache(Cache::Private))
}

/// `PATCH /v1/members/{id}`'s body: `{role}`.
pub struct RoleChange {
    role: Role,
}

impl FromJson for RoleChange {
    const MAX_BODY: usize = MAX_BODY;

    fn from_json(o: &mut JsonObject, _: &BodyCx<'_>) -> Option<Self> {
        Some(Self {
            role: read_role(o)?,
        })
    }
}

/// What `member_update_role` decided.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "snake_case")]
enum RoleUpdate {
    Updated {
        member: TeamMember,
    },
    NotFound,
    Forbidden {
        #[serde(default)]
        reason: String,
    },
    LastOwner,
}

impl crate::outcome::Outcome for RoleUpdate {}

/// What `member_remove` decided.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Removal {
    /// `{user_id}` too: the target, whom the handler knows already.
    Removed,
    NotFound,
    Forbidden {
        #[serde(default)]
        reason: String,
    },
    LastOwner,
}

impl crate::outcome::Outcome for Removal {}

/// 403 `insufficient_role` for what the database refused, its reason in the detail (and as
/// `reason`, for clients that switch on it).
fn forbidden(what: &str, reason: &str) -> ApiError {
    let mut m = Map::new();
    m.insert("reason".into(), json!(reason));
    ApiError::new(
        Code::InsufficientRole,
        format!("Your role does not allow you to {what}: {reason}."),
    )
    .with_members(m)
}

fn last_owner() -> ApiError {
    ApiError::new(
        Code::LastOwner,
        "This tenant would be left without an owner: make another member owner first.",
    )
}

/// 403 `insufficient_role` for what the caller's own role settles before any SQL.
pub(super) fn above_own_role(role: Role, own: Role) -> ApiError {
    ApiError::new(
        Code::InsufficientRole,
        format!(
            "Nobody grants a role above their own: yours is {}, not enough to grant {}.",
            own.as_str(),
            role.as_str()
        ),
    )
}

/// `PATCH /v1/members/{id}` `{role}`: changes a member's role. Nobody raises anyone above
/// their own role, nor changes the role of someone who outranks them; the last owner stays.
pub async fn update<P: Platform>(
    cx: Member<'_, P>,
    Json(change): Json<RoleChange>,
    Path(target): Path<UserId>,
) -> Result<Reply, ApiError> {
    if change.role > cx.role {
        return Err(above_own_role(change.role, cx.role));
    }
    let outcome: RoleUpdate = cx
        .db
        .outcome(Statement::new(
            "SELECT public.member_update_role($1::uuid, $2, $3::uuid, $4)",
            vec![
                Some(cx.user().to_owned()),
                Some(cx.role.as_str().to_owned()),
                Some(target.to_string()),
                Some(change.role.as_str().to_owned()),
            ],
        ))
        .await?;
    match outcome {
        RoleUpdate::Updated { member } => {
            identity::invalidate_member(cx.env.platform, &cx.tenant.id, &target).await;
            Ok(Reply::ok(&member).cache(Cache::Private))
        }
        RoleUpdate::NotFound => Err(ApiError::not_found(UserId::KIND)),
        RoleUpdate::Forbidden { reason } => Err(forbidden("change this member's role", &reason)),
        RoleUpdate::LastOwner => Err(last_owner()),
    }
}

/// `DELETE /v1/members/{id}`: a member leaves (their own id), or an admin removes someone who
/// does not outrank them. The last owner can do neither.
pub async fn remove<P: Platform>(
    cx: Member<'_, P>,
    Path(target): Path<UserId>,
) -> Result<Reply, ApiError> {
    if target != cx.user && cx.role < Role::Admin {
        return Err(ApiError::new(
            Code::InsufficientRole,
            "Removing another member needs the admin role; you may only leave yourself.",
        ));
    }
    let outcome: Removal = cx
        .db
        .outcome(Statement::new(
            "SELECT public.member_remove($1::uuid, $2, $3::uuid)",
            vec![
                Some(cx.user().to_owned()),
                Some(cx.role.as_str().to_owned()),
                Some(target.to_string()),
            ],
        ))
        .await?;
    match outcome {
        Removal::Removed => {
            identity::invalidate_member(cx.env.platform, &cx.tenant.id, &target).await;
            Ok(Reply::no_content())
        }
        Removal::NotFound => Err(ApiError::not_found(UserId::KIND)),
        Removal::Forbidden { reason } => Err(forbidden("remove this member", &reason)),
        Removal::LastOwner => Err(last_owner()),
    }
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::*;
    use super::*;
    use crate::cx::Handler;
    use crate::identity::Identity;
    use crate::testing::{member, user_of, Instance, TestPlatform};
    use futures_executor::block_on;
    use http::Response;
    use serde_json::{json, Value};
    use std::rc::Rc;

    fn get(i: &Instance, uri: &str) -> Result<Response<bytes::Bytes>, ApiError> {
        let parts = i.parts(
            "basic",
            Some(member(ALICE, &["member"])),
            None,
            request(GET, uri, None),
        );
        full(block_on(Handler::call(list::<TestPlatform>, parts)))
    }

    /// `PATCH /v1/members/{target}` with `body`, by `principal`.
    fn patch(
        i: &Instance,
        principal: crate::auth::Principal,
        target: &str,
        body: &str,
    ) -> Result<Response<bytes::Bytes>, ApiError> {
        let uri = format!("/v1/members/{target}");
        let mut parts = i.parts(
            "basic",
            Some(principal.clone()),
            Some(target),
            request(PATCH, &uri, Some(body)),
        );
        if crate::authz::is_platform_admin(&principal) {
            // As identity::resolve makes them: owners, without membership.
            parts.identity = Some(Rc::new(Identity {
                user: user_of(&principal.subject),
                role: Some(Role::Owner),
                platform_admin: true,
            }));
        }
        full(block_on(Handler::call(update::<TestPlatform>, parts)))
    }

    /// `DELETE /v1/members/{target}` by `subject` with `role`.
    fn delete(
        i: &Instance,
        subject: &str,
        role: &str,
        target: &str,
    ) -> Result<Response<bytes::Bytes>, ApiError> {
        let uri = format!("/v1/members/{target}");
        let parts = i.parts(
            "basic",
            Some(member(subject, &[role])),
            Some(target),
            request(DELETE, &uri, None),
        );
        full(block_on(Handler::call(remove::<TestPlatform>, parts)))
    }

    fn bob() -> String {
        user_of(BOB).to_string()
    }

    #[test]
    fn the_list_pages_member_rows_in_join_order() {
        let page = json!({ "doc": member_doc(BOB, "admin"), "key": "2023-11-14T22:00:00.000000Z",
            "id": user_of(BOB) });
        let i = instance(page);
        let resp = get(&i, "/v1/members?role=admin&limit=1").unwrap();
        assert_eq!(resp.headers()["cache-control"], "private, no-store");
        let body = json_body(&resp);
        assert_eq!(body["items"][0]["user_id"], bob());
        assert_eq!(body["items"][0]["role"], "admin");
        // One row for a limit of one: no more pages (the pager asks for one extra).
        assert_eq!(body["next_cursor"], Value::Null);
        let s = statements(&i);
        assert_eq!(s.len(), 1);
        let q = s[0]["query"].as_str().unwrap();
        assert!(q.contains("FROM public.member_rows() m"), "{q}");
        assert!(q.contains("m.doc->>'role' = $1"), "{q}");
        assert!(
            q.contains("ORDER BY m.created_at ASC, m.user_id ASC"),
            "{q}"
        );
        assert_eq!(s[0]["params"], json!(["admin", "2"]));

        let i = instance(json!(null));
        get(&i, "/v1/members?sort=-joined_at").unwrap_err();
        let q = statements(&i)[0]["query"].as_str().unwrap().to_owned();
        assert!(q.contains("ORDER BY m.created_at DESC"), "{q}");
    }

    #[test]
    fn bad_list_parameters_are_refused_before_sql() {
        let i = instance(json!(null));
        let err = get(&i, "/v1/members?role=boss&sort=name&limit=0").unwrap_err();
        let fields: Vec<_> = err.field_errors().iter().map(|e| e.field.clone()).collect();
        assert_eq!(fields, vec!["sort", "limit", "role"]);
        assert!(i.platform.sent.borrow().is_empty());
    }

    #[test]
    fn role_changes_are_validated_field_by_field_before_sql() {
        let i = instance(json!(null));
        let owner = member(ALICE, &["owner"]);
        for (body, fields) in [
            (r#"{"role":"boss","colour":"red"}"#, vec!["colour", "role"]),
            (r#"{}"#, vec!["role"]),
            (r#"{"role":5}"#, vec!["role"]),
        ] {
            let err = patch(&i, owner.clone(), &bob(), body).unwrap_err();
            let mut got: Vec<_> = err.field_errors().iter().map(|e| e.field.clone()).collect();
            got.sort();
            assert_eq!(got, fields, "{body}");
        }
        let big = format!(r#"{{"role":"admin","x":"{}"}}"#, "y".repeat(5000));
        assert_eq!(
            patch(&i, owner.clone(), &bob(), &big).unwrap_err().code(),
            Code::PayloadTooLarge
        );
        // Not a user id: nobody here.
        let err = patch(&i, owner, "bob", r#"{"role":"admin"}"#).unwrap_err();
        assert_eq!(err.code(), Code::NotFound);
        assert!(i.platform.sent.borrow().is_empty());
    }

    #[test]
    fn nobody_grants_a_role_above_their_own() {
        let i = instance(json!(null));
        let err = patch(&i, member(ALICE, &["admin"]), &bob(), r#"{"role":"owner"}"#).unwrap_err();
        assert_eq!(err.code(), Code::InsufficientRole);
        assert!(
            i.platform.sent.borrow().is_empty(),
            "refused before any SQL"
        );
    }

    #[test]
    fn a_role_change_is_one_call_and_forgets_the_cached_role() {
        let i = instance(json!({ "outcome": "updated", "member": member_doc(BOB, "admin") }));
        let key = cache_role(&i, BOB, Some("member"));
        let resp = patch(&i, member(ALICE, &["admin"]), &bob(), r#"{"role":"admin"}"#).unwrap();
        assert_eq!(resp.status(), 200);
        assert_eq!(json_body(&resp)["role"], "admin");
        assert_eq!(json_body(&resp)["user_id"], bob());
        let s = statements(&i);
        assert_eq!(s.len(), 1);
        assert_eq!(
            s[0]["query"],
            "SELECT public.member_update_role($1::uuid, $2, $3::uuid, $4)"
        );
        assert_eq!(
            s[0]["params"],
            json!([user_of(ALICE), "admin", bob(), "admin"])
        );
        assert!(
            i.platform.kv_get(&key).is_none(),
            "bob's cached role is gone"
        );
    }

    #[test]
    fn platform_admins_act_as_owners() {
        let i = instance(json!({ "outcome": "updated", "member": member_doc(BOB, "owner") }));
        let resp = patch(&i, platform_admin("ops"), &bob(), r#"{"role":"owner"}"#).unwrap();
        assert_eq!(resp.status(), 200);
        let s = statements(&i);
        assert_eq!(
            s[0]["params"],
            json!([user_of("ops"), "owner", bob(), "owner"])
        );
    }

    #[test]
    fn role_change_refusals_map_to_problems_and_keep_the_cache() {
        for (doc, code) in [
            (json!({ "outcome": "not_found" }), Code::NotFound),
            (
                json!({ "outcome": "forbidden", "reason": "target_outranks_actor" }),
                Code::InsufficientRole,
            ),
            (json!({ "outcome": "last_owner" }), Code::LastOwner),
        ] {
            let i = instance(doc.clone());
            let key = cache_role(&i, BOB, Some("owner"));
            let err = patch(
                &i,
                member(ALICE, &["owner"]),
                &bob(),
                r#"{"role":"member"}"#,
            )
            .unwrap_err();
            assert_eq!(err.code(), code, "{doc}");
            if code == Code::InsufficientRole {
                assert!(
                    err.detail().contains("target_outranks_actor"),
                    "{}",
                    err.detail()
                );
            }
            assert!(i.platform.kv_get(&key).is_some(), "nothing changed: {doc}");
        }
        // An outcome outside the contract is a 502, never a success.
        let i = instance(json!({ "outcome": "exploded" }));
        let err = patch(
            &i,
            member(ALICE, &["owner"]),
            &bob(),
            r#"{"role":"member"}"#,
        )
        .unwrap_err();
        assert_eq!(err.code(), Code::UpstreamUnavailable);
    }

    #[test]
    fn members_may_leave_but_not_remove_others() {
        let alice = user_of(ALICE).to_string();
        let i = instance(json!({ "outcome": "removed", "user_id": alice }));
        let key = cache_role(&i, ALICE, Some("member"));
        let resp = delete(&i, ALICE, "member", &alice).unwrap();
        assert_eq!(resp.status(), 204);
        let s = statements(&i);
        assert_eq!(
            s[0]["query"],
            "SELECT public.member_remove($1::uuid, $2, $3::uuid)"
        );
        assert_eq!(s[0]["params"], json!([alice, "member", alice]));
        assert!(i.platform.kv_get(&key).is_none());

        let i = instance(json!(null));
        let err = delete(&i, ALICE, "member", &bob()).unwrap_err();
        assert_eq!(err.code(), Code::InsufficientRole);
        assert!(
            i.platform.sent.borrow().is_empty(),
            "refused before any SQL"
        );
    }

    #[test]
    fn admins_remove_others_and_refusals_map_to_problems() {
        let i = instance(json!({ "outcome": "removed", "user_id": bob() }));
        let key = cache_role(&i, BOB, Some("member"));
        assert_eq!(delete(&i, ALICE, "admin", &bob()).unwrap().status(), 204);
        assert_eq!(
            statements(&i)[0]["params"],
            json!([user_of(ALICE), "admin", bob()])
        );
        assert!(i.platform.kv_get(&key).is_none());

        for (doc, code) in [
            (json!({ "outcome": "not_found" }), Code::NotFound),
            (
                json!({ "outcome": "forbidden", "reason": "target_outranks_actor" }),
                Code::InsufficientRole,
            ),
            (json!({ "outcome": "last_owner" }), Code::LastOwner),
        ] {
            let i = instance(doc.clone());
            let key = cache_role(&i, BOB, Some("owner"));
            let err = delete(&i, ALICE, "admin", &bob()).unwrap_err();
            assert_eq!(err.code(), code, "{doc}");
            assert_eq!(i.platform.sent.borrow().len(), 1);
            assert!(i.platform.kv_get(&key).is_some(), "nothing changed: {doc}");
        }
    }
}
