//! The envelope and the request id, on every kind of error.

use crate::helpers::TestApp;

#[tokio::test]
async fn the_request_id_is_accepted_or_generated_and_always_returned() {
    let app = TestApp::spawn().await;
    for (sent, expect_same) in [
        (Some("abc-123_X.y"), true),
        (Some("bad id with spaces"), false),
        (Some(&*"x".repeat(65)), false),
        (None, false),
    ] {
        let mut request = app.client.get(app.url("/api/v1/nowhere"));
        if let Some(id) = sent {
            request = request.header("x-request-id", id);
        }
        let reply = crate::helpers::read(request.send().await.unwrap()).await;
        let returned = reply.request_id.clone().unwrap();
        assert_eq!(reply.body["error"]["request_id"], returned.as_str());
        assert_eq!((reply.status, reply.code()), (404, "REQ_404"));
        if expect_same {
            assert_eq!(Some(returned.as_str()), sent);
        } else {
            assert!(uuid::Uuid::parse_str(&returned).is_ok(), "{returned}");
        }
    }
}

#[tokio::test]
async fn detail_is_hidden_in_production() {
    let dev = TestApp::spawn().await;
    let prod = TestApp::spawn_with(|config, _| config.environment = carevault_api::Environment::Production).await;
    for app in [&dev, &prod] {
        let tenant = app.tenant("Clinic").await;
        let admin = app.caller(tenant, carevault_db::UserRole::Admin, "admin").await;
        let broken = app
            .client
            .post(app.url("/api/v1/documents"))
            .bearer_auth(&admin.token)
            .header("content-type", "application/json")
            .body("{");
        let reply = crate::helpers::read(broken.send().await.unwrap()).await;
        assert_eq!(reply.code(), "VAL_001");
        assert_eq!(reply.body["error"].get("detail").is_some(), std::ptr::eq(app, &dev));
    }
}

#[tokio::test]
async fn cors_follows_the_configured_origins() {
    let app = TestApp::spawn_with(|config, _| config.allowed_origins = vec!["https://app.example".into()]).await;
    let allowed =
        app.client.get(app.url("/api/v1/health/live")).header("origin", "https://app.example").send().await.unwrap();
    assert_eq!(allowed.headers().get("access-control-allow-origin").unwrap(), "https://app.example");
    let other =
        app.client.get(app.url("/api/v1/health/live")).header("origin", "https://evil.example").send().await.unwrap();
    assert!(other.headers().get("access-control-allow-origin").is_none());
    let none = TestApp::spawn().await;
    let reply =
        none.client.get(none.url("/api/v1/health/live")).header("origin", "https://app.example").send().await.unwrap();
    assert!(reply.headers().get("access-control-allow-origin").is_none());
}

#[tokio::test]
async fn panics_and_timeouts_get_the_envelope() {
    let app = TestApp::spawn_custom(
        |config, _| config.request_timeout = std::time::Duration::from_millis(300),
        carevault_db::PoolConfig::default(),
        |routes| {
            routes
                .route(
                    "/test/panic",
                    axum::routing::get(|| async {
                        if true {
                            panic!("boom");
                        }
                        "unreachable"
                    }),
                )
                .route(
                    "/test/slow",
                    axum::routing::get(|| async { tokio::time::sleep(std::time::Duration::from_secs(5)).await }),
                )
        },
    )
    .await;
    let panic = app.call("GET", "/test/panic", None, None).await;
    assert_eq!((panic.status, panic.code()), (500, "SYS_003"));
    assert!(!panic.body.to_string().contains("boom"), "the panic message is logged, not shown");
    let slow = app.call("GET", "/test/slow", None, None).await;
    assert_eq!((slow.status, slow.code()), (504, "SYS_005"));
}

#[tokio::test]
async fn an_exhausted_pool_answers_503_promptly() {
    let pool = carevault_db::PoolConfig {
        max_connections: 1,
        acquire_timeout: std::time::Duration::from_millis(300),
        ..carevault_db::PoolConfig::default()
    };
    let app = TestApp::spawn_custom(|_, _| {}, pool, |r| r).await;
    let tenant = app.tenant("Clinic").await;
    let viewer = app.caller(tenant, carevault_db::UserRole::Viewer, "v").await;
    // Hold the only connection.
    let held = carevault_db::TenantTx::begin(&app.app_pool, tenant, Default::default()).await.unwrap();
    let started = std::time::Instant::now();
    let reply = app.call("GET", "/api/v1/documents", Some(&viewer.token), None).await;
    assert_eq!((reply.status, reply.code()), (503, "SYS_004"));
    assert!(started.elapsed() < std::time::Duration::from_secs(3), "prompt, not a hang");
    drop(held);
    let reply = app.call("GET", "/api/v1/documents", Some(&viewer.token), None).await;
    assert_eq!(reply.status, 200);
}

#[tokio::test]
async fn a_slowly_sent_body_holds_no_database_connection() {
    use tokio::io::AsyncWriteExt;
    let pool = carevault_db::PoolConfig {
        max_connections: 1,
        acquire_timeout: std::time::Duration::from_millis(500),
        ..carevault_db::PoolConfig::default()
    };
    let app = TestApp::spawn_custom(|_, _| {}, pool, |r| r).await;
    let tenant = app.tenant("Clinic").await;
    let viewer = app.caller(tenant, carevault_db::UserRole::Viewer, "v").await;
    // Three clients announce a body and then stall, with a valid token.
    let mut stalled = Vec::new();
    for _ in 0..3 {
        let mut stream = tokio::net::TcpStream::connect(app.base.trim_start_matches("http://")).await.unwrap();
        let head = format!(
            "POST /api/v1/documents/search HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n{{\"embedding\": [",
            viewer.token
        );
        stream.write_all(head.as_bytes()).await.unwrap();
        stalled.push(stream);
    }
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    // The pool's one connection is still free for everybody else.
    let reply = app.call("GET", "/api/v1/documents", Some(&viewer.token), None).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    drop(stalled);
}

#[tokio::test]
async fn a_request_stuck_behind_a_lock_gets_a_503_not_a_500() {
    use sqlx::Connection;
    let app = TestApp::spawn().await;
    let tenant = app.tenant("Clinic").await;
    let viewer = app.caller(tenant, carevault_db::UserRole::Viewer, "v").await;
    // Another session holds an exclusive lock on documents for longer than lock_timeout (5 s).
    let mut locker = sqlx::PgConnection::connect(&app.db.owner_url()).await.unwrap();
    sqlx::query("BEGIN").execute(&mut locker).await.unwrap();
    sqlx::query("LOCK TABLE documents IN ACCESS EXCLUSIVE MODE").execute(&mut locker).await.unwrap();
    let reply = app.call("GET", "/api/v1/documents", Some(&viewer.token), None).await;
    assert_eq!((reply.status, reply.code()), (503, "SYS_001"), "{}", reply.body);
    sqlx::query("ROLLBACK").execute(&mut locker).await.unwrap();
    let reply = app.call("GET", "/api/v1/documents", Some(&viewer.token), None).await;
    assert_eq!(reply.status, 200);
}
