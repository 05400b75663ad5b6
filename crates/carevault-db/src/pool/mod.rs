//! The two connection pools. They are distinct types so that a tenant request path, which only
//! ever holds an [`AppPool`], cannot open a platform transaction, and vice versa.

mod slots;

use std::sync::{Arc, PoisonError};
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{ConnectOptions, PgConnection, PgPool, Postgres, Transaction};

pub(crate) use self::slots::Lease;
use self::slots::{SlotBinding, Slots};
use crate::tenant_context::{self, Binding, TenantContextKey};
use crate::{DbError, TenantId};

/// What stands between the pools and PostgreSQL (`DB_POOLER`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Pooler {
    /// Nothing: each of the pool's connections is a server connection of its own. Tenant
    /// contexts are bound to the connection, learned when it opens: a transaction's proof costs
    /// no round trip.
    #[default]
    None,
    /// A pooler in transaction mode (PgBouncer `pool_mode = transaction`): consecutive
    /// transactions of one client connection may run on different server connections, shared
    /// with other clients. Tenant contexts are bound to each transaction, read after `BEGIN`: one
    /// more round trip per transaction.
    Transaction,
}

impl Pooler {
    /// Every value, in the order the configuration lists them.
    pub const ALL: [Pooler; 2] = [Pooler::None, Pooler::Transaction];

    /// The configuration's name of the value.
    pub fn as_str(self) -> &'static str {
        match self {
            Pooler::None => "none",
            Pooler::Transaction => "transaction",
        }
    }

    /// The value named `text`, if any.
    pub fn parse(text: &str) -> Option<Pooler> {
        Pooler::ALL.into_iter().find(|pooler| pooler.as_str() == text)
    }
}

/// The default of [`PoolConfig::statement_timeout`]: the longest request the server allows by
/// default (a batch import), since no statement is useful once its request is gone.
pub const DEFAULT_STATEMENT_TIMEOUT: Duration = Duration::from_secs(120);

/// How every transaction of the service begins: the isolation level and read-write mode stated,
/// so that no stored default (`default_transaction_isolation`, `default_transaction_read_only`)
/// changes them.
pub(crate) const BEGIN: &str = "BEGIN ISOLATION LEVEL READ COMMITTED READ WRITE";

/// Pool sizing (`DB_POOL_SIZE`, `DB_ACQUIRE_TIMEOUT_MS`, `DB_STATEMENT_CACHE`, `DB_POOLER`).
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
    /// What stands between the pool and PostgreSQL.
    pub pooler: Pooler,
    /// The `statement_timeout` every transaction pins for itself (zero: none), whatever the
    /// login's stored defaults say.
    pub statement_timeout: Duration,
}

impl Default for PoolConfig {
    fn default() -> PoolConfig {
        PoolConfig {
            max_connections: 10,
            acquire_timeout: Duration::from_millis(2000),
            statement_cache: true,
            pooler: Pooler::None,
            statement_timeout: DEFAULT_STATEMENT_TIMEOUT,
        }
    }
}

/// The pool of the tenant path: its login (`carevault_api`, or the single URL of a deployment)
/// must be able to switch to `carevault_app`, and it holds the key that proves a tenant context
/// to the database ([`crate::tenant_context`]). Only [`crate::TenantTx`] uses it.
#[derive(Debug, Clone)]
pub struct AppPool {
    pub(crate) connections: Connections,
    pub(crate) statements: Statements,
    pub(crate) key: Arc<TenantContextKey>,
    /// [`PoolConfig::statement_timeout`], as PostgreSQL reads it (`<n>ms`).
    pub(crate) statement_timeout: String,
}

/// The tenant path's connections, and so what its proofs are bound to.
#[derive(Debug, Clone)]
pub(crate) enum Connections {
    /// One single-connection pool per connection, each knowing its connection's binding
    /// ([`Binding::Connection`]).
    PerConnection(Arc<Slots>),
    /// One shared pool; each transaction reads its binding after `BEGIN`
    /// ([`Binding::Transaction`]): behind a transaction pooler, and for owner-run commands.
    PerTransaction(PgPool),
}

