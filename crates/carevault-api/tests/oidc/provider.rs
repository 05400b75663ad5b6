//! Runs `node/provider.mjs` (the `oidc-provider` package) for one test: installs its pinned npm
//! dependencies once per machine, starts it on a free port of 127.0.0.1, restarts it (a key
//! rotation) and asks it for ID tokens.
//!
//! The dependencies are installed with `npm ci` into
//! `<carevault cache dir>/oidc-provider/<hash of package.json and package-lock.json>/`, the cache
//! the test PostgreSQL cluster uses (`/var/cache/carevault` as root, `CAREVAULT_CACHE_DIR`
//! overrides it): outside the repository, shared by every test process, reused while the lock file
//! is unchanged. nextest runs tests as parallel processes, so the install is done under a file lock
//! and marked complete only once `npm ci` succeeded.

use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use tokio::io::AsyncReadExt;
use tokio::process::{Child, Command};
use tokio::task::JoinHandle;

const PACKAGE_JSON: &str = include_str!("node/package.json");
const PACKAGE_LOCK: &str = include_str!("node/package-lock.json");
const PROVIDER_JS: &str = include_str!("node/provider.mjs");

/// The client whose ID tokens the provider signs with RS256 (its id is their `aud`).
pub const RS256_CLIENT: &str = "carevault-rs256";
/// The client whose ID tokens the provider signs with ES256.
pub const ES256_CLIENT: &str = "carevault-es256";
/// Where the provider puts the account's tenant (`JWT_TENANT_CLAIM_NAME` of these tests).
pub const TENANT_CLAIM: &str = "custom:tenant_id";
/// The provider's ID token lifetime (`ttl.IdToken` in provider.mjs).
pub const ID_TOKEN_TTL_SECS: i64 = 600;

/// How long node may take to serve discovery (a cold start on a slow CI machine is ~1 s).
const STARTUP_TIMEOUT: Duration = Duration::from_secs(30);
/// The most of node's stderr kept for failure messages.
const STDERR_CAP: usize = 64 * 1024;

/// A running provider, killed when dropped.
pub struct OidcProvider {
    port: u16,
    child: Child,
    stderr: Arc<Mutex<String>>,
    /// Copies node's stderr into `stderr`; ends when node closes it.
    reader: JoinHandle<()>,
    http: reqwest::Client,
}

impl OidcProvider {
    /// Installs (first use on this machine only) and starts the provider; returns once it serves
    /// its discovery document.
    pub async fn start() -> OidcProvider {
        let script = tokio::task::spawn_blocking(installed_script).await.expect("the install task panicked");
        let script = script.unwrap_or_else(|e| panic!("installing the OIDC test provider failed: {e}"));
        let port = free_port();
        let (child, stderr, reader) = spawn(&script, port);
        let mut provider = OidcProvider { port, child, stderr, reader, http: reqwest::Client::new() };
        provider.wait_until_serving().await;
        provider
    }

