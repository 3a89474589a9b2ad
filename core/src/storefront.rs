//! The public storefront API (no credentials; tenant from Host): the tenant's profile and its
//! active catalog. Responses are cacheable by CDNs and browsers (`Cache-Control: public`,
//! `ETag`, `304` on `If-None-Match`); CORS is applied by the router.

use bytes::Bytes;
use http::{header, HeaderValue, Request, Response, StatusCode};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::catalog::{find_item, run_one, tenant_currency, Audience, Listing};
use crate::error::{json_response, ApiError};
use crate::ids::hex;
use crate::input::etag_matches;
use crate::ports::Platform;
use crate::routes::{Ctx, Scope};

/// An active item as shoppers see it: no inventory count, status or version.
const PUBLIC_ITEM: &str = "jsonb_build_object(\
    'id', i.id, 'sku', i.sku, 'name', i.name, 'description', i.description, \
    'price', i.price::text, 'currency', i.currency, 'category', i.category, \
    'in_stock', i.inventory > 0, 'images', public.ready_images(i.image_file_ids), \
    'updated_at', public.iso_utc(i.updated_at))";

/// Replaces each item's `images` (ids and object keys from `public.ready_images`) with
/// presigned inline GET URLs. Signing time is rounded down to the minute, so the body (and its
/// ETag) stays the same for a minute and caches can revalidate; URLs stay valid for at least
/// `DOWNLOAD_URL_TTL_SECONDS` minus that minute.
fn with_image_urls<P: Platform>(ctx: &Ctx<'_, P>, mut item: Value) -> Value {
    let now = ctx.platform.now();
    let secs = now
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let signed_at = std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs - secs % 60);
    let images: Vec<Value> = item
        .get("images")
        .and_then(Value::as_array)
        .map(|list| {
            list.iter()
                .filter_map(|img| {
                    let s = |k: &str| img.get(k).and_then(Value::as_str).unwrap_or_default();
                    let url = crate::uploads::image_url(
                        &ctx.config.s3,
                        s("key"),
                        s("filename"),
                        signed_at,
                    )
                    .ok()?;
                    Some(json!({ "id": s("id"), "content_type": s("content_type"), "url": url }))
                })
                .collect()
        })
        .unwrap_or_default();
    if let Some(obj) = item.as_object_mut() {
        obj.insert("images".into(), Value::Array(images));
    }
    item
}

/// A public, cacheable JSON answer, or `304 Not Modified` when the client has it already.
fn cacheable<P>(ctx: &Ctx<'_, P>, req: &Request<Bytes>, body: &Value) -> Response<Bytes> {
    let text = body.to_string();
    let digest = Sha256::digest(text.as_bytes());
    let etag = format!("\"{}\"", hex(digest.get(..16).unwrap_or_default()));
    let max_age = ctx.config.tenancy.storefront_max_age.as_secs();
    let cache_control = format!(
        "public, max-age={max_age}, stale-while-revalidate={}",
        max_age.saturating_mul(5)
    );
    let not_modified = etag_matches(
        req.headers()
            .get(header::IF_NONE_MATCH)
            .and_then(|v| v.to_str().ok()),
        &etag,
    );
    let mut resp = if not_modified {
        let mut r = Response::new(Bytes::new());
        *r.status_mut() = StatusCode::NOT_MODIFIED;
        r
    } else {
        json_response(StatusCode::OK, body)
    };
    let h = resp.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&etag) {
        h.insert(header::ETAG, v);
    }
    if let Ok(v) = HeaderValue::from_str(&cache_control) {
        h.insert(header::CACHE_CONTROL, v);
    }
    resp
}

/// `GET /v1/storefront`: served from the cached tenant record, no SQL at all.
pub fn profile<P>(
    ctx: &Ctx<'_, P>,
    scope: &Scope,
    req: &Request<Bytes>,
) -> Result<Response<Bytes>, ApiError> {
    let t = scope.tenant()?;
    let setting = |k: &str| t.settings.get(k).cloned().unwrap_or(Value::Null);
    let body = json!({
        "slug": t.slug,
        "name": t.name,
        "currency": tenant_currency(t),
        "branding": match setting("branding") {
            Value::Object(m) => Value::Object(m),
            _ => json!({}),
        },
        "description": setting("description"),
    });
    Ok(cacheable(ctx, req, &body))
}

pub async fn list<P: Platform>(
    ctx: &Ctx<'_, P>,
    scope: &Scope,
    req: &Request<Bytes>,
) -> Result<Response<Bytes>, ApiError> {
    let tenant = scope.tenant()?;
    let listing = Listing::from_query(req, Audience::Storefront)?;
    let result = run_one(ctx, tenant, listing.statement(PUBLIC_ITEM)).await?;
    let body = listing.page(&result, |v| with_image_urls(ctx, v))?;
    Ok(cacheable(ctx, req, &body))
}

pub async fn get<P: Platform>(
    ctx: &Ctx<'_, P>,
    scope: &Scope,
    req: &Request<Bytes>,
) -> Result<Response<Bytes>, ApiError> {
    let item = find_item(ctx, scope, PUBLIC_ITEM, "i.status = 'active'").await?;
    Ok(cacheable(ctx, req, &with_image_urls(ctx, item)))
}
