//! Where the server's pools connect: `DATABASE_URL`, `APP_DATABASE_URL`,
//! `PLATFORM_DATABASE_URL`, or the embedded PostgreSQL when all three are unset and
//! `CAREVAULT_EMBEDDED` allows it.

use std::fmt;

use super::vars::{ConfigError, Vars};
use crate::redact::redact;

/// Where the server's two pools connect.
#[derive(Clone, PartialEq, Eq)]
pub enum DatabaseConfig {
    /// No `DATABASE_URL`, `APP_DATABASE_URL` or `PLATFORM_DATABASE_URL`: the embedded PostgreSQL,
    /// migrated at start, with the pools logged in as `carevault_api` / `carevault_ops`.
    Embedded,
    /// An external database. `owner` is `DATABASE_URL` (may be unset when both pool URLs are
    /// given); `app` and `platform` default to it.
    External {
        /// `DATABASE_URL`.
        owner: Option<String>,
        /// `APP_DATABASE_URL`, else `DATABASE_URL`.
        app: String,
        /// `PLATFORM_DATABASE_URL`, else `DATABASE_URL`.
        platform: String,
    },
}

impl fmt::Debug for DatabaseConfig {
    // Why by hand: the URLs may carry passwords.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DatabaseConfig::Embedded => f.write_str("Embedded"),
            DatabaseConfig::External { owner, app, platform } => f
                .debug_struct("External")
                .field("owner", &owner.as_deref().map(redact))
                .field("app", &redact(app))
                .field("platform", &redact(platform))
                .finish(),
        }
    }
}

/// Whether the embedded default may be used: `CAREVAULT_EMBEDDED` unset or `1` (development
/// machines), not when `0` (the container image sets it, so that a missing `DATABASE_URL` stops
/// the container with a message instead of starting an empty database inside it).
pub fn embedded_allowed(lookup: &dyn Fn(&str) -> Option<String>) -> Result<(), ConfigError> {
    let mut vars = Vars::new(lookup);
    embedded_with(&mut vars);
    vars.finish(())
}

/// The refusal of [`embedded_allowed`], as a problem on `vars`.
fn embedded_with(vars: &mut Vars<'_>) {
    match vars.get("CAREVAULT_EMBEDDED").as_deref() {
        None | Some("1" | "true") => {}
        Some("0" | "false") => vars.problem(
            "DATABASE_URL is required: CAREVAULT_EMBEDDED=0 (set by the container image) refuses the embedded \
             PostgreSQL, which is for development machines. Set DATABASE_URL to your PostgreSQL's owner URL, \
             postgres://user:password@host:5432/database",
        ),
        Some(other) => vars.problem(format!(
            "CAREVAULT_EMBEDDED must be 0 (require DATABASE_URL) or 1 (allow the embedded PostgreSQL), got {other:?}"
        )),
    }
}

