//! `carevault audit seal | verify` end to end: sealing what is committed, a clean verdict on an
//! untouched chain, and exit status 1 naming the place and kind of a break made by the superuser.

mod common;

use std::process::Command;
use std::time::Duration;

use carevault_testdb::TestDb;
use common::{carevault, run, run_ok};
use sqlx::{Connection, PgConnection};

fn audit(db: &TestDb, args: &[&str]) -> Command {
    let mut command = carevault();
    command.arg("audit").args(args).env("DATABASE_URL", db.owner_url());
    command
}

#[tokio::test]
async fn seal_then_verify_then_find_a_row_edited_by_the_superuser() {
    let db = TestDb::new().await;
    let mut owner = PgConnection::connect(&db.owner_url()).await.unwrap();
    let system = "00000000-0000-0000-0000-000000000000";
    sqlx::query(
        "INSERT INTO audit_logs (tenant_id, action, resource_type, resource_id) \
         SELECT $1::uuid, 'tenant.read', 'tenant', $1::uuid FROM generate_series(1, 5)",
    )
    .bind(system)
    .execute(&mut owner)
    .await
    .unwrap();

    let sealed = run_ok(audit(&db, &["seal"]));
    assert!(sealed.contains("audit chain: 5 rows sealed"), "{sealed}");
    assert!(run_ok(audit(&db, &["seal"])).contains("audit chain: 0 rows sealed"), "nothing twice");
    let verdict = run_ok(audit(&db, &["verify"]));
    assert!(verdict.contains(&format!("{system} intact: 5 rows, head 5, 0 unsealed")), "{verdict}");

    sqlx::query("SET session_replication_role = replica").execute(&mut owner).await.unwrap();
    sqlx::query(
        "UPDATE audit_logs SET resource_type = 'document' \
         WHERE id = (SELECT audit_id FROM audit_chain WHERE tenant_id = $1::uuid AND seq = 2)",
    )
    .bind(system)
    .execute(&mut owner)
    .await
    .unwrap();
    let broken = run(audit(&db, &["verify", "--tenant", system]), Duration::from_secs(60));
    let (stdout, stderr) = (String::from_utf8_lossy(&broken.stdout), String::from_utf8_lossy(&broken.stderr));
    assert_eq!(broken.status.code(), Some(1), "{stdout} {stderr}");
    assert!(stdout.contains(&format!("{system} BROKEN at seq 2: altered row")), "{stdout}");
    assert!(stderr.contains("the audit chain of 1 of 1 tenants is broken"), "{stderr}");

    let json = run(audit(&db, &["verify", "--json"]), Duration::from_secs(60));
    let verdicts: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(verdicts[0]["breaks"][0], serde_json::json!({ "seq": 2, "kind": "altered_row" }));

    let refused = run(audit(&db, &["verify", "--tenant", "Ann-Lee"]), Duration::from_secs(60));
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success() && stderr.contains("--tenant is not a tenant id"), "{stderr}");
    assert!(!stderr.contains("Ann-Lee"), "the refused value is not echoed: {stderr}");
    owner.close().await.unwrap();
}
