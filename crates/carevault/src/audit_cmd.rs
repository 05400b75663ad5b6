//! `carevault audit seal | verify | public-key` and the sealer task of `carevault serve`. What a
//! pass and a check do is in `carevault_db::audit_chain`.

use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use carevault_db::audit_chain::{
    self, AuditPublicKey, AuditSigningKey, CheckpointSink, MAX_SEAL_BATCH, Sealed, SeqRange, TenantVerdict, Trust,
};
use carevault_db::{PlatformPool, TenantId};
use carevault_pg::Paths;

use crate::admin::pool_config;
use crate::cli::AuditCommand;
use crate::config::{self, AuditConfig};
use crate::database::Database;
use crate::dev_secret;

/// How long `audit seal` waits for a pass running elsewhere before giving up.
const BUSY_MAX_WAIT: Duration = Duration::from_secs(60);

/// The signing key and the sink: `AUDIT_SIGNING_KEY` and `AUDIT_CHECKPOINT_DIR`, or, outside
/// production when unset, the key generated in the data directory and `<data dir>/audit-checkpoints`.
pub fn signer(config: &AuditConfig) -> anyhow::Result<(AuditSigningKey, CheckpointSink)> {
    let data_dir = || Paths::from_env().map(|p| p.data_dir);
    let key = match &config.signing_key {
        Some(key) => key.clone(),
        None => dev_secret::load_or_create_audit_signing_key(&data_dir()?)?,
    };
    let dir = match &config.checkpoint_dir {
        Some(dir) => dir.clone(),
        None => data_dir()?.join("audit-checkpoints"),
    };
    Ok((key, CheckpointSink::directory(dir)))
}

/// Runs an `audit` command through the platform login (`carevault_ops`, which may switch to
/// `carevault_sealer`); `verify --file` and `public-key` need no database.
pub async fn run(command: AuditCommand, database_url: Option<String>) -> anyhow::Result<()> {
    // An export checked with the keys given needs nothing else: no configuration, no key of this
    // machine's (an auditor's machine has neither).
    if let AuditCommand::Verify { file: Some(file), public_key, json, from, .. } = &command
        && !public_key.is_empty()
    {
        return verify_file(file, &parse_public_keys(public_key)?, *json, *from);
    }
    let config = config::audit_config(&crate::env_var).map_err(|e| anyhow!("{e}"))?;
    // Checked before the database is opened: a wrong key, path or argument fails at once.
    let (key, sink) = signer(&config)?;
    let action = match command {
        AuditCommand::PublicKey => {
            let public = key.public_key();
            println!("{} {}", public.key_id(), public.to_hex());
            return Ok(());
        }
        AuditCommand::Verify { file: Some(file), public_key, json, from, .. } => {
            let keys = public_keys(&public_key, &key)?;
            return verify_file(&file, &keys, json, from);
        }
        AuditCommand::Seal => Action::Seal,
        AuditCommand::Verify { tenant, json, public_key, checkpoint_dir, file: None, .. } => Action::Verify {
            tenant: tenant.as_deref().map(tenant_id).transpose()?,
            json,
            trust: Trust {
                keys: public_keys(&public_key, &key)?,
                sink: Some(checkpoint_dir.map_or(sink.clone(), CheckpointSink::directory)),
            },
        },
        AuditCommand::Export { tenant, from, to } => {
            if from < 1 || to.is_some_and(|to| to < from) {
                bail!("--from and --to must be sequence numbers with 1 <= from <= to");
            }
            Action::Export { tenant: tenant_id(&tenant)?, from, to }
        }
    };
    let database = Database::open(database_url).await?;
    let result = async {
        let owner = database.owner_pool().await?;
        database.ensure_schema(&owner).await?;
        owner.close().await;
        let platform = PlatformPool::connect_lazy(&database.login_url("carevault_ops"), pool_config())?;
        let result = match action {
            Action::Seal => seal_all(&platform, &key, &sink).await,
            Action::Verify { tenant, json, trust } => verify(&platform, tenant, json, &trust).await,
            Action::Export { tenant, from, to } => export(&platform, &key, &sink, tenant, from, to).await,
        };
        platform.close().await;
        result
    }
    .await;
    database.close().await;
    result
}

