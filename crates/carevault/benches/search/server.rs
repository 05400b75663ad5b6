//! The system under test: the release `carevault serve` on a fresh embedded data directory, and
//! the benchmark's clients (HTTP as the tenants' members, SQL as the cluster's superuser for the
//! set-up and the pgvector baselines).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use carevault_api::auth::{AuthConfig, mint_dev_token};
use carevault_db::repo::NewUser;
use carevault_db::{
    AppPool, AuditContext, BoundedText, Email, PlatformPool, PlatformTx, PoolConfig, TenantId, TenantStatus, TenantTx,
    UserRole,
};

/// The development secret the server is started with (tokens are minted here with it).
const SECRET: &str = "carevault-search-benchmark-secret-0123456789";

pub struct Server {
    child: Child,
    bin: PathBuf,
    pub base: String,
    pub data_dir: PathBuf,
    keep: bool,
}

impl Server {
    /// Starts `bin serve` on a new data directory under /var/tmp (as root, PostgreSQL runs as
    /// the system user `carevault`, which cannot enter root's home), with the server's own index
    /// maintenance off so that the benchmark times each pass itself.
    pub fn start(bin: &Path, keep: bool) -> anyhow::Result<Server> {
        let stamp = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_nanos();
        let data_dir = PathBuf::from(format!("/var/tmp/carevault-bench-search-{}-{stamp}", std::process::id()));
        std::fs::create_dir_all(&data_dir)?;
        let status = Command::new("chmod").arg("755").arg(&data_dir).status()?;
        if !status.success() {
            bail!("chmod 755 {} failed", data_dir.display());
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let mut command = Command::new(bin);
        command.args(["serve", "--listen", &format!("127.0.0.1:{port}")]);
        let child = Self::environment(&mut command, &data_dir)
            .env("SEARCH_INDEX_INTERVAL_SECONDS", "0")
            .stdout(Stdio::null())
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))?;
        Ok(Server { child, bin: bin.to_owned(), base: format!("http://127.0.0.1:{port}/api/v1"), data_dir, keep })
    }

    fn environment<'c>(command: &'c mut Command, data_dir: &Path) -> &'c mut Command {
        command
            .env("CAREVAULT_DATA_DIR", data_dir)
            .env("JWT_HS256_SECRET", SECRET)
            .env("ENVIRONMENT", "development")
            .env("LOG_LEVEL", "warn")
            // One user per tenant sends thousands of searches a minute: measure search, not the
            // request rate limiter.
            .env("RATE_LIMIT_USER_PER_MINUTE", "0")
            .env("RATE_LIMIT_TENANT_PER_MINUTE", "0")
            .env_remove("DATABASE_URL")
            .env_remove("APP_DATABASE_URL")
            .env_remove("PLATFORM_DATABASE_URL")
    }

    /// A CLI command of the same binary on the same data directory (it reuses the running
    /// cluster).
    pub fn cli(&self, args: &[&str]) -> Command {
        let mut command = Command::new(&self.bin);
        command.args(args);
        Self::environment(&mut command, &self.data_dir);
        command
    }

    /// Waits until `/health/ready` answers 200 (the first start initialises the cluster).
    pub async fn ready(&self, http: &reqwest::Client) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(300);
        while Instant::now() < deadline {
            if let Ok(response) = http.get(format!("{}/health/ready", self.base)).send().await
                && response.status().is_success()
            {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        bail!("the server was not ready within 300 s")
    }

    /// The superuser URL of the embedded cluster, from `postmaster.pid` (its fifth line is the
    /// socket directory).
    pub fn superuser_url(&self) -> anyhow::Result<String> {
        let pid = std::fs::read_to_string(self.data_dir.join("pg18/postmaster.pid"))?;
        let lines: Vec<&str> = pid.lines().collect();
        let (port, socket) = (lines.get(3).context("postmaster.pid: port")?, lines.get(4).context("socket")?);
        Ok(format!("postgres://postgres@localhost/carevault?host={socket}&port={port}"))
    }

    /// Stops the server with SIGTERM (it stops the embedded cluster it started) and removes the
    /// data directory unless kept.
    pub fn stop(mut self) -> anyhow::Result<()> {
        let _ = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status();
        self.child.wait()?;
        if self.keep {
            eprintln!("data directory kept: {}", self.data_dir.display());
        } else {
            std::fs::remove_dir_all(&self.data_dir)?;
        }
        Ok(())
    }
}

/// A member of one benchmark tenant.
#[derive(Clone)]
pub struct Member {
    pub tenant: TenantId,
    pub sub: String,
}

impl Member {
    /// A token for this member, valid for an hour (the default maximum lifetime).
    pub fn token(&self) -> anyhow::Result<String> {
        let config = AuthConfig { hs256_secret: Some(SECRET.to_owned()), ..AuthConfig::default() };
        mint_dev_token(&config, &self.tenant.to_string(), &self.sub, None, Duration::from_secs(3600))
            .map_err(|e| anyhow::anyhow!("minting a token: {e}"))
    }
}

