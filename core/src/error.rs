//! The API's one error type, and the one place it becomes an RFC 7807 `application/problem+json`
//! response. The code, status and title come from the table in [`crate::code`]; this module adds
//! the human `detail` and the code's extension members, and converts every lower layer's error
//! (SQL, S3, DNS over HTTPS, outbound, auth, configuration) into an [`ApiError`].
//!
//! A backing service's own words (a Postgres message, an S3 or AI provider body, a network
//! error naming an internal address) never reach a client: the problem says which service
//! failed in fixed words, and the service's text travels in [`ApiError::log`], which no
//! rendering includes, for the operators' log.

use bytes::Bytes;
use http::{header, HeaderValue, Method, Response, StatusCode};
use serde_json::{json, Map, Value};

use crate::auth::AuthError;
use crate::config::ConfigError;
use crate::doh::DohError;
use crate::obs::Trace;
use crate::ports::OutboundError;
use crate::s3::S3Error;
use crate::sql::SqlError;

pub use crate::code::Code;

/// A refusal or failure, rendered as one problem document.
#[derive(Debug, Clone)]
pub struct ApiError {
    code: Code,
    detail: String,
    extra: Extra,
    /// What went wrong behind a 5xx, in the backing service's words: for the log only, never
    /// rendered ([`ApiError::to_problem`], [`ApiError::into_response`] leave it out).
    log: Option<String>,
}

/// Members some codes add to the problem document (and headers some of them set).
#[derive(Debug, Clone, Default)]
pub enum Extra {
    #[default]
    None,
    /// 405: the methods the path supports (`Allow`).
    Allow(Vec<Method>),
    /// 500 misconfigured: the setting at fault.
    Setting(&'static str),
    /// 503 dependency_unavailable: which checks failed, and all results.
    Dependencies {
        failing: Vec<&'static str>,
        checks: Value,
    },
    /// 400 validation_failed: one entry per offending field.
    Fields(Vec<FieldError>),
    /// 413: the endpoint's limit.
    LimitBytes(usize),
    /// 412: the resource's current entity tag, when known.
    CurrentEtag(String),
    /// 403 tier_limit_reached.
    Tier {
        resource: &'static str,
        limit: i64,
        count: i64,
    },
    /// 429: seconds until a retry can succeed (`Retry-After`).
    RetryAfter(u64),
    /// Members particular to one refusal (`items` of out_of_stock, `from` and `allowed` of
    /// invalid_transition, …), as the refusing module documents them.
    Members(Map<String, Value>),
}

/// A backing service, as a problem's detail names it (fixed words, never its own).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Service {
    /// Unnamed: an internal step (encoding, randomness) or a service of no interest to clients.
    Backend,
    Database,
    FileStore,
    DnsResolver,
    AiProvider,
    IdentityProvider,
}

impl Service {
    fn name(self) -> &'static str {
        match self {
            Self::Backend => "A backing service",
            Self::Database => "The database",
            Self::FileStore => "The file store",
            Self::DnsResolver => "The DNS resolver",
            Self::AiProvider => "The AI provider",
            Self::IdentityProvider => "The identity provider",
        }
    }
}

/// One field's validation failure, as listed in a 400's `errors` member.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct FieldError {
    /// The JSON member or query parameter (`price`, `limit`, `cursor`, …).
    pub field: String,
    /// Stable reason: `required`, `unknown_field`, `wrong_type`, `too_long`, `out_of_range`, …
    pub code: &'static str,
    pub message: String,
}

impl FieldError {
    pub fn new(field: impl Into<String>, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            code,
            message: message.into(),
        }
    }
}

fn join_methods(allow: &[Method]) -> String {
    allow
        .iter()
        .map(Method::as_str)
        .collect::<Vec<_>>()
        .join(", ")
}

impl ApiError {
    /// A problem with `code` and a human `detail` (never secrets: it reaches the client).
    pub fn new(code: Code, detail: impl Into<String>) -> Self {
        Self {
            code,
            detail: detail.into(),
            extra: Extra::None,
            log: None,
        }
    }

