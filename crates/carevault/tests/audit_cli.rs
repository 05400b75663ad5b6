//! `carevault audit seal | verify | export | public-key` end to end: sealing and signing what is
//! committed, a clean verdict on an untouched chain, exit status 1 naming the place and kind of
//! a break made by the superuser, and an export verified offline by the binary and by the
//! independent Python verifier (`scripts/verify_audit_export.py`).

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use carevault_testdb::TestDb;
use common::{carevault, run, run_ok};
use sqlx::{Connection, PgConnection};

const SYSTEM: &str = "00000000-0000-0000-0000-000000000000";
const SIGNING_KEY: &str = "0707070707070707070707070707070707070707070707070707070707070707";

/// A scratch directory, removed when dropped.
struct Scratch(PathBuf);

impl Scratch {
    fn new() -> Scratch {
        let dir = std::env::temp_dir().join(format!("carevault-audit-cli-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).expect("a scratch directory");
        Scratch(dir)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn audit(db: &TestDb, scratch: &Scratch, args: &[&str]) -> Command {
    let mut command = carevault();
    command
        .arg("audit")
        .args(args)
        .env("DATABASE_URL", db.owner_url())
        .env("AUDIT_SIGNING_KEY", SIGNING_KEY)
        .env("AUDIT_CHECKPOINT_DIR", scratch.0.join("checkpoints"));
    command
}

async fn superuser(db: &TestDb, sql: &str) {
    let mut owner = PgConnection::connect(&db.owner_url()).await.expect("the superuser connects");
    sqlx::query("SET session_replication_role = replica").execute(&mut owner).await.expect("triggers off");
    sqlx::query(sqlx::AssertSqlSafe(sql.to_string())).bind(SYSTEM).execute(&mut owner).await.expect("the statement");
    owner.close().await.expect("closing");
}

#[tokio::test]
async fn seal_then_verify_then_find_a_row_edited_by_the_superuser() {
    let db = TestDb::new().await;
    let scratch = Scratch::new();
    superuser(
        &db,
        "INSERT INTO audit_logs (tenant_id, action, resource_type, resource_id, created_at, xact_id) \
         SELECT $1::uuid, 'tenant.read', 'tenant', $1::uuid, clock_timestamp(), pg_current_xact_id() \
         FROM generate_series(1, 5)",
    )
    .await;

    let sealed = run_ok(audit(&db, &scratch, &["seal"]));
    assert!(sealed.contains("audit chain: 5 rows sealed, 1 checkpoints signed"), "{sealed}");
    assert!(run_ok(audit(&db, &scratch, &["seal"])).contains("0 rows sealed, 0 checkpoints"), "nothing twice");
    let kept: Vec<_> = std::fs::read_dir(scratch.0.join("checkpoints").join(SYSTEM)).unwrap().collect();
    assert_eq!(kept.len(), 1, "the checkpoint is kept outside the database");
    let verdict = run_ok(audit(&db, &scratch, &["verify"]));
    assert!(verdict.contains(&format!("{SYSTEM} intact: 5 rows, head 5, checkpoint 5, 0 unsealed")), "{verdict}");

    superuser(
        &db,
        "UPDATE audit_logs SET resource_type = 'document' \
         WHERE id = (SELECT audit_id FROM audit_chain WHERE tenant_id = $1::uuid AND seq = 2)",
    )
    .await;
    let broken = run(audit(&db, &scratch, &["verify", "--tenant", SYSTEM]), Duration::from_secs(60));
    let (stdout, stderr) = (String::from_utf8_lossy(&broken.stdout), String::from_utf8_lossy(&broken.stderr));
    assert_eq!(broken.status.code(), Some(1), "{stdout} {stderr}");
    assert!(stdout.contains(&format!("{SYSTEM} BROKEN at seq 2: altered row")), "{stdout}");
    assert!(stderr.contains("the audit chain of 1 of 1 tenants is broken"), "{stderr}");

    let json = run(audit(&db, &scratch, &["verify", "--json"]), Duration::from_secs(60));
    let verdicts: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(verdicts[0]["breaks"][0], serde_json::json!({ "seq": 2, "kind": "altered_row" }));

    let refused = run(audit(&db, &scratch, &["verify", "--tenant", "Ann-Lee"]), Duration::from_secs(60));
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success() && stderr.contains("--tenant is not a tenant id"), "{stderr}");
    assert!(!stderr.contains("Ann-Lee"), "the refused value is not echoed: {stderr}");
}

/// `python3` with the `cryptography` package: the system's, or one given it under the target
/// directory with pip (the verifier needs one Ed25519 package).
fn python_with_ed25519() -> (PathBuf, Option<PathBuf>) {
    let probe = |path: Option<&Path>| {
        let mut command = Command::new("python3");
        command.args(["-c", "import cryptography.hazmat.primitives.asymmetric.ed25519"]);
        if let Some(path) = path {
            command.env("PYTHONPATH", path);
        }
        command.output().is_ok_and(|o| o.status.success())
    };
    if probe(None) {
        return (PathBuf::from("python3"), None);
    }
    let target = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("python-cryptography");
    if !probe(Some(&target)) {
        let installed = Command::new("python3")
            .args(["-m", "pip", "install", "--disable-pip-version-check", "--no-input", "--quiet", "--target"])
            .arg(&target)
            .arg("cryptography")
            .status()
            .expect("python3 runs");
        assert!(installed.success(), "pip could not install cryptography");
    }
    (PathBuf::from("python3"), Some(target))
}

fn python_verify(file: &Path, public_key: &str) -> (bool, String) {
    let (python, path) = python_with_ed25519();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/verify_audit_export.py");
    let mut command = Command::new(python);
    command.arg(script).arg(file).arg(public_key);
    if let Some(path) = path {
        command.env("PYTHONPATH", path);
    }
    let output = command.output().expect("python3 runs");
    assert!(output.stderr.is_empty(), "{}", String::from_utf8_lossy(&output.stderr));
    (output.status.success(), String::from_utf8_lossy(&output.stdout).into_owned())
}

#[tokio::test]
async fn an_export_verifies_offline_with_the_binary_and_the_python_verifier_and_an_edit_is_found_by_both() {
    let db = TestDb::new().await;
    let scratch = Scratch::new();
    superuser(
        &db,
        "INSERT INTO audit_logs (tenant_id, user_id, action, resource_type, resource_id, ip_address, user_agent, \
                                 metadata, created_at, xact_id) \
         SELECT $1::uuid, NULL, 'document.read', 'document', gen_random_uuid(), '2001:db8::7', 'curl/8 é \u{1F600}', \
                jsonb_build_object('n', n, 'ids', jsonb_build_array(gen_random_uuid()), 'x', 2.50), \
                clock_timestamp(), pg_current_xact_id() \
         FROM generate_series(1, 12) AS n",
    )
    .await;
    run_ok(audit(&db, &scratch, &["seal"]));
    let public = run_ok(audit(&db, &scratch, &["public-key"]));
    let (key_id, public_key) = public.trim().split_once(' ').unwrap();
    assert_eq!((key_id.len(), public_key.len()), (16, 64), "{public}");

    let export = run_ok(audit(&db, &scratch, &["export", "--tenant", SYSTEM]));
    assert_eq!(export.lines().count(), 13, "12 entries and 1 checkpoint: {export}");
    let file = scratch.0.join("export.jsonl");
    std::fs::write(&file, &export).unwrap();

    let offline = |file: &Path| {
        let mut command = carevault();
        command.args(["audit", "verify", "--file"]).arg(file).args(["--public-key", public_key]);
        // Offline: no database, and no configuration of this machine's (even production's
        // required variables are not needed to check an export with a given key).
        command.env("DATABASE_URL", "postgres://nobody@127.0.0.1:1/none").env("ENVIRONMENT", "production");
        command.env_remove("AUDIT_SIGNING_KEY").env_remove("AUDIT_CHECKPOINT_DIR");
        run(command, Duration::from_secs(60))
    };
    let verified = offline(&file);
    let stdout = String::from_utf8_lossy(&verified.stdout);
    assert!(verified.status.success() && stdout.contains("intact: 12 rows, head 12, checkpoint 12"), "{stdout}");
    let (intact, said) = python_verify(&file, public_key);
    assert!(intact && said.contains("intact: 12 entries, head 12"), "{said}");

    // One field of row 7, edited in the file: both find it, at 7, as an altered row.
    let edited: String =
        export
            .lines()
            .map(|line| {
                if line.contains("\"seq\":7,") {
                    line.replacen("document.read", "document.list", 1)
                } else {
                    line.into()
                }
            })
            .collect::<Vec<_>>()
            .join("\n");
    assert_ne!(edited, export.trim_end());
    std::fs::write(&file, edited).unwrap();
    let broken = offline(&file);
    assert!(String::from_utf8_lossy(&broken.stdout).contains("BROKEN at seq 7: altered row"));
    assert_eq!(broken.status.code(), Some(1));
    let (intact, said) = python_verify(&file, public_key);
    assert!(!intact && said.contains("BROKEN at seq 7: altered row"), "{said}");

    // The tail cut before the checkpoint: truncated, for both.
    let cut: String = export.lines().filter(|l| !l.contains("\"seq\":12,\"sealed_at\"")).collect::<Vec<_>>().join("\n");
    std::fs::write(&file, cut).unwrap();
    assert!(String::from_utf8_lossy(&offline(&file).stdout).contains("BROKEN at seq 12: truncated tail"));
    let (intact, said) = python_verify(&file, public_key);
    assert!(!intact && said.contains("BROKEN at seq 12: truncated tail"), "{said}");

    // The file alone does not decide what is vouched for (the second attacker review): without
    // its checkpoint, or without its first entries, an export is not intact.
    let cases = [
        (
            export.lines().filter(|l| !l.contains("\"type\":\"checkpoint\"")).collect::<Vec<_>>(),
            "BROKEN at seq 1: not vouched for by a checkpoint",
        ),
        (export.lines().skip(3).collect::<Vec<_>>(), "BROKEN at seq 1: missing row"),
    ];
    for (lines, expected) in cases {
        std::fs::write(&file, lines.join("\n")).unwrap();
        let said = String::from_utf8_lossy(&offline(&file).stdout).into_owned();
        assert!(said.contains(expected), "{expected}: {said}");
        let (intact, said) = python_verify(&file, public_key);
        assert!(!intact && said.contains(expected), "{expected}: {said}");
    }
}
