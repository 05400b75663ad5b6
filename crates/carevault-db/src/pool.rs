//! The two connection pools. They are distinct types so that a tenant request path, which only
//! ever holds an [`AppPool`], cannot open a platform transaction, and vice versa.

use std::sync::Arc;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{ConnectOptions, PgConnection, PgPool};

use crate::tenant_context::{self, BindingKind, TenantContextKey};
use crate::{DbError, TenantId};

/// Pool sizing (`DB_POOL_SIZE`, `DB_ACQUIRE_TIMEOUT_MS`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolConfig {
    /// The most connections the pool opens.
    pub max_connections: u32,
    /// How long `begin` waits for a free connection before [`DbError::PoolExhausted`].
    pub acquire_timeout: Duration,
    /// Whether queries are named prepared statements cached per connection. Off (unnamed
    /// statements) behind PgBouncer < 1.21 in transaction mode, which cannot route a prepared
    /// statement to the server that prepared it.
    pub statement_cache: bool,
}

impl Default for PoolConfig {
    fn default() -> PoolConfig {
        PoolConfig { max_connections: 10, acquire_timeout: Duration::from_millis(2000), statement_cache: true }
    }
}

/// The pool of the tenant path: its login (`carevault_api`, or the single URL of a deployment)
/// must be able to switch to `carevault_app`, and it holds the key that proves a tenant context
/// to the database ([`crate::tenant_context`]). Only [`crate::TenantTx`] uses it.
#[derive(Debug, Clone)]
pub struct AppPool {
    pub(crate) pool: PgPool,
    pub(crate) statements: Statements,
    pub(crate) key: Arc<TenantContextKey>,
    pub(crate) binding: BindingKind,
}

/// The pool of the platform path: its login (`carevault_ops`, or the single URL) must be able to
/// switch to `carevault_platform`. Only [`crate::PlatformTx`] uses it.
#[derive(Debug, Clone)]
pub struct PlatformPool {
    pub(crate) pool: PgPool,
    pub(crate) statements: Statements,
}

/// How queries are sent: as named prepared statements, cached per connection (the default), or
/// as unnamed statements when [`PoolConfig::statement_cache`] is off.
///
/// Behind PgBouncer < 1.21 in transaction mode, a named statement prepared on one server
/// connection does not exist on the next one, and sqlx names every statement it prepares even
/// with a zero-sized cache (`sqlx-postgres` `prepare`: only `persistent(false)` queries are
/// unnamed). Measured by the evidence suite: with named statements nearly every API request
/// through PgBouncer 1.18 failed with "prepared statement sqlx_s_N does not exist".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Statements {
    named: bool,
}

impl Statements {
    /// A query of this pool's kind.
    pub(crate) fn query(
        self,
        sql: &'static str,
    ) -> sqlx::query::Query<'static, sqlx::Postgres, sqlx::postgres::PgArguments> {
        sqlx::query(sql).persistent(self.named)
    }

    /// A typed query of this pool's kind.
    pub(crate) fn query_as<O>(
        self,
        sql: &'static str,
    ) -> sqlx::query::QueryAs<'static, sqlx::Postgres, O, sqlx::postgres::PgArguments>
    where
        O: for<'r> sqlx::FromRow<'r, sqlx::postgres::PgRow>,
    {
        sqlx::query_as(sql).persistent(self.named)
    }

    /// A scalar query of this pool's kind.
    pub(crate) fn query_scalar<O>(
        self,
        sql: &'static str,
    ) -> sqlx::query::QueryScalar<'static, sqlx::Postgres, O, sqlx::postgres::PgArguments>
    where
        (O,): for<'r> sqlx::FromRow<'r, sqlx::postgres::PgRow>,
    {
        sqlx::query_scalar(sql).persistent(self.named)
    }
}

impl AppPool {
    /// Connects lazily (the first transaction opens the first connection). `key` must be one the
    /// database holds ([`tenant_context::install`]), or every tenant transaction sees nothing:
    /// check with [`AppPool::context_is_verified`].
    pub fn connect_lazy(url: &str, config: PoolConfig, key: TenantContextKey) -> Result<AppPool, DbError> {
        Ok(AppPool {
            pool: guarded_pool(url, config)?,
            statements: Statements { named: config.statement_cache },
            key: Arc::new(key),
            binding: BindingKind::Transaction,
        })
    }