/// The pool of the platform path: its login (`carevault_ops`, or the single URL) must be able to
/// switch to `carevault_platform`. Only [`crate::PlatformTx`] uses it.
#[derive(Debug, Clone)]
pub struct PlatformPool {
    pub(crate) pool: PgPool,
    pub(crate) statements: Statements,
    /// As [`AppPool`]'s.
    pub(crate) statement_timeout: String,
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
    /// database holds ([`tenant_context::install`]), or every tenant transaction is refused
    /// ([`DbError::ContextRefused`]; [`AppPool::schema_state`] tells).
    pub fn connect_lazy(url: &str, config: PoolConfig, key: TenantContextKey) -> Result<AppPool, DbError> {
        AppPool::connect_lazy_with(url, config, Arc::new(key))
    }

    fn connect_lazy_with(url: &str, config: PoolConfig, key: Arc<TenantContextKey>) -> Result<AppPool, DbError> {
        Ok(AppPool {
            connections: app_connections(url, config)?,
            statements: Statements { named: config.statement_cache },
            key,
            statement_timeout: milliseconds(config.statement_timeout),
        })
    }

    /// Checks that a connection can be had and the database answers.
    pub async fn ping(&self) -> Result<(), DbError> {
        let (tx, _lease) = self.begin_plain().await?;
        tx.rollback().await?;
        Ok(())
    }

    /// The tenant path over the owner's pool, for owner-run commands (imports, index
    /// maintenance, the doctor): it adds a new random key to the database that stops verifying
    /// after [`tenant_context::OWNER_KEY_LIFETIME`], so that no command needs the service's key.
    /// Its login must be able to switch to `carevault_app`. Unnamed statements: a few
    /// maintenance transactions do not need a statement cache on a pool that is not the
    /// service's.
    pub async fn over_owner(pool: &PgPool) -> Result<AppPool, DbError> {
        let key = tenant_context::owner_key(pool).await?;
        Ok(AppPool {
            connections: Connections::PerTransaction(pool.clone()),
            statements: Statements { named: false },
            key: Arc::new(key),
            statement_timeout: milliseconds(Duration::ZERO),
        })
    }

    /// This pool on another URL (the least-privileged login of an owner-run command), with the
    /// key of `self`.
    pub fn with_url(&self, url: &str, config: PoolConfig) -> Result<AppPool, DbError> {
        AppPool::connect_lazy_with(url, config, self.key.clone())
    }

    /// Closes every connection.
    pub async fn close(&self) {
        match &self.connections {
            Connections::PerConnection(slots) => slots.close().await,
            Connections::PerTransaction(pool) => pool.close().await,
        }
    }

    /// A transaction with no role switched and no tenant context, and the slot it runs on: for
    /// [`crate::TenantTx`] behind a transaction pooler, and the checks that must work without a
    /// verified context.
    pub(crate) async fn begin_plain(&self) -> Result<(Transaction<'static, Postgres>, Option<Lease>), DbError> {
        match &self.connections {
            Connections::PerConnection(slots) => {
                let lease = slots.lease().await?;
                let tx = lease.pool().begin_with(BEGIN).await.map_err(|error| acquire_error(lease.pool(), error))?;
                Ok((tx, Some(lease)))
            }
            Connections::PerTransaction(pool) => {
                Ok((pool.begin_with(BEGIN).await.map_err(|error| acquire_error(pool, error))?, None))
            }
        }
    }

