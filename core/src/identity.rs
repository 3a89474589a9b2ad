//! "Auth is external, identity is ours": the token proves who someone is; our database says who
//! that is to us (a [`UserId`], keyed by issuer and subject) and which role they hold on the
//! request's tenant (`tenant_members`). Issuers in claims mode keep the token's tenant and role
//! claims as the authority, but their users get a user id all the same.
//!
//! The hot path stays free of SQL: a user's id and their role per tenant are cached in the
//! key-value port (each behind the per-instance memory tier), and every membership change
//! deletes the member entry, so it takes effect on the next request. On a miss, one query
//! (`identity_resolve`, not a batch) upserts the user, refreshes email and name from the token
//! and reads the role, all at once.

use std::rc::Rc;
use std::time::Duration;

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::auth::{MembershipMode, Principal};
use crate::authz::{self, Role};
use crate::config::Config;
use crate::error::ApiError;
use crate::ids::{hex, TenantId, UserId};
use crate::obs::Cache;
use crate::ports::Platform;
use crate::sql;
use crate::tenancy::Tenant;

/// A user id never changes for an (issuer, subject): cached for a day.
const USER_TTL: Duration = Duration::from_secs(24 * 3600);

/// Who the caller is to us, on the request's tenant (if any).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub user: UserId,
    /// The role on the request's tenant, as this instance must enforce it: from
    /// `tenant_members` (membership mode) or the token's claims (claims mode); platform admins
    /// act as owners. `None`: no access to this tenant.
    pub role: Option<Role>,
    pub platform_admin: bool,
}

/// `user:v1:…`: the user id of an (issuer, subject). Hashed, so the key has a fixed length
/// and shape whatever the issuer put in `sub`.
pub fn user_key(issuer: &str, subject: &str) -> String {
    let mut h = Sha256::new();
    h.update(issuer.as_bytes());
    h.update([0]);
    h.update(subject.as_bytes());
    let digest = hex(&h.finalize());
    format!("user:v1:{}", digest.get(..32).unwrap_or(&digest))
}

/// `member:v1:{tenant}:{user}`: a user's role on a tenant (or none).
pub fn member_key(tenant: &TenantId, user: &UserId) -> String {
    ["member:v1:", tenant.as_str(), ":", user.as_str()].concat()
}

#[derive(Serialize, Deserialize)]
struct CachedUser {
    user_id: UserId,
}

#[derive(Serialize, Deserialize)]
struct CachedMember {
    role: Option<String>,
    /// The answer was given for a token with a verified email. A "no role" given without one
    /// does not hold once the email is verified: an invitation for it may be waiting to be
    /// accepted on the first verified request (a platform-created tenant's owner).
    #[serde(default)]
    verified: bool,
}

/// `identity_resolve`'s answer.
#[derive(Deserialize)]
struct Resolved {
    user_id: UserId,
    role: Option<String>,
}

/// Resolves the caller's [`Identity`] on `tenant` (none on the platform host).
pub async fn resolve<P: Platform>(
    platform: &P,
    config: &Config,
    principal: &Principal,
    tenant: Option<&Tenant>,
) -> Result<Identity, ApiError> {
    let platform_admin = authz::is_platform_admin(principal);
    // Whose role the database decides: membership-mode users on a tenant route.
    let member_tenant = tenant
        .filter(|_| principal.membership == MembershipMode::Membership && !platform_admin)
        .map(|t| &t.id);
    let ukey = principal.user_key(user_key);
    let cached_user = read::<CachedUser, _>(platform, ukey)
        .await
        .map(|c| c.user_id.clone());
    let cached_role = match (&cached_user, member_tenant) {
        (Some(user), Some(t)) => read::<CachedMember, _>(platform, &member_key(t, user))
            .await
            .filter(|m| m.role.is_some() || m.verified || !principal.email_verified)
            .map(|m| m.role.clone()),
        // Nothing to look up: the user id alone is needed.
        (Some(_), None) => Some(None),
        (None, _) => None,
    };
    let hit = cached_user.is_some() && cached_role.is_some();
    crate::ports::note(platform, |t| t.note_cache(Cache::Membership, hit));
    let (user, db_role) = match (cached_user, cached_role) {
        (Some(user), Some(role)) => (user, role),
        _ => {
            crate::ports::cold(look_up_and_remember(
                platform,
                config,
                principal,
                member_tenant,
            ))
            .await?
        }
    };
    let role = if platform_admin {
        tenant.map(|_| Role::Owner)
    } else {
        match (tenant, principal.membership) {
            (None, _) => None,
            (Some(_), MembershipMode::Membership) => db_role.as_deref().and_then(Role::parse),
            (Some(t), MembershipMode::Claims) => authz::claimed_role(principal, t),
        }
    };
    Ok(Identity {
        user,
        role,
        platform_admin,
    })
}

