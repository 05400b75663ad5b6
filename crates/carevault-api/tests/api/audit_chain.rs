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

    let sealed = audit_chain::seal(&app.db.platform_pool()).await.unwrap();
    assert!(matches!(sealed, Sealed::Rows(n) if n as usize > items.len()), "{sealed:?}");
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
