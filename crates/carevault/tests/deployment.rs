//! The deployment files agree with the code: `config/variables.json` (the configuration table),
//! `template.json`, `railway.json`, the `Dockerfile`, `.dockerignore` and the README; and the
//! binary, run with the image's environment and no `DATABASE_URL`, stops with a message naming it.
//!
//! No Docker engine is available here, so the Dockerfile is checked by reading it: the
//! instructions an image build would follow, not a built image.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use carevault_testdb::ScratchDir;
use serde_json::Value;

use crate::common::{carevault, run};

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn read(relative: &str) -> String {
    let path = repo_root().join(relative);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

fn json(relative: &str) -> Value {
    serde_json::from_str(&read(relative)).unwrap_or_else(|e| panic!("{relative} is not JSON: {e}"))
}

/// A row of the configuration table.
#[derive(Debug)]
struct Variable {
    name: String,
    default: Option<String>,
    scope: String,
}

fn variables() -> Vec<Variable> {
    let table = json("crates/carevault/config/variables.json");
    table["variables"]
        .as_array()
        .expect("a variables array")
        .iter()
        .map(|v| {
            assert!(v["meaning"].as_str().is_some_and(|m| !m.is_empty()), "{v}: a meaning");
            Variable {
                name: v["name"].as_str().expect("name").to_owned(),
                default: v["default"].as_str().map(str::to_owned),
                scope: v["scope"].as_str().expect("scope").to_owned(),
            }
        })
        .collect()
}

fn names_in_scope(scope: &str) -> BTreeSet<String> {
    variables().into_iter().filter(|v| v.scope == scope).map(|v| v.name).collect()
}

fn template_service<'a>(template: &'a Value, name: &str) -> &'a Value {
    template["services"]
        .as_array()
        .expect("a services array")
        .iter()
        .find(|s| s["name"] == name)
        .unwrap_or_else(|| panic!("template.json has no service {name:?}"))
}

#[test]
fn the_template_lists_every_variable_of_the_configuration_table_with_its_default() {
    let template = json("template.json");
    let service = template_service(&template, "carevault");
    let listed = service["variables"].as_object().expect("carevault's variables");

    let in_template: BTreeSet<String> = listed.keys().cloned().collect();
    assert_eq!(in_template, names_in_scope("service"), "template.json and config/variables.json (scope service)");
    assert!(in_template.contains("JWT_TENANT_CLAIM_NAME"), "the variable the reference left out");

    let defaults: BTreeMap<String, Option<String>> = variables().into_iter().map(|v| (v.name, v.default)).collect();
    for (name, entry) in listed {
        assert_eq!(
            entry["default"].as_str().map(str::to_owned),
            defaults[name],
            "{name}: template.json's default and the configuration table's"
        );
        assert!(entry.get("default").is_some(), "{name}: default stated, null when unset");
        assert!(entry["description"].as_str().is_some_and(|d| d.len() > 10), "{name}: a description");
        assert!(entry["required"].is_boolean(), "{name}: required true or false");
    }
    // The production rules of src/config, as the template states them.
    for name in [
        "DATABASE_URL",
        "OIDC_ISSUER_URL",
        "OIDC_CLIENT_ID",
        "ALLOWED_ORIGINS",
        "TENANT_CONTEXT_KEY",
        "AUDIT_SIGNING_KEY",
        "AUDIT_CHECKPOINT_DIR",
    ] {
        assert_eq!(listed[name]["required"], true, "{name} is required in the container");
    }
    assert!(listed["JWT_HS256_SECRET"].get("value").is_none(), "the template never sets JWT_HS256_SECRET");
    assert!(
        listed["JWT_HS256_SECRET"]["description"].as_str().is_some_and(|d| d.contains("unset in production")),
        "JWT_HS256_SECRET is documented as must-stay-unset in production"
    );
    assert_eq!(listed["ENVIRONMENT"]["value"], "production");

    // Local-only and image variables are not the operator's to set.
    for name in names_in_scope("local").iter().chain(&names_in_scope("image")) {
        assert!(!listed.contains_key(name), "{name} does not belong in the template");
    }
}