/// Forgets a user's cached role on a tenant: the next request reads it from the database.
pub async fn invalidate_member<P: Platform>(platform: &P, tenant: &TenantId, user: &UserId) {
    let _ = platform.delete(&member_key(tenant, user)).await;
}

async fn lookup<P: Platform>(
    platform: &P,
    config: &Config,
    p: &Principal,
    tenant: Option<&TenantId>,
) -> Result<Resolved, ApiError> {
    let params = vec![
        Some(p.issuer.clone()),
        Some(p.subject.clone()),
        p.email.clone(),
        Some(p.email_verified.to_string()),
        p.name.clone(),
        tenant.map(ToString::to_string),
    ];
    sql::query(
        platform,
        &config.origin,
        "SELECT public.identity_resolve($1, $2, $3, $4::boolean, $5, $6::uuid)",
        &params,
    )
    .await
    .and_then(|r| r.doc::<Resolved>())
    .map_err(|e| ApiError::upstream(format!("identity lookup failed: {e}")))
}

/// The user (and membership) the memory tier did not have: from the database, then kept.
async fn look_up_and_remember<P: Platform>(
    platform: &P,
    config: &Config,
    principal: &Principal,
    member_tenant: Option<&TenantId>,
) -> Result<(UserId, Option<String>), ApiError> {
    let ukey = principal.user_key(user_key);
    let r = lookup(platform, config, principal, member_tenant).await?;
    write(
        platform,
        ukey,
        &CachedUser {
            user_id: r.user_id.clone(),
        },
        USER_TTL,
    )
    .await;
    if let Some(t) = member_tenant {
        let m = CachedMember {
            role: r.role.clone(),
            verified: principal.email_verified,
        };
        write(
            platform,
            &member_key(t, &r.user_id),
            &m,
            config.tenancy.cache_ttl,
        )
        .await;
    }
    Ok((r.user_id, r.role))
}

/// A cached entry, or `None` for a miss, an unreadable entry or a failing store (a cache that
/// fails is a miss, never an outage). Decoded once per instance and value (`get_decoded`),
/// not per request.
async fn read<T: serde::de::DeserializeOwned + 'static, P: Platform>(
    platform: &P,
    key: &str,
) -> Option<Rc<T>> {
    platform.get_decoded(key, decode::<T>).await.ok()?
}

fn decode<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Option<T> {
    serde_json::from_slice(bytes).ok()
}

