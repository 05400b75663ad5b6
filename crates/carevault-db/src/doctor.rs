//! Health checks of a carevault database, for `carevault doctor` (DESIGN §5, §7.2).
//!
//! [`run`] reads the catalog once per check ("facts") and judges each check with a pure function
//! over those facts (`evaluate_*`), so that a condition this machine cannot produce (another
//! server version, a connection without TLS) is still tested, on crafted facts. Every check that
//! is not [`Status::Pass`] says what to run to fix it.
//!
//! The checks read catalogs only, plus one row of `tenants` (the System tenant): any login that can
//! read the catalog works, but the owner (`DATABASE_URL`) sees the most. Under FORCE ROW LEVEL
//! SECURITY a non-superuser owner sees no tenant row, so the System tenant is read as
//! `carevault_platform` when the login may switch to it, and reported as unreadable otherwise.

use std::collections::BTreeSet;

use sqlx::{PgPool, Row};

use crate::DbError;
use crate::migrate;

/// The runtime role of the tenant path.
pub const APP_ROLE: &str = "carevault_app";
/// The runtime role of the platform path.
pub const PLATFORM_ROLE: &str = "carevault_platform";
/// The login role of the tenant path.
pub const API_LOGIN: &str = "carevault_api";
/// The login role of the platform path.
pub const OPS_LOGIN: &str = "carevault_ops";
/// The seeded System tenant.
pub const SYSTEM_TENANT_ID: &str = "00000000-0000-0000-0000-000000000000";

/// The oldest PostgreSQL major version supported (`server_version_num` / 10000).
pub const MIN_SERVER_MAJOR: i32 = 16;
/// The oldest pgvector supported (major, minor): iterative index scans (DESIGN §5.5).
pub const MIN_PGVECTOR: (u32, u32) = (0, 8);

/// SECURITY DEFINER functions of ours that the runtime roles may execute: none. A SECURITY
/// DEFINER function runs with its owner's rights, so one the runtime role can call is a way
/// around row-level security.
pub const OUR_SECURITY_DEFINER_FUNCTIONS: &[&str] = &[];

/// The tenant setting as every policy reads it (DESIGN §5.2).
const TENANT_SETTING: &str = "(SELECT nullif(current_setting('app.current_tenant_id', true), '')::uuid)";
/// What a policy expression of `carevault_app` must contain.
const TENANT_SETTING_MARKER: &str = "current_setting('app.current_tenant_id'";

/// The outcome of one check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Status {
    /// As designed.
    Pass,
    /// Works, but weaker than it should be.
    Warn,
    /// Broken: isolation, immutability or the service itself is at risk.
    Fail,
}

impl Status {
    /// `PASS`, `WARN` or `FAIL`.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Pass => "PASS",
            Status::Warn => "WARN",
            Status::Fail => "FAIL",
        }
    }
}

/// One line of the report.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Check {
    /// A stable name (`row_level_security`, `privileges`, ...).
    pub name: &'static str,
    /// The outcome.
    pub status: Status,
    /// What was found, in one sentence.
    pub message: String,
    /// For anything not PASS: what to run to fix it (may span several lines of SQL).
    pub fix: Option<String>,
}

impl Check {
    fn pass(name: &'static str, message: impl Into<String>) -> Check {
        Check { name, status: Status::Pass, message: message.into(), fix: None }
    }

    fn warn(name: &'static str, message: impl Into<String>, fix: impl Into<String>) -> Check {
        Check { name, status: Status::Warn, message: message.into(), fix: Some(fix.into()) }
    }

    fn fail(name: &'static str, message: impl Into<String>, fix: impl Into<String>) -> Check {
        Check { name, status: Status::Fail, message: message.into(), fix: Some(fix.into()) }
    }
}

/// The names of the checks, in the order [`run`] reports them.
pub const CHECK_NAMES: [&str; 17] = [
    "server_version",
    "pgvector_version",
    "migrations",
    "system_tenant",
    "row_level_security",
    "policies",
    "tenant_guard",
    "audit_triggers",
    "audit_truncate_guard",
    "vector_index",
    "runtime_roles",
    "privileges",
    "login_roles",
    "views",
    "security_definer_functions",
    "tls",
    "role_settings",
];

pub use crate::Environment;

/// What the caller knows that the database does not: where the server runs and which logins its
/// two pools use.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DoctorContext {
    /// `ENVIRONMENT`.
    pub environment: Environment,
    /// The login role of the tenant pool (the user of `APP_DATABASE_URL`; `carevault_api` on the
    /// embedded default). `None`: the pool uses `DATABASE_URL`, i.e. this connection's login.
    pub app_login: Option<String>,
    /// The login role of the platform pool (`PLATFORM_DATABASE_URL`), likewise.
    pub ops_login: Option<String>,
}

/// Runs every check, in the order of [`CHECK_NAMES`].
///
/// Fails only when the server cannot be queried at all; a check whose facts cannot be read is
/// reported as FAIL with the error (an unproven guarantee is not a guarantee).
pub async fn run(pool: &PgPool, ctx: &DoctorContext) -> Result<Vec<Check>, DbError> {
    let server = server_facts(pool).await?;
    let current_user: String = sqlx::query_scalar("SELECT current_user::text").fetch_one(pool).await?;
    let mut checks = vec![evaluate_server_version(&server)];
    checks.push(checked("pgvector_version", pgvector_facts(pool).await, |f| evaluate_pgvector(&f)));
    checks.push(checked("migrations", migration_facts(pool).await, |f| evaluate_migrations(&f)));
    checks.push(checked("system_tenant", system_tenant_facts(pool).await, |f| evaluate_system_tenant(&f)));
    match tenant_table_facts(pool).await {
        Ok(tables) => {
            checks.push(evaluate_row_level_security(&tables));
            checks.push(evaluate_policies(&tables));
            checks.push(evaluate_tenant_guard(&tables));
        }
        Err(e) => {
            for name in ["row_level_security", "policies", "tenant_guard"] {
                checks.push(unreadable(name, &e));
            }
        }
    }
    match trigger_facts(pool).await {
        Ok(triggers) => {
            checks.push(evaluate_audit_triggers(&triggers));
            checks.push(evaluate_truncate_guard(&triggers));
        }
        Err(e) => {
            checks.push(unreadable("audit_triggers", &e));
            checks.push(unreadable("audit_truncate_guard", &e));
        }
    }
    checks.push(checked("vector_index", index_facts(pool).await, |f| evaluate_vector_index(&f)));
    checks.push(checked("runtime_roles", role_facts(pool).await, |f| evaluate_runtime_roles(&f, &current_user)));
    checks.push(checked("privileges", privilege_facts(pool, server.version_num).await, |f| evaluate_privileges(&f)));
    checks.push(checked("login_roles", login_facts(pool, ctx, &current_user).await, |f| evaluate_login_roles(&f)));
    checks.push(checked("views", view_facts(pool).await, |f| evaluate_views(&f)));
    checks.push(checked("security_definer_functions", security_definer_facts(pool).await, |f| {
        evaluate_security_definer(&f)
    }));
    checks.push(checked("tls", tls_facts(pool).await, |f| evaluate_tls(&f, ctx.environment)));
    checks.push(checked("role_settings", role_setting_facts(pool).await, |f| evaluate_role_settings(&f)));
    Ok(checks)
}

/// PASS with `pass` when nothing is wrong, else FAIL listing the problems and their fixes.
fn verdict(name: &'static str, problems: Vec<String>, fixes: Vec<String>, pass: impl FnOnce() -> String) -> Check {
    if problems.is_empty() {
        Check::pass(name, pass())
    } else {
        Check::fail(name, problems.join("; "), fixes.join("\n"))
    }
}

fn checked<T>(name: &'static str, facts: Result<T, DbError>, evaluate: impl FnOnce(T) -> Check) -> Check {
    match facts {
        Ok(facts) => evaluate(facts),
        Err(e) => unreadable(name, &e),
    }
}

fn unreadable(name: &'static str, error: &DbError) -> Check {
    Check::fail(
        name,
        format!("could not read what this check needs: {error}"),
        "run `carevault doctor` with DATABASE_URL set to the database owner (or a superuser)",
    )
}

// ---------------------------------------------------------------------------------------------
// Server and pgvector versions

/// The server's version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerFacts {
    /// `server_version_num`, e.g. `180001`.
    pub version_num: i32,
    /// `server_version`, e.g. `18.1`.
    pub version: String,
}

async fn server_facts(pool: &PgPool) -> Result<ServerFacts, DbError> {
    let (version_num, version): (i32, String) =
        sqlx::query_as("SELECT current_setting('server_version_num')::int, current_setting('server_version')")
            .fetch_one(pool)
            .await?;
    Ok(ServerFacts { version_num, version })
}

