//! Our isolation guarantees beyond the reference suite.

use carevault_db::repo::{DocumentUpdate, Tenant, User, UserUpdate};
use carevault_db::{
    AppPool, AuditAction, AuditContext, DbError, DocumentId, DocumentStatus, Email, TenantId, TenantTx, UserId,
    UserRole,
};
use carevault_testdb::TestDb;

use crate::fixtures::{
    TwoTenants, app_session, as_user, audit_count, document, message, new_document, sqlstate, tenant, text,
    two_tenants, user,
};

#[tokio::test]
async fn no_foreign_key_can_reference_another_tenants_row() {
    let db = TestDb::new().await;
    let TwoTenants { pool, a, alice, bob, .. } = two_tenants(&db, UserRole::Member).await;

    // Raw SQL in tenant A naming tenant B's user: the composite keys refuse it (23503), exactly as
    // for a user id that does not exist.
    let mut conn = app_session(&db, Some(a)).await;
    for user_id in [bob.id.as_uuid(), uuid::Uuid::new_v4()] {
        let document = sqlx::query(
            "INSERT INTO documents (tenant_id, user_id, s3_key, s3_bucket, filename) VALUES ($1, $2, 'k', 'b', 'f')",
        )
        .bind(a)
        .bind(user_id)
        .execute(&mut conn)
        .await;
        assert_eq!(sqlstate(document), "23503");
        let audit = sqlx::query(
            "INSERT INTO audit_logs (tenant_id, user_id, action, resource_type, resource_id) VALUES ($1, $2, 'x', 'y', $1)",
        )
        .bind(a)
        .bind(user_id)
        .execute(&mut conn)
        .await;
        assert_eq!(sqlstate(audit), "23503");
    }
    // Moving an own document onto tenant B's user is refused too.
    let own = document(&pool, &alice, "a.pdf").await;
    let moved = sqlx::query("UPDATE documents SET user_id = $1 WHERE id = $2")
        .bind(bob.id)
        .bind(own.id)
        .execute(&mut conn)
        .await;
    assert_eq!(sqlstate(moved), "23503");

    // Through the data layer: another tenant's user is simply not found.
    let mut tx = TenantTx::begin(&pool, a, as_user(&alice)).await.unwrap();
    let mut forged = new_document(&alice, "x.pdf", None);
    forged.user_id = bob.id;
    assert!(matches!(tx.documents().create(forged).await, Err(DbError::NotFound)));
}

/// What a data-layer call answered, reduced to what a caller can observe.
fn outcome<T>(result: Result<T, DbError>) -> String {
    match result {
        Ok(_) => "ok".into(),
        Err(error) => format!("{error:?}"),
    }
}

#[tokio::test]
async fn another_tenants_id_behaves_exactly_like_a_random_id() {
    let db = TestDb::new().await;
    let TwoTenants { pool, a, b, alice, bob } = two_tenants(&db, UserRole::Admin).await;
    let bob_doc = document(&pool, &bob, "b.pdf").await;
    let audit_before = audit_count(&db, a, AuditAction::DocumentRead.as_str()).await;

    for (their_user, their_doc) in [(bob.id, bob_doc.id), (UserId::new_random(), DocumentId::new_random())] {
        let mut tx = TenantTx::begin(&pool, a, as_user(&alice)).await.unwrap();
        let observed = vec![
            outcome(tx.users().get(their_user).await),
            outcome(
                tx.users()
                    .update(their_user, UserUpdate { role: Some(UserRole::Viewer), ..UserUpdate::default() })
                    .await,
            ),
            outcome(tx.users().soft_delete(their_user).await),
            outcome(tx.users().restore(their_user).await),
            outcome(tx.users().record_login(their_user).await),
            outcome(tx.documents().get(their_doc).await),
            outcome(tx.documents().get_with_embedding(their_doc).await),
            outcome(
                tx.documents()
                    .update(
                        their_doc,
                        DocumentUpdate { status: Some(DocumentStatus::Failed), ..DocumentUpdate::default() },
                    )
                    .await,
            ),
            outcome(tx.documents().soft_delete(their_doc).await),
            outcome(tx.documents().restore(their_doc).await),
        ];
        assert!(observed.iter().all(|o| o == "NotFound"), "{observed:?}");
        tx.commit().await.unwrap();
    }
    // Nothing was audited for the misses, and tenant B's rows are untouched.
    assert_eq!(audit_count(&db, a, AuditAction::DocumentRead.as_str()).await, audit_before);
    let mut tx = TenantTx::begin(&pool, b, as_user(&bob)).await.unwrap();
    let doc = tx.documents().get(bob_doc.id).await.unwrap();
    assert_eq!((doc.status, doc.deleted_at, doc.updated_at), (DocumentStatus::Processing, None, bob_doc.updated_at));
    let user = tx.users().get(bob.id).await.unwrap();
    assert_eq!((user.role, user.last_login_at), (UserRole::Admin, None));
}