    /// Checks that a connection can be had and the database answers.
    pub async fn ping(&self) -> Result<(), DbError> {
        ping(&self.pool).await
    }

    /// The tenant path over the owner's pool, for owner-run commands (imports, index
    /// maintenance, the doctor): it adds a new random key to the database that stops verifying
    /// after [`tenant_context::OWNER_KEY_LIFETIME`], so that no command needs the service's key. Its login must
    /// be able to switch to `carevault_app`. Unnamed statements: a few maintenance transactions do
    /// not need a statement cache on a pool that is not the service's.
    pub async fn over_owner(pool: &PgPool) -> Result<AppPool, DbError> {
        let key = tenant_context::owner_key(pool).await?;
        Ok(AppPool {
            pool: pool.clone(),
            statements: Statements { named: false },
            key: Arc::new(key),
            binding: BindingKind::Transaction,
        })
    }

    /// This pool on another URL (the least-privileged login of an owner-run command), with the
    /// key of `self`.
    pub fn with_url(&self, url: &str, config: PoolConfig) -> Result<AppPool, DbError> {
        Ok(AppPool {
            pool: guarded_pool(url, config)?,
            statements: Statements { named: config.statement_cache },
            ..self.clone()
        })
    }

    /// Closes every connection.
    pub async fn close(&self) {
        self.pool.close().await;
    }

    /// What the readiness check needs to know of the schema, read as `carevault_app` in a
    /// transaction of the System tenant (the login role itself may read nothing): the applied
    /// migration version, pgvector's version, and whether the database accepts this pool's
    /// proofs.
    pub async fn schema_state(&self) -> Result<SchemaState, DbError> {
        let mut tx = crate::TenantTx::begin(self, TenantId::SYSTEM, crate::AuditContext::default()).await?;
        let (migration_version, pgvector_version) = tx.schema_versions().await?;
        let migration_version = migration_version.unwrap_or(0);
        let context_verified = migration_version >= VERIFIED_CONTEXT_MIGRATION && tx.context_is_verified().await?;
        tx.rollback().await?;
        Ok(SchemaState { migration_version, pgvector_version, context_verified })
    }
}

/// The migration that made the policies verify the tenant context.
const VERIFIED_CONTEXT_MIGRATION: i64 = 18;

/// The schema as the readiness check sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SchemaState {
    /// The highest applied migration (0 when none).
    pub migration_version: i64,
    /// pgvector's version, when the extension is installed.
    pub pgvector_version: Option<String>,
    /// Whether the database accepted a proof of this pool's key: `false` when the key is not
    /// installed (`carevault context-key add`), or the clocks of the service and the database
    /// differ by more than [`tenant_context::PROOF_LIFETIME`].
    pub context_verified: bool,
}

impl PlatformPool {
    /// Connects lazily (the first transaction opens the first connection).
    pub fn connect_lazy(url: &str, config: PoolConfig) -> Result<PlatformPool, DbError> {
        Ok(PlatformPool { pool: guarded_pool(url, config)?, statements: Statements { named: config.statement_cache } })
    }

    /// Checks that a connection can be had and the database answers.
    pub async fn ping(&self) -> Result<(), DbError> {
        ping(&self.pool).await
    }

    /// The platform path over the owner's pool, as [`AppPool::over`].
    pub(crate) fn over(pool: &PgPool) -> PlatformPool {
        PlatformPool { pool: pool.clone(), statements: Statements { named: false } }
    }