/// PostgreSQL 16 or newer (role membership options `INHERIT FALSE, SET TRUE` need 16).
pub fn evaluate_server_version(facts: &ServerFacts) -> Check {
    let major = facts.version_num / 10000;
    if major >= MIN_SERVER_MAJOR {
        Check::pass("server_version", format!("PostgreSQL {}", facts.version))
    } else {
        Check::fail(
            "server_version",
            format!("PostgreSQL {} is not supported: carevault needs {MIN_SERVER_MAJOR} or newer", facts.version),
            format!("upgrade the server to PostgreSQL {MIN_SERVER_MAJOR} or newer (pg_upgrade or a dump and restore)"),
        )
    }
}

/// The `vector` extension in this database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PgvectorFacts {
    /// `pg_extension.extversion`, when installed.
    pub installed: Option<String>,
    /// The server's default version of the extension, when it has one.
    pub available: Option<String>,
}

async fn pgvector_facts(pool: &PgPool) -> Result<PgvectorFacts, DbError> {
    let (installed, available): (Option<String>, Option<String>) = sqlx::query_as(
        "SELECT (SELECT extversion FROM pg_catalog.pg_extension WHERE extname = 'vector'), \
                (SELECT default_version FROM pg_catalog.pg_available_extensions WHERE name = 'vector')",
    )
    .fetch_one(pool)
    .await?;
    Ok(PgvectorFacts { installed, available })
}

fn parse_major_minor(version: &str) -> Option<(u32, u32)> {
    let mut parts = version.split('.');
    let major = parts.next()?.trim().parse().ok()?;
    let minor = parts.next().map_or(Some(0), |m| m.trim().parse().ok())?;
    Some((major, minor))
}

/// pgvector 0.8 or newer installed in this database.
pub fn evaluate_pgvector(facts: &PgvectorFacts) -> Check {
    const NAME: &str = "pgvector_version";
    let supported = |v: &str| parse_major_minor(v).is_some_and(|v| v >= MIN_PGVECTOR);
    let minimum = format!("{}.{}", MIN_PGVECTOR.0, MIN_PGVECTOR.1);
    match (&facts.installed, &facts.available) {
        (Some(installed), _) if supported(installed) => Check::pass(NAME, format!("pgvector {installed}")),
        (Some(installed), Some(available)) if supported(available) => Check::fail(
            NAME,
            format!("pgvector {installed} is installed; carevault needs {minimum} or newer ({available} is available)"),
            "as a superuser, in this database: ALTER EXTENSION vector UPDATE;",
        ),
        (Some(installed), _) => Check::fail(
            NAME,
            format!("pgvector {installed} is installed; carevault needs {minimum} or newer"),
            format!(
                "install pgvector {minimum} or newer on the server, then as a superuser: ALTER EXTENSION vector UPDATE;"
            ),
        ),
        (None, Some(available)) if supported(available) => Check::fail(
            NAME,
            format!("the vector extension is not installed in this database (pgvector {available} is available)"),
            "carevault migrate up (as a superuser), or as a superuser: CREATE EXTENSION vector;",
        ),
        (None, _) => Check::fail(
            NAME,
            format!("pgvector {minimum} or newer is not available on this server"),
            format!(
                "install pgvector {minimum} or newer on the server (a pgvector-capable PostgreSQL image), then \
                 carevault migrate up"
            ),
        ),
    }
}

// ---------------------------------------------------------------------------------------------
// Migrations

/// The migrations applied, against this binary's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MigrationFacts {
    /// This binary's newest version.
    pub head: i64,
    /// The highest version applied successfully.
    pub current: i64,
    /// Versions of this binary not applied.
    pub pending: Vec<i64>,
    /// A migration recorded as failed part-way.
    pub dirty: Option<i64>,
    /// Applied migrations whose file changed since.
    pub changed: Vec<i64>,
}

async fn migration_facts(pool: &PgPool) -> Result<MigrationFacts, DbError> {
    let (statuses, dirty) = migrate::status(pool).await?;
    Ok(MigrationFacts {
        head: migrate::head_version(),
        current: migrate::current_version(pool).await?,
        pending: statuses.iter().filter(|m| !m.applied).map(|m| m.version).collect(),
        dirty,
        changed: statuses.iter().filter(|m| m.applied && m.checksum_mismatch).map(|m| m.version).collect(),
    })
}

/// At this binary's head, no failed migration, no edited one.
pub fn evaluate_migrations(facts: &MigrationFacts) -> Check {
    const NAME: &str = "migrations";
    if let Some(version) = facts.dirty {
        return Check::fail(
            NAME,
            format!("migration {version} is recorded as failed part-way (dirty)"),
            format!(
                "inspect what migration {version} left behind and repair it by hand, then \
                 DELETE FROM _sqlx_migrations WHERE version = {version} AND NOT success; and run carevault migrate up"
            ),
        );
    }
    if !facts.changed.is_empty() {
        return Check::fail(
            NAME,
            format!("applied migrations changed since they were applied (checksum mismatch): {}", join(&facts.changed)),
            "use the carevault release that applied them, or restore the original migration files",
        );
    }
    if facts.current > facts.head {
        return Check::fail(
            NAME,
            format!("the database is at version {}, newer than this binary's {}", facts.current, facts.head),
            "use a carevault release at least as new as the one that migrated this database",
        );
    }
    if !facts.pending.is_empty() {
        return Check::fail(
            NAME,
            format!("at version {}, head is {}: pending {}", facts.current, facts.head, join(&facts.pending)),
            "carevault migrate up",
        );
    }
    Check::pass(NAME, format!("at head (version {}), none failed", facts.head))
}

fn join(values: &[impl std::fmt::Display]) -> String {
    values.iter().map(|v| v.to_string()).collect::<Vec<_>>().join(", ")
}

// ---------------------------------------------------------------------------------------------
// System tenant

/// The System tenant row (`00000000-0000-0000-0000-000000000000`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SystemTenantFacts {
    /// The row exists.
    Present {
        /// Its status.
        status: String,
        /// Whether it is soft-deleted.
        deleted: bool,
    },
    /// No such row (or no `tenants` table).
    Missing,
    /// This login can neither bypass row-level security nor switch to `carevault_platform`.
    Unreadable,
}

async fn system_tenant_facts(pool: &PgPool) -> Result<SystemTenantFacts, DbError> {
    const READ: &str = "SELECT status::text, deleted_at IS NOT NULL FROM public.tenants \
                        WHERE id = '00000000-0000-0000-0000-000000000000'::uuid";
    let (exists, bypasses): (bool, bool) = sqlx::query_as(
        "SELECT to_regclass('public.tenants') IS NOT NULL, \
                (SELECT rolsuper OR rolbypassrls FROM pg_catalog.pg_roles WHERE rolname = current_user)",
    )
    .fetch_one(pool)
    .await?;
    if !exists {
        return Ok(SystemTenantFacts::Missing);
    }
    let mut tx = pool.begin().await?;
    if !bypasses {
        // FORCE ROW LEVEL SECURITY hides every row from a non-superuser owner; the platform
        // policy shows them all. Transaction-local, undone by the rollback below.
        let switched = sqlx::query("SELECT set_config('role', 'carevault_platform', true)").execute(&mut *tx).await;
        if switched.is_err() {
            tx.rollback().await?;
            return Ok(SystemTenantFacts::Unreadable);
        }
    }
    let row: Option<(String, bool)> = sqlx::query_as(READ).fetch_optional(&mut *tx).await?;
    tx.rollback().await?;
    Ok(match row {
        Some((status, deleted)) => SystemTenantFacts::Present { status, deleted },
        None => SystemTenantFacts::Missing,
    })
}

/// The System tenant exists and is neither deleted nor suspended.
pub fn evaluate_system_tenant(facts: &SystemTenantFacts) -> Check {
    const NAME: &str = "system_tenant";
    match facts {
        SystemTenantFacts::Present { status, deleted: false } if status == "active" => {
            Check::pass(NAME, format!("{SYSTEM_TENANT_ID} present, active"))
        }
        SystemTenantFacts::Present { status, deleted } => Check::warn(
            NAME,
            format!("{SYSTEM_TENANT_ID} present but {}", if *deleted { "soft-deleted".into() } else { status.clone() }),
            format!("carevault tenant restore {SYSTEM_TENANT_ID} / carevault tenant activate {SYSTEM_TENANT_ID}"),
        ),
        SystemTenantFacts::Missing => Check::fail(
            NAME,
            format!("the System tenant {SYSTEM_TENANT_ID} is missing"),
            format!(
                "carevault migrate up if the schema is not at head; otherwise as a superuser: \
                 INSERT INTO public.tenants (id, name, status) VALUES ('{SYSTEM_TENANT_ID}', 'System', 'active');"
            ),
        ),
        SystemTenantFacts::Unreadable => Check::warn(
            NAME,
            "cannot read tenants: this login is not a superuser, has no BYPASSRLS and cannot switch to \
             carevault_platform (FORCE ROW LEVEL SECURITY hides every row from it)",
            "run carevault doctor with DATABASE_URL set to a superuser, or a login that is a member of \
             carevault_platform",
        ),
    }
}

