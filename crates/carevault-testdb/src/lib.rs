//! Test databases for carevault, on a real PostgreSQL + pgvector (docs/ARCHITECTURE.md, "Local PostgreSQL").
//!
//! cargo-nextest runs every test in its own process, so the expensive parts are shared between
//! processes through the file system, not through memory:
//!
//! - **One cluster per cache directory** (shared by every checkout): a disposable cluster (no
//!   fsync) at `<cache_dir>/test-cluster`, started by the first test that needs it and reused by every later
//!   one ([`carevault_pg::Cluster::start_or_reuse`] is safe across processes). Tests never stop it;
//!   it costs nothing while idle and the next run starts instantly.
//! - **One migrated template per migration set**: `carevault_tpl_<hash>`, where the hash covers every
//!   migration's version and checksum and the bootstrap SQL, so editing a migration builds a new
//!   template. It is built once, under a file lock, by running [`carevault_db::migrate::up`] as the
//!   superuser (which also creates the cluster-wide roles).
//! - **Fixtures**: [`TestDb::from_fixture`] builds a larger starting point once per migration set
//!   (a template database of its own, `carevault_tpl_<hash>_<fixture>`) and clones it per test, as
//!   the audit chain's tampering catalogue does with its 10,000 rows.
//! - **One database per test**, cloned from the template (`CREATE DATABASE ... TEMPLATE`), named
//!   `cvt_<unix seconds>_<random>`. It is dropped when the [`TestDb`] is dropped after a passing
//!   test, and kept after a failing one so it can be inspected; every test process sweeps kept ones
//!   older than six hours.
//!
//! ```no_run
//! # async fn example() {
//! use carevault_testdb::TestDb;
//!
//! let db = TestDb::new().await;
//! // Fixtures as the owner, assertions through the runtime role.
//! let owner = db.owner_pool().await;
//! let app = db.app_pool(4);
//! # let _ = (owner, app);
//! # }
//! ```
//!
//! Isolation must only ever be checked through [`TestDb::app_url`] / [`TestDb::app_pool`] (or
//! [`TestDb::platform_pool`]): the superuser of [`TestDb::owner_url`] bypasses row-level security.

mod scratch;

pub use scratch::{ScratchDir, is_running, stop_postmaster};

use std::fs::File;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use carevault_db::tenant_context::{self, Binding, TenantContextKey};
use carevault_db::{AppPool, PlatformPool, PoolConfig, TenantId};
use carevault_pg::{Cluster, ClusterOptions, Paths, PgBinaries, SUPERUSER};
use sha2::{Digest, Sha256};
use sqlx::postgres::PgPoolOptions;
use sqlx::{AssertSqlSafe, Connection, PgConnection, PgPool};
use tokio::sync::OnceCell;

/// The login role of the tenant path (member of `carevault_app`, docs/ARCHITECTURE.md "Roles").
pub const APP_LOGIN: &str = "carevault_api";
/// The login role of the platform path (member of `carevault_platform`, docs/ARCHITECTURE.md "Roles").
pub const OPS_LOGIN: &str = "carevault_ops";

/// The key of the tenant context every test database holds (`kid` `test`). Public by design: it
/// protects nothing but test data.
pub const CONTEXT_KEY: &str = "test:000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";

/// [`CONTEXT_KEY`], parsed.
pub fn context_key() -> TenantContextKey {
    TenantContextKey::parse(CONTEXT_KEY).expect("the test key is well formed")
}

/// Switches the session `conn` (the tenant path's login, outside a transaction) to
/// `carevault_app` and proves `tenant` for the rest of the session, with a proof bound to this
/// connection ([`Binding::Connection`]) as a tool holding the key would. Returns the proof.
pub async fn prove_tenant(conn: &mut PgConnection, tenant: TenantId) -> String {
    let binding = Binding::establish_connection(conn).await.expect("binding the connection");
    let proof = context_key().prove(tenant, None, &binding, tenant_context::expiry_from_now());
    sqlx::query("SELECT set_config('role', 'carevault_app', false), set_config('app.tenant_context', $1, false)")
        .bind(&proof)
        .execute(&mut *conn)
        .await
        .expect("setting the tenant context");
    proof
}

/// Prefix of template names; the rest is the migration hash.
const TEMPLATE_PREFIX: &str = "carevault_tpl_";
/// Prefix of per-test database names; the rest is `<unix seconds>_<8 hex>`.
const TEST_DB_PREFIX: &str = "cvt_";
/// Test databases older than this are left over from crashed or failed runs and are dropped.
const STALE_AFTER: Duration = Duration::from_secs(6 * 60 * 60);