#[test]
fn the_template_wires_carevault_to_a_pgvector_postgres_with_a_volume() {
    let template = json("template.json");
    let postgres = template_service(&template, "Postgres");
    let image = postgres["source"]["image"].as_str().expect("the Postgres image");
    assert!(image.starts_with("pgvector/pgvector:pg"), "{image}");
    let major: u32 = image.rsplit(":pg").next().and_then(|m| m.parse().ok()).expect("a major version tag");
    assert!(major >= 16, "carevault needs PostgreSQL 16 or later, got {image}");
    // PostgreSQL 18+ images keep their data under /var/lib/postgresql/<major>/docker; before 18, in
    // /var/lib/postgresql/data. A volume elsewhere would lose the database on redeploy.
    let expected_mount = if major >= 18 { "/var/lib/postgresql" } else { "/var/lib/postgresql/data" };
    let mounts: Vec<&str> =
        postgres["volumes"].as_array().expect("a volume").iter().filter_map(|v| v["mountPath"].as_str()).collect();
    assert_eq!(mounts, [expected_mount]);
    assert_eq!(postgres["public"], false, "the database is reached over the private network only");

    let pg_vars = postgres["variables"].as_object().expect("Postgres variables");
    let password = pg_vars["POSTGRES_PASSWORD"]["value"].as_str().expect("a password");
    assert!(password.starts_with("${{secret("), "generated, not fixed: {password}");
    let url = pg_vars["DATABASE_URL"]["value"].as_str().expect("Postgres DATABASE_URL");
    for part in ["postgresql://", "${{POSTGRES_PASSWORD}}", "${{RAILWAY_PRIVATE_DOMAIN}}", "${{POSTGRES_DB}}"] {
        assert!(url.contains(part), "{url} lacks {part}");
    }

    let carevault = template_service(&template, "carevault");
    assert_eq!(carevault["variables"]["DATABASE_URL"]["value"], "${{Postgres.DATABASE_URL}}");
    // The checkpoints outside the database live on the service's own volume.
    let checkpoint_dir = carevault["variables"]["AUDIT_CHECKPOINT_DIR"]["value"].as_str().expect("a checkpoint dir");
    let service_mounts: Vec<&str> =
        carevault["volumes"].as_array().expect("a volume").iter().filter_map(|v| v["mountPath"].as_str()).collect();
    assert!(service_mounts.iter().any(|m| checkpoint_dir.starts_with(&format!("{m}/"))), "{checkpoint_dir}");
    assert_eq!(carevault["source"]["dockerfile"], "Dockerfile");
    assert_eq!(carevault["source"]["config"], "railway.json");
}

#[test]
fn railway_json_migrates_before_deploying_and_checks_readiness() {
    let railway = json("railway.json");
    assert_eq!(railway["$schema"], "https://railway.com/railway.schema.json");
    assert_eq!(railway["build"]["builder"], "DOCKERFILE");
    let dockerfile = railway["build"]["dockerfilePath"].as_str().expect("dockerfilePath");
    assert!(repo_root().join(dockerfile).is_file(), "{dockerfile} exists");

    let deploy = &railway["deploy"];
    let pre_deploy = match &deploy["preDeployCommand"] {
        Value::String(command) => command.clone(),
        Value::Array(commands) => commands.iter().filter_map(Value::as_str).collect::<Vec<_>>().join(" && "),
        other => panic!("preDeployCommand missing: {other}"),
    };
    assert_eq!(pre_deploy, "carevault migrate up");
    // The image's CMD serves; railway.json must not replace it.
    assert!(deploy.get("startCommand").is_none(), "no startCommand: the image's CMD runs the server");

    let path = deploy["healthcheckPath"].as_str().expect("healthcheckPath");
    assert_eq!(path, "/api/v1/health/ready");
    // The route exists under the API's base path.
    let router = read("crates/carevault-api/src/lib.rs");
    assert!(router.contains("\"/api/v1\"") && router.contains("\"/health/ready\""), "the router serves {path}");
    assert!(deploy["healthcheckTimeout"].as_u64().is_some_and(|t| t >= 30), "a healthcheck timeout in seconds");
    assert!(matches!(deploy["restartPolicyType"].as_str(), Some("ON_FAILURE" | "ALWAYS")), "a restart policy");

    // The old deployment gets SIGTERM, then SIGKILL after drainingSeconds: longer than the
    // server's drain (REQUEST_TIMEOUT_SECONDS + DRAIN_GRACE, serve.rs).
    let request_timeout: u64 = variables()
        .into_iter()
        .find(|v| v.name == "REQUEST_TIMEOUT_SECONDS")
        .and_then(|v| v.default)
        .and_then(|d| d.parse().ok())
        .expect("REQUEST_TIMEOUT_SECONDS default");
    let serve = read("crates/carevault/src/serve.rs");
    let grace: u64 = serve
        .split("const DRAIN_GRACE: Duration = Duration::from_secs(")
        .nth(1)
        .and_then(|rest| rest.split(')').next())
        .and_then(|n| n.parse().ok())
        .expect("DRAIN_GRACE in serve.rs");
    let draining = deploy["drainingSeconds"].as_u64().expect("drainingSeconds, a number");
    assert!(draining > request_timeout + grace, "drainingSeconds {draining} <= {request_timeout} + {grace}");
}

