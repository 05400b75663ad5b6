//! The audit chain (migration 19): time and order of audit rows, the sealer, the checks, as the
//! roles that run them. Tampering is done as the superuser, who is the attacker here.

use carevault_db::audit_chain::{self, AuditSigningKey, BreakKind, CheckpointSink, Sealed, TenantVerdict, Trust};
use carevault_db::{AuditAction, AuditContext, PlatformPool, TenantId, TenantTx, UserRole};
use carevault_testdb::TestDb;
use serde_json::json;
use sqlx::{Connection, PgConnection, PgPool};

use crate::fixtures::{as_user, tenant, user};

fn signing_key() -> AuditSigningKey {
    AuditSigningKey::parse(&"07".repeat(32)).unwrap()
}

/// A pass that signs no checkpoint; the rows it chained.
async fn sealed(platform: &PlatformPool) -> u64 {
    match audit_chain::seal(platform, None).await.unwrap() {
        Sealed::Done { chained, .. } => chained,
        Sealed::Busy => panic!("no other sealer runs here"),
    }
}

/// The verdict on `tenant`, trusting the test key and, when given, `sink`.
async fn verdict_with(platform: &PlatformPool, tenant: TenantId, sink: Option<&CheckpointSink>) -> TenantVerdict {
    let trust = Trust { keys: vec![signing_key().public_key()], sink: sink.cloned() };
    let mut verdicts = audit_chain::verify(platform, Some(tenant), &trust).await.unwrap();
    assert_eq!(verdicts.len(), 1);
    verdicts.remove(0)
}

async fn verdict(platform: &PlatformPool, tenant: TenantId) -> TenantVerdict {
    verdict_with(platform, tenant, None).await
}

async fn first_break(platform: &PlatformPool, tenant: TenantId) -> Option<(i64, BreakKind)> {
    verdict(platform, tenant).await.breaks.first().map(|b| (b.seq, b.kind))
}

/// Rows of every shape the columns allow, written as the superuser (NULLs, a network with a
/// mask, IPv6, non-ASCII text, nested metadata): the database's hash and the format's must
/// agree on each.
async fn odd_rows(owner: &PgPool, tenant: TenantId) {
    sqlx::query(
        "INSERT INTO audit_logs (tenant_id, user_id, action, resource_type, resource_id, ip_address, user_agent, metadata) \
         VALUES ($1, NULL, 'x', 'tenant', $1, NULL, NULL, NULL), \
                ($1, NULL, 'document.read', 'document', gen_random_uuid(), '10.1.2.3/8', 'curl/8 \u{1F600} é', \
                 '{\"b\": [1, 2.50, {\"z\": null}], \"a\": \"\\u00e9\\n\", \"aa\": true}'), \
                ($1, NULL, 'document.read', 'document', gen_random_uuid(), '2001:db8::1', '', '{}')",
    )
    .bind(tenant)
    .execute(owner)
    .await
    .unwrap();
}

#[tokio::test]
async fn the_database_and_the_format_agree_on_every_row_and_an_untouched_chain_is_intact() {
    let db = TestDb::new().await;
    let (platform, app, owner) = (db.platform_pool(), db.app_pool(2), db.owner_pool().await);
    let a = tenant(&platform, "A").await;
    let alice = user(&app, a, "alice@a.example", UserRole::Admin).await;
    let mut tx = TenantTx::begin(&app, a, as_user(&alice)).await.unwrap();
    tx.audit_log().append(AuditAction::AccessDenied, alice.id.as_uuid(), json!({ "reason": "test" })).await.unwrap();
    tx.commit().await.unwrap();
    odd_rows(&owner, a).await;

    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM audit_logs WHERE tenant_id = $1")
        .bind(a)
        .fetch_one(&owner)
        .await
        .unwrap();
    assert!(sealed(&platform).await >= rows as u64);
    let verdict = verdict(&platform, a).await;
    assert_eq!((verdict.chained, verdict.head, verdict.unsealed), (rows as u64, Some(rows), 0), "{verdict:?}");
    assert!(verdict.intact(), "the format and the database disagree: {verdict:?}");
    assert_eq!(sealed(&platform).await, 0, "nothing is sealed twice");
}

