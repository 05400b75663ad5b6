//! `carevault doctor` end to end: the real binary against a fresh database on the test cluster,
//! configured as a good deployment is (DATABASE_URL the owner, the pools on the login roles).

use std::process::Output;

use carevault_testdb::TestDb;

mod common;

/// Runs `carevault doctor <args>` against `db`, as a deployment with the two login roles.
fn doctor(db: &TestDb, args: &[&str]) -> Output {
    let mut command = common::carevault();
    command
        .arg("doctor")
        .args(args)
        .env("DATABASE_URL", db.owner_url())
        .env("APP_DATABASE_URL", db.app_url())
        .env("PLATFORM_DATABASE_URL", db.ops_url())
        .env("ENVIRONMENT", "production");
    common::run(command, std::time::Duration::from_secs(120))
}

fn describe(output: &Output) -> String {
    format!(
        "status {}\nstdout:\n{}\nstderr:\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// The check lines of the text report (fix lines are indented).
fn check_lines(stdout: &str) -> Vec<(String, String)> {
    stdout
        .lines()
        .filter(|line| !line.starts_with(' '))
        .map(|line| {
            let mut words = line.split_whitespace();
            (words.next().unwrap_or_default().to_string(), words.next().unwrap_or_default().to_string())
        })
        .collect()
}

#[tokio::test]
async fn a_fresh_database_passes_every_check() {
    let db = TestDb::new().await;
    let output = doctor(&db, &[]);
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    let stdout = String::from_utf8(output.stdout.clone()).unwrap();
    let lines = check_lines(&stdout);
    let names: Vec<&str> = lines.iter().map(|(_, name)| name.as_str()).collect();
    assert_eq!(names, carevault_db::doctor::CHECK_NAMES, "{}", describe(&output));
    assert!(lines.iter().all(|(status, _)| status == "PASS"), "{}", describe(&output));
    assert!(!stdout.contains("fix:"), "{}", describe(&output));
}

#[tokio::test]
async fn json_is_an_array_of_checks() {
    let db = TestDb::new().await;
    let output = doctor(&db, &["--json"]);
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    let checks: serde_json::Value = serde_json::from_slice(&output.stdout).expect("stdout is JSON");
    let checks = checks.as_array().expect("an array");
    assert_eq!(checks.len(), carevault_db::doctor::CHECK_NAMES.len());
    for check in checks {
        assert_eq!(check["status"], "PASS", "{check}");
        assert!(check["name"].is_string() && check["message"].is_string(), "{check}");
        assert!(check["fix"].is_null(), "{check}");
    }
}

#[tokio::test]
async fn a_sabotaged_database_fails_naming_the_check() {
    let db = TestDb::new().await;
    let owner = db.owner_pool().await;
    sqlx::query("ALTER TABLE documents NO FORCE ROW LEVEL SECURITY").execute(&owner).await.unwrap();
    owner.close().await;

    let output = doctor(&db, &[]);
    assert_eq!(output.status.code(), Some(1), "{}", describe(&output));
    let stdout = String::from_utf8(output.stdout.clone()).unwrap();
    let failing: Vec<String> = check_lines(&stdout)
        .into_iter()
        .filter(|(status, _)| status != "PASS")
        .map(|(s, n)| format!("{s} {n}"))
        .collect();
    assert_eq!(failing, ["FAIL row_level_security"], "{}", describe(&output));
    assert!(stdout.contains("fix: ALTER TABLE public.documents FORCE ROW LEVEL SECURITY;"), "{}", describe(&output));
    assert!(String::from_utf8_lossy(&output.stderr).contains("row_level_security"), "{}", describe(&output));

    let output = doctor(&db, &["--json"]);
    assert_eq!(output.status.code(), Some(1), "{}", describe(&output));
    let checks: serde_json::Value = serde_json::from_slice(&output.stdout).expect("stdout is JSON");
    let rls = checks.as_array().unwrap().iter().find(|c| c["name"] == "row_level_security").unwrap();
    assert_eq!(rls["status"], "FAIL");
    assert!(rls["fix"].as_str().unwrap().contains("FORCE ROW LEVEL SECURITY"));
}

#[tokio::test]
async fn a_superuser_for_the_pools_is_only_a_warning() {
    let db = TestDb::new().await;
    let mut command = common::carevault();
    command.args(["doctor"]).env("DATABASE_URL", db.owner_url());
    let output = common::run(command, std::time::Duration::from_secs(120));
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    let stdout = String::from_utf8(output.stdout.clone()).unwrap();
    let warned: Vec<(String, String)> = check_lines(&stdout).into_iter().filter(|(s, _)| s != "PASS").collect();
    assert_eq!(warned, [("WARN".to_string(), "login_roles".to_string())], "{}", describe(&output));
    assert!(stdout.contains("GRANT carevault_app TO carevault_api WITH INHERIT FALSE, SET TRUE;"), "{stdout}");
}
