//! `GET /audit-logs` shows each row's place in its tenant's chain, and says which rows the
//! sealer has not chained yet.

use carevault_db::UserRole;
use carevault_db::audit_chain::{self, Sealed};

use crate::helpers::TestApp;

#[tokio::test]
async fn the_audit_log_shows_unsealed_rows_as_such_and_sealed_ones_with_their_place_and_hash() {
    let app = TestApp::spawn().await;
    let tenant = app.tenant("Clinic").await;
    let admin = app.caller(tenant, UserRole::Admin, "admin").await;
    let t = Some(admin.token.as_str());

    let before = app.call("GET", "/api/v1/audit-logs", t, None).await;
    assert_eq!(before.status, 200, "{}", before.body);
    let items = before.body["items"].as_array().unwrap();
    assert!(!items.is_empty());
    for item in items {
        assert_eq!((&item["sealed"], &item["seq"], &item["hash"]), (&false.into(), &().into(), &().into()), "{item}");
    }

    let sealed = audit_chain::seal(&app.db.platform_pool(), None).await.unwrap();
    assert!(matches!(sealed, Sealed::Done { chained, .. } if chained as usize > items.len()), "{sealed:?}");
    let after = app.call("GET", "/api/v1/audit-logs", t, None).await;
    let items = after.body["items"].as_array().unwrap();
    // Every row the list shows was committed before the pass (the list's own `audit.read` row is
    // written after it reads).
    let mut seqs: Vec<i64> = items
        .iter()
        .map(|item| {
            assert_eq!(item["sealed"], true, "{item}");
            let hash = item["hash"].as_str().unwrap();
            assert!(hash.len() == 64 && hash.bytes().all(|b| b.is_ascii_hexdigit()), "{hash}");
            item["seq"].as_i64().unwrap()
        })
        .collect();
    seqs.sort_unstable();
    seqs.dedup();
    assert_eq!(seqs.len(), items.len(), "one place per row");
    assert!(seqs.iter().all(|&s| s >= 1));
}

#[tokio::test]
async fn admins_read_the_latest_checkpoint_with_its_key_id_and_404_before_the_first() {
    let app = TestApp::spawn().await;
    let tenant = app.tenant("Clinic").await;
    let admin = app.caller(tenant, UserRole::Admin, "admin").await;
    let t = Some(admin.token.as_str());
    let path = "/api/v1/audit-logs/checkpoints/latest";

    let none = app.call("GET", path, t, None).await;
    assert_eq!((none.status, none.code()), (404, "RES_404"), "{}", none.body);

    let key = audit_chain::AuditSigningKey::parse(&"07".repeat(32)).unwrap();
    let sealed = audit_chain::seal(&app.db.platform_pool(), Some(&key)).await.unwrap();
    assert!(matches!(sealed, Sealed::Done { checkpointed, .. } if checkpointed >= 1), "{sealed:?}");
    let latest = app.call("GET", path, t, None).await;
    assert_eq!(latest.status, 200, "{}", latest.body);
    let checkpoint: audit_chain::Checkpoint = serde_json::from_value(latest.body.clone()).unwrap();
    assert_eq!(checkpoint.tenant_id, tenant);
    assert!(checkpoint.is_signed_by(&[key.public_key()]), "the response is the signed checkpoint: {}", latest.body);
    assert_eq!(checkpoint.key_id, key.public_key().key_id());
}
