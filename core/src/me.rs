//! `GET /v1/me`: who the caller is to us (user id, role on this tenant) and what the token says
//! (issuer, subject, email), until when.

use serde::Serialize;

use crate::auth::MembershipMode;
use crate::authz::is_platform_admin;
use crate::cx::Member;
use crate::error::ApiError;
use crate::ids::{TenantId, UserId};
use crate::ports::Platform;
use crate::reply::{Cache, Reply};
use crate::tenancy::Slug;

/// The answer, borrowed from the request's context. Members in alphabetical order: the order
/// the document has always had.
#[derive(Serialize)]
struct Me<'a> {
    email: Option<&'a str>,
    email_verified: bool,
    issuer: &'a str,
    membership: &'static str,
    name: Option<&'a str>,
    platform_admin: bool,
    role: &'static str,
    /// The token's role claims, as sent; they grant nothing in membership mode.
    roles: &'a [String],
    subject: &'a str,
    tenant: TenantRef<'a>,
    token_expires_at: u64,
    token_use: Option<&'a str>,
    user_id: &'a UserId,
}

#[derive(Serialize)]
struct TenantRef<'a> {
    id: &'a TenantId,
    name: &'a str,
    slug: &'a Slug,
    tier: &'a str,
}

pub async fn get<P: Platform>(cx: Member<'_, P>) -> Result<Reply, ApiError> {
    let (p, t) = (&cx.principal, &cx.tenant);
    let body = Me {
        email: p.email.as_deref(),
        email_verified: p.email_verified,
        issuer: &p.issuer,
        membership: match p.membership {
            MembershipMode::Membership => "membership",
            MembershipMode::Claims => "claims",
        },
        name: p.name.as_deref(),
        platform_admin: is_platform_admin(p),
        role: cx.role.as_str(),
        roles: &p.roles,
        subject: &p.subject,
        tenant: TenantRef {
            id: &t.id,
            name: &t.name,
            slug: &t.slug,
            tier: &t.tier,
        },
        token_expires_at: p.expires_at,
        token_use: p.token_use.as_deref(),
        user_id: &cx.user,
    };
    Ok(Reply::ok(&body).cache(Cache::Private))
}
