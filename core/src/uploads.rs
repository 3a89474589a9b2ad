//! Uploads and file records: clients upload straight to S3 with presigned URLs (a `PUT`, or a
//! browser `POST` form whose policy caps the size), then tell the API to verify the object.
//!
//! - `POST /v1/uploads` `{filename, content_type, size[, expires_in]}`: sweeps a few of the
//!   tenant's expired uploads, checks the tenant's tier (largest object, accepted media types)
//!   and storage quota in SQL, records a `pending` file expiring with its URLs and answers with
//!   a presigned `PUT` (content type and `Content-Length` = the declared size signed) and a
//!   presigned `POST` form (policy pins bucket, key, content type and `content-length-range`
//!   `[1, declared size]`), both for the file's *staging* key.
//! - `POST /v1/uploads/{id}/complete`: expired → 410; a signed `HEAD` of the staging object;
//!   missing → 409; size or type outside what was declared → the object is deleted and 422;
//!   else a signed `CopyObject` (only of the ETag checked) to the file's key, the file becomes
//!   `ready`, and the staging object is deleted.
//! - `GET /v1/files` (cursor), `GET /v1/files/{id}` (with a short-lived presigned `GET`),
//!   `DELETE /v1/files/{id}` (signed `DELETE`, row marked deleted).
//!
//! Keys are `{tenant_id}/{file_id}/{safe name}`, chosen here; the client never picks the prefix,
//! and the database refuses a key outside the row's own prefix. Row-level security makes
//! another tenant's file id indistinguishable from a missing one (404). A file's key is only
//! ever written by the server (the copy): no presigned URL can write it, so a completed file
//! cannot be overwritten by the client, however long its upload URLs last.

use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::authz::Role;
use crate::config::S3Config;
use crate::cx::{FromPath as _, Json, Member, Path, Query};
use crate::error::{ApiError, Code};
use crate::ids::{TenantId, Uuid};
use crate::input::{BodyCx, FromJson, FromQuery, JsonObject, QueryString};
use crate::page::{PageRequest, Select, Sort};
use crate::ports::Platform;
use crate::reply::{Cache, Reply};
use crate::resource_id;
use crate::s3;
use crate::sql::{Db, Params, Statement};

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

/// Where the client uploads a file whose key is `key` (`{tenant}/{file}/{name}`):
/// `{tenant}/staging/{file}/{name}`, still under the tenant's prefix (the tenant purge removes
/// it) but never a file's key (file ids are UUIDs). `complete` copies it to `key`.
pub fn staging_key(key: &str) -> String {
    match key.split_once('/') {
        Some((tenant, rest)) => format!("{tenant}/staging/{rest}"),
        None => format!("staging/{key}"),
    }
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
/// `DOWNLOAD_URL_TTL_SECONDS`. `key` and `filename` come from the storefront's item document (`storefront::PUBLIC_ITEM`).
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
    crate::rfc3339::seconds(t)
}

// ---------------------------------------------------------------------------------------------
// Records and outcomes (documents built by `public.file_json`)

resource_id!(
    /// A file's id, as a path names it.
    pub FileId,
    "file"
);

/// A file as the API shows it (`public.file_json`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FileRecord {
    pub id: Uuid,
    pub key: String,
    pub filename: String,
    pub content_type: String,
    pub declared_size: u64,
    pub max_size: u64,
    pub status: FileStatus,
    pub size: Option<u64>,
    pub etag: Option<String>,
    pub created_by: String,
    pub created_at: String,
    pub updated_at: String,
    pub completed_at: Option<String>,
    /// When the upload URLs stop working; a file still pending then is `expired`.
    pub expires_at: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FileStatus {
    Pending,
    Ready,
    Deleted,
    /// Its upload URLs expired before it was completed: never completable.
    Expired,
}

/// A file with its download link (`null` until it is ready).
#[derive(Debug, Serialize)]
struct FileView {
    #[serde(flatten)]
    file: FileRecord,
    download: Option<Link>,
}

