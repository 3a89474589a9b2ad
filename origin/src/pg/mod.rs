//! A minimal Postgres client: one session over the wire protocol (`conn`), its errors
//! (`error`), and a per-login pool (`pool`).

mod conn;
mod error;
mod pool;

pub use conn::{
    Budget, Column, ConnectParams, PgConnection, QueryOutput, TxStatus, PREPARED_CAPACITY,
    RESET_SESSION,
};
pub use error::{DbError, PgError};
pub use pool::{Pool, PoolConfig, PoolKey, PooledConnection};