    /// Keeps `why` for the log (never rendered).
    pub fn logged(mut self, why: impl std::fmt::Display) -> Self {
        self.log = Some(why.to_string());
        self
    }

    /// The text kept for the log: a backing service's error, never sent to the client.
    pub fn log(&self) -> Option<&str> {
        self.log.as_deref()
    }

    fn with(mut self, extra: Extra) -> Self {
        self.extra = extra;
        self
    }

    pub fn bad_request(why: impl std::fmt::Display) -> Self {
        Self::new(
            Code::BadRequest,
            format!("The request could not be read: {why}."),
        )
    }

    /// No route matches the path.
    pub fn no_route() -> Self {
        Self::new(Code::NotFound, "No resource exists at this path.")
    }

    /// No `kind` with the id the path names, for this tenant.
    pub fn not_found(kind: &str) -> Self {
        Self::new(
            Code::NotFound,
            format!("No {kind} with this id exists here."),
        )
    }

    pub fn method_not_allowed(allow: Vec<Method>) -> Self {
        Self::new(
            Code::MethodNotAllowed,
            format!("This resource supports: {}.", join_methods(&allow)),
        )
        .with(Extra::Allow(allow))
    }

    pub fn invalid_host(why: impl std::fmt::Display) -> Self {
        Self::new(
            Code::InvalidHost,
            format!("No tenant can be served for this host: {why}."),
        )
    }

    pub fn reserved_host(name: &str) -> Self {
        Self::new(
            Code::ReservedHost,
            format!("{name} is reserved and is not a tenant."),
        )
    }

    pub fn tenant_not_found(host: &str) -> Self {
        Self::new(
            Code::TenantNotFound,
            format!("No tenant is served at {host}."),
        )
    }

    pub fn tenant_suspended(slug: &str) -> Self {
        Self::new(
            Code::TenantSuspended,
            format!("Tenant {slug} is suspended."),
        )
    }

    pub fn tenant_deleted(slug: &str) -> Self {
        Self::new(
            Code::TenantDeleted,
            format!("Tenant {slug} has been deleted."),
        )
    }

    /// A backing service failed (or answered outside its contract). `why` goes to the log
    /// only; the client reads fixed words.
    pub fn upstream(why: impl std::fmt::Display) -> Self {
        Self::service_failed(Service::Backend, why)
    }

    /// A backing service did not answer in time; `why` goes to the log only.
    pub fn timeout(why: impl std::fmt::Display) -> Self {
        Self::service_timeout(Service::Backend, why)
    }

    /// `service` failed or answered outside its contract: a 502 naming the service in fixed
    /// words, with `why` (its own text) kept for the log.
    pub fn service_failed(service: Service, why: impl std::fmt::Display) -> Self {
        Self::new(
            Code::UpstreamUnavailable,
            format!("{} did not answer as expected.", service.name()),
        )
        .logged(why)
    }

    /// `service` did not answer in time: a 504, `why` kept for the log.
    pub fn service_timeout(service: Service, why: impl std::fmt::Display) -> Self {
        Self::new(
            Code::UpstreamTimeout,
            format!("{} did not answer in time.", service.name()),
        )
        .logged(why)
    }

    pub fn dependency_unavailable(failing: Vec<&'static str>, checks: Value) -> Self {
        Self::new(
            Code::DependencyUnavailable,
            format!("Failing: {}.", failing.join(", ")),
        )
        .with(Extra::Dependencies { failing, checks })
    }

    /// The body or query failed validation; one entry per offending field.
    pub fn validation(errors: Vec<FieldError>) -> Self {
        let detail = match errors.as_slice() {
            [one] => format!("{}: {}", one.field, one.message),
            many => format!("{} fields are invalid; see `errors`.", many.len()),
        };
        Self::new(Code::ValidationFailed, detail).with(Extra::Fields(errors))
    }

    /// A validation failure of a single field.
    pub fn field(field: &str, code: &'static str, message: impl Into<String>) -> Self {
        Self::validation(vec![FieldError::new(field, code, message)])
    }