#[tokio::test]
async fn a_row_is_dated_when_inserted_and_a_row_committed_late_is_sealed_after_the_rows_before_it() {
    let db = TestDb::new().await;
    let (platform, app) = (db.platform_pool(), db.app_pool(2));
    let a = tenant(&platform, "A").await;
    sealed(&platform).await;

    // A transaction that starts first, writes late and commits last.
    let mut late = TenantTx::begin(&app, a, AuditContext::default()).await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    let mut early = TenantTx::begin(&app, a, AuditContext::default()).await.unwrap();
    early.audit_log().append(AuditAction::AccessDenied, a.as_uuid(), json!({ "n": 1 })).await.unwrap();
    early.commit().await.unwrap();
    late.audit_log().append(AuditAction::AccessDenied, a.as_uuid(), json!({ "n": 2 })).await.unwrap();

    assert_eq!(sealed(&platform).await, 1, "the uncommitted row is not sealed");
    late.commit().await.unwrap();
    assert_eq!(sealed(&platform).await, 1, "the late row is sealed by the next pass");

    let mut tx = TenantTx::begin(&app, a, AuditContext::default()).await.unwrap();
    let page =
        tx.audit_log().list(&Default::default(), carevault_db::PageLimit::parse(10).unwrap(), None).await.unwrap();
    tx.commit().await.unwrap();
    let by_n = |n: i64| page.items.iter().find(|e| e.metadata["n"] == n).unwrap();
    let (first, second) = (by_n(1), by_n(2));
    // Dated at insertion (not at its transaction's start, which came first), and chained after.
    assert!(second.created_at > first.created_at, "{first:?} {second:?}");
    assert!(second.seq.unwrap() > first.seq.unwrap());
    assert!(verdict(&platform, a).await.intact());
}

#[tokio::test]
async fn the_sealer_role_can_append_at_the_head_and_nothing_else() {
    let db = TestDb::new().await;
    let platform = db.platform_pool();
    let a = tenant(&platform, "A").await;
    sealed(&platform).await;
    let mut conn = PgConnection::connect(&db.ops_url()).await.unwrap();
    let audit_id: uuid::Uuid = {
        let mut tx = conn.begin().await.unwrap();
        sqlx::query("SET LOCAL ROLE carevault_sealer").execute(&mut *tx).await.unwrap();
        sqlx::query_scalar("SELECT audit_id FROM audit_chain WHERE tenant_id = $1 AND seq = 1")
            .bind(a)
            .fetch_one(&mut *tx)
            .await
            .unwrap()
    };
    for attack in [
        "UPDATE audit_chain SET hash = sha256('x') WHERE seq = 1",
        "DELETE FROM audit_chain WHERE seq = 1",
        "TRUNCATE audit_chain",
        "UPDATE audit_logs SET action = 'x'",
        "DELETE FROM audit_logs",
        "INSERT INTO audit_logs (tenant_id, action, resource_type, resource_id) VALUES (gen_random_uuid(), 'x', 'y', gen_random_uuid())",
        "INSERT INTO audit_chain (tenant_id, audit_id, seq, prev_hash, hash) VALUES (gen_random_uuid(), gen_random_uuid(), 1, sha256(''), sha256(''))",
        "UPDATE audit_sealer SET singleton = true",
        "SELECT * FROM tenants",
    ] {
        let mut tx = conn.begin().await.unwrap();
        sqlx::query("SET LOCAL ROLE carevault_sealer").execute(&mut *tx).await.unwrap();
        let result = sqlx::query(sqlx::AssertSqlSafe(attack)).execute(&mut *tx).await;
        assert!(result.is_err(), "the sealer could: {attack}");
    }
    // Appending a sealed row again is refused; a row that does not exist cannot be chained.
    for (row, tenant_id) in [(audit_id, a), (uuid::Uuid::new_v4(), a)] {
        let mut tx = conn.begin().await.unwrap();
        sqlx::query("SET LOCAL ROLE carevault_sealer").execute(&mut *tx).await.unwrap();
        let result = sqlx::query("INSERT INTO audit_chain (tenant_id, audit_id) VALUES ($1, $2)")
            .bind(tenant_id)
            .bind(row)
            .execute(&mut *tx)
            .await;
        assert!(result.is_err(), "{row}");
    }
    assert!(verdict(&platform, a).await.intact());
}

