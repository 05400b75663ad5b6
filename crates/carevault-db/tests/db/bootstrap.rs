//! The bootstrap on a brand-new cluster, where the cluster-wide roles do not exist yet: several
//! databases bootstrapping and migrating at once must all succeed (docs/ARCHITECTURE.md, "Roles"). The shared test
//! cluster cannot show this (its roles exist), so this test starts a cluster of its own.

use carevault_pg::{Cluster, ClusterOptions, Paths, PgBinaries, SUPERUSER};
use carevault_testdb::ScratchDir;
use sqlx::{Connection, PgConnection, PgPool};

#[tokio::test]
async fn concurrent_bootstraps_on_a_fresh_cluster_all_succeed() {
    let mut scratch = ScratchDir::new("bootstrap");
    let options = ClusterOptions::disposable(scratch.data_dir());
    let cluster = tokio::task::spawn_blocking(move || {
        let binaries = PgBinaries::locate(&Paths::from_env().unwrap()).unwrap();
        Cluster::start_or_reuse(&binaries, &options).unwrap()
    })
    .await
    .unwrap();
    scratch.remember_socket_dir(cluster.socket_dir());

    let mut admin = PgConnection::connect(&cluster.url(SUPERUSER, "postgres")).await.unwrap();
    let roles: i64 = sqlx::query_scalar("SELECT count(*) FROM pg_roles WHERE rolname LIKE 'carevault\\_%'")
        .fetch_one(&mut admin)
        .await
        .unwrap();
    assert_eq!(roles, 0, "a fresh cluster has no carevault roles");
    let names = ["race_a", "race_b", "race_c"];
    for name in names {
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}"))).execute(&mut admin).await.unwrap();
    }

    // Three sessions in three databases race to create the same roles.
    let runs = names.map(|name| {
        let url = cluster.url(SUPERUSER, name);
        tokio::spawn(async move {
            let pool = PgPool::connect(&url).await.unwrap();
            let report = carevault_db::migrate::up(&pool).await;
            pool.close().await;
            report
        })
    });
    for run in futures::future::join_all(runs).await {
        let report = run.unwrap().unwrap();
        assert!(report.bootstrapped);
        assert_eq!(report.to_version, carevault_db::migrate::head_version());
    }
    let roles: Vec<String> =
        sqlx::query_scalar("SELECT rolname::text FROM pg_roles WHERE rolname LIKE 'carevault\\_%' ORDER BY 1")
            .fetch_all(&mut admin)
            .await
            .unwrap();
    let mut designed = carevault_db::manifest::role_names();
    designed.sort();
    assert_eq!(roles, designed);

    // A membership the bootstrap did not make is refused on the next run, not silently kept.
    sqlx::query("GRANT pg_read_all_data TO carevault_app").execute(&mut admin).await.unwrap();
    let pool = PgPool::connect(&cluster.url(SUPERUSER, names[0])).await.unwrap();
    let refused = carevault_db::migrate::bootstrap(&pool).await;
    let message = format!("{refused:?}");
    assert!(message.contains("membership it must not have"), "{message}");
    pool.close().await;
    admin.close().await.unwrap();
    tokio::task::spawn_blocking(move || cluster.stop().unwrap()).await.unwrap();
}
