//! The database scenarios of the reference suite, ported so they pass for real: on PostgreSQL,
//! as the runtime role.

use carevault_db::repo::DocumentFilter;
use carevault_db::{
    AuditAction, AuditContext, DbError, Deleted, PageLimit, PlatformTx, TenantId, TenantStatus, TenantTx, UserId,
    UserRole,
};
use carevault_testdb::TestDb;

use crate::fixtures::{
    TwoTenants, app_session, as_user, audit_count, document, embedding, message, new_document, new_user, sqlstate,
    tenant, two_tenants, user,
};

#[tokio::test]
async fn soft_delete_sets_the_timestamp_and_restore_clears_it() {
    let db = TestDb::new().await;
    let (pool, platform) = (db.app_pool(2), db.platform_pool());
    let acme = tenant(&platform, "Acme").await;
    let alice = user(&pool, acme, "alice@acme.test", UserRole::Admin).await;
    assert!(alice.is_active() && !alice.is_deleted());

    let mut tx = TenantTx::begin(&pool, acme, as_user(&alice)).await.unwrap();
    let bob = tx.users().create(new_user("bob@acme.test", UserRole::Member)).await.unwrap();
    let deleted = tx.users().soft_delete(bob.id).await.unwrap();
    assert!(deleted.is_deleted() && !deleted.is_active());
    assert!(deleted.deleted_at.is_some());

    // Active and deleted queries.
    let active = tx.users().list(Deleted::Exclude, PageLimit::default(), None).await.unwrap();
    assert_eq!(active.items.iter().map(|u| u.id).collect::<Vec<_>>(), vec![alice.id]);
    let gone = tx.users().list(Deleted::Only, PageLimit::default(), None).await.unwrap();
    assert_eq!(gone.items.iter().map(|u| u.id).collect::<Vec<_>>(), vec![bob.id]);
    assert!(matches!(tx.users().get(bob.id).await, Err(DbError::NotFound)));

    let restored = tx.users().restore(bob.id).await.unwrap();
    assert!(restored.deleted_at.is_none() && restored.is_active());
    assert!(matches!(tx.users().restore(bob.id).await, Err(DbError::Conflict(_))));
    tx.commit().await.unwrap();

    assert_eq!(audit_count(&db, acme, AuditAction::UserDeleted.as_str()).await, 1);
    assert_eq!(audit_count(&db, acme, AuditAction::UserRestored.as_str()).await, 1);
}

#[tokio::test]
async fn tenant_create_and_soft_delete() {
    let db = TestDb::new().await;
    let platform = db.platform_pool();
    let mut tx = PlatformTx::begin(&platform, AuditContext::default()).await.unwrap();
    let created = tx.tenants().create(crate::fixtures::text("Clinic"), TenantStatus::Trial).await.unwrap();
    assert_eq!(created.name, "Clinic");
    assert!(created.is_active());
    let deleted = tx.tenants().soft_delete(created.id).await.unwrap();
    assert!(deleted.is_deleted() && !deleted.is_active());
    assert!(matches!(tx.tenants().soft_delete(created.id).await, Err(DbError::NotFound)));
    let restored = tx.tenants().restore(created.id).await.unwrap();
    assert!(restored.deleted_at.is_none());
    let suspended = tx.tenants().suspend(created.id).await.unwrap();
    assert_eq!(suspended.status, TenantStatus::Suspended);
    assert!(!suspended.is_active());
    // The System tenant is protected.
    assert!(matches!(tx.tenants().soft_delete(TenantId::SYSTEM).await, Err(DbError::Conflict(_))));
    tx.commit().await.unwrap();

    // Platform actions are audited in the affected tenant's log, with no user.
    let mut conn = app_session(&db, Some(created.id)).await;
    let rows: Vec<(String, Option<uuid::Uuid>, serde_json::Value)> =
        sqlx::query_as("SELECT action, user_id, metadata FROM audit_logs ORDER BY created_at, action")
            .fetch_all(&mut conn)
            .await
            .unwrap();
    let mut actions: Vec<&str> = rows.iter().map(|r| r.0.as_str()).collect();
    actions.sort();
    assert_eq!(actions, ["tenant.created", "tenant.deleted", "tenant.restored", "tenant.suspended"]);
    assert!(rows.iter().all(|r| r.1.is_none() && r.2["actor"] == "platform"));
}

