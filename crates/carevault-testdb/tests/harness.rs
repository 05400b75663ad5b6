//! The harness itself: what a test gets from [`TestDb`].

use carevault_testdb::TestDb;
use sqlx::{Connection, PgConnection};

async fn connect(url: &str) -> PgConnection {
    PgConnection::connect(url).await.unwrap_or_else(|e| panic!("connecting to {url}: {e}"))
}

async fn database_exists(db: &TestDb, name: &str) -> bool {
    // Any database of the cluster will do for looking at pg_database; `db` is still alive.
    let mut conn = connect(&db.owner_url()).await;
    let exists = sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_database WHERE datname = $1)")
        .bind(name)
        .fetch_one(&mut conn)
        .await
        .expect("reading pg_database");
    conn.close().await.expect("closing");
    exists
}

#[tokio::test]
async fn new_databases_are_migrated_to_head_and_distinct() {
    let first = TestDb::new().await;
    let second = TestDb::new().await;
    assert_ne!(first.name(), second.name());
    assert!(first.name().starts_with("cvt_"), "{}", first.name());

    let owner = first.owner_pool().await;
    let version: i64 = sqlx::query_scalar("SELECT max(version) FROM _sqlx_migrations WHERE success")
        .fetch_one(&owner)
        .await
        .expect("reading _sqlx_migrations");
    assert_eq!(version, carevault_db::migrate::head_version());
    let system: String =
        sqlx::query_scalar("SELECT name::text FROM tenants WHERE id = '00000000-0000-0000-0000-000000000000'")
            .fetch_one(&owner)
            .await
            .expect("the System tenant");
    assert_eq!(system, "System");

    // A write in one test's database is invisible in another's.
    sqlx::query("INSERT INTO tenants (name) VALUES ('only in the first')").execute(&owner).await.expect("insert");
    owner.close().await;
    let other = second.owner_pool().await;
    let count: i64 = sqlx::query_scalar("SELECT count(*) FROM tenants").fetch_one(&other).await.expect("count");
    assert_eq!(count, 1, "only the System tenant");
    other.close().await;
}

#[tokio::test]
async fn the_login_urls_are_the_unprivileged_runtime_logins() {
    let db = TestDb::new().await;
    for (url, login, member_of) in
        [(db.app_url(), "carevault_api", "carevault_app"), (db.ops_url(), "carevault_ops", "carevault_platform")]
    {
        let mut conn = connect(&url).await;
        let (user, database, superuser, bypass): (String, String, bool, bool) = sqlx::query_as(
            "SELECT current_user::text, current_database()::text, rolsuper, rolbypassrls \
             FROM pg_catalog.pg_roles WHERE rolname = current_user",
        )
        .fetch_one(&mut conn)
        .await
        .expect("who am I");
        assert_eq!((user.as_str(), database.as_str()), (login, db.name()));
        assert!(!superuser && !bypass, "{login} must be subject to row-level security");
        let can_switch: bool = sqlx::query_scalar("SELECT pg_has_role(current_user, $1, 'SET')")
            .bind(member_of)
            .fetch_one(&mut conn)
            .await
            .expect("pg_has_role");
        assert!(can_switch, "{login} can switch to {member_of}");
        conn.close().await.expect("closing");
    }
}

#[tokio::test]
async fn the_pools_connect_as_their_logins() {
    let db = TestDb::new().await;
    let app = db.app_pool(2);
    app.ping().await.expect("the app pool reaches the database");
    app.close().await;
    let platform = db.platform_pool();
    platform.ping().await.expect("the platform pool reaches the database");
    platform.close().await;
}

#[tokio::test]
async fn empty_databases_have_no_schema_but_the_roles_exist() {
    let db = TestDb::empty().await;
    let owner = db.owner_pool().await;
    let tables: i64 = sqlx::query_scalar("SELECT count(*) FROM pg_catalog.pg_tables WHERE schemaname = 'public'")
        .fetch_one(&owner)
        .await
        .expect("counting tables");
    assert_eq!(tables, 0);
    let roles: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM pg_catalog.pg_roles \
         WHERE rolname IN ('carevault_app', 'carevault_platform', 'carevault_api', 'carevault_ops')",
    )
    .fetch_one(&owner)
    .await
    .expect("counting roles");
    assert_eq!(roles, 4, "the cluster-wide roles exist before any migration");
    owner.close().await;
}

#[tokio::test]
async fn dropping_a_test_database_removes_it() {
    let keeper = TestDb::empty().await;
    let db = TestDb::empty().await;
    let name = db.name().to_string();
    assert!(database_exists(&keeper, &name).await);
    // Connections still open when the TestDb goes are terminated (DROP DATABASE ... WITH (FORCE)).
    let pool = db.owner_pool().await;
    sqlx::query("SELECT 1").execute(&pool).await.expect("a live connection");
    drop(db);
    assert!(!database_exists(&keeper, &name).await, "{name} is dropped with its TestDb");
    drop(pool);
}
