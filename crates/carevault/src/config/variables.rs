//! `config/variables.json`, the table of every variable the binary reads, against the code: the
//! names the configuration asks for, and the defaults it applies (which are the libraries').
//! `tests/deployment.rs` checks the same table against template.json, the Dockerfile and the
//! README.

use std::cell::RefCell;
use std::collections::BTreeSet;

use super::test_support::{mentions, serve};
use super::{auth_config, embedded_allowed, serve_config};

/// One row of the table.
struct Variable {
    name: String,
    default: Option<String>,
    scope: String,
}

fn variables() -> Vec<Variable> {
    let json: serde_json::Value =
        serde_json::from_str(include_str!("../../config/variables.json")).expect("variables.json is JSON");
    json["variables"]
        .as_array()
        .expect("a variables array")
        .iter()
        .map(|v| Variable {
            name: v["name"].as_str().expect("name").to_owned(),
            default: v["default"].as_str().map(str::to_owned),
            scope: v["scope"].as_str().expect("scope").to_owned(),
        })
        .collect()
}

#[test]
fn the_variable_table_lists_exactly_what_the_configuration_reads() {
    // Record every name the configuration code asks for, on the paths that read the most:
    // no database URL (reads CAREVAULT_EMBEDDED) and production (every production rule).
    let asked = RefCell::new(BTreeSet::new());
    for environment in ["development", "production"] {
        let record = |name: &str| {
            asked.borrow_mut().insert(name.to_owned());
            (name == "ENVIRONMENT").then(|| environment.to_owned())
        };
        let _ = serve_config(&record, None);
        let _ = embedded_allowed(&record);
        let _ = auth_config(&record);
    }
    let asked = asked.into_inner();
    let table = variables();
    // Read elsewhere: LOG_LEVEL by main.rs (logging starts before configuration is read), the
    // local ones by carevault-pg's Paths (tests/deployment.rs checks both).
    let elsewhere = |v: &Variable| v.name == "LOG_LEVEL" || v.scope == "local";
    let listed: BTreeSet<String> = table.iter().filter(|v| !elsewhere(v)).map(|v| v.name.clone()).collect();
    assert_eq!(listed, asked, "config/variables.json and the names the config module reads");
    for v in &table {
        assert!(matches!(v.scope.as_str(), "service" | "image" | "local"), "{}: scope {}", v.name, v.scope);
    }
}

#[test]
fn the_variable_table_defaults_are_the_applied_defaults() {
    // Setting a variable to its listed default changes nothing: the table states the libraries'
    // defaults (PoolConfig, ApiConfig, AuthConfig), in each variable's unit.
    let unset = format!("{:?}", serve(&[], None).expect("valid"));
    let mut checked = 0;
    for v in variables() {
        if let Some(default) = &v.default {
            let set = serve(&[(v.name.as_str(), default.as_str())], None)
                .unwrap_or_else(|e| panic!("{}={default}: {e}", v.name));
            assert_eq!(format!("{set:?}"), unset, "{}={default} is not the default", v.name);
            checked += 1;
        }
    }
    assert!(checked >= 9, "only {checked} defaults checked");
    // And a different value does change something, so the comparison can see a wrong default.
    for (name, other) in [
        ("JWT_TENANT_CLAIM_NAME", "org"),
        ("JWT_MAX_LIFETIME_MINUTES", "61"),
        ("JWT_LEEWAY_SECONDS", "31"),
        ("JWKS_CACHE_TTL_SECONDS", "3601"),
        ("DB_POOL_SIZE", "11"),
        ("DB_ACQUIRE_TIMEOUT_MS", "2001"),
        ("DB_STATEMENT_CACHE", "false"),
        ("DB_POOLER", "transaction"),
        ("CALLER_CACHE_SECONDS", "6"),
        ("TENANT_CONTEXT_KEY", "other:000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f"),
        ("REQUEST_TIMEOUT_SECONDS", "31"),
        ("MAX_BODY_BYTES", "2048"),
        ("BATCH_REQUEST_TIMEOUT_SECONDS", "121"),
        ("BATCH_MAX_BODY_BYTES", "2048"),
        ("SEARCH_INDEX_INTERVAL_SECONDS", "31"),
        ("AUDIT_SEAL_INTERVAL_SECONDS", "2"),
        ("AUDIT_CHECKPOINT_INTERVAL_SECONDS", "61"),
        ("AUDIT_SIGNING_KEY", "0707070707070707070707070707070707070707070707070707070707070707"),
        ("AUDIT_CHECKPOINT_DIR", "/elsewhere"),
        ("HEADER_READ_TIMEOUT_SECONDS", "11"),
        ("WRITE_STALL_TIMEOUT_SECONDS", "31"),
        ("MAX_CONNECTIONS", "513"),
        ("RATE_LIMIT_USER_PER_MINUTE", "601"),
        ("RATE_LIMIT_TENANT_PER_MINUTE", "6001"),
    ] {
        assert_ne!(format!("{:?}", serve(&[(name, other)], None).expect("valid")), unset, "{name}");
    }
}

#[test]
fn a_refused_value_names_the_default_of_the_table() {
    // The message of a refused number or flag says which default applies instead.
    let mut checked = 0;
    for v in variables() {
        let Some(default) = &v.default else { continue };
        let Err(refused) = serve(&[(v.name.as_str(), "not-a-value")], None) else { continue };
        if mentions(&refused.0, &["unset it for the default"]) {
            // The message ends with the default: "2000" must not pass for "2".
            let expected = format!("unset it for the default {default}");
            assert!(
                refused.0.iter().any(|p| p.starts_with(&v.name) && p.ends_with(&expected)),
                "{}: {:?}",
                v.name,
                refused.0
            );
            checked += 1;
        }
    }
    assert_eq!(checked, 19, "the eighteen numbers and DB_STATEMENT_CACHE");
}
