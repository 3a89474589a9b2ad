//! edgefront's origin: Neon's SQL-over-HTTP protocol in front of Postgres, so the
//! `@neondatabase/serverless` driver can talk to a plain Postgres. Postgres itself
//! authenticates every request (the connection string's user and password), but only for the
//! roles and databases the listener allows, behind its bearer token (required unless it listens
//! on loopback only), with failed logins backed off: exposed, it must not be a login gateway.

mod conninfo;
mod error;
mod exec;
mod http;
pub mod limiter;
pub mod migrate;
mod params;
pub mod pg;
mod sql;
mod throttle;
mod typed;

use std::net::SocketAddr;
use std::time::Duration;

pub use conninfo::{parse as parse_connection_string, ConnInfo};
pub use error::{ApiError, ErrorBody};
pub use params::json_to_pg_text;
pub use sql::parse_command_tag;
pub use throttle::LoginBackoff;
pub use typed::BUILTIN_ARRAYS;

/// Server settings. Postgres host and port are fixed here: the host in a client's connection
/// string is ignored, so clients cannot point the origin at other servers.
#[derive(Debug, Clone)]
pub struct Config {
    pub pg_host: String,
    pub pg_port: u16,
    /// If set, every request must carry `Authorization: Bearer <token>`. Required unless the
    /// proxy listens on loopback only ([`Config::check_listen`]).
    pub bearer_token: Option<String>,
    /// The roles a connection string may log in as; any other is 403 before any login
    /// attempt. Empty: none (fail closed).
    pub allowed_roles: Vec<String>,
    /// The databases a connection string may name; as `allowed_roles`.
    pub allowed_databases: Vec<String>,
    /// How failed logins are slowed down.
    pub login_backoff: LoginBackoff,
    /// Postgres `statement_timeout` of every session (zero disables it).
    pub statement_timeout: Duration,
    /// Bound on TCP connect + startup + authentication, and on waiting for a pool slot.
    pub connect_timeout: Duration,
    pub max_request_bytes: usize,
    pub max_response_bytes: usize,
    /// Most sessions open at once per (user, password, database).
    pub pool_size: usize,
    /// Idle pooled sessions older than this are closed instead of reused.
    pub idle_timeout: Duration,
    /// Serve `GET /_stats` (requests served), for tests that count round trips. Off in
    /// production: it is unauthenticated.
    pub expose_stats: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            pg_host: "127.0.0.1".into(),
            pg_port: 5432,
            bearer_token: None,
            allowed_roles: Vec::new(),
            allowed_databases: Vec::new(),
            login_backoff: LoginBackoff::default(),
            statement_timeout: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(10),
            max_request_bytes: 1024 * 1024,
            max_response_bytes: 10 * 1024 * 1024,
            pool_size: 8,
            idle_timeout: Duration::from_secs(300),
            expose_stats: false,
        }
    }
}

impl Config {
    /// Refuses a configuration that would make the proxy an open login gateway: listening
    /// beyond loopback without a bearer token, or allowing no role or database at all.
    pub fn check_listen(&self, listen: SocketAddr) -> Result<(), String> {
        if self.bearer_token.is_none() && !listen.ip().is_loopback() {
            return Err(format!(
                "refusing to listen on {listen} without a bearer token: beyond loopback the proxy \
                 requires --bearer-token (EDGEFRONT_ORIGIN_BEARER_TOKEN); listen on 127.0.0.1 or \
                 [::1] to run without one"
            ));
        }
        if self.allowed_roles.is_empty() {
            return Err(
                "no role allowed: pass --allow-role (EDGEFRONT_ORIGIN_ALLOW_ROLES) for each \
                        role the proxy may log in as"
                    .into(),
            );
        }
        if self.allowed_databases.is_empty() {
            return Err("no database allowed: pass --allow-database \
                        (EDGEFRONT_ORIGIN_ALLOW_DATABASES) for each database the proxy may connect to"
                .into());
        }
        Ok(())
    }

    fn pool_config(&self) -> pg::PoolConfig {
        let mut startup_options = vec![
            ("application_name".to_owned(), "edgefront-origin".to_owned()),
            // node-postgres' date parsers expect ISO output.
            ("DateStyle".to_owned(), "ISO, MDY".to_owned()),
        ];
        let timeout_ms = self.statement_timeout.as_millis();
        if timeout_ms > 0 {
            // As a startup parameter it is the session default, so the session reset (`RESET ALL`)
            // restores it after a request changed it.
            startup_options.push(("statement_timeout".to_owned(), timeout_ms.to_string()));
        }
        pg::PoolConfig {
            host: self.pg_host.clone(),
            port: self.pg_port,
            max_per_key: self.pool_size,
            connect_timeout: self.connect_timeout,
            idle_timeout: self.idle_timeout,
            startup_options,
            // Postgres cancels a statement at statement_timeout; this client-side guard only
            // covers a server or network that stops answering.
            io_timeout: (timeout_ms > 0).then(|| self.statement_timeout + Duration::from_secs(10)),
        }
    }
}

/// The HTTP application (`POST /sql`), with its own connection pool.
pub fn router(config: Config) -> axum::Router {
    let pool = pg::Pool::new(config.pool_config());
    http::router(config, pool)
}
