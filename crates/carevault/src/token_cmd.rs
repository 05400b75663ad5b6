//! `carevault token mint`: HS256 development tokens, alone on stdout. Refused in production.

use std::time::Duration;

use anyhow::{anyhow, bail};
use carevault_api::Environment;
use carevault_api::auth::mint_dev_token;
use carevault_db::TenantId;
use carevault_pg::Paths;

use crate::cli::TokenCommand;
use crate::{config, dev_secret};

/// Mints a token. Works offline: the tenant is not looked up (the server refuses a token of an
/// unknown or inactive tenant with 403 AUTH_007).
pub fn run(command: TokenCommand, database_url: Option<&str>) -> anyhow::Result<()> {
    let TokenCommand::Mint { tenant, sub, ttl, email } = command;
    if config::environment(&crate::env_var)? == Environment::Production {
        bail!(
            "token mint is refused in production (ENVIRONMENT=production): development tokens are disabled there; \
             get tokens from your identity provider"
        );
    }
    let (environment, mut auth) = config::auth_config(&crate::env_var)?;
    let tenant = TenantId::parse(tenant.trim()).map_err(|_| {
        anyhow!("--tenant {tenant:?} is not a tenant id (a UUID, as printed by `carevault tenant create`)")
    })?;
    if auth.hs256_secret.is_none() {
        if database_url.is_some() || environment != Environment::Development {
            bail!(
                "JWT_HS256_SECRET is not set: set it to the secret the server uses (at least 32 bytes, e.g. \
                 `openssl rand -hex 32`); without DATABASE_URL, in development, the embedded default's generated \
                 secret is used"
            );
        }
        auth.hs256_secret = Some(dev_secret::load_or_create(&Paths::from_env()?.data_dir)?);
    }
    let token = mint_dev_token(&auth, &tenant.to_string(), &sub, email.as_deref(), Duration::from_secs(ttl))
        .map_err(|e| anyhow!("cannot mint the token: {}", e.to_string().trim_start_matches("malformed token: ")))?;
    println!("{token}");
    Ok(())
}
