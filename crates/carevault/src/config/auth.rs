//! Token verification: `OIDC_*`, `JWT_*` and `JWKS_CACHE_TTL_SECONDS`. The defaults are
//! carevault-api's ([`AuthConfig::default`]); the production rules are here.

use carevault_api::Environment;
use carevault_api::auth::AuthConfig;

use super::vars::{ConfigError, Unit, Vars};

/// The token settings, checked by [`AuthConfig::validate`] and, in production, refusing HS256 and
/// requiring OIDC over https.
pub fn auth_config(lookup: &dyn Fn(&str) -> Option<String>) -> Result<(Environment, AuthConfig), ConfigError> {
    let mut vars = Vars::new(lookup);
    let environment = vars.environment();
    let auth = auth_with(&mut vars, environment);
    vars.finish((environment, auth))
}

/// [`auth_config`] for `environment`, its problems recorded on `vars`.
pub(super) fn auth_with(vars: &mut Vars<'_>, environment: Environment) -> AuthConfig {
    let default = AuthConfig::default();
    let config = AuthConfig {
        issuer: vars.get("OIDC_ISSUER_URL"),
        audience: vars.get("OIDC_CLIENT_ID"),
        hs256_secret: vars.secret("JWT_HS256_SECRET"),
        tenant_claim: vars.get("JWT_TENANT_CLAIM_NAME").unwrap_or(default.tenant_claim),
        max_lifetime: vars.duration("JWT_MAX_LIFETIME_MINUTES", Unit::Minutes, default.max_lifetime, 1, 7 * 24 * 60),
        leeway: vars.duration("JWT_LEEWAY_SECONDS", Unit::Seconds, default.leeway, 0, 600),
        jwks_ttl: vars.duration("JWKS_CACHE_TTL_SECONDS", Unit::Seconds, default.jwks_ttl, 1, 7 * 24 * 3600),
    };
    if environment == Environment::Production {
        production_rules(vars, &config);
    }
    // The production messages already cover a missing issuer or audience.
    let covered = environment == Environment::Production && (config.issuer.is_none() || config.audience.is_none());
    if let Err(problem) = config.validate()
        && !(covered && problem.starts_with("OIDC_"))
    {
        vars.problem(problem);
    }
    config
}

/// Production takes tokens from the identity provider only.
fn production_rules(vars: &mut Vars<'_>, config: &AuthConfig) {
    if config.hs256_secret.is_some() {
        vars.problem(
            "JWT_HS256_SECRET is set, but development tokens are refused in production: unset it and use your \
             identity provider (OIDC_ISSUER_URL, OIDC_CLIENT_ID)",
        );
    }
    if config.issuer.is_none() {
        vars.problem(
            "OIDC_ISSUER_URL is required in production: set it to your identity provider's issuer URL \
             (its discovery document is at <issuer>/.well-known/openid-configuration)",
        );
    }
    if config.audience.is_none() {
        vars.problem(
            "OIDC_CLIENT_ID is required in production: set it to the audience (`aud`) your identity provider \
             puts in the tokens for carevault",
        );
    }
    // The signing keys are fetched from the issuer: over plain HTTP anyone on the path could swap
    // them and mint tokens for every tenant.
    if config.issuer.as_deref().is_some_and(|issuer| !issuer.starts_with("https://")) {
        vars.problem("OIDC_ISSUER_URL must be an https:// URL in production: the signing keys are fetched from it");
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::config::test_support::{SECRET, lookup, mentions, problems, production_with, serve};

    #[test]
    fn production_refuses_hs256() {
        let found = problems(&production_with(&[("JWT_HS256_SECRET", SECRET)]));
        assert!(mentions(&found, &["JWT_HS256_SECRET", "production", "unset"]), "{found:?}");
    }

    #[test]
    fn production_requires_oidc() {
        let found = problems(&production_with(&[("OIDC_ISSUER_URL", ""), ("OIDC_CLIENT_ID", "")]));
        assert!(mentions(&found, &["OIDC_ISSUER_URL", "required in production"]), "{found:?}");
        assert!(mentions(&found, &["OIDC_CLIENT_ID", "required in production"]), "{found:?}");
        let found = problems(&production_with(&[("OIDC_CLIENT_ID", "")]));
        assert_eq!(found.len(), 1, "one message per problem: {found:?}");
        assert!(mentions(&found, &["OIDC_CLIENT_ID"]), "{found:?}");
        let found = problems(&production_with(&[("OIDC_ISSUER_URL", "http://idp.example.com")]));
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(mentions(&found, &["OIDC_ISSUER_URL", "https://"]), "{found:?}");
    }

    #[test]
    fn the_auth_subset_is_checked_alone() {
        let (environment, auth) = auth_config(&lookup(&[("JWT_HS256_SECRET", SECRET)])).expect("valid");
        assert_eq!(environment, Environment::Development);
        assert_eq!(auth.hs256_secret.as_deref(), Some(SECRET));
        let found = auth_config(&lookup(&[("ENVIRONMENT", "production"), ("JWT_HS256_SECRET", SECRET)]))
            .expect_err("refused")
            .0;
        assert!(mentions(&found, &["JWT_HS256_SECRET", "production"]), "{found:?}");
    }

    #[test]
    fn token_settings_are_read_in_their_units() {
        let config = serve(
            &[
                ("JWT_TENANT_CLAIM_NAME", "custom:tenant_id"),
                ("JWT_MAX_LIFETIME_MINUTES", "15"),
                ("JWT_LEEWAY_SECONDS", "0"),
                ("JWKS_CACHE_TTL_SECONDS", "60"),
                ("JWT_HS256_SECRET", SECRET),
            ],
            None,
        )
        .expect("valid");
        assert_eq!(config.auth.tenant_claim, "custom:tenant_id");
        assert_eq!(config.auth.max_lifetime, Duration::from_secs(15 * 60));
        assert_eq!(config.auth.leeway, Duration::ZERO);
        assert_eq!(config.auth.jwks_ttl, Duration::from_secs(60));
        assert_eq!(config.auth.hs256_secret.as_deref(), Some(SECRET));
    }
}
