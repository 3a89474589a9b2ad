//! `GET /healthz`: liveness, public and cheap (no backend call); with `?deep=1` a real round
//! trip to each backing service (SQL proxy `SELECT 1`, signed S3 `HEAD` of the bucket), reported
//! per dependency — only for operators (`Authorization: Bearer <OPERATOR_TOKEN>`), since it
//! costs backend calls on every host, and with failures summarised in a word: the backends'
//! own error text describes the infrastructure and never reaches a client.

use http::header;
use serde::Serialize;
use serde_json::{json, Value};

use crate::code::Code;
use crate::config::Config;
use crate::cx::{Env, Head, Query};
use crate::error::ApiError;
use crate::input::{BodyCx, FromQuery, QueryString};
use crate::ports::{elapsed_ms, OutboundError, Platform};
use crate::reply::{Cache, Reply};
use crate::s3::S3Error;
use crate::sql::SqlError;
use crate::words::same_bytes;
use crate::{s3, sql, VERSION};

/// `?deep=1` (also `deep=true`, bare `deep`).
pub struct HealthQuery {
    deep: bool,
}

impl FromQuery for HealthQuery {
    fn from_query(q: &mut QueryString, _: &BodyCx<'_>) -> Self {
        Self {
            deep: q
                .raw("deep")
                .is_some_and(|v| matches!(v.as_str(), "" | "1" | "true")),
        }
    }
}

/// Why a dependency failed, in a word (`error` of a failed check).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
enum Failure {
    /// No answer within the deadline.
    Timeout,
    /// Could not connect (DNS, refused connection, reset).
    Unreachable,
    /// The service answered and said no (credentials, permissions).
    Refused,
    /// The service answered something else than success.
    #[serde(rename = "unexpected answer")]
    UnexpectedAnswer,
}

impl Failure {
    fn of_outbound(e: &OutboundError) -> Self {
        match e {
            OutboundError::Timeout(_) => Self::Timeout,
            OutboundError::Network(_) | OutboundError::Invalid(_) => Self::Unreachable,
        }
    }

    fn of_sql(e: &SqlError) -> Self {
        match e {
            SqlError::Unavailable(e) => Self::of_outbound(e),
            // Postgres (or the proxy on its behalf) refused the login or the statement.
            SqlError::Db(_) => Self::Refused,
            SqlError::Protocol(_) => Self::UnexpectedAnswer,
        }
    }

    fn of_s3(e: &S3Error) -> Self {
        match e {
            S3Error::Unavailable(e) => Self::of_outbound(e),
            S3Error::Status(401 | 403) => Self::Refused,
            S3Error::Status(_) | S3Error::Protocol(_) | S3Error::Signing(_) => {
                Self::UnexpectedAnswer
            }
        }
    }
}

/// One dependency's result.
#[derive(Serialize)]
struct Check {
    status: &'static str,
    latency_ms: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<Failure>,
}

impl Check {
    fn ok(&self) -> bool {
        self.error.is_none()
    }
}

pub async fn get<P: Platform>(
    env: Env<'_, P>,
    Head(head): Head,
    Query(q): Query<HealthQuery>,
) -> Result<Reply, ApiError> {
    /// The answer; members in alphabetical order, as the document has always had them.
    #[derive(Serialize)]
    struct Health {
        #[serde(skip_serializing_if = "Option::is_none")]
        checks: Option<Value>,
        runtime: &'static str,
        status: &'static str,
        version: &'static str,
    }
    let mut body = Health {
        checks: None,
        runtime: env.platform.runtime(),
        status: "ok",
        version: VERSION,
    };
    if q.deep {
        operator(env.config, head.headers.get(header::AUTHORIZATION))?;
        let (database, storage) =
            futures_util::future::join(check_database(env), check_storage(env)).await;
        let failing: Vec<&'static str> = [("database", &database), ("storage", &storage)]
            .into_iter()
            .filter(|(_, c)| !c.ok())
            .map(|(name, _)| name)
            .collect();
        let checks = json!({ "database": database, "storage": storage });
        if !failing.is_empty() {
            return Err(ApiError::dependency_unavailable(failing, checks));
        }
        body.checks = Some(checks);
    }
    Ok(Reply::ok(&body).cache(Cache::NoStore))
}

/// The deep check is for operators: `Authorization: Bearer <OPERATOR_TOKEN>`, compared in
/// constant time. Without the setting nobody passes. Refusals are 401 `missing_token` (the
/// operator token is missing from the request), before any backend call.
fn operator(config: &Config, authorization: Option<&http::HeaderValue>) -> Result<(), ApiError> {
    let presented = authorization.and_then(|v| v.as_bytes().strip_prefix(b"Bearer "));
    match (&config.platform.operator_token, presented) {
        (Some(expected), Some(presented))
            if same_bytes(presented, expected.expose().as_bytes()) =>
        {
            Ok(())
        }
        _ => Err(ApiError::new(
            Code::MissingToken,
            "`?deep=1` needs `Authorization: Bearer <OPERATOR_TOKEN>`; `/healthz` alone is public.",
        )),
    }
}

fn check(result: Result<(), Failure>, latency_ms: u64) -> Check {
    match result {
        Ok(()) => Check {
            status: "ok",
            latency_ms,
            error: None,
        },
        Err(error) => Check {
            status: "error",
            latency_ms,
            error: Some(error),
        },
    }
}

async fn check_database<P: Platform>(env: Env<'_, P>) -> Check {
    let start = env.platform.now();
    let result = sql::query(env.platform, &env.config.origin, "SELECT 1", &[])
        .await
        .map_err(|e| Failure::of_sql(&e))
        .and_then(|r| match (r.len(), r.value(0, 0)) {
            (1, Some(b"1")) => Ok(()),
            _ => Err(Failure::UnexpectedAnswer),
        });
    check(result, elapsed_ms(start, env.platform.now()))
}

async fn check_storage<P: Platform>(env: Env<'_, P>) -> Check {
    let start = env.platform.now();
    let result = s3::head_bucket(env.platform, &env.config.s3)
        .await
        .map_err(|e| Failure::of_s3(&e));
    check(result, elapsed_ms(start, env.platform.now()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_are_one_word_each() {
        let words: Vec<String> = [
            Failure::Timeout,
            Failure::Unreachable,
            Failure::Refused,
            Failure::UnexpectedAnswer,
        ]
        .iter()
        .map(|f| {
            serde_json::to_value(f)
                .unwrap()
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
        assert_eq!(
            words,
            ["timeout", "unreachable", "refused", "unexpected answer"]
        );
        let db = SqlError::Db(sql::DbError {
            message: "password authentication failed for user \"edgefront_app\"".into(),
            code: "28P01".into(),
            constraint: None,
        });
        assert_eq!(Failure::of_sql(&db), Failure::Refused);
        let net = SqlError::Unavailable(OutboundError::Network("connection refused".into()));
        assert_eq!(Failure::of_sql(&net), Failure::Unreachable);
        assert_eq!(
            Failure::of_sql(&SqlError::Protocol("HTTP 502: <html>".into())),
            Failure::UnexpectedAnswer
        );
        assert_eq!(Failure::of_s3(&S3Error::Status(403)), Failure::Refused);
        assert_eq!(
            Failure::of_s3(&S3Error::Status(500)),
            Failure::UnexpectedAnswer
        );
    }

    #[test]
    fn token_comparison() {
        assert!(same_bytes(b"abc", b"abc"));
        assert!(!same_bytes(b"abc", b"abd"));
        assert!(!same_bytes(b"abc", b"abcd"));
    }
}