    pub fn payload_too_large(limit: usize) -> Self {
        Self::new(
            Code::PayloadTooLarge,
            format!("The body exceeds this endpoint's limit of {limit} bytes."),
        )
        .with(Extra::LimitBytes(limit))
    }

    pub fn unsupported_media_type(want: &str) -> Self {
        Self::new(
            Code::UnsupportedMediaType,
            format!("The body must be {want}."),
        )
    }

    pub fn precondition_failed(current_etag: Option<String>) -> Self {
        let e = Self::new(
            Code::PreconditionFailed,
            "The resource changed since the version named in If-Match.",
        );
        match current_etag {
            Some(tag) => e.with(Extra::CurrentEtag(tag)),
            None => e,
        }
    }

    pub fn tier_limit(resource: &'static str, limit: i64, count: i64) -> Self {
        Self::new(
            Code::TierLimitReached,
            format!("This tenant's tier allows {limit} {resource}; it has {count}."),
        )
        .with(Extra::Tier {
            resource,
            limit,
            count,
        })
    }

    /// A 429 with `Retry-After` when known.
    pub fn too_many(code: Code, detail: impl Into<String>, retry_after: Option<u64>) -> Self {
        let e = Self::new(code, detail);
        match retry_after {
            Some(s) => e.with(Extra::RetryAfter(s)),
            None => e,
        }
    }

    /// Adds members to the problem document (never over the RFC 7807 ones).
    pub fn with_members(self, members: Map<String, Value>) -> Self {
        self.with(Extra::Members(members))
    }

    pub fn status(&self) -> StatusCode {
        self.code.status()
    }

    /// Stable identifier clients may switch on.
    pub fn code(&self) -> Code {
        self.code
    }

    pub fn detail(&self) -> &str {
        &self.detail
    }

    pub fn extra(&self) -> &Extra {
        &self.extra
    }

    /// The field errors of a `validation_failed`, else none.
    pub fn field_errors(&self) -> &[FieldError] {
        match &self.extra {
            Extra::Fields(f) => f,
            _ => &[],
        }
    }

    fn extensions(&self, body: &mut Map<String, Value>) {
        match &self.extra {
            Extra::None | Extra::Allow(_) => {}
            Extra::Setting(s) => {
                body.insert("setting".into(), json!(s));
            }
            Extra::Dependencies { failing, checks } => {
                body.insert("failing".into(), json!(failing));
                body.insert("checks".into(), checks.clone());
            }
            Extra::Fields(errors) => {
                body.insert("errors".into(), json!(errors));
            }
            Extra::LimitBytes(limit) => {
                body.insert("limit_bytes".into(), json!(limit));
            }
            Extra::CurrentEtag(etag) => {
                body.insert("current_etag".into(), json!(etag));
            }
            Extra::Tier {
                resource,
                limit,
                count,
            } => {
                body.insert("resource".into(), json!(resource));
                body.insert("limit".into(), json!(limit));
                body.insert("count".into(), json!(count));
            }
            Extra::RetryAfter(s) => {
                body.insert("retry_after".into(), json!(s));
            }
            Extra::Members(members) => {
                for (k, v) in members {
                    body.entry(k.clone()).or_insert_with(|| v.clone());
                }
            }
        }
    }

    /// The problem document as a JSON value (also sent as an SSE `error` event).
    pub fn to_problem(&self, instance: &str) -> Value {
        let mut body = Map::new();
        body.insert(
            "type".into(),
            json!(format!("urn:edgefront:problem:{}", self.code)),
        );
        body.insert("title".into(), json!(self.code.title()));
        body.insert("status".into(), json!(self.status().as_u16()));
        body.insert("detail".into(), json!(self.detail));
        body.insert("instance".into(), json!(instance));
        body.insert("code".into(), json!(self.code));
        self.extensions(&mut body);
        Value::Object(body)
    }

    /// Renders the problem document. `instance` is the request path (never the query: it may
    /// carry secrets such as presigned signatures).
    pub fn into_response(self, instance: &str) -> Response<Bytes> {
        self.into_traced_response(instance, None)
    }