/// A row whose hash cannot be computed would stop every pass, for every tenant: each hashed value
/// is bounded by a CHECK, which holds for every role that may insert audit rows.
#[tokio::test]
async fn no_role_can_write_an_audit_row_the_sealer_cannot_hash() {
    let db = TestDb::new().await;
    let platform = db.platform_pool();
    let a = tenant(&platform, "A").await;
    let mut conn = PgConnection::connect(&db.ops_url()).await.unwrap();
    for (poison, constraint) in [
        // Ten numbers of 131,000 digits: a few hundred bytes stored, 1.3 MB as text (8,300 of them,
        // 133 kB stored, would be 1.09 GB, more than PostgreSQL can print).
        ("jsonb_agg('1e131000'::numeric), NULL FROM generate_series(1, 10)", "audit_logs_hashable_metadata"),
        ("'{}'::jsonb, repeat('x', 4097)", "audit_logs_hashable_user_agent"),
    ] {
        let mut tx = conn.begin().await.unwrap();
        sqlx::query("SET LOCAL ROLE carevault_platform").execute(&mut *tx).await.unwrap();
        let sql = format!(
            "INSERT INTO audit_logs (tenant_id, action, resource_type, resource_id, metadata, user_agent) \
             SELECT $1, 'tenant.read', 'tenant', $1, {poison}"
        );
        let refused = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(a).execute(&mut *tx).await.unwrap_err();
        assert!(refused.to_string().contains(constraint), "{refused}");
    }
    assert!(matches!(audit_chain::seal(&platform, None).await.unwrap(), Sealed::Done { chained: 1, .. }));
}

#[tokio::test]
async fn one_sealer_runs_at_a_time() {
    let db = TestDb::new().await;
    let platform = db.platform_pool();
    let owner = db.owner_pool().await;
    let mut holder = owner.begin().await.unwrap();
    sqlx::query("SELECT * FROM audit_sealer FOR UPDATE").execute(&mut *holder).await.unwrap();
    assert_eq!(audit_chain::seal(&platform, None).await.unwrap(), Sealed::Busy);
    holder.rollback().await.unwrap();
    assert!(matches!(audit_chain::seal(&platform, None).await.unwrap(), Sealed::Done { .. }));
}

/// Runs `statements` (`$1` the tenant) as the superuser with triggers off
/// (`session_replication_role = replica`), the way an owner rewriting history would.
async fn tamper(db: &TestDb, statements: &[&str], tenant: TenantId) {
    let mut conn = PgConnection::connect(&db.owner_url()).await.unwrap();
    sqlx::query("SET session_replication_role = replica").execute(&mut conn).await.unwrap();
    for sql in statements {
        sqlx::query(sqlx::AssertSqlSafe(sql.to_string())).bind(tenant).execute(&mut conn).await.unwrap();
    }
    conn.close().await.unwrap();
}

