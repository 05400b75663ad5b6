//! `TestApp`: the application on a random port, with fixtures.

use std::time::Duration;

use carevault_api::auth::{AuthConfig, Authenticator, mint_dev_token};
use carevault_api::{ApiConfig, AppState};
use carevault_db::repo::{NewUser, User};
use carevault_db::{
    AppPool, AuditContext, BoundedText, Email, PlatformPool, PlatformTx, PoolConfig, TenantId, TenantStatus, TenantTx,
    UserRole,
};
use carevault_testdb::TestDb;
use serde_json::Value;
use sqlx::Connection;

pub const SECRET: &str = "test-secret-of-at-least-32-bytes-long!!";
pub const PLATFORM_TOKEN: &str = "platform-secret-for-tests";

/// The application under test.
pub struct TestApp {
    pub base: String,
    pub client: reqwest::Client,
    pub db: TestDb,
    pub auth: AuthConfig,
    pub app_pool: AppPool,
    platform_pool: PlatformPool,
}

/// A user with a token.
pub struct Caller {
    pub user: User,
    pub token: String,
}

/// A response, read completely.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub body: Value,
    pub request_id: Option<String>,
    pub etag: Option<String>,
}

impl Reply {
    /// The error code of an envelope.
    pub fn code(&self) -> &str {
        self.body["error"]["code"].as_str().unwrap_or("")
    }

    /// The body without the request id, to compare two answers.
    pub fn without_request_id(&self) -> Value {
        let mut body = self.body.clone();
        if let Some(error) = body.get_mut("error").and_then(Value::as_object_mut) {
            error.remove("request_id");
        }
        body
    }
}

impl TestApp {
    /// The app with HS256 development tokens and the platform API enabled.
    pub async fn spawn() -> TestApp {
        TestApp::spawn_with(|_, _| {}).await
    }

    /// The app with settings changed by `configure`.
    pub async fn spawn_with(configure: impl FnOnce(&mut ApiConfig, &mut AuthConfig)) -> TestApp {
        TestApp::spawn_custom(
            configure,
            PoolConfig {
                max_connections: 5,
                acquire_timeout: Duration::from_secs(5),
                statement_cache: true,
                ..PoolConfig::default()
            },
            |r| r,
        )
        .await
    }

    /// The app with settings, pool sizing and extra routes of the test's own (layered like the
    /// real ones).
    pub async fn spawn_custom(
        configure: impl FnOnce(&mut ApiConfig, &mut AuthConfig),
        pool_config: PoolConfig,
        extra_routes: impl FnOnce(axum::Router<AppState>) -> axum::Router<AppState>,
    ) -> TestApp {
        TestApp::spawn_full(configure, pool_config, extra_routes, std::future::ready).await
    }

    /// [`TestApp::spawn_custom`], with the tenant path's pool on the URL `app_url` makes of the
    /// test database's (e.g. through a proxy that counts round trips).
    pub async fn spawn_full<F: Future<Output = String>>(
        configure: impl FnOnce(&mut ApiConfig, &mut AuthConfig),
        pool_config: PoolConfig,
        extra_routes: impl FnOnce(axum::Router<AppState>) -> axum::Router<AppState>,
        app_url: impl FnOnce(String) -> F,
    ) -> TestApp {
        let db = TestDb::new().await;
        let mut config = ApiConfig { platform_api_token: Some(PLATFORM_TOKEN.into()), ..ApiConfig::default() };
        let mut auth = AuthConfig { hs256_secret: Some(SECRET.into()), ..AuthConfig::default() };
        configure(&mut config, &mut auth);
        let app_pool =
            AppPool::connect_lazy(&app_url(db.app_url()).await, pool_config, carevault_testdb::context_key()).unwrap();
        let platform_pool = PlatformPool::connect_lazy(&db.ops_url(), pool_config).unwrap();
        let authenticator = Authenticator::new(auth.clone(), reqwest::Client::new());
        let connections = config.connections;
        let state = AppState::new(app_pool.clone(), platform_pool.clone(), authenticator, config);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let routes = extra_routes(carevault_api::api_routes(&state));
        let app = carevault_api::with_layers(routes, state);
        tokio::spawn(carevault_api::server::serve(listener, app, connections, std::future::pending()));
        TestApp { base: format!("http://{address}"), client: reqwest::Client::new(), db, auth, app_pool, platform_pool }
    }

    /// A raw TCP connection to the app, for tests of the connection itself.
    pub async fn connect(&self) -> tokio::net::TcpStream {
        tokio::net::TcpStream::connect(self.base.trim_start_matches("http://")).await.unwrap()
    }