    /// Closes every connection.
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

async fn ping(pool: &PgPool) -> Result<(), DbError> {
    sqlx::query("SELECT 1").persistent(false).execute(pool).await.map_err(|error| acquire_error(pool, error))?;
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

/// The leak guard, run by both pools on every connection that comes back to them: no tenant
/// setting and no switched role may have survived. Every setting we make is transaction-local, so
/// this only fails if some code ran a session-level `SET`; the pool then closes the connection
/// instead of handing it to the next tenant.
///
/// Also checks that the session is still the pool's login: `SET SESSION AUTHORIZATION` (possible
/// from a superuser login) would otherwise pass `current_user = session_user`.
pub async fn connection_is_clean(conn: &mut PgConnection, login: &str) -> Result<bool, DbError> {
    let clean: bool = sqlx::query_scalar(
        "SELECT current_user = session_user AND session_user = $1 \
            AND coalesce(current_setting('app.tenant_context', true), '') = ''",
    )
    .bind(login)
    // Unnamed: it runs outside a transaction, where behind PgBouncer each round trip may reach
    // another server connection.
    .persistent(false)
    .fetch_one(conn)
    .await?;
    Ok(clean)
}

/// Settings sent in every connection's startup packet. Startup options override the defaults a
/// role can set for itself (`ALTER ROLE carevault_api SET ...` needs no privilege beyond being
/// that role), so a session holding the login's credentials cannot make every later connection
/// read-only, resolve names elsewhere, start with a switched role or a tenant already set (found by
/// the attack catalogue, `attacks.rs`, "persistence"), nor keep a transaction open and idle for
/// long. Other timeouts are left to the operator's role settings (docs/POSTGRESQL_TUNING.md);
/// `carevault doctor` lists every role setting it finds.
pub const PINNED_SETTINGS: [(&str, &str); 6] = [
    ("role", "none"),
    ("idle_in_transaction_session_timeout", crate::manifest::IDLE_IN_TRANSACTION_TIMEOUT),
    ("search_path", "public"),
    ("default_transaction_read_only", "off"),
    ("row_security", "on"),
    ("app.tenant_context", ""),
];

/// The [`PINNED_SETTINGS`] this connection does not hold, as `name=value` (what it holds
/// instead). Empty when the startup packet's settings applied. A pooler that drops startup
/// parameters (PgBouncer with `options` in `ignore_startup_parameters`) leaves them at the
/// server's and the role's defaults, where a session holding the login's credentials can have put
/// its own (docs/POSTGRESQL_TUNING.md, "Connections").
pub async fn settings_not_pinned(conn: &mut PgConnection) -> Result<Vec<String>, DbError> {
    let names: Vec<&str> = PINNED_SETTINGS.iter().map(|(name, _)| *name).collect();
    let values: Vec<String> =
        sqlx::query_scalar("SELECT coalesce(current_setting(name, true), '') FROM unnest($1::text[]) WITH ORDINALITY AS s (name, position) ORDER BY position")
            .bind(&names)
            .persistent(false)
            .fetch_all(conn)
            .await?;
    Ok(PINNED_SETTINGS
        .iter()
        .zip(values)
        .filter(|((_, expected), actual)| actual != expected)
        .map(|((name, _), actual)| format!("{name}={actual}"))
        .collect())
}

fn guarded_pool(url: &str, config: PoolConfig) -> Result<PgPool, DbError> {
    let mut options: PgConnectOptions = url.parse()?;
    if !config.statement_cache {
        options = options.statement_cache_capacity(0);
    }
    let login = options.get_username().to_string();
    options = options.options(PINNED_SETTINGS);
    // Statements can carry PHI in their parameters' context; never log them.
    options = options.disable_statement_logging();
    let pool = PgPoolOptions::new()
        .max_connections(config.max_connections)
        .acquire_timeout(config.acquire_timeout)
        .after_connect(|conn, _meta| {
            Box::pin(async move {
                // Read back once per connection: warn rather than refuse, because PgBouncer cannot
                // forward `options` at all, and refusing would rule it out.
                let differing = settings_not_pinned(conn).await.map_err(into_sqlx)?;
                if !differing.is_empty() {
                    tracing::warn!(
                        settings = %differing.join(", "),
                        "the settings sent at connect time did not apply (a pooler dropping startup parameters?): \
                         role defaults of the login now steer these connections"
                    );
                }
                Ok(())
            })
        })
        .after_release(move |conn, _meta| {
            let login = login.clone();
            Box::pin(async move {
                // An error (e.g. a broken connection) also closes the connection.
                let clean = connection_is_clean(conn, &login).await.map_err(into_sqlx)?;
                if !clean {
                    tracing::error!("closing a pooled connection that kept a tenant setting or role");
                }
                Ok(clean)
            })
        })
        .connect_lazy_with(options);
    Ok(pool)
}

fn into_sqlx(error: DbError) -> sqlx::Error {
    match error {
        DbError::Database(e) | DbError::Unavailable(e) => e,
        other => sqlx::Error::Protocol(other.to_string()),
    }
}