#[tokio::test]
async fn tampering_as_the_superuser_is_found_with_its_place_and_kind() {
    let cases: [(&[&str], (i64, BreakKind)); 6] = [
        (
            &["UPDATE audit_logs SET action = 'tenant.read' \
             WHERE id = (SELECT audit_id FROM audit_chain WHERE tenant_id = $1 AND seq = 3)"],
            (3, BreakKind::AlteredRow),
        ),
        (
            &["UPDATE audit_logs SET created_at = created_at - interval '1 hour' \
             WHERE id = (SELECT audit_id FROM audit_chain WHERE tenant_id = $1 AND seq = 4)"],
            (4, BreakKind::AlteredRow),
        ),
        (
            &["DELETE FROM audit_logs WHERE id = (SELECT audit_id FROM audit_chain WHERE tenant_id = $1 AND seq = 2)"],
            (2, BreakKind::MissingRow),
        ),
        (
            &[
                "ALTER TABLE audit_chain DROP CONSTRAINT audit_chain_audit_id_key",
                "WITH x AS (SELECT audit_id FROM audit_chain WHERE tenant_id = $1 AND seq IN (2, 5)) \
                 UPDATE audit_chain c SET audit_id = (SELECT audit_id FROM x WHERE x.audit_id <> c.audit_id) \
                 WHERE c.tenant_id = $1 AND c.seq IN (2, 5)",
            ],
            (2, BreakKind::ReorderedRows),
        ),
        (
            &["INSERT INTO audit_logs (tenant_id, action, resource_type, resource_id, created_at, xact_id) \
             VALUES ($1, 'document.read', 'document', gen_random_uuid(), now() - interval '1 day', '1')"],
            (7, BreakKind::InsertedRow),
        ),
        (
            // A second row under a sealed row's id, the primary key dropped and an index of the
            // same name put back.
            &[
                "ALTER TABLE audit_logs DROP CONSTRAINT audit_logs_pkey CASCADE",
                "CREATE INDEX audit_logs_pkey ON audit_logs (id)",
                "INSERT INTO audit_logs (id, tenant_id, action, resource_type, resource_id, created_at, xact_id) \
                 SELECT a.id, a.tenant_id, 'document.deleted', 'document', a.resource_id, a.created_at, a.xact_id \
                 FROM audit_logs a JOIN audit_chain c ON c.audit_id = a.id WHERE c.tenant_id = $1 AND c.seq = 3",
            ],
            (3, BreakKind::InsertedRow),
        ),
    ];
    for (sql, expected) in cases {
        let db = TestDb::new().await;
        let (platform, app) = (db.platform_pool(), db.app_pool(1));
        let a = tenant(&platform, "A").await;
        for n in 0..5 {
            let mut tx = TenantTx::begin(&app, a, AuditContext::default()).await.unwrap();
            tx.audit_log().append(AuditAction::AccessDenied, a.as_uuid(), json!({ "n": n })).await.unwrap();
            tx.commit().await.unwrap();
        }
        sealed(&platform).await;
        assert!(verdict(&platform, a).await.intact());
        tamper(&db, sql, a).await;
        assert_eq!(first_break(&platform, a).await, Some(expected), "{sql:?}");
    }
}

#[tokio::test]
async fn the_migration_chains_the_rows_already_there_in_time_order() {
    let db = TestDb::new().await;
    let owner = db.owner_pool().await;
    let platform = db.platform_pool();
    let a = tenant(&platform, "A").await;
    carevault_db::migrate::down(&owner, 18).await.unwrap();
    // Written out of time order, as rows of concurrent transactions are.
    sqlx::query(
        "INSERT INTO audit_logs (tenant_id, action, resource_type, resource_id, created_at) \
         SELECT $1, 'x', 'tenant', $1, now() - n * interval '1 minute' FROM generate_series(1, 20) AS n",
    )
    .bind(a)
    .execute(&owner)
    .await
    .unwrap();
    odd_rows(&owner, a).await;
    carevault_db::migrate::up(&owner).await.unwrap();

    let disorder: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM (SELECT (l.created_at, l.id) < lag((l.created_at, l.id)) OVER (ORDER BY c.seq) AS back \
                               FROM audit_chain c JOIN audit_logs l ON l.id = c.audit_id WHERE c.tenant_id = $1) s \
         WHERE back",
    )
    .bind(a)
    .fetch_one(&owner)
    .await
    .unwrap();
    assert_eq!(disorder, 0, "chained in (created_at, id) order");
    let verdict = verdict(&platform, a).await;
    assert!(verdict.intact() && verdict.chained >= 23 && verdict.unsealed == 0, "{verdict:?}");
    assert_eq!(sealed(&platform).await, 0, "the migration left nothing to seal");
}

/// A scratch checkpoint directory, removed when dropped.
struct ScratchSink(CheckpointSink);

impl ScratchSink {
    fn new() -> ScratchSink {
        let dir = std::env::temp_dir().join(format!("carevault-checkpoints-{}", uuid::Uuid::new_v4().simple()));
        ScratchSink(CheckpointSink::directory(dir))
    }
}

impl Drop for ScratchSink {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(self.0.dir());
    }
}