// ---------------------------------------------------------------------------------------------
// Row-level security, policies, the tenant guard

/// A policy, as `pg_policies` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyFacts {
    /// Its name.
    pub name: String,
    /// PERMISSIVE (true) or RESTRICTIVE.
    pub permissive: bool,
    /// `ALL`, `SELECT`, `INSERT`, `UPDATE` or `DELETE`.
    pub command: String,
    /// The roles it applies to (`public` for PUBLIC).
    pub roles: Vec<String>,
    /// USING.
    pub using: Option<String>,
    /// WITH CHECK.
    pub with_check: Option<String>,
}

/// A tenant table: `tenants`, or any table with a `tenant_id` column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TenantTableFacts {
    /// `schema.table` (quoted where needed).
    pub name: String,
    /// ENABLE ROW LEVEL SECURITY.
    pub rls_enabled: bool,
    /// FORCE ROW LEVEL SECURITY.
    pub rls_forced: bool,
    /// Its policies.
    pub policies: Vec<PolicyFacts>,
}

/// The four tables of the schema; each must exist.
const OUR_TENANT_TABLES: [&str; 4] = ["public.audit_logs", "public.documents", "public.tenants", "public.users"];

async fn tenant_table_facts(pool: &PgPool) -> Result<Vec<TenantTableFacts>, DbError> {
    let rows = sqlx::query(
        "SELECT c.oid::int8 AS oid, quote_ident(n.nspname) || '.' || quote_ident(c.relname) AS name, \
                c.relrowsecurity, c.relforcerowsecurity \
         FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
         WHERE c.relkind IN ('r', 'p') AND n.nspname NOT LIKE 'pg\\_%' AND n.nspname <> 'information_schema' \
           AND ((n.nspname = 'public' AND c.relname = 'tenants') \
                OR EXISTS (SELECT 1 FROM pg_catalog.pg_attribute a WHERE a.attrelid = c.oid \
                           AND a.attname = 'tenant_id' AND a.attnum > 0 AND NOT a.attisdropped)) \
         ORDER BY 2",
    )
    .fetch_all(pool)
    .await?;
    let mut tables = Vec::with_capacity(rows.len());
    for row in rows {
        let oid: i64 = row.get("oid");
        let policies = sqlx::query(
            "SELECT p.polname::text AS name, p.polpermissive AS permissive, \
                    CASE p.polcmd WHEN 'r' THEN 'SELECT' WHEN 'a' THEN 'INSERT' WHEN 'w' THEN 'UPDATE' \
                                  WHEN 'd' THEN 'DELETE' ELSE 'ALL' END AS command, \
                    ARRAY(SELECT CASE WHEN r = 0 THEN 'public' ELSE r::regrole::text END \
                          FROM unnest(p.polroles) AS r ORDER BY 1) AS roles, \
                    pg_catalog.pg_get_expr(p.polqual, p.polrelid) AS using, \
                    pg_catalog.pg_get_expr(p.polwithcheck, p.polrelid) AS with_check \
             FROM pg_catalog.pg_policy p WHERE p.polrelid = $1::int8::oid ORDER BY 1",
        )
        .bind(oid)
        .fetch_all(pool)
        .await?
        .into_iter()
        .map(|p| PolicyFacts {
            name: p.get("name"),
            permissive: p.get("permissive"),
            command: p.get("command"),
            roles: p.get("roles"),
            using: p.get("using"),
            with_check: p.get("with_check"),
        })
        .collect();
        tables.push(TenantTableFacts {
            name: row.get("name"),
            rls_enabled: row.get("relrowsecurity"),
            rls_forced: row.get("relforcerowsecurity"),
            policies,
        });
    }
    Ok(tables)
}

fn missing_tables(tables: &[TenantTableFacts]) -> Vec<&'static str> {
    OUR_TENANT_TABLES.into_iter().filter(|t| !tables.iter().any(|f| f.name == *t)).collect()
}

/// Every tenant table has row-level security enabled and forced (without FORCE the owner bypasses
/// every policy).
pub fn evaluate_row_level_security(tables: &[TenantTableFacts]) -> Check {
    const NAME: &str = "row_level_security";
    let missing = missing_tables(tables);
    if !missing.is_empty() {
        return Check::fail(NAME, format!("tables missing: {}", missing.join(", ")), "carevault migrate up");
    }
    let mut problems = Vec::new();
    let mut fixes = Vec::new();
    for table in tables {
        if !table.rls_enabled {
            problems.push(format!("{} has row-level security disabled", table.name));
            fixes.push(format!("ALTER TABLE {} ENABLE ROW LEVEL SECURITY;", table.name));
        }
        if !table.rls_forced {
            problems.push(format!("{} does not FORCE row-level security", table.name));
            fixes.push(format!("ALTER TABLE {} FORCE ROW LEVEL SECURITY;", table.name));
        }
    }
    verdict(NAME, problems, fixes, || {
        let names: Vec<&str> = tables.iter().map(|t| t.name.as_str()).collect();
        format!("enabled and forced on {}", names.join(", "))
    })
}

/// One policy of the design (migrations 7 and 9).
struct ExpectedPolicy {
    table: &'static str,
    name: &'static str,
    command: &'static str,
    role: &'static str,
    /// The column compared with the tenant setting.
    column: &'static str,
}

const EXPECTED_POLICIES: [ExpectedPolicy; 8] = [
    ExpectedPolicy {
        table: "public.tenants",
        name: "tenant_isolation_policy",
        command: "ALL",
        role: APP_ROLE,
        column: "id",
    },
    ExpectedPolicy {
        table: "public.tenants",
        name: "platform_tenant_policy",
        command: "ALL",
        role: PLATFORM_ROLE,
        column: "",
    },
    ExpectedPolicy {
        table: "public.users",
        name: "user_isolation_policy",
        command: "ALL",
        role: APP_ROLE,
        column: "tenant_id",
    },
    ExpectedPolicy {
        table: "public.documents",
        name: "document_isolation_policy",
        command: "ALL",
        role: APP_ROLE,
        column: "tenant_id",
    },
    ExpectedPolicy {
        table: "public.audit_logs",
        name: "audit_log_select_policy",
        command: "SELECT",
        role: APP_ROLE,
        column: "tenant_id",
    },
    ExpectedPolicy {
        table: "public.audit_logs",
        name: "audit_log_insert_policy",
        command: "INSERT",
        role: APP_ROLE,
        column: "tenant_id",
    },
    ExpectedPolicy {
        table: "public.audit_logs",
        name: "platform_audit_log_select_policy",
        command: "SELECT",
        role: PLATFORM_ROLE,
        column: "",
    },
    ExpectedPolicy {
        table: "public.audit_logs",
        name: "platform_audit_log_insert_policy",
        command: "INSERT",
        role: PLATFORM_ROLE,
        column: "",
    },
];

impl ExpectedPolicy {
    fn has_using(&self) -> bool {
        self.command != "INSERT"
    }

    fn has_check(&self) -> bool {
        self.command != "SELECT"
    }

    fn create_sql(&self) -> String {
        let condition =
            if self.role == PLATFORM_ROLE { "true".to_string() } else { format!("{} = {TENANT_SETTING}", self.column) };
        let mut sql = format!(
            "DROP POLICY IF EXISTS {name} ON {table}; CREATE POLICY {name} ON {table} FOR {command} TO {role}",
            name = self.name,
            table = self.table,
            command = self.command,
            role = self.role
        );
        if self.has_using() {
            sql.push_str(&format!(" USING ({condition})"));
        }
        if self.has_check() {
            sql.push_str(&format!(" WITH CHECK ({condition})"));
        }
        sql.push(';');
        sql
    }

    /// Why `policy` is not this one, if it is not.
    fn mismatch(&self, policy: &PolicyFacts) -> Option<String> {
        let mut wrong = Vec::new();
        if !policy.permissive {
            wrong.push("is RESTRICTIVE".to_string());
        }
        if policy.command != self.command {
            wrong.push(format!("is FOR {} (expected {})", policy.command, self.command));
        }
        if policy.roles != [self.role] {
            wrong.push(format!("applies to {} (expected {})", policy.roles.join(", "), self.role));
        }
        if self.has_using() && policy.using.is_none() {
            wrong.push("has no USING".into());
        }
        if self.has_check() && policy.with_check.is_none() {
            wrong.push("has no WITH CHECK".into());
        }
        if self.role == APP_ROLE {
            let reads_tenant = |e: &Option<String>| e.as_deref().is_none_or(|e| e.contains(TENANT_SETTING_MARKER));
            if !reads_tenant(&policy.using) || !reads_tenant(&policy.with_check) {
                wrong.push("does not compare with app.current_tenant_id".into());
            }
        }
        if wrong.is_empty() { None } else { Some(wrong.join(", ")) }
    }
}