    /// The problem document of a traced request: notes the code (and the text kept for the log)
    /// on the request's record, and names the request id in the document.
    pub fn to_traced_problem(&self, instance: &str, trace: Option<&Trace>) -> Value {
        let mut problem = self.to_problem(instance);
        if let Some(t) = trace {
            t.note_error(&self.code.to_string(), self.log());
            if let Value::Object(m) = &mut problem {
                m.insert("request_id".into(), json!(t.request_id().as_str()));
            }
        }
        problem
    }

    /// Renders the problem document for a traced request ([`ApiError::to_traced_problem`]).
    pub fn into_traced_response(self, instance: &str, trace: Option<&Trace>) -> Response<Bytes> {
        let problem = self.to_traced_problem(instance, trace);
        let mut resp = Response::new(Bytes::from(problem.to_string()));
        *resp.status_mut() = self.status();
        let h = resp.headers_mut();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        if self.status() == StatusCode::UNAUTHORIZED {
            // RFC 6750 §3: no error code when no credentials were sent at all.
            let v = if self.code == Code::MissingToken {
                HeaderValue::from_static("Bearer realm=\"edgefront\"")
            } else {
                HeaderValue::from_static("Bearer realm=\"edgefront\", error=\"invalid_token\"")
            };
            h.insert(header::WWW_AUTHENTICATE, v);
        }
        match &self.extra {
            Extra::RetryAfter(secs) => {
                h.insert(header::RETRY_AFTER, HeaderValue::from(*secs));
            }
            Extra::Allow(allow) => {
                if let Ok(v) = HeaderValue::from_str(&join_methods(allow)) {
                    h.insert(header::ALLOW, v);
                }
            }
            _ => {}
        }
        resp
    }
}

impl From<ConfigError> for ApiError {
    fn from(e: ConfigError) -> Self {
        let setting = e.setting;
        Self::new(
            Code::Misconfigured,
            format!("The edge instance cannot serve requests: {e}."),
        )
        .with(Extra::Setting(setting))
    }
}

impl From<OutboundError> for ApiError {
    fn from(e: OutboundError) -> Self {
        match e {
            OutboundError::Timeout(_) => Self::timeout(e),
            other => Self::upstream(other),
        }
    }
}

impl From<SqlError> for ApiError {
    /// Postgres' message (`invalid input syntax for type …`, a constraint's name, a value) is
    /// the database's text: logged, never shown.
    fn from(e: SqlError) -> Self {
        match &e {
            SqlError::Unavailable(OutboundError::Timeout(_)) => {
                Self::service_timeout(Service::Database, e)
            }
            // Statement timeout / cancelled by the proxy.
            SqlError::Db(db) if db.code == "57014" => Self::service_timeout(Service::Database, e),
            _ => Self::service_failed(Service::Database, e),
        }
    }
}

impl From<S3Error> for ApiError {
    fn from(e: S3Error) -> Self {
        match &e {
            S3Error::Unavailable(OutboundError::Timeout(_)) => {
                Self::service_timeout(Service::FileStore, e)
            }
            _ => Self::service_failed(Service::FileStore, e),
        }
    }
}

impl From<DohError> for ApiError {
    fn from(e: DohError) -> Self {
        match &e {
            DohError::Unavailable(OutboundError::Timeout(_)) => {
                Self::service_timeout(Service::DnsResolver, e)
            }
            _ => Self::service_failed(Service::DnsResolver, e),
        }
    }
}

