//! `carevault migrate up | down --target <version> | status [--json] | bootstrap-sql`.

use anyhow::{Context, bail};
use carevault_db::migrate::{self, MIGRATOR, MigrationStatus};
use sqlx::PgPool;

use crate::cli::MigrateCommand;
use crate::database::Database;

/// Runs one migration command against `DATABASE_URL`, or the embedded default when it is unset.
pub async fn run(command: MigrateCommand, database_url: Option<String>) -> anyhow::Result<()> {
    let command = match command {
        MigrateCommand::BootstrapSql => {
            print!("{}", migrate::BOOTSTRAP_SQL);
            return Ok(());
        }
        MigrateCommand::Up => DbCommand::Up,
        MigrateCommand::Down { target } => {
            // Checked before touching any database, so a typo costs nothing (and starts no server).
            check_target(target)?;
            DbCommand::Down { target }
        }
        MigrateCommand::Status { json } => DbCommand::Status { json },
    };

    let database = Database::open(database_url).await?;
    let result = match database.owner_pool().await {
        Ok(pool) => {
            let result = run_on(&pool, &command).await;
            pool.close().await;
            result
        }
        Err(e) => Err(e),
    };
    // Whatever happened, stop the embedded server if we started it.
    database.close().await;
    result
}

/// The migration commands that need a database.
enum DbCommand {
    Up,
    Down { target: i64 },
    Status { json: bool },
}

async fn run_on(pool: &PgPool, command: &DbCommand) -> anyhow::Result<()> {
    match *command {
        DbCommand::Up => {
            let report = migrate::up(pool).await.context("migrate up failed")?;
            if !report.bootstrapped {
                tracing::info!("not a superuser: bootstrap skipped (see `carevault migrate bootstrap-sql`)");
            }
            tracing::info!(from = report.from_version, to = report.to_version, "migrations applied");
            println!("{}", report.to_version);
        }
        DbCommand::Down { target } => {
            let from = migrate::current_version(pool).await?;
            migrate::down(pool, target).await.with_context(|| format!("migrate down --target {target} failed"))?;
            let to = migrate::current_version(pool).await?;
            tracing::info!(from, to, "migrations reverted");
            println!("{to}");
        }
        DbCommand::Status { json } => {
            let (migrations, dirty) = migrate::status(pool).await?;
            let current = migrate::current_version(pool).await?;
            if json {
                print_json(&migrations, current, dirty)?;
            } else {
                print_table(&migrations, current, dirty);
            }
            warn_about(&migrations, dirty);
        }
    }
    Ok(())
}

/// `0` (revert everything) or the version of a migration this binary knows: anything else is a
/// typo, and sqlx would silently treat it as "revert down to the next lower version".
fn check_target(target: i64) -> anyhow::Result<()> {
    if target == 0 || (target > 0 && MIGRATOR.version_exists(target)) {
        return Ok(());
    }
    let versions: Vec<String> =
        MIGRATOR.iter().filter(|m| m.migration_type.is_up_migration()).map(|m| m.version.to_string()).collect();
    bail!(
        "invalid --target {target}: use 0 to revert every migration, or one of the known versions {}",
        versions.join(", ")
    )
}

fn print_json(migrations: &[MigrationStatus], current: i64, dirty: Option<i64>) -> anyhow::Result<()> {
    let value = serde_json::json!({
        "current_version": current,
        "head_version": migrate::head_version(),
        "dirty_version": dirty,
        "migrations": migrations,
    });
    println!("{}", serde_json::to_string_pretty(&value)?);
    Ok(())
}

fn print_table(migrations: &[MigrationStatus], current: i64, dirty: Option<i64>) {
    println!("{:>7}  {:<8} description", "version", "state");
    for migration in migrations {
        let state = match (migration.applied, migration.checksum_mismatch) {
            (true, true) => "CHANGED",
            (true, false) => "applied",
            (false, _) if dirty == Some(migration.version) => "FAILED",
            (false, _) => "pending",
        };
        println!("{:>7}  {:<8} {}", migration.version, state, migration.description);
    }
    println!("current version {current}, head {}", migrate::head_version());
}

fn warn_about(migrations: &[MigrationStatus], dirty: Option<i64>) {
    if let Some(version) = dirty {
        tracing::warn!(version, "migration {version} failed part-way; fix the database by hand before migrating again");
    }
    for migration in migrations.iter().filter(|m| m.checksum_mismatch) {
        tracing::warn!(
            version = migration.version,
            "migration {} was edited after it was applied (checksum mismatch)",
            migration.version
        );
    }
}

#[cfg(test)]
mod tests {
    use super::check_target;

    #[test]
    fn targets_must_be_zero_or_a_known_version() {
        assert!(check_target(0).is_ok());
        assert!(check_target(migrate_head()).is_ok());
        for bad in [-1, i64::MIN, migrate_head() + 1, 99_999] {
            let message = check_target(bad).expect_err("refused").to_string();
            assert!(message.contains("invalid --target"), "{message}");
        }
    }

    fn migrate_head() -> i64 {
        carevault_db::migrate::head_version()
    }
}
