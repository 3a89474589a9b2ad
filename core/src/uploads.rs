//! Uploads and file records: clients upload straight to S3 with presigned URLs (a `PUT`, or a
//! browser `POST` form whose policy caps the size), then tell the API to verify the object.
//!
//! - `POST /v1/uploads` `{filename, content_type, size[, expires_in]}`: checks the tenant's tier
//!   (largest object, accepted media types) in SQL, records a `pending` file and answers with a
//!   presigned `PUT` (content type signed) and a presigned `POST` form (policy pins bucket, key,
//!   content type and `content-length-range` `[1, max]`).
//! - `POST /v1/uploads/{id}/complete`: a signed `HEAD`; missing → 409; size or type outside
//!   what was allowed → the object is deleted and 422; else the file becomes `ready`.
//! - `GET /v1/files` (cursor), `GET /v1/files/{id}` (with a short-lived presigned `GET`),
//!   `DELETE /v1/files/{id}` (signed `DELETE`, row marked deleted).
//!
//! Keys are `{tenant_id}/{file_id}/{safe name}`, chosen here; the client never picks the prefix,
//! and the database refuses a key outside the row's own prefix. Row-level security makes
//! another tenant's file id indistinguishable from a missing one (404).

use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::{header, HeaderValue, Request, Response, StatusCode};
use serde_json::{json, Value};

use crate::auth::Principal;
use crate::authz::{is_platform_admin, Role};
use crate::error::{json_response, ApiError};
use crate::ids::{is_uuid, new_uuid};
use crate::input::{encode_cursor, JsonObject, Query};
use crate::ports::Platform;
use crate::routes::{Ctx, Scope};
use crate::s3;
use crate::sql::{self, QueryResult, Statement};
use crate::tenancy::{Tenant, TenantId};

/// The largest object a single S3 `PUT` may create (5 GiB).
pub const MAX_OBJECT_BYTES: i64 = 5 * 1024 * 1024 * 1024;
/// The longest display name kept (characters); longer names are shortened, extension kept.
pub const MAX_FILENAME_CHARS: usize = 255;
/// The longest name segment of a key (bytes, ASCII).
const MAX_KEY_NAME_BYTES: usize = 100;

// ---------------------------------------------------------------------------------------------
// Names and keys (pure)

/// Characters that render as a path separator or hide/reorder text: never kept in a name.
fn is_separator(c: char) -> bool {
    matches!(
        c,
        '/' | '\\' | '\u{2215}' | '\u{2044}' | '\u{29F8}' | '\u{FF0F}' | '\u{FF3C}'
    )
}

/// Invisible and bidirectional formatting characters (zero-width, bidi overrides and isolates,
/// BOM, soft hyphen, …) that make a name display as something it is not.
fn is_invisible(c: char) -> bool {
    c.is_control()
        || matches!(c,
            '\u{00AD}' | '\u{034F}' | '\u{061C}' | '\u{115F}' | '\u{1160}' | '\u{17B4}'
            | '\u{17B5}' | '\u{180B}'..='\u{180F}' | '\u{200B}'..='\u{200F}'
            | '\u{202A}'..='\u{202E}' | '\u{2060}'..='\u{206F}' | '\u{3164}'
            | '\u{FE00}'..='\u{FE0F}' | '\u{FEFF}' | '\u{FFA0}' | '\u{FFF0}'..='\u{FFFB}'
            | '\u{E0000}'..='\u{E0FFF}')
}

/// Splits `name` into (stem, extension) at the last dot, when both sides are non-empty.
fn split_extension(name: &str) -> (&str, Option<&str>) {
    match name.rsplit_once('.') {
        Some((stem, ext)) if !stem.is_empty() && !ext.is_empty() => (stem, Some(ext)),
        _ => (name, None),
    }
}