/// A presigned request a client makes itself.
#[derive(Debug, Serialize)]
struct Link {
    method: &'static str,
    url: String,
    expires_at: String,
}

/// Besides its outcome, `public.upload_create` answers with the keys of the expired uploads it
/// swept (whatever the outcome), whose staging objects the edge deletes.
#[derive(Deserialize)]
struct Swept {
    #[serde(default)]
    swept: Vec<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "snake_case")]
enum UploadCreate {
    Created { file: Box<FileRecord> },
    TypeNotAllowed { allowed: Vec<String> },
    TooLarge { max_bytes: u64 },
    StorageLimit { limit: i64, used: i64 },
}

impl crate::outcome::Outcome for UploadCreate {}

#[derive(Deserialize)]
#[serde(rename_all = "snake_case")]
enum UploadComplete {
    Completed { file: Box<FileRecord> },
    AlreadyReady { file: Box<FileRecord> },
    Expired,
    NotFound,
}

impl crate::outcome::Outcome for UploadComplete {}

#[derive(Deserialize)]
#[serde(rename_all = "snake_case")]
enum FileDelete {
    Deleted,
    NotFound,
}

impl crate::outcome::Outcome for FileDelete {}

/// Newest first: the one order of `GET /v1/files`.
const SORTS: &[Sort] = &[Sort {
    name: "-created_at",
    column: "f.created_at",
    key: "public.iso_utc(f.created_at)",
    cast: "timestamptz",
    descending: true,
}];

// ---------------------------------------------------------------------------------------------
// Requests

/// `POST /v1/uploads`'s body.
pub struct NewUpload {
    filename: String,
    content_type: String,
    size: i64,
    expires_in: Option<u64>,
}

impl FromJson for NewUpload {
    const MAX_BODY: usize = 8 * 1024;

    fn from_json(o: &mut JsonObject, cx: &BodyCx<'_>) -> Option<Self> {
        let filename = o.raw_string("filename", true, 1024).and_then(|raw| {
            let name = display_filename(&raw);
            if name.is_none() {
                o.error("filename", "invalid_value", "must name a file");
            }
            name
        });
        let content_type = o.raw_string("content_type", true, 127).and_then(|raw| {
            let ct = normalize_content_type(&raw);
            if ct.is_none() {
                o.error(
                    "content_type",
                    "invalid_value",
                    "must be a media type such as image/png",
                );
            }
            ct
        });
        let size = o.integer("size", true, 1, MAX_OBJECT_BYTES);
        let ttl = cx.config.s3.upload_url_ttl.as_secs();
        let expires_in = o
            .integer("expires_in", false, 1, i64::try_from(ttl).unwrap_or(900))
            .and_then(|s| u64::try_from(s).ok());
        Some(Self {
            filename: filename?,
            content_type: content_type?,
            size: size?,
            expires_in,
        })
    }
}

/// `GET /v1/files?limit=&cursor=&status=`.
pub struct FileListing {
    page: PageRequest,
    status: Option<String>,
}

impl FromQuery for FileListing {
    fn from_query(q: &mut QueryString, _: &BodyCx<'_>) -> Self {
        let page = PageRequest::read(q, SORTS, 20);
        let status = q.one_of("status", &["pending", "ready"]);
        Self { page, status }
    }
}

/// `GET /v1/files/{id}?disposition=attachment|inline&expires_in=`.
pub struct DownloadOptions {
    disposition: String,
    expires: Duration,
}

