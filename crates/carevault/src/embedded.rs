//! The embedded default: with no `DATABASE_URL`, carevault runs on a local cluster
//! under its data directory, created on first use and persisting between runs.

use anyhow::Context;
use carevault_db::cluster::{DatabaseCreation, create_database, database_exists};
use carevault_pg::{Cluster, ClusterOptions, Paths, PgBinaries, SUPERUSER};
use sqlx::{Connection, PgConnection};

/// The database carevault uses inside the embedded cluster.
pub const DATABASE: &str = "carevault";

/// Starts the embedded cluster (or reuses a running one) and creates [`DATABASE`] if missing.
pub async fn start() -> anyhow::Result<Cluster> {
    // pip, initdb and pg_ctl block; keep them off the async runtime.
    let cluster = tokio::task::spawn_blocking(|| -> anyhow::Result<Cluster> {
        let paths = Paths::from_env()?;
        let binaries = PgBinaries::locate(&paths)?;
        let options = ClusterOptions::persistent(paths.data_dir.join("pg18"));
        let cluster = Cluster::start_or_reuse(&binaries, &options)?;
        Ok(cluster)
    })
    .await
    .context("the embedded PostgreSQL start-up task failed")?
    .context("cannot start the embedded PostgreSQL")?;
    tracing::info!(
        data_dir = %cluster.data_dir().display(),
        started_here = cluster.started_here(),
        "embedded PostgreSQL is running"
    );
    if let Err(e) = ensure_database(&cluster).await {
        // Do not leave a server we started running just because the database could not be made.
        stop(cluster).await;
        return Err(e);
    }
    Ok(cluster)
}

/// Stops the embedded cluster if this process started it and no other process uses it
/// (`carevault serve` running on it, say). Failing to stop is logged, not fatal: the work is done.
pub async fn stop(cluster: Cluster) {
    match tokio::task::spawn_blocking(move || cluster.stop()).await {
        Ok(Ok(true)) => tracing::info!("embedded PostgreSQL stopped"),
        Ok(Ok(false)) => tracing::debug!("embedded PostgreSQL left running (not started here, or still in use)"),
        Ok(Err(e)) => tracing::warn!("could not stop the embedded PostgreSQL: {e}"),
        Err(e) => tracing::warn!("could not stop the embedded PostgreSQL: {e}"),
    }
}

/// Creates [`DATABASE`] unless it exists.
async fn ensure_database(cluster: &Cluster) -> anyhow::Result<()> {
    let mut admin = PgConnection::connect(&cluster.url(SUPERUSER, "postgres"))
        .await
        .context("cannot connect to the embedded PostgreSQL")?;
    // Looked up first: creating an existing database would log an error in the server's log on
    // every start.
    if !database_exists(&mut admin, DATABASE).await? {
        match create_database(&mut admin, DATABASE)
            .await
            .with_context(|| format!("cannot create the database {DATABASE}"))?
        {
            DatabaseCreation::Created => tracing::info!("created database {DATABASE}"),
            // Another carevault process created it meanwhile.
            DatabaseCreation::AlreadyExists => {}
        }
    }
    admin.close().await?;
    Ok(())
}