async fn write<T: Serialize, P: Platform>(platform: &P, key: &str, value: &T, ttl: Duration) {
    if let Ok(bytes) = serde_json::to_vec(value) {
        let _ = platform.put(key, Bytes::from(bytes), ttl).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{member, tenant, Instance, TestPlatform, TENANT};
    use futures_executor::block_on;
    use http::Response;
    use serde_json::json;

    const USER: &str = "7d1f3f4e-1b2c-4d5e-8f90-0a1b2c3d4e5f";

    fn membership(user: &str) -> Principal {
        let mut p = member(user, &["owner"]);
        p.membership = MembershipMode::Membership;
        p
    }

    /// An instance with a key-value store whose proxy answers `identity_resolve` with `role`.
    fn instance(role: Option<&'static str>) -> Instance {
        let mut i = Instance::new(&[], Box::new(|_| Ok(Response::new(Bytes::new()))));
        i.platform = TestPlatform::new(Box::new(move |_| {
            let row = json!({ "user_id": USER, "role": role });
            Ok(Response::new(Bytes::from(
                json!({ "command": "SELECT", "rowCount": 1,
                    "fields": [{ "name": "identity_resolve", "dataTypeID": 3802 }],
                    "rows": [[row]] })
                .to_string(),
            )))
        }))
        .with_kv();
        i
    }

    #[test]
    fn membership_role_comes_from_the_database_and_is_cached() {
        let i = instance(Some("admin"));
        let t = tenant(TENANT, "basic");
        let p = membership("sub-1");
        let first = block_on(resolve(&i.platform, &i.config, &p, Some(&t))).unwrap();
        assert_eq!(first.role, Some(Role::Admin));
        assert_eq!(first.user.as_str(), USER);
        let second = block_on(resolve(&i.platform, &i.config, &p, Some(&t))).unwrap();
        assert_eq!(second, first);
        assert_eq!(
            i.platform.count(None),
            1,
            "the second request is served from the cache"
        );
    }

    #[test]
    fn claims_are_ignored_in_membership_mode() {
        // The token names the tenant and `owner`; the database says: not a member.
        let i = instance(None);
        let t = tenant(TENANT, "basic");
        let id = block_on(resolve(&i.platform, &i.config, &membership("x"), Some(&t))).unwrap();
        assert_eq!(id.role, None);
    }

    #[test]
    fn invalidation_makes_the_next_request_ask_again() {
        let i = instance(Some("member"));
        let t = tenant(TENANT, "basic");
        let p = membership("sub-2");
        let id = block_on(resolve(&i.platform, &i.config, &p, Some(&t))).unwrap();
        block_on(invalidate_member(&i.platform, &t.id, &id.user));
        block_on(resolve(&i.platform, &i.config, &p, Some(&t))).unwrap();
        assert_eq!(i.platform.count(None), 2);
    }

    #[test]
    fn a_no_role_answer_for_an_unverified_email_is_asked_again_once_it_is_verified() {
        let i = instance(None);
        let t = tenant(TENANT, "basic");
        let mut p = membership("late");
        p.email_verified = false;
        block_on(resolve(&i.platform, &i.config, &p, Some(&t))).unwrap();
        block_on(resolve(&i.platform, &i.config, &p, Some(&t))).unwrap();
        assert_eq!(
            i.platform.count(None),
            1,
            "unverified: the cached answer holds"
        );
        p.email_verified = true;
        block_on(resolve(&i.platform, &i.config, &p, Some(&t))).unwrap();
        assert_eq!(i.platform.count(None), 2, "verified: asked again");
        block_on(resolve(&i.platform, &i.config, &p, Some(&t))).unwrap();
        assert_eq!(i.platform.count(None), 2, "and cached again");
    }

    #[test]
    fn claims_mode_takes_the_role_from_the_token() {
        let i = instance(None);
        let t = tenant(TENANT, "basic");
        let id = block_on(resolve(
            &i.platform,
            &i.config,
            &member("c", &["admin"]),
            Some(&t),
        ))
        .unwrap();
        assert_eq!(id.role, Some(Role::Admin));
        // Only the user id was looked up: no tenant was passed.
        let sent = i.platform.sent.borrow();
        let body: serde_json::Value = serde_json::from_slice(sent[0].body()).unwrap();
        assert_eq!(body["params"][5], serde_json::Value::Null);
    }

    #[test]
    fn user_keys_have_a_fixed_shape_and_separate_issuers() {
        let a = user_key("https://a", "x");
        assert_eq!(a.len(), "user:v1:".len() + 32);
        assert_ne!(a, user_key("https://a\0x", ""));
        assert_ne!(a, user_key("https://b", "x"));
    }
}
