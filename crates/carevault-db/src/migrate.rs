//! The schema: reversible migrations, the superuser bootstrap, and `migrate up | down | status`.
//!
//! Migrations 1–7 are the reference schema, names unchanged; every later one is our hardening, its
//! reason in its header comment (`-- Hardening n: ...`).
//! Each runs in its own transaction under sqlx's per-database advisory lock, so two `migrate up`
//! at once are safe: the second waits, then finds nothing to do. The bootstrap (roles and
//! `CREATE EXTENSION vector`) needs a superuser; [`up`] runs it first when it has the rights, and
//! otherwise checks that a DBA has.

use sqlx::migrate::Migrator;
use sqlx::{PgPool, Row};

use crate::DbError;

/// The migrations, embedded in the binary.
pub static MIGRATOR: Migrator = sqlx::migrate!("./migrations");

/// The bootstrap SQL for a DBA: cluster-wide roles, per-database extension. Idempotent.
pub const BOOTSTRAP_SQL: &str = include_str!("../sql/bootstrap.sql");

/// Released migrations whose file was edited afterwards in comments only: (version, the SHA-384
/// checksum sqlx recorded when it applied the released file, the checksum of the file as edited).
/// sqlx refuses to run when an applied migration's checksum differs from its file's; [`up`]
/// records the edited file's checksum in place of exactly the released one, and [`status`] accepts
/// it, so that a clarified comment never stops a deployed database from migrating. Both checksums
/// are pinned: a later change of the file is a mismatch again (a unit test holds the edited
/// checksum to the embedded file).
const COMMENT_ONLY_EDITS: [(i64, &str, &str); 2] = [
    (
        8,
        "8a22bfdfd543f809b09e0a961c7ef950c53abd59564c4830b626b1ad98b50ef70eb331d08d1e488bb020930706466542",
        "c9ed77f2b5d8b120486fc7aeabe1a016a676592d31a91460599bc6c84df02a0843bafb88d45998fe4ec1c47aef785eb6",
    ),
    (
        12,
        "ee74dcc36840d62beab0d6ea3dafdea1d9c274e7e8021d539cf5bb1e58c70b11d22d2f65a86c815f86510eb188ab6f8a",
        "184c20c2d40ac0d8fa035f0aa835bb21dbbbc8224b213a8bd1dd12ec6ae45bd4c4936ceee3613ca2e91ea43327aa66f1",
    ),
];

/// This binary's up migration `version`.
fn up_migration(version: i64) -> Option<&'static sqlx::migrate::Migration> {
    MIGRATOR.iter().find(|m| m.version == version && m.migration_type.is_up_migration())
}

/// Whether `recorded` is the released checksum of a comment-only edit whose edited checksum is
/// this binary's file.
fn is_comment_only_edit(version: i64, recorded: &[u8]) -> bool {
    COMMENT_ONLY_EDITS.iter().any(|(v, released, edited)| {
        *v == version
            && crate::hex::encode(recorded) == *released
            && up_migration(version).is_some_and(|m| crate::hex::encode(&m.checksum) == *edited)
    })
}

/// Records today's checksum for the applied migrations of [`COMMENT_ONLY_EDITS`].
async fn accept_comment_only_edits(pool: &PgPool) -> Result<(), DbError> {
    if !migrations_table_exists(pool).await? {
        return Ok(());
    }
    for (version, released, edited) in COMMENT_ONLY_EDITS {
        let Some(current) = up_migration(version).filter(|m| crate::hex::encode(&m.checksum) == edited) else {
            continue;
        };
        sqlx::query("UPDATE _sqlx_migrations SET checksum = $1 WHERE version = $2 AND checksum = decode($3, 'hex')")
            .bind(current.checksum.as_ref())
            .bind(version)
            .bind(released)
            .execute(pool)
            .await?;
    }
    Ok(())
}

/// The newest migration version this binary knows.
pub fn head_version() -> i64 {
    MIGRATOR.iter().map(|m| m.version).max().unwrap_or(0)
}

/// What [`up`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpReport {
    /// Whether the bootstrap ran (the connection is a superuser).
    pub bootstrapped: bool,
    /// The version applied before, and after.
    pub from_version: i64,
    /// The version now applied.
    pub to_version: i64,
}

