//! `carevault_db::cluster` on the shared test cluster: databases are looked up and created by
//! name, an existing one is reported rather than refused, and the login facts tell a runtime
//! login from a superuser.

use carevault_db::DbError;
use carevault_db::cluster::{DatabaseCreation, create_database, database_exists, login_facts};
use carevault_testdb::TestDb;
use sqlx::{AssertSqlSafe, Connection, PgConnection};

async fn connect(url: &str) -> PgConnection {
    PgConnection::connect(url).await.expect("connect")
}

#[tokio::test]
async fn a_database_is_created_once_and_then_reported_as_existing() {
    // `home` is where the superuser connects from; `target` names a database this test drops and
    // creates again (the harness drops it at the end, whatever state it is in).
    let home = TestDb::new().await;
    let target = TestDb::empty().await;
    let mut admin = connect(&home.owner_url()).await;
    sqlx::query(AssertSqlSafe(format!("DROP DATABASE \"{}\" WITH (FORCE)", target.name())))
        .execute(&mut admin)
        .await
        .unwrap();

    assert!(!database_exists(&mut admin, target.name()).await.unwrap());
    assert_eq!(create_database(&mut admin, target.name()).await.unwrap(), DatabaseCreation::Created);
    assert!(database_exists(&mut admin, target.name()).await.unwrap());
    // The created database is usable, and a second creation is not an error.
    connect(&target.owner_url()).await.close().await.unwrap();
    assert_eq!(create_database(&mut admin, target.name()).await.unwrap(), DatabaseCreation::AlreadyExists);
    assert!(database_exists(&mut admin, home.name()).await.unwrap());
    admin.close().await.unwrap();
}

#[tokio::test]
async fn creating_a_database_needs_the_privilege_and_a_valid_name() {
    let db = TestDb::new().await;
    // The runtime login has no CREATEDB: a database error, not "already exists".
    let mut app = connect(&db.app_url()).await;
    let refused = create_database(&mut app, "cvt_never_created").await.expect_err("no CREATEDB");
    assert_eq!(refused.sqlstate().as_deref(), Some("42501"), "{refused}");
    assert!(!database_exists(&mut app, "cvt_never_created").await.unwrap());
    // A name PostgreSQL would truncate is refused before anything is sent.
    let long = "x".repeat(64);
    assert!(matches!(create_database(&mut app, &long).await, Err(DbError::Invalid(e)) if e.field == "database"));
    app.close().await.unwrap();
}

#[tokio::test]
async fn login_facts_tell_the_runtime_logins_from_the_superuser() {
    let db = TestDb::new().await;
    for (url, role) in [(db.app_url(), "carevault_api"), (db.ops_url(), "carevault_ops")] {
        let mut conn = connect(&url).await;
        let facts = login_facts(&mut conn).await.unwrap();
        assert_eq!(facts.role, role);
        assert!(!facts.superuser && !facts.bypass_rls, "{facts:?}");
        conn.close().await.unwrap();
    }
    let mut owner = connect(&db.owner_url()).await;
    assert!(login_facts(&mut owner).await.unwrap().superuser, "the test cluster's owner is a superuser");
    owner.close().await.unwrap();
}