/// What every test in this process shares. Only runtime-independent state lives here: each
/// `#[tokio::test]` has its own runtime, and a pool created on one runtime dies with it.
struct Shared {
    /// Held for the life of the process (statics are never dropped), so the cluster counts as
    /// in use while tests run and a `Cluster::stop` elsewhere leaves it up.
    cluster: Cluster,
    /// The migrated template's name.
    template: String,
    /// `<cache_dir>/test-cluster.template.lock`: exclusive while a template is built or stale ones
    /// are dropped, shared while a test database is cloned.
    template_lock: PathBuf,
}

static SHARED: OnceCell<Shared> = OnceCell::const_new();

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A fresh database of its own for one test, on the shared test cluster.
///
/// Dropping it drops the database if the test passed; after a panic the database is kept (its
/// name is printed) for inspection, and swept by a later test once it is six hours old.
#[derive(Debug)]
pub struct TestDb {
    name: String,
}

impl TestDb {
    /// A fresh database cloned from the migrated template: the schema at head, the System tenant,
    /// nothing else.
    pub async fn new() -> TestDb {
        let shared = shared().await;
        let name = new_db_name();
        clone_template(shared, &name).await;
        TestDb { name }
    }

    /// A fresh database cloned from the fixture `fixture` (letters, digits and `_`; put a version
    /// in it, since the fixture is rebuilt only when the migrations change): the migrated template
    /// after `build` ran on it once, as [`TestDb::new`] would give it, cached in the cluster as
    /// `carevault_tpl_<hash>_<fixture>`. `build` must close every connection it opens.
    pub async fn from_fixture(fixture: &str, build: impl AsyncFnOnce(&TestDb)) -> TestDb {
        assert!(fixture.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'), "fixture name {fixture:?}");
        let shared = shared().await;
        let template = format!("{}_{fixture}", shared.template);
        {
            let _lock = lock(&shared.template_lock, LockMode::Exclusive).await;
            let mut admin = admin_connection(shared).await;
            if !database_exists(&mut admin, &template).await {
                let building = format!("{template}_building");
                execute(&mut admin, format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", quote_ident(&building))).await;
                clone_into(&mut admin, &shared.template, &building).await;
                let db = TestDb { name: building.clone() };
                build(&db).await;
                // Renamed below into the fixture, which a TestDb's drop must not remove.
                std::mem::forget(db);
                // Whatever `build` left connected goes: renaming needs no session.
                execute(
                    &mut admin,
                    format!(
                        "SELECT pg_terminate_backend(pid) FROM pg_catalog.pg_stat_activity WHERE datname = '{building}'"
                    ),
                )
                .await;
                execute(
                    &mut admin,
                    format!("ALTER DATABASE {} RENAME TO {}", quote_ident(&building), quote_ident(&template)),
                )
                .await;
                execute(&mut admin, format!("ALTER DATABASE {} WITH ALLOW_CONNECTIONS false", quote_ident(&template)))
                    .await;
            }
            close(admin).await;
        }
        let name = new_db_name();
        let _lock = lock(&shared.template_lock, LockMode::Shared).await;
        let mut admin = admin_connection(shared).await;
        clone_into(&mut admin, &template, &name).await;
        close(admin).await;
        TestDb { name }
    }

    /// A fresh empty database with nothing migrated, for migration tests. The cluster-wide roles
    /// exist already (building the template ran the bootstrap); the `vector` extension does not
    /// (it is per database, and created by `migrate up`).
    pub async fn empty() -> TestDb {
        let shared = shared().await;
        let name = new_db_name();
        let mut admin = admin_connection(shared).await;
        sqlx::query(AssertSqlSafe(format!("CREATE DATABASE {}", quote_ident(&name))))
            .execute(&mut admin)
            .await
            .unwrap_or_else(|e| panic!("creating test database {name}: {e}"));
        close(admin).await;
        TestDb { name }
    }

    /// The database's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The superuser's URL for this database.
    ///
    /// **Only for fixtures and migrations.** A superuser bypasses row-level security (FORCE or
    /// not), so a query through this URL proves nothing about tenant isolation: never use it to
    /// check what a tenant can or cannot see (docs/ARCHITECTURE.md, "Roles").
    pub fn owner_url(&self) -> String {
        cluster().url(SUPERUSER, &self.name)
    }

    /// The URL of the tenant path's login role, `carevault_api` (no privileges of its own; it can
    /// only switch to `carevault_app` inside a transaction).
    pub fn app_url(&self) -> String {
        cluster().url(APP_LOGIN, &self.name)
    }

    /// The URL of the platform path's login role, `carevault_ops` (no privileges of its own; it
    /// can only switch to `carevault_platform` inside a transaction).
    pub fn ops_url(&self) -> String {
        cluster().url(OPS_LOGIN, &self.name)
    }

    /// A small pool on [`TestDb::owner_url`], connected. **Only for fixtures and migrations**:
    /// it bypasses row-level security.
    pub async fn owner_pool(&self) -> PgPool {
        PgPoolOptions::new()
            .max_connections(5)
            .connect(&self.owner_url())
            .await
            .unwrap_or_else(|e| panic!("connecting to test database {} as the owner: {e}", self.name))
    }

    /// The tenant path's pool through `carevault_api`, as the server builds it (slots, the test key
    /// included), with `max_connections` connections and otherwise [`PoolConfig::default`].
    pub fn app_pool(&self, max_connections: u32) -> AppPool {
        let config = PoolConfig { max_connections, ..PoolConfig::default() };
        AppPool::connect_lazy(&self.app_url(), config, context_key()).expect("building the app pool of a test database")
    }

    /// The platform path's pool through `carevault_ops`, with [`PoolConfig::default`].
    pub fn platform_pool(&self) -> PlatformPool {
        PlatformPool::connect_lazy(&self.ops_url(), PoolConfig::default())
            .expect("building the platform pool of a test database")
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("carevault-testdb: keeping database {} of the failed test for inspection", self.name);
            return;
        }
        let Some(shared) = SHARED.get() else { return };
        let url = shared.cluster.url(SUPERUSER, "postgres");
        let name = self.name.clone();
        // Drop cannot await, and may run inside a runtime (where blocking on it would panic):
        // run the DROP on a thread of its own, with a runtime of its own, and wait for it.
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            runtime.block_on(async {
                let mut admin = PgConnection::connect(&url).await?;
                sqlx::query(AssertSqlSafe(format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", quote_ident(&name))))
                    .execute(&mut admin)
                    .await?;
                admin.close().await?;
                Ok::<(), BoxError>(())
            })?;
            Ok::<(), BoxError>(())
        })
        .join();
        // Never panic in Drop (a panic while unwinding aborts): a database left behind is swept
        // later.
        match dropped {
            Ok(Ok(())) => {}
            Ok(Err(e)) => eprintln!("carevault-testdb: could not drop database {}: {e}", self.name),
            Err(_) => {
                eprintln!("carevault-testdb: could not drop database {}: the dropping thread panicked", self.name)
            }
        }
    }
}

/// The shared cluster of this process; only called on a [`TestDb`], which exists only after
/// [`shared`] succeeded.
fn cluster() -> &'static Cluster {
    &SHARED.get().expect("a TestDb exists only once the shared test cluster is up").cluster
}