/// Bootstraps when connected as a superuser, then applies every pending migration.
///
/// Without superuser rights the bootstrap is skipped; if a DBA has not run it, migration 1 or 8
/// fails with a message naming `carevault migrate bootstrap-sql`.
#[tracing::instrument(skip_all)]
pub async fn up(pool: &PgPool) -> Result<UpReport, DbError> {
    let bootstrapped = is_superuser(pool).await?;
    if bootstrapped {
        bootstrap(pool).await?;
    }
    let from_version = current_version(pool).await?;
    accept_comment_only_edits(pool).await?;
    MIGRATOR.run(pool).await?;
    Ok(UpReport { bootstrapped, from_version, to_version: current_version(pool).await? })
}

/// Reverts every migration above `target` (`0` reverts everything). Roles and the extension are
/// never dropped: other databases in the cluster use them.
#[tracing::instrument(skip(pool))]
pub async fn down(pool: &PgPool, target: i64) -> Result<(), DbError> {
    // sqlx's undo reverts everything above any number, so an unknown version would silently do
    // nothing (or everything, for a negative one): refuse it.
    if target != 0 && !MIGRATOR.version_exists(target) {
        return Err(DbError::Invalid(crate::ValidationError::new("target", "must be 0 or a known migration version")));
    }
    MIGRATOR.undo(pool, target).await?;
    Ok(())
}

/// Runs [`BOOTSTRAP_SQL`]. Needs a superuser.
pub async fn bootstrap(pool: &PgPool) -> Result<(), DbError> {
    let mut conn = pool.acquire().await?;
    if let Err(error) = sqlx::raw_sql(BOOTSTRAP_SQL).execute(&mut *conn).await {
        // A failed statement inside the script's BEGIN leaves the session in an aborted
        // transaction; never hand such a connection back to the pool.
        conn.close_on_drop();
        return Err(error.into());
    }
    Ok(())
}

/// One migration and whether it is applied.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct MigrationStatus {
    /// Its version.
    pub version: i64,
    /// Its name (the reference's names for 1–7).
    pub description: String,
    /// Whether it is applied (successfully).
    pub applied: bool,
    /// Whether the applied checksum differs from this binary's (the file was edited).
    pub checksum_mismatch: bool,
}

/// The state of every migration this binary knows, oldest first, plus whether the database holds
/// a failed ("dirty") migration.
pub async fn status(pool: &PgPool) -> Result<(Vec<MigrationStatus>, Option<i64>), DbError> {
    let applied = if migrations_table_exists(pool).await? {
        sqlx::query("SELECT version, checksum, success FROM _sqlx_migrations ORDER BY version").fetch_all(pool).await?
    } else {
        Vec::new()
    };
    let dirty = applied.iter().find(|row| !row.get::<bool, _>("success")).map(|row| row.get::<i64, _>("version"));
    let statuses = MIGRATOR
        .iter()
        .filter(|m| m.migration_type.is_up_migration())
        .map(|m| {
            let row = applied.iter().find(|row| row.get::<i64, _>("version") == m.version);
            MigrationStatus {
                version: m.version,
                description: m.description.to_string(),
                applied: row.is_some_and(|row| row.get::<bool, _>("success")),
                checksum_mismatch: row.is_some_and(|row| {
                    let recorded: Vec<u8> = row.get("checksum");
                    recorded != *m.checksum && !is_comment_only_edit(m.version, &recorded)
                }),
            }
        })
        .collect();
    Ok((statuses, dirty))
}

/// The highest applied migration version (0 when none).
pub async fn current_version(pool: &PgPool) -> Result<i64, DbError> {
    if !migrations_table_exists(pool).await? {
        return Ok(0);
    }
    let version: Option<i64> =
        sqlx::query_scalar("SELECT max(version) FROM _sqlx_migrations WHERE success").fetch_one(pool).await?;
    Ok(version.unwrap_or(0))
}

async fn migrations_table_exists(pool: &PgPool) -> Result<bool, DbError> {
    Ok(sqlx::query_scalar("SELECT to_regclass('_sqlx_migrations') IS NOT NULL").fetch_one(pool).await?)
}

async fn is_superuser(pool: &PgPool) -> Result<bool, DbError> {
    Ok(sqlx::query_scalar("SELECT rolsuper FROM pg_catalog.pg_roles WHERE rolname = current_user")
        .fetch_one(pool)
        .await?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn comment_only_edits_pin_the_embedded_files() {
        for (version, _, edited) in COMMENT_ONLY_EDITS {
            let migration = up_migration(version).expect("a known version");
            assert_eq!(
                crate::hex::encode(&migration.checksum),
                edited,
                "migration {version} changed again: it is no longer a comment-only edit"
            );
        }
    }
}