/// A command that needs the database, its input checked.
enum Action {
    Seal,
    Verify { tenant: Option<TenantId>, json: bool, trust: Trust },
    Export { tenant: TenantId, from: i64, to: Option<i64> },
}

fn tenant_id(text: &str) -> anyhow::Result<TenantId> {
    TenantId::parse(text).map_err(|_| anyhow!("--tenant is not a tenant id (a UUID)"))
}

/// `--public-key` values, or the public key of the signing key when none is given.
fn public_keys(given: &[String], key: &AuditSigningKey) -> anyhow::Result<Vec<AuditPublicKey>> {
    if given.is_empty() { Ok(vec![key.public_key()]) } else { parse_public_keys(given) }
}

fn parse_public_keys(given: &[String]) -> anyhow::Result<Vec<AuditPublicKey>> {
    given.iter().map(|k| AuditPublicKey::parse(k).map_err(|e| anyhow!("--public-key {e}"))).collect()
}

/// Passes until nothing is left to chain, signing the heads that moved; then copies the latest
/// checkpoints to the sink. Prints what it did.
async fn seal_all(platform: &PlatformPool, key: &AuditSigningKey, sink: &CheckpointSink) -> anyhow::Result<()> {
    let (chained, checkpointed) = seal_quietly(platform, key, sink).await?;
    println!(
        "audit chain: {chained} rows sealed, {checkpointed} checkpoints signed (kept in {})",
        sink.dir().display()
    );
    Ok(())
}

/// [`seal_all`] without the report: (rows chained, checkpoints signed).
async fn seal_quietly(
    platform: &PlatformPool,
    key: &AuditSigningKey,
    sink: &CheckpointSink,
) -> anyhow::Result<(u64, u64)> {
    let started = std::time::Instant::now();
    let (mut chained, mut checkpointed) = (0, 0);
    loop {
        match audit_chain::seal(platform, Some(key)).await.context("sealing the audit chain failed")? {
            Sealed::Done { chained: rows, checkpointed: signed } => {
                (chained, checkpointed) = (chained + rows, checkpointed + signed);
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
    keep_checkpoints(platform, sink, key).await?;
    Ok((chained, checkpointed))
}

/// Copies every tenant's latest checkpoint to the sink (those already there are left alone), if
/// `key` signed it: the database's copy is the owner's to change, and the sink must only ever
/// hold what the signer made. One tenant's failure does not stop the others.
async fn keep_checkpoints(platform: &PlatformPool, sink: &CheckpointSink, key: &AuditSigningKey) -> anyhow::Result<()> {
    let public = [key.public_key()];
    let mut failed = Vec::new();
    for checkpoint in audit_chain::latest_checkpoints(platform).await? {
        if !checkpoint.is_signed_by(&public) {
            failed.push(format!(
                "tenant {}: the database's latest checkpoint (seq {}) is not signed by this key, so it is not kept",
                checkpoint.tenant_id, checkpoint.seq
            ));
        } else if let Err(e) = sink.write(&checkpoint) {
            failed.push(e.to_string());
        }
    }
    if !failed.is_empty() {
        bail!("{} checkpoints not kept outside the database: {}", failed.len(), failed.join("; "));
    }
    Ok(())
}

async fn verify(platform: &PlatformPool, tenant: Option<TenantId>, json: bool, trust: &Trust) -> anyhow::Result<()> {
    let verdicts = audit_chain::verify(platform, tenant, trust).await.context("checking the audit chain failed")?;
    report(&verdicts, json)
}

fn verify_file(file: &std::path::Path, keys: &[AuditPublicKey], json: bool, from: i64) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?;
    let lines = audit_chain::parse_export(&text).with_context(|| format!("{} is not an export", file.display()))?;
    let verdict = audit_chain::verify_export(&lines, keys, from).with_context(|| format!("{}", file.display()))?;
    report(&[verdict], json)
}

/// Prints the verdicts; an error when any chain is broken.
fn report(verdicts: &[TenantVerdict], json: bool) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(verdicts)?);
    } else {
        for verdict in verdicts {
            println!("{}", line(verdict));
        }
    }
    let broken = verdicts.iter().filter(|v| !v.intact()).count();
    if broken > 0 {
        bail!("the audit chain of {broken} of {} tenants is broken", verdicts.len());
    }
    Ok(())
}

