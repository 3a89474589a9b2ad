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
    MethodNotAllowed { allow: Vec<Method> },
    /// The instance's configuration is unusable; names the setting.
    Config(ConfigError),
    /// One or more backing services failed a health check.
    DependencyUnavailable {
        failing: Vec<&'static str>,
        checks: Value,
    },
}

impl ApiError {
    pub fn status(&self) -> StatusCode {
        match self {
            Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::NotFound => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            Self::Config(_) => StatusCode::INTERNAL_SERVER_ERROR,
            Self::DependencyUnavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// Stable identifier clients may switch on.
    pub fn code(&self) -> &'static str {
        match self {
            Self::BadRequest(_) => "bad_request",
            Self::NotFound => "not_found",
            Self::MethodNotAllowed { .. } => "method_not_allowed",
            Self::Config(_) => "misconfigured",
            Self::DependencyUnavailable { .. } => "dependency_unavailable",
        }
    }

    fn title(&self) -> &'static str {
        match self {
            Self::BadRequest(_) => "Bad Request",
            Self::NotFound => "Not Found",
            Self::MethodNotAllowed { .. } => "Method Not Allowed",
            Self::Config(_) => "Instance misconfigured",
            Self::DependencyUnavailable { .. } => "Dependency unavailable",
        }
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
            Self::BadRequest(_) | Self::NotFound | Self::MethodNotAllowed { .. } => {}
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
        body.insert("title".into(), json!(self.title()));
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
