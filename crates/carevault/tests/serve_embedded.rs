//! `carevault serve` on the embedded default (no DATABASE_URL): it starts its own PostgreSQL,
//! seeds the demo once, prints curl commands that work, and stops its cluster on SIGTERM.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::time::Duration;

use carevault_testdb::{ScratchDir, is_running, stop_postmaster};
use common::{Server, carevault, free_port, run_ok};

/// Stops a cluster left running on `data_dir` by a failed assertion (ScratchDir only knows
/// `<scratch>/data`; the embedded default lives in `<CAREVAULT_DATA_DIR>/pg18`).
struct ClusterGuard(PathBuf);

impl Drop for ClusterGuard {
    fn drop(&mut self) {
        stop_postmaster(&self.0);
    }
}

/// One printed curl command, taken apart.
#[derive(Debug)]
struct Curl {
    token: String,
    url: String,
    body_file: Option<PathBuf>,
}

fn parse_curl(line: &str) -> Curl {
    let token = line
        .split_once("Bearer ")
        .and_then(|(_, rest)| rest.split_once('\''))
        .map(|(token, _)| token.to_owned())
        .unwrap_or_else(|| panic!("no bearer token in {line}"));
    let url = line.split_whitespace().last().expect("a URL at the end").to_owned();
    assert!(url.starts_with("http://127.0.0.1:"), "{line}");
    let body_file =
        line.split_once("--data @'").and_then(|(_, rest)| rest.split_once('\'')).map(|(p, _)| PathBuf::from(p));
    Curl { token, url, body_file }
}

fn serve(scratch: &ScratchDir, port: u16) -> Server {
    let mut command = carevault();
    command.args(["serve", "--listen", &format!("127.0.0.1:{port}")]).env("CAREVAULT_DATA_DIR", scratch.path());
    Server::start(command, port)
}

fn curl_lines(server: &mut Server) -> Vec<String> {
    let lines = server
        .stdout_until(Duration::from_secs(180), |lines| lines.iter().filter(|l| l.starts_with("curl ")).count() >= 3);
    lines.into_iter().filter(|l| l.starts_with("curl ")).collect()
}

/// Executes the printed commands as curl would, and returns the JSON answers.
async fn execute(commands: &[String]) -> Vec<(String, serde_json::Value)> {
    let client = reqwest::Client::builder().timeout(Duration::from_secs(10)).build().expect("client");
    let mut answers = Vec::new();
    for line in commands {
        let curl = parse_curl(line);
        let request = match &curl.body_file {
            Some(path) => client
                .post(&curl.url)
                .header("Content-Type", "application/json")
                .body(std::fs::read(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))),
            None => client.get(&curl.url),
        };
        let response = request.bearer_auth(&curl.token).send().await.expect("sending the printed request");
        let status = response.status();
        let body = response.text().await.expect("body");
        assert_eq!(status, 200, "{line}\n→ {body}");
        answers.push((curl.url, serde_json::from_str(&body).expect("a JSON answer")));
    }
    answers
}

