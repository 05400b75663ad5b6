//! What the audit chain costs the write path, and how fast a chain is verified, side by side in
//! one run (issue 11).
//!
//! `cargo bench -p carevault-db --bench audit_chain [-- ROUNDS SECONDS]` uses two scratch
//! databases of the test cluster, cloned from the migrated template:
//!
//! * `chained`: as migrated, with the sealer running every second (and signing a checkpoint every
//!   tenth pass), as `carevault serve` runs it;
//! * `unchained`: the same schema with the chain's write-path parts taken off: the stamp trigger
//!   disabled (`xact_id` defaulting to 0), the `xact_id` index and the hashable-value CHECKs
//!   dropped, no sealer. What every audit insert cost before migration 19; the baseline.
//! * `at insert`: the design not taken, each audit row chained in its own transaction under its
//!   tenant's lock held until commit (a trigger that takes a per-tenant advisory lock and appends
//!   the chain entry).
//!
//! In each, 8 writers on one tenant run authenticated reads through the data layer (`TenantTx`,
//! as `carevault_app`: a verified tenant transaction, `tenant().read()`, which writes its audit
//! row, commit) for SECONDS. Each round starts with another side; the figure is the median of
//! transactions per second, and the ratio to `unchained` is taken per round.
//!
//! Then verification: 100,000 rows inserted in one tenant of the `chained` database, sealed (the
//! time is reported as rows per second), checkpointed, and verified with `audit_chain::verify`
//! (rows per second); the untouched chain must verify intact.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use carevault_db::audit_chain::{self, AuditSigningKey, Sealed, Trust};
use carevault_db::{AppPool, AuditContext, PlatformPool, PlatformTx, TenantId, TenantStatus, TenantTx};
use carevault_testdb::TestDb;
use sqlx::{Connection, PgConnection};

const WRITERS: usize = 8;
const VERIFY_ROWS: i64 = 100_000;

fn key() -> AuditSigningKey {
    AuditSigningKey::parse(&"07".repeat(32)).expect("a key")
}

async fn tenant(platform: &PlatformPool, name: &str) -> TenantId {
    let mut tx = PlatformTx::begin(platform, AuditContext::default()).await.expect("platform tx");
    let name = carevault_db::BoundedText::parse("name", name, 255).expect("a name");
    let tenant = tx.tenants().create(name, TenantStatus::Active).await.expect("a tenant");
    tx.commit().await.expect("commit");
    tenant.id
}

