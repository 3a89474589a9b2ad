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

/// Longest email address accepted: the longest a mail path can carry (RFC 5321).
pub const MAX_EMAIL: usize = 254;

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

/// A deliverable-looking address, at most [`MAX_EMAIL`] long: one `@`; a local part of at most
/// 64 characters without spaces, quotes or brackets, no leading, trailing or doubled dot; a
/// domain of at least two dot-separated labels of letters, digits and inner hyphens (non-ASCII
/// letters allowed: internationalised addresses), each at most 63 long. Sending mail is the
/// real proof; this refuses what can never be one, and what would make a confusing invitation.
pub fn is_email(s: &str) -> bool {
    let Some((local, domain)) = s.split_once('@') else {
        return false;
    };
    let local_ok = (1..=64).contains(&local.chars().count())
        && !local.starts_with('.')
        && !local.ends_with('.')
        && !local.contains("..")
        && local.chars().all(|c| {
            c.is_ascii_alphanumeric()
                || "!#$%&'*+-/=?^_`{|}~.".contains(c)
                || (!c.is_ascii() && !c.is_control() && !c.is_whitespace())
        });
    let labels: Vec<&str> = domain.split('.').collect();
    let domain_ok = labels.len() >= 2
        && labels.iter().all(|l| {
            (1..=63).contains(&l.chars().count())
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.chars().all(|c| {
                    c.is_ascii_alphanumeric() || c == '-' || (!c.is_ascii() && c.is_alphanumeric())
                })
        });
    s.len() <= MAX_EMAIL && local_ok && domain_ok
}

/// An email address as stored and compared (`tenant_invitations.email` is lower-case): the
/// same lowering for the invitation's address and the accepting token's, so they meet.
pub fn normalize_email(s: &str) -> String {
    s.to_lowercase()
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
            Some(_) => b.header("content-type", "application/json"),
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
    fn emails_are_plausible_bounded_addresses() {
        for ok in [
            "a@b.co",
            "first.last+tag@sub.example.org",
            "o'brien@example.ie",
            "ü@bücher.de",
            &format!("{}@example.com", "x".repeat(64)),
        ] {
            assert!(is_email(ok), "{ok}");
        }
        for bad in [
            "",
            "a",
            "@b.co",
            "a@b",
            "a@.b",
            "a@b.",
            "a b@c.de",
            "a@b@c.de",
            ".a@b.co",
            "a.@b.co",
            "a..b@c.de",
            "\"a\"@b.co",
            "a@-b.co",
            "a@b-.co",
            "a@b_c.co",
            "<a@b.co>",
            "a@b..co",
            "a\u{0}@b.co",
            &format!("{}@example.com", "x".repeat(65)),
            &format!("a@{}.com", "x".repeat(64)),
            &format!("a@{}.com", vec!["x".repeat(60); 5].join(".")),
        ] {
            assert!(!is_email(bad), "{bad}");
        }
        assert_eq!(normalize_email("Ann@Example.COM"), "ann@example.com");
    }

    #[test]
    fn members_read_and_write_roles_by_name() {
        let m: TeamMember = serde_json::from_value(fixtures::member_doc("x", "admin")).unwrap();
        assert_eq!(m.role, Role::Admin);
        assert_eq!(serde_json::to_value(&m).unwrap()["role"], "admin");
        assert!(serde_json::from_value::<TeamMember>(fixtures::member_doc("x", "boss")).is_err());
    }
}
