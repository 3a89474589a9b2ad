//! The API's one error type, and the one place it becomes an RFC 7807 `application/problem+json`
//! response. Every variant has a stable machine-readable `code`; `detail` is for humans.

use bytes::Bytes;
use http::{header, HeaderValue, Method, Response, StatusCode};
use serde_json::{json, Map, Value};

use crate::config::ConfigError;

#[derive(Debug, Clone)]
pub enum ApiError {
    /// The request could not be read or understood (the runtime failed to read its body, …).
    BadRequest(String),
    /// No route matches the path.
    NotFound,
    /// The path exists but not for this method.
    MethodNotAllowed {
        allow: Vec<Method>,
    },
    /// The Host header is missing or cannot name a tenant.
    InvalidHost(String),
    /// The Host is a reserved name (www, api, …) or the bare base domain.
    ReservedHost(String),
    TenantNotFound(String),
    TenantSuspended(String),
    TenantDeleted(String),
    /// No valid credentials. `code` is the verifier's stable reason (expired, bad_signature, …).
    Unauthenticated {
        code: &'static str,
        detail: String,
    },
    /// Authenticated, but not allowed here (`tenant_mismatch`, `insufficient_role`).
    Forbidden {
        code: &'static str,
        detail: String,
    },
    /// A backing service failed while serving the request.
    Upstream(String),
    /// Credentials cannot be checked right now (the issuer's JWKS is unreachable or unusable).
    AuthUnavailable(String),
    /// The instance's configuration is unusable; names the setting.
    Config(ConfigError),
    /// One or more backing services failed a health check.
    DependencyUnavailable {
        failing: Vec<&'static str>,
        checks: Value,
    },
    /// The body or query failed validation; one entry per offending field.
    Validation(Vec<FieldError>),
    /// The body is larger than the endpoint accepts.
    PayloadTooLarge {
        limit: usize,
    },
    /// The body is not `application/json` where JSON is required.
    UnsupportedMediaType(&'static str),
    /// No such resource for this tenant (another tenant's ids look exactly like this).
    ResourceNotFound(&'static str),
    /// The request conflicts with the resource's state (`idempotency_key_reused`, `sku_taken`, …).
    Conflict {
        code: &'static str,
        detail: String,
    },
    /// `If-Match` named a version that is no longer current.
    PreconditionFailed {
        current_etag: Option<String>,
    },
    /// A tier limit would be exceeded.
    TierLimit {
        resource: &'static str,
        limit: i64,
        count: i64,
    },
    /// Well-formed but not acceptable given what it refers to (`object_too_large`, …).
    Unprocessable {
        code: &'static str,
        detail: String,
    },
    /// A quota or rate limit is exhausted; `retry_after` in seconds.
    TooManyRequests {
        code: &'static str,
        detail: String,
        retry_after: Option<u64>,
    },
    /// A backing service did not answer in time.
    GatewayTimeout(String),
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

impl ApiError {
    /// (status, stable code, title) — the whole mapping in one table.
    fn parts(&self) -> (StatusCode, &'static str, &'static str) {
        use StatusCode as S;
        match self {
            Self::BadRequest(_) => (S::BAD_REQUEST, "bad_request", "Bad Request"),
            Self::NotFound => (S::NOT_FOUND, "not_found", "Not Found"),
            Self::MethodNotAllowed { .. } => (
                S::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "Method Not Allowed",
            ),
            Self::InvalidHost(_) => (S::BAD_REQUEST, "invalid_host", "Invalid Host"),
            Self::ReservedHost(_) => (S::NOT_FOUND, "reserved_host", "Not a tenant"),
            Self::TenantNotFound(_) => (S::NOT_FOUND, "tenant_not_found", "Unknown tenant"),
            Self::TenantSuspended(_) => (S::FORBIDDEN, "tenant_suspended", "Tenant suspended"),
            Self::TenantDeleted(_) => (S::GONE, "tenant_deleted", "Tenant deleted"),
            Self::Unauthenticated { code, .. } => (S::UNAUTHORIZED, code, "Unauthorized"),
            Self::Forbidden { code, .. } => (S::FORBIDDEN, code, "Forbidden"),
            Self::AuthUnavailable(_) => (
                S::SERVICE_UNAVAILABLE,
                "jwks_unavailable",
                "Cannot verify credentials",
            ),
            Self::Upstream(_) => (
                S::BAD_GATEWAY,
                "upstream_unavailable",
                "Upstream unavailable",
            ),
            Self::Config(_) => (
                S::INTERNAL_SERVER_ERROR,
                "misconfigured",
                "Instance misconfigured",
            ),
            Self::DependencyUnavailable { .. } => (
                S::SERVICE_UNAVAILABLE,
                "dependency_unavailable",
                "Dependency unavailable",
            ),
            Self::Validation(_) => (S::BAD_REQUEST, "validation_failed", "Invalid request"),
            Self::PayloadTooLarge { .. } => (
                S::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                "Payload too large",
            ),
            Self::UnsupportedMediaType(_) => (
                S::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "Unsupported media type",
            ),
            Self::ResourceNotFound(_) => (S::NOT_FOUND, "not_found", "Not Found"),
            Self::Conflict { code, .. } => (S::CONFLICT, code, "Conflict"),
            Self::PreconditionFailed { .. } => (
                S::PRECONDITION_FAILED,
                "precondition_failed",
                "Precondition failed",
            ),
            Self::TierLimit { .. } => (S::FORBIDDEN, "tier_limit_reached", "Tier limit reached"),
            Self::Unprocessable { code, .. } => {
                (S::UNPROCESSABLE_ENTITY, code, "Unprocessable content")
            }
            Self::TooManyRequests { code, .. } => (S::TOO_MANY_REQUESTS, code, "Too many requests"),
            Self::GatewayTimeout(_) => (S::GATEWAY_TIMEOUT, "upstream_timeout", "Upstream timeout"),
        }
    }

    pub fn status(&self) -> StatusCode {
        self.parts().0
    }

    /// Stable identifier clients may switch on.
    pub fn code(&self) -> &'static str {
        self.parts().1
    }

    fn detail(&self) -> String {
        match self {
            Self::BadRequest(why) => format!("The request could not be read: {why}."),
            Self::NotFound => "No resource exists at this path.".into(),
            Self::MethodNotAllowed { allow } => format!(
                "This resource supports: {}.",
                allow
                    .iter()
                    .map(Method::as_str)
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            Self::InvalidHost(why) => format!("No tenant can be served for this host: {why}."),
            Self::ReservedHost(name) => format!("{name} is reserved and is not a tenant."),
            Self::TenantNotFound(host) => format!("No tenant is served at {host}."),
            Self::TenantSuspended(slug) => format!("Tenant {slug} is suspended."),
            Self::TenantDeleted(slug) => format!("Tenant {slug} has been deleted."),
            Self::Unauthenticated { detail, .. } | Self::Forbidden { detail, .. } => detail.clone(),
            Self::Upstream(why) => format!("A backing service failed: {why}."),
            Self::AuthUnavailable(why) => why.clone(),
            Self::Config(e) => format!("The edge instance cannot serve requests: {e}."),
            Self::DependencyUnavailable { failing, .. } => {
                format!("Failing: {}.", failing.join(", "))
            }
            Self::Validation(errors) => match errors.as_slice() {
                [one] => format!("{}: {}", one.field, one.message),
                many => format!("{} fields are invalid; see `errors`.", many.len()),
            },
            Self::PayloadTooLarge { limit } => {
                format!("The body exceeds this endpoint's limit of {limit} bytes.")
            }
            Self::UnsupportedMediaType(want) => format!("The body must be {want}."),
            Self::ResourceNotFound(kind) => format!("No {kind} with this id exists here."),
            Self::Conflict { detail, .. }
            | Self::Unprocessable { detail, .. }
            | Self::TooManyRequests { detail, .. } => detail.clone(),
            Self::PreconditionFailed { .. } => {
                "The resource changed since the version named in If-Match.".into()
            }
            Self::TierLimit {
                resource,
                limit,
                count,
            } => format!("This tenant's tier allows {limit} {resource}; it has {count}."),
            Self::GatewayTimeout(why) => {
                format!("A backing service did not answer in time: {why}.")
            }
        }
    }

    fn extensions(&self, body: &mut Map<String, Value>) {
        match self {
            Self::Config(e) => {
                body.insert("setting".into(), json!(e.setting));
            }
            Self::DependencyUnavailable { failing, checks } => {
                body.insert("failing".into(), json!(failing));
                body.insert("checks".into(), checks.clone());
            }
            Self::Validation(errors) => {
                body.insert("errors".into(), json!(errors));
            }
            Self::PayloadTooLarge { limit } => {
                body.insert("limit_bytes".into(), json!(limit));
            }
            Self::PreconditionFailed {
                current_etag: Some(etag),
            } => {
                body.insert("current_etag".into(), json!(etag));
            }
            Self::TierLimit {
                resource,
                limit,
                count,
            } => {
                body.insert("resource".into(), json!(resource));
                body.insert("limit".into(), json!(limit));
                body.insert("count".into(), json!(count));
            }
            Self::TooManyRequests {
                retry_after: Some(s),
                ..
            } => {
                body.insert("retry_after".into(), json!(s));
            }
            _ => {}
        }
    }

    /// Renders the problem document. `instance` is the request path (never the query: it may
    /// carry secrets such as presigned signatures).
    pub fn into_response(self, instance: &str) -> Response<Bytes> {
        let status = self.status();
        let mut body = Map::new();
        body.insert(
            "type".into(),
            json!(format!("urn:edgefront:problem:{}", self.code())),
        );
        body.insert("title".into(), json!(self.parts().2));
        body.insert("status".into(), json!(status.as_u16()));
        body.insert("detail".into(), json!(self.detail()));
        body.insert("instance".into(), json!(instance));
        body.insert("code".into(), json!(self.code()));
        self.extensions(&mut body);
        let mut resp = Response::new(Bytes::from(Value::Object(body).to_string()));
        *resp.status_mut() = status;
        let h = resp.headers_mut();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        if let Self::Unauthenticated { code, .. } = &self {
            // RFC 6750 §3: no error code when no credentials were sent at all.
            let v = if *code == "missing_token" {
                HeaderValue::from_static("Bearer realm=\"edgefront\"")
            } else {
                HeaderValue::from_static("Bearer realm=\"edgefront\", error=\"invalid_token\"")
            };
            h.insert(header::WWW_AUTHENTICATE, v);
        }
        if let Self::TooManyRequests {
            retry_after: Some(secs),
            ..
        } = &self
        {
            h.insert(header::RETRY_AFTER, HeaderValue::from(*secs));
        }
        if let Self::MethodNotAllowed { allow } = &self {
            let list = allow
                .iter()
                .map(Method::as_str)
                .collect::<Vec<_>>()
                .join(", ");
            if let Ok(v) = HeaderValue::from_str(&list) {
                h.insert(header::ALLOW, v);
            }
        }
        resp
    }
}

/// A JSON response with the usual headers.
pub fn json_response(status: StatusCode, value: &Value) -> Response<Bytes> {
    let mut resp = Response::new(Bytes::from(value.to_string()));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(resp: &Response<Bytes>) -> Value {
        serde_json::from_slice(resp.body()).unwrap()
    }

    #[test]
    fn problem_documents_carry_rfc7807_members_and_a_code() {
        let resp = ApiError::NotFound.into_response("/nope");
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
        let resp = ApiError::MethodNotAllowed {
            allow: vec![Method::GET, Method::HEAD],
        }
        .into_response("/healthz");
        assert_eq!(resp.status(), 405);
        assert_eq!(resp.headers()[header::ALLOW], "GET, HEAD");
    }

    #[test]
    fn config_errors_name_the_setting() {
        let resp = ApiError::Config(ConfigError {
            setting: "S3_BUCKET",
            problem: "is not set".into(),
        })
        .into_response("/healthz");
        assert_eq!(resp.status(), 500);
        let b = body(&resp);
        assert_eq!(b["setting"], "S3_BUCKET");
        assert!(b["detail"].as_str().unwrap().contains("S3_BUCKET"));
    }
}
