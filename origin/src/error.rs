//! The HTTP boundary's single error type and its JSON shape. Every error body carries all the
//! keys Neon's proxy sends, so `@neondatabase/serverless` can copy them onto `NeonDbError`.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::pg::{DbError, PgError};

#[derive(Debug)]
pub enum ApiError {
    /// Bad payload, connection string, batch header: 400.
    BadRequest(String),
    /// Missing or wrong bearer token: 401.
    Unauthorized,
    /// A role or database outside the listener's allow-lists: 403, before any login.
    Forbidden(String),
    /// Too many failed logins for this role from this client: 429 until the lockout ends.
    TooManyLogins {
        retry_after: std::time::Duration,
    },
    NotFound,
    MethodNotAllowed,
    /// Request body over the limit: 413.
    PayloadTooLarge {
        limit: usize,
    },
    /// Response over the limit: 507.
    ResponseTooLarge {
        limit: usize,
    },
    /// Postgres rejected the statement or the login: 400 with every field.
    Db(Box<DbError>),
    /// Anything else (Postgres unreachable, protocol trouble): 500.
    Internal(String),
}

/// Neon's error body: every key present, `null` when absent; `code`/`severity` are `""` for
/// errors that did not come from Postgres.
#[derive(Debug, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ErrorBody {
    pub message: String,
    pub code: String,
    pub detail: Option<String>,
    pub hint: Option<String>,
    pub position: Option<String>,
    pub internal_position: Option<String>,
    pub internal_query: Option<String>,
    pub severity: String,
    #[serde(rename = "where")]
    pub where_: Option<String>,
    pub table: Option<String>,
    pub column: Option<String>,
    pub schema: Option<String>,
    pub data_type: Option<String>,
    pub constraint: Option<String>,
    pub file: Option<String>,
    pub line: Option<String>,
    pub routine: Option<String>,
}

impl ErrorBody {
    fn plain(message: String) -> ErrorBody {
        ErrorBody {
            message,
            code: String::new(),
            detail: None,
            hint: None,
            position: None,
            internal_position: None,
            internal_query: None,
            severity: String::new(),
            where_: None,
            table: None,
            column: None,
            schema: None,
            data_type: None,
            constraint: None,
            file: None,
            line: None,
            routine: None,
        }
    }

    fn from_db(e: &DbError) -> ErrorBody {
        ErrorBody {
            message: e.message.clone(),
            code: e.code.clone(),
            detail: e.detail.clone(),
            hint: e.hint.clone(),
            position: e.position.clone(),
            internal_position: e.internal_position.clone(),
            internal_query: e.internal_query.clone(),
            severity: e.severity.clone(),
            where_: e.where_.clone(),
            table: e.table.clone(),
            column: e.column.clone(),
            schema: e.schema.clone(),
            data_type: e.data_type.clone(),
            constraint: e.constraint.clone(),
            file: e.file.clone(),
            line: e.line.clone(),
            routine: e.routine.clone(),
        }
    }
}

impl ApiError {
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) | ApiError::Db(_) => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::TooManyLogins { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::NotFound => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::ResponseTooLarge { .. } => StatusCode::INSUFFICIENT_STORAGE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    pub fn body(&self) -> ErrorBody {
        match self {
            ApiError::Db(e) => ErrorBody::from_db(e),
            ApiError::BadRequest(m) | ApiError::Internal(m) | ApiError::Forbidden(m) => {
                ErrorBody::plain(m.clone())
            }
            ApiError::TooManyLogins { .. } => {
                ErrorBody::plain("too many failed logins; try again later".to_owned())
            }
            ApiError::Unauthorized => {
                ErrorBody::plain("missing or invalid bearer token".to_owned())
            }
            ApiError::NotFound => ErrorBody::plain("not found".to_owned()),
            ApiError::MethodNotAllowed => ErrorBody::plain("method not allowed".to_owned()),
            ApiError::PayloadTooLarge { limit } => {
                ErrorBody::plain(format!("request is too large (max is {limit} bytes)"))
            }
            ApiError::ResponseTooLarge { limit } => {
                ErrorBody::plain(format!("response is too large (max is {limit} bytes)"))
            }
        }
    }
}

impl From<PgError> for ApiError {
    fn from(e: PgError) -> Self {
        match e {
            PgError::Db(db) => ApiError::Db(db),
            PgError::Encode(m) => ApiError::BadRequest(m),
            // The limit is filled in by the caller, which knows it.
            PgError::ResponseTooLarge => ApiError::ResponseTooLarge { limit: 0 },
            other => ApiError::Internal(other.to_string()),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        if status.is_server_error() {
            tracing::warn!(
                status = status.as_u16(),
                "request failed: {}",
                self.body().message
            );
        } else {
            tracing::debug!(
                status = status.as_u16(),
                "request rejected: {}",
                self.body().message
            );
        }
        let body = serde_json::to_vec(&self.body()).unwrap_or_default();
        let mut resp = (status, body).into_response();
        resp.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        if matches!(self, ApiError::Unauthorized) {
            resp.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        if let ApiError::TooManyLogins { retry_after } = self {
            // Whole seconds, rounded up: retrying at the announced time must not be early.
            let secs = retry_after.as_millis().div_ceil(1000).max(1) as u64;
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        resp
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEYS: [&str; 17] = [
        "message",
        "code",
        "detail",
        "hint",
        "position",
        "internalPosition",
        "internalQuery",
        "severity",
        "where",
        "table",
        "column",
        "schema",
        "dataType",
        "constraint",
        "file",
        "line",
        "routine",
    ];

    #[test]
    fn db_error_has_every_key() {
        let e = ApiError::Db(Box::new(DbError {
            severity: "ERROR".into(),
            code: "42P01".into(),
            message: "relation \"nope\" does not exist".into(),
            position: Some("15".into()),
            file: Some("parse_relation.c".into()),
            line: Some("1392".into()),
            routine: Some("parserOpenTable".into()),
            ..DbError::default()
        }));
        assert_eq!(e.status(), StatusCode::BAD_REQUEST);
        let v = serde_json::to_value(e.body()).unwrap();
        let obj = v.as_object().unwrap();
        assert_eq!(obj.len(), KEYS.len());
        for k in KEYS {
            assert!(obj.contains_key(k), "missing {k}");
        }
        assert_eq!(v["position"], "15");
        assert_eq!(v["line"], "1392");
        assert_eq!(v["code"], "42P01");
        assert_eq!(v["severity"], "ERROR");
        assert!(v["detail"].is_null());
        assert!(v["where"].is_null());
    }

    #[test]
    fn plain_error_has_empty_code_and_severity() {
        let e = ApiError::BadRequest("bad".into());
        let v = serde_json::to_value(e.body()).unwrap();
        assert_eq!(v.as_object().unwrap().len(), KEYS.len());
        assert_eq!(v["code"], "");
        assert_eq!(v["severity"], "");
        assert_eq!(v["message"], "bad");
        assert!(v["position"].is_null());
    }

    #[test]
    fn statuses() {
        assert_eq!(ApiError::Unauthorized.status(), 401);
        assert_eq!(ApiError::PayloadTooLarge { limit: 1 }.status(), 413);
        assert_eq!(ApiError::ResponseTooLarge { limit: 1 }.status(), 507);
        assert_eq!(ApiError::Internal("x".into()).status(), 500);
        assert_eq!(ApiError::from(PgError::ConnectTimeout).status(), 500);
    }
}
