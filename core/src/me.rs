//! `GET /v1/me`: who the token says the caller is, on which tenant, until when.

use serde_json::json;

use crate::authz::is_platform_admin;
use crate::cx::Member;
use crate::error::ApiError;
use crate::ports::Platform;
use crate::reply::{Cache, Reply};

pub async fn get<P: Platform>(cx: Member<'_, P>) -> Result<Reply, ApiError> {
    let (p, t) = (&cx.principal, &cx.tenant);
    let body = json!({
        "user_id": p.user_id,
        "tenant": { "id": t.id, "slug": t.slug, "name": t.name, "tier": t.tier },
        "roles": p.roles,
        "platform_admin": is_platform_admin(p),
        "issuer": p.issuer,
        "token_use": p.token_use,
        "token_expires_at": p.expires_at,
    });
    Ok(Reply::ok(&body).cache(Cache::Private))
}
