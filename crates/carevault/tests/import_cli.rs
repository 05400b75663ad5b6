//! `carevault documents import` end to end: the binary on a fresh test database through
//! `DATABASE_URL`, the rows read back as `carevault_app` of the tenant.

mod common;

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use carevault_testdb::TestDb;
use common::{carevault, run, run_ok};
use sqlx::{Connection, PgConnection};

/// A file of the test's own under the temporary directory, removed when dropped.
struct Lines(PathBuf);

impl Lines {
    fn new(lines: &[String]) -> Lines {
        let path = std::env::temp_dir().join(format!("carevault-import-{}.jsonl", uuid::Uuid::new_v4()));
        std::fs::write(&path, lines.join("\n") + "\n").expect("write the JSON Lines file");
        Lines(path)
    }

    fn path(&self) -> &str {
        self.0.to_str().expect("a UTF-8 temporary path")
    }
}

impl Drop for Lines {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

struct Setup {
    db: TestDb,
    tenant: String,
    user: String,
}

impl Setup {
    async fn new() -> Setup {
        let db = TestDb::new().await;
        let with_db = |args: &[&str]| {
            let mut command = carevault();
            command.args(args).env("DATABASE_URL", db.owner_url());
            command
        };
        let tenant = run_ok(with_db(&["tenant", "create", "--name", "Clinic"])).trim().to_owned();
        let user = run_ok(with_db(&[
            "user",
            "create",
            "--tenant",
            &tenant,
            "--email",
            "m@clinic.test",
            "--role",
            "member",
            "--sub",
            "m",
        ]))
        .trim()
        .to_owned();
        Setup { db, tenant, user }
    }

    fn import(&self, file: &Lines, extra: &[&str]) -> Command {
        let mut command = carevault();
        command
            .args(["documents", "import", "--tenant", &self.tenant, "--user", &self.user, file.path()])
            .args(extra)
            .env("DATABASE_URL", self.db.owner_url());
        command
    }

