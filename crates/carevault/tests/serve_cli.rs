//! `carevault serve` and the operator CLI end to end, on a fresh test database through
//! `DATABASE_URL` (the single-URL deployment), with HS256 development tokens.

mod common;

use std::time::Duration;

use carevault_testdb::TestDb;
use common::{PLATFORM_TOKEN, SECRET, Server, carevault, free_port, run, run_ok};

fn stderr_of(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn operator_cli_then_serve_then_sigterm() {
    let db = TestDb::new().await;
    let with_db = |args: &[&str]| {
        let mut command = carevault();
        command.args(args).env("DATABASE_URL", db.owner_url()).env("JWT_HS256_SECRET", SECRET);
        command
    };

    // tenant create prints the id alone.
    let tenant = run_ok(with_db(&["tenant", "create", "--name", "Acme Health", "--status", "trial"]));
    assert_eq!(tenant.lines().count(), 1, "{tenant:?}");
    let tenant = tenant.trim().to_owned();
    uuid::Uuid::parse_str(&tenant).expect("tenant create prints a UUID");

    let listed: serde_json::Value =
        serde_json::from_str(&run_ok(with_db(&["tenant", "list", "--json"]))).expect("tenant list --json is JSON");
    let row = listed.as_array().expect("an array").iter().find(|t| t["id"] == tenant.as_str()).expect("listed");
    assert_eq!(row["name"], "Acme Health");
    assert_eq!(row["status"], "trial");

    let user = run_ok(with_db(&[
        "user",
        "create",
        "--tenant",
        &tenant,
        "--email",
        "ada@acme.example",
        "--role",
        "admin",
        "--sub",
        "acme-ada",
    ]));
    let user = user.trim().to_owned();
    uuid::Uuid::parse_str(&user).expect("user create prints a UUID");

    // A bad role is refused before anything is written, naming the fix.
    let output = run(
        with_db(&["user", "create", "--tenant", &tenant, "--email", "b@acme.example", "--role", "owner", "--sub", "b"]),
        Duration::from_secs(60),
    );
    assert!(!output.status.success());
    assert!(stderr_of(&output).contains("admin, member or viewer"), "{}", stderr_of(&output));

    let token = run_ok(with_db(&["token", "mint", "--tenant", &tenant, "--sub", "acme-ada", "--ttl", "600"]));
    let token = token.trim().to_owned();
    assert_eq!(token.split('.').count(), 3, "a JWT alone on stdout: {token:?}");

    // The server, on the same database and secret.
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let mut command = with_db(&["serve", "--listen", &listen]);
    command.env("PLATFORM_API_TOKEN", PLATFORM_TOKEN).env("PORT", "1"); // --listen wins over PORT
    // The CLI changes tenants behind the server's back: nothing remembered, so each applies to the
    // next request (with the default, within CALLER_CACHE_SECONDS; tests/api/caller_cache.rs).
    command.env("CALLER_CACHE_SECONDS", "0");
    let mut server = Server::start(command, port);
    server.wait_ready(Duration::from_secs(60)).await;
    let stderr = server.stderr();
    assert!(stderr.contains("superuser"), "a superuser login is warned about:\n{stderr}");

    let client = reqwest::Client::builder().timeout(Duration::from_secs(10)).build().expect("client");
    let response = client
        .get(format!("{}/api/v1/auth/validate", server.base_url))
        .bearer_auth(&token)
        .send()
        .await
        .expect("GET /auth/validate");
    assert_eq!(response.status(), 200);
    let me: serde_json::Value = response.json().await.expect("JSON");
    assert_eq!(me["tenant"]["id"], tenant.as_str(), "{me}");
    assert_eq!(me["user"]["id"], user.as_str(), "{me}");
    assert_eq!(me["role"], "admin", "{me}");

    // The platform API is wired to PLATFORM_API_TOKEN; a tenant token cannot use it.
    let platform = client
        .get(format!("{}/api/v1/platform/tenants", server.base_url))
        .bearer_auth(PLATFORM_TOKEN)
        .send()
        .await
        .expect("GET /platform/tenants");
    assert_eq!(platform.status(), 200);
    let refused = client
        .get(format!("{}/api/v1/platform/tenants", server.base_url))
        .bearer_auth(&token)
        .send()
        .await
        .expect("GET /platform/tenants");
    assert_eq!(refused.status(), 401);

    // The tenant lifecycle commands take effect on the running server.
    let validate_status = async || {
        client
            .get(format!("{}/api/v1/auth/validate", server.base_url))
            .bearer_auth(&token)
            .send()
            .await
            .expect("GET /auth/validate")
            .status()
    };
    run_ok(with_db(&["tenant", "suspend", &tenant]));
    assert_eq!(validate_status().await, 403, "a suspended tenant's users are refused");
    run_ok(with_db(&["tenant", "activate", &tenant]));
    assert_eq!(validate_status().await, 200);
    run_ok(with_db(&["tenant", "delete", &tenant]));
    assert_eq!(validate_status().await, 403, "a deleted tenant's users are refused");
    let deleted = run_ok(with_db(&["tenant", "list", "--deleted", "only"]));
    assert!(deleted.contains(&tenant) && deleted.contains("Acme Health"), "{deleted}");
    assert!(!run_ok(with_db(&["tenant", "list"])).contains(&tenant), "deleted tenants are hidden by default");
    let output = run(with_db(&["tenant", "suspend", &tenant]), Duration::from_secs(60));
    assert!(!output.status.success());
    assert!(stderr_of(&output).contains("tenant restore"), "{}", stderr_of(&output));
    run_ok(with_db(&["tenant", "restore", &tenant]));
    assert_eq!(validate_status().await, 200);
    let output = run(with_db(&["tenant", "suspend", "not-a-uuid"]), Duration::from_secs(60));
    assert!(!output.status.success());
    assert!(stderr_of(&output).contains("not a tenant id"), "{}", stderr_of(&output));

    let mut healthcheck = carevault();
    healthcheck.args(["healthcheck", "--listen", &listen]);
    assert!(run(healthcheck, Duration::from_secs(30)).status.success(), "healthcheck passes while serving");

    let status = server.terminate(Duration::from_secs(15));
    assert!(status.success(), "serve exits 0 on SIGTERM ({status}):\n{}", server.stderr());
    let stderr = server.stderr();
    assert!(stderr.contains("SIGTERM") && stderr.contains("database pools closed"), "{stderr}");
    assert!(!stderr.contains(&token) && !stderr.contains(SECRET), "no token or secret in the logs");

    // Nothing answers any more.
    let mut healthcheck = carevault();
    healthcheck.args(["healthcheck", "--listen", &listen]);
    let output = run(healthcheck, Duration::from_secs(30));
    assert_eq!(output.status.code(), Some(1), "healthcheck fails with exit 1 when nothing listens");
}

#[test]
fn token_mint_is_refused_in_production_and_above_the_maximum_lifetime() {
    let tenant = "6f1c2a52-9a7e-4a53-8d8e-2f1f0f7a1c11";
    let mint = |env: &[(&str, &str)], extra: &[&str]| {
        let mut command = carevault();
        command.args(["token", "mint", "--sub", "someone"]).args(extra);
        if !extra.contains(&"--tenant") {
            command.args(["--tenant", tenant]);
        }
        command.env("DATABASE_URL", "postgres://nobody@127.0.0.1:1/none");
        for (name, value) in env {
            command.env(name, value);
        }
        run(command, Duration::from_secs(30))
    };

    let output = mint(&[("ENVIRONMENT", "production"), ("JWT_HS256_SECRET", SECRET)], &[]);
    assert!(!output.status.success());
    assert!(output.stdout.is_empty(), "no token printed");
    let message = stderr_of(&output);
    assert!(message.contains("refused in production") && message.contains("identity provider"), "{message}");

    let output = mint(&[("JWT_HS256_SECRET", SECRET), ("JWT_MAX_LIFETIME_MINUTES", "30")], &["--ttl", "3600"]);
    assert!(!output.status.success());
    assert!(output.stdout.is_empty());
    assert!(stderr_of(&output).contains("JWT_MAX_LIFETIME_MINUTES"), "{}", stderr_of(&output));

    let output = mint(&[], &[]);
    assert!(!output.status.success(), "with DATABASE_URL and no JWT_HS256_SECRET there is no secret to use");
    assert!(stderr_of(&output).contains("JWT_HS256_SECRET is not set"), "{}", stderr_of(&output));

    let output = mint(&[("JWT_HS256_SECRET", SECRET)], &["--tenant", "org-456"]);
    assert!(!output.status.success());
    assert!(stderr_of(&output).contains("not a tenant id"), "{}", stderr_of(&output));

    let output = mint(&[("JWT_HS256_SECRET", SECRET), ("ENVIRONMENT", "staging")], &[]);
    assert!(output.status.success(), "staging may use development tokens: {}", stderr_of(&output));
}

#[test]
fn serve_refuses_an_unsafe_production_configuration_before_starting_anything() {
    let mut command = carevault();
    command
        .args(["serve", "--listen", "127.0.0.1:1"])
        .env("ENVIRONMENT", "production")
        .env("JWT_HS256_SECRET", SECRET)
        .env("ALLOWED_ORIGINS", "*")
        .env("DATABASE_URL", "postgres://nobody@127.0.0.1:1/none");
    let output = run(command, Duration::from_secs(30));
    assert!(!output.status.success());
    let message = stderr_of(&output);
    for name in ["JWT_HS256_SECRET", "ALLOWED_ORIGINS", "OIDC_ISSUER_URL", "OIDC_CLIENT_ID"] {
        assert!(message.contains(name), "names {name}: {message}");
    }
    assert!(!message.contains(SECRET), "the secret is not echoed");
    // Production logs are JSON lines, the fatal error included.
    assert!(!message.trim().is_empty());
    for line in message.lines().filter(|l| !l.trim().is_empty()) {
        let entry: serde_json::Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        assert!(entry["level"].is_string(), "{entry}");
    }
}
