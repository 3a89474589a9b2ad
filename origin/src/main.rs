//! `edgefront-origin`: `serve` runs the Neon-protocol SQL-over-HTTP server; `migrate` applies
//! the numbered SQL migrations. Logs go to stderr; stdout carries only the `listening` line a
//! supervisor parses.

use std::io::{IsTerminal, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use axum::serve::{Listener, ListenerExt};
use clap::{Parser, Subcommand};
use edgefront_origin::{migrate, router, Config, LoginBackoff};

#[derive(Parser)]
#[command(name = "edgefront-origin", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve POST /sql (Neon's SQL-over-HTTP protocol) in front of Postgres.
    Serve(ServeArgs),
    /// Apply pending NNNN_name.sql migrations, then changed functions/*.sql files, each in its own transaction.
    Migrate(MigrateArgs),
}

#[derive(clap::Args)]
struct ServeArgs {
    /// Address to listen on; port 0 picks a free port (printed on stdout).
    #[arg(long, env = "EDGEFRONT_ORIGIN_LISTEN", default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    #[arg(long, env = "EDGEFRONT_PG_HOST", default_value = "127.0.0.1")]
    pg_host: String,
    #[arg(long, env = "EDGEFRONT_PG_PORT", default_value_t = 5432)]
    pg_port: u16,
    /// Require `Authorization: Bearer <token>` on every request. Required unless --listen is
    /// a loopback address: the proxy refuses to start without it otherwise.
    #[arg(long, env = "EDGEFRONT_ORIGIN_BEARER_TOKEN", hide_env_values = true)]
    bearer_token: Option<String>,
    /// A role the proxy may log in as (repeat, or comma-separated in the environment); any
    /// other is refused with 403 before a login is attempted. At least one.
    #[arg(
        long = "allow-role",
        env = "EDGEFRONT_ORIGIN_ALLOW_ROLES",
        value_delimiter = ','
    )]
    allow_roles: Vec<String>,
    /// A database the proxy may connect to (as --allow-role). At least one.
    #[arg(
        long = "allow-database",
        env = "EDGEFRONT_ORIGIN_ALLOW_DATABASES",
        value_delimiter = ','
    )]
    allow_databases: Vec<String>,
    /// Failed logins in a row (per role and client address) before they are locked out; each
    /// further failure doubles the lockout, from 1 s up to --login-lockout-max-ms.
    #[arg(
        long,
        env = "EDGEFRONT_ORIGIN_LOGIN_FREE_FAILURES",
        default_value_t = 3
    )]
    login_free_failures: u32,
    #[arg(
        long,
        env = "EDGEFRONT_ORIGIN_LOGIN_LOCKOUT_MAX_MS",
        default_value_t = 300_000
    )]
    login_lockout_max_ms: u64,
    /// Postgres statement_timeout for every session (0 disables it).
    #[arg(long, env = "EDGEFRONT_STATEMENT_TIMEOUT_MS", default_value_t = 5000)]
    statement_timeout_ms: u64,
    /// Bound on connecting and logging in to Postgres.
    #[arg(long, env = "EDGEFRONT_CONNECT_TIMEOUT_MS", default_value_t = 10000)]
    connect_timeout_ms: u64,
    #[arg(long, env = "EDGEFRONT_MAX_REQUEST_BYTES", default_value_t = 1_048_576)]
    max_request_bytes: usize,
    #[arg(
        long,
        env = "EDGEFRONT_MAX_RESPONSE_BYTES",
        default_value_t = 10_485_760
    )]
    max_response_bytes: usize,
    /// Most Postgres sessions per (user, password, database).
    #[arg(long, env = "EDGEFRONT_POOL_SIZE", default_value_t = 8)]
    pool_size: usize,
    /// Serve GET /_stats with request counts (unauthenticated: for local tests only).
    #[arg(long)]
    expose_stats: bool,
}

#[derive(clap::Args)]
struct MigrateArgs {
    /// Superuser connection URL, e.g. postgres://postgres:pw@127.0.0.1:5432/edgefront
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    database_url: String,
    #[arg(long, env = "EDGEFRONT_MIGRATIONS_DIR", default_value = "migrations")]
    dir: PathBuf,
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();

    let result = match Cli::parse().command {
        Command::Serve(args) => serve(args).await,
        Command::Migrate(args) => run_migrate(args).await,
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(args: ServeArgs) -> Result<(), Box<dyn std::error::Error>> {
    let config = Config {
        pg_host: args.pg_host,
        pg_port: args.pg_port,
        bearer_token: args.bearer_token.filter(|t| !t.is_empty()),
        allowed_roles: nonempty(args.allow_roles),
        allowed_databases: nonempty(args.allow_databases),
        login_backoff: LoginBackoff {
            free_failures: args.login_free_failures,
            max: Duration::from_millis(args.login_lockout_max_ms),
            ..LoginBackoff::default()
        },
        statement_timeout: Duration::from_millis(args.statement_timeout_ms),
        connect_timeout: Duration::from_millis(args.connect_timeout_ms),
        max_request_bytes: args.max_request_bytes,
        max_response_bytes: args.max_response_bytes,
        pool_size: args.pool_size,
        expose_stats: args.expose_stats,
        ..Config::default()
    };
    config.check_listen(args.listen)?;
    tracing::info!(
        pg = %format!("{}:{}", config.pg_host, config.pg_port),
        bearer = config.bearer_token.is_some(),
        roles = ?config.allowed_roles,
        databases = ?config.allowed_databases,
        statement_timeout_ms = args.statement_timeout_ms,
        "starting"
    );
    // No Nagle delay on answers: hyper may write a response's head and body separately.
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await?
        .tap_io(|tcp| {
            let _ = tcp.set_nodelay(true);
        });
    let addr = listener.local_addr()?;
    {
        let mut out = std::io::stdout().lock();
        writeln!(out, "listening http://{addr}")?;
        out.flush()?;
    }
    // With the peer's address: failed logins are backed off per role and client.
    let app = router(config).into_make_service_with_connect_info::<SocketAddr>();
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown_signal())
        .await?;
    tracing::info!("stopped");
    Ok(())
}

fn nonempty(values: Vec<String>) -> Vec<String> {
    values
        .into_iter()
        .map(|v| v.trim().to_owned())
        .filter(|v| !v.is_empty())
        .collect()
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    tracing::info!("shutting down");
}

async fn run_migrate(args: MigrateArgs) -> Result<(), Box<dyn std::error::Error>> {
    let applied = migrate::apply(&args.database_url, &args.dir).await?;
    if applied.is_empty() {
        println!("no pending migrations");
    }
    for name in applied {
        println!("applied {name}");
    }
    Ok(())
}
