//! `GET /healthz`: liveness, and with `?deep=1` a real round trip to each backing service
//! (SQL proxy `SELECT 1`, signed S3 `HEAD` of the bucket), reported per dependency.

use serde::Serialize;
use serde_json::json;

use crate::cx::{Env, Query};
use crate::error::ApiError;
use crate::input::{BodyCx, FromQuery, QueryString};
use crate::ports::{elapsed_ms, Platform};
use crate::reply::{Cache, Reply};
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

/// One dependency's result.
#[derive(Serialize)]
struct Check {
    status: &'static str,
    latency_ms: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

impl Check {
    fn ok(&self) -> bool {
        self.error.is_none()
    }
}

pub async fn get<P: Platform>(
    env: Env<'_, P>,
    Query(q): Query<HealthQuery>,
) -> Result<Reply, ApiError> {
    let mut body = json!({
        "status": "ok",
        "version": VERSION,
        "runtime": env.platform.runtime(),
    });
    if q.deep {
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
        body["checks"] = checks;
    }
    Ok(Reply::ok(&body).cache(Cache::NoStore))
}

fn check(result: Result<(), String>, latency_ms: u64) -> Check {
    match result {
        Ok(()) => Check {
            status: "ok",
            latency_ms,
            error: None,
        },
        Err(error) => Check {
            status: "fail",
            latency_ms,
            error: Some(error),
        },
    }
}

async fn check_database<P: Platform>(env: Env<'_, P>) -> Check {
    let start = env.platform.now();
    let result = sql::query(env.platform, &env.config.origin, "SELECT 1", &[])
        .await
        .map_err(|e| e.to_string())
        .and_then(|r| match r.rows.as_slice() {
            [row] if row.first() == Some(&Some("1".to_owned())) => Ok(()),
            _ => Err("SELECT 1 returned an unexpected result".to_owned()),
        });
    check(result, elapsed_ms(start, env.platform.now()))
}

async fn check_storage<P: Platform>(env: Env<'_, P>) -> Check {
    let start = env.platform.now();
    let result = s3::head_bucket(env.platform, &env.config.s3)
        .await
        .map_err(|e| e.to_string());
    check(result, elapsed_ms(start, env.platform.now()))
}
