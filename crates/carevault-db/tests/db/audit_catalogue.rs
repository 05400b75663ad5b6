//! The audit chain's tampering catalogue (issue 11): each attempt is made as the superuser, with
//! the triggers off where it needs them, on a sealed chain of 10,000 rows that 8 concurrent
//! writers produced while the sealer ran and signed checkpoints, and while 2 writers go on
//! writing. `audit verify` must name each one with the right place and kind.
//!
//! The chain is built once per migration set and cloned per case (`TestDb::from_fixture`). With
//! `CAREVAULT_EVIDENCE_DIR` set, each case writes `$CAREVAULT_EVIDENCE_DIR/audit_catalogue/<case>.json`
//! (`{case, sql, expected, observed, passed}`) for docs/SECURITY_REPORT.md.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use carevault_db::audit_chain::{self, AuditSigningKey, BreakKind, Checkpoint, CheckpointSink, Sealed, Trust};
use carevault_db::{AuditAction, AuditContext, TenantId, TenantTx};
use carevault_testdb::TestDb;
use serde_json::json;
use sqlx::{Connection, PgConnection, Row};

use crate::fixtures::tenant;

/// Rows written by the fixture's writers (the chain also holds the tenant's creation row): 10,000
/// and more, divisible by the phases, writers and rows per transaction.
const ROWS: usize = 10_240;
const WRITERS: usize = 8;
const ROWS_PER_TRANSACTION: usize = 10;

fn signing_key() -> AuditSigningKey {
    AuditSigningKey::parse(&"07".repeat(32)).expect("a key")
}

/// Writes `transactions` transactions of [`ROWS_PER_TRANSACTION`] audit rows each into `tenant`
/// (or until `stop`).
async fn write(app: carevault_db::AppPool, tenant: TenantId, transactions: usize, stop: Arc<AtomicBool>) {
    for n in 0..transactions {
        if stop.load(Ordering::Relaxed) {
            return;
        }
        let mut tx = TenantTx::begin(&app, tenant, AuditContext::default()).await.expect("a tenant transaction");
        for k in 0..ROWS_PER_TRANSACTION {
            let details = json!({ "transaction": n, "row": k });
            tx.audit_log().append(AuditAction::AccessDenied, tenant.as_uuid(), details).await.expect("an audit row");
        }
        tx.commit().await.expect("commit");
    }
}

/// Checkpoints the fixture signs, after each quarter of its rows.
const PHASES: usize = 4;