    /// `iss` of its tokens, exactly (no trailing slash).
    pub fn issuer(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Stops the provider and starts it again on the same port: same issuer, new signing keys.
    pub async fn restart(&mut self) {
        self.child.kill().await.expect("killing the OIDC provider");
        let script = tokio::task::spawn_blocking(installed_script).await.expect("the install task panicked");
        let (child, stderr, reader) = spawn(&script.expect("installed before the first start"), self.port);
        (self.child, self.stderr, self.reader) = (child, stderr, reader);
        self.wait_until_serving().await;
    }

    /// An ID token for `client`, issued to the account `sub` through the provider's authorization
    /// code flow. The account's claims: `custom:tenant_id` when `tenant` is given, `email` (with
    /// `email_verified: true`) when `email` is.
    pub async fn id_token(&self, client: &str, sub: &str, tenant: Option<&str>, email: Option<&str>) -> String {
        let mut query = vec![("client_id", client), ("sub", sub)];
        query.extend(tenant.map(|t| ("tenant", t)));
        query.extend(email.map(|e| ("email", e)));
        let url =
            reqwest::Url::parse_with_params(&format!("{}/test/id-token", self.issuer()), &query).expect("a valid URL");
        let response = self.http.get(url).send().await.expect("asking the provider for an ID token");
        let status = response.status();
        let body = response.text().await.expect("reading the provider's answer");
        assert!(status.is_success(), "the code flow failed: HTTP {status}: {body}\nnode stderr:\n{}", self.stderr());
        let json: serde_json::Value = serde_json::from_str(&body).expect("the harness answers JSON");
        json["id_token"].as_str().expect("an id_token in the answer").to_owned()
    }

    /// What node wrote to stderr so far.
    pub fn stderr(&self) -> String {
        self.stderr.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// Polls discovery until it names our issuer; fails with node's stderr on exit or timeout.
    async fn wait_until_serving(&mut self) {
        let url = format!("{}/.well-known/openid-configuration", self.issuer());
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        let mut last = String::from("no answer yet");
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                // Let the reader collect node's last words (it ends at the pipe's end of file).
                let _ = tokio::time::timeout(Duration::from_secs(2), &mut self.reader).await;
                panic!("the OIDC provider exited ({status}) before serving {url}\nnode stderr:\n{}", self.stderr());
            }
            match self.http.get(&url).timeout(Duration::from_secs(2)).send().await {
                Ok(response) if response.status().is_success() => {
                    let doc: serde_json::Value = response.json().await.unwrap_or_default();
                    if doc["issuer"] == self.issuer().as_str() {
                        return;
                    }
                    last = format!("unexpected discovery document {doc}");
                }
                Ok(response) => last = format!("HTTP {}", response.status()),
                Err(e) => last = e.to_string(),
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!(
            "the OIDC provider did not serve {url} within {STARTUP_TIMEOUT:?} (last: {last})\nnode stderr:\n{}",
            self.stderr()
        );
    }
}

/// A port nobody listens on right now (node binds it a moment later; a clash fails loudly).
fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("binding a free port");
    listener.local_addr().expect("its address").port()
}

/// Starts `node <script> <port>` with stderr collected in the background (a full pipe would
/// block node).
fn spawn(script: &Path, port: u16) -> (Child, Arc<Mutex<String>>, JoinHandle<()>) {
    let mut child = Command::new("node")
        .arg(script)
        .arg(port.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("starting `node` failed ({e}): the OIDC tests need Node.js >= 20 on PATH"));
    let stderr = Arc::new(Mutex::new(String::new()));
    let mut pipe = child.stderr.take().expect("stderr is piped");
    let sink = Arc::clone(&stderr);
    let reader = tokio::spawn(async move {
        let mut buffer = [0u8; 4096];
        while let Ok(n @ 1..) = pipe.read(&mut buffer).await {
            if let Ok(mut text) = sink.lock()
                && text.len() < STDERR_CAP
            {
                text.push_str(&String::from_utf8_lossy(&buffer[..n]));
            }
        }
    });
    (child, stderr, reader)
}

/// The installed copy of provider.mjs (next to its `node_modules`), installing on first use. Once
/// per test process; the file lock serializes the processes.
fn installed_script() -> Result<PathBuf, String> {
    static INSTALLED: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    INSTALLED.get_or_init(install).clone()
}

fn install() -> Result<PathBuf, String> {
    let cache = carevault_pg::Paths::from_env().map_err(|e| e.to_string())?.cache_dir.join("oidc-provider");
    fs::create_dir_all(&cache).map_err(|e| format!("creating {}: {e}", cache.display()))?;
    let key = short_hash(&[PACKAGE_JSON, PACKAGE_LOCK]);
    let dir = cache.join(&key);
    let complete = dir.join(".complete");
    if !complete.exists() {
        let lock_path = cache.join(format!("{key}.lock"));
        let lock = File::create(&lock_path).map_err(|e| format!("creating {}: {e}", lock_path.display()))?;
        lock.lock().map_err(|e| format!("locking {}: {e}", lock_path.display()))?;
        // Another process may have finished the install while we waited.
        if !complete.exists() {
            npm_ci(&dir)?;
            fs::write(&complete, "").map_err(|e| format!("writing {}: {e}", complete.display()))?;
        }
    }
    // The script is keyed by its own hash, so editing it needs no reinstall; written under a
    // temporary name and renamed, so a concurrent process never runs half a file.
    let script = dir.join(format!("provider-{}.mjs", short_hash(&[PROVIDER_JS])));
    if !script.exists() {
        let partial = dir.join(format!(".provider.{}.mjs", std::process::id()));
        fs::write(&partial, PROVIDER_JS).map_err(|e| format!("writing {}: {e}", partial.display()))?;
        fs::rename(&partial, &script).map_err(|e| format!("renaming to {}: {e}", script.display()))?;
    }
    Ok(script)
}

/// `npm ci` of our package.json and lock into `dir`, from scratch (a previous attempt may have
/// died halfway).
fn npm_ci(dir: &Path) -> Result<(), String> {
    if dir.exists() {
        fs::remove_dir_all(dir).map_err(|e| format!("removing the partial install {}: {e}", dir.display()))?;
    }
    fs::create_dir_all(dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    for (name, text) in [("package.json", PACKAGE_JSON), ("package-lock.json", PACKAGE_LOCK)] {
        fs::write(dir.join(name), text).map_err(|e| format!("writing {name}: {e}"))?;
    }
    // No lifecycle scripts: the pinned packages need none, and it keeps the install inert.
    let output = std::process::Command::new("npm")
        .args(["ci", "--ignore-scripts", "--no-audit", "--no-fund"])
        .current_dir(dir)
        .output()
        .map_err(|e| format!("running `npm ci` failed ({e}): the OIDC tests need Node.js >= 20 and npm on PATH"))?;
    if !output.status.success() {
        return Err(format!(
            "`npm ci` in {} failed ({}):\n{}\n{}",
            dir.display(),
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    Ok(())
}

fn short_hash(parts: &[&str]) -> String {
    let mut hasher = Sha256::new();
    for part in parts {
        hasher.update(part.as_bytes());
        hasher.update([0]);
    }
    hasher.finalize().iter().take(8).map(|b| format!("{b:02x}")).collect()
}