#[tokio::test]
async fn tenant_id_cannot_change() {
    let db = TestDb::new().await;
    let (pool, platform) = (db.app_pool(2), db.platform_pool());
    let (a, b) = (tenant(&platform, "A").await, tenant(&platform, "B").await);
    let alice = user(&pool, a, "alice@a.test", UserRole::Member).await;
    let doc = document(&pool, &alice, "a.pdf").await;

    let mut conn = app_session(&db, Some(a)).await;
    for statement in ["UPDATE users SET tenant_id = $1", "UPDATE documents SET tenant_id = $1"] {
        let result = sqlx::query(statement).bind(b).execute(&mut conn).await;
        assert!(["42501", "23000"].contains(&sqlstate(result).as_str()), "{statement}");
    }
    // Not even the owner can move a row: the trigger refuses it for every role.
    let owner = db.owner_pool().await;
    let result =
        sqlx::query("UPDATE documents SET tenant_id = $1 WHERE id = $2").bind(b).bind(doc.id).execute(&owner).await;
    assert!(message(result).contains("tenant_id is immutable"));
    let result =
        sqlx::query("UPDATE users SET id = gen_random_uuid() WHERE id = $1").bind(alice.id).execute(&owner).await;
    assert!(message(result).contains("id is immutable"));
}

#[tokio::test]
async fn updated_at_moves_on_a_raw_sql_update() {
    let db = TestDb::new().await;
    let (pool, platform) = (db.app_pool(2), db.platform_pool());
    let a = tenant(&platform, "A").await;
    let alice = user(&pool, a, "alice@a.test", UserRole::Member).await;
    let doc = document(&pool, &alice, "a.pdf").await;

    let mut conn = app_session(&db, Some(a)).await;
    let (user_after, doc_after): (chrono::DateTime<chrono::Utc>, chrono::DateTime<chrono::Utc>) = {
        // The application never sets updated_at: the trigger does.
        let u = sqlx::query_scalar("UPDATE users SET full_name = 'Alice' WHERE id = $1 RETURNING updated_at")
            .bind(alice.id)
            .fetch_one(&mut conn)
            .await
            .unwrap();
        let d = sqlx::query_scalar("UPDATE documents SET status = 'completed' WHERE id = $1 RETURNING updated_at")
            .bind(doc.id)
            .fetch_one(&mut conn)
            .await
            .unwrap();
        (u, d)
    };
    assert!(user_after > alice.updated_at);
    assert!(doc_after > doc.updated_at);
    // A forged updated_at is overwritten too.
    let forged: chrono::DateTime<chrono::Utc> =
        sqlx::query_scalar("UPDATE documents SET updated_at = '2000-01-01' WHERE id = $1 RETURNING updated_at")
            .bind(doc.id)
            .fetch_one(&mut conn)
            .await
            .unwrap();
    assert!(forged > doc.updated_at);
}

#[tokio::test]
async fn a_failed_transaction_leaves_neither_the_write_nor_its_audit_row() {
    let db = TestDb::new().await;
    let (pool, platform) = (db.app_pool(2), db.platform_pool());
    let a = tenant(&platform, "A").await;
    let alice = user(&pool, a, "alice@a.test", UserRole::Member).await;

    let mut tx = TenantTx::begin(&pool, a, as_user(&alice)).await.unwrap();
    let created = tx.documents().create(new_document(&alice, "half.pdf", None)).await.unwrap();
    // Fails half-way: the transaction is dropped without commit.
    assert!(tx.documents().get(DocumentId::new_random()).await.is_err());
    drop(tx);

    let mut conn = app_session(&db, Some(a)).await;
    let docs: i64 = sqlx::query_scalar("SELECT count(*) FROM documents WHERE id = $1")
        .bind(created.id)
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(docs, 0);
    assert_eq!(audit_count(&db, a, AuditAction::DocumentCreated.as_str()).await, 0);
}