impl FromQuery for DownloadOptions {
    fn from_query(q: &mut QueryString, cx: &BodyCx<'_>) -> Self {
        let disposition = q
            .one_of("disposition", &["attachment", "inline"])
            .unwrap_or_else(|| "attachment".into());
        let max = i64::try_from(cx.config.s3.download_url_ttl.as_secs()).unwrap_or(300);
        let expires = Duration::from_secs(q.integer("expires_in", 1, max, max).unsigned_abs());
        Self {
            disposition,
            expires,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Handlers

/// The live (not deleted) file `id` of the request's tenant.
async fn load_file<P: Platform>(db: &Db<'_, P>, id: &FileId) -> Result<FileRecord, ApiError> {
    db.find(Statement::new(
        "SELECT public.file_json(f) AS file FROM public.files f \
         WHERE f.id = $1::uuid AND f.status <> 'deleted'",
        vec![Some(id.to_string())],
    ))
    .await?
    .ok_or_else(|| ApiError::not_found(FileId::KIND))
}

/// A file with its download link when it is ready.
fn view(
    s3cfg: &S3Config,
    file: FileRecord,
    now: SystemTime,
    expires: Duration,
    disposition: &str,
) -> Result<FileView, ApiError> {
    let download = if file.status == FileStatus::Ready {
        let cd = content_disposition(disposition, &file.filename);
        let url = s3::presign_get(s3cfg, &file.key, now, expires, Some(&cd))?;
        Some(Link {
            method: "GET",
            url,
            expires_at: rfc3339(crate::ports::later(now, expires)),
        })
    } else {
        None
    };
    Ok(FileView { file, download })
}

/// `POST /v1/uploads`.
pub async fn create<P: Platform>(
    cx: Member<'_, P>,
    Json(new): Json<NewUpload>,
) -> Result<Reply, ApiError> {
    let s3cfg = &cx.env.config.s3;
    let expires = new
        .expires_in
        .map_or(s3cfg.upload_url_ttl, Duration::from_secs);
    let id = Uuid::random(cx.env.platform)?;
    let key = object_key(cx.db.tenant(), id.as_str(), &new.filename);
    let answer = cx
        .db
        .one(Statement::new(
            "SELECT public.upload_create($1::uuid, $2, $3, $4, $5::bigint, $6, $7::integer) \
             AS outcome",
            vec![
                Some(id.to_string()),
                Some(key.clone()),
                Some(new.filename),
                Some(new.content_type.clone()),
                Some(new.size.to_string()),
                Some(cx.user().to_owned()),
                Some(expires.as_secs().to_string()),
            ],
        ))
        .await?;
    let Swept { swept } = answer.doc()?;
    sweep_staging(&cx, &swept).await;
    let file = match answer.outcome()? {
        UploadCreate::Created { file } => *file,
        UploadCreate::TypeNotAllowed { allowed } => {
            return Err(ApiError::new(
                Code::ContentTypeNotAllowed,
                format!(
                    "This tenant's tier does not accept {} files; it accepts: {}.",
                    new.content_type,
                    allowed.join(", ")
                ),
            ));
        }
        UploadCreate::TooLarge { max_bytes } => {
            return Err(ApiError::new(
                Code::FileTooLarge,
                format!(
                    "This tenant's tier accepts files of at most {max_bytes} bytes; {} bytes were declared.",
                    new.size
                ),
            ));
        }
        UploadCreate::StorageLimit { limit, used } => {
            // `count`: bytes stored or being uploaded before this one.
            return Err(ApiError::tier_limit("storage_bytes", limit, used));
        }
    };
    // The object may be at most what was declared: the quota counted that.
    let max = file.declared_size;
    let now = cx.env.platform.now();
    let staging = staging_key(&key);
    let put_url = s3::presign_put(s3cfg, &staging, &new.content_type, max, now, expires)?;
    let post = s3::presign_post(s3cfg, &staging, &new.content_type, max, now, expires)?;
    let fields: serde_json::Map<String, Value> = post
        .fields
        .into_iter()
        .map(|(k, v)| (k, Value::String(v)))
        .collect();
    let body = json!({
        "file": file,
        "upload": {
            "expires_at": rfc3339(crate::ports::later(now, expires)),
            "max_size": max,
            "put": {
                "method": "PUT",
                "url": put_url,
                "headers": { "content-type": new.content_type, "content-length": max.to_string() },
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
    // Presigned URLs are bearer credentials: never cache them in shared caches.
    Ok(Reply::created(&format!("/v1/files/{id}"), &body).cache(Cache::Private))
}

/// Deletes the staging objects of the uploads `upload_create` swept (at most 10, at once).
/// Failures are not the caller's problem and are not retried: the rows are already marked, and
/// a staging object left behind holds no file (a bucket lifecycle rule on `*/staging/` can
/// catch such leftovers).
async fn sweep_staging<P: Platform>(cx: &Member<'_, P>, keys: &[String]) {
    let s3cfg = &cx.env.config.s3;
    let deletes = keys.iter().map(|key| {
        let staging = staging_key(key);
        async move { s3::delete_object(cx.env.platform, s3cfg, &staging).await }
    });
    let _ = futures_util::future::join_all(deletes).await;
}

/// Whether an RFC 3339 instant is at or before `now` (`false` when it cannot be read: the
/// database decides then).
fn has_passed(instant: Option<&str>, now: SystemTime) -> bool {
    instant
        .and_then(crate::rfc3339::parse)
        .is_some_and(|t| t <= now)
}

fn upload_expired() -> ApiError {
    ApiError::new(
        Code::UploadExpired,
        "This upload's URLs have expired and it can no longer be completed; start a new upload.",
    )
}

/// Why an uploaded object is not what was allowed, if it is not.
pub fn check_object(
    info: &s3::ObjectInfo,
    content_type: &str,
    max_size: u64,
) -> Result<(), ApiError> {
    if info.size == 0 {
        return Err(ApiError::new(
            Code::ObjectEmpty,
            "The uploaded object is empty; it has been deleted.",
        ));
    }
    if info.size > max_size {
        return Err(ApiError::new(
            Code::ObjectTooLarge,
            format!(
                "The uploaded object has {} bytes, more than the {max_size} allowed; it has been deleted.",
                info.size
            ),
        ));
    }
    let actual = info
        .content_type
        .as_deref()
        .and_then(|c| c.split(';').next())
        .and_then(normalize_content_type);
    if actual.as_deref() != Some(content_type) {
        return Err(ApiError::new(
            Code::ContentTypeMismatch,
            format!(
                "The uploaded object is {}, not the {content_type} announced; it has been deleted.",
                actual.as_deref().unwrap_or("of no stated type")
            ),
        ));
    }
    Ok(())
}

/// `POST /v1/uploads/{id}/complete`.
pub async fn complete<P: Platform>(
    cx: Member<'_, P>,
    Path(id): Path<FileId>,
) -> Result<Reply, ApiError> {
    let s3cfg = &cx.env.config.s3;
    let ready = |file: FileRecord| -> Result<Reply, ApiError> {
        let now = cx.env.platform.now();
        let view = view(s3cfg, file, now, s3cfg.download_url_ttl, "attachment")?;
        Ok(Reply::ok(&view).cache(Cache::Private))
    };
    let file = load_file(&cx.db, &id).await?;
    match file.status {
        // Completing twice is harmless: the same answer, no second HEAD.
        FileStatus::Ready => return ready(file),
        FileStatus::Expired => return Err(upload_expired()),
        FileStatus::Deleted => return Err(ApiError::not_found(FileId::KIND)),
        FileStatus::Pending => {}
    }
    if has_passed(file.expires_at.as_deref(), cx.env.platform.now()) {
        return Err(upload_expired());
    }
    let platform = cx.env.platform;
    let staging = staging_key(&file.key);
    let Some(info) = s3::head_object(platform, s3cfg, &staging).await? else {
        return Err(upload_missing());
    };
    if let Err(rejection) = check_object(&info, &file.content_type, file.declared_size) {
        // The file stays pending: the client may upload a proper object while its URLs last.
        s3::delete_object(platform, s3cfg, &staging).await?;
        return Err(rejection);
    }
    // Only the object just checked is copied: one replaced meanwhile fails the ETag match.
    if !s3::copy_object(platform, s3cfg, &staging, &file.key, info.etag.as_deref()).await? {
        return Err(upload_missing());
    }
    let outcome: UploadComplete = cx
        .db
        .outcome(Statement::new(
            "SELECT public.upload_complete($1::uuid, $2::bigint, $3) AS outcome",
            vec![
                Some(id.to_string()),
                Some(info.size.to_string()),
                info.etag.clone(),
            ],
        ))
        .await?;
    match outcome {
        UploadComplete::Completed { file } => {
            // Best effort: the URLs could write it again anyway until they expire, and the
            // sweep deletes whatever is there then.
            let _ = s3::delete_object(platform, s3cfg, &staging).await;
            ready(*file)
        }
        UploadComplete::AlreadyReady { file } => ready(*file),
        UploadComplete::Expired => {
            // Expired between the check above and now: the copy holds no file.
            s3::delete_object(platform, s3cfg, &file.key).await?;
            Err(upload_expired())
        }
        UploadComplete::NotFound => {
            s3::delete_object(platform, s3cfg, &file.key).await?;
            Err(ApiError::not_found(FileId::KIND))
        }
    }
}

fn upload_missing() -> ApiError {
    ApiError::new(
        Code::UploadMissing,
        "Nothing has been uploaded for this file yet: upload it with the presigned \
         PUT or POST first.",
    )
}

/// `GET /v1/files`.
pub async fn list<P: Platform>(
    cx: Member<'_, P>,
    Query(listing): Query<FileListing>,
) -> Result<Reply, ApiError> {
    let mut params = Params::new();
    let mut filters = vec![
        "f.status <> 'deleted'".to_owned(),
        "f.status <> 'expired'".to_owned(),
    ];
    if let Some(status) = &listing.status {
        filters.push(format!("f.status = {}", params.bind(status)));
    }
    let stmt = listing.page.statement(
        Select {
            doc: "public.file_json(f)",
            from: "public.files f",
            id: "f.id",
            filters,
        },
        params,
    );
    let page = listing.page.page::<FileRecord>(&cx.db.one(stmt).await?)?;
    Ok(Reply::ok(&page).cache(Cache::Private))
}

/// `GET /v1/files/{id}`.
pub async fn get<P: Platform>(
    cx: Member<'_, P>,
    Path(id): Path<FileId>,
    Query(opts): Query<DownloadOptions>,
) -> Result<Reply, ApiError> {
    let file = load_file(&cx.db, &id).await?;
    let view = view(
        &cx.env.config.s3,
        file,
        cx.env.platform.now(),
        opts.expires,
        &opts.disposition,
    )?;
    Ok(Reply::ok(&view).cache(Cache::Private))
}

/// `DELETE /v1/files/{id}`: by its uploader or an admin.
pub async fn delete<P: Platform>(
    cx: Member<'_, P>,
    Path(id): Path<FileId>,
) -> Result<Reply, ApiError> {
    let file = load_file(&cx.db, &id).await?;
    let is_admin = cx.role >= Role::Admin;
    if !is_admin && file.created_by != cx.user() {
        return Err(ApiError::new(
            Code::InsufficientRole,
            "Only the file's uploader or an admin may delete it.",
        ));
    }
    s3::delete_object(cx.env.platform, &cx.env.config.s3, &file.key).await?;
    let outcome: FileDelete = cx
        .db
        .outcome(Statement::new(
            "SELECT public.file_delete($1::uuid) AS outcome",
            vec![Some(id.to_string())],
        ))
        .await?;
    match outcome {
        // A concurrent delete got there first: the file is gone either way.
        FileDelete::Deleted | FileDelete::NotFound => Ok(Reply::no_content()),
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
            // The staging key stays under the tenant, and is never a file's key.
            let staging = staging_key(&key);
            assert_eq!(
                staging,
                format!("{t}/staging/{}", &key[t.to_string().len() + 1..])
            );
            assert!(!staging.starts_with(&prefix));
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