/// The designed policies exist as designed on the four tables, and nothing else widens them.
pub fn evaluate_policies(tables: &[TenantTableFacts]) -> Check {
    const NAME: &str = "policies";
    let missing = missing_tables(tables);
    if !missing.is_empty() {
        return Check::fail(NAME, format!("tables missing: {}", missing.join(", ")), "carevault migrate up");
    }
    let mut failures = Vec::new();
    let mut fixes = Vec::new();
    for expected in &EXPECTED_POLICIES {
        let policies = tables.iter().find(|t| t.name == expected.table).map_or(&[][..], |t| &t.policies[..]);
        let problem = match policies.iter().find(|p| p.name == expected.name) {
            None => Some(format!("{} on {} is missing", expected.name, expected.table)),
            Some(policy) => {
                expected.mismatch(policy).map(|why| format!("{} on {} {why}", expected.name, expected.table))
            }
        };
        if let Some(problem) = problem {
            failures.push(problem);
            fixes.push(expected.create_sql());
        }
    }
    let mut extra = Vec::new();
    for table in tables.iter().filter(|t| OUR_TENANT_TABLES.contains(&t.name.as_str())) {
        for policy in &table.policies {
            let known = policy.name == "tenant_guard"
                || EXPECTED_POLICIES.iter().any(|e| e.table == table.name && e.name == policy.name);
            if !known {
                extra.push((policy.name.as_str(), table.name.as_str()));
            }
        }
    }
    if !failures.is_empty() {
        return Check::fail(NAME, failures.join("; "), fixes.join("\n"));
    }
    if !extra.is_empty() {
        return Check::warn(
            NAME,
            format!(
                "policies that are not carevault's: {} (the restrictive tenant_guard still bounds carevault_app, but \
                 they may widen what other roles see)",
                extra.iter().map(|(policy, table)| format!("{policy} on {table}")).collect::<Vec<_>>().join(", ")
            ),
            extra
                .iter()
                .map(|(policy, table)| format!("DROP POLICY {policy} ON {table};"))
                .collect::<Vec<_>>()
                .join("\n"),
        );
    }
    Check::pass(NAME, format!("the {} designed policies, scoped to the runtime roles", EXPECTED_POLICIES.len()))
}

/// Every tenant table has `tenant_guard`: RESTRICTIVE, FOR ALL, TO carevault_app, USING and WITH
/// CHECK on the tenant setting (so a permissive policy added later cannot widen a tenant's access).
pub fn evaluate_tenant_guard(tables: &[TenantTableFacts]) -> Check {
    const NAME: &str = "tenant_guard";
    let missing = missing_tables(tables);
    if !missing.is_empty() {
        return Check::fail(NAME, format!("tables missing: {}", missing.join(", ")), "carevault migrate up");
    }
    let mut problems = Vec::new();
    let mut fixes = Vec::new();
    for table in tables {
        let column = if table.name == "public.tenants" { "id" } else { "tenant_id" };
        let guard = table.policies.iter().find(|p| p.name == "tenant_guard");
        let ok = guard.is_some_and(|g| {
            !g.permissive
                && g.command == "ALL"
                && g.roles == [APP_ROLE]
                && g.using.as_deref().is_some_and(|e| e.contains(TENANT_SETTING_MARKER))
                && g.with_check.as_deref().is_some_and(|e| e.contains(TENANT_SETTING_MARKER))
        });
        if ok {
            continue;
        }
        problems.push(format!(
            "{} {}",
            table.name,
            if guard.is_some() {
                "has a tenant_guard that is not RESTRICTIVE FOR ALL TO carevault_app on the tenant setting"
            } else {
                "has no tenant_guard"
            }
        ));
        fixes.push(format!(
            "DROP POLICY IF EXISTS tenant_guard ON {table}; CREATE POLICY tenant_guard ON {table} AS RESTRICTIVE FOR ALL \
             TO carevault_app USING ({column} = {TENANT_SETTING}) WITH CHECK ({column} = {TENANT_SETTING});",
            table = table.name
        ));
    }
    verdict(NAME, problems, fixes, || format!("restrictive tenant_guard on all {} tenant tables", tables.len()))
}

// ---------------------------------------------------------------------------------------------
// Audit triggers

/// A trigger on `public.audit_logs`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TriggerFacts {
    /// Its name.
    pub name: String,
    /// `pg_trigger.tgenabled`: `O` (fires), `A` (always), `R` (replica only), `D` (disabled).
    pub enabled: String,
    /// `pg_trigger.tgtype` (row/before/event bits).
    pub tgtype: i16,
    /// The function it runs.
    pub function: String,
    /// Whether that function raises an exception.
    pub raises: bool,
}

const TRIGGER_ROW: i16 = 1;
const TRIGGER_BEFORE: i16 = 2;
const TRIGGER_DELETE: i16 = 8;
const TRIGGER_UPDATE: i16 = 16;
const TRIGGER_TRUNCATE: i16 = 32;

async fn trigger_facts(pool: &PgPool) -> Result<Vec<TriggerFacts>, DbError> {
    let rows = sqlx::query(
        "SELECT t.tgname::text AS name, t.tgenabled::text AS enabled, t.tgtype::int2 AS tgtype, \
                p.proname::text AS function, p.prosrc ILIKE '%RAISE EXCEPTION%' AS raises \
         FROM pg_catalog.pg_trigger t JOIN pg_catalog.pg_proc p ON p.oid = t.tgfoid \
         WHERE t.tgrelid = to_regclass('public.audit_logs') AND NOT t.tgisinternal ORDER BY 1",
    )
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| TriggerFacts {
            name: r.get("name"),
            enabled: r.get("enabled"),
            tgtype: r.get("tgtype"),
            function: r.get("function"),
            raises: r.get("raises"),
        })
        .collect())
}

/// Checks one designed trigger; `None` when it is as designed.
fn trigger_problem(
    triggers: &[TriggerFacts],
    name: &str,
    tgtype: i16,
    definition: &str,
    function: &str,
) -> Option<(String, String)> {
    let create = format!(
        "DROP TRIGGER IF EXISTS {name} ON public.audit_logs; CREATE TRIGGER {name} {definition} ON public.audit_logs \
         {} EXECUTE FUNCTION {function}();",
        if tgtype & TRIGGER_ROW != 0 { "FOR EACH ROW" } else { "FOR EACH STATEMENT" }
    );
    let Some(trigger) = triggers.iter().find(|t| t.name == name) else {
        return Some((format!("{name} is missing"), create));
    };
    if trigger.tgtype != tgtype || trigger.function != function {
        return Some((format!("{name} is not {definition} running {function}()"), create));
    }
    if !trigger.raises {
        return Some((
            format!("{name}: {function}() no longer raises an exception"),
            "restore the function from its migration (carevault migrate status shows which; \
             crates/carevault-db/migrations)"
                .into(),
        ));
    }
    if !matches!(trigger.enabled.as_str(), "O" | "A") {
        let state = if trigger.enabled == "R" { "fires only in replica mode" } else { "is disabled" };
        return Some((format!("{name} {state}"), format!("ALTER TABLE public.audit_logs ENABLE TRIGGER {name};")));
    }
    None
}

/// `prevent_audit_log_update` and `prevent_audit_log_delete`: present, BEFORE … FOR EACH ROW, enabled.
pub fn evaluate_audit_triggers(triggers: &[TriggerFacts]) -> Check {
    const NAME: &str = "audit_triggers";
    let designed = [
        ("prevent_audit_log_update", TRIGGER_ROW | TRIGGER_BEFORE | TRIGGER_UPDATE, "BEFORE UPDATE"),
        ("prevent_audit_log_delete", TRIGGER_ROW | TRIGGER_BEFORE | TRIGGER_DELETE, "BEFORE DELETE"),
    ];
    let problems: Vec<(String, String)> = designed
        .iter()
        .filter_map(|(name, tgtype, definition)| {
            trigger_problem(triggers, name, *tgtype, definition, "prevent_audit_log_modification")
        })
        .collect();
    if problems.is_empty() {
        Check::pass(NAME, "prevent_audit_log_update and prevent_audit_log_delete enabled")
    } else {
        let (messages, fixes): (Vec<String>, Vec<String>) = problems.into_iter().unzip();
        Check::fail(NAME, format!("audit log rows can be changed: {}", messages.join("; ")), fixes.join("\n"))
    }
}