impl From<AuthError> for ApiError {
    fn from(e: AuthError) -> Self {
        if e.is_unavailable() {
            // The caller's token may be fine: the keys to check it are not to be had. Why
            // (the fetch's error, the key set's shape) is the issuer's business: logged.
            Self::new(
                Code::JwksUnavailable,
                "The issuer's keys are unavailable; try again later.",
            )
            .logged(e.detail())
        } else {
            Self::new(e.code(), e.detail())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(resp: &Response<Bytes>) -> Value {
        serde_json::from_slice(resp.body()).unwrap()
    }

    #[test]
    fn problem_documents_carry_rfc7807_members_and_a_code() {
        let resp = ApiError::no_route().into_response("/nope");
        assert_eq!(resp.status(), 404);
        assert_eq!(
            resp.headers()[header::CONTENT_TYPE],
            "application/problem+json"
        );
        let b = body(&resp);
        for m in ["type", "title", "status", "detail", "instance", "code"] {
            assert!(b.get(m).is_some(), "missing {m}");
        }
        assert_eq!(b["status"], 404);
        assert_eq!(b["instance"], "/nope");
        assert_eq!(b["code"], "not_found");
    }

    #[test]
    fn method_not_allowed_lists_allow_header() {
        let resp =
            ApiError::method_not_allowed(vec![Method::GET, Method::HEAD]).into_response("/healthz");
        assert_eq!(resp.status(), 405);
        assert_eq!(resp.headers()[header::ALLOW], "GET, HEAD");
    }

    #[test]
    fn config_errors_name_the_setting() {
        let resp = ApiError::from(ConfigError {
            setting: "S3_BUCKET",
            problem: "is not set".into(),
        })
        .into_response("/healthz");
        assert_eq!(resp.status(), 500);
        let b = body(&resp);
        assert_eq!(b["setting"], "S3_BUCKET");
        assert!(b["detail"].as_str().unwrap().contains("S3_BUCKET"));
    }

    #[test]
    fn backend_errors_render_fixed_words_and_keep_their_text_for_the_log() {
        use crate::sql::DbError;
        use std::time::Duration;
        let pg = "invalid input syntax for type timestamp with time zone: \"0000-01-01\"";
        let cases: Vec<(ApiError, u16, &str, &str)> = vec![
            (
                SqlError::Db(DbError {
                    message: pg.into(),
                    code: "22007".into(),
                    constraint: None,
                })
                .into(),
                502,
                "The database did not answer as expected.",
                "0000-01-01",
            ),
            (
                SqlError::Db(DbError {
                    message: "canceling statement due to statement timeout".into(),
                    code: "57014".into(),
                    constraint: None,
                })
                .into(),
                504,
                "The database did not answer in time.",
                "canceling statement",
            ),
            (
                SqlError::Protocol("unexpected row shape: secret_column".into()).into(),
                502,
                "The database did not answer as expected.",
                "secret_column",
            ),
            (
                SqlError::Unavailable(OutboundError::Network("10.0.0.7:5432 refused".into()))
                    .into(),
                502,
                "The database did not answer as expected.",
                "10.0.0.7",
            ),
            (
                S3Error::Protocol("<Error><Code>NoSuchBucket</Code></Error>".into()).into(),
                502,
                "The file store did not answer as expected.",
                "NoSuchBucket",
            ),
            (
                OutboundError::Network("dns error: internal.svc".into()).into(),
                502,
                "A backing service did not answer as expected.",
                "internal.svc",
            ),
            (
                OutboundError::Timeout(Duration::from_millis(1500)).into(),
                504,
                "A backing service did not answer in time.",
                "1500 ms",
            ),
            (
                ApiError::upstream(format!("cannot encode: {pg}")),
                502,
                "A backing service did not answer as expected.",
                "0000-01-01",
            ),
            (
                AuthError::JwksUnavailable("JWKS fetch failed: idp.internal:8443".into()).into(),
                503,
                "The issuer's keys are unavailable; try again later.",
                "idp.internal",
            ),
        ];
        for (e, status, detail, secret) in cases {
            assert_eq!(e.detail(), detail);
            assert!(e.log().is_some_and(|l| l.contains(secret)), "{e:?}");
            let resp = e.into_response("/v1/storefront/catalog");
            assert_eq!(resp.status(), status);
            let text = String::from_utf8_lossy(resp.body()).into_owned();
            assert!(!text.contains(secret), "{text}");
            let b = body(&resp);
            assert_eq!(b["detail"], detail);
            assert!(b.get("log").is_none(), "{text}");
        }
        // Client-facing refusals carry no log.
        assert_eq!(ApiError::no_route().log(), None);
    }
}