#[tokio::test]
async fn audit_rows_carry_the_context_and_no_phi() {
    let db = TestDb::new().await;
    let (pool, platform) = (db.app_pool(2), db.platform_pool());
    let a = tenant(&platform, "A").await;
    let alice = user(&pool, a, "alice@a.test", UserRole::Member).await;
    let context = AuditContext {
        user_id: Some(alice.id),
        request_id: Some("req-42".into()),
        ip_address: Some("203.0.113.9".parse().unwrap()),
        user_agent: Some("agent/1.0".into()),
    };
    let mut tx = TenantTx::begin(&pool, a, context).await.unwrap();
    let mut new = new_document(&alice, "secret-diagnosis.pdf", None);
    new.metadata = carevault_db::Metadata::parse(serde_json::json!({"patient": "John Doe"})).unwrap();
    let doc = tx.documents().create(new).await.unwrap();
    tx.documents()
        .update(doc.id, DocumentUpdate { status: Some(DocumentStatus::Completed), ..DocumentUpdate::default() })
        .await
        .unwrap();
    let page = tx
        .audit_log()
        .list(&carevault_db::repo::AuditFilter::default(), carevault_db::PageLimit::default(), None)
        .await
        .unwrap();
    tx.commit().await.unwrap();

    let updated = page.items.iter().find(|e| e.known_action() == Some(AuditAction::DocumentUpdated)).unwrap();
    assert_eq!(updated.user_id, Some(alice.id));
    assert_eq!(updated.resource_id, doc.id.as_uuid());
    assert_eq!(updated.ip_address.as_deref(), Some("203.0.113.9"));
    assert_eq!(updated.user_agent.as_deref(), Some("agent/1.0"));
    assert_eq!(updated.metadata["request_id"], "req-42");
    assert_eq!(updated.metadata["fields"], serde_json::json!(["status"]));
    for entry in &page.items {
        let text = entry.metadata.to_string();
        assert!(!text.contains("John") && !text.contains("diagnosis") && !text.contains("alice@"), "{text}");
    }
    assert_eq!(audit_count(&db, a, AuditAction::AuditRead.as_str()).await, 1);
}

#[tokio::test]
async fn an_exhausted_pool_and_an_unreachable_database_are_told_apart() {
    let db = TestDb::new().await;
    let config = carevault_db::PoolConfig {
        max_connections: 1,
        acquire_timeout: std::time::Duration::from_millis(300),
        ..carevault_db::PoolConfig::default()
    };
    let pool = carevault_db::AppPool::connect_lazy(&db.app_url(), config, carevault_testdb::context_key()).unwrap();
    let held = TenantTx::begin(&pool, carevault_db::TenantId::SYSTEM, AuditContext::default()).await.unwrap();
    let second = TenantTx::begin(&pool, carevault_db::TenantId::SYSTEM, AuditContext::default()).await;
    assert!(matches!(second, Err(DbError::PoolExhausted)), "{second:?}");
    drop(held);

    let nowhere = carevault_db::AppPool::connect_lazy(
        "postgres://carevault_api@localhost/x?host=/nonexistent-carevault",
        config,
        carevault_testdb::context_key(),
    )
    .unwrap();
    let result = TenantTx::begin(&nowhere, carevault_db::TenantId::SYSTEM, AuditContext::default()).await;
    assert!(matches!(result, Err(DbError::Unavailable(_))), "{result:?}");
    assert!(matches!(nowhere.ping().await, Err(DbError::Unavailable(_))));
}

#[tokio::test]
async fn migrate_down_refuses_an_unknown_target() {
    let db = TestDb::new().await;
    let owner = db.owner_pool().await;
    for target in [-1, carevault_db::migrate::head_version() + 1, 99_999] {
        let result = carevault_db::migrate::down(&owner, target).await;
        assert!(matches!(result, Err(DbError::Invalid(_))), "{target}: {result:?}");
    }
    assert_eq!(carevault_db::migrate::current_version(&owner).await.unwrap(), carevault_db::migrate::head_version());
}

