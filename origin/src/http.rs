//! The axum side: `POST /sql` checks the bearer token, refuses roles and databases outside the
//! allow-lists (403) and clients locked out after failed logins (429), reads the body within the
//! limit, logs in to Postgres as the connection string's user (through the pool), hands the
//! query or batch to `exec` (which owns the transaction semantics), and writes Neon's JSON.
//! No CORS: the proxy serves servers (the edge), never browsers, so it sends no
//! `Access-Control-*` header and answers `OPTIONS` like any other method but POST.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use axum::body::Body;
use axum::extract::{ConnectInfo, State};
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;

use crate::conninfo;
use crate::error::ApiError;
use crate::exec::{execute, Outcome};
use crate::pg::{Budget, PgError, Pool, PoolKey, PooledConnection};
use crate::sql::{parse_payload, BatchOptions, BatchResult, Payload, QueryResult, RowFormat};
use crate::throttle::{LoginKey, LoginThrottle};
use crate::typed::{Shapes, LOOKUP};
use crate::Config;

const HDR_CONNECTION_STRING: &str = "neon-connection-string";

#[derive(Clone)]
pub(crate) struct AppState {
    config: Arc<Config>,
    pool: Pool,
    logins: Arc<LoginThrottle>,
    /// `POST /sql` requests received, for `GET /_stats`.
    sql_requests: Arc<std::sync::atomic::AtomicU64>,
    /// Of those, batches (`{"queries": [...]}`, one transaction each).
    sql_batches: Arc<std::sync::atomic::AtomicU64>,
    /// Time spent answering them, in µs (from the request's arrival to its answer's head).
    sql_micros: Arc<std::sync::atomic::AtomicU64>,
    /// The body of the latest `POST /sql`, only with `expose_stats` (a test and benchmark
    /// stack's loopback proxy): `cargo xtask bench` replays the batch a route made straight to
    /// the proxy, to measure the bare batch the route is compared with.
    last_sql: Option<Arc<std::sync::Mutex<bytes::Bytes>>>,
    limiter: Arc<crate::limiter::Limiter>,
    /// Which types outside Postgres' fixed ones are arrays, per database (typed output).
    shapes: Arc<Shapes>,
}

pub(crate) fn router(config: Config, pool: Pool) -> Router {
    let expose_stats = config.expose_stats;
    let state = AppState {
        logins: Arc::new(LoginThrottle::new(config.login_backoff)),
        config: Arc::new(config),
        pool,
        sql_requests: Arc::default(),
        sql_batches: Arc::default(),
        sql_micros: Arc::default(),
        last_sql: expose_stats.then(Arc::default),
        limiter: Arc::default(),
        shapes: Arc::default(),
    };
    let router = if expose_stats {
        Router::new().route("/_stats", axum::routing::get(stats))
    } else {
        Router::new()
    };
    router
        .route("/sql", post(sql_handler).fallback(method_not_allowed))
        .route(
            "/ratelimit",
            post(ratelimit_handler).fallback(method_not_allowed),
        )
        .fallback(not_found)
        .with_state(state)
}

async fn method_not_allowed() -> Response {
    let mut resp = ApiError::MethodNotAllowed.into_response();
    resp.headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static("POST"));
    resp
}

async fn not_found() -> Response {
    ApiError::NotFound.into_response()
}

async fn stats(State(state): State<AppState>) -> Response {
    let load = |c: &std::sync::atomic::AtomicU64| c.load(std::sync::atomic::Ordering::Relaxed);
    axum::Json(serde_json::json!({
        "sql_requests": load(&state.sql_requests),
        "sql_batches": load(&state.sql_batches),
        "sql_micros": load(&state.sql_micros),
        "last_sql": state.last_sql.as_ref().map(|b| {
            String::from_utf8_lossy(&b.lock().unwrap_or_else(|p| p.into_inner())).into_owned()
        }),
    }))
    .into_response()
}

/// `POST /ratelimit`: counts a request's hits for the edge ([`crate::limiter`]), behind the same token as
/// `/sql`.
async fn ratelimit_handler(State(state): State<AppState>, req: axum::extract::Request) -> Response {
    let (parts, body) = req.into_parts();
    if let Err(e) = check_bearer(&state.config, &parts.headers) {
        return e.into_response();
    }
    let body = match read_body(body, &parts.headers, crate::limiter::MAX_BODY).await {
        Ok(b) => b,
        Err(e) => return e.into_response(),
    };
    match state.limiter.hit(&body, Instant::now()) {
        Ok(decision) => axum::Json(decision).into_response(),
        Err(e) => ApiError::BadRequest(e).into_response(),
    }
}

