//! Bulk creation (`Documents::create_many`), as `carevault_app`: one statement, one audit row per
//! batch, nothing left behind by a failure, no way into another tenant.

use carevault_db::repo::MAX_IMPORT_BATCH;
use carevault_db::{AuditAction, DbError, DocumentId, TenantTx, UserRole};
use carevault_testdb::TestDb;

use crate::fixtures::{TwoTenants, app_session, as_user, audit_count, embedding, new_document, two_tenants};

/// The documents of `tenant`, counted as the tenant (no superuser).
async fn document_count(db: &TestDb, tenant: carevault_db::TenantId) -> i64 {
    let mut conn = app_session(db, Some(tenant)).await;
    sqlx::query_scalar("SELECT count(*) FROM documents").fetch_one(&mut conn).await.unwrap()
}

#[tokio::test]
async fn a_batch_is_one_statement_with_one_audit_row_and_keeps_the_callers_order() {
    let db = TestDb::new().await;
    let TwoTenants { pool, a, b, alice, .. } = two_tenants(&db, UserRole::Member).await;
    let batch: Vec<_> =
        (0..250u32).map(|i| new_document(&alice, &format!("f{i}.pdf"), (i % 2 == 0).then(|| embedding(i)))).collect();

    let mut tx = TenantTx::begin(&pool, a, as_user(&alice)).await.unwrap();
    let created = tx.documents().create_many(batch).await.unwrap();
    tx.commit().await.unwrap();

    assert_eq!(created.len(), 250);
    for (i, document) in created.iter().enumerate() {
        assert_eq!(document.filename, format!("f{i}.pdf"));
        assert_eq!(document.tenant_id, a);
        assert_eq!(document.has_embedding, i % 2 == 0);
    }
    assert_eq!(document_count(&db, a).await, 250);
    assert_eq!(document_count(&db, b).await, 0);
    assert_eq!(audit_count(&db, a, AuditAction::DocumentImported.as_str()).await, 1);
    assert_eq!(audit_count(&db, a, AuditAction::DocumentCreated.as_str()).await, 0);

    // The audit row names the tenant and lists every id, in order.
    let mut conn = app_session(&db, Some(a)).await;
    let (resource_type, resource_id, metadata): (String, uuid::Uuid, serde_json::Value) = sqlx::query_as(
        "SELECT resource_type, resource_id, metadata FROM audit_logs WHERE action = 'document.imported'",
    )
    .fetch_one(&mut conn)
    .await
    .unwrap();
    assert_eq!(resource_type, "document");
    assert_eq!(resource_id, a.as_uuid());
    assert_eq!(metadata["count"], 250);
    let ids: Vec<DocumentId> = serde_json::from_value(metadata["ids"].clone()).unwrap();
    assert_eq!(ids, created.iter().map(|d| d.id).collect::<Vec<_>>());
}

#[tokio::test]
async fn a_batch_naming_another_tenants_user_inserts_nothing_and_audits_nothing() {
    let db = TestDb::new().await;
    let TwoTenants { pool, a, b, alice, bob } = two_tenants(&db, UserRole::Member).await;
    // 9 good documents and one uploaded by tenant B's user: the composite key refuses the
    // statement as a whole.
    let mut batch: Vec<_> = (0..10).map(|i| new_document(&alice, &format!("f{i}.pdf"), None)).collect();
    batch[7].user_id = bob.id;

    let mut tx = TenantTx::begin(&pool, a, as_user(&alice)).await.unwrap();
    assert!(matches!(tx.documents().create_many(batch).await, Err(DbError::NotFound)));
    drop(tx);

    assert_eq!(document_count(&db, a).await, 0);
    assert_eq!(document_count(&db, b).await, 0);
    assert_eq!(audit_count(&db, a, AuditAction::DocumentImported.as_str()).await, 0);
    assert_eq!(audit_count(&db, b, AuditAction::DocumentImported.as_str()).await, 0);
}

#[tokio::test]
async fn batches_are_one_to_the_cap_and_a_refused_one_changes_nothing() {
    let db = TestDb::new().await;
    let TwoTenants { pool, a, alice, .. } = two_tenants(&db, UserRole::Member).await;
    let too_many: Vec<_> = (0..=MAX_IMPORT_BATCH).map(|i| new_document(&alice, &format!("f{i}.pdf"), None)).collect();
    let mut negative = vec![new_document(&alice, "ok.pdf", None), new_document(&alice, "bad.pdf", None)];
    negative[1].size_bytes = Some(-1);

    let mut tx = TenantTx::begin(&pool, a, as_user(&alice)).await.unwrap();
    for batch in [Vec::new(), too_many, negative] {
        assert!(matches!(tx.documents().create_many(batch).await, Err(DbError::Invalid(_))));
    }
    // The cap itself is accepted.
    let full: Vec<_> = (0..MAX_IMPORT_BATCH).map(|i| new_document(&alice, &format!("f{i}.pdf"), None)).collect();
    assert_eq!(tx.documents().create_many(full).await.unwrap().len(), MAX_IMPORT_BATCH);
    drop(tx); // rolled back

    assert_eq!(document_count(&db, a).await, 0);
    assert_eq!(audit_count(&db, a, AuditAction::DocumentImported.as_str()).await, 0);
}
