//! `carevault migrate ...` end to end: the real binary against a fresh database on the test
//! cluster. These tests connect as the superuser owner on purpose: they check the schema's
//! lifecycle, not tenant isolation.

use std::collections::BTreeMap;
use std::process::Output;

use carevault_db::migrate::{MIGRATOR, head_version};
use carevault_testdb::TestDb;
use sqlx::PgPool;

const SYSTEM_TENANT: &str = "00000000-0000-0000-0000-000000000000";
const TENANT_TABLES: [&str; 4] = ["tenants", "users", "documents", "audit_logs"];
const ROLES: [&str; 4] = ["carevault_app", "carevault_platform", "carevault_api", "carevault_ops"];

/// Runs the real binary with `DATABASE_URL` pointing at `db`.
async fn carevault(db: &TestDb, args: &[&str]) -> Output {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_carevault"))
        .args(args)
        .env("DATABASE_URL", db.owner_url())
        .env("LOG_LEVEL", "info")
        .output()
        .await
        .expect("running the carevault binary")
}

/// Runs the binary and fails the test, with its output, unless it succeeds.
async fn carevault_ok(db: &TestDb, args: &[&str]) -> String {
    let output = carevault(db, args).await;
    assert_success(&output, args);
    String::from_utf8(output.stdout).expect("stdout is UTF-8")
}

