//! A small connection pool keyed by login (user, password, database). Postgres does the
//! authentication, so a session is only ever reused for the exact credentials that opened it,
//! and its state is wiped ([`PgConnection::reset`]) before it goes back.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::conn::{ConnectParams, PgConnection, TxStatus};
use super::error::PgError;

#[derive(Debug, Clone)]
pub struct PoolConfig {
    pub host: String,
    pub port: u16,
    /// Upper bound on open sessions per key (busy + idle).
    pub max_per_key: usize,
    pub connect_timeout: Duration,
    /// Idle sessions older than this are closed instead of reused.
    pub idle_timeout: Duration,
    /// Startup parameters for every session (statement_timeout, DateStyle, ...).
    pub startup_options: Vec<(String, String)>,
    /// Client-side guard per statement, above the server's statement_timeout.
    pub io_timeout: Option<Duration>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PoolKey {
    pub user: String,
    pub password: Option<String>,
    pub database: String,
}

struct KeyPool {
    permits: Arc<Semaphore>,
    idle: Mutex<Vec<PgConnection>>,
}

#[derive(Clone)]
pub struct Pool {
    inner: Arc<PoolInner>,
}

struct PoolInner {
    config: PoolConfig,
    keys: Mutex<HashMap<PoolKey, Arc<KeyPool>>>,
}

/// A checked-out session. Dropping it closes the session; only `release` returns it.
pub struct PooledConnection {
    conn: Option<PgConnection>,
    home: Arc<KeyPool>,
    permit: Option<OwnedSemaphorePermit>,
}

impl Pool {
    pub fn new(config: PoolConfig) -> Pool {
        Pool {
            inner: Arc::new(PoolInner {
                config,
                keys: Mutex::new(HashMap::new()),
            }),
        }
    }

    fn key_pool(&self, key: &PoolKey) -> Arc<KeyPool> {
        let mut keys = lock(&self.inner.keys);
        keys.entry(key.clone())
            .or_insert_with(|| {
                Arc::new(KeyPool {
                    permits: Arc::new(Semaphore::new(self.inner.config.max_per_key.max(1))),
                    idle: Mutex::new(Vec::new()),
                })
            })
            .clone()
    }

    /// Takes an idle session for `key` or opens a new one, waiting at most the connect
    /// timeout for a free slot.
    pub async fn get(&self, key: &PoolKey) -> Result<PooledConnection, PgError> {
        let cfg = &self.inner.config;
        let home = self.key_pool(key);
        let permit =
            tokio::time::timeout(cfg.connect_timeout, home.permits.clone().acquire_owned())
                .await
                .map_err(|_| PgError::ConnectTimeout)?
                .map_err(|_| PgError::Protocol("pool closed".into()))?;

        loop {
            let candidate = lock(&home.idle).pop();
            let Some(conn) = candidate else { break };
            if conn.last_used.elapsed() < cfg.idle_timeout && conn.looks_alive() {
                return Ok(PooledConnection {
                    conn: Some(conn),
                    home,
                    permit: Some(permit),
                });
            }
            tracing::debug!("dropping stale pooled connection");
        }

        let params = ConnectParams {
            host: cfg.host.clone(),
            port: cfg.port,
            user: key.user.clone(),
            password: key.password.clone(),
            database: key.database.clone(),
            options: cfg.startup_options.clone(),
            connect_timeout: cfg.connect_timeout,
        };
        match PgConnection::connect(&params).await {
            Ok(mut conn) => {
                conn.set_io_timeout(cfg.io_timeout);
                Ok(PooledConnection {
                    conn: Some(conn),
                    home,
                    permit: Some(permit),
                })
            }
            Err(e) => {
                // Don't let failed logins (wrong passwords) accumulate empty entries.
                if lock(&home.idle).is_empty() {
                    let mut keys = lock(&self.inner.keys);
                    if keys.get(key).is_some_and(|k| Arc::ptr_eq(k, &home)) {
                        keys.remove(key);
                    }
                }
                Err(e)
            }
        }
    }

    /// Number of idle sessions for a key (for tests and diagnostics).
    pub fn idle_count(&self, key: &PoolKey) -> usize {
        lock(&self.inner.keys)
            .get(key)
            .map(|k| lock(&k.idle).len())
            .unwrap_or(0)
    }
}

impl PooledConnection {
    pub fn conn(&mut self) -> Result<&mut PgConnection, PgError> {
        self.conn
            .as_mut()
            .ok_or_else(|| PgError::Protocol("connection already released".into()))
    }

    /// Returns the session to the pool after wiping its state in the background, so the
    /// response is not delayed. A session inside a transaction (or a failed one) is closed:
    /// its state cannot be trusted.
    pub fn release(mut self) {
        let (Some(mut conn), Some(permit)) = (self.conn.take(), self.permit.take()) else {
            return;
        };
        let home = self.home.clone();
        if conn.status() != TxStatus::Idle {
            tokio::spawn(conn.close());
            return;
        }
        tokio::spawn(async move {
            match conn.reset().await {
                Ok(()) if conn.status() == TxStatus::Idle => lock(&home.idle).push(conn),
                Ok(_) => conn.close().await,
                Err(e) => tracing::debug!("closing connection that failed to reset: {e}"),
            }
            drop(permit);
        });
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic while holding the lock cannot leave these collections inconsistent.
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}
