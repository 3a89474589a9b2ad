//! Authorization: who may do what on which tenant. Routes declare the role they need in the
//! route table; this module is the one rule that applies it to the caller's role. The platform-admin role counts
//! only when its token comes from an issuer configured as a platform-admin issuer.

use crate::auth::{MembershipMode, Principal};
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

/// The role a claims-mode token grants on `tenant`: its strongest role claim, when its tenant
/// claim names this tenant.
pub fn claimed_role(p: &Principal, tenant: &Tenant) -> Option<Role> {
    let token_tenant = p.tenant_id.as_deref().and_then(TenantId::parse);
    if token_tenant.as_ref() != Some(&tenant.id) {
        return None;
    }
    p.roles.iter().filter_map(|r| Role::parse(r)).max()
}

/// Allows the caller, who holds `role` on `tenant` (as `identity` resolved it), to act with at
/// least `required`, or says why not; returns the role they act with.
pub fn authorize(
    p: &Principal,
    role: Option<Role>,
    tenant: &Tenant,
    required: Role,
) -> Result<Role, ApiError> {
    let Some(role) = role else {
        return Err(match p.membership {
            MembershipMode::Membership => ApiError::new(
                Code::NotAMember,
                format!("You are not a member of tenant {}.", tenant.slug),
            ),
            MembershipMode::Claims => ApiError::new(
                Code::TenantMismatch,
                format!("This token is not valid for tenant {}.", tenant.slug),
            ),
        });
    };
    if role < required {
        return Err(ApiError::new(
            Code::InsufficientRole,
            format!("This action needs the {} role.", required.as_str()),
        ));
    }
    Ok(role)
}