    /// A URL of the app.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// An active tenant, created on the platform path.
    pub async fn tenant(&self, name: &str) -> TenantId {
        let mut tx = PlatformTx::begin(&self.platform_pool, AuditContext::default()).await.unwrap();
        let tenant =
            tx.tenants().create(BoundedText::parse("name", name, 255).unwrap(), TenantStatus::Active).await.unwrap();
        tx.commit().await.unwrap();
        tenant.id
    }

    /// A user of `tenant` with `role`, whose token's `sub` is `sub`.
    pub async fn caller(&self, tenant: TenantId, role: UserRole, sub: &str) -> Caller {
        let mut tx = TenantTx::begin(&self.app_pool, tenant, AuditContext::default()).await.unwrap();
        let new = NewUser {
            email: Email::parse(&format!("{sub}@example.test")).unwrap(),
            role,
            full_name: None,
            external_idp_id: Some(BoundedText::parse("sub", sub, 255).unwrap()),
        };
        let user = tx.users().create(new).await.unwrap();
        tx.commit().await.unwrap();
        Caller { user, token: self.token(tenant, sub, None) }
    }

    /// A development token.
    pub fn token(&self, tenant: TenantId, sub: &str, email: Option<&str>) -> String {
        mint_dev_token(&self.auth, &tenant.to_string(), sub, email, Duration::from_secs(600)).unwrap()
    }

    /// Sends a request; `body` is sent as JSON when given.
    pub async fn call(&self, method: &str, path: &str, token: Option<&str>, body: Option<Value>) -> Reply {
        let mut request = self.client.request(method.parse().unwrap(), self.url(path));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        read(request.send().await.unwrap()).await
    }

    /// Every row count of the database (ground truth, read as the owner: "nothing was written").
    pub async fn row_counts(&self) -> (i64, i64, i64, i64) {
        let mut conn = sqlx::PgConnection::connect(&self.db.owner_url()).await.unwrap();
        sqlx::query_as(
            "SELECT (SELECT count(*) FROM tenants), (SELECT count(*) FROM users), \
                    (SELECT count(*) FROM documents), (SELECT count(*) FROM audit_logs)",
        )
        .fetch_one(&mut conn)
        .await
        .unwrap()
    }

    /// A session of the runtime role in `tenant`, as a tool holding the login's credentials has.
    pub async fn tenant_session(&self, tenant: TenantId) -> sqlx::PgConnection {
        let mut conn = sqlx::PgConnection::connect(&self.db.app_url()).await.unwrap();
        carevault_testdb::prove_tenant(&mut conn, tenant).await;
        conn
    }

    /// The audit actions of `tenant`, oldest first, read as the runtime role.
    pub async fn audit_actions(&self, tenant: TenantId) -> Vec<String> {
        let mut conn = self.tenant_session(tenant).await;
        sqlx::query_scalar("SELECT action FROM audit_logs ORDER BY created_at, id").fetch_all(&mut conn).await.unwrap()
    }
}

/// Reads until the server closes the connection (or `limit` passes: `None`); returns the bytes.
pub async fn read_until_closed(stream: &mut tokio::net::TcpStream, limit: Duration) -> Option<Vec<u8>> {
    use tokio::io::AsyncReadExt;
    let mut received = Vec::new();
    let read = tokio::time::timeout(limit, async {
        let mut buffer = [0u8; 4096];
        loop {
            match stream.read(&mut buffer).await {
                Ok(0) | Err(_) => return,
                Ok(n) => received.extend_from_slice(&buffer[..n]),
            }
        }
    })
    .await;
    read.ok().map(|()| received)
}

/// Reads a response completely.
pub async fn read(response: reqwest::Response) -> Reply {
    let status = response.status().as_u16();
    let header = |name: &str| response.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_string);
    let (request_id, etag) = (header("x-request-id"), header("etag"));
    let text = response.text().await.unwrap();
    let body = if text.is_empty() { Value::Null } else { serde_json::from_str(&text).unwrap_or(Value::String(text)) };
    Reply { status, body, request_id, etag }
}

/// A deterministic non-zero embedding.
pub fn embedding(seed: u32) -> Vec<f32> {
    (0..1024u32)
        .map(|i| ((i.wrapping_mul(2_654_435_761) ^ seed.wrapping_mul(40_503)) % 1000) as f32 / 1000.0 - 0.45)
        .collect()
}

/// A document body.
pub fn document_body(filename: &str, seed: Option<u32>) -> Value {
    let mut body = serde_json::json!({
        "filename": filename, "s3_key": format!("k/{filename}"), "s3_bucket": "b",
        "content_type": "application/pdf", "size_bytes": 10, "metadata": {"kind": "scan", "pages": 2},
    });
    if let Some(seed) = seed {
        body["embedding"] = serde_json::json!(embedding(seed));
    }
    body
}