#[tokio::test]
async fn user_belongs_to_its_tenant() {
    let db = TestDb::new().await;
    let (pool, platform) = (db.app_pool(2), db.platform_pool());
    let acme = tenant(&platform, "Acme").await;
    let alice = user(&pool, acme, "Alice@Acme.test", UserRole::Viewer).await;
    assert_eq!(alice.tenant_id, acme);
    assert_eq!(alice.email, "alice@acme.test", "emails are stored lower-case");
    assert_eq!(audit_count(&db, acme, AuditAction::UserCreated.as_str()).await, 1);
}

#[tokio::test]
async fn duplicate_active_email_is_refused_and_reusable_after_soft_delete() {
    let db = TestDb::new().await;
    let (pool, platform) = (db.app_pool(2), db.platform_pool());
    let acme = tenant(&platform, "Acme").await;
    let other = tenant(&platform, "Other").await;
    let first = user(&pool, acme, "dup@acme.test", UserRole::Member).await;

    let mut tx = TenantTx::begin(&pool, acme, AuditContext::default()).await.unwrap();
    let refused = tx.users().create(new_user("DUP@acme.test", UserRole::Member)).await;
    assert!(matches!(refused, Err(DbError::Conflict(_))), "{refused:?}");
    drop(tx); // the failed statement aborted the transaction

    // The same email in another tenant is a different person.
    user(&pool, other, "dup@acme.test", UserRole::Member).await;

    let mut tx = TenantTx::begin(&pool, acme, AuditContext::default()).await.unwrap();
    tx.users().soft_delete(first.id).await.unwrap();
    let second = tx.users().create(new_user("dup@acme.test", UserRole::Member)).await.unwrap();
    assert_ne!(second.id, first.id);
    // Restoring the first would make two active users with one email.
    assert!(matches!(tx.users().restore(first.id).await, Err(DbError::Conflict(_))));
    drop(tx);
}

#[tokio::test]
async fn document_stores_a_1024_dimension_vector() {
    let db = TestDb::new().await;
    let (pool, platform) = (db.app_pool(2), db.platform_pool());
    let acme = tenant(&platform, "Acme").await;
    let alice = user(&pool, acme, "alice@acme.test", UserRole::Member).await;
    let vector = embedding(7);

    let mut tx = TenantTx::begin(&pool, acme, as_user(&alice)).await.unwrap();
    let created = tx.documents().create(new_document(&alice, "scan.pdf", Some(vector.clone()))).await.unwrap();
    assert!(created.has_embedding && created.embedding.is_none());
    let read = tx.documents().get_with_embedding(created.id).await.unwrap();
    assert_eq!(read.embedding.as_deref(), Some(vector.as_slice()));
    let plain = tx.documents().get(created.id).await.unwrap();
    assert!(plain.embedding.is_none() && plain.has_embedding);
    tx.commit().await.unwrap();

    let mut conn = app_session(&db, Some(acme)).await;
    let dims: i32 =
        sqlx::query_scalar("SELECT vector_dims(embedding_vector) FROM documents").fetch_one(&mut conn).await.unwrap();
    assert_eq!(dims, 1024);
    assert_eq!(audit_count(&db, acme, AuditAction::DocumentRead.as_str()).await, 2);
}

#[tokio::test]
async fn audit_rows_cannot_be_updated_deleted_or_truncated() {
    let db = TestDb::new().await;
    let (pool, platform) = (db.app_pool(2), db.platform_pool());
    let acme = tenant(&platform, "Acme").await;
    user(&pool, acme, "alice@acme.test", UserRole::Admin).await;
    let mut conn = app_session(&db, Some(acme)).await;
    let before: i64 = sqlx::query_scalar("SELECT count(*) FROM audit_logs").fetch_one(&mut conn).await.unwrap();
    assert!(before >= 1);

    // As the runtime role: a clear permission error, not a silent "0 rows".
    for statement in [
        "UPDATE audit_logs SET action = 'forged'",
        "DELETE FROM audit_logs",
        "TRUNCATE audit_logs",
        "ALTER TABLE audit_logs DISABLE TRIGGER USER",
        "DROP TABLE audit_logs",
    ] {
        let result = sqlx::query(statement).execute(&mut conn).await;
        assert_eq!(sqlstate(result), "42501", "{statement}");
    }
    let after: i64 = sqlx::query_scalar("SELECT count(*) FROM audit_logs").fetch_one(&mut conn).await.unwrap();
    assert_eq!(after, before);

    // Even the owner is stopped by the triggers (the superuser could drop them: out of scope,
    // docs/THREAT_MODEL.md). This checks the triggers, not isolation.
    let owner = db.owner_pool().await;
    assert!(message(sqlx::query("UPDATE audit_logs SET action = 'x'").execute(&owner).await).contains("immutable"));
    assert!(message(sqlx::query("DELETE FROM audit_logs").execute(&owner).await).contains("immutable"));
    assert!(message(sqlx::query("TRUNCATE audit_logs").execute(&owner).await).contains("immutable"));
}