    /// (documents of the user, `document.imported` rows, the sum of their counts), as the tenant.
    async fn counts(&self) -> (i64, i64, i64) {
        let mut conn = PgConnection::connect(&self.db.app_url()).await.expect("connect as carevault_api");
        let tenant = carevault_db::TenantId::parse(&self.tenant).expect("a tenant id");
        carevault_testdb::prove_tenant(&mut conn, tenant).await;
        sqlx::query_as(
            "SELECT (SELECT count(*) FROM documents WHERE user_id = $1::uuid), \
                    (SELECT count(*) FROM audit_logs WHERE action = 'document.imported'), \
                    (SELECT coalesce(sum((metadata->>'count')::bigint), 0)::bigint FROM audit_logs WHERE action = 'document.imported')",
        )
        .bind(&self.user)
        .fetch_one(&mut conn)
        .await
        .expect("count the rows")
    }
}

fn document(i: usize) -> String {
    format!(r#"{{"filename": "scan-{i}.pdf", "s3_key": "k/{i}", "s3_bucket": "b", "metadata": {{"n": {i}}}}}"#)
}

/// Good lines 1, 3, 6; bad lines 2 (JSON), 4 (an embedding of the wrong size), 7 (an unknown
/// field); line 5 blank (ignored). The bad values carry a name that must never be printed.
fn mixed() -> Vec<String> {
    vec![
        document(1),
        r#"{"filename": "Ann Lee"#.to_string(),
        document(3),
        r#"{"filename": "Ann Lee.pdf", "s3_key": "k", "s3_bucket": "b", "embedding": [0.25, 0.5]}"#.to_string(),
        String::new(),
        document(6),
        r#"{"filename": "x.pdf", "s3_key": "k", "s3_bucket": "b", "patient": "Ann Lee"}"#.to_string(),
    ]
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_lines_are_reported_by_number_and_skipped() {
    let setup = Setup::new().await;
    let file = Lines::new(&mixed());
    let output = run(setup.import(&file, &[]), Duration::from_secs(120));
    let (stdout, stderr) = (text(&output.stdout), text(&output.stderr));
    assert!(!output.status.success(), "a bad line means a non-zero exit:\n{stderr}");
    assert_eq!(stdout.trim(), "imported 3, skipped 3", "{stderr}");
    for expected in ["line 2: not valid JSON", "line 4: embedding: ", "line 7: not a document"] {
        assert!(stderr.contains(expected), "{expected:?} in:\n{stderr}");
    }
    assert!(!stderr.contains("line 5"), "a blank line is not a bad line:\n{stderr}");
    assert!(!stderr.contains("Ann") && !stderr.contains("0.25"), "a refused value was echoed:\n{stderr}");
    assert_eq!(setup.counts().await, (3, 1, 3));
}

#[tokio::test(flavor = "multi_thread")]
async fn strict_imports_nothing_when_a_line_is_bad_and_everything_otherwise() {
    let setup = Setup::new().await;
    let file = Lines::new(&mixed());
    let output = run(setup.import(&file, &["--strict"]), Duration::from_secs(120));
    assert!(!output.status.success());
    assert_eq!(text(&output.stdout).trim(), "imported 0, skipped 3", "{}", text(&output.stderr));
    assert!(text(&output.stderr).contains("nothing was imported"), "{}", text(&output.stderr));
    assert_eq!(setup.counts().await, (0, 0, 0));

    // 2,500 good lines: batches of 1,000, 1,000 and 500, one audit row each, in one transaction.
    let file = Lines::new(&(0..2500).map(document).collect::<Vec<_>>());
    assert_eq!(run_ok(setup.import(&file, &["--strict"])).trim(), "imported 2500, skipped 0");
    assert_eq!(setup.counts().await, (2500, 3, 2500));
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unknown_tenant_or_user_is_refused_before_anything_is_written() {
    let setup = Setup::new().await;
    let file = Lines::new(&[document(1)]);
    let stranger = uuid::Uuid::new_v4().to_string();
    for (tenant, user, expected) in [
        (setup.tenant.as_str(), stranger.as_str(), "no user"),
        (stranger.as_str(), setup.user.as_str(), "no tenant"),
        (setup.tenant.as_str(), "not-a-uuid", "is not a user id"),
    ] {
        let mut command = carevault();
        command
            .args(["documents", "import", "--tenant", tenant, "--user", user, file.path()])
            .env("DATABASE_URL", setup.db.owner_url());
        let output = run(command, Duration::from_secs(120));
        assert!(!output.status.success());
        assert!(text(&output.stderr).contains(expected), "{expected:?} in:\n{}", text(&output.stderr));
        assert!(output.stdout.is_empty(), "{}", text(&output.stdout));
    }
    assert_eq!(setup.counts().await, (0, 0, 0));
}

/// The path of a corpus: imported (searchable at once, exactly), then `carevault search
/// reconcile` gives the tenant its own index once it has 1,000 rows; a second pass has nothing
/// to do.
#[tokio::test(flavor = "multi_thread")]
async fn search_reconcile_builds_the_index_of_a_tenant_grown_by_an_import() {
    let setup = Setup::new().await;
    let reconcile = || {
        let mut command = carevault();
        command.args(["search", "reconcile"]).env("DATABASE_URL", setup.db.owner_url());
        command
    };
    assert_eq!(run_ok(reconcile()).trim(), "search indexes: nothing to do");

    let lines: Vec<String> = (0..1_000)
        .map(|i| {
            let embedding: Vec<String> =
                (0..1024).map(|d| format!("{}", ((i * 31 + d * 7) % 97) as f32 / 97.0)).collect();
            format!(
                r#"{{"filename": "e-{i}.pdf", "s3_key": "k/{i}", "s3_bucket": "b", "embedding": [{}]}}"#,
                embedding.join(",")
            )
        })
        .collect();
    let file = Lines::new(&lines);
    let stdout = run_ok(setup.import(&file, &["--strict"]));
    assert!(stdout.contains("imported 1000"), "{stdout}");

    assert_eq!(run_ok(reconcile()).trim(), format!("create the search index of tenant {}", setup.tenant));
    assert_eq!(run_ok(reconcile()).trim(), "search indexes: nothing to do");
    let mut owner = PgConnection::connect(&setup.db.owner_url()).await.expect("connect as the owner");
    let predicate: String =
        sqlx::query_scalar("SELECT pg_get_expr(indpred, indrelid) FROM pg_index WHERE indexrelid = to_regclass($1)")
            .bind(format!("public.idx_documents_embedding_t_{}", setup.tenant.replace('-', "")))
            .fetch_one(&mut owner)
            .await
            .expect("the tenant's index exists");
    assert!(predicate.contains(&setup.tenant), "{predicate}");
}
