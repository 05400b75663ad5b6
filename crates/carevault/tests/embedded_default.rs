//! The embedded default end to end: no `DATABASE_URL`, a data directory of its own.

use std::process::{Command, Output};

use carevault_testdb::{ScratchDir, is_running};

/// Runs the binary with no `DATABASE_URL` and the data directory in `scratch`.
fn carevault(scratch: &ScratchDir, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_carevault"))
        .args(args)
        .env_remove("DATABASE_URL")
        .env("CAREVAULT_DATA_DIR", scratch.path())
        .output()
        .expect("running the carevault binary")
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn migrate_up_on_the_embedded_default_persists_and_stops_the_cluster_it_started() {
    let scratch = ScratchDir::new("embedded");
    let data_dir = scratch.path().join("pg18");

    let up = carevault(&scratch, &["migrate", "up"]);
    assert!(up.status.success(), "{}", stderr(&up));
    assert!(data_dir.join("PG_VERSION").is_file(), "the cluster was created under CAREVAULT_DATA_DIR");
    assert!(!is_running(&data_dir), "the cluster this process started is stopped again");

    // The data persists: a second process finds the schema at head.
    let status = carevault(&scratch, &["migrate", "status", "--json"]);
    assert!(status.status.success(), "{}", stderr(&status));
    let json: serde_json::Value = serde_json::from_slice(&status.stdout).expect("status --json is JSON");
    assert_eq!(json["current_version"], json["head_version"], "{json}");
    assert!(!is_running(&data_dir));
}

#[test]
fn a_machine_without_python_is_told_the_fix() {
    let scratch = ScratchDir::new("nopython");
    let output = Command::new(env!("CARGO_BIN_EXE_carevault"))
        .args(["migrate", "up"])
        .env_clear()
        .env("PATH", "/nonexistent")
        .env("HOME", scratch.path())
        .env("CAREVAULT_CACHE_DIR", scratch.path().join("cache"))
        .env("CAREVAULT_DATA_DIR", scratch.path().join("data"))
        .output()
        .expect("running the carevault binary");
    assert!(!output.status.success());
    let message = stderr(&output);
    for fix in ["python3", "pip", "apt-get install python3-pip", "CAREVAULT_PG_BIN"] {
        assert!(message.contains(fix), "names {fix:?}: {message}");
    }
}
