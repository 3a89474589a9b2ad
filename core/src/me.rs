//! `GET /v1/me`: who the token says the caller is, on which tenant, until when.

use bytes::Bytes;
use http::{header, HeaderValue, Response, StatusCode};
use serde_json::json;

use crate::authz::is_platform_admin;
use crate::error::{json_response, ApiError};
use crate::routes::Scope;

pub fn get(scope: &Scope) -> Result<Response<Bytes>, ApiError> {
    let (Some(p), Some(t)) = (&scope.principal, &scope.tenant) else {
        return Err(ApiError::Unauthenticated {
            code: "missing_token",
            detail: "This endpoint needs a bearer token.".into(),
        });
    };
    let body = json!({
        "user_id": p.user_id,
        "tenant": { "id": t.id, "slug": t.slug, "name": t.name, "tier": t.tier },
        "roles": p.roles,
        "platform_admin": is_platform_admin(p),
        "issuer": p.issuer,
        "token_use": p.token_use,
        "token_expires_at": p.expires_at,
    });
    let mut resp = json_response(StatusCode::OK, &body);
    resp.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("private, no-store"),
    );
    Ok(resp)
}