#[tokio::test]
async fn the_leak_guard_refuses_a_connection_that_kept_a_tenant_or_role() {
    use sqlx::Connection;
    let db = TestDb::new().await;
    let a = tenant(&db.platform_pool(), "A").await;
    let mut conn = sqlx::PgConnection::connect(&db.app_url()).await.unwrap();
    let login = "carevault_api";
    assert!(carevault_db::connection_is_clean(&mut conn, login).await.unwrap());

    // A session-level tenant context survives the transaction: refused.
    sqlx::query("SELECT set_config('app.tenant_context', $1, false)")
        .bind(format!("c1.test.{a}"))
        .execute(&mut conn)
        .await
        .unwrap();
    assert!(!carevault_db::connection_is_clean(&mut conn, login).await.unwrap());
    sqlx::query("RESET app.tenant_context").execute(&mut conn).await.unwrap();
    assert!(carevault_db::connection_is_clean(&mut conn, login).await.unwrap());

    // A session-level role switch: refused.
    sqlx::query("SET ROLE carevault_app").execute(&mut conn).await.unwrap();
    assert!(!carevault_db::connection_is_clean(&mut conn, login).await.unwrap());
    sqlx::query("RESET ROLE").execute(&mut conn).await.unwrap();

    // Another login than the pool's: refused.
    assert!(!carevault_db::connection_is_clean(&mut conn, "carevault_ops").await.unwrap());

    // After a TenantTx, nothing survives on the pool's connection (one connection, reused).
    let pool = db.app_pool(1);
    let mut tx = TenantTx::begin(&pool, a, AuditContext::default()).await.unwrap();
    tx.tenant().read().await.unwrap();
    tx.commit().await.unwrap();
    let mut tx = TenantTx::begin(&pool, carevault_db::TenantId::SYSTEM, AuditContext::default()).await.unwrap();
    assert_eq!(tx.tenant().read().await.unwrap().id, carevault_db::TenantId::SYSTEM);
    drop(tx);
}

#[tokio::test]
async fn login_role_defaults_cannot_steer_the_pools_connections() {
    let db = TestDb::new().await;
    let TwoTenants { pool: _, a, b, alice, .. } = two_tenants(&db, UserRole::Member).await;
    // What a session holding carevault_api's credentials may do to every later login of that role
    // (scoped to this test's database: the cluster is shared).
    let mut conn = app_session(&db, None).await;
    let name: String = sqlx::query_scalar("SELECT current_database()::text").fetch_one(&mut conn).await.unwrap();
    sqlx::query("RESET ROLE").execute(&mut conn).await.unwrap();
    for setting in
        ["role = 'carevault_app'", "search_path = pg_temp", "default_transaction_read_only = on", "row_security = off"]
    {
        let sql = format!("ALTER ROLE carevault_api IN DATABASE \"{name}\" SET {setting}");
        sqlx::raw_sql(sqlx::AssertSqlSafe(sql)).execute(&mut conn).await.unwrap();
    }
    // PostgreSQL itself refuses a role default for a custom (placeholder) setting to a non-superuser.
    let tenant_default = format!("ALTER ROLE carevault_api IN DATABASE \"{name}\" SET app.current_tenant_id = '{b}'");
    assert_eq!(sqlstate(sqlx::raw_sql(sqlx::AssertSqlSafe(tenant_default)).execute(&mut conn).await), "42501");

    // A fresh pool (one connection, reused) still works and still isolates.
    let pool = db.app_pool(1);
    for _ in 0..3 {
        let mut tx = TenantTx::begin(&pool, a, as_user(&alice)).await.unwrap();
        tx.documents().create(new_document(&alice, "still-writable.pdf", None)).await.unwrap();
        let page = tx.documents().list(Default::default(), carevault_db::PageLimit::default(), None).await.unwrap();
        assert!(page.items.iter().all(|d| d.tenant_id == a));
        tx.commit().await.unwrap();
    }
    let owner = db.owner_pool().await;
    let reset = format!("ALTER ROLE carevault_api IN DATABASE \"{name}\" RESET ALL");
    sqlx::raw_sql(sqlx::AssertSqlSafe(reset)).execute(&owner).await.unwrap();
}

#[tokio::test]
async fn a_login_session_cannot_keep_a_transaction_open_and_idle() {
    use sqlx::Connection;
    let db = TestDb::new().await;
    // The bootstrap's role default, what remains when a pooler drops the pools' startup options.
    for url in [db.app_url(), db.ops_url()] {
        let mut conn = sqlx::PgConnection::connect(&url).await.unwrap();
        let timeout: String =
            sqlx::query_scalar("SHOW idle_in_transaction_session_timeout").fetch_one(&mut conn).await.unwrap();
        assert_eq!(timeout, carevault_db::manifest::IDLE_IN_TRANSACTION_TIMEOUT, "{url}");
    }
    // And the server enforces it: with a short timeout, an idle transaction's session is ended.
    let mut conn = sqlx::PgConnection::connect(&db.app_url()).await.unwrap();
    sqlx::raw_sql("SET idle_in_transaction_session_timeout = '200ms'; BEGIN; SELECT 1")
        .execute(&mut conn)
        .await
        .unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(600)).await;
    assert!(sqlx::query("SELECT 1").execute(&mut conn).await.is_err(), "the idle transaction's session survived");
}