async fn shared() -> &'static Shared {
    SHARED.get_or_init(init).await
}

async fn init() -> Shared {
    // Finding or installing the binaries and starting the cluster block (pip, initdb, pg_ctl).
    let (paths, cluster) = tokio::task::spawn_blocking(|| {
        let paths = Paths::from_env().expect("carevault-testdb: finding the carevault directories");
        let binaries = PgBinaries::locate(&paths).expect("carevault-testdb: finding PostgreSQL binaries");
        let options = ClusterOptions::disposable(paths.cache_dir.join("test-cluster"));
        let cluster =
            Cluster::start_or_reuse(&binaries, &options).expect("carevault-testdb: starting the test cluster");
        (paths, cluster)
    })
    .await
    .expect("carevault-testdb: the cluster start-up task panicked");
    let shared = Shared {
        cluster,
        template: template_name(),
        template_lock: paths.cache_dir.join("test-cluster.template.lock"),
    };
    ensure_template(&shared).await;
    let mut admin = admin_connection(&shared).await;
    drop_stale(&mut admin, Stale::OldTestDatabases).await;
    close(admin).await;
    shared
}

/// `carevault_tpl_<first 12 hex of sha256>` over every migration (up and down) and the bootstrap:
/// any change to the schema's source gives a new template.
fn template_name() -> String {
    let mut hasher = Sha256::new();
    for migration in carevault_db::migrate::MIGRATOR.iter() {
        hasher.update(migration.version.to_le_bytes());
        hasher.update(&migration.checksum[..]);
    }
    hasher.update(carevault_db::migrate::BOOTSTRAP_SQL.as_bytes());
    hasher.update(CONTEXT_KEY.as_bytes());
    let digest = hasher.finalize();
    let hex: String = digest.iter().map(|byte| format!("{byte:02x}")).collect();
    format!("{TEMPLATE_PREFIX}{}", &hex[..12])
}