fn assert_success(output: &Output, args: &[&str]) {
    assert!(
        output.status.success(),
        "carevault {} failed ({}):\nstdout:\n{}\nstderr:\n{}",
        args.join(" "),
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

fn up_versions() -> Vec<i64> {
    MIGRATOR.iter().filter(|m| m.migration_type.is_up_migration()).map(|m| m.version).collect()
}

/// Every migration recorded exactly once, successfully.
async fn assert_at_head_once(owner: &PgPool) {
    let rows: Vec<(i64, i64, bool)> = sqlx::query_as(
        "SELECT version, count(*), bool_and(success) FROM _sqlx_migrations GROUP BY version ORDER BY version",
    )
    .fetch_all(owner)
    .await
    .expect("reading _sqlx_migrations");
    let versions: Vec<i64> = rows.iter().map(|(version, _, _)| *version).collect();
    assert_eq!(versions, up_versions());
    for (version, count, success) in rows {
        assert_eq!(count, 1, "migration {version} recorded {count} times");
        assert!(success, "migration {version} recorded as failed");
    }
}

/// The reference's verification queries.
async fn assert_reference_checks(owner: &PgPool) {
    let rls: BTreeMap<String, bool> = sqlx::query_as(
        "SELECT tablename::text, rowsecurity FROM pg_catalog.pg_tables WHERE schemaname = 'public' AND tablename = ANY($1)",
    )
    .bind(&TENANT_TABLES[..])
    .fetch_all(owner)
    .await
    .expect("reading pg_tables")
    .into_iter()
    .collect();
    for table in TENANT_TABLES {
        assert_eq!(rls.get(table), Some(&true), "row-level security on {table}");
    }

    let triggers: Vec<String> = sqlx::query_scalar(
        "SELECT tgname::text FROM pg_catalog.pg_trigger \
         WHERE tgrelid = 'audit_logs'::regclass AND NOT tgisinternal \
           AND tgname IN ('prevent_audit_log_update', 'prevent_audit_log_delete') ORDER BY tgname",
    )
    .fetch_all(owner)
    .await
    .expect("reading pg_trigger");
    assert_eq!(triggers, ["prevent_audit_log_delete", "prevent_audit_log_update"]);

    // No vector graph shared by every tenant (migration 16); embeddings stored in the row.
    let (shared, storage): (bool, String) = sqlx::query_as(
        "SELECT to_regclass('public.idx_documents_embedding_hnsw') IS NOT NULL, a.attstorage::text \
         FROM pg_catalog.pg_attribute a WHERE a.attrelid = 'documents'::regclass AND a.attname = 'embedding_vector'",
    )
    .fetch_one(owner)
    .await
    .expect("reading the catalog");
    assert!(!shared, "idx_documents_embedding_hnsw is gone");
    assert_eq!(storage, "m", "embedding_vector is stored MAIN");

    let system: String = sqlx::query_scalar("SELECT name::text FROM tenants WHERE id = $1::uuid")
        .bind(SYSTEM_TENANT)
        .fetch_one(owner)
        .await
        .expect("the System tenant exists");
    assert_eq!(system, "System");
}

/// `migrate status --json`, as (version, applied) pairs.
async fn status(db: &TestDb) -> Vec<(i64, bool)> {
    let stdout = carevault_ok(db, &["migrate", "status", "--json"]).await;
    let value: serde_json::Value = serde_json::from_str(&stdout).expect("status --json prints JSON");
    value["migrations"]
        .as_array()
        .expect("a migrations array")
        .iter()
        .map(|m| (m["version"].as_i64().expect("a version"), m["applied"].as_bool().expect("an applied flag")))
        .collect()
}

#[tokio::test]
async fn two_concurrent_ups_apply_every_migration_exactly_once() {
    let db = TestDb::empty().await;
    let args = ["migrate", "up"];
    let (first, second) = tokio::join!(carevault(&db, &args), carevault(&db, &args));
    assert_success(&first, &args);
    assert_success(&second, &args);

    let owner = db.owner_pool().await;
    assert_at_head_once(&owner).await;
    assert_reference_checks(&owner).await;
    let head = head_version().to_string();
    for output in [&first, &second] {
        assert_eq!(String::from_utf8_lossy(&output.stdout).trim(), head, "up prints the version it reached");
    }
    owner.close().await;
}

#[tokio::test]
async fn down_to_zero_and_up_again_on_a_database_holding_data() {
    let db = TestDb::empty().await;
    carevault_ok(&db, &["migrate", "up"]).await;
    assert!(status(&db).await.iter().all(|(_, applied)| *applied), "everything applied after up");
    assert_eq!(status(&db).await.len(), up_versions().len());

    let owner = db.owner_pool().await;
    insert_fixtures(&owner).await;
    owner.close().await;

    carevault_ok(&db, &["migrate", "down", "--target", "0"]).await;
    let owner = db.owner_pool().await;
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT tablename::text FROM pg_catalog.pg_tables WHERE schemaname = 'public' AND tablename <> '_sqlx_migrations'",
    )
    .fetch_all(&owner)
    .await
    .expect("reading pg_tables");
    assert!(tables.is_empty(), "tables left after down --target 0: {tables:?}");
    // Functions in public that are not pgvector's own (extension members) are ours, and must go.
    let functions: Vec<String> = sqlx::query_scalar(
        "SELECT p.proname::text FROM pg_catalog.pg_proc p \
         WHERE p.pronamespace = 'public'::regnamespace \
           AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_depend d \
                           WHERE d.classid = 'pg_catalog.pg_proc'::regclass AND d.objid = p.oid AND d.deptype = 'e')",
    )
    .fetch_all(&owner)
    .await
    .expect("reading pg_proc");
    assert!(functions.is_empty(), "functions left after down --target 0: {functions:?}");
    let roles: i64 = sqlx::query_scalar("SELECT count(*) FROM pg_catalog.pg_roles WHERE rolname = ANY($1)")
        .bind(&ROLES[..])
        .fetch_one(&owner)
        .await
        .expect("reading pg_roles");
    assert_eq!(roles, 4, "down never drops the roles");
    let vector: i64 = sqlx::query_scalar("SELECT count(*) FROM pg_catalog.pg_extension WHERE extname = 'vector'")
        .fetch_one(&owner)
        .await
        .expect("reading pg_extension");
    assert_eq!(vector, 1, "down never drops the vector extension");
    owner.close().await;
    assert!(status(&db).await.iter().all(|(_, applied)| !applied), "nothing applied after down --target 0");

    carevault_ok(&db, &["migrate", "up"]).await;
    let owner = db.owner_pool().await;
    assert_at_head_once(&owner).await;
    assert_reference_checks(&owner).await;
    owner.close().await;
    assert!(status(&db).await.iter().all(|(_, applied)| *applied), "everything applied after up again");
}

/// A tenant, a user and a document with a 1024-d embedding, inserted as the owner (fixtures only).
async fn insert_fixtures(owner: &PgPool) {
    let tenant: uuid::Uuid = sqlx::query_scalar("INSERT INTO tenants (name) VALUES ('Clinic') RETURNING id")
        .fetch_one(owner)
        .await
        .expect("inserting a tenant");
    let user: uuid::Uuid = sqlx::query_scalar(
        "INSERT INTO users (tenant_id, email, role) VALUES ($1, 'doctor@clinic.example', 'admin') RETURNING id",
    )
    .bind(tenant)
    .fetch_one(owner)
    .await
    .expect("inserting a user");
    let embedding = format!("[{}]", vec!["0.5"; 1024].join(","));
    sqlx::query(
        "INSERT INTO documents (tenant_id, user_id, s3_key, s3_bucket, filename, status, embedding_vector) \
         VALUES ($1, $2, 'k/1', 'bucket', 'scan.pdf', 'completed', $3::vector)",
    )
    .bind(tenant)
    .bind(user)
    .bind(embedding)
    .execute(owner)
    .await
    .expect("inserting a document");
}

#[tokio::test]
async fn a_negative_or_unknown_target_is_refused() {
    let db = TestDb::empty().await;
    for target in ["-1", "99999"] {
        let output = carevault(&db, &["migrate", "down", "--target", target]).await;
        assert!(!output.status.success(), "down --target {target} must fail");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(&format!("invalid --target {target}")), "unclear message: {stderr}");
        assert!(stderr.contains("use 0 to revert every migration"), "unclear message: {stderr}");
    }
}

#[test]
fn bootstrap_sql_is_printed_alone_on_stdout_without_a_database() {
    // No DATABASE_URL, and yet no embedded server is started: printing needs no database.
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_carevault"))
        .args(["migrate", "bootstrap-sql"])
        .env_remove("DATABASE_URL")
        .env("CAREVAULT_DATA_DIR", "/nonexistent/carevault-must-not-be-used")
        .output()
        .expect("running the carevault binary");
    assert_success(&output, &["migrate", "bootstrap-sql"]);
    assert_eq!(String::from_utf8_lossy(&output.stdout), carevault_db::migrate::BOOTSTRAP_SQL);
}

#[tokio::test]
async fn a_password_with_a_slash_is_never_printed() {
    // A password holding an unencoded '/': cutting the URL at its first '/' used to print it.
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_carevault"))
        .args(["migrate", "status"])
        .env("DATABASE_URL", "postgres://carevault:Sup3r/Secret@127.0.0.1:1/carevault")
        .env("LOG_LEVEL", "debug")
        .output()
        .await
        .expect("running the carevault binary");
    assert!(!output.status.success());
    let printed = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert!(!printed.contains("Sup3r") && !printed.contains("Secret"), "{printed}");
    assert!(printed.contains("not shown"), "{printed}");
}