async fn sql_handler(State(state): State<AppState>, req: axum::extract::Request) -> Response {
    let started = Instant::now();
    state
        .sql_requests
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let (parts, body) = req.into_parts();
    // The peer address, when served with connect info (main.rs); in-process tests have none.
    let client = parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(addr)| addr.ip());
    // The edge's request id (`X-Request-Id`), so one id follows a request through every hop:
    // logged with the batch and echoed on the answer. Only a short printable one is taken.
    let request_id = parts
        .headers
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| {
            !v.is_empty() && v.len() <= 128 && v.bytes().all(|b| b.is_ascii_graphic() && b != b'"')
        })
        .map(str::to_owned);
    let mut resp = match handle(&state, client, &parts.headers, body).await {
        Ok(resp) => resp,
        Err(e) => e.into_response(),
    };
    let elapsed = started.elapsed();
    state.sql_micros.fetch_add(
        u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX),
        std::sync::atomic::Ordering::Relaxed,
    );
    tracing::info!(
        request_id = request_id.as_deref().unwrap_or("-"),
        status = resp.status().as_u16(),
        elapsed_ms = elapsed.as_millis() as u64,
        "{} /sql",
        Method::POST
    );
    if let Some(v) = request_id.and_then(|id| HeaderValue::from_str(&id).ok()) {
        resp.headers_mut().insert("x-request-id", v);
    }
    resp
}

async fn handle(
    state: &AppState,
    client: Option<std::net::IpAddr>,
    headers: &HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let config = &state.config;
    check_bearer(config, headers)?;

    let conn_str = headers
        .get(HDR_CONNECTION_STRING)
        .ok_or_else(|| ApiError::BadRequest("missing Neon-Connection-String header".into()))?
        .to_str()
        .map_err(|_| ApiError::BadRequest("invalid Neon-Connection-String header".into()))?;
    let info = conninfo::parse(conn_str).map_err(ApiError::BadRequest)?;
    check_allowed(config, &info.user, &info.database)?;
    let login = LoginKey {
        role: info.user.clone(),
        client,
    };
    state
        .logins
        .check(&login, Instant::now())
        .map_err(|wait| ApiError::TooManyLogins { retry_after: wait })?;
    let body = read_body(body, headers, config.max_request_bytes).await?;
    if let Some(last) = &state.last_sql {
        *last.lock().unwrap_or_else(|p| p.into_inner()) = body.clone();
    }
    let payload = parse_payload(&body)?;
    let batch_options = match &payload {
        Payload::Batch(_) => {
            state
                .sql_batches
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            Some(BatchOptions::from_headers(headers)?)
        }
        Payload::Single(_) => None,
    };

    let format = RowFormat::from_headers(headers);
    let key = PoolKey {
        user: info.user,
        password: info.password,
        database: info.database,
    };
    let mut pooled = match state.pool.get(&key).await {
        Ok(pooled) => {
            state.logins.succeeded(&login);
            pooled
        }
        Err(e) => {
            if is_login_refused(&e) {
                if let Some(lockout) = state.logins.failed(&login, Instant::now()) {
                    tracing::warn!(
                        role = %login.role,
                        client = ?login.client,
                        lockout_ms = lockout.as_millis() as u64,
                        "failed logins: locked out"
                    );
                }
            }
            return Err(api_error(config, e));
        }
    };
    let outcome = run(
        &mut pooled,
        &payload,
        batch_options.as_ref(),
        format,
        (&state.shapes, &key.database),
        config,
    )
    .await;
    finish(pooled, &outcome);
    let json = outcome.map_err(|e| api_error(config, e))?.json;
    if json.len() > config.max_response_bytes {
        return Err(ApiError::ResponseTooLarge {
            limit: config.max_response_bytes,
        });
    }

    let mut resp = (StatusCode::OK, json).into_response();
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    for (name, value) in batch_options.iter().flat_map(|o| o.echo_headers()) {
        if let Ok(value) = HeaderValue::from_str(&value) {
            h.insert(HeaderName::from_static(name), value);
        }
    }
    Ok(resp)
}

/// Returns a healthy session to the pool; closes one whose state is unknown.
fn finish(pooled: PooledConnection, outcome: &Result<Answer, PgError>) {
    match outcome {
        Ok(answer) if answer.session_usable => pooled.release(),
        Ok(_) => drop(pooled),
        Err(e) if e.connection_usable() => pooled.release(),
        Err(_) => drop(pooled),
    }
}

fn api_error(config: &Config, e: PgError) -> ApiError {
    match e {
        PgError::ResponseTooLarge => ApiError::ResponseTooLarge {
            limit: config.max_response_bytes,
        },
        other => other.into(),
    }
}