/// `prevent_audit_log_truncate`: present, BEFORE TRUNCATE FOR EACH STATEMENT, enabled.
pub fn evaluate_truncate_guard(triggers: &[TriggerFacts]) -> Check {
    const NAME: &str = "audit_truncate_guard";
    match trigger_problem(
        triggers,
        "prevent_audit_log_truncate",
        TRIGGER_BEFORE | TRIGGER_TRUNCATE,
        "BEFORE TRUNCATE",
        "prevent_audit_log_truncate",
    ) {
        None => Check::pass(NAME, "prevent_audit_log_truncate enabled"),
        Some((message, fix)) => Check::fail(NAME, format!("audit_logs can be truncated: {message}"), fix),
    }
}

// ---------------------------------------------------------------------------------------------
// Vector index

/// `idx_documents_embedding_hnsw`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexFacts {
    /// Whether it exists (on `public.documents`).
    pub present: bool,
    /// `pg_index.indisvalid` (false after a failed CREATE INDEX CONCURRENTLY).
    pub valid: bool,
    /// `pg_index.indisready`.
    pub ready: bool,
    /// Its access method (`hnsw`).
    pub method: String,
}

async fn index_facts(pool: &PgPool) -> Result<IndexFacts, DbError> {
    let row: Option<(bool, bool, String)> = sqlx::query_as(
        "SELECT i.indisvalid, i.indisready, am.amname::text \
         FROM pg_catalog.pg_index i JOIN pg_catalog.pg_class c ON c.oid = i.indexrelid \
         JOIN pg_catalog.pg_am am ON am.oid = c.relam \
         WHERE i.indexrelid = to_regclass('public.idx_documents_embedding_hnsw') \
           AND i.indrelid = to_regclass('public.documents')",
    )
    .fetch_optional(pool)
    .await?;
    Ok(match row {
        Some((valid, ready, method)) => IndexFacts { present: true, valid, ready, method },
        None => IndexFacts { present: false, valid: false, ready: false, method: String::new() },
    })
}

/// The HNSW index exists and is valid.
pub fn evaluate_vector_index(facts: &IndexFacts) -> Check {
    const NAME: &str = "vector_index";
    const CREATE: &str = "CREATE INDEX CONCURRENTLY idx_documents_embedding_hnsw ON public.documents USING hnsw \
                          (embedding_vector vector_cosine_ops) WITH (m = 16, ef_construction = 64) \
                          WHERE embedding_vector IS NOT NULL AND deleted_at IS NULL;";
    if !facts.present {
        return Check::fail(NAME, "idx_documents_embedding_hnsw is missing: similarity search scans every row", CREATE);
    }
    if facts.method != "hnsw" {
        return Check::fail(
            NAME,
            format!("idx_documents_embedding_hnsw uses {}, not hnsw", facts.method),
            format!("DROP INDEX CONCURRENTLY public.idx_documents_embedding_hnsw; {CREATE}"),
        );
    }
    if !facts.valid || !facts.ready {
        return Check::fail(
            NAME,
            "idx_documents_embedding_hnsw is invalid (an interrupted CREATE INDEX CONCURRENTLY?): the planner ignores it",
            "REINDEX INDEX CONCURRENTLY public.idx_documents_embedding_hnsw;",
        );
    }
    Check::pass(NAME, "idx_documents_embedding_hnsw present and valid")
}

// ---------------------------------------------------------------------------------------------
// Roles

/// Attributes of one carevault role.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoleFacts {
    /// `carevault_app`, `carevault_platform`, `carevault_api` or `carevault_ops`.
    pub name: String,
    /// SUPERUSER.
    pub superuser: bool,
    /// BYPASSRLS.
    pub bypass_rls: bool,
    /// LOGIN.
    pub can_login: bool,
    /// CREATEROLE.
    pub create_role: bool,
    /// CREATEDB.
    pub create_db: bool,
    /// REPLICATION.
    pub replication: bool,
    /// INHERIT.
    pub inherit: bool,
    /// What it owns in this database or cluster-wide (temporary tables excluded).
    pub owns: Vec<String>,
    /// The roles it is a member of.
    pub member_of: Vec<String>,
}

async fn role_facts(pool: &PgPool) -> Result<Vec<RoleFacts>, DbError> {
    let rows = sqlx::query(
        "SELECT r.rolname::text AS name, r.rolsuper, r.rolbypassrls, r.rolcanlogin, r.rolcreaterole, r.rolcreatedb, \
                r.rolreplication, r.rolinherit, \
                ARRAY(SELECT coalesce(pg_catalog.pg_describe_object(d.classid, d.objid, d.objsubid), 'an object') \
                      FROM pg_catalog.pg_shdepend d \
                      WHERE d.refclassid = 'pg_catalog.pg_authid'::regclass AND d.refobjid = r.oid \
                        AND d.deptype = 'o' \
                        AND (d.dbid = 0 OR d.dbid = (SELECT oid FROM pg_catalog.pg_database \
                                                     WHERE datname = current_database())) \
                        AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_class c \
                                        WHERE d.classid = 'pg_catalog.pg_class'::regclass AND c.oid = d.objid \
                                          AND c.relpersistence = 't') \
                        AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_type t \
                                        JOIN pg_catalog.pg_namespace n ON n.oid = t.typnamespace \
                                        WHERE d.classid = 'pg_catalog.pg_type'::regclass AND t.oid = d.objid \
                                          AND (n.nspname LIKE 'pg\\_temp\\_%' OR n.nspname LIKE 'pg\\_toast\\_temp\\_%')) \
                      ORDER BY 1) AS owns, \
                ARRAY(SELECT g.rolname::text FROM pg_catalog.pg_auth_members m \
                      JOIN pg_catalog.pg_roles g ON g.oid = m.roleid WHERE m.member = r.oid ORDER BY 1) AS member_of \
         FROM pg_catalog.pg_roles r \
         WHERE r.rolname IN ('carevault_app', 'carevault_platform', 'carevault_api', 'carevault_ops') \
         ORDER BY 1",
    )
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| RoleFacts {
            name: r.get("name"),
            superuser: r.get("rolsuper"),
            bypass_rls: r.get("rolbypassrls"),
            can_login: r.get("rolcanlogin"),
            create_role: r.get("rolcreaterole"),
            create_db: r.get("rolcreatedb"),
            replication: r.get("rolreplication"),
            inherit: r.get("rolinherit"),
            owns: r.get("owns"),
            member_of: r.get("member_of"),
        })
        .collect())
}

/// The runtime roles exist, are NOLOGIN NOSUPERUSER NOBYPASSRLS (and the rest of the bootstrap's
/// attributes), own nothing and are members of nothing; the login roles, when they exist, are
/// the same except LOGIN and a membership of exactly their runtime role.
///
/// `owner` names the role to hand owned objects to in the fix.
pub fn evaluate_runtime_roles(roles: &[RoleFacts], owner: &str) -> Check {
    const NAME: &str = "runtime_roles";
    let mut problems = Vec::new();
    let mut fixes = Vec::new();
    let designed = [(APP_ROLE, false, None), (PLATFORM_ROLE, false, None)]
        .into_iter()
        .chain([(API_LOGIN, true, Some(APP_ROLE)), (OPS_LOGIN, true, Some(PLATFORM_ROLE))]);
    for (name, login, runtime) in designed {
        let Some(role) = roles.iter().find(|r| r.name == name) else {
            if !login {
                problems.push(format!("{name} does not exist"));
                fixes.push(
                    "carevault migrate up as a superuser (or `carevault migrate bootstrap-sql` for a DBA)".into(),
                );
            }
            // A missing login role is the login_roles check's business.
            continue;
        };
        let mut wrong = Vec::new();
        for (bad, attribute) in [
            (role.superuser, "SUPERUSER"),
            (role.bypass_rls, "BYPASSRLS"),
            (role.can_login != login, if login { "NOLOGIN" } else { "LOGIN" }),
            (role.create_role, "CREATEROLE"),
            (role.create_db, "CREATEDB"),
            (role.replication, "REPLICATION"),
            (role.inherit, "INHERIT"),
        ] {
            if bad {
                wrong.push(attribute);
            }
        }
        if !wrong.is_empty() {
            problems.push(format!("{name} is {}", wrong.join(" ")));
            fixes.push(format!(
                "ALTER ROLE {name} {} NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE NOREPLICATION NOINHERIT;",
                if login { "LOGIN" } else { "NOLOGIN" }
            ));
        }
        if !role.owns.is_empty() {
            problems.push(format!("{name} owns {}", role.owns.join(", ")));
            fixes.push(format!("REASSIGN OWNED BY {name} TO {owner};  -- in each database where it owns something"));
        }
        let extra: Vec<&String> = role.member_of.iter().filter(|m| Some(m.as_str()) != runtime).collect();
        if !extra.is_empty() {
            let list: Vec<&str> = extra.iter().map(|m| m.as_str()).collect();
            problems.push(format!("{name} is a member of {}", list.join(", ")));
            fixes.push(format!("REVOKE {} FROM {name};", list.join(", ")));
        }
    }
    verdict(NAME, problems, fixes, || {
        "carevault_app and carevault_platform: not superuser, not BYPASSRLS, own nothing".into()
    })
}