#[tokio::test]
async fn audit_log_allows_insert_and_select_only() {
    let db = TestDb::new().await;
    let platform = db.platform_pool();
    let acme = tenant(&platform, "Acme").await;
    let mut conn = app_session(&db, Some(acme)).await;
    let privileges: Vec<(String, bool)> = sqlx::query_as(
        "SELECT p, has_table_privilege('carevault_app', 'audit_logs', p) \
                OR (p = 'INSERT' AND has_any_column_privilege('carevault_app', 'audit_logs', p)) \
         FROM unnest(ARRAY['SELECT','INSERT','UPDATE','DELETE','TRUNCATE','REFERENCES','TRIGGER']) AS p",
    )
    .fetch_all(&mut conn)
    .await
    .unwrap();
    let granted: Vec<&str> = privileges.iter().filter(|p| p.1).map(|p| p.0.as_str()).collect();
    assert_eq!(granted, ["SELECT", "INSERT"]);

    sqlx::query(
        "INSERT INTO audit_logs (tenant_id, action, resource_type, resource_id) VALUES ($1, 'x.y', 'test', $1)",
    )
    .bind(acme)
    .execute(&mut conn)
    .await
    .unwrap();
    let seen: i64 =
        sqlx::query_scalar("SELECT count(*) FROM audit_logs WHERE action = 'x.y'").fetch_one(&mut conn).await.unwrap();
    assert_eq!(seen, 1);
}

#[tokio::test]
async fn rls_hides_other_tenants_users_and_documents() {
    let db = TestDb::new().await;
    let TwoTenants { pool, a, alice, bob, .. } = two_tenants(&db, UserRole::Member).await;
    let doc_a = document(&pool, &alice, "a.pdf").await;
    document(&pool, &bob, "b.pdf").await;

    // Through the data layer.
    let mut tx = TenantTx::begin(&pool, a, as_user(&alice)).await.unwrap();
    let users = tx.users().list(Deleted::Include, PageLimit::default(), None).await.unwrap();
    assert_eq!(users.items.iter().map(|u| u.id).collect::<Vec<_>>(), vec![alice.id]);
    let docs = tx.documents().list(DocumentFilter::default(), PageLimit::default(), None).await.unwrap();
    assert_eq!(docs.items.iter().map(|d| d.id).collect::<Vec<_>>(), vec![doc_a.id]);
    tx.commit().await.unwrap();

    // Raw SQL as the runtime role: RLS alone, no data-layer filter.
    let mut conn = app_session(&db, Some(a)).await;
    let user_tenants: Vec<TenantId> =
        sqlx::query_scalar("SELECT tenant_id FROM users").fetch_all(&mut conn).await.unwrap();
    assert_eq!(user_tenants, vec![a]);
    let doc_tenants: Vec<TenantId> =
        sqlx::query_scalar("SELECT tenant_id FROM documents").fetch_all(&mut conn).await.unwrap();
    assert_eq!(doc_tenants, vec![a]);
    let tenants: Vec<TenantId> = sqlx::query_scalar("SELECT id FROM tenants").fetch_all(&mut conn).await.unwrap();
    assert_eq!(tenants, vec![a]);
    let audit_tenants: Vec<TenantId> =
        sqlx::query_scalar("SELECT DISTINCT tenant_id FROM audit_logs").fetch_all(&mut conn).await.unwrap();
    assert_eq!(audit_tenants, vec![a]);
}

#[tokio::test]
async fn insert_for_another_tenant_is_refused() {
    let db = TestDb::new().await;
    let (pool, platform) = (db.app_pool(2), db.platform_pool());
    let (a, b) = (tenant(&platform, "A").await, tenant(&platform, "B").await);
    let bob = user(&pool, b, "bob@b.test", UserRole::Member).await;
    let mut conn = app_session(&db, Some(a)).await;

    let user_insert = sqlx::query("INSERT INTO users (tenant_id, email, role) VALUES ($1, 'x@b.test', 'admin')")
        .bind(b)
        .execute(&mut conn)
        .await;
    assert_eq!(sqlstate(user_insert), "42501");
    let doc_insert = sqlx::query(
        "INSERT INTO documents (tenant_id, user_id, s3_key, s3_bucket, filename) VALUES ($1, $2, 'k', 'b', 'f')",
    )
    .bind(b)
    .bind(bob.id)
    .execute(&mut conn)
    .await;
    assert_eq!(sqlstate(doc_insert), "42501");
    let audit_insert = sqlx::query(
        "INSERT INTO audit_logs (tenant_id, action, resource_type, resource_id) VALUES ($1, 'forged', 'x', $1)",
    )
    .bind(b)
    .execute(&mut conn)
    .await;
    assert_eq!(sqlstate(audit_insert), "42501");
    // Tenants are read-only for the runtime role.
    let tenant_insert = sqlx::query("INSERT INTO tenants (name) VALUES ('evil')").execute(&mut conn).await;
    assert_eq!(sqlstate(tenant_insert), "42501");
    assert_eq!(audit_count(&db, b, "forged").await, 0);
}