/// The Dockerfile's instructions: (stage index, keyword, arguments), continuation lines joined,
/// comments dropped.
fn dockerfile() -> Vec<(usize, String, String)> {
    let text = read("Dockerfile");
    let mut instructions = Vec::new();
    let mut current = String::new();
    let mut stage = 0;
    for line in text.lines() {
        let trimmed = line.trim();
        if current.is_empty() && (trimmed.is_empty() || trimmed.starts_with('#')) {
            continue;
        }
        if let Some(continued) = trimmed.strip_suffix('\\') {
            current.push_str(continued);
            current.push(' ');
            continue;
        }
        current.push_str(trimmed);
        let (keyword, arguments) = current.split_once(char::is_whitespace).unwrap_or((&current, ""));
        let keyword = keyword.to_ascii_uppercase();
        if keyword == "FROM" {
            stage += 1;
        }
        let arguments = arguments.split_whitespace().collect::<Vec<_>>().join(" ");
        instructions.push((stage, keyword, arguments));
        current.clear();
    }
    assert!(current.is_empty(), "the Dockerfile ends inside a continued line");
    instructions
}

/// The `ENV NAME=value` settings of the runtime (last) stage.
fn image_env() -> BTreeMap<String, String> {
    let instructions = dockerfile();
    let last = instructions.iter().map(|(stage, ..)| *stage).max().expect("a FROM");
    instructions
        .iter()
        .filter(|(stage, keyword, _)| *stage == last && keyword == "ENV")
        .flat_map(|(_, _, arguments)| {
            arguments.split_whitespace().map(|pair| {
                let (name, value) = pair.split_once('=').unwrap_or_else(|| panic!("ENV {pair}: use NAME=value"));
                (name.to_owned(), value.trim_matches('"').to_owned())
            })
        })
        .collect()
}