// ---------------------------------------------------------------------------------------------
// Privileges

/// What the four carevault roles may do in this database.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PrivilegeFacts {
    /// (role, `schema.relation`, privilege) for every relation privilege held, directly, through
    /// PUBLIC, or on any column.
    pub granted: BTreeSet<(String, String, String)>,
    /// (role, schema) where the role may CREATE.
    pub schema_create: Vec<(String, String)>,
    /// Roles that may CREATE schemas in this database.
    pub database_create: Vec<String>,
    /// (role, column) of `audit_logs.id` / `audit_logs.created_at` the role may INSERT.
    pub pinned_columns: Vec<(String, String)>,
    /// This database's name (for the fix).
    pub database: String,
}

/// The designed privileges (DESIGN §5.1), as `crates/carevault-db/tests/db/catalog.rs` asserts them.
pub const DESIGNED_PRIVILEGES: [(&str, &str, &str); 15] = [
    ("carevault_app", "public._sqlx_migrations", "SELECT"),
    ("carevault_app", "public.audit_logs", "INSERT"),
    ("carevault_app", "public.audit_logs", "SELECT"),
    ("carevault_app", "public.documents", "INSERT"),
    ("carevault_app", "public.documents", "SELECT"),
    ("carevault_app", "public.documents", "UPDATE"),
    ("carevault_app", "public.tenants", "SELECT"),
    ("carevault_app", "public.users", "INSERT"),
    ("carevault_app", "public.users", "SELECT"),
    ("carevault_app", "public.users", "UPDATE"),
    ("carevault_platform", "public.audit_logs", "INSERT"),
    ("carevault_platform", "public.audit_logs", "SELECT"),
    ("carevault_platform", "public.tenants", "INSERT"),
    ("carevault_platform", "public.tenants", "SELECT"),
    ("carevault_platform", "public.tenants", "UPDATE"),
];

/// INSERT on audit_logs is granted on these columns only: id and created_at keep their defaults.
const AUDIT_INSERT_COLUMNS: &str =
    "tenant_id, user_id, action, resource_type, resource_id, ip_address, user_agent, metadata";

macro_rules! privilege_query {
    () => {
        "SELECT r.rolname::text, quote_ident(n.nspname) || '.' || quote_ident(c.relname), p \
         FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
         CROSS JOIN pg_catalog.pg_roles r"
    };
}
macro_rules! privilege_filter {
    () => {
        " WHERE n.nspname NOT LIKE 'pg\\_%' AND n.nspname <> 'information_schema' \
           AND c.relkind IN ('r', 'p', 'v', 'm', 'f') \
           AND r.rolname IN ('carevault_app', 'carevault_platform', 'carevault_api', 'carevault_ops') \
           AND (has_table_privilege(r.oid, c.oid, p) \
                OR (p IN ('SELECT', 'INSERT', 'UPDATE', 'REFERENCES') AND has_any_column_privilege(r.oid, c.oid, p))) \
         ORDER BY 1, 2, 3"
    };
}

async fn privilege_facts(pool: &PgPool, version_num: i32) -> Result<PrivilegeFacts, DbError> {
    // MAINTAIN (VACUUM, REINDEX, LOCK, ...) exists from PostgreSQL 17; naming it before errs.
    let granted: Vec<(String, String, String)> = if version_num >= 170000 {
        sqlx::query_as(concat!(
            privilege_query!(),
            " CROSS JOIN unnest(ARRAY['SELECT','INSERT','UPDATE','DELETE','TRUNCATE','REFERENCES','TRIGGER','MAINTAIN']) AS p",
            privilege_filter!()
        ))
        .fetch_all(pool)
        .await?
    } else {
        sqlx::query_as(concat!(
            privilege_query!(),
            " CROSS JOIN unnest(ARRAY['SELECT','INSERT','UPDATE','DELETE','TRUNCATE','REFERENCES','TRIGGER']) AS p",
            privilege_filter!()
        ))
        .fetch_all(pool)
        .await?
    };
    let schema_create: Vec<(String, String)> = sqlx::query_as(
        "SELECT r.rolname::text, n.nspname::text FROM pg_catalog.pg_namespace n CROSS JOIN pg_catalog.pg_roles r \
         WHERE r.rolname IN ('carevault_app', 'carevault_platform', 'carevault_api', 'carevault_ops') \
           AND n.nspname NOT LIKE 'pg\\_%' AND n.nspname <> 'information_schema' \
           AND has_schema_privilege(r.oid, n.oid, 'CREATE') ORDER BY 1, 2",
    )
    .fetch_all(pool)
    .await?;
    let database_create: Vec<String> = sqlx::query_scalar(
        "SELECT r.rolname::text FROM pg_catalog.pg_roles r \
         WHERE r.rolname IN ('carevault_app', 'carevault_platform', 'carevault_api', 'carevault_ops') \
           AND has_database_privilege(r.oid, current_database(), 'CREATE') ORDER BY 1",
    )
    .fetch_all(pool)
    .await?;
    let pinned_columns: Vec<(String, String)> = sqlx::query_as(
        "SELECT r.rolname::text, a.attname::text FROM pg_catalog.pg_attribute a CROSS JOIN pg_catalog.pg_roles r \
         WHERE a.attrelid = to_regclass('public.audit_logs') AND a.attname IN ('id', 'created_at') \
           AND r.rolname IN ('carevault_app', 'carevault_platform', 'carevault_api', 'carevault_ops') \
           AND has_column_privilege(r.oid, a.attrelid, a.attnum, 'INSERT') ORDER BY 1, 2",
    )
    .fetch_all(pool)
    .await?;
    let database: String = sqlx::query_scalar("SELECT quote_ident(current_database())").fetch_one(pool).await?;
    Ok(PrivilegeFacts {
        granted: granted.into_iter().collect(),
        schema_create,
        database_create,
        pinned_columns,
        database,
    })
}

/// The four roles hold exactly [`DESIGNED_PRIVILEGES`]: nothing more (no DELETE, TRUNCATE,
/// REFERENCES, TRIGGER, no CREATE on a schema or the database, no INSERT of audit ids or
/// timestamps), nothing less.
pub fn evaluate_privileges(facts: &PrivilegeFacts) -> Check {
    const NAME: &str = "privileges";
    let designed: BTreeSet<(String, String, String)> =
        DESIGNED_PRIVILEGES.iter().map(|(r, t, p)| (r.to_string(), t.to_string(), p.to_string())).collect();
    let mut problems = Vec::new();
    let mut fixes = Vec::new();
    for (role, relation, privilege) in facts.granted.difference(&designed) {
        problems.push(format!("{role} has {privilege} on {relation}"));
        fixes.push(format!("REVOKE {privilege} ON {relation} FROM {role}, PUBLIC;"));
    }
    for (role, schema) in &facts.schema_create {
        problems.push(format!("{role} may CREATE in schema {schema}"));
        fixes.push(format!("REVOKE CREATE ON SCHEMA {schema} FROM {role}, PUBLIC;"));
    }
    for role in &facts.database_create {
        problems.push(format!("{role} may CREATE schemas in this database"));
        fixes.push(format!("REVOKE CREATE ON DATABASE {} FROM {role}, PUBLIC;", facts.database));
    }
    for (role, column) in &facts.pinned_columns {
        problems.push(format!("{role} may INSERT audit_logs.{column} (it must keep its default)"));
        fixes.push(format!(
            "REVOKE INSERT ON public.audit_logs FROM {role}; GRANT INSERT ({AUDIT_INSERT_COLUMNS}) ON public.audit_logs TO {role};"
        ));
    }
    for (role, relation, privilege) in designed.difference(&facts.granted) {
        problems.push(format!("{role} lacks {privilege} on {relation}"));
        if relation == "public.audit_logs" && privilege == "INSERT" {
            fixes.push(format!("GRANT INSERT ({AUDIT_INSERT_COLUMNS}) ON {relation} TO {role};"));
        } else {
            fixes.push(format!("GRANT {privilege} ON {relation} TO {role};"));
        }
    }
    verdict(NAME, problems, fixes, || format!("exactly the {} designed privileges, no DDL", DESIGNED_PRIVILEGES.len()))
}

// ---------------------------------------------------------------------------------------------
// Login roles

/// The login of one of the server's pools.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoginFacts {
    /// `tenant` or `platform`.
    pub pool: &'static str,
    /// The runtime role the pool switches to.
    pub runtime_role: &'static str,
    /// The login role.
    pub login: String,
    /// Whether the role exists.
    pub exists: bool,
    /// SUPERUSER.
    pub superuser: bool,
    /// BYPASSRLS.
    pub bypass_rls: bool,
    /// Whether it may switch to the runtime role (a member, or a superuser).
    pub can_switch: bool,
}

