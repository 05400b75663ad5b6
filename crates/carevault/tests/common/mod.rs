//! Helpers for running the real binary: a clean environment, a server process that is always
//! stopped, bounded waits.

#![allow(dead_code, missing_docs)]

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A secret of the right length for JWT_HS256_SECRET and PLATFORM_API_TOKEN.
pub const SECRET: &str = "test-secret-0123456789abcdef0123456789abcdef";
pub const PLATFORM_TOKEN: &str = "platform-token-0123456789abcdef0123456789abcdef";

/// The binary with an environment of its own: only what finding PostgreSQL needs survives, so
/// that a developer's ENVIRONMENT, PORT, DATABASE_URL, ... cannot change what is tested.
pub fn carevault() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_carevault"));
    command.env_clear();
    for name in ["PATH", "HOME", "XDG_CACHE_HOME", "XDG_DATA_HOME", "CAREVAULT_CACHE_DIR", "CAREVAULT_PG_BIN", "TMPDIR"]
    {
        if let Some(value) = std::env::var_os(name) {
            command.env(name, value);
        }
    }
    command.env("LOG_LEVEL", "info");
    command
}

/// Runs a one-shot command with a deadline.
pub fn run(mut command: Command, timeout: Duration) -> Output {
    command.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = command.spawn().expect("starting the carevault binary");
    let stdout = drain(child.stdout.take().expect("stdout"));
    let stderr = drain(child.stderr.take().expect("stderr"));
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(status) = child.try_wait().expect("waiting for carevault") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("carevault {command:?} did not finish within {timeout:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    Output { status, stdout: join(stdout), stderr: join(stderr) }
}

fn drain(mut reader: impl Read + Send + 'static) -> std::thread::JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = reader.read_to_end(&mut bytes);
        bytes
    })
}

fn join(handle: std::thread::JoinHandle<Vec<u8>>) -> Vec<u8> {
    handle.join().unwrap_or_default()
}

/// Runs a one-shot command and returns its stdout, failing the test with its output otherwise.
pub fn run_ok(command: Command) -> String {
    let description = format!("{command:?}");
    let output = run(command, Duration::from_secs(120));
    assert!(
        output.status.success(),
        "{description} failed ({}):\nstdout:\n{}\nstderr:\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("stdout is UTF-8")
}

/// A free TCP port on 127.0.0.1 (free when asked; the server binds it right after).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").expect("binding port 0").local_addr().expect("local addr").port()
}

/// A running `carevault serve`. Dropping it (say, after a failed assertion) sends SIGTERM, then
/// SIGKILL if the server does not stop within 20 s.
pub struct Server {
    child: Option<Child>,
    stdout: Receiver<String>,
    stdout_seen: Vec<String>,
    stderr: Arc<Mutex<String>>,
    pub base_url: String,
}

impl Server {
    /// Starts `command` (a `serve` with `--listen 127.0.0.1:<port>`).
    pub fn start(mut command: Command, port: u16) -> Server {
        command.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = command.spawn().expect("starting carevault serve");
        let (tx, stdout) = channel();
        let out = child.stdout.take().expect("stdout");
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let stderr = Arc::new(Mutex::new(String::new()));
        let err = child.stderr.take().expect("stderr");
        let sink = Arc::clone(&stderr);
        std::thread::spawn(move || {
            for line in BufReader::new(err).lines().map_while(Result::ok) {
                if let Ok(mut text) = sink.lock() {
                    text.push_str(&line);
                    text.push('\n');
                }
            }
        });
        Server {
            child: Some(child),
            stdout,
            stdout_seen: Vec::new(),
            stderr,
            base_url: format!("http://127.0.0.1:{port}"),
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    pub fn stderr(&self) -> String {
        self.stderr.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// Every stdout line so far (waiting up to `timeout` for `until` to hold for them).
    pub fn stdout_until(&mut self, timeout: Duration, until: impl Fn(&[String]) -> bool) -> Vec<String> {
        let deadline = Instant::now() + timeout;
        while !until(&self.stdout_seen) {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.stdout.recv_timeout(left.max(Duration::from_millis(1))) {
                Ok(line) => self.stdout_seen.push(line),
                Err(RecvTimeoutError::Timeout) if Instant::now() < deadline => {}
                Err(_) => panic!(
                    "the expected output did not appear within {timeout:?};\nstdout:\n{}\nstderr:\n{}",
                    self.stdout_seen.join("\n"),
                    self.stderr()
                ),
            }
        }
        self.stdout_seen.clone()
    }

    /// Waits until `/api/v1/health/ready` answers 200.
    pub async fn wait_ready(&mut self, timeout: Duration) {
        let client = reqwest::Client::builder().timeout(Duration::from_secs(5)).build().expect("client");
        let url = format!("{}/api/v1/health/ready", self.base_url);
        let deadline = Instant::now() + timeout;
        let mut last;
        loop {
            if let Some(status) = self.child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                panic!("carevault serve exited early ({status}):\n{}", self.stderr());
            }
            match client.get(&url).send().await {
                Ok(response) if response.status() == reqwest::StatusCode::OK => return,
                Ok(response) => last = format!("{}: {}", response.status(), response.text().await.unwrap_or_default()),
                Err(e) => last = e.to_string(),
            }
            assert!(Instant::now() < deadline, "not ready within {timeout:?} (last: {last}):\n{}", self.stderr());
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Sends SIGTERM and waits up to `timeout` for the exit status.
    pub fn terminate(&mut self, timeout: Duration) -> ExitStatus {
        let mut child = self.child.take().expect("running");
        signal(child.id(), "TERM");
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = child.try_wait().expect("waiting for carevault serve") {
                return status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("carevault serve did not stop within {timeout:?} of SIGTERM:\n{}", self.stderr());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let Some(mut child) = self.child.take() else { return };
        signal(child.id(), "TERM");
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
        let _ = child.wait();
    }
}

fn signal(pid: u32, name: &str) {
    let _ = Command::new("kill").arg(format!("-{name}")).arg(pid.to_string()).status();
}
