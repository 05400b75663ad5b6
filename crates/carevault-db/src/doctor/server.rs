//! The server, pgvector, the migrations and the System tenant.

use sqlx::PgPool;

use super::{Check, MIN_PGVECTOR, MIN_SERVER_MAJOR, SYSTEM_TENANT_ID};
use crate::{DbError, migrate};

/// The server's version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerFacts {
    /// `server_version_num`, e.g. `180001`.
    pub version_num: i32,
    /// `server_version`, e.g. `18.1`.
    pub version: String,
}

pub(super) async fn server_facts(pool: &PgPool) -> Result<ServerFacts, DbError> {
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

pub(super) async fn pgvector_facts(pool: &PgPool) -> Result<PgvectorFacts, DbError> {
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

pub(super) async fn migration_facts(pool: &PgPool) -> Result<MigrationFacts, DbError> {
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

pub(super) async fn system_tenant_facts(pool: &PgPool) -> Result<SystemTenantFacts, DbError> {
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

#[cfg(test)]
mod tests {
    use super::parse_major_minor;

    #[test]
    fn versions_parse() {
        assert_eq!(parse_major_minor("0.8.1"), Some((0, 8)));
        assert_eq!(parse_major_minor("1"), Some((1, 0)));
        assert_eq!(parse_major_minor("x"), None);
    }
}