/// The fixture: tenant `A` with [`ROWS`] rows from [`WRITERS`] concurrent writers, sealed by
/// passes running alongside them, in [`PHASES`] phases each ended by a pass that signs a
/// checkpoint.
async fn build(db: &TestDb) {
    let (platform, app) = (db.platform_pool(), db.app_pool(WRITERS as u32));
    let a = tenant(&platform, "A").await;
    let stop = Arc::new(AtomicBool::new(false));
    let per_writer = ROWS / PHASES / WRITERS / ROWS_PER_TRANSACTION;
    for _ in 0..PHASES {
        let writers: Vec<_> =
            (0..WRITERS).map(|_| tokio::spawn(write(app.clone(), a, per_writer, stop.clone()))).collect();
        while !writers.iter().all(|w| w.is_finished()) {
            audit_chain::seal(&platform, None).await.expect("a pass");
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        for writer in writers {
            writer.await.expect("a writer");
        }
        let signed = audit_chain::seal(&platform, Some(&signing_key())).await.expect("a signing pass");
        assert!(matches!(signed, Sealed::Done { checkpointed: 1, .. }), "{signed:?}");
    }
    app.close().await;
    platform.close().await;
}

/// A case: a clone of the fixture, its checkpoints copied to a scratch sink, 2 writers running.
struct Case {
    name: &'static str,
    sql: Vec<String>,
    db: TestDb,
    tenant: TenantId,
    head: i64,
    checkpoints: Vec<i64>,
    sink: CheckpointSink,
    stop: Arc<AtomicBool>,
    writers: Vec<tokio::task::JoinHandle<()>>,
}

impl Case {
    async fn start(name: &'static str) -> Case {
        let db = TestDb::from_fixture("audit_chain_10k_v4", build).await;
        let mut owner = PgConnection::connect(&db.owner_url()).await.expect("the superuser");
        let tenant: TenantId = sqlx::query_scalar("SELECT id FROM tenants WHERE name = 'A'")
            .fetch_one(&mut owner)
            .await
            .expect("tenant A");
        let head: i64 = sqlx::query_scalar("SELECT max(seq) FROM audit_chain WHERE tenant_id = $1")
            .bind(tenant)
            .fetch_one(&mut owner)
            .await
            .expect("the head");
        let sink = CheckpointSink::directory(
            std::env::temp_dir().join(format!("carevault-catalogue-{}", uuid::Uuid::new_v4().simple())),
        );
        let rows = sqlx::query(
            "SELECT tenant_id, seq, encode(head_hash, 'hex') AS head_hash, signed_at, key_id, \
                    encode(signature, 'hex') AS signature FROM audit_checkpoints WHERE tenant_id = $1 ORDER BY seq",
        )
        .bind(tenant)
        .fetch_all(&mut owner)
        .await
        .expect("the checkpoints");
        let mut checkpoints = Vec::new();
        for row in rows {
            let checkpoint = Checkpoint {
                tenant_id: row.get("tenant_id"),
                seq: row.get("seq"),
                head_hash: row.get("head_hash"),
                signed_at: row.get("signed_at"),
                key_id: row.get("key_id"),
                signature: row.get("signature"),
            };
            sink.write(&checkpoint).expect("kept outside the database");
            checkpoints.push(checkpoint.seq);
        }
        owner.close().await.expect("closing");
        assert!(head > ROWS as i64 && checkpoints.len() >= 3 && checkpoints.last() == Some(&head), "{checkpoints:?}");
        let stop = Arc::new(AtomicBool::new(false));
        let app = db.app_pool(2);
        let writers = (0..2).map(|_| tokio::spawn(write(app.clone(), tenant, 1_000, stop.clone()))).collect();
        Case { name, sql: Vec::new(), db, tenant, head, checkpoints, sink, stop, writers }
    }

    /// The middle of the chain.
    fn middle(&self) -> i64 {
        self.head / 2
    }

    /// Runs `statements` as the superuser with triggers off; `$1` is the tenant.
    async fn tamper(&mut self, statements: &[String]) {
        self.sql.extend(statements.iter().cloned());
        let mut conn = PgConnection::connect(&self.db.owner_url()).await.expect("the superuser");
        sqlx::query("SET session_replication_role = replica").execute(&mut conn).await.expect("triggers off");
        for sql in statements {
            sqlx::query(sqlx::AssertSqlSafe(sql.clone())).bind(self.tenant).execute(&mut conn).await.expect(sql);
        }
        conn.close().await.expect("closing");
    }

    /// Verifies, stops the writers, and checks the first break.
    async fn expect(self, seq: i64, kind: BreakKind) {
        let trust = Trust { keys: vec![signing_key().public_key()], sink: Some(self.sink.clone()) };
        let verdicts = audit_chain::verify(&self.db.platform_pool(), Some(self.tenant), &trust).await.expect("verify");
        self.stop.store(true, Ordering::Relaxed);
        for writer in self.writers {
            writer.await.expect("a writer");
        }
        let _ = std::fs::remove_dir_all(self.sink.dir());
        let first = verdicts[0].breaks.first().map(|b| (b.seq, b.kind));
        write_evidence(self.name, &self.sql, (seq, kind), first, verdicts[0].chained);
        let shown: Vec<_> = verdicts[0].breaks.iter().take(5).collect();
        assert_eq!(first, Some((seq, kind)), "the first breaks of {}: {shown:?}", verdicts[0].breaks.len());
    }
}

/// Records the case for the security report when `CAREVAULT_EVIDENCE_DIR` is set.
fn write_evidence(
    name: &str,
    sql: &[String],
    expected: (i64, BreakKind),
    observed: Option<(i64, BreakKind)>,
    rows: u64,
) {
    let Some(dir) = std::env::var_os("CAREVAULT_EVIDENCE_DIR") else { return };
    let dir = std::path::PathBuf::from(dir).join("audit_catalogue");
    std::fs::create_dir_all(&dir).expect("the evidence directory");
    let describe = |(seq, kind): (i64, BreakKind)| format!("{} at seq {seq}", kind.as_str());
    let entry = json!({
        "case": name,
        "rows": rows,
        "sql": sql.join("; "),
        "expected": describe(expected),
        "observed": observed.map_or_else(|| "intact".to_string(), describe),
        "passed": observed == Some(expected),
    });
    std::fs::write(dir.join(format!("{name}.json")), entry.to_string()).expect("writing the evidence");
}

/// The id of the audit row at `seq`.
fn row_at(seq: i64) -> String {
    format!("(SELECT audit_id FROM audit_chain WHERE tenant_id = $1 AND seq = {seq})")
}

#[tokio::test]
async fn an_untouched_chain_of_concurrent_writers_is_intact() {
    let case = Case::start("an_untouched_chain_of_concurrent_writers_is_intact").await;
    let trust = Trust { keys: vec![signing_key().public_key()], sink: Some(case.sink.clone()) };
    let verdict = audit_chain::verify(&case.db.platform_pool(), Some(case.tenant), &trust).await.expect("verify");
    let shown: Vec<_> = verdict[0].breaks.iter().take(5).collect();
    assert!(verdict[0].intact() && verdict[0].checkpoint == Some(case.head), "{shown:?}");
    case.expect_intact().await;
}

impl Case {
    async fn expect_intact(self) {
        self.stop.store(true, Ordering::Relaxed);
        for writer in self.writers {
            writer.await.expect("a writer");
        }
        let _ = std::fs::remove_dir_all(self.sink.dir());
    }
}

#[tokio::test]
async fn one_field_of_a_middle_row_edited() {
    let mut case = Case::start("one_field_of_a_middle_row_edited").await;
    let m = case.middle();
    case.tamper(&[format!("UPDATE audit_logs SET action = 'tenant.read' WHERE id = {}", row_at(m))]).await;
    case.expect(m, BreakKind::AlteredRow).await;
}

#[tokio::test]
async fn a_middle_row_deleted() {
    let mut case = Case::start("a_middle_row_deleted").await;
    let m = case.middle();
    case.tamper(&[format!("DELETE FROM audit_logs WHERE id = {}", row_at(m))]).await;
    case.expect(m, BreakKind::MissingRow).await;
}

#[tokio::test]
async fn the_last_rows_deleted_after_a_checkpoint() {
    let mut case = Case::start("the_last_rows_deleted_after_a_checkpoint").await;
    let cut = case.head - 9;
    case.tamper(&[
        format!("DELETE FROM audit_logs WHERE id IN (SELECT audit_id FROM audit_chain WHERE tenant_id = $1 AND seq >= {cut})"),
        format!("DELETE FROM audit_chain WHERE tenant_id = $1 AND seq >= {cut}"),
    ])
    .await;
    case.expect(cut, BreakKind::TruncatedTail).await;
}

#[tokio::test]
async fn a_forged_row_inserted_between_two() {
    let mut case = Case::start("a_forged_row_inserted_between_two").await;
    let m = case.middle();
    let forged = uuid::Uuid::new_v4();
    case.tamper(&[
        // Make room at m + 1 (through a far offset: the primary key is checked row by row).
        format!("UPDATE audit_chain SET seq = seq + 1000000000 WHERE tenant_id = $1 AND seq > {m}"),
        "UPDATE audit_chain SET seq = seq - 999999999 WHERE tenant_id = $1 AND seq > 1000000000".into(),
        format!(
            "INSERT INTO audit_logs (id, tenant_id, action, resource_type, resource_id, created_at, xact_id) \
             VALUES ('{forged}', $1, 'document.read', 'document', gen_random_uuid(), now(), pg_current_xact_id())"
        ),
        // A correct entry for it, as anyone who knows the format can compute.
        format!(
            "INSERT INTO audit_chain (tenant_id, seq, audit_id, prev_hash, hash, sealed_at) \
             SELECT $1, {m} + 1, l.id, p.hash, audit_row_hash(p.hash, {m} + 1, now(), l), now() \
             FROM audit_logs l, audit_chain p WHERE l.id = '{forged}' AND p.tenant_id = $1 AND p.seq = {m}"
        ),
    ])
    .await;
    case.expect(m + 1, BreakKind::InsertedRow).await;
}

#[tokio::test]
async fn two_rows_swapped() {
    let mut case = Case::start("two_rows_swapped").await;
    let (m, n) = (case.middle(), case.middle() + 10);
    case.tamper(&[
        "ALTER TABLE audit_chain DROP CONSTRAINT audit_chain_audit_id_key".into(),
        format!(
            "WITH x AS (SELECT seq, audit_id FROM audit_chain WHERE tenant_id = $1 AND seq IN ({m}, {n})) \
             UPDATE audit_chain c SET audit_id = x.audit_id FROM x \
             WHERE c.tenant_id = $1 AND c.seq IN ({m}, {n}) AND x.seq <> c.seq"
        ),
    ])
    .await;
    case.expect(m, BreakKind::ReorderedRows).await;
}

#[tokio::test]
async fn the_whole_chain_recomputed_after_an_edit() {
    let mut case = Case::start("the_whole_chain_recomputed_after_an_edit").await;
    let m = case.middle();
    // The first place no checkpoint vouches for any more: after the last one before the edit.
    let vouched = case.checkpoints.iter().copied().filter(|&c| c < m).max().unwrap_or(0);
    case.tamper(&[
        format!("UPDATE audit_logs SET action = 'tenant.read' WHERE id = {}", row_at(m)),
        format!(
            "DO $$ DECLARE e record; prev bytea; BEGIN \
               FOR e IN SELECT c.seq, c.audit_id, c.sealed_at FROM audit_chain c \
                        WHERE c.tenant_id = '{tenant}' AND c.seq >= {m} ORDER BY c.seq LOOP \
                 SELECT hash INTO prev FROM audit_chain WHERE tenant_id = '{tenant}' AND seq = e.seq - 1; \
                 UPDATE audit_chain SET prev_hash = prev, \
                        hash = audit_row_hash(prev, e.seq, e.sealed_at, (SELECT l FROM audit_logs l WHERE l.id = e.audit_id)) \
                 WHERE tenant_id = '{tenant}' AND seq = e.seq; \
               END LOOP; END $$",
            tenant = case.tenant
        ),
    ])
    .await;
    case.expect(vouched + 1, BreakKind::CheckpointMismatch).await;
}

#[tokio::test]
async fn a_checkpoint_replaced_in_the_database() {
    let mut case = Case::start("a_checkpoint_replaced_in_the_database").await;
    let replaced = case.checkpoints[case.checkpoints.len() / 2];
    case.tamper(&[format!(
        "UPDATE audit_checkpoints SET signed_at = signed_at + interval '1 hour' WHERE tenant_id = $1 AND seq = {replaced}"
    )])
    .await;
    case.expect(replaced, BreakKind::CheckpointSignature).await;
}

#[tokio::test]
async fn unchained_rows_written_with_the_triggers_off() {
    let mut case = Case::start("unchained_rows_written_with_the_triggers_off").await;
    let after = case.head + 1;
    case.tamper(&["INSERT INTO audit_logs (tenant_id, action, resource_type, resource_id, created_at, xact_id) \
         SELECT $1, 'document.read', 'document', gen_random_uuid(), now() - interval '1 hour', '3' \
         FROM generate_series(1, 3)"
        .into()])
        .await;
    case.expect(after, BreakKind::InsertedRow).await;
}

#[tokio::test]
async fn the_time_of_a_row_changed() {
    let mut case = Case::start("the_time_of_a_row_changed").await;
    let m = case.middle();
    case.tamper(&[format!(
        "UPDATE audit_logs SET created_at = created_at - interval '1 second' WHERE id = {}",
        row_at(m)
    )])
    .await;
    case.expect(m, BreakKind::AlteredRow).await;
}
