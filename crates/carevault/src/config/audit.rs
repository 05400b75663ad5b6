//! The audit chain's settings: how often the server seals and signs, the signing key and where
//! checkpoints are kept outside the database.

use std::path::PathBuf;
use std::time::Duration;

use carevault_db::Environment;
use carevault_db::audit_chain::AuditSigningKey;

use super::vars::{ConfigError, Unit, Vars};

/// The default of `AUDIT_SEAL_INTERVAL_SECONDS`: a committed audit row is chained within about
/// this long (plus the pass).
pub const DEFAULT_SEAL_INTERVAL: Duration = Duration::from_secs(1);
/// The default of `AUDIT_CHECKPOINT_INTERVAL_SECONDS`: a change of history reaches a signed
/// checkpoint within about this long.
pub const DEFAULT_CHECKPOINT_INTERVAL: Duration = Duration::from_secs(60);

/// `AUDIT_*`.
#[derive(Clone)]
pub struct AuditConfig {
    /// `AUDIT_SEAL_INTERVAL_SECONDS`; `None` (0): the server never seals, `carevault audit seal`
    /// runs on a schedule instead.
    pub seal_interval: Option<Duration>,
    /// `AUDIT_CHECKPOINT_INTERVAL_SECONDS`; `None` (0): the server signs no checkpoint.
    pub checkpoint_interval: Option<Duration>,
    /// `AUDIT_SIGNING_KEY`; required in production, otherwise generated into the data
    /// directory when unset.
    pub signing_key: Option<AuditSigningKey>,
    /// `AUDIT_CHECKPOINT_DIR`; required in production, otherwise `<data dir>/audit-checkpoints`
    /// when unset.
    pub checkpoint_dir: Option<PathBuf>,
}

impl std::fmt::Debug for AuditConfig {
    // The key's Debug shows its id only.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditConfig")
            .field("seal_interval", &self.seal_interval)
            .field("checkpoint_interval", &self.checkpoint_interval)
            .field("signing_key", &self.signing_key)
            .field("checkpoint_dir", &self.checkpoint_dir)
            .finish()
    }
}

/// The audit settings alone (for the `audit` commands).
pub fn audit_config(lookup: &dyn Fn(&str) -> Option<String>) -> Result<AuditConfig, ConfigError> {
    let mut vars = Vars::new(lookup);
    let environment = vars.environment();
    let config = audit_with(&mut vars, environment);
    vars.finish(config)
}

pub(super) fn audit_with(vars: &mut Vars<'_>, environment: Environment) -> AuditConfig {
    let interval = |vars: &mut Vars<'_>, name, default, max| {
        Some(vars.duration(name, Unit::Seconds, default, 0, max)).filter(|d| !d.is_zero())
    };
    let seal_interval = interval(vars, "AUDIT_SEAL_INTERVAL_SECONDS", DEFAULT_SEAL_INTERVAL, 3_600);
    let checkpoint_interval = interval(vars, "AUDIT_CHECKPOINT_INTERVAL_SECONDS", DEFAULT_CHECKPOINT_INTERVAL, 86_400);
    let production = environment == Environment::Production;
    let signing_key = match vars.secret("AUDIT_SIGNING_KEY").map(|text| AuditSigningKey::parse(&text)) {
        Some(Ok(key)) => Some(key),
        Some(Err(problem)) => {
            vars.problem(format!("AUDIT_SIGNING_KEY {problem}: the Ed25519 key's seed, e.g. $(openssl rand -hex 32)"));
            None
        }
        None if production => {
            vars.problem(
                "AUDIT_SIGNING_KEY is required in production: set it to 64 hex digits (e.g. $(openssl rand -hex 32)), \
                 kept where the database's owner cannot read it; `carevault audit public-key` prints what \
                 verifiers need (docs/AUDIT_FORMAT.md)",
            );
            None
        }
        None => None,
    };
    let checkpoint_dir = vars.get("AUDIT_CHECKPOINT_DIR").map(PathBuf::from);
    if checkpoint_dir.is_none() && production {
        vars.problem(
            "AUDIT_CHECKPOINT_DIR is required in production: a directory the database's owner cannot write (a \
             volume of the service, not of the database), where signed checkpoints are kept (docs/THREAT_MODEL.md)",
        );
    }
    AuditConfig { seal_interval, checkpoint_interval, signing_key, checkpoint_dir }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{lookup, mentions};
    use super::*;

    fn audit(vars: &[(&str, &str)]) -> Result<AuditConfig, ConfigError> {
        audit_config(&lookup(vars))
    }

    #[test]
    fn defaults_outside_production_and_requirements_in_it() {
        let config = audit(&[]).expect("valid");
        assert_eq!(config.seal_interval, Some(DEFAULT_SEAL_INTERVAL));
        assert_eq!(config.checkpoint_interval, Some(DEFAULT_CHECKPOINT_INTERVAL));
        assert!(config.signing_key.is_none() && config.checkpoint_dir.is_none());
        let off = audit(&[("AUDIT_SEAL_INTERVAL_SECONDS", "0"), ("AUDIT_CHECKPOINT_INTERVAL_SECONDS", "0")]).unwrap();
        assert_eq!((off.seal_interval, off.checkpoint_interval), (None, None));

        let refused = audit(&[("ENVIRONMENT", "production")]).expect_err("both required");
        assert!(mentions(&refused.0, &["AUDIT_SIGNING_KEY is required in production"]), "{:?}", refused.0);
        assert!(mentions(&refused.0, &["AUDIT_CHECKPOINT_DIR is required in production"]), "{:?}", refused.0);
        let key = "ab".repeat(32);
        let set = audit(&[("ENVIRONMENT", "production"), ("AUDIT_SIGNING_KEY", &key), ("AUDIT_CHECKPOINT_DIR", "/cp")]);
        let set = set.expect("valid");
        assert_eq!(set.checkpoint_dir, Some(PathBuf::from("/cp")));
        assert!(!format!("{set:?}").contains(&key), "the key is never printed");
    }

    #[test]
    fn a_malformed_key_is_refused_without_being_repeated() {
        let refused = audit(&[("AUDIT_SIGNING_KEY", "Ann-Lee-secret")]).expect_err("refused");
        assert!(mentions(&refused.0, &["AUDIT_SIGNING_KEY must be 64 hexadecimal digits"]), "{:?}", refused.0);
        assert!(!refused.0.iter().any(|p| p.contains("Ann-Lee")), "{:?}", refused.0);
        let refused = audit(&[("AUDIT_CHECKPOINT_INTERVAL_SECONDS", "86401")]).expect_err("above a day");
        assert!(mentions(&refused.0, &["AUDIT_CHECKPOINT_INTERVAL_SECONDS", "0 to 86400"]), "{:?}", refused.0);
    }
}
