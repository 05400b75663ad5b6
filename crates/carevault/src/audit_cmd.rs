//! `carevault audit seal | verify` and the sealer task of `carevault serve`. What a pass and a
//! check do is in `carevault_db::audit_chain`.

use std::time::Duration;

use anyhow::{Context, bail};
use carevault_db::audit_chain::{self, MAX_SEAL_BATCH, Sealed, TenantVerdict};
use carevault_db::{PlatformPool, TenantId};

use crate::admin::pool_config;
use crate::cli::AuditCommand;
use crate::database::Database;

/// How long `audit seal` waits for a pass running elsewhere before giving up.
const BUSY_MAX_WAIT: Duration = Duration::from_secs(60);

/// Runs an `audit` command through the platform login (`carevault_ops`, which may switch to
/// `carevault_sealer`).
pub async fn run(command: AuditCommand, database_url: Option<String>) -> anyhow::Result<()> {
    let database = Database::open(database_url).await?;
    let result = async {
        let owner = database.owner_pool().await?;
        database.ensure_schema(&owner).await?;
        owner.close().await;
        let platform = PlatformPool::connect_lazy(&database.login_url("carevault_ops"), pool_config())?;
        let result = match command {
            AuditCommand::Seal => seal_all(&platform).await,
            AuditCommand::Verify { tenant, json } => verify(&platform, tenant.as_deref(), json).await,
        };
        platform.close().await;
        result
    }
    .await;
    database.close().await;
    result
}

/// Passes until nothing is left to chain; prints how many rows were chained.
async fn seal_all(platform: &PlatformPool) -> anyhow::Result<()> {
    let started = std::time::Instant::now();
    let mut total = 0;
    loop {
        match audit_chain::seal(platform).await.context("sealing the audit chain failed")? {
            Sealed::Rows(rows) => {
                total += rows;
                if rows < MAX_SEAL_BATCH as u64 {
                    break;
                }
            }
            Sealed::Busy if started.elapsed() > BUSY_MAX_WAIT => {
                bail!("another sealer has held the audit_sealer row for over a minute; see pg_locks")
            }
            Sealed::Busy => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
    println!("audit chain: {total} rows sealed");
    Ok(())
}

async fn verify(platform: &PlatformPool, tenant: Option<&str>, json: bool) -> anyhow::Result<()> {
    let tenant = tenant
        .map(|t| TenantId::parse(t).map_err(|_| anyhow::anyhow!("--tenant is not a tenant id (a UUID)")))
        .transpose()?;
    let verdicts = audit_chain::verify(platform, tenant).await.context("reading the audit chain failed")?;
    if json {
        println!("{}", serde_json::to_string_pretty(&verdicts)?);
    } else {
        for verdict in &verdicts {
            println!("{}", line(verdict));
        }
    }
    let broken = verdicts.iter().filter(|v| !v.intact()).count();
    if broken > 0 {
        bail!("the audit chain of {broken} of {} tenants is broken", verdicts.len());
    }
    Ok(())
}

/// One tenant's line: `<tenant> intact: <n> rows, head <seq>, <u> unsealed`, or the first break.
fn line(verdict: &TenantVerdict) -> String {
    let summary = format!(
        "{} rows, head {}, {} unsealed",
        verdict.chained,
        verdict.head.map_or_else(|| "none".to_string(), |h| h.to_string()),
        verdict.unsealed
    );
    match verdict.breaks.first() {
        None => format!("{} intact: {summary}", verdict.tenant_id),
        Some(first) => format!(
            "{} BROKEN at seq {}: {} ({} break{} in all; {summary})",
            verdict.tenant_id,
            first.seq,
            first.kind.as_str(),
            verdict.breaks.len(),
            if verdict.breaks.len() == 1 { "" } else { "s" }
        ),
    }
}

/// Runs a pass now and then every `interval`, for as long as the returned task lives (abort it on
/// shutdown: a pass cut short rolls back). A failed pass is logged and retried at the next tick;
/// a pass that finds another server's sealer running does nothing.
pub fn spawn_sealer(platform: PlatformPool, interval: Duration) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval(interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            match audit_chain::seal(&platform).await {
                Ok(Sealed::Rows(rows)) => tracing::debug!(rows, "audit rows sealed"),
                Ok(Sealed::Busy) => {}
                Err(e) => tracing::warn!("sealing the audit chain failed (retried in {interval:?}): {e}"),
            }
        }
    })
}
