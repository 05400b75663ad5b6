//! `carevault context-key add | list | retire` end to end, and what a retired key does to a pool
//! that proves with it: its tenant transactions see nothing, and readiness says so.

mod common;

use std::process::Command;
use std::time::Duration;

use carevault_db::tenant_context::TenantContextKey;
use carevault_db::{AppPool, PoolConfig};
use carevault_testdb::TestDb;
use common::{carevault, run, run_ok};

const KEY: &str = "rotation-2:aa0102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1eff";
const SAME_KID_OTHER_KEY: &str = "rotation-2:bb0102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1eff";

fn context_key(db: &TestDb, args: &[&str], key: Option<&str>) -> Command {
    let mut command = carevault();
    command.arg("context-key").args(args).env("DATABASE_URL", db.owner_url()).env_remove("TENANT_CONTEXT_KEY");
    if let Some(key) = key {
        command.env("TENANT_CONTEXT_KEY", key);
    }
    command
}

#[tokio::test]
async fn keys_are_added_once_listed_without_their_secret_and_retired() {
    let db = TestDb::new().await;
    let pool =
        AppPool::connect_lazy(&db.app_url(), PoolConfig::default(), TenantContextKey::parse(KEY).unwrap()).unwrap();
    assert!(!pool.schema_state().await.unwrap().context_verified, "not added yet");

    assert_eq!(run_ok(context_key(&db, &["add"], Some(KEY))).trim(), "added rotation-2");
    assert!(pool.schema_state().await.unwrap().context_verified, "the database accepts it");
    assert!(run_ok(context_key(&db, &["add"], Some(KEY))).contains("already there"));
    let refused = run(context_key(&db, &["add"], Some(SAME_KID_OTHER_KEY)), Duration::from_secs(60));
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("names another key"));

    let listed = run_ok(context_key(&db, &["list"], None));
    assert!(listed.contains("rotation-2") && listed.contains("test"), "{listed}");
    assert!(!listed.contains("0102030405"), "no secret is printed: {listed}");

    assert!(run_ok(context_key(&db, &["retire", "rotation-2"], None)).contains("retired rotation-2"));
    assert!(!pool.schema_state().await.unwrap().context_verified, "a retired key verifies nothing");
    let missing = run(context_key(&db, &["retire", "rotation-2"], None), Duration::from_secs(60));
    assert!(!missing.status.success());
    pool.close().await;
}

#[tokio::test]
async fn add_refuses_a_missing_or_malformed_key_without_echoing_it() {
    let db = TestDb::new().await;
    let unset = run(context_key(&db, &["add"], None), Duration::from_secs(60));
    assert!(!unset.status.success());
    assert!(String::from_utf8_lossy(&unset.stderr).contains("TENANT_CONTEXT_KEY is unset"));
    let malformed = run(context_key(&db, &["add"], Some("k:0123456789abcdefXYZ")), Duration::from_secs(60));
    let stderr = String::from_utf8_lossy(&malformed.stderr);
    assert!(!malformed.status.success());
    assert!(stderr.contains("64 hexadecimal") && !stderr.contains("0123456789abcdefXYZ"), "{stderr}");
}