/// The name to store and show: the last path component of what the client sent, without
/// control, invisible or bidi characters, trimmed, at most [`MAX_FILENAME_CHARS`] (shortened
/// before the extension). `None` when nothing usable is left.
pub fn display_filename(raw: &str) -> Option<String> {
    let last = raw
        .split(is_separator)
        .rev()
        .map(|p| p.chars().filter(|c| !is_invisible(*c)).collect::<String>())
        .map(|p| p.trim().to_owned())
        .find(|p| !p.is_empty())?;
    if last.chars().all(|c| c == '.') {
        return None;
    }
    if last.chars().count() <= MAX_FILENAME_CHARS {
        return Some(last);
    }
    let (stem, ext) = split_extension(&last);
    let ext = ext.filter(|e| e.chars().count() <= 16);
    let keep = MAX_FILENAME_CHARS - ext.map_or(0, |e| e.chars().count() + 1);
    let stem: String = stem.chars().take(keep).collect();
    Some(match ext {
        Some(e) => format!("{}.{e}", stem.trim_end()),
        None => stem.trim_end().to_owned(),
    })
}

/// The key-safe form of a file name: ASCII letters, digits, `.`, `-` and `_` only (anything
/// else becomes `_`, runs collapsed), no leading dots, at most 100 bytes with the extension
/// kept, `file` when nothing is left. Needs no URL encoding and cannot form a path.
pub fn safe_filename(name: &str) -> String {
    let last = name
        .split(is_separator)
        .rev()
        .find(|p| !p.trim().is_empty())
        .unwrap_or("");
    let (stem, ext) = split_extension(last);
    let mut clean = String::with_capacity(stem.len());
    for c in stem.chars() {
        let c = if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_') {
            c
        } else {
            '_'
        };
        let prev = clean.chars().last();
        if (c == '_' || c == '.') && prev == Some(c) {
            continue;
        }
        clean.push(c);
    }
    let stem = clean.trim_matches(['.', '_', '-']);
    let ext: String = ext
        .unwrap_or("")
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .take(16)
        .collect::<String>()
        .to_ascii_lowercase();
    let room = MAX_KEY_NAME_BYTES - if ext.is_empty() { 0 } else { ext.len() + 1 };
    let stem = stem.get(..stem.len().min(room)).unwrap_or(stem);
    let stem = stem.trim_end_matches(['.', '_', '-']);
    let stem = if stem.is_empty() { "file" } else { stem };
    if ext.is_empty() {
        stem.to_owned()
    } else {
        format!("{stem}.{ext}")
    }
}

/// The object key of a file: `{tenant_id}/{file_id}/{safe name}`. Always inside the tenant's
/// and the file's own prefix, whatever the name.
pub fn object_key(tenant: &TenantId, file_id: &str, filename: &str) -> String {
    format!("{tenant}/{file_id}/{}", safe_filename(filename))
}

/// `Content-Disposition` for a download: an ASCII fallback and the exact name (RFC 6266/8187).
pub fn content_disposition(disposition: &str, filename: &str) -> String {
    format!(
        "{disposition}; filename=\"{}\"; filename*=UTF-8''{}",
        safe_filename(filename),
        s3::uri_encode(filename, false)
    )
}

/// A presigned `GET` showing an image inline (the storefront's catalog images): valid for
/// `DOWNLOAD_URL_TTL_SECONDS`. `key` and `filename` come from `public.ready_images(ids)`.
pub fn image_url(
    cfg: &crate::config::S3Config,
    key: &str,
    filename: &str,
    now: SystemTime,
) -> Result<String, s3::S3Error> {
    let cd = content_disposition("inline", filename);
    s3::presign_get(cfg, key, now, cfg.download_url_ttl, Some(&cd))
}

/// A media type as `type/subtype` in lower case, without parameters; `None` if malformed.
pub fn normalize_content_type(raw: &str) -> Option<String> {
    let t = raw.trim().to_ascii_lowercase();
    let token = |s: &str| {
        !s.is_empty()
            && s.len() <= 63
            && s.bytes().next().is_some_and(|b| b.is_ascii_alphanumeric())
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$&^_.+-".contains(&b))
    };
    let (ty, sub) = t.split_once('/')?;
    (token(ty) && token(sub)).then_some(t)
}