/// Transactions per second of [`WRITERS`] writers for `seconds`.
async fn throughput(app: &AppPool, tenant: TenantId, seconds: u64) -> f64 {
    let done = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = (0..WRITERS)
        .map(|_| {
            let (app, done, stop) = (app.clone(), done.clone(), stop.clone());
            tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    let mut tx = TenantTx::begin(&app, tenant, AuditContext::default()).await.expect("begin");
                    tx.tenant().read().await.expect("an audited read");
                    tx.commit().await.expect("commit");
                    done.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    let started = Instant::now();
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    stop.store(true, Ordering::Relaxed);
    for writer in writers {
        writer.await.expect("a writer");
    }
    done.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64()
}

/// Runs a pass every second (a checkpoint every tenth) until `stop`.
fn sealer(platform: PlatformPool, stop: Arc<AtomicBool>) -> tokio::task::JoinHandle<u64> {
    tokio::spawn(async move {
        let (mut passes, mut chained) = (0u64, 0u64);
        while !stop.load(Ordering::Relaxed) {
            let key = key();
            if let Sealed::Done { chained: rows, .. } =
                audit_chain::seal(&platform, (passes % 10 == 0).then_some(&key)).await.expect("a pass")
            {
                chained += rows;
            }
            passes += 1;
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        chained
    })
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn range(values: &[f64]) -> (f64, f64) {
    (values.iter().copied().fold(f64::INFINITY, f64::min), values.iter().copied().fold(0.0, f64::max))
}

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1).filter(|a| !a.starts_with("--"));
    let rounds: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(5);
    let seconds: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(10);

    let chained_db = TestDb::new().await;
    let unchained_db = TestDb::new().await;
    let at_insert_db = TestDb::new().await;
    let owner_sql = async |db: &TestDb, sql: &'static str| {
        let mut owner = PgConnection::connect(&db.owner_url()).await.expect("the owner");
        sqlx::raw_sql(sql).execute(&mut owner).await.expect(sql);
        owner.close().await.expect("closing");
    };
    owner_sql(
        &unchained_db,
        "ALTER TABLE audit_logs DISABLE TRIGGER audit_logs_stamp; \
         ALTER TABLE audit_logs ALTER COLUMN xact_id SET DEFAULT '0'; \
         DROP INDEX idx_audit_logs_xact; \
         ALTER TABLE audit_logs DROP CONSTRAINT audit_logs_hashable_metadata, \
             DROP CONSTRAINT audit_logs_hashable_user_agent, DROP CONSTRAINT audit_logs_hashable_created_at;",
    )
    .await;
    // The design not taken: each row chained as it is inserted, under its tenant's lock held until
    // commit (the advisory lock stands for the head row a chain at insert would update).
    owner_sql(
        &at_insert_db,
        "CREATE FUNCTION bench_chain_at_insert() RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER \
             SET search_path = pg_catalog AS $$ BEGIN \
             PERFORM pg_advisory_xact_lock(hashtextextended(NEW.tenant_id::text, 0)); \
             INSERT INTO public.audit_chain (tenant_id, audit_id) VALUES (NEW.tenant_id, NEW.id); \
             RETURN NULL; END $$; \
         CREATE TRIGGER bench_chain_at_insert AFTER INSERT ON audit_logs \
             FOR EACH ROW EXECUTE FUNCTION bench_chain_at_insert();",
    )
    .await;

    // (name, pool, tenant, runs the sealer).
    let mut sides = Vec::new();
    for (name, db, sealer) in
        [("chained", &chained_db, true), ("unchained", &unchained_db, false), ("at insert", &at_insert_db, false)]
    {
        let (app, platform) = (db.app_pool(WRITERS as u32), db.platform_pool());
        let tenant = tenant(&platform, "bench").await;
        // Warm: connections opened, plans cached.
        throughput(&app, tenant, 2).await;
        sides.push((name, app, platform, tenant, sealer));
    }

    println!("write path: {WRITERS} writers, authenticated audited reads, {rounds} rounds of {seconds} s each");
    let mut figures: Vec<Vec<f64>> = vec![Vec::new(); sides.len()];
    let mut sealed = 0;
    for round in 0..rounds {
        let mut line = Vec::new();
        // Each round starts with another side, so drift of the machine hits them all alike.
        for k in 0..sides.len() {
            let index = (round + k) % sides.len();
            let (name, app, platform, tenant, with_sealer) = &sides[index];
            let stop = Arc::new(AtomicBool::new(false));
            let task = with_sealer.then(|| sealer(platform.clone(), stop.clone()));
            let tps = throughput(app, *tenant, seconds).await;
            stop.store(true, Ordering::Relaxed);
            if let Some(task) = task {
                sealed += task.await.expect("the sealer");
            }
            figures[index].push(tps);
            line.push(format!("{name} {tps:.0}"));
        }
        println!("  round {}: {} tx/s", round + 1, line.join(", "));
    }
    let baseline = figures[1].clone();
    for (index, (name, ..)) in sides.iter().enumerate() {
        let ratios: Vec<f64> = figures[index].iter().zip(&baseline).map(|(a, b)| a / b).collect();
        let (lo, hi) = range(&ratios);
        println!(
            "  {name}: median {:.0} tx/s; / unchained {:.2} ({lo:.2}-{hi:.2})",
            median(figures[index].clone()),
            median(ratios.clone())
        );
    }
    println!("  {sealed} rows sealed by the chained side's sealer meanwhile");
    let chained_platform = sides[0].2.clone();

    // Verification.
    let verify_tenant = tenant(&chained_platform, "verify").await;
    let mut owner = PgConnection::connect(&chained_db.owner_url()).await.expect("the owner");
    sqlx::query(
        "INSERT INTO audit_logs (tenant_id, action, resource_type, resource_id, ip_address, user_agent, metadata) \
         SELECT $1, 'document.read', 'document', gen_random_uuid(), '10.0.0.1', 'bench/1', \
                jsonb_build_object('request_id', gen_random_uuid(), 'n', n) \
         FROM generate_series(1, $2) AS n",
    )
    .bind(verify_tenant)
    .bind(VERIFY_ROWS)
    .execute(&mut owner)
    .await
    .expect("100,000 rows");
    owner.close().await.expect("closing");
    let started = Instant::now();
    let mut rows = 0;
    loop {
        match audit_chain::seal(&chained_platform, Some(&key())).await.expect("a pass") {
            Sealed::Done { chained: 0, .. } => break,
            Sealed::Done { chained, .. } => rows += chained,
            Sealed::Busy => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
    let seal_rate = rows as f64 / started.elapsed().as_secs_f64();
    let trust = Trust { keys: vec![key().public_key()], sink: None };
    let mut rates = Vec::new();
    for _ in 0..3 {
        let started = Instant::now();
        let verdicts = audit_chain::verify(&chained_platform, Some(verify_tenant), &trust).await.expect("verification");
        rates.push(verdicts[0].chained as f64 / started.elapsed().as_secs_f64());
        assert!(verdicts[0].intact(), "a false positive on an untouched chain: {:?}", &verdicts[0].breaks[..1]);
        assert!(verdicts[0].chained > VERIFY_ROWS as u64 && verdicts[0].checkpoint == verdicts[0].head);
    }
    let (lo, hi) = range(&rates);
    println!(
        "verification: {} rows sealed at {seal_rate:.0} rows/s; verified intact at {:.0} rows/s ({lo:.0}-{hi:.0}, 3 runs)",
        rows,
        median(rates)
    );
    for (_, app, platform, ..) in sides {
        app.close().await;
        platform.close().await;
    }
}