#[tokio::test]
async fn same_tenant_reads_work() {
    let db = TestDb::new().await;
    let (pool, platform) = (db.app_pool(2), db.platform_pool());
    let a = tenant(&platform, "A").await;
    let alice = user(&pool, a, "alice@a.test", UserRole::Member).await;
    let doc = document(&pool, &alice, "a.pdf").await;
    let mut tx = TenantTx::begin(&pool, a, as_user(&alice)).await.unwrap();
    assert_eq!(tx.users().get(alice.id).await.unwrap(), alice);
    assert_eq!(tx.documents().get(doc.id).await.unwrap().filename, "a.pdf");
    assert_eq!(tx.tenant().read().await.unwrap().id, a);
    tx.commit().await.unwrap();
    assert_eq!(audit_count(&db, a, AuditAction::TenantRead.as_str()).await, 1);
}

#[tokio::test]
async fn no_tenant_context_sees_nothing() {
    let db = TestDb::new().await;
    let (pool, platform) = (db.app_pool(2), db.platform_pool());
    let a = tenant(&platform, "A").await;
    let alice = user(&pool, a, "alice@a.test", UserRole::Member).await;
    document(&pool, &alice, "a.pdf").await;

    let mut conn = app_session(&db, None).await;
    for table in ["tenants", "users", "documents", "audit_logs"] {
        let sql = format!("SELECT count(*) FROM {table}");
        let count: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(sql)).fetch_one(&mut conn).await.unwrap();
        assert_eq!(count, 0, "{table}");
    }
    // After a tenant transaction ended, the setting reads '' (not NULL): still nothing, no error.
    sqlx::query("BEGIN").execute(&mut conn).await.unwrap();
    sqlx::query("SELECT set_config('app.current_tenant_id', $1, true)")
        .bind(a.to_string())
        .execute(&mut conn)
        .await
        .unwrap();
    sqlx::query("COMMIT").execute(&mut conn).await.unwrap();
    let setting: String =
        sqlx::query_scalar("SELECT current_setting('app.current_tenant_id')").fetch_one(&mut conn).await.unwrap();
    assert_eq!(setting, "");
    let count: i64 = sqlx::query_scalar("SELECT count(*) FROM documents").fetch_one(&mut conn).await.unwrap();
    assert_eq!(count, 0);

    // The login role itself, without switching, can touch nothing.
    let mut login = crate::fixtures::app_session(&db, None).await;
    sqlx::query("RESET ROLE").execute(&mut login).await.unwrap();
    assert_eq!(sqlstate(sqlx::query("SELECT count(*) FROM documents").execute(&mut login).await), "42501");
}

#[tokio::test]
async fn other_tenants_soft_deleted_rows_stay_hidden() {
    let db = TestDb::new().await;
    let (pool, platform) = (db.app_pool(2), db.platform_pool());
    let (a, b) = (tenant(&platform, "A").await, tenant(&platform, "B").await);
    let bob = user(&pool, b, "bob@b.test", UserRole::Member).await;
    let doc = document(&pool, &bob, "b.pdf").await;
    let mut tx = TenantTx::begin(&pool, b, as_user(&bob)).await.unwrap();
    tx.documents().soft_delete(doc.id).await.unwrap();
    tx.users().soft_delete(bob.id).await.unwrap();
    tx.commit().await.unwrap();

    let mut tx = TenantTx::begin(&pool, a, AuditContext::default()).await.unwrap();
    let filter = DocumentFilter { deleted: Deleted::Only, ..DocumentFilter::default() };
    assert!(tx.documents().list(filter, PageLimit::default(), None).await.unwrap().items.is_empty());
    assert!(tx.users().list(Deleted::Only, PageLimit::default(), None).await.unwrap().items.is_empty());
    assert!(matches!(tx.documents().restore(doc.id).await, Err(DbError::NotFound)));
    drop(tx);
}

