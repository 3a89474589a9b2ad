//! The team: a tenant's members and their roles ([`members`]), invitations ([`mod@invitations`]:
//! `/v1/members/invitations`) and accepting them ([`mod@accept`]:
//! `/v1/invitations/{token}/accept`). Membership lives in `tenant_members`, reached through
//! the functions of `migrations/functions/50_identity.sql`, which decide every rule under the
//! right locks (the last owner, who may change whom); Rust validates the request completely
//! first, refuses what the caller's own role can never allow before any SQL, and reads the
//! functions' outcomes into typed enums. Every change forgets the affected user's cached role
//! ([`identity::invalidate_member`](crate::identity::invalidate_member)), so it applies from
//! their next request.
//!
//! Roles are ranked `owner > admin > member`, and nobody raises anyone (themselves included)
//! above their own role: only owners make owners. Platform admins act as owners here, without
//! a membership row of their own.

use serde::{Deserialize, Serialize};

use crate::authz::Role;
use crate::ids::UserId;
use crate::input::JsonObject;

pub mod accept;
pub mod invitations;
pub mod members;

pub use accept::accept;
pub use invitations::{invitations, invite, revoke, Invitation, InvitationToken};
pub use members::{list, remove, update};

/// Every role, as bodies and documents name them.
pub const ROLES: &[&str] = &["owner", "admin", "member"];

/// Largest body a team endpoint accepts: a role and an email address.
const MAX_BODY: usize = 4 * 1024;

/// A member as the API shows it (`member_rows()`'s documents and the member of outcomes).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TeamMember {
    pub user_id: UserId,
    /// As the member's token last claimed it; absent for users whose tokens carry none.
    pub email: Option<String>,
    pub name: Option<String>,
    #[serde(with = "role_name")]
    pub role: Role,
    pub joined_at: String,
}

/// A [`Role`] as its wire name (`"admin"`), in documents read from SQL and written to clients.
pub mod role_name {
    use serde::de::Error as _;
    use serde::{Deserialize, Deserializer, Serializer};

    use crate::authz::Role;

    pub fn serialize<S: Serializer>(role: &Role, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(role.as_str())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Role, D::Error> {
        let name = String::deserialize(d)?;
        Role::parse(&name).ok_or_else(|| D::Error::custom(format!("unknown role {name:?}")))
    }
}

/// The required member `role` of a body.
fn read_role(o: &mut JsonObject) -> Option<Role> {
    o.one_of("role", true, ROLES)
        .as_deref()
        .and_then(Role::parse)
}

#[cfg(test)]
mod fixtures {
    //! What the team's handler tests share: an instance whose key-value store remembers, the
    //! proxy answering one outcome, requests, and documents as SQL builds them.

    use bytes::Bytes;
    use futures_executor::block_on;
    use http::{Method, Request, Response};
    use serde_json::{json, Value};

    use crate::auth::Principal;
    use crate::body::Body;
    use crate::error::ApiError;
    use crate::testing::{sql_answer, user_of, Instance, TestPlatform};

    /// A subject whose token names this fixture's tenant, and other people.
    pub const ALICE: &str = "alice";
    pub const BOB: &str = "bob";

    /// An instance whose key-value store remembers and whose proxy answers every batch with
    /// `doc` as the statement's only row.
    pub fn instance(doc: Value) -> Instance {
        let mut i = Instance::new(&[], Box::new(|_| Ok(Response::new(Bytes::new()))));
        i.platform = TestPlatform::new(Box::new(move |_| Ok(sql_answer(&doc)))).with_kv();
        i
    }

    pub fn request(method: Method, uri: &str, body: Option<&str>) -> Request<Bytes> {
        let b = Request::builder().method(method).uri(uri);
        let b = match body {
            Some(_) => b.header(http::header::CONTENT_TYPE, "application/json"),
            None => b,
        };
        b.body(Bytes::from(body.unwrap_or_default().to_owned()))
            .unwrap()
    }

    /// The response with its body gathered.
    pub fn full(r: Result<Response<Body<'_>>, ApiError>) -> Result<Response<Bytes>, ApiError> {
        r.map(|resp| {
            let (head, body) = resp.into_parts();
            Response::from_parts(head, block_on(body.collect()))
        })
    }

    pub fn json_body(resp: &Response<Bytes>) -> Value {
        serde_json::from_slice(resp.body()).unwrap()
    }

    /// The batches sent so far, each as its statement after the tenant's `set_config`.
    pub fn statements(i: &Instance) -> Vec<Value> {
        i.platform
            .sent
            .borrow()
            .iter()
            .map(|r| {
                let v: Value = serde_json::from_slice(r.body()).unwrap();
                assert_eq!(v["queries"].as_array().unwrap().len(), 2, "one statement");
                crate::testing::statement(r)
            })
            .collect()
    }

    /// `subject`'s member document with `role`.
    pub fn member_doc(subject: &str, role: &str) -> Value {
        json!({
            "user_id": user_of(subject), "email": format!("{subject}@example.com"),
            "name": null, "role": role, "joined_at": "2023-11-14T22:00:00.000000Z",
        })
    }

    pub const INVITATION: &str = "22222222-2222-4222-8222-222222222222";

    pub fn invitation_doc(id: &str, email: &str, role: &str) -> Value {
        json!({
            "id": id, "email": email, "role": role, "status": "pending",
            "created_at": "2023-11-14T22:13:20.000000Z",
            "expires_at": "2023-11-21T22:13:20.000000Z", "accepted_at": null,
        })
    }

    /// A platform admin's token (no membership; the router lets them act as owners).
    pub fn platform_admin(subject: &str) -> Principal {
        let mut p = crate::testing::member(subject, &[crate::authz::PLATFORM_ADMIN]);
        p.platform_admin_issuer = true;
        p.tenant_id = None;
        p
    }

    /// Marks `subject`'s role as cached on the fixture tenant, as `identity::resolve` would.
    pub fn cache_role(i: &Instance, subject: &str, role: Option<&str>) -> String {
        let tenant = crate::ids::TenantId::parse(crate::testing::TENANT).unwrap();
        let key = crate::identity::member_key(&tenant, &user_of(subject));
        i.platform
            .kv_insert(&key, Bytes::from(json!({ "role": role }).to_string()));
        assert!(i.platform.kv_get(&key).is_some());
        key
    }

    /// A token of the right shape.
    pub const TOKEN: &str = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJ-_01234";

    pub fn sha256_hex(s: &str) -> String {
        use sha2::{Digest, Sha256};
        crate::ids::hex(&Sha256::digest(s.as_bytes()))
    }

    pub const GET: Method = Method::GET;
    pub const POST: Method = Method::POST;
    pub const PATCH: Method = Method::PATCH;
    pub const DELETE: Method = Method::DELETE;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn members_read_and_write_roles_by_name() {
        let m: TeamMember = serde_json::from_value(fixtures::member_doc("x", "admin")).unwrap();
        assert_eq!(m.role, Role::Admin);
        assert_eq!(serde_json::to_value(&m).unwrap()["role"], "admin");
        assert!(serde_json::from_value::<TeamMember>(fixtures::member_doc("x", "boss")).is_err());
    }
}