/// Runs the request on the pooled session and writes Neon's JSON.
async fn run(
    pooled: &mut PooledConnection,
    payload: &Payload,
    batch_options: Option<&BatchOptions>,
    format: RowFormat,
    (shapes, database): (&Shapes, &str),
    config: &Config,
) -> Result<Answer, PgError> {
    let conn = pooled.conn()?;
    let mut budget = Budget {
        remaining: config.max_response_bytes,
    };
    let mut outcome = execute(conn, payload, batch_options, &mut budget, format).await?;
    let mut session_usable = true;
    let results = match &mut outcome {
        Outcome::Single(result) => std::slice::from_mut(result),
        Outcome::Batch(results) => results.as_mut_slice(),
    };
    let columns = results.iter().flat_map(QueryResult::typed_columns);
    let asked = shapes.unknown(database, columns);
    if !asked.is_empty() {
        // Types met for the first time in this database: which are arrays. After the
        // request's own statements, on its session (a batch's transaction is over by now).
        // If the lookup fails, the request has still run (and a batch committed): its answer
        // goes out with those types as text, the next request asks again, and a session the
        // failure left in an unknown state is closed.
        let mut lookup = Budget::unlimited();
        match conn
            .query(LOOKUP, &[Some(Shapes::oid_array(&asked))], &mut lookup)
            .await
        {
            Ok(found) => shapes.learn(database, &asked, &found.rows),
            Err(e) => {
                tracing::warn!("type lookup failed, those types go out as text: {e}");
                session_usable = e.connection_usable();
            }
        }
    }
    for result in results.iter_mut() {
        result.type_values(|oid| shapes.get(database, oid));
    }
    let json = match outcome {
        Outcome::Single(result) => serde_json::to_vec(&result),
        Outcome::Batch(results) => serde_json::to_vec(&BatchResult { results }),
    };
    let json = json.map_err(|e| PgError::Protocol(format!("cannot serialize result: {e}")))?;
    Ok(Answer {
        json,
        session_usable,
    })
}

/// What a request produced: its JSON, and whether its session may serve another.
struct Answer {
    json: Vec<u8>,
    session_usable: bool,
}

/// Postgres refused the login itself (SQLSTATE class 28: wrong password, no such role, no
/// `pg_hba` entry), as opposed to being unreachable.
fn is_login_refused(e: &PgError) -> bool {
    matches!(e, PgError::Db(db) if db.code.starts_with("28"))
}

/// Only the configured roles and databases: anything else is refused before any login, so the
/// proxy cannot be used to guess other roles' passwords (the superuser's above all).
fn check_allowed(config: &Config, role: &str, database: &str) -> Result<(), ApiError> {
    if !config.allowed_roles.iter().any(|r| r == role) {
        return Err(ApiError::Forbidden(
            "this proxy does not log in as that role".into(),
        ));
    }
    if !config.allowed_databases.iter().any(|d| d == database) {
        return Err(ApiError::Forbidden(
            "this proxy does not connect to that database".into(),
        ));
    }
    Ok(())
}

fn check_bearer(config: &Config, headers: &HeaderMap) -> Result<(), ApiError> {
    let Some(expected) = &config.bearer_token else {
        return Ok(());
    };
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.as_bytes().strip_prefix(b"Bearer "))
        .ok_or(ApiError::Unauthorized)?;
    if constant_time_eq(presented, expected.as_bytes()) {
        Ok(())
    } else {
        Err(ApiError::Unauthorized)
    }
}

/// Compares without an early exit so the token cannot be guessed byte by byte from timing.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

async fn read_body(
    body: Body,
    headers: &HeaderMap,
    limit: usize,
) -> Result<bytes::Bytes, ApiError> {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(ApiError::PayloadTooLarge { limit });
    }
    axum::body::to_bytes(body, limit).await.map_err(|e| {
        let inner = e.into_inner();
        if inner.is::<http_body_util::LengthLimitError>() {
            ApiError::PayloadTooLarge { limit }
        } else {
            ApiError::BadRequest(format!("cannot read request body: {inner}"))
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer() {
        let mut config = Config::default();
        let mut h = HeaderMap::new();
        assert!(check_bearer(&config, &h).is_ok());
        config.bearer_token = Some("s3cret".into());
        assert!(check_bearer(&config, &h).is_err());
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Bearer nope"),
        );
        assert!(check_bearer(&config, &h).is_err());
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Bearer s3cret"),
        );
        assert!(check_bearer(&config, &h).is_ok());
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Basic s3cret"),
        );
        assert!(check_bearer(&config, &h).is_err());
    }

    #[test]
    fn allow_lists() {
        let config = Config {
            allowed_roles: vec!["app".into()],
            allowed_databases: vec!["db".into()],
            ..Config::default()
        };
        assert!(check_allowed(&config, "app", "db").is_ok());
        assert!(check_allowed(&config, "postgres", "db").is_err());
        assert!(check_allowed(&config, "app", "postgres").is_err());
        assert!(check_allowed(&Config::default(), "app", "db").is_err());
    }
}