/// Builds the template unless it exists. The common case (it exists) only takes the lock shared.
async fn ensure_template(shared: &Shared) {
    {
        let _lock = lock(&shared.template_lock, LockMode::Shared).await;
        let mut admin = admin_connection(shared).await;
        let exists = database_exists(&mut admin, &shared.template).await;
        close(admin).await;
        if exists {
            return;
        }
    }
    let _lock = lock(&shared.template_lock, LockMode::Exclusive).await;
    let mut admin = admin_connection(shared).await;
    // Another process may have built it while we waited for the exclusive lock.
    if !database_exists(&mut admin, &shared.template).await {
        build_template(shared, &mut admin).await;
        drop_stale(&mut admin, Stale::OtherTemplates { current: &shared.template }).await;
    }
    close(admin).await;
}

async fn build_template(shared: &Shared, admin: &mut PgConnection) {
    let template = &shared.template;
    let building = format!("{template}_building");
    // A build that crashed half-way leaves `_building` behind; start over.
    execute(admin, format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", quote_ident(&building))).await;
    execute(admin, format!("CREATE DATABASE {}", quote_ident(&building))).await;

    let pool = PgPoolOptions::new()
        .max_connections(2)
        .connect(&shared.cluster.url(SUPERUSER, &building))
        .await
        .unwrap_or_else(|e| panic!("connecting to {building}: {e}"));
    carevault_db::migrate::up(&pool)
        .await
        .unwrap_or_else(|e| panic!("carevault-testdb: migrating the template database {building}: {e}"));
    install_context_key(&pool).await;
    // Renaming, and later cloning, need the database to have no connections.
    pool.close().await;

    execute(admin, format!("ALTER DATABASE {} RENAME TO {}", quote_ident(&building), quote_ident(template))).await;
    // Nobody may connect to the template: CREATE DATABASE ... TEMPLATE fails while it has sessions.
    execute(admin, format!("ALTER DATABASE {} WITH ALLOW_CONNECTIONS false", quote_ident(template))).await;
}

/// Adds [`CONTEXT_KEY`] to the database of the owner's `pool` (migrated to head).
async fn install_context_key(pool: &PgPool) {
    let mut conn = pool.acquire().await.expect("a connection to install the test key");
    tenant_context::install(&mut conn, &context_key(), None).await.expect("installing the test key");
}

/// What [`drop_stale`] drops.
enum Stale<'a> {
    /// Templates other than `current` (and half-built ones). Only under the exclusive lock, so
    /// nobody is cloning one meanwhile.
    OtherTemplates { current: &'a str },
    /// Test databases older than [`STALE_AFTER`], left by failed or killed tests. Needs no lock:
    /// nobody uses them any more.
    OldTestDatabases,
}

async fn drop_stale(admin: &mut PgConnection, what: Stale<'_>) {
    let names: Vec<String> = sqlx::query_scalar(
        "SELECT datname::text FROM pg_catalog.pg_database WHERE datname LIKE 'carevault\\_tpl\\_%' OR datname LIKE 'cvt\\_%'",
    )
    .fetch_all(&mut *admin)
    .await
    .expect("listing test databases");
    let now = unix_seconds();
    for name in names {
        let stale = match what {
            Stale::OtherTemplates { current } => name.starts_with(TEMPLATE_PREFIX) && name != current,
            Stale::OldTestDatabases => {
                created_at(&name).is_some_and(|created| now.saturating_sub(created) > STALE_AFTER.as_secs())
            }
        };
        if stale {
            let drop = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", quote_ident(&name));
            // Best effort: a database that cannot be dropped now is tried again next time.
            if let Err(e) = sqlx::query(AssertSqlSafe(drop)).execute(&mut *admin).await {
                eprintln!("carevault-testdb: could not drop stale database {name}: {e}");
            }
        }
    }
}

/// Clones the template into `name`. Runs under the shared lock so that no process drops the
/// template meanwhile (a concurrent run of another checkout, with other migrations, drops ours as
/// stale); if it is gone anyway, it is rebuilt and the clone retried.
async fn clone_template(shared: &Shared, name: &str) {
    for _ in 0..3 {
        {
            let _lock = lock(&shared.template_lock, LockMode::Shared).await;
            let mut admin = admin_connection(shared).await;
            if database_exists(&mut admin, &shared.template).await {
                clone_into(&mut admin, &shared.template, name).await;
                close(admin).await;
                return;
            }
            close(admin).await;
        }
        ensure_template(shared).await;
    }
    panic!("carevault-testdb: template {} keeps disappearing (another test run is dropping it?)", shared.template);
}

/// Creates `name` from `template`.
async fn clone_into(admin: &mut PgConnection, template: &str, name: &str) {
    execute(admin, format!("CREATE DATABASE {} TEMPLATE {}", quote_ident(name), quote_ident(template))).await;
    // A database's privileges are not copied from its template: revoke TEMPORARY again, as
    // migration 18 did on the template.
    execute(admin, format!("REVOKE TEMPORARY ON DATABASE {} FROM PUBLIC", quote_ident(name))).await;
}

/// `cvt_<unix seconds>_<8 random hex>`: the time lets a later run sweep what a crashed one left.
fn new_db_name() -> String {
    let random = uuid::Uuid::new_v4().simple().to_string();
    format!("{TEST_DB_PREFIX}{}_{}", unix_seconds(), &random[..8])
}

/// The creation time encoded in a test database's name.
fn created_at(name: &str) -> Option<u64> {
    name.strip_prefix(TEST_DB_PREFIX)?.split('_').next()?.parse().ok()
}

fn unix_seconds() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

/// Quotes an SQL identifier. Our names are generated (letters, digits, `_`), but quoting keeps
/// that an assumption nobody has to check.
fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// A superuser connection to the `postgres` database, for CREATE / DROP / ALTER DATABASE.
async fn admin_connection(shared: &Shared) -> PgConnection {
    PgConnection::connect(&shared.cluster.url(SUPERUSER, "postgres"))
        .await
        .expect("carevault-testdb: connecting to the test cluster as the superuser")
}

async fn close(connection: PgConnection) {
    // Closing politely only saves the server a log line; failing to is harmless.
    let _ = connection.close().await;
}

async fn database_exists(admin: &mut PgConnection, name: &str) -> bool {
    sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_database WHERE datname = $1)")
        .bind(name)
        .fetch_one(admin)
        .await
        .expect("looking up a database in pg_database")
}