/// The pools' URLs, their problems recorded on `vars`.
pub(super) fn database_with(vars: &mut Vars<'_>) -> DatabaseConfig {
    let owner = vars.get("DATABASE_URL");
    let app = vars.get("APP_DATABASE_URL");
    let platform = vars.get("PLATFORM_DATABASE_URL");
    for (name, url) in [("DATABASE_URL", &owner), ("APP_DATABASE_URL", &app), ("PLATFORM_DATABASE_URL", &platform)] {
        if let Some(url) = url
            && !(url.starts_with("postgres://") || url.starts_with("postgresql://"))
        {
            vars.problem(format!(
                "{name} must be a PostgreSQL URL (postgres://user:password@host:port/database), got {}",
                redact(url)
            ));
        }
    }
    match (owner, app, platform) {
        (None, None, None) => {
            embedded_with(vars);
            DatabaseConfig::Embedded
        }
        (owner @ Some(_), app, platform) => {
            let fallback = owner.clone().unwrap_or_default();
            DatabaseConfig::External {
                app: app.unwrap_or_else(|| fallback.clone()),
                platform: platform.unwrap_or(fallback),
                owner,
            }
        }
        (None, Some(app), Some(platform)) => DatabaseConfig::External { owner: None, app, platform },
        (None, app, _) => {
            let (set, unset, login) = if app.is_some() {
                ("APP_DATABASE_URL", "PLATFORM_DATABASE_URL", "carevault_ops")
            } else {
                ("PLATFORM_DATABASE_URL", "APP_DATABASE_URL", "carevault_api")
            };
            vars.problem(format!(
                "{set} is set but neither {unset} nor DATABASE_URL is: set {unset} too (the login role {login}), \
                 or DATABASE_URL for both pools"
            ));
            DatabaseConfig::Embedded
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::test_support::{lookup, mentions, problems, serve};

    #[test]
    fn pool_urls_are_derived_from_database_url() {
        let owner = "postgres://owner:pw@db/carevault";
        let app = "postgres://carevault_api:pw@db/carevault";
        let ops = "postgres://carevault_ops:pw@db/carevault";
        let config = serve(&[("DATABASE_URL", owner)], None).expect("valid");
        assert_eq!(
            config.database,
            DatabaseConfig::External { owner: Some(owner.into()), app: owner.into(), platform: owner.into() }
        );
        let config = serve(&[("DATABASE_URL", owner), ("APP_DATABASE_URL", app)], None).expect("valid");
        assert_eq!(
            config.database,
            DatabaseConfig::External { owner: Some(owner.into()), app: app.into(), platform: owner.into() }
        );
        let config = serve(&[("APP_DATABASE_URL", app), ("PLATFORM_DATABASE_URL", ops)], None).expect("valid");
        assert_eq!(config.database, DatabaseConfig::External { owner: None, app: app.into(), platform: ops.into() });
        // Empty counts as unset.
        assert_eq!(serve(&[("DATABASE_URL", "  ")], None).expect("valid").database, DatabaseConfig::Embedded);
        assert!(!format!("{:?}", serve(&[("DATABASE_URL", owner)], None).expect("valid")).contains("pw@"));
    }

    #[test]
    fn one_pool_url_alone_names_the_missing_one() {
        let found = problems(&[("APP_DATABASE_URL", "postgres://carevault_api@db/x")]);
        assert!(mentions(&found, &["PLATFORM_DATABASE_URL", "DATABASE_URL", "carevault_ops"]), "{found:?}");
        let found = problems(&[("PLATFORM_DATABASE_URL", "postgres://carevault_ops@db/x")]);
        assert!(mentions(&found, &["set APP_DATABASE_URL too", "carevault_api"]), "{found:?}");
    }

    #[test]
    fn a_url_that_is_not_postgresql_is_named_without_its_password() {
        for name in ["DATABASE_URL", "APP_DATABASE_URL", "PLATFORM_DATABASE_URL"] {
            let found = problems(&[("DATABASE_URL", "postgres://u@db/x"), (name, "mysql://u:hunter2@db/x")]);
            assert!(mentions(&found, &[name, "PostgreSQL URL"]), "{found:?}");
            assert!(!found.iter().any(|p| p.contains("hunter2")), "{found:?}");
        }
    }

    #[test]
    fn the_container_setting_requires_a_database_url() {
        let container = [("CAREVAULT_EMBEDDED", "0")];
        let found = problems(&container);
        assert!(mentions(&found, &["DATABASE_URL is required", "CAREVAULT_EMBEDDED=0", "postgres://"]), "{found:?}");
        let found = embedded_allowed(&lookup(&container)).expect_err("refused").0;
        assert!(mentions(&found, &["DATABASE_URL is required"]), "{found:?}");
        // With the production settings, the missing URL is one more problem, not hidden by the others.
        let found = problems(&[("ENVIRONMENT", "production"), ("CAREVAULT_EMBEDDED", "0")]);
        assert!(mentions(&found, &["DATABASE_URL is required"]), "{found:?}");
        assert!(mentions(&found, &["OIDC_ISSUER_URL"]), "{found:?}");
        // An empty DATABASE_URL is unset (an env file's `DATABASE_URL=`): still refused.
        assert!(mentions(&problems(&[("CAREVAULT_EMBEDDED", "0"), ("DATABASE_URL", " ")]), &["DATABASE_URL"]));
        // Any database URL satisfies it, including the two pool URLs without DATABASE_URL.
        let owner = "postgres://owner:pw@db/carevault";
        assert!(serve(&[("CAREVAULT_EMBEDDED", "0"), ("DATABASE_URL", owner)], None).is_ok());
        let pools = [
            ("CAREVAULT_EMBEDDED", "0"),
            ("APP_DATABASE_URL", "postgres://carevault_api:pw@db/carevault"),
            ("PLATFORM_DATABASE_URL", "postgres://carevault_ops:pw@db/carevault"),
        ];
        assert!(serve(&pools, None).is_ok());
        // Unset, 1 or true: the embedded default of development machines.
        for allowed in [&[][..], &[("CAREVAULT_EMBEDDED", "1")], &[("CAREVAULT_EMBEDDED", "true")]] {
            assert_eq!(serve(allowed, None).expect("allowed").database, DatabaseConfig::Embedded);
            assert!(embedded_allowed(&lookup(allowed)).is_ok());
        }
        let found = embedded_allowed(&lookup(&[("CAREVAULT_EMBEDDED", "no")])).expect_err("refused").0;
        assert!(mentions(&found, &["CAREVAULT_EMBEDDED must be 0", "\"no\""]), "{found:?}");
    }
}
