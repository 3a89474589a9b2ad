//! `GET /v1/me`: who the caller is to us (user id, role on this tenant) and what the token says
//! (issuer, subject, email), until when.

use serde_json::json;

use crate::auth::MembershipMode;
use crate::authz::is_platform_admin;
use crate::cx::Member;
use crate::error::ApiError;
use crate::ports::Platform;
use crate::reply::{Cache, Reply};

pub async fn get<P: Platform>(cx: Member<'_, P>) -> Result<Reply, ApiError> {
    let (p, t) = (&cx.principal, &cx.tenant);
    let body = json!({
        "user_id": cx.user,
        "subject": p.subject,
        "email": p.email,
        "email_verified": p.email_verified,
        "name": p.name,
        "tenant": { "id": t.id, "slug": t.slug, "name": t.name, "tier": t.tier },
        "role": cx.role.as_str(),
        // The token's role claims, as sent; they grant nothing in membership mode.
        "roles": p.roles,
        "membership": match p.membership {
            MembershipMode::Membership => "membership",
            MembershipMode::Claims => "claims",
        },
        "platform_admin": is_platform_admin(p),
        "issuer": p.issuer,
        "token_use": p.token_use,
        "token_expires_at": p.expires_at,
    });
    Ok(Reply::ok(&body).cache(Cache::Private))
}