fn rfc3339(t: SystemTime) -> String {
    chrono::DateTime::<chrono::Utc>::from(t)
        .format("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

// ---------------------------------------------------------------------------------------------
// Handlers

fn who(scope: &Scope) -> Result<(&Tenant, &Principal), ApiError> {
    match (&scope.tenant, &scope.principal) {
        (Some(t), Some(p)) => Ok((t, p)),
        _ => Err(ApiError::Unauthenticated {
            code: "missing_token",
            detail: "This endpoint needs a bearer token.".into(),
        }),
    }
}

/// The `{id}` path parameter; anything but a UUID names no file.
fn path_id(scope: &Scope) -> Result<String, ApiError> {
    scope.uuid("file")
}

fn private(mut resp: Response<Bytes>) -> Response<Bytes> {
    // Presigned URLs are bearer credentials: never cache them in shared caches.
    resp.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("private, no-store"),
    );
    resp
}

/// The jsonb `outcome` of a one-function statement.
fn outcome(results: &[QueryResult]) -> Result<Value, ApiError> {
    let r = results
        .first()
        .ok_or_else(|| ApiError::Upstream("the database returned no result".into()))?;
    Ok(r.json_column("outcome")?
        .into_iter()
        .next()
        .unwrap_or(Value::Null))
}

fn unexpected(v: &Value) -> ApiError {
    ApiError::Upstream(format!("unexpected database outcome {}", v["outcome"]))
}

/// The live (not deleted) file `id` of the request's tenant, as `file_json` shows it.
async fn load_file<P: Platform>(
    ctx: &Ctx<'_, P>,
    tenant: &Tenant,
    id: &str,
) -> Result<Value, ApiError> {
    let results = sql::tenant_transaction(
        ctx.platform,
        &ctx.config.origin,
        &tenant.id,
        &[Statement::new(
            "SELECT public.file_json(f) AS file FROM public.files f \
             WHERE f.id = $1::uuid AND f.status <> 'deleted'",
            vec![Some(id.to_owned())],
        )],
    )
    .await?;
    let r = results
        .first()
        .ok_or_else(|| ApiError::Upstream("the database returned no result".into()))?;
    r.json_column("file")?
        .into_iter()
        .next()
        .ok_or(ApiError::ResourceNotFound("file"))
}

fn str_member<'v>(file: &'v Value, name: &str) -> Result<&'v str, ApiError> {
    file[name]
        .as_str()
        .ok_or_else(|| ApiError::Upstream(format!("file record lacks {name}")))
}

/// A file with its download link (`null` until it is ready).
fn with_download(
    ctx_s3: &crate::config::S3Config,
    mut file: Value,
    now: SystemTime,
    expires: Duration,
    disposition: &str,
) -> Result<Value, ApiError> {
    let download = if file["status"] == "ready" {
        let key = str_member(&file, "key")?;
        let name = str_member(&file, "filename")?;
        let cd = content_disposition(disposition, name);
        let url = s3::presign_get(ctx_s3, key, now, expires, Some(&cd))?;
        json!({ "method": "GET", "url": url, "expires_at": rfc3339(now + expires) })
    } else {
        Value::Null
    };
    file["download"] = download;
    Ok(file)
}