#[tokio::test]
async fn a_connection_without_the_startup_settings_is_detected() {
    use sqlx::ConnectOptions;
    let db = TestDb::new().await;
    let options: sqlx::postgres::PgConnectOptions = db.app_url().parse().unwrap();
    // With the startup settings, as the pools connect: nothing differs.
    let mut pinned = options.clone().options(carevault_db::PINNED_SETTINGS).connect().await.unwrap();
    assert_eq!(carevault_db::settings_not_pinned(&mut pinned).await.unwrap(), Vec::<String>::new());
    // Without them (a pooler dropping `options`), under a role default a session left behind.
    let owner = db.owner_pool().await;
    let set = format!("ALTER ROLE carevault_api IN DATABASE \"{}\" SET search_path = pg_temp", db.name());
    sqlx::raw_sql(sqlx::AssertSqlSafe(set)).execute(&owner).await.unwrap();
    let mut dropped = options.connect().await.unwrap();
    let differing = carevault_db::settings_not_pinned(&mut dropped).await.unwrap();
    assert_eq!(differing, ["search_path=pg_temp"]);
    let reset = format!("ALTER ROLE carevault_api IN DATABASE \"{}\" RESET ALL", db.name());
    sqlx::raw_sql(sqlx::AssertSqlSafe(reset)).execute(&owner).await.unwrap();
}

#[tokio::test]
async fn unnamed_statements_work_end_to_end() {
    // DB_STATEMENT_CACHE=false (PgBouncer < 1.21): every query is sent unnamed.
    let db = TestDb::new().await;
    let config = carevault_db::PoolConfig { statement_cache: false, ..carevault_db::PoolConfig::default() };
    let pool = carevault_db::AppPool::connect_lazy(&db.app_url(), config, carevault_testdb::context_key()).unwrap();
    let platform = carevault_db::PlatformPool::connect_lazy(&db.ops_url(), config).unwrap();
    let a = tenant(&platform, "A").await;
    let alice = user(&pool, a, "alice@a.test", UserRole::Member).await;
    for _ in 0..3 {
        let mut tx = TenantTx::begin(&pool, a, as_user(&alice)).await.unwrap();
        tx.documents().create(new_document(&alice, "u.pdf", None)).await.unwrap();
        tx.commit().await.unwrap();
    }
    let mut conn = app_session(&db, Some(a)).await;
    let count: i64 = sqlx::query_scalar("SELECT count(*) FROM documents").fetch_one(&mut conn).await.unwrap();
    assert_eq!(count, 3);
    assert_eq!(pool.ping().await.ok(), Some(()));
}

#[tokio::test]
async fn the_authentication_lookup_reads_the_tenant_and_its_user_by_sub() {
    let db = TestDb::new().await;
    let (pool, platform) = (db.app_pool(2), db.platform_pool());
    let acme = tenant(&platform, "Acme").await;
    let other = tenant(&platform, "Other").await;
    // One transaction per step, so that the rows' `created_at` differ.
    let mut tx = TenantTx::begin(&pool, acme, AuditContext::default()).await.unwrap();
    let first = provision(&mut tx, "sub-1", "first@acme.test").await;
    tx.commit().await.unwrap();
    let mut tx = TenantTx::begin(&pool, acme, AuditContext::default()).await.unwrap();
    tx.users().soft_delete(first).await.unwrap();
    tx.commit().await.unwrap();
    let mut tx = TenantTx::begin(&pool, acme, AuditContext::default()).await.unwrap();
    let second = provision(&mut tx, "sub-1", "second@acme.test").await;
    tx.commit().await.unwrap();
    let mut tx = TenantTx::begin(&pool, acme, AuditContext::default()).await.unwrap();
    tx.users().soft_delete(second).await.unwrap();
    tx.commit().await.unwrap();

    // Only deleted users have this sub: the newest.
    let (tenant, user) = lookup(&pool, acme, "sub-1").await.unwrap();
    assert_eq!((tenant.id, tenant.name.as_str()), (acme, "Acme"));
    assert_eq!(user.map(|u| (u.id, u.is_deleted())), Some((second, true)));
    // An active one comes first, even when older.
    let mut tx = TenantTx::begin(&pool, acme, AuditContext::default()).await.unwrap();
    tx.users().restore(first).await.unwrap();
    tx.commit().await.unwrap();
    let user = lookup(&pool, acme, "sub-1").await.unwrap().1.unwrap();
    assert_eq!(
        (user.id, user.email.as_str(), user.role, user.is_deleted()),
        (first, "first@acme.test", UserRole::Viewer, false)
    );

    // No such sub; another tenant's user is not seen; no such tenant.
    assert!(lookup(&pool, acme, "sub-2").await.unwrap().1.is_none());
    let (tenant, user) = lookup(&pool, other, "sub-1").await.unwrap();
    assert_eq!((tenant.id, user), (other, None));
    let unknown = TenantId::parse(&uuid::Uuid::new_v4().to_string()).unwrap();
    assert!(lookup(&pool, unknown, "sub-1").await.is_none());
}