    /// What the readiness check needs to know of the schema, read as `carevault_app` (the login
    /// role itself may read nothing): the applied migration version, pgvector's version, and
    /// whether the database accepts this pool's proofs (a tenant transaction of the System
    /// tenant opens; the versions are read in it).
    pub async fn schema_state(&self) -> Result<SchemaState, DbError> {
        match crate::TenantTx::begin(self, TenantId::SYSTEM, crate::AuditContext::default()).await {
            Ok(mut tx) => {
                let versions = self.schema_versions(tx.conn()).await?;
                tx.rollback().await?;
                Ok(SchemaState::from_versions(versions, true))
            }
            // Refused, or no `carevault_enter_tenant` yet (42883: a schema before migration 18):
            // the versions, read after switching to the runtime role without a context.
            Err(DbError::ContextRefused(_)) => self.schema_state_unverified().await,
            Err(error) if error.sqlstate().as_deref() == Some("42883") => self.schema_state_unverified().await,
            Err(error) => Err(error),
        }
    }

    async fn schema_state_unverified(&self) -> Result<SchemaState, DbError> {
        let (mut tx, _lease) = self.begin_plain().await?;
        self.statements.query("SELECT set_config('role', 'carevault_app', true)").execute(&mut *tx).await?;
        let versions = self.schema_versions(&mut tx).await?;
        tx.rollback().await?;
        Ok(SchemaState::from_versions(versions, false))
    }

    /// The applied migration version and pgvector's version.
    async fn schema_versions(&self, conn: &mut PgConnection) -> Result<(Option<i64>, Option<String>), DbError> {
        Ok(self
            .statements
            .query_as(
                "SELECT (SELECT max(version) FROM _sqlx_migrations WHERE success), \
                    (SELECT extversion::text FROM pg_catalog.pg_extension WHERE extname = 'vector')",
            )
            .fetch_one(conn)
            .await?)
    }
}

/// The schema as the readiness check sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SchemaState {
    /// The highest applied migration (0 when none).
    pub migration_version: i64,
    /// pgvector's version, when the extension is installed.
    pub pgvector_version: Option<String>,
    /// Whether the database accepted a proof of this pool's key: `false` when the key is not
    /// installed (`carevault context-key add`), the clocks of the service and the database
    /// differ by more than [`tenant_context::PROOF_LIFETIME`], or the schema is older than
    /// migration 18.
    pub context_verified: bool,
}

impl SchemaState {
    fn from_versions(
        (migration_version, pgvector_version): (Option<i64>, Option<String>),
        context_verified: bool,
    ) -> Self {
        SchemaState { migration_version: migration_version.unwrap_or(0), pgvector_version, context_verified }
    }
}

impl PlatformPool {
    /// Connects lazily (the first transaction opens the first connection).
    pub fn connect_lazy(url: &str, config: PoolConfig) -> Result<PlatformPool, DbError> {
        Ok(PlatformPool {
            pool: platform_pool(url, config)?,
            statements: Statements { named: config.statement_cache },
            statement_timeout: milliseconds(config.statement_timeout),
        })
    }

    /// Checks that a connection can be had and the database answers.
    pub async fn ping(&self) -> Result<(), DbError> {
        ping(&self.pool).await
    }

