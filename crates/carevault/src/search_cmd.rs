//! The per-tenant search indexes from the binary: `carevault search reconcile` (one pass, for a
//! schedule) and the maintenance task of `carevault serve` (a pass every
//! `SEARCH_INDEX_INTERVAL_SECONDS` when the server has the owner's URL). What a pass does is in
//! `carevault_db::search_index`.

use std::time::Duration;

use anyhow::{Context, bail};
use carevault_db::search_index::{self, IndexPolicy, ReconcileOutcome};
use carevault_db::{AppPool, PlatformPool};
use sqlx::PgPool;

use crate::admin::pool_config;
use crate::database::{self, Database};

/// How long `search reconcile` waits between tries while another reconciler holds the lock.
const BUSY_RETRY: Duration = Duration::from_secs(2);
/// How long it waits at most: a pass that builds a large tenant's index takes minutes, not hours.
const BUSY_MAX_WAIT: Duration = Duration::from_secs(3600);

/// `carevault search reconcile`: waits for any running pass, then makes one and prints what it
/// changed, one line each.
pub async fn reconcile(database_url: Option<String>) -> anyhow::Result<()> {
    let database = Database::open(database_url).await?;
    let result = async {
        let owner = database.owner_pool().await?;
        database.ensure_schema(&owner).await?;
        let app = database.app_pool(&owner).await?;
        let platform = PlatformPool::connect_lazy(&database.login_url("carevault_ops"), pool_config())?;
        let waiting_since = std::time::Instant::now();
        let outcome = loop {
            match search_index::reconcile(&owner, &app, &platform, IndexPolicy::DEFAULT).await {
                Ok(ReconcileOutcome::Busy) if waiting_since.elapsed() > BUSY_MAX_WAIT => {
                    break Err(anyhow::anyhow!(
                        "another reconciler has held the lock for over {} minutes; see pg_locks (advisory lock {})",
                        BUSY_MAX_WAIT.as_secs() / 60,
                        search_index::RECONCILE_LOCK
                    ));
                }
                Ok(ReconcileOutcome::Busy) => {
                    tracing::info!("another reconciler is running; waiting for it");
                    tokio::time::sleep(BUSY_RETRY).await;
                }
                Ok(ReconcileOutcome::Done { applied, failed }) => break Ok((applied, failed)),
                Err(e) => break Err(e.into()),
            }
        };
        app.close().await;
        platform.close().await;
        owner.close().await;
        let (applied, failed) = outcome.context("reconciling the search indexes failed")?;
        if applied.is_empty() && failed.is_empty() {
            println!("search indexes: nothing to do");
        }
        for change in &applied {
            println!("{change}");
        }
        for (change, error) in &failed {
            eprintln!("failed: {change}: {error}");
        }
        if !failed.is_empty() {
            bail!("{} of {} search index changes failed", failed.len(), failed.len() + applied.len());
        }
        Ok(())
    }
    .await;
    database.close().await;
    result
}

/// Runs a pass now and then every `interval`, for as long as the returned task lives (abort it on
/// shutdown; a build in progress finishes in its server session, or, cut short, leaves an invalid
/// index, which the next pass rebuilds). A failed pass is logged and retried at the next tick.
pub fn spawn_maintenance(
    owner_url: String,
    app: AppPool,
    platform: PlatformPool,
    interval: Duration,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut owner: Option<PgPool> = None;
        let mut ticks = tokio::time::interval(interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            if owner.is_none() {
                match database::owner_pool(&owner_url).await {
                    Ok(pool) => owner = Some(pool),
                    Err(e) => {
                        tracing::warn!("search index maintenance cannot connect as the owner: {e:#}");
                        continue;
                    }
                }
            }
            let Some(pool) = &owner else { continue };
            match search_index::reconcile(pool, &app, &platform, IndexPolicy::DEFAULT).await {
                Ok(ReconcileOutcome::Done { applied, failed }) if !(applied.is_empty() && failed.is_empty()) => {
                    tracing::info!(applied = applied.len(), failed = failed.len(), "search indexes reconciled");
                }
                Ok(_) => {}
                Err(e) => tracing::warn!("search index maintenance failed (retried in {interval:?}): {e}"),
            }
        }
    })
}