/// Seals and signs first, so that the export ends at a checkpoint of the current head.
async fn export(
    platform: &PlatformPool,
    key: &AuditSigningKey,
    sink: &CheckpointSink,
    tenant: TenantId,
    from: i64,
    to: Option<i64>,
) -> anyhow::Result<()> {
    use std::io::Write as _;
    seal_quietly(platform, key, sink).await?;
    let to = match to {
        Some(to) => to,
        None => audit_chain::latest_checkpoints(platform)
            .await?
            .into_iter()
            .find(|c| c.tenant_id == tenant)
            .map_or(0, |c| c.seq),
    };
    let range = SeqRange { from, to };
    let lines =
        audit_chain::export(platform, tenant, range, Some(sink)).await.context("exporting the audit chain failed")?;
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    for line in &lines {
        serde_json::to_writer(&mut out, line)?;
        out.write_all(b"\n")?;
    }
    out.flush()?;
    Ok(())
}

/// One tenant's line: `<tenant> intact: <n> rows, head <seq>, ...`, or the first break.
fn line(verdict: &TenantVerdict) -> String {
    let place = |seq: Option<i64>| seq.map_or_else(|| "none".to_string(), |s| s.to_string());
    let summary = format!(
        "{} rows, head {}, checkpoint {}, {} unsealed, {} late",
        verdict.chained,
        place(verdict.head),
        place(verdict.checkpoint),
        verdict.unsealed,
        verdict.late
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

/// Runs a pass every `config.seal_interval`, signing checkpoints every
/// `config.checkpoint_interval`, for as long as the returned task lives (abort it on shutdown: a
/// pass cut short rolls back). A failed pass is logged and retried at the next tick; a pass that
/// finds another server's sealer running does nothing.
pub fn spawn_sealer(
    platform: PlatformPool,
    config: &AuditConfig,
    key: AuditSigningKey,
    sink: CheckpointSink,
) -> Option<tokio::task::JoinHandle<()>> {
    let interval = config.seal_interval?;
    let checkpoint_interval = config.checkpoint_interval;
    Some(tokio::spawn(async move {
        let mut ticks = tokio::time::interval(interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_checkpoint: Option<tokio::time::Instant> = None;
        // Another server's passes make this one Busy now and then; one held for minutes is a
        // stuck (or hostile) session on the sealer's row, worth a warning.
        let mut busy_since: Option<tokio::time::Instant> = None;
        loop {
            ticks.tick().await;
            let due = checkpoint_interval.is_some_and(|every| last_checkpoint.is_none_or(|at| at.elapsed() >= every));
            match audit_chain::seal(&platform, due.then_some(&key)).await {
                Ok(Sealed::Done { chained, checkpointed }) => {
                    busy_since = None;
                    tracing::debug!(chained, checkpointed, "audit chain sealed");
                    if due {
                        last_checkpoint = Some(tokio::time::Instant::now());
                        if let Err(e) = keep_checkpoints(&platform, &sink, &key).await {
                            tracing::warn!("keeping the audit checkpoints outside the database failed: {e:#}");
                        }
                    }
                }
                Ok(Sealed::Busy) => {
                    let since = *busy_since.get_or_insert_with(tokio::time::Instant::now);
                    if since.elapsed() >= BUSY_MAX_WAIT {
                        tracing::warn!(
                            "the audit sealer's row has been locked by another session for over a minute: nothing is \
                             being sealed (see pg_locks on audit_sealer)"
                        );
                        busy_since = Some(tokio::time::Instant::now());
                    }
                }
                Err(e) => tracing::warn!("sealing the audit chain failed (retried in {interval:?}): {e}"),
            }
        }
    }))
}