/// The server's two logins, and whether the recommended login roles exist.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoginRolesFacts {
    /// The tenant pool's and the platform pool's logins.
    pub logins: Vec<LoginFacts>,
    /// Whether `carevault_api` exists.
    pub api_exists: bool,
    /// Whether `carevault_ops` exists.
    pub ops_exists: bool,
}

async fn login_facts(pool: &PgPool, ctx: &DoctorContext, current_user: &str) -> Result<LoginRolesFacts, DbError> {
    let mut logins = Vec::new();
    for (pool_name, runtime_role, login) in
        [("tenant", APP_ROLE, &ctx.app_login), ("platform", PLATFORM_ROLE, &ctx.ops_login)]
    {
        let login = login.clone().unwrap_or_else(|| current_user.to_string());
        let row: Option<(bool, bool, bool)> = sqlx::query_as(
            "SELECT r.rolsuper, r.rolbypassrls, \
                    EXISTS (SELECT 1 FROM pg_catalog.pg_roles t WHERE t.rolname = $2 \
                            AND pg_has_role(r.oid, t.oid, 'MEMBER')) \
             FROM pg_catalog.pg_roles r WHERE r.rolname = $1",
        )
        .bind(&login)
        .bind(runtime_role)
        .fetch_optional(pool)
        .await?;
        let (exists, superuser, bypass_rls, can_switch) = match row {
            Some((superuser, bypass_rls, member)) => (true, superuser, bypass_rls, member),
            None => (false, false, false, false),
        };
        logins.push(LoginFacts { pool: pool_name, runtime_role, login, exists, superuser, bypass_rls, can_switch });
    }
    let (api_exists, ops_exists): (bool, bool) = sqlx::query_as(
        "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = 'carevault_api'), \
                EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = 'carevault_ops')",
    )
    .fetch_one(pool)
    .await?;
    Ok(LoginRolesFacts { logins, api_exists, ops_exists })
}

/// The SQL that gives the server its two least-privileged logins (as `sql/bootstrap.sql` makes
/// them), and the variables to point at them.
pub fn login_roles_sql(api_exists: bool, ops_exists: bool) -> String {
    let mut sql = vec!["-- as a superuser; choose two passwords".to_string()];
    for (login, runtime, exists) in [(API_LOGIN, APP_ROLE, api_exists), (OPS_LOGIN, PLATFORM_ROLE, ops_exists)] {
        if exists {
            sql.push(format!("ALTER ROLE {login} LOGIN NOINHERIT PASSWORD '<password>';"));
        } else {
            sql.push(format!("CREATE ROLE {login} LOGIN NOINHERIT PASSWORD '<password>';"));
        }
        sql.push(format!("GRANT {runtime} TO {login} WITH INHERIT FALSE, SET TRUE;"));
    }
    sql.push(
        "-- then set APP_DATABASE_URL=postgres://carevault_api:<password>@<host>/<database> and \
         PLATFORM_DATABASE_URL=postgres://carevault_ops:<password>@<host>/<database>"
            .into(),
    );
    sql.join("\n")
}

/// The server's pools log in as roles that exist, can switch to their runtime role, and are
/// neither superuser nor BYPASSRLS (a superuser session can switch back out of the runtime role:
/// WARN, with the SQL that creates `carevault_api` and `carevault_ops`).
pub fn evaluate_login_roles(facts: &LoginRolesFacts) -> Check {
    const NAME: &str = "login_roles";
    let mut failures = Vec::new();
    let mut fail_fixes = Vec::new();
    let mut warnings = Vec::new();
    // Both pools on one login (DATABASE_URL alone): say it once.
    let shared = facts.logins.len() == 2 && facts.logins[0].login == facts.logins[1].login;
    for (index, login) in facts.logins.iter().enumerate() {
        let who = if shared {
            if index > 0 && login.exists && (login.superuser || login.bypass_rls) {
                continue;
            }
            format!("both pools log in as {}", login.login)
        } else {
            format!("the {} pool logs in as {}", login.pool, login.login)
        };
        if !login.exists {
            if shared && index > 0 {
                continue;
            }
            failures.push(format!("{who}, which does not exist"));
            fail_fixes.push(login_roles_sql(facts.api_exists, facts.ops_exists));
        } else if login.superuser || login.bypass_rls {
            warnings.push(format!(
                "{who}, which {}: RLS applies only because the server switches to the runtime role per transaction, \
                 and such a session can switch back",
                if login.superuser { "is a superuser" } else { "has BYPASSRLS" },
            ));
        } else if !login.can_switch {
            failures.push(format!(
                "the {} pool logs in as {}, which cannot switch to {}: every request would fail",
                login.pool, login.login, login.runtime_role
            ));
            fail_fixes.push(format!("GRANT {} TO {} WITH INHERIT FALSE, SET TRUE;", login.runtime_role, login.login));
        }
    }
    if !failures.is_empty() {
        return Check::fail(NAME, failures.join("; "), fail_fixes.join("\n"));
    }
    if !warnings.is_empty() {
        return Check::warn(NAME, warnings.join("; "), login_roles_sql(facts.api_exists, facts.ops_exists));
    }
    let names: Vec<&str> = facts.logins.iter().map(|l| l.login.as_str()).collect();
    Check::pass(NAME, format!("the server logs in as {}: not superuser, not BYPASSRLS", names.join(" / ")))
}

// ---------------------------------------------------------------------------------------------
// Views

/// A view or materialized view reading a tenant table (directly or through other views).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ViewFacts {
    /// `schema.view`.
    pub name: String,
    /// `v` (view) or `m` (materialized view).
    pub kind: String,
    /// `pg_class.reloptions`.
    pub options: Vec<String>,
    /// The tenant tables it reads.
    pub reads: Vec<String>,
}

async fn view_facts(pool: &PgPool) -> Result<Vec<ViewFacts>, DbError> {
    let rows: Vec<(String, String, Vec<String>, Vec<String>)> = sqlx::query_as(
        "WITH RECURSIVE tenant_tables AS ( \
             SELECT c.oid FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
             WHERE c.relkind IN ('r', 'p') AND n.nspname NOT LIKE 'pg\\_%' AND n.nspname <> 'information_schema' \
               AND ((n.nspname = 'public' AND c.relname = 'tenants') \
                    OR EXISTS (SELECT 1 FROM pg_catalog.pg_attribute a WHERE a.attrelid = c.oid \
                               AND a.attname = 'tenant_id' AND a.attnum > 0 AND NOT a.attisdropped))), \
         readers (reader, tenant_table) AS ( \
             SELECT rw.ev_class, d.refobjid FROM pg_catalog.pg_depend d \
             JOIN pg_catalog.pg_rewrite rw ON rw.oid = d.objid \
             WHERE d.classid = 'pg_catalog.pg_rewrite'::regclass AND d.refclassid = 'pg_catalog.pg_class'::regclass \
               AND d.refobjid IN (SELECT oid FROM tenant_tables) AND rw.ev_class <> d.refobjid \
             UNION \
             SELECT rw.ev_class, r.tenant_table FROM readers r \
             JOIN pg_catalog.pg_depend d ON d.refobjid = r.reader \
                  AND d.refclassid = 'pg_catalog.pg_class'::regclass AND d.classid = 'pg_catalog.pg_rewrite'::regclass \
             JOIN pg_catalog.pg_rewrite rw ON rw.oid = d.objid \
             WHERE rw.ev_class <> r.reader) \
         SELECT quote_ident(n.nspname) || '.' || quote_ident(v.relname), v.relkind::text, \
                coalesce(v.reloptions, '{}')::text[], \
                array_agg(DISTINCT quote_ident(tn.nspname) || '.' || quote_ident(t.relname)) \
         FROM readers r JOIN pg_catalog.pg_class v ON v.oid = r.reader \
         JOIN pg_catalog.pg_namespace n ON n.oid = v.relnamespace \
         JOIN pg_catalog.pg_class t ON t.oid = r.tenant_table JOIN pg_catalog.pg_namespace tn ON tn.oid = t.relnamespace \
         WHERE v.relkind IN ('v', 'm') \
         GROUP BY 1, 2, 3 ORDER BY 1",
    )
    .fetch_all(pool)
    .await?;
    Ok(rows.into_iter().map(|(name, kind, options, reads)| ViewFacts { name, kind, options, reads }).collect())
}

fn security_invoker(options: &[String]) -> bool {
    options.iter().any(|o| match o.split_once('=') {
        Some((key, value)) => {
            key.eq_ignore_ascii_case("security_invoker")
                && matches!(value.to_ascii_lowercase().as_str(), "true" | "on" | "yes" | "1" | "t" | "y")
        }
        None => o.eq_ignore_ascii_case("security_invoker"),
    })
}

