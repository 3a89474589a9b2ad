//! `GET /healthz`: liveness, and with `?deep=1` a real round trip to each backing service
//! (SQL proxy `SELECT 1`, signed S3 `HEAD` of the bucket), reported per dependency.

use bytes::Bytes;
use http::{header, HeaderValue, Request, Response, StatusCode};
use serde_json::{json, Value};

use crate::error::{json_response, ApiError};
use crate::ports::{elapsed_ms, Platform};
use crate::routes::Ctx;
use crate::{s3, sql, VERSION};

pub async fn get<P: Platform>(
    ctx: &Ctx<'_, P>,
    req: &Request<Bytes>,
) -> Result<Response<Bytes>, ApiError> {
    let deep = req
        .uri()
        .query()
        .unwrap_or_default()
        .split('&')
        .any(|kv| matches!(kv, "deep=1" | "deep=true" | "deep"));
    let mut body = json!({
        "status": "ok",
        "version": VERSION,
        "runtime": ctx.platform.runtime(),
    });
    if deep {
        let (database, storage) =
            futures_util::future::join(check_database(ctx), check_storage(ctx)).await;
        let mut failing = Vec::new();
        if database["status"] != "ok" {
            failing.push("database");
        }
        if storage["status"] != "ok" {
            failing.push("storage");
        }
        let checks = json!({ "database": database, "storage": storage });
        if !failing.is_empty() {
            return Err(ApiError::DependencyUnavailable { failing, checks });
        }
        body["checks"] = checks;
    }
    let mut resp = json_response(StatusCode::OK, &body);
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(resp)
}

fn outcome(result: Result<(), String>, latency_ms: u64) -> Value {
    match result {
        Ok(()) => json!({ "status": "ok", "latency_ms": latency_ms }),
        Err(error) => json!({ "status": "fail", "latency_ms": latency_ms, "error": error }),
    }
}

async fn check_database<P: Platform>(ctx: &Ctx<'_, P>) -> Value {
    let start = ctx.platform.now();
    let result = sql::query(ctx.platform, &ctx.config.origin, "SELECT 1", &[])
        .await
        .map_err(|e| e.to_string())
        .and_then(|r| match r.rows.as_slice() {
            [row] if row.first() == Some(&Some("1".to_owned())) => Ok(()),
            _ => Err("SELECT 1 returned an unexpected result".to_owned()),
        });
    outcome(result, elapsed_ms(start, ctx.platform.now()))
}

async fn check_storage<P: Platform>(ctx: &Ctx<'_, P>) -> Value {
    let start = ctx.platform.now();
    let result = s3::head_bucket(ctx.platform, &ctx.config.s3)
        .await
        .map_err(|e| e.to_string());
    outcome(result, elapsed_ms(start, ctx.platform.now()))
}