/// `POST /v1/uploads`.
pub async fn create<P: Platform>(
    ctx: &Ctx<'_, P>,
    scope: &Scope,
    req: &Request<Bytes>,
) -> Result<Response<Bytes>, ApiError> {
    let (tenant, principal) = who(scope)?;
    let s3cfg = &ctx.config.s3;
    let mut body = JsonObject::parse(req.headers(), req.body(), 8 * 1024)?;
    let filename = match body.raw_string("filename", true, 1024) {
        Some(raw) => match display_filename(&raw) {
            Some(name) => Some(name),
            None => {
                body.error("filename", "invalid_value", "must name a file");
                None
            }
        },
        None => None,
    };
    let content_type = match body.raw_string("content_type", true, 127) {
        Some(raw) => match normalize_content_type(&raw) {
            Some(ct) => Some(ct),
            None => {
                body.error(
                    "content_type",
                    "invalid_value",
                    "must be a media type such as image/png",
                );
                None
            }
        },
        None => None,
    };
    let size = body.integer("size", true, 1, MAX_OBJECT_BYTES);
    let ttl = s3cfg.upload_url_ttl.as_secs();
    let expires_in = body.integer("expires_in", false, 1, i64::try_from(ttl).unwrap_or(900));
    body.finish()?;
    let (Some(filename), Some(content_type), Some(size)) = (filename, content_type, size) else {
        return Err(ApiError::BadRequest("incomplete upload request".into()));
    };
    let expires = expires_in
        .and_then(|s| u64::try_from(s).ok())
        .map_or(s3cfg.upload_url_ttl, Duration::from_secs);

    let id = new_uuid(ctx.platform)?;
    let key = object_key(&tenant.id, &id, &filename);
    let results = sql::tenant_transaction(
        ctx.platform,
        &ctx.config.origin,
        &tenant.id,
        &[Statement::new(
            "SELECT public.upload_create($1::uuid, $2, $3, $4, $5::bigint, $6) AS outcome",
            vec![
                Some(id.clone()),
                Some(key.clone()),
                Some(filename),
                Some(content_type.clone()),
                Some(size.to_string()),
                Some(principal.user_id.clone()),
            ],
        )],
    )
    .await?;
    let out = outcome(&results)?;
    match out["outcome"].as_str() {
        Some("created") => {}
        Some("type_not_allowed") => {
            let allowed: Vec<&str> = out["allowed"]
                .as_array()
                .map(|a| a.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            return Err(ApiError::Unprocessable {
                code: "content_type_not_allowed",
                detail: format!(
                    "This tenant's tier does not accept {content_type} files; it accepts: {}.",
                    allowed.join(", ")
                ),
            });
        }
        Some("too_large") => {
            return Err(ApiError::Unprocessable {
                code: "file_too_large",
                detail: format!(
                    "This tenant's tier accepts files of at most {} bytes; {size} bytes were declared.",
                    out["max_bytes"]
                ),
            });
        }
        _ => return Err(unexpected(&out)),
    }
    let file = out["file"].clone();
    let max = file["max_size"]
        .as_u64()
        .ok_or_else(|| ApiError::Upstream("file record lacks max_size".into()))?;
    let now = ctx.platform.now();
    let put_url = s3::presign_put(s3cfg, &key, &content_type, now, expires)?;
    let post = s3::presign_post(s3cfg, &key, &content_type, max, now, expires)?;
    let fields: serde_json::Map<String, Value> = post
        .fields
        .into_iter()
        .map(|(k, v)| (k, Value::String(v)))
        .collect();
    let body = json!({
        "file": file,
        "upload": {
            "expires_at": rfc3339(now + expires),
            "max_size": max,
            "put": {
                "method": "PUT",
                "url": put_url,
                "headers": { "content-type": content_type },
            },
            "post": {
                "method": "POST",
                "url": post.url,
                "enctype": "multipart/form-data",
                "fields": fields,
                "file_field": "file",
            },
        },
    });
    let mut resp = private(json_response(StatusCode::CREATED, &body));
    if let Ok(v) = HeaderValue::from_str(&format!("/v1/files/{id}")) {
        resp.headers_mut().insert(header::LOCATION, v);
    }
    Ok(resp)
}

/// Why an uploaded object is not what was allowed, if it is not.
pub fn check_object(
    info: &s3::ObjectInfo,
    content_type: &str,
    max_size: u64,
) -> Result<(), ApiError> {
    if info.size == 0 {
        return Err(ApiError::Unprocessable {
            code: "object_empty",
            detail: "The uploaded object is empty; it has been deleted.".into(),
        });
    }
    if info.size > max_size {
        return Err(ApiError::Unprocessable {
            code: "object_too_large",
            detail: format!(
                "The uploaded object has {} bytes, more than the {max_size} allowed; it has been deleted.",
                info.size
            ),
        });
    }
    let actual = info
        .content_type
        .as_deref()
        .and_then(|c| c.split(';').next())
        .and_then(normalize_content_type);
    if actual.as_deref() != Some(content_type) {
        return Err(ApiError::Unprocessable {
            code: "content_type_mismatch",
            detail: format!(
                "The uploaded object is {}, not the {content_type} announced; it has been deleted.",
                actual.as_deref().unwrap_or("of no stated type")
            ),
        });
    }
    Ok(())
}

/// `POST /v1/uploads/{id}/complete`.
pub async fn complete<P: Platform>(
    ctx: &Ctx<'_, P>,
    scope: &Scope,
) -> Result<Response<Bytes>, ApiError> {
    let (tenant, _) = who(scope)?;
    let id = path_id(scope)?;
    let s3cfg = &ctx.config.s3;
    let file = load_file(ctx, tenant, &id).await?;
    let ready = |file: Value| -> Result<Response<Bytes>, ApiError> {
        let now = ctx.platform.now();
        let view = with_download(s3cfg, file, now, s3cfg.download_url_ttl, "attachment")?;
        Ok(private(json_response(StatusCode::OK, &view)))
    };
    if file["status"] == "ready" {
        // Completing twice is harmless: the same answer, no second HEAD.
        return ready(file);
    }
    let key = str_member(&file, "key")?.to_owned();
    let content_type = str_member(&file, "content_type")?.to_owned();
    let max_size = file["max_size"]
        .as_u64()
        .ok_or_else(|| ApiError::Upstream("file record lacks max_size".into()))?;
    let Some(info) = s3::head_object(ctx.platform, s3cfg, &key).await? else {
        return Err(ApiError::Conflict {
            code: "upload_missing",
            detail: "Nothing has been uploaded for this file yet: upload it with the presigned \
                     PUT or POST first."
                .into(),
        });
    };
    if let Err(rejection) = check_object(&info, &content_type, max_size) {
        // The file stays pending: the client may upload a proper object while its URLs last.
        s3::delete_object(ctx.platform, s3cfg, &key).await?;
        return Err(rejection);
    }
    let results = sql::tenant_transaction(
        ctx.platform,
        &ctx.config.origin,
        &tenant.id,
        &[Statement::new(
            "SELECT public.upload_complete($1::uuid, $2::bigint, $3) AS outcome",
            vec![Some(id), Some(info.size.to_string()), info.etag.clone()],
        )],
    )
    .await?;
    let out = outcome(&results)?;
    match out["outcome"].as_str() {
        Some("completed" | "already_ready") => ready(out["file"].clone()),
        Some("not_found") => Err(ApiError::ResourceNotFound("file")),
        _ => Err(unexpected(&out)),
    }
}

/// `GET /v1/files?limit=&cursor=&status=`.
pub async fn list<P: Platform>(
    ctx: &Ctx<'_, P>,
    scope: &Scope,
    req: &Request<Bytes>,
) -> Result<Response<Bytes>, ApiError> {
    let (tenant, _) = who(scope)?;
    let mut q = Query::parse(req.uri());
    let limit = q.integer("limit", 1, 100, 20);
    let status = q.one_of("status", &["pending", "ready"]);
    let cursor = q.cursor("cursor");
    let (after_ts, after_id) = match cursor.as_deref() {
        Some([ts, id]) if is_uuid(id) && ts.len() <= 40 => (Some(ts.clone()), Some(id.clone())),
        Some(_) => {
            q.error(
                "cursor",
                "invalid_cursor",
                "is not a cursor this API issued",
            );
            (None, None)
        }
        None => (None, None),
    };
    q.finish()?;
    let results = sql::tenant_transaction(
        ctx.platform,
        &ctx.config.origin,
        &tenant.id,
        &[Statement::new(
            "SELECT public.file_json(f) AS file, \
                    public.iso_utc(f.created_at) AS ts, \
                    f.id::text AS id \
             FROM public.files f \
             WHERE f.status <> 'deleted' \
               AND ($1::text IS NULL OR f.status = $1::text) \
               AND ($2::timestamptz IS NULL OR (f.created_at, f.id) < ($2::timestamptz, $3::uuid)) \
             ORDER BY f.created_at DESC, f.id DESC \
             LIMIT $4::int",
            vec![status, after_ts, after_id, Some((limit + 1).to_string())],
        )],
    )
    .await?;
    let r = results
        .first()
        .ok_or_else(|| ApiError::Upstream("the database returned no result".into()))?;
    let mut items = r.json_column("file")?;
    let limit = usize::try_from(limit).unwrap_or(20);
    let next_cursor = if items.len() > limit {
        items.truncate(limit);
        let (ts, id) = (r.column("ts"), r.column("id"));
        r.rows
            .get(limit - 1)
            .and_then(|row| Some((row.get(ts?)?.clone()?, row.get(id?)?.clone()?)))
            .map(|(ts, id)| encode_cursor(&[ts, id]))
    } else {
        None
    };
    Ok(private(json_response(
        StatusCode::OK,
        &json!({ "items": items, "next_cursor": next_cursor }),
    )))
}

/// `GET /v1/files/{id}?disposition=attachment|inline&expires_in=`.
pub async fn get<P: Platform>(
    ctx: &Ctx<'_, P>,
    scope: &Scope,
    req: &Request<Bytes>,
) -> Result<Response<Bytes>, ApiError> {
    let (tenant, _) = who(scope)?;
    let id = path_id(scope)?;
    let s3cfg = &ctx.config.s3;
    let mut q = Query::parse(req.uri());
    let disposition = q
        .one_of("disposition", &["attachment", "inline"])
        .unwrap_or_else(|| "attachment".into());
    let max = i64::try_from(s3cfg.download_url_ttl.as_secs()).unwrap_or(300);
    let expires = Duration::from_secs(q.integer("expires_in", 1, max, max).unsigned_abs());
    q.finish()?;
    let file = load_file(ctx, tenant, &id).await?;
    let view = with_download(s3cfg, file, ctx.platform.now(), expires, &disposition)?;
    Ok(private(json_response(StatusCode::OK, &view)))
}

/// `DELETE /v1/files/{id}`: by its uploader or an admin.
pub async fn delete<P: Platform>(
    ctx: &Ctx<'_, P>,
    scope: &Scope,
) -> Result<Response<Bytes>, ApiError> {
    let (tenant, principal) = who(scope)?;
    let id = path_id(scope)?;
    let file = load_file(ctx, tenant, &id).await?;
    let is_admin = is_platform_admin(principal)
        || principal
            .roles
            .iter()
            .filter_map(|r| Role::parse(r))
            .any(|r| r >= Role::Admin);
    if !is_admin && file["created_by"].as_str() != Some(principal.user_id.as_str()) {
        return Err(ApiError::Forbidden {
            code: "insufficient_role",
            detail: "Only the file's uploader or an admin may delete it.".into(),
        });
    }
    let key = str_member(&file, "key")?;
    s3::delete_object(ctx.platform, &ctx.config.s3, key).await?;
    let results = sql::tenant_transaction(
        ctx.platform,
        &ctx.config.origin,
        &tenant.id,
        &[Statement::new(
            "SELECT public.file_delete($1::uuid) AS outcome",
            vec![Some(id)],
        )],
    )
    .await?;
    let out = outcome(&results)?;
    match out["outcome"].as_str() {
        // A concurrent delete got there first: the file is gone either way.
        Some("deleted" | "not_found") => {
            let mut resp = Response::new(Bytes::new());
            *resp.status_mut() = StatusCode::NO_CONTENT;
            Ok(resp)
        }
        _ => Err(unexpected(&out)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_tricks_never_leave_the_prefix() {
        let t = TenantId::parse("00000000-0000-4000-8000-00000000d301").unwrap();
        let f = "11111111-1111-4111-8111-111111111111";
        let prefix = format!("{t}/{f}/");
        for (raw, want) in [
            ("photo.png", "photo.png"),
            ("../../etc/passwd", "passwd"),
            ("..", "file"),
            ("/", "file"),
            ("a/b/../c.JPG", "c.jpg"),
            ("C:\\Users\\me\\cat.gif", "cat.gif"),
            ("evil\u{202E}gnp.exe", "evil_gnp.exe"),
            ("zero\u{200B}width.png", "zero_width.png"),
            ("été à la plage.webp", "t_la_plage.webp"),
            ("résumé.pdf", "r_sum.pdf"),
            ("\u{FF0E}\u{FF0E}\u{FF0F}x.png", "x.png"),
            ("line\nbreak\u{0}.png", "line_break.png"),
            ("...hidden", "file.hidden"),
            ("a%2F..%2Fb.png", "a_2F._2Fb.png"),
            ("日本語", "file"),
            ("space name (1).PNG", "space_name_1.png"),
        ] {
            let key = object_key(&t, f, raw);
            assert!(key.starts_with(&prefix), "{raw:?} → {key}");
            let name = &key[prefix.len()..];
            assert_eq!(name, want, "{raw:?}");
            assert!(!name.contains('/') && !name.starts_with('.'));
            assert!(name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b)));
        }
        let long = format!("{}.png", "x".repeat(5000));
        let name = safe_filename(&long);
        assert_eq!(name.len(), 100);
        assert!(name.ends_with(".png"));
    }

    #[test]
    fn display_names_lose_paths_and_invisible_characters() {
        assert_eq!(display_filename("dir/été.png").as_deref(), Some("été.png"));
        assert_eq!(
            display_filename("evil\u{202E}gnp.exe").as_deref(),
            Some("evilgnp.exe")
        );
        assert_eq!(
            display_filename("  a\u{0}b.png ").as_deref(),
            Some("ab.png")
        );
        assert_eq!(display_filename("../.."), None);
        assert_eq!(display_filename("\u{200B}"), None);
        let long = format!("{}.png", "é".repeat(400));
        let d = display_filename(&long).unwrap();
        assert_eq!(d.chars().count(), MAX_FILENAME_CHARS);
        assert!(d.ends_with(".png"));
    }

    #[test]
    fn dispositions_carry_an_ascii_fallback_and_the_exact_name() {
        assert_eq!(
            content_disposition("attachment", "été 1.png"),
            "attachment; filename=\"t_1.png\"; filename*=UTF-8''%C3%A9t%C3%A9%201.png"
        );
    }

    #[test]
    fn catalog_image_urls_are_inline_and_short_lived() {
        let m = crate::config::tests::dev_settings();
        let cfg = crate::Config::load(&|k: &str| m.get(k).cloned())
            .unwrap()
            .s3;
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let url = image_url(&cfg, "t/f/a.png", "a.png", now).unwrap();
        assert!(url.starts_with(
            "http://127.0.0.1:9000/edgefront-dev/t/f/a.png?response-content-disposition=inline%3B%20filename%3D%22a.png%22"
        ));
        assert!(url.contains("&X-Amz-Expires=300&"));
    }

    #[test]
    fn media_types_are_normalised_or_refused() {
        assert_eq!(
            normalize_content_type(" Image/PNG ").as_deref(),
            Some("image/png")
        );
        assert_eq!(
            normalize_content_type("image/svg+xml").as_deref(),
            Some("image/svg+xml")
        );
        for bad in [
            "png",
            "image/",
            "/png",
            "image/png; x=1",
            "image/p g",
            "a/b/c",
        ] {
            assert_eq!(normalize_content_type(bad), None, "{bad}");
        }
    }

    #[test]
    fn objects_outside_what_was_allowed_are_named() {
        let info = |size, ct: Option<&str>| s3::ObjectInfo {
            size,
            content_type: ct.map(str::to_owned),
            etag: None,
        };
        assert!(check_object(&info(10, Some("image/png")), "image/png", 10).is_ok());
        assert!(check_object(&info(10, Some("Image/PNG; q=1")), "image/png", 10).is_ok());
        let code = |r: Result<(), ApiError>| r.unwrap_err().code();
        assert_eq!(
            code(check_object(&info(11, Some("image/png")), "image/png", 10)),
            "object_too_large"
        );
        assert_eq!(
            code(check_object(&info(0, Some("image/png")), "image/png", 10)),
            "object_empty"
        );
        assert_eq!(
            code(check_object(&info(5, Some("text/html")), "image/png", 10)),
            "content_type_mismatch"
        );
        assert_eq!(
            code(check_object(&info(5, None), "image/png", 10)),
            "content_type_mismatch"
        );
    }
}