/// Ten rows of tenant A, sealed with a checkpoint signed and kept in `sink` after the first
/// eight: the chain head is 11 (with the tenant's creation row), the checkpoint at 9.
async fn checkpointed_chain(db: &TestDb, sink: &CheckpointSink) -> (PlatformPool, TenantId) {
    let (platform, app) = (db.platform_pool(), db.app_pool(1));
    let a = tenant(&platform, "A").await;
    for n in 0..10 {
        if n == 8 {
            let signed = audit_chain::seal(&platform, Some(&signing_key())).await.unwrap();
            assert_eq!(signed, Sealed::Done { chained: 9, checkpointed: 1 });
            for checkpoint in audit_chain::latest_checkpoints(&platform).await.unwrap() {
                sink.write(&checkpoint).unwrap();
            }
        }
        let mut tx = TenantTx::begin(&app, a, AuditContext::default()).await.unwrap();
        tx.audit_log().append(AuditAction::AccessDenied, a.as_uuid(), json!({ "n": n })).await.unwrap();
        tx.commit().await.unwrap();
    }
    sealed(&platform).await;
    let verdict = verdict_with(&platform, a, Some(sink)).await;
    assert!(verdict.intact() && verdict.head == Some(11) && verdict.checkpoint == Some(9), "{verdict:?}");
    (platform, a)
}

#[tokio::test]
async fn checkpoints_find_a_recomputed_chain_a_cut_tail_and_a_replaced_checkpoint() {
    let rewrite_and_recompute: &[&str] = &[
        "UPDATE audit_logs SET action = 'tenant.read' \
         WHERE id = (SELECT audit_id FROM audit_chain WHERE tenant_id = $1 AND seq = 5)",
        // Recompute every entry from 5 on, as the format allows anyone to.
        "DO $$ DECLARE e record; prev bytea; BEGIN \
           FOR e IN SELECT c.seq, c.audit_id, c.tenant_id, c.sealed_at FROM audit_chain c \
                    WHERE c.seq >= 5 ORDER BY c.tenant_id, c.seq LOOP \
             SELECT hash INTO prev FROM audit_chain WHERE tenant_id = e.tenant_id AND seq = e.seq - 1; \
             UPDATE audit_chain SET prev_hash = prev, \
                    hash = audit_row_hash(prev, e.seq, e.sealed_at, (SELECT l FROM audit_logs l WHERE l.id = e.audit_id)) \
             WHERE tenant_id = e.tenant_id AND seq = e.seq; \
           END LOOP; END $$",
    ];
    let cut_tail: &[&str] = &[
        "DELETE FROM audit_logs WHERE id IN (SELECT audit_id FROM audit_chain WHERE tenant_id = $1 AND seq >= 8)",
        "DELETE FROM audit_chain WHERE tenant_id = $1 AND seq >= 8",
    ];
    let replace_checkpoint: &[&str] =
        &["UPDATE audit_checkpoints SET signed_at = signed_at + interval '1 second' WHERE tenant_id = $1"];
    let cases = [
        (rewrite_and_recompute, (1, BreakKind::CheckpointMismatch), "the chain after the last good checkpoint"),
        (cut_tail, (8, BreakKind::TruncatedTail), "the first removed place"),
        (replace_checkpoint, (9, BreakKind::CheckpointSignature), "the replaced checkpoint"),
    ];
    for (statements, expected, what) in cases {
        let db = TestDb::new().await;
        let sink = ScratchSink::new();
        let (platform, a) = checkpointed_chain(&db, &sink.0).await;
        tamper(&db, statements, a).await;
        let links_only = verdict(&platform, a).await;
        let with_sink = verdict_with(&platform, a, Some(&sink.0)).await;
        assert_eq!(with_sink.breaks.first().map(|b| (b.seq, b.kind)), Some(expected), "{what}: {with_sink:?}");
        if statements == rewrite_and_recompute {
            // The links alone are consistent: only the checkpoint (here the database's copy) tells.
            let kinds: Vec<BreakKind> = links_only.breaks.iter().map(|b| b.kind).collect();
            assert_eq!(kinds, [BreakKind::CheckpointMismatch], "{links_only:?}");
        }
    }
}

