//! Authorization: who may do what on which tenant. Routes declare the role they need in the
//! route table; this module is the one rule that applies it. The platform-admin role counts
//! only when its token comes from an issuer configured as a platform-admin issuer.

use crate::auth::Principal;
use crate::error::{ApiError, Code};
use crate::tenancy::{Tenant, TenantId};

/// Tenant roles, weakest first: a role grants everything below it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Role {
    Member,
    Admin,
    Owner,
}

pub const PLATFORM_ADMIN: &str = "platform-admin";

impl Role {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "member" => Some(Self::Member),
            "admin" => Some(Self::Admin),
            "owner" => Some(Self::Owner),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Member => "member",
            Self::Admin => "admin",
            Self::Owner => "owner",
        }
    }
}

pub fn is_platform_admin(p: &Principal) -> bool {
    p.platform_admin_issuer && p.roles.iter().any(|r| r == PLATFORM_ADMIN)
}

/// The strongest tenant role the principal's token names (platform admins act as owners).
pub fn best_role(p: &Principal) -> Option<Role> {
    if is_platform_admin(p) {
        return Some(Role::Owner);
    }
    p.roles.iter().filter_map(|r| Role::parse(r)).max()
}

/// Allows `p` to act on `tenant` with at least `required`, or says why not.
pub fn authorize(p: &Principal, tenant: &Tenant, required: Role) -> Result<(), ApiError> {
    if is_platform_admin(p) {
        return Ok(());
    }
    let token_tenant = p.tenant_id.as_deref().and_then(TenantId::parse);
    if token_tenant.as_ref() != Some(&tenant.id) {
        return Err(ApiError::new(
            Code::TenantMismatch,
            format!("This token is not valid for tenant {}.", tenant.slug),
        ));
    }
    let best = p.roles.iter().filter_map(|r| Role::parse(r)).max();
    if best < Some(required) {
        return Err(ApiError::new(
            Code::InsufficientRole,
            format!("This action needs the {} role.", required.as_str()),
        ));
    }
    Ok(())
}
