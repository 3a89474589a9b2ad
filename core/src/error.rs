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