/// Creates `count` tenants with one member each, through the data layer as the superuser (the
/// same audited paths as `carevault tenant create` / `user create`).
pub async fn create_members(url: &str, prefix: &str, count: usize) -> anyhow::Result<Vec<Member>> {
    let platform = PlatformPool::connect_lazy(url, PoolConfig::default())?;
    let owner = sqlx::PgPool::connect(url).await?;
    let app = AppPool::over_owner(&owner).await?;
    let mut members = Vec::with_capacity(count);
    for i in 0..count {
        let mut tx = PlatformTx::begin(&platform, AuditContext::default()).await?;
        let name = BoundedText::parse("name", &format!("{prefix} {i}"), 255)?;
        let tenant = tx.tenants().create(name, TenantStatus::Active).await?.id;
        tx.commit().await?;
        let sub = format!("{prefix}-{i}").to_lowercase().replace(' ', "-");
        let mut tx = TenantTx::begin(&app, tenant, AuditContext::default()).await?;
        tx.users()
            .create(NewUser {
                email: Email::parse(&format!("{sub}@bench.test"))?,
                role: UserRole::Member,
                full_name: None,
                external_idp_id: Some(BoundedText::parse("sub", &sub, 255)?),
            })
            .await?;
        tx.commit().await?;
        members.push(Member { tenant, sub });
    }
    platform.close().await;
    app.close().await;
    Ok(members)
}

/// `[v0,v1,...]`.
pub fn vector_json(v: &[f32]) -> String {
    let mut out = String::with_capacity(v.len() * 12);
    out.push('[');
    for (i, x) in v.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(&x.to_string());
    }
    out.push(']');
    out
}

/// The HTTP API as one member.
pub struct Api {
    pub http: reqwest::Client,
    pub base: String,
}

impl Api {
    /// `POST /documents/batch` of `vectors`; the new ids in order.
    pub async fn batch(&self, token: &str, tag: &str, vectors: &[Vec<f32>]) -> anyhow::Result<Vec<uuid::Uuid>> {
        let documents: Vec<String> = vectors
            .iter()
            .enumerate()
            .map(|(i, v)| {
                format!(
                    r#"{{"filename":"{tag}-{i}.pdf","s3_key":"bench/{tag}/{i}","s3_bucket":"bench","status":"completed","embedding":{}}}"#,
                    vector_json(v)
                )
            })
            .collect();
        let body = format!(r#"{{"documents":[{}]}}"#, documents.join(","));
        let value = self.post(token, "/documents/batch", body).await?;
        ids(&value["documents"])
    }

    /// `POST /documents` of one document.
    pub async fn create(&self, token: &str, tag: &str, vector: &[f32]) -> anyhow::Result<()> {
        let body = format!(
            r#"{{"filename":"{tag}.pdf","s3_key":"bench/{tag}","s3_bucket":"bench","status":"completed","embedding":{}}}"#,
            vector_json(vector)
        );
        self.post(token, "/documents", body).await.map(|_| ())
    }

    /// `POST /documents/search` with threshold -1 (the default 0.7 is above the corpus's
    /// same-topic similarity); the ids and the round trip's duration.
    pub async fn search(&self, token: &str, query: &[f32], limit: u32) -> anyhow::Result<(Vec<uuid::Uuid>, Duration)> {
        let body = format!(r#"{{"embedding":{},"limit":{limit},"threshold":-1}}"#, vector_json(query));
        let started = Instant::now();
        let value = self.post(token, "/documents/search", body).await?;
        let elapsed = started.elapsed();
        Ok((ids(&value["results"])?, elapsed))
    }

    /// `GET path`; the round trip's duration.
    pub async fn get(&self, token: &str, path: &str) -> anyhow::Result<Duration> {
        let started = Instant::now();
        let response = self.http.get(format!("{}{path}", self.base)).bearer_auth(token).send().await?;
        let status = response.status();
        response.bytes().await?;
        anyhow::ensure!(status.is_success(), "GET {path}: {status}");
        Ok(started.elapsed())
    }

    async fn post(&self, token: &str, path: &str, body: String) -> anyhow::Result<serde_json::Value> {
        let response = self
            .http
            .post(format!("{}{path}", self.base))
            .bearer_auth(token)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await?;
        let status = response.status();
        let text = response.text().await?;
        if !status.is_success() {
            bail!("POST {path}: {status}: {text}");
        }
        Ok(serde_json::from_str(&text)?)
    }
}

fn ids(items: &serde_json::Value) -> anyhow::Result<Vec<uuid::Uuid>> {
    items
        .as_array()
        .context("an array")?
        .iter()
        .map(|item| Ok(uuid::Uuid::parse_str(item["id"].as_str().context("an id")?)?))
        .collect()
}
