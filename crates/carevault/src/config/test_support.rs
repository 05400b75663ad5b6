//! Helpers of the configuration tests: an environment given as a list, and the problems found.

use std::collections::HashMap;

use super::vars::ConfigError;
use super::{ServeConfig, serve_config};

/// A secret of the minimum length (32 bytes).
pub const SECRET: &str = "0123456789abcdef0123456789abcdef";

/// A complete, valid production environment.
pub const PRODUCTION_OK: &[(&str, &str)] = &[
    ("ENVIRONMENT", "production"),
    ("DATABASE_URL", "postgres://u:p@db/carevault"),
    ("ALLOWED_ORIGINS", "https://app.example.com, https://admin.example.com"),
    ("OIDC_ISSUER_URL", "https://idp.example.com"),
    ("OIDC_CLIENT_ID", "carevault"),
    ("TENANT_CONTEXT_KEY", "prod-1:000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f"),
    ("AUDIT_SIGNING_KEY", "0707070707070707070707070707070707070707070707070707070707070707"),
    ("AUDIT_CHECKPOINT_DIR", "/var/lib/carevault/audit-checkpoints"),
];

/// The lookup of an environment holding exactly `vars`.
pub fn lookup(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> + use<> {
    let map: HashMap<String, String> = vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    move |name| map.get(name).cloned()
}

/// [`serve_config`] on `vars`.
pub fn serve(vars: &[(&str, &str)], listen: Option<&str>) -> Result<ServeConfig, ConfigError> {
    serve_config(&lookup(vars), listen)
}

/// The problems [`serve_config`] finds in `vars` (panics when it finds none).
pub fn problems(vars: &[(&str, &str)]) -> Vec<String> {
    serve(vars, None).expect_err("refused").0
}

/// Whether one problem contains every one of `words`.
pub fn mentions(problems: &[String], words: &[&str]) -> bool {
    problems.iter().any(|p| words.iter().all(|w| p.contains(w)))
}

/// [`PRODUCTION_OK`] with `changes` applied; an empty value removes the variable.
pub fn production_with(changes: &[(&'static str, &'static str)]) -> Vec<(&'static str, &'static str)> {
    let mut vars: Vec<(&str, &str)> =
        PRODUCTION_OK.iter().filter(|(k, _)| !changes.iter().any(|(c, _)| c == k)).copied().collect();
    vars.extend(changes.iter().filter(|(_, v)| !v.is_empty()));
    vars
}