fn tenants_named(scratch: &ScratchDir, name: &str) -> usize {
    let mut command = carevault();
    command.args(["tenant", "list", "--json", "--deleted", "include"]).env("CAREVAULT_DATA_DIR", scratch.path());
    let tenants: serde_json::Value = serde_json::from_str(&run_ok(command)).expect("JSON");
    tenants.as_array().expect("array").iter().filter(|t| t["name"] == name).count()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_embedded_default_seeds_once_prints_working_curl_commands_and_stops_its_cluster() {
    let scratch = ScratchDir::new("serve-embedded");
    let pg_data = scratch.path().join("pg18");
    let _cluster = ClusterGuard(pg_data.clone());

    // First start: creates the cluster, migrates, seeds, prints.
    let port = free_port();
    let mut server = serve(&scratch, port);
    let commands = curl_lines(&mut server);
    server.wait_ready(Duration::from_secs(60)).await;
    assert!(is_running(&pg_data), "the embedded cluster runs under CAREVAULT_DATA_DIR");
    assert!(server.stderr().contains("seeded the demo tenant"), "{}", server.stderr());

    let answers = execute(&commands).await;
    let urls: Vec<&str> = answers.iter().map(|(url, _)| url.as_str()).collect();
    assert!(urls.iter().any(|u| u.ends_with("/api/v1/auth/validate")), "{urls:?}");
    assert!(urls.iter().any(|u| u.ends_with("/api/v1/documents")), "{urls:?}");
    assert!(urls.iter().any(|u| u.ends_with("/api/v1/documents/search")), "{urls:?}");
    let mut demo_tenant = None;
    for (url, json) in &answers {
        if url.ends_with("/auth/validate") {
            assert_eq!(json["tenant"]["name"], "Demo Clinic", "{json}");
            assert_eq!(json["role"], "admin", "{json}");
            assert_eq!(json["user"]["external_idp_id"], "demo-admin", "{json}");
            demo_tenant = Some(json["tenant"]["id"].clone());
        } else if url.ends_with("/documents") {
            let items = json["items"].as_array().expect("items");
            assert!((3..=5).contains(&items.len()), "{json}");
            assert!(items.iter().all(|d| d["has_embedding"] == true), "{json}");
        } else {
            let results = json["results"].as_array().expect("results");
            assert!(!results.is_empty(), "{json}");
            let best = results[0]["similarity"].as_f64().expect("similarity");
            assert!(best > 0.999, "the query is a demo document's own embedding: {json}");
        }
    }

    // The generated secret is private and never printed.
    let secret_file = scratch.path().join("dev-jwt-secret");
    let secret = std::fs::read_to_string(&secret_file).expect("the dev secret is kept in the data directory");
    assert_eq!(std::fs::metadata(&secret_file).expect("metadata").permissions().mode() & 0o777, 0o600);
    let printed = commands.join("\n");
    assert!(!printed.contains(secret.trim()) && !server.stderr().contains(secret.trim()));

    let status = server.terminate(Duration::from_secs(30));
    assert!(status.success(), "exit 0 on SIGTERM ({status}):\n{}", server.stderr());
    assert!(server.stderr().contains("embedded PostgreSQL stopped"), "{}", server.stderr());
    assert!(!is_running(&pg_data), "the cluster this server started is stopped");
    drop(server);

    // Second start: same demo (not seeded again), fresh tokens that work too.
    let port = free_port();
    let mut server = serve(&scratch, port);
    let again = curl_lines(&mut server);
    server.wait_ready(Duration::from_secs(60)).await;
    assert!(!server.stderr().contains("seeded the demo tenant"), "{}", server.stderr());
    let answers = execute(&again).await;
    let validate = answers.iter().find(|(url, _)| url.ends_with("/auth/validate")).expect("validate printed");
    assert_eq!(Some(validate.1["tenant"]["id"].clone()), demo_tenant, "the same demo tenant");
    let tenant = demo_tenant.as_ref().and_then(|t| t.as_str()).expect("tenant id").to_owned();
    assert_token_mint_uses_the_generated_secret(&scratch, &server, &tenant).await;
    let status = server.terminate(Duration::from_secs(30));
    assert!(status.success(), "{}", server.stderr());
    assert!(!is_running(&pg_data));

    assert_eq!(tenants_named(&scratch, "Demo Clinic"), 1, "the demo is seeded once");
    assert!(!is_running(&pg_data), "the CLI stops the cluster it started too");
}

/// `token mint` on the embedded default signs with the server's generated secret.
async fn assert_token_mint_uses_the_generated_secret(scratch: &ScratchDir, server: &Server, tenant: &str) {
    let mut command = carevault();
    command
        .args(["token", "mint", "--tenant", tenant, "--sub", "demo-viewer", "--ttl", "300"])
        .env("CAREVAULT_DATA_DIR", scratch.path());
    let token = run_ok(command);
    let response = reqwest::Client::new()
        .get(format!("{}/api/v1/auth/validate", server.base_url))
        .bearer_auth(token.trim())
        .send()
        .await
        .expect("GET /auth/validate");
    assert_eq!(response.status(), 200);
    let me: serde_json::Value = response.json().await.expect("JSON");
    assert_eq!(me["role"], "viewer", "{me}");
}