/// No view over a tenant table runs with its owner's rights (a view without `security_invoker`
/// reads the table as its owner, whom FORCE RLS does not stop if it is a superuser, and whose
/// policies are not the caller's), and no materialized view copies tenant rows out of RLS.
pub fn evaluate_views(views: &[ViewFacts]) -> Check {
    const NAME: &str = "views";
    let mut problems = Vec::new();
    let mut fixes = Vec::new();
    for view in views {
        if view.kind == "m" {
            problems.push(format!(
                "materialized view {} copies rows of {} outside row-level security",
                view.name,
                view.reads.join(", ")
            ));
            fixes.push(format!("DROP MATERIALIZED VIEW {};", view.name));
        } else if !security_invoker(&view.options) {
            problems.push(format!("view {} reads {} without security_invoker", view.name, view.reads.join(", ")));
            fixes.push(format!("ALTER VIEW {} SET (security_invoker = true);", view.name));
        }
    }
    verdict(NAME, problems, fixes, || format!("{} view(s) over tenant tables, all security_invoker", views.len()))
}

// ---------------------------------------------------------------------------------------------
// SECURITY DEFINER functions

/// A SECURITY DEFINER function outside the system schemas.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecurityDefinerFacts {
    /// `schema.name(argument types)`.
    pub function: String,
    /// Which carevault roles may execute it (directly, through PUBLIC or membership).
    pub executable_by: Vec<String>,
}

async fn security_definer_facts(pool: &PgPool) -> Result<Vec<SecurityDefinerFacts>, DbError> {
    let rows: Vec<(String, Vec<String>)> = sqlx::query_as(
        "SELECT quote_ident(n.nspname) || '.' || quote_ident(p.proname) \
                    || '(' || pg_catalog.pg_get_function_identity_arguments(p.oid) || ')', \
                ARRAY(SELECT r.rolname::text FROM pg_catalog.pg_roles r \
                      WHERE r.rolname IN ('carevault_app', 'carevault_platform', 'carevault_api', 'carevault_ops') \
                        AND has_function_privilege(r.oid, p.oid, 'EXECUTE') ORDER BY 1) \
         FROM pg_catalog.pg_proc p JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace \
         WHERE p.prosecdef AND n.nspname NOT LIKE 'pg\\_%' AND n.nspname <> 'information_schema' \
         ORDER BY 1",
    )
    .fetch_all(pool)
    .await?;
    Ok(rows.into_iter().map(|(function, executable_by)| SecurityDefinerFacts { function, executable_by }).collect())
}

/// No SECURITY DEFINER function the carevault roles can execute, except ours
/// ([`OUR_SECURITY_DEFINER_FUNCTIONS`], none).
pub fn evaluate_security_definer(functions: &[SecurityDefinerFacts]) -> Check {
    const NAME: &str = "security_definer_functions";
    let exposed: Vec<&SecurityDefinerFacts> = functions
        .iter()
        .filter(|f| !f.executable_by.is_empty() && !OUR_SECURITY_DEFINER_FUNCTIONS.contains(&f.function.as_str()))
        .collect();
    if exposed.is_empty() {
        return Check::pass(NAME, "no SECURITY DEFINER function the runtime roles can execute");
    }
    let message = exposed
        .iter()
        .map(|f| format!("{} (executable by {})", f.function, f.executable_by.join(", ")))
        .collect::<Vec<_>>()
        .join("; ");
    let fixes = exposed
        .iter()
        .map(|f| {
            format!(
                "REVOKE EXECUTE ON FUNCTION {} FROM PUBLIC, {};  -- or ALTER FUNCTION {} SECURITY INVOKER;",
                f.function,
                f.executable_by.join(", "),
                f.function
            )
        })
        .collect::<Vec<_>>()
        .join("\n");
    Check::fail(NAME, format!("SECURITY DEFINER functions run with their owner's rights: {message}"), fixes)
}

// ---------------------------------------------------------------------------------------------
// TLS

/// This connection's transport.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFacts {
    /// `pg_stat_ssl.ssl`.
    pub encrypted: bool,
    /// `pg_stat_ssl.version` (e.g. `TLSv1.3`).
    pub version: Option<String>,
    /// `inet_client_addr()`: `None` over a Unix socket.
    pub client_addr: Option<String>,
}

async fn tls_facts(pool: &PgPool) -> Result<TlsFacts, DbError> {
    let (encrypted, version, client_addr): (Option<bool>, Option<String>, Option<String>) = sqlx::query_as(
        "SELECT (SELECT ssl FROM pg_catalog.pg_stat_ssl WHERE pid = pg_backend_pid()), \
                (SELECT version FROM pg_catalog.pg_stat_ssl WHERE pid = pg_backend_pid()), \
                host(inet_client_addr())",
    )
    .fetch_one(pool)
    .await?;
    Ok(TlsFacts { encrypted: encrypted.unwrap_or(false), version, client_addr })
}

/// Encrypted, or local (a Unix socket or loopback: nothing crosses a network); otherwise WARN
/// outside development.
pub fn evaluate_tls(facts: &TlsFacts, environment: Environment) -> Check {
    const NAME: &str = "tls";
    if facts.encrypted {
        return Check::pass(NAME, format!("encrypted ({})", facts.version.as_deref().unwrap_or("TLS")));
    }
    let Some(addr) = &facts.client_addr else {
        return Check::pass(NAME, "local Unix socket: no network to encrypt");
    };
    if addr == "127.0.0.1" || addr == "::1" {
        return Check::pass(NAME, "not encrypted, over loopback: nothing leaves this machine");
    }
    if environment == Environment::Development {
        return Check::pass(NAME, format!("not encrypted over TCP (from {addr}); acceptable in development only"));
    }
    Check::warn(
        NAME,
        format!("the connection is not encrypted (TCP from {addr}): PHI and passwords cross the network in clear"),
        "enable ssl on the server and add sslmode=verify-full (or at least sslmode=require) to DATABASE_URL, \
         APP_DATABASE_URL and PLATFORM_DATABASE_URL",
    )
}

/// Defaults stored for carevault's roles (`ALTER ROLE ... SET`), cluster-wide or in this
/// database, as `role: setting=value`.
pub async fn role_setting_facts(pool: &PgPool) -> Result<Vec<String>, DbError> {
    Ok(sqlx::query_scalar(
        "SELECT r.rolname || ': ' || s || CASE WHEN d.setdatabase = 0 THEN ' (every database)' ELSE '' END \
         FROM pg_catalog.pg_db_role_setting d \
         JOIN pg_catalog.pg_roles r ON r.oid = d.setrole \
         CROSS JOIN unnest(d.setconfig) AS s \
         WHERE r.rolname LIKE 'carevault\\_%' \
           AND d.setdatabase IN (0, (SELECT oid FROM pg_catalog.pg_database WHERE datname = current_database())) \
         ORDER BY 1",
    )
    .fetch_all(pool)
    .await?)
}

/// Any role default is reported: a role may set its own defaults without any privilege, so a
/// session holding a login's credentials can leave settings for every later connection. The pools
/// pin the settings that matter for isolation (role, search_path, read-only, row security, the
/// tenant settings); the rest (timeouts, say) may be deliberate, but must be seen.
pub fn evaluate_role_settings(settings: &[String]) -> Check {
    const NAME: &str = "role_settings";
    if settings.is_empty() {
        return Check::pass(NAME, "no role defaults stored for the carevault roles");
    }
    Check::warn(
        NAME,
        format!("role defaults stored for carevault roles: {}", settings.join("; ")),
        "if you did not set them (docs/POSTGRESQL_TUNING.md recommends only timeouts on the login roles), \
         remove them as a superuser: ALTER ROLE <role> [IN DATABASE <db>] RESET ALL",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn role_settings_are_reported() {
        assert_eq!(evaluate_role_settings(&[]).status, Status::Pass);
        let found = evaluate_role_settings(&["carevault_api: statement_timeout=1ms".into()]);
        assert_eq!(found.status, Status::Warn);
        assert!(found.message.contains("statement_timeout=1ms"));
    }

    #[test]
    fn versions_parse() {
        assert_eq!(parse_major_minor("0.8.1"), Some((0, 8)));
        assert_eq!(parse_major_minor("1"), Some((1, 0)));
        assert_eq!(parse_major_minor("x"), None);
    }

    #[test]
    fn security_invoker_options() {
        assert!(security_invoker(&["security_invoker=true".into()]));
        assert!(security_invoker(&["security_barrier=true".into(), "security_invoker=on".into()]));
        assert!(!security_invoker(&["security_invoker=false".into()]));
        assert!(!security_invoker(&[]));
    }
}
