//! The two connection pools. They are distinct types so that a tenant request path, which only
//! ever holds an [`AppPool`], cannot open a platform transaction, and vice versa.

use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{ConnectOptions, PgPool};

use crate::DbError;

/// Pool sizing (DESIGN §7.1 `DB_POOL_SIZE`, `DB_ACQUIRE_TIMEOUT_MS`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolConfig {
    /// The most connections the pool opens.
    pub max_connections: u32,
    /// How long `begin` waits for a free connection before [`DbError::PoolExhausted`].
    pub acquire_timeout: Duration,
    /// Whether sqlx may cache prepared statements. Off behind PgBouncer < 1.21 in transaction
    /// mode, which cannot route a prepared statement to the server that prepared it.
    pub statement_cache: bool,
}

impl Default for PoolConfig {
    fn default() -> PoolConfig {
        PoolConfig { max_connections: 10, acquire_timeout: Duration::from_millis(2000), statement_cache: true }
    }
}

/// The pool of the tenant path: its login (`carevault_api`, or the single URL of a deployment)
/// must be able to switch to `carevault_app`. Only [`crate::TenantTx`] uses it.
#[derive(Debug, Clone)]
pub struct AppPool(pub(crate) PgPool);

/// The pool of the platform path: its login (`carevault_ops`, or the single URL) must be able to
/// switch to `carevault_platform`. Only [`crate::PlatformTx`] uses it.
#[derive(Debug, Clone)]
pub struct PlatformPool(pub(crate) PgPool);

impl AppPool {
    /// Connects lazily (the first transaction opens the first connection).
    pub fn connect_lazy(url: &str, config: PoolConfig) -> Result<AppPool, DbError> {
        Ok(AppPool(guarded_pool(url, config)?))
    }

    /// Checks that a connection can be had and the database answers.
    pub async fn ping(&self) -> Result<(), DbError> {
        ping(&self.0).await
    }

    /// Closes every connection.
    pub async fn close(&self) {
        self.0.close().await;
    }
}

impl PlatformPool {
    /// Connects lazily (the first transaction opens the first connection).
    pub fn connect_lazy(url: &str, config: PoolConfig) -> Result<PlatformPool, DbError> {
        Ok(PlatformPool(guarded_pool(url, config)?))
    }

    /// Checks that a connection can be had and the database answers.
    pub async fn ping(&self) -> Result<(), DbError> {
        ping(&self.0).await
    }

    /// Closes every connection.
    pub async fn close(&self) {
        self.0.close().await;
    }
}

async fn ping(pool: &PgPool) -> Result<(), DbError> {
    sqlx::query("SELECT 1").execute(pool).await.map_err(|error| acquire_error(pool, error))?;
    Ok(())
}

/// Classifies an error of taking a connection from `pool`.
///
/// sqlx reports both "every connection is busy" and "no connection can be opened" as
/// `PoolTimedOut` (it retries connecting until the acquire timeout, then drops the cause). With no
/// connection open at all, the database is unreachable, not busy.
pub(crate) fn acquire_error(pool: &PgPool, error: sqlx::Error) -> DbError {
    match error {
        sqlx::Error::PoolTimedOut if pool.size() == 0 => DbError::Unavailable(error),
        other => other.into(),
    }
}

/// The leak guard: when a connection comes back to the pool, no tenant setting and no switched
/// role may have survived. Every setting we make is transaction-local, so this only fails if some
/// code ran a session-level `SET`; such a connection is closed, never handed to the next tenant.
const LEAK_CHECK: &str = "SELECT current_user = session_user \
     AND coalesce(current_setting('app.current_tenant_id', true), '') = '' \
     AND coalesce(current_setting('app.current_user_id', true), '') = ''";

fn guarded_pool(url: &str, config: PoolConfig) -> Result<PgPool, DbError> {
    let mut options: PgConnectOptions = url.parse()?;
    if !config.statement_cache {
        options = options.statement_cache_capacity(0);
    }
    // Statements can carry PHI in their parameters' context; never log them.
    options = options.disable_statement_logging();
    let pool = PgPoolOptions::new()
        .max_connections(config.max_connections)
        .acquire_timeout(config.acquire_timeout)
        .after_release(|conn, _meta| {
            Box::pin(async move {
                let clean: bool = sqlx::query_scalar(LEAK_CHECK).fetch_one(&mut *conn).await?;
                if !clean {
                    tracing::error!("closing a pooled connection that kept a tenant setting or role");
                }
                Ok(clean)
            })
        })
        .connect_lazy_with(options);
    Ok(pool)
}