#[tokio::test]
async fn the_sink_never_overwrites_and_the_database_refuses_a_checkpoint_of_a_head_it_does_not_hold() {
    let db = TestDb::new().await;
    let sink = ScratchSink::new();
    let (platform, a) = checkpointed_chain(&db, &sink.0).await;
    let kept = sink.0.read(a).unwrap();
    assert_eq!(kept.len(), 1);
    let mut forged = kept[0].clone();
    forged.head_hash = "00".repeat(32);
    assert!(matches!(sink.0.write(&forged), Err(audit_chain::SinkError::Conflict { .. })));
    sink.0.write(&kept[0]).expect("the same checkpoint again is fine");
    assert_eq!(sink.0.read(a).unwrap(), kept);

    let mut conn = PgConnection::connect(&db.ops_url()).await.unwrap();
    let mut tx = conn.begin().await.unwrap();
    sqlx::query("SET LOCAL ROLE carevault_sealer").execute(&mut *tx).await.unwrap();
    let refused = sqlx::query(
        "INSERT INTO audit_checkpoints (tenant_id, seq, head_hash, signed_at, key_id, signature) \
         VALUES ($1, 10, sha256('x'), now(), '0123456789abcdef', decode(repeat('00', 64), 'hex'))",
    )
    .bind(a)
    .execute(&mut *tx)
    .await;
    assert!(refused.is_err(), "a checkpoint of a head the chain does not hold");
    drop(tx);
    let mut tx = conn.begin().await.unwrap();
    sqlx::query("SET LOCAL ROLE carevault_sealer").execute(&mut *tx).await.unwrap();
    let refused = sqlx::query("DELETE FROM audit_checkpoints").execute(&mut *tx).await;
    assert!(refused.is_err(), "checkpoints are append-only");
    drop(tx);
    // The next pass signs the head that moved since.
    let signed = audit_chain::seal(&platform, Some(&signing_key())).await.unwrap();
    assert_eq!(signed, Sealed::Done { chained: 0, checkpointed: 1 });
    assert_eq!(verdict(&platform, a).await.checkpoint, Some(11));
}

#[tokio::test]
async fn a_tenant_whose_whole_history_was_deleted_is_still_checked_through_the_sink() {
    let db = TestDb::new().await;
    let sink = ScratchSink::new();
    let (platform, a) = checkpointed_chain(&db, &sink.0).await;
    tamper(
        &db,
        &[
            "DELETE FROM audit_checkpoints WHERE tenant_id = $1",
            "DELETE FROM audit_chain WHERE tenant_id = $1",
            "DELETE FROM audit_logs WHERE tenant_id = $1",
        ],
        a,
    )
    .await;
    let trust = Trust { keys: vec![signing_key().public_key()], sink: Some(sink.0.clone()) };
    let verdicts = audit_chain::verify(&platform, None, &trust).await.unwrap();
    let verdict = verdicts.iter().find(|v| v.tenant_id == a).expect("the tenant is checked");
    assert_eq!(verdict.breaks.first().map(|b| (b.seq, b.kind)), Some((1, BreakKind::TruncatedTail)), "{verdict:?}");
}

/// The restore procedure of docs/ARCHITECTURE.md ("Restore"): rows whose transaction ids come
/// from another cluster sit below the watermark, unchained, until the owner resets it; the next
/// pass then chains them.
#[tokio::test]
async fn resetting_the_watermark_after_a_restore_chains_rows_from_another_cluster() {
    let db = TestDb::new().await;
    let platform = db.platform_pool();
    let a = tenant(&platform, "A").await;
    sealed(&platform).await;
    tamper(
        &db,
        &["INSERT INTO audit_logs (tenant_id, action, resource_type, resource_id, created_at, xact_id) \
           SELECT $1, 'tenant.read', 'tenant', $1, clock_timestamp(), '5' FROM generate_series(1, 4)"],
        a,
    )
    .await;
    assert_eq!(sealed(&platform).await, 0, "below the watermark: not seen");
    assert_eq!(first_break(&platform, a).await, Some((2, BreakKind::InsertedRow)));
    tamper(&db, &["UPDATE audit_sealer SET watermark = '3:3:' WHERE $1::uuid IS NOT NULL"], a).await;
    assert_eq!(sealed(&platform).await, 4);
    assert!(verdict(&platform, a).await.intact());
}