#[tokio::test]
async fn ten_tenants_with_five_documents_each_do_not_leak() {
    let db = TestDb::new().await;
    let (pool, platform) = (db.app_pool(4), db.platform_pool());
    let mut expected = Vec::new();
    for t in 0..10 {
        let id = tenant(&platform, &format!("T{t}")).await;
        let owner = user(&pool, id, &format!("u{t}@t.test"), UserRole::Member).await;
        let mut docs = Vec::new();
        for d in 0..5 {
            docs.push(document(&pool, &owner, &format!("t{t}-d{d}.pdf")).await.id);
        }
        docs.sort();
        expected.push((id, docs));
    }
    for (id, docs) in &expected {
        let mut tx = TenantTx::begin(&pool, *id, AuditContext::default()).await.unwrap();
        let page = tx.documents().list(DocumentFilter::default(), PageLimit::default(), None).await.unwrap();
        let mut seen: Vec<_> = page.items.iter().map(|d| d.id).collect();
        seen.sort();
        assert_eq!(&seen, docs);
        assert!(page.items.iter().all(|d| d.tenant_id == *id));
        tx.commit().await.unwrap();
    }
}

#[tokio::test]
async fn concurrent_tenants_over_one_pool_see_only_their_own_rows() {
    let db = TestDb::new().await;
    let (pool, platform) = (db.app_pool(3), db.platform_pool());
    let mut owners = Vec::new();
    for t in 0..8 {
        let id = tenant(&platform, &format!("T{t}")).await;
        let owner = user(&pool, id, &format!("u{t}@t.test"), UserRole::Member).await;
        document(&pool, &owner, "x.pdf").await;
        owners.push(owner);
    }
    // 8 tenants x 10 rounds on 3 connections: every connection serves many tenants in turn.
    let tasks = owners.into_iter().map(|owner| {
        let pool = pool.clone();
        tokio::spawn(async move {
            for _ in 0..10 {
                let mut tx = TenantTx::begin(&pool, owner.tenant_id, as_user(&owner)).await.unwrap();
                let page = tx.documents().list(DocumentFilter::default(), PageLimit::default(), None).await.unwrap();
                assert_eq!(page.items.len(), 1);
                assert!(page.items.iter().all(|d| d.tenant_id == owner.tenant_id && d.user_id == owner.id));
                let users = tx.users().list(Deleted::Include, PageLimit::default(), None).await.unwrap();
                assert_eq!(users.items.iter().map(|u| u.id).collect::<Vec<UserId>>(), vec![owner.id]);
                tokio::task::yield_now().await;
                tx.commit().await.unwrap();
            }
        })
    });
    for task in futures::future::join_all(tasks).await {
        task.unwrap();
    }
}

#[tokio::test]
async fn explicit_where_or_union_on_another_tenants_id_returns_nothing() {
    let db = TestDb::new().await;
    let TwoTenants { pool, a, b, alice, bob } = two_tenants(&db, UserRole::Member).await;
    let doc_a = document(&pool, &alice, "a.pdf").await;
    let doc_b = document(&pool, &bob, "b.pdf").await;
    let mut conn = app_session(&db, Some(a)).await;

    let by_tenant: Vec<uuid::Uuid> =
        sqlx::query_scalar("SELECT id FROM documents WHERE tenant_id = $1").bind(b).fetch_all(&mut conn).await.unwrap();
    assert!(by_tenant.is_empty());
    let by_id: Vec<uuid::Uuid> =
        sqlx::query_scalar("SELECT id FROM documents WHERE id = $1").bind(doc_b.id).fetch_all(&mut conn).await.unwrap();
    assert!(by_id.is_empty());
    let or: Vec<uuid::Uuid> =
        sqlx::query_scalar("SELECT id FROM documents WHERE tenant_id = $1 OR tenant_id = $2 OR true")
            .bind(a)
            .bind(b)
            .fetch_all(&mut conn)
            .await
            .unwrap();
    assert_eq!(or, vec![doc_a.id.as_uuid()]);
    let union: Vec<uuid::Uuid> = sqlx::query_scalar(
        "SELECT id FROM documents WHERE tenant_id = $1 UNION SELECT id FROM documents WHERE tenant_id = $2 \
         UNION SELECT id FROM users WHERE tenant_id = $2 UNION SELECT id FROM tenants WHERE id = $2",
    )
    .bind(a)
    .bind(b)
    .fetch_all(&mut conn)
    .await
    .unwrap();
    assert_eq!(union, vec![doc_a.id.as_uuid()]);
    let bob_seen: i64 =
        sqlx::query_scalar("SELECT count(*) FROM users u JOIN documents d ON d.user_id = u.id WHERE u.id = $1")
            .bind(bob.id)
            .fetch_one(&mut conn)
            .await
            .unwrap();
    assert_eq!(bob_seen, 0);
}