    /// The platform path over the owner's pool, as [`AppPool::over_owner`].
    pub(crate) fn over(pool: &PgPool) -> PlatformPool {
        PlatformPool {
            pool: pool.clone(),
            statements: Statements { named: false },
            statement_timeout: milliseconds(Duration::ZERO),
        }
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

/// The leak guard of the platform pool, run on every connection that comes back to it: no tenant
/// context and no switched role may have survived. Every setting we make is transaction-local, so
/// this only fails if some code ran a session-level `SET`; the pool then closes the connection.
///
/// The tenant path needs no such check, and saves its round trip: its only door,
/// [`crate::TenantTx`], sends `BEGIN` and `carevault_enter_tenant` (which sets the role and the
/// tenant context, transaction-locally) in one simple-protocol message, before any other
/// statement, so whatever a previous user left at session level is overridden before anything
/// reads it (`isolation.rs::a_tenant_transaction_overrides_what_a_session_left_behind`).
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
/// long. The statement timeout is sent with them (it is the pool's, [`PoolConfig::statement_timeout`]),
/// and every transaction pins it again with other settings (`carevault_pin_transaction`);
/// `carevault doctor` FAILs on any default stored for a carevault role.
pub const PINNED_SETTINGS: [(&str, &str); 7] = [
    ("role", "none"),
    ("idle_in_transaction_session_timeout", crate::manifest::IDLE_IN_TRANSACTION_TIMEOUT),
    ("search_path", "public"),
    ("default_transaction_read_only", "off"),
    ("row_security", "on"),
    ("app.tenant_context", ""),
    ("app.connection_nonce", ""),
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

/// `duration` as a value of `statement_timeout`.
fn milliseconds(duration: Duration) -> String {
    format!("{}ms", duration.as_millis())
}

/// The connect options of `url`, with the pinned settings and without statement logging, and the
/// login's name.
fn connect_options(url: &str, config: PoolConfig) -> Result<(PgConnectOptions, String), DbError> {
    let mut options: PgConnectOptions = url.parse()?;
    if !config.statement_cache {
        options = options.statement_cache_capacity(0);
    }
    let login = options.get_username().to_string();
    // The statement timeout too: a stored `statement_timeout = 1` would otherwise cancel the very
    // statement that pins the transaction's own (a timer armed when a statement starts is not
    // re-armed by a change during it).
    let options = options
        .options(PINNED_SETTINGS)
        .options([("statement_timeout", milliseconds(config.statement_timeout))])
        // Statements can carry PHI in their parameters' context; never log them.
        .disable_statement_logging();
    Ok((options, login))
}

/// Reads back the pinned settings once per connection: warns rather than refuses, because
/// PgBouncer cannot forward `options` at all, and refusing would rule it out.
async fn check_pinned(conn: &mut PgConnection) -> Result<(), sqlx::Error> {
    let differing = settings_not_pinned(conn).await.map_err(into_sqlx)?;
    if !differing.is_empty() {
        tracing::warn!(
            settings = %differing.join(", "),
            "the settings sent at connect time did not apply (a pooler dropping startup parameters?): \
             role defaults of the login now steer these connections"
        );
    }
    Ok(())
}

fn platform_pool(url: &str, config: PoolConfig) -> Result<PgPool, DbError> {
    let (options, login) = connect_options(url, config)?;
    let pool = PgPoolOptions::new()
        .max_connections(config.max_connections)
        .acquire_timeout(config.acquire_timeout)
        .after_connect(|conn, _meta| Box::pin(check_pinned(conn)))
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

/// The tenant path's connections for `config.pooler`.
fn app_connections(url: &str, config: PoolConfig) -> Result<Connections, DbError> {
    let (options, _login) = connect_options(url, config)?;
    match config.pooler {
        Pooler::Transaction => Ok(Connections::PerTransaction(
            PgPoolOptions::new()
                .max_connections(config.max_connections)
                .acquire_timeout(config.acquire_timeout)
                .after_connect(|conn, _meta| Box::pin(check_pinned(conn)))
                .connect_lazy_with(options),
        )),
        Pooler::None => {
            let slots = Slots::new(config.max_connections, config.acquire_timeout, |binding: SlotBinding| {
                Ok(PgPoolOptions::new()
                    .max_connections(1)
                    .acquire_timeout(config.acquire_timeout)
                    // No liveness ping before each use: a connection the server closed fails the
                    // transaction's first message, and `TenantTx::begin` tries once more.
                    .test_before_acquire(false)
                    .after_connect(move |conn, _meta| {
                        let binding = binding.clone();
                        Box::pin(async move {
                            check_pinned(conn).await?;
                            let bound = Binding::establish_connection(conn).await.map_err(into_sqlx)?;
                            *binding.lock().unwrap_or_else(PoisonError::into_inner) = Some(bound);
                            Ok(())
                        })
                    })
                    .connect_lazy_with(options.clone()))
            })?;
            Ok(Connections::PerConnection(Arc::new(slots)))
        }
    }
}

fn into_sqlx(error: DbError) -> sqlx::Error {
    match error {
        DbError::Database(e) | DbError::Unavailable(e) => e,
        other => sqlx::Error::Protocol(other.to_string()),
    }
}
