//! edgefront's origin: Neon's SQL-over-HTTP protocol in front of Postgres, so the
//! `@neondatabase/serverless` driver can talk to a plain Postgres. Postgres itself
//! authenticates every request (the connection string's user and password).

mod conninfo;
mod error;
mod exec;
mod http;
pub mod migrate;
mod params;
pub mod pg;
mod sql;

use std::time::Duration;

pub use conninfo::{parse as parse_connection_string, ConnInfo};
pub use error::{ApiError, ErrorBody};
pub use params::json_to_pg_text;
pub use sql::parse_command_tag;

/// Server settings. Postgres host and port are fixed here: the host in a client's connection
/// string is ignored, so clients cannot point the origin at other servers.
#[derive(Debug, Clone)]
pub struct Config {
    pub pg_host: String,
    pub pg_port: u16,
    /// If set, every request must carry `Authorization: Bearer <token>`.
    pub bearer_token: Option<String>,
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
    fn pool_config(&self) -> pg::PoolConfig {
        let mut startup_options = vec![
            ("application_name".to_owned(), "edgefront-origin".to_owned()),
            // node-postgres' date parsers expect ISO output.
            ("DateStyle".to_owned(), "ISO, MDY".to_owned()),
        ];
        let timeout_ms = self.statement_timeout.as_millis();
        if timeout_ms > 0 {
            // As a startup parameter it is the session default, so `DISCARD ALL` (RESET ALL)
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