async fn execute(admin: &mut PgConnection, sql: String) {
    if let Err(e) = sqlx::query(AssertSqlSafe(sql.clone())).execute(admin).await {
        panic!("carevault-testdb: `{sql}` failed: {e}");
    }
}

#[derive(Clone, Copy)]
enum LockMode {
    Shared,
    Exclusive,
}

/// Takes a file lock (flock; released when the returned file is dropped). Waiting for it blocks,
/// so it runs on the blocking pool.
async fn lock(path: &Path, mode: LockMode) -> File {
    let path = path.to_path_buf();
    tokio::task::spawn_blocking(move || {
        let file = File::options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .unwrap_or_else(|e| panic!("opening {}: {e}", path.display()));
        let locked = match mode {
            LockMode::Shared => file.lock_shared(),
            LockMode::Exclusive => file.lock(),
        };
        locked.unwrap_or_else(|e| panic!("locking {}: {e}", path.display()));
        file
    })
    .await
    .expect("the locking task panicked")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_db_names_encode_their_creation_time() {
        let name = new_db_name();
        assert!(name.len() < 64, "{name} is longer than PostgreSQL's 63-byte identifiers");
        let created = created_at(&name).expect("a generated name parses");
        assert!(unix_seconds().abs_diff(created) < 5);
        assert_eq!(created_at("cvt_12_abcdef01"), Some(12));
        assert_eq!(created_at("carevault_tpl_0123456789ab"), None);
    }

    #[test]
    fn template_names_are_stable_and_short() {
        let name = template_name();
        assert_eq!(name, template_name());
        assert_eq!(name.len(), TEMPLATE_PREFIX.len() + 12);
        assert!(format!("{name}_building").len() < 64);
    }

    #[test]
    fn identifiers_are_quoted() {
        assert_eq!(quote_ident("cvt_1_ab"), "\"cvt_1_ab\"");
        assert_eq!(quote_ident("a\"b"), "\"a\"\"b\"");
    }
}