async fn provision(tx: &mut TenantTx, sub: &str, email: &str) -> UserId {
    tx.users().provision(text(sub), Email::parse(email).unwrap()).await.unwrap().id
}

/// The lookup, in a transaction of `tenant`.
async fn lookup(pool: &AppPool, tenant: TenantId, sub: &str) -> Option<(Tenant, Option<User>)> {
    let mut tx = TenantTx::begin(pool, tenant, AuditContext::default()).await.unwrap();
    let found = tx.tenant().lookup_with_user(sub).await.unwrap();
    tx.commit().await.unwrap();
    found
}

#[tokio::test]
async fn a_tenant_transaction_overrides_what_a_session_left_behind() {
    use carevault_db::tenant_context::{Binding, expiry_from_now};
    use sqlx::Connection;
    let db = TestDb::new().await;
    let platform = db.platform_pool();
    let (a, b) = (tenant(&platform, "A").await, tenant(&platform, "B").await);
    let mut conn = sqlx::PgConnection::connect(&db.app_url()).await.unwrap();
    // A session-level tenant context of B, valid for this connection, left behind...
    carevault_testdb::prove_tenant(&mut conn, b).await;
    sqlx::query("RESET ROLE").execute(&mut conn).await.unwrap();
    // ...is overridden by the next transaction's first statement, as TenantTx sends it.
    let mut tx = conn.begin().await.unwrap();
    let binding = Binding::read_transaction(&mut tx).await.unwrap();
    let proof = carevault_testdb::context_key().prove(a, None, &binding, expiry_from_now());
    sqlx::query("SELECT public.carevault_enter_tenant($1, '1min')").bind(proof).execute(&mut *tx).await.unwrap();
    let seen: Vec<TenantId> = sqlx::query_scalar("SELECT id FROM tenants").fetch_all(&mut *tx).await.unwrap();
    assert_eq!(seen, [a]);
    tx.commit().await.unwrap();
    // A session-level role left behind makes the next transaction's first statement fail (the
    // login may execute carevault_enter_tenant, carevault_app may not): the pool then closes that
    // connection and tries another (`TenantTx::begin`).
    sqlx::query("SET ROLE carevault_app").execute(&mut conn).await.unwrap();
    let mut tx = conn.begin().await.unwrap();
    let refused = sqlx::query("SELECT public.carevault_enter_tenant('x', '1min')").execute(&mut *tx).await;
    assert_eq!(crate::fixtures::sqlstate(refused), "42501");
}

#[tokio::test]
async fn a_tenant_transaction_recovers_when_its_connection_is_closed_under_it() {
    // The server closing the pool's connection (a restart, an idle timeout, or a session of the
    // login running pg_terminate_backend on it): the next transaction opens a new connection,
    // learns its binding and proves itself on it; the one after too.
    let db = TestDb::new().await;
    let pool = db.app_pool(1);
    let owner = db.owner_pool().await;
    for round in 0..3 {
        let mut tx = TenantTx::begin(&pool, TenantId::SYSTEM, AuditContext::default()).await.unwrap();
        assert_eq!(tx.tenant().read().await.unwrap().id, TenantId::SYSTEM, "round {round}");
        tx.commit().await.unwrap();
        let terminated: Vec<bool> = sqlx::query_scalar(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = 'carevault_api' AND datname = current_database()",
        )
        .fetch_all(&owner)
        .await
        .unwrap();
        assert_eq!(terminated, [true], "round {round}: the pool's one connection");
    }
    let mut tx = TenantTx::begin(&pool, TenantId::SYSTEM, AuditContext::default()).await.unwrap();
    tx.tenant().read().await.unwrap();
    tx.commit().await.unwrap();
}