#[test]
fn the_dockerfile_builds_a_small_non_root_image_that_requires_database_url() {
    let instructions = dockerfile();
    let stages: Vec<&str> =
        instructions.iter().filter(|(_, k, _)| k == "FROM").map(|(_, _, arguments)| arguments.as_str()).collect();
    assert_eq!(stages.len(), 2, "multi-stage: a builder and the runtime");
    // The builder's toolchain is the workspace's rust-version.
    let rust_version = read("Cargo.toml")
        .lines()
        .find_map(|l| l.strip_prefix("rust-version = ").map(|v| v.trim_matches('"').to_owned()))
        .expect("rust-version in Cargo.toml");
    assert_eq!(stages[0], format!("rust:{rust_version}-bookworm AS builder"));
    assert_eq!(stages[1], "debian:bookworm-slim");

    let in_stage = |stage: usize, keyword: &str| -> Vec<String> {
        instructions.iter().filter(|(s, k, _)| *s == stage && k == keyword).map(|(_, _, a)| a.clone()).collect()
    };
    assert!(
        in_stage(1, "RUN").iter().any(|r| r.contains("cargo build --release --locked -p carevault")),
        "the builder builds the locked release binary"
    );
    // The runtime installs nothing but the CA certificates.
    let runtime_runs = in_stage(2, "RUN").join(" && ");
    let installed: Vec<&str> = runtime_runs
        .split("apt-get install")
        .skip(1)
        .flat_map(|rest| rest.split("&&").next().unwrap_or("").split_whitespace())
        .filter(|word| !word.starts_with('-'))
        .collect();
    assert_eq!(installed, ["ca-certificates"], "{runtime_runs}");
    assert!(runtime_runs.contains("--no-install-recommends") && runtime_runs.contains("rm -rf /var/lib/apt/lists"));
    assert!(
        in_stage(2, "COPY")
            .iter()
            .any(|c| c.starts_with("--from=builder ") && c.ends_with(" /usr/local/bin/carevault")),
        "the binary comes from the builder"
    );

    // A non-root user, created with the uid it runs as.
    let users = in_stage(2, "USER");
    let user = users.last().expect("USER in the runtime stage");
    let uid = user.split(':').next().expect("a uid");
    assert!(!matches!(uid, "root" | "0"), "runs as {user}");
    assert!(runtime_runs.contains(&format!("useradd --system --uid {uid} ")), "the user {uid} is created");
    let last_user_at = instructions.iter().rposition(|(_, k, _)| k == "USER").expect("USER");
    assert!(!instructions[last_user_at..].iter().any(|(_, k, _)| k == "RUN"), "nothing runs as root after USER");

    // The environment of the container.
    let env = image_env();
    assert_eq!(env.get("CAREVAULT_EMBEDDED").map(String::as_str), Some("0"));
    assert_eq!(env.get("ENVIRONMENT").map(String::as_str), Some("production"));
    let port = env.get("PORT").expect("ENV PORT");
    assert_eq!(in_stage(2, "EXPOSE"), std::slice::from_ref(port), "EXPOSE the port the server listens on");
    // Every image-scope variable of the table is set here; nothing else but PORT/ENVIRONMENT.
    for name in names_in_scope("image") {
        assert!(env.contains_key(&name), "the Dockerfile sets {name}");
    }
    let known: BTreeSet<String> = variables().into_iter().map(|v| v.name).collect();
    for name in env.keys() {
        assert!(known.contains(name), "ENV {name} is not a carevault variable");
        assert!(
            !name.contains("URL") && !name.contains("SECRET") && !name.contains("TOKEN"),
            "ENV {name}: URLs and secrets never go into the image"
        );
    }

    let healthcheck = in_stage(2, "HEALTHCHECK");
    let healthcheck = healthcheck.first().expect("HEALTHCHECK");
    let exec = healthcheck.split_once("CMD ").expect("HEALTHCHECK ... CMD").1;
    let exec: Vec<String> = serde_json::from_str(exec).expect("HEALTHCHECK CMD in exec form");
    assert_eq!(exec, ["carevault", "healthcheck"]);
    let cmd: Vec<String> = serde_json::from_str(in_stage(2, "CMD").last().expect("CMD")).expect("CMD in exec form");
    assert_eq!(cmd, ["carevault", "serve"]);
    assert!(in_stage(2, "ENTRYPOINT").is_empty(), "no ENTRYPOINT: an overriding command replaces CMD whole");
}

#[test]
fn the_build_context_keeps_what_the_build_reads_and_drops_the_rest() {
    let ignored: Vec<String> = read(".dockerignore")
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| l.trim_end_matches('/').to_owned())
        .collect();
    for name in ["target", ".git"] {
        assert!(ignored.iter().any(|i| i == name), ".dockerignore drops {name}");
    }
    // The build compiles crates/, reads Cargo.toml and Cargo.lock, and includes docs/MODEL_USAGE.md
    // into carevault-db's rustdoc.
    assert!(read("crates/carevault-db/src/lib.rs").contains("include_str!(\"../../../docs/MODEL_USAGE.md\")"));
    for needed in ["crates", "docs", "Cargo.toml", "Cargo.lock"] {
        assert!(!ignored.iter().any(|i| i == needed || i == "*" || i == "**"), ".dockerignore keeps {needed}");
    }
}

