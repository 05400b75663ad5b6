//! Fixtures shared by the database tests.

use carevault_db::repo::{NewDocument, NewUser, User};
use carevault_db::{
    AppPool, AuditContext, BoundedText, DocumentStatus, Email, Embedding, Metadata, PlatformPool, PlatformTx, TenantId,
    TenantStatus, TenantTx, UserRole,
};
use carevault_testdb::TestDb;
use sqlx::{Connection, PgConnection};

/// Creates an active tenant through the platform path.
pub async fn tenant(platform: &PlatformPool, name: &str) -> TenantId {
    let mut tx = PlatformTx::begin(platform, AuditContext::default()).await.expect("platform tx");
    let tenant = tx.tenants().create(text(name), TenantStatus::Active).await.expect("create tenant");
    tx.commit().await.expect("commit");
    tenant.id
}

/// Creates a user in `tenant` through the data layer.
pub async fn user(pool: &AppPool, tenant: TenantId, email: &str, role: UserRole) -> User {
    let mut tx = TenantTx::begin(pool, tenant, AuditContext::default()).await.expect("tenant tx");
    let user = tx.users().create(new_user(email, role)).await.expect("create user");
    tx.commit().await.expect("commit");
    user
}

/// A user to create.
pub fn new_user(email: &str, role: UserRole) -> NewUser {
    NewUser { email: Email::parse(email).expect("email"), role, full_name: None, external_idp_id: None }
}

/// A document of `user` with an optional embedding.
pub fn new_document(user: &User, filename: &str, embedding: Option<Embedding>) -> NewDocument {
    NewDocument {
        user_id: user.id,
        s3_key: text(&format!("tenants/{}/{filename}", user.tenant_id)),
        s3_bucket: text("carevault-test"),
        filename: text(filename),
        content_type: Some(text("application/pdf")),
        size_bytes: Some(1234),
        status: DocumentStatus::Processing,
        metadata: Metadata::empty(),
        embedding,
    }
}

/// Creates a document through the data layer.
pub async fn document(pool: &AppPool, user: &User, filename: &str) -> carevault_db::repo::Document {
    let mut tx = TenantTx::begin(pool, user.tenant_id, as_user(user)).await.expect("tenant tx");
    let document = tx.documents().create(new_document(user, filename, None)).await.expect("create document");
    tx.commit().await.expect("commit");
    document
}

/// The audit context of `user`.
pub fn as_user(user: &User) -> AuditContext {
    AuditContext { user_id: Some(user.id), request_id: Some("test-request".into()), ..AuditContext::default() }
}

/// A validated text.
pub fn text(value: &str) -> BoundedText {
    BoundedText::parse("text", value, 1024).expect("text")
}

/// A deterministic non-zero embedding.
pub fn embedding(seed: u32) -> Embedding {
    let values: Vec<f32> = (0..1024u32)
        .map(|i| ((i.wrapping_mul(2_654_435_761) ^ seed.wrapping_mul(40_503)) % 1000) as f32 / 1000.0 - 0.45)
        .collect();
    Embedding::parse(values).expect("embedding")
}

/// A raw session of the login role `carevault_api`, switched to `carevault_app`, with a valid
/// proof of `tenant` (made with the test key, bound to this session) as a tool holding the key
/// would have. `tenant = None` leaves the tenant unset: what attacker B, without the key, has
/// (docs/THREAT_MODEL.md).
pub async fn app_session(db: &TestDb, tenant: Option<TenantId>) -> PgConnection {
    let mut conn = PgConnection::connect(&db.app_url()).await.expect("connect as carevault_api");
    match tenant {
        Some(tenant) => {
            carevault_testdb::prove_tenant(&mut conn, tenant).await;
        }
        None => {
            sqlx::query("SET ROLE carevault_app").execute(&mut conn).await.expect("set role");
        }
    }
    conn
}

/// The SQLSTATE of a failed statement.
pub fn sqlstate<T: std::fmt::Debug>(result: Result<T, sqlx::Error>) -> String {
    match result {
        Err(sqlx::Error::Database(db)) => db.code().map(|c| c.into_owned()).unwrap_or_default(),
        other => panic!("expected a database error, got {other:?}"),
    }
}

/// The message of a failed statement.
pub fn message<T: std::fmt::Debug>(result: Result<T, sqlx::Error>) -> String {
    match result {
        Err(sqlx::Error::Database(db)) => db.message().to_string(),
        other => panic!("expected a database error, got {other:?}"),
    }
}

/// Counts the audit rows of `tenant` with `action`, read as the tenant through the data layer's
/// role (no superuser).
pub async fn audit_count(db: &TestDb, tenant: TenantId, action: &str) -> i64 {
    let mut conn = app_session(db, Some(tenant)).await;
    sqlx::query_scalar("SELECT count(*) FROM audit_logs WHERE action = $1")
        .bind(action)
        .fetch_one(&mut conn)
        .await
        .expect("count audit rows")
}

/// Two tenants, `a` and `b`, with one user each (`alice` in a, `bob` in b), all with `role`.
pub struct TwoTenants {
    /// A pool of 2 connections as `carevault_api`.
    pub pool: AppPool,
    /// Tenant A.
    pub a: TenantId,
    /// Tenant B.
    pub b: TenantId,
    /// A's user.
    pub alice: User,
    /// B's user.
    pub bob: User,
}

/// Creates [`TwoTenants`].
pub async fn two_tenants(db: &TestDb, role: UserRole) -> TwoTenants {
    let (pool, platform) = (db.app_pool(2), db.platform_pool());
    let (a, b) = (tenant(&platform, "A").await, tenant(&platform, "B").await);
    let alice = user(&pool, a, "alice@a.test", role).await;
    let bob = user(&pool, b, "bob@b.test", role).await;
    TwoTenants { pool, a, b, alice, bob }
}