#[test]
fn the_readme_configuration_section_names_every_variable() {
    let readme = read("README.md");
    let start = readme
        .lines()
        .position(|l| l.starts_with("## ") && l.contains("Configuration"))
        .expect("README.md has a ## Configuration section");
    let section: Vec<&str> = readme.lines().skip(start + 1).take_while(|l| !l.starts_with("## ")).collect::<Vec<_>>();
    let section = section.join("\n");
    for name in names_in_scope("service") {
        assert!(section.contains(&format!("`{name}`")), "README's configuration section names `{name}`");
    }
    // Its table rows give the table's defaults: `| `NAME` | `default` or unset | meaning |`.
    for variable in variables() {
        let Some(row) = section.lines().find(|l| l.starts_with(&format!("| `{}` |", variable.name))) else { continue };
        let cell = row.split('|').nth(2).map(str::trim).unwrap_or_default();
        let expected = variable.default.as_ref().map_or("unset".to_string(), |d| format!("`{d}`"));
        assert_eq!(cell, expected, "README's default of {}", variable.name);
    }
    // The local-only ones are documented in the README too (where the embedded data lives).
    for name in names_in_scope("local") {
        assert!(readme.contains(&format!("`{name}`")), "README names `{name}`");
    }
    // The image's own setting is documented with the deployment.
    let railway_doc = read("docs/RAILWAY_SETUP.md");
    for name in names_in_scope("image") {
        assert!(railway_doc.contains(&format!("`{name}")), "docs/RAILWAY_SETUP.md names `{name}`");
    }
}

#[test]
fn variables_read_outside_the_config_module_are_read_where_the_table_says() {
    // The unit tests of src/config/variables.rs prove the table matches what src/config reads,
    // except these.
    let main = read("crates/carevault/src/main.rs");
    assert!(main.contains("\"LOG_LEVEL\""), "main.rs reads LOG_LEVEL");
    let paths = read("crates/carevault-pg/src/paths.rs");
    for name in names_in_scope("local") {
        assert!(paths.contains(&format!("\"{name}\"")), "carevault-pg reads {name}");
    }
}

/// The binary with the image's environment (the Dockerfile's ENV), no database URL, and a data
/// directory of its own to prove that nothing was started or created.
fn in_container(scratch: &ScratchDir, args: &[&str], extra: &[(&str, &str)]) -> (bool, String) {
    let mut command = carevault();
    // Should the refusal ever be missing, the embedded default fails fast instead of starting a
    // cluster: no PostgreSQL is found.
    command
        .args(args)
        .env("CAREVAULT_DATA_DIR", scratch.path().join("data"))
        .env("CAREVAULT_PG_BIN", scratch.path().join("no-postgres"));
    for (name, value) in image_env() {
        command.env(name, value);
    }
    for (name, value) in extra {
        command.env(name, value);
    }
    let output = run(command, Duration::from_secs(60));
    assert!(output.stdout.is_empty(), "{args:?} printed {:?}", String::from_utf8_lossy(&output.stdout));
    (output.status.success(), String::from_utf8_lossy(&output.stderr).into_owned())
}

#[test]
fn the_container_without_database_url_exits_with_a_message_naming_it() {
    let scratch = ScratchDir::new("container");
    // A production setup complete but for the database: the URL is the only problem.
    let complete = [
        ("OIDC_ISSUER_URL", "https://idp.example.com"),
        ("OIDC_CLIENT_ID", "carevault"),
        ("ALLOWED_ORIGINS", "https://app.example.com"),
    ];
    let none: &[(&str, &str)] = &[];
    let cases = [
        (&["serve"][..], &complete[..]),
        (&["serve"], none),
        (&["migrate", "up"], none),
        (&["migrate", "status"], none),
        (&["tenant", "list"], none),
        (&["doctor"], none),
    ];
    for (args, extra) in cases {
        let (success, stderr) = in_container(&scratch, args, extra);
        assert!(!success, "{args:?} must fail without DATABASE_URL: {stderr}");
        assert!(
            stderr.contains("DATABASE_URL is required") && stderr.contains("CAREVAULT_EMBEDDED=0"),
            "{args:?}: {stderr}"
        );
        assert!(!stderr.contains("embedded PostgreSQL is running"), "{args:?} started nothing: {stderr}");
    }
    assert!(!scratch.path().join("data").exists(), "no embedded cluster was created");

    // With CAREVAULT_EMBEDDED=1 the same command would use the embedded default: the refusal
    // comes from the image's setting (checked without starting anything: a bad value is refused).
    let (success, stderr) = in_container(&scratch, &["migrate", "up"], &[("CAREVAULT_EMBEDDED", "maybe")]);
    assert!(!success);
    assert!(stderr.contains("CAREVAULT_EMBEDDED must be 0"), "{stderr}");
}
