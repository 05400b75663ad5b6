//! Everything `carevault serve` needs, read at once so that every problem is reported together.
//! The defaults are the libraries' ([`PoolConfig::default`], [`ApiConfig::default`],
//! [`carevault_api::auth::AuthConfig::default`]); the accepted ranges are the binary's.

use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

use carevault_api::auth::AuthConfig;
use carevault_api::{ApiConfig, Environment, JitProvisioning};
use carevault_db::tenant_context::TenantContextKey;
use carevault_db::{PoolConfig, Pooler};

use super::audit::{AuditConfig, audit_with};
use super::auth::auth_with;
use super::database::{DatabaseConfig, database_with};
use super::limits::{connections_with, rate_limits_with};
use super::listen::listen_with;
use super::origins::{origins_with, proxies_with};
use super::vars::{ConfigError, Unit, Vars};

/// `PLATFORM_API_TOKEN`'s minimum length in bytes.
const MIN_PLATFORM_TOKEN_BYTES: usize = 32;

/// Everything `carevault serve` needs, validated.
#[derive(Clone)]
pub struct ServeConfig {
    /// `ENVIRONMENT`.
    pub environment: Environment,
    /// `--listen`, else `0.0.0.0:$PORT`, else [`super::listen::DEFAULT_LISTEN`].
    pub listen: SocketAddr,
    /// The pools' URLs.
    pub database: DatabaseConfig,
    /// `DB_POOL_SIZE`, `DB_ACQUIRE_TIMEOUT_MS`, `DB_STATEMENT_CACHE`, `DB_POOLER`.
    pub pool: PoolConfig,
    /// The HTTP layer's settings.
    pub api: ApiConfig,
    /// Token verification. On the embedded default in development without `JWT_HS256_SECRET`,
    /// `serve` fills in the generated development secret.
    pub auth: AuthConfig,
    /// `SEARCH_INDEX_INTERVAL_SECONDS`: how often the server brings the per-tenant search
    /// indexes in line (`carevault_db::search_index`) when it has the owner's URL; `None` (0):
    /// never, `carevault search reconcile` runs on a schedule instead.
    pub search_index_interval: Option<Duration>,
    /// The audit chain's settings (`AUDIT_*`).
    pub audit: AuditConfig,
    /// `TENANT_CONTEXT_KEY`: the key that proves the tenant context to the database. Required in
    /// production; otherwise, when unset, `serve` generates one and keeps it in the data
    /// directory.
    pub tenant_context_key: Option<TenantContextKey>,
}

/// The default of `SEARCH_INDEX_INTERVAL_SECONDS`: a tenant that crosses the threshold waits at
/// most this long (plus the build) for its index, searched exactly meanwhile.
pub const DEFAULT_SEARCH_INDEX_INTERVAL: Duration = Duration::from_secs(30);

impl fmt::Debug for ServeConfig {
    // Why by hand: ApiConfig's derived Debug would print PLATFORM_API_TOKEN.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServeConfig")
            .field("environment", &self.environment)
            .field("listen", &self.listen)
            .field("database", &self.database)
            .field("pool", &self.pool)
            .field("allowed_origins", &self.api.allowed_origins)
            .field("trusted_proxies", &self.api.trusted_proxies)
            .field("search_index_interval", &self.search_index_interval)
            .field("audit", &self.audit)
            .field("request_timeout", &self.api.request_timeout)
            .field("max_body_bytes", &self.api.max_body_bytes)
            .field("batch_request_timeout", &self.api.batch_request_timeout)
            .field("batch_max_body_bytes", &self.api.batch_max_body_bytes)
            .field("platform_api", &self.api.platform_api_token.is_some())
            .field("connections", &self.api.connections)
            .field("rate_limits", &self.api.rate_limits)
            .field("jit_provisioning", &self.api.jit_provisioning)
            .field("caller_cache_ttl", &self.api.caller_cache_ttl)
            .field("auth", &self.auth)
            .field("tenant_context_key", &self.tenant_context_key)
            .finish()
    }
}

/// The whole server configuration. `listen` is the `--listen` argument.
pub fn serve_config(lookup: &dyn Fn(&str) -> Option<String>, listen: Option<&str>) -> Result<ServeConfig, ConfigError> {
    let mut vars = Vars::new(lookup);
    let environment = vars.environment();
    let listen = listen_with(&mut vars, listen);
    let database = database_with(&mut vars);
    let mut pool = pool_with(&mut vars);
    let api = api_with(&mut vars, environment);
    // No statement outlives the longest request it can serve.
    pool.statement_timeout = api.request_timeout.max(api.batch_request_timeout);
    let auth = auth_with(&mut vars, environment);
    let search_index_interval =
        vars.duration("SEARCH_INDEX_INTERVAL_SECONDS", Unit::Seconds, DEFAULT_SEARCH_INDEX_INTERVAL, 0, 86_400);
    let search_index_interval = (!search_index_interval.is_zero()).then_some(search_index_interval);
    let audit = audit_with(&mut vars, environment);
    let tenant_context_key = tenant_context_key_with(&mut vars, environment);
    vars.finish(ServeConfig {
        environment,
        listen,
        database,
        pool,
        api,
        auth,
        search_index_interval,
        audit,
        tenant_context_key,
    })
}

/// `TENANT_CONTEXT_KEY`: `<kid>:<64 hex>`, required in production.
fn tenant_context_key_with(vars: &mut Vars<'_>, environment: Environment) -> Option<TenantContextKey> {
    match vars.secret("TENANT_CONTEXT_KEY").map(|text| TenantContextKey::parse(&text)) {
        Some(Ok(key)) => Some(key),
        Some(Err(problem)) => {
            vars.problem(format!("TENANT_CONTEXT_KEY: {problem}"));
            None
        }
        None if environment == Environment::Production => {
            vars.problem(
                "TENANT_CONTEXT_KEY is required in production: set it to <kid>:<64 hex> (e.g. \
                 prod-1:$(openssl rand -hex 32)) and add it to the database with `carevault context-key add` \
                 (docs/THREAT_MODEL.md, \"A tenant context the database verifies\")",
            );
            None
        }
        None => None,
    }
}

/// `DB_POOL_SIZE`, `DB_ACQUIRE_TIMEOUT_MS`, `DB_STATEMENT_CACHE` and `DB_POOLER`.
fn pool_with(vars: &mut Vars<'_>) -> PoolConfig {
    let default = PoolConfig::default();
    let max_connections = vars.number("DB_POOL_SIZE", u64::from(default.max_connections), 1, 1000);
    PoolConfig {
        max_connections: u32::try_from(max_connections).unwrap_or(default.max_connections),
        acquire_timeout: vars.duration(
            "DB_ACQUIRE_TIMEOUT_MS",
            Unit::Milliseconds,
            default.acquire_timeout,
            1,
            600_000,
        ),
        // Off behind PgBouncer < 1.21 in transaction mode: queries are then sent as unnamed
        // statements.
        statement_cache: vars.flag("DB_STATEMENT_CACHE", default.statement_cache),
        pooler: pooler_with(vars, default.pooler),
        // Set from the request timeouts by `serve_config`.
        statement_timeout: default.statement_timeout,
    }
}

/// `DB_POOLER`: `none` or `transaction`.
fn pooler_with(vars: &mut Vars<'_>, default: Pooler) -> Pooler {
    let Some(text) = vars.get("DB_POOLER") else { return default };
    Pooler::parse(&text).unwrap_or_else(|| {
        let names: Vec<&str> = Pooler::ALL.iter().map(|p| p.as_str()).collect();
        vars.problem(format!(
            "DB_POOLER must be one of {} (transaction: behind PgBouncer in transaction mode), got {text:?}",
            names.join(", ")
        ));
        default
    })
}

/// The HTTP layer's settings: origins, proxies, limits (bodies, time, connections, rates) and the
/// platform API's token.
fn api_with(vars: &mut Vars<'_>, environment: Environment) -> ApiConfig {
    let default = ApiConfig::default();
    let allowed_origins = origins_with(vars, environment);
    let trusted_proxies = proxies_with(vars);
    let request_timeout = vars.duration("REQUEST_TIMEOUT_SECONDS", Unit::Seconds, default.request_timeout, 1, 3600);
    let max_body_bytes =
        vars.number("MAX_BODY_BYTES", u64::try_from(default.max_body_bytes).unwrap_or(u64::MAX), 1024, 1 << 30);
    let batch_request_timeout =
        vars.duration("BATCH_REQUEST_TIMEOUT_SECONDS", Unit::Seconds, default.batch_request_timeout, 1, 3600);
    let batch_max_body_bytes = vars.number(
        "BATCH_MAX_BODY_BYTES",
        u64::try_from(default.batch_max_body_bytes).unwrap_or(u64::MAX),
        1024,
        1 << 30,
    );
    let jit_provisioning = jit_with(vars, environment);
    let caller_cache_ttl = vars.duration("CALLER_CACHE_SECONDS", Unit::Seconds, default.caller_cache_ttl, 0, 300);
    let connections = connections_with(vars);
    let rate_limits = rate_limits_with(vars);
    let platform_api_token = vars.secret("PLATFORM_API_TOKEN");
    if platform_api_token.as_ref().is_some_and(|t| t.len() < MIN_PLATFORM_TOKEN_BYTES) {
        vars.problem(format!(
            "PLATFORM_API_TOKEN must be at least {MIN_PLATFORM_TOKEN_BYTES} bytes (e.g. `openssl rand -hex 32`), or \
             unset to disable the platform API"
        ));
    }
    ApiConfig {
        environment,
        allowed_origins,
        trusted_proxies,
        request_timeout,
        max_body_bytes: usize::try_from(max_body_bytes).unwrap_or(default.max_body_bytes),
        batch_request_timeout,
        batch_max_body_bytes: usize::try_from(batch_max_body_bytes).unwrap_or(default.batch_max_body_bytes),
        platform_api_token,
        connections,
        rate_limits,
        jit_provisioning,
        caller_cache_ttl,
    }
}

/// `JIT_PROVISIONING`: `off`, `on` or `domains`; unset, off in production and on elsewhere.
fn jit_with(vars: &mut Vars<'_>, environment: Environment) -> JitProvisioning {
    let default = JitProvisioning::default_for(environment);
    let Some(text) = vars.get("JIT_PROVISIONING") else { return default };
    JitProvisioning::parse(&text).unwrap_or_else(|| {
        let modes: Vec<&str> = JitProvisioning::ALL.iter().map(JitProvisioning::as_str).collect();
        vars.problem(format!(
            "JIT_PROVISIONING must be one of {}, got {text:?}; unset it for the default ({} in {})",
            modes.join(", "),
            default.as_str(),
            environment.as_str()
        ));
        default
    })
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::config::listen::DEFAULT_LISTEN;
    use crate::config::test_support::{PRODUCTION_OK, SECRET, mentions, problems, production_with, serve};

    #[test]
    fn an_empty_environment_gets_the_libraries_defaults() {
        let config = serve(&[], None).expect("an empty environment is a valid development setup");
        assert_eq!(config.environment, Environment::Development);
        assert_eq!(config.listen, DEFAULT_LISTEN);
        assert_eq!(config.database, DatabaseConfig::Embedded);
        assert_eq!(config.pool, PoolConfig::default());
        let api = ApiConfig::default();
        assert_eq!(config.api.environment, api.environment);
        assert_eq!(config.api.allowed_origins, api.allowed_origins);
        assert_eq!(config.api.trusted_proxies, api.trusted_proxies);
        assert_eq!(config.api.request_timeout, api.request_timeout);
        assert_eq!(config.api.max_body_bytes, api.max_body_bytes);
        assert_eq!(config.api.batch_request_timeout, api.batch_request_timeout);
        assert_eq!(config.api.batch_max_body_bytes, api.batch_max_body_bytes);
        assert_eq!(config.api.platform_api_token, api.platform_api_token);
        assert_eq!(config.api.connections, api.connections);
        assert_eq!(config.api.rate_limits, api.rate_limits);
        assert_eq!(config.api.jit_provisioning, api.jit_provisioning);
        // AuthConfig has no PartialEq; its Debug shows every field (the secret only as set or not).
        assert_eq!(format!("{:?}", config.auth), format!("{:?}", AuthConfig::default()));
        assert_eq!(config.auth.hs256_secret, None);
    }

    #[test]
    fn search_index_maintenance_runs_every_30_seconds_unless_0_turns_it_off() {
        assert_eq!(serve(&[], None).expect("valid").search_index_interval, Some(DEFAULT_SEARCH_INDEX_INTERVAL));
        let every_minute = serve(&[("SEARCH_INDEX_INTERVAL_SECONDS", "60")], None).expect("valid");
        assert_eq!(every_minute.search_index_interval, Some(Duration::from_secs(60)));
        let off = serve(&[("SEARCH_INDEX_INTERVAL_SECONDS", "0")], None).expect("valid");
        assert_eq!(off.search_index_interval, None);
        let refused = serve(&[("SEARCH_INDEX_INTERVAL_SECONDS", "86401")], None).expect_err("above a day");
        assert!(mentions(&refused.0, &["SEARCH_INDEX_INTERVAL_SECONDS", "0 to 86400"]), "{:?}", refused.0);
        let refused = serve(&[("AUDIT_SEAL_INTERVAL_SECONDS", "3601")], None).expect_err("above an hour");
        assert!(mentions(&refused.0, &["AUDIT_SEAL_INTERVAL_SECONDS", "0 to 3600"]), "{:?}", refused.0);
    }

    #[test]
    fn jit_provisioning_is_off_by_default_in_production_only_and_can_be_chosen() {
        assert_eq!(serve(&[], None).expect("valid").api.jit_provisioning, JitProvisioning::On);
        assert_eq!(serve(PRODUCTION_OK, None).expect("valid").api.jit_provisioning, JitProvisioning::Off);
        let mut chosen = PRODUCTION_OK.to_vec();
        chosen.push(("JIT_PROVISIONING", "domains"));
        assert_eq!(serve(&chosen, None).expect("valid").api.jit_provisioning, JitProvisioning::Domains);
        let refused = serve(&[("JIT_PROVISIONING", "yes")], None).expect_err("not a mode");
        assert!(
            mentions(&refused.0, &["JIT_PROVISIONING", "off, on, domains", "on in development"]),
            "{:?}",
            refused.0
        );
    }

    #[test]
    fn the_pooler_is_one_of_its_names() {
        assert_eq!(serve(&[], None).expect("valid").pool.pooler, Pooler::None);
        let behind = serve(&[("DB_POOLER", "transaction")], None).expect("valid");
        assert_eq!(behind.pool.pooler, Pooler::Transaction);
        let refused = serve(&[("DB_POOLER", "session")], None).expect_err("not a pooler mode");
        assert!(mentions(&refused.0, &["DB_POOLER", "none, transaction"]), "{:?}", refused.0);
    }

    #[test]
    fn the_tenant_context_key_is_required_in_production_and_checked_without_echo() {
        let found = problems(&production_with(&[("TENANT_CONTEXT_KEY", "")]));
        assert!(mentions(&found, &["TENANT_CONTEXT_KEY", "required in production", "context-key add"]), "{found:?}");
        let refused = "k:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdXY";
        let found = problems(&production_with(&[("TENANT_CONTEXT_KEY", refused)]));
        assert!(mentions(&found, &["TENANT_CONTEXT_KEY", "64 hexadecimal"]), "{found:?}");
        assert!(!found.iter().any(|p| p.contains("0123456789abcdef")), "{found:?}");
        assert!(serve(&[("TENANT_CONTEXT_KEY", "no colon")], None).is_err(), "refused outside production too");
        assert!(serve(&[], None).expect("valid").tenant_context_key.is_none(), "generated by serve when unset");
    }

    #[test]
    fn a_complete_production_setup_is_accepted() {
        let config = serve(PRODUCTION_OK, None).expect("valid");
        assert_eq!(config.environment, Environment::Production);
        assert_eq!(config.api.environment, Environment::Production);
        assert_eq!(config.api.allowed_origins, ["https://app.example.com", "https://admin.example.com"]);
    }

    #[test]
    fn every_problem_is_reported_at_once() {
        let found = problems(&[
            ("ENVIRONMENT", "production"),
            ("JWT_HS256_SECRET", SECRET),
            ("DB_POOL_SIZE", "many"),
            ("PORT", "http"),
        ]);
        for name in ["JWT_HS256_SECRET", "ALLOWED_ORIGINS", "OIDC_ISSUER_URL", "OIDC_CLIENT_ID", "DB_POOL_SIZE", "PORT"]
        {
            assert!(mentions(&found, &[name]), "{name} missing from {found:?}");
        }
        let message = ConfigError(found).to_string();
        assert!(message.starts_with("invalid configuration:\n  - "), "{message}");
    }

    #[test]
    fn bad_values_are_named_with_the_fix() {
        let cases: &[(&str, &str, &[&str])] = &[
            ("ENVIRONMENT", "prod", &["ENVIRONMENT", "development, staging or production", "\"prod\""]),
            ("DB_POOL_SIZE", "0", &["DB_POOL_SIZE", "from 1 to", "unset it for the default"]),
            ("DB_ACQUIRE_TIMEOUT_MS", "2s", &["DB_ACQUIRE_TIMEOUT_MS", "whole number"]),
            ("DB_STATEMENT_CACHE", "off", &["DB_STATEMENT_CACHE", "true or false"]),
            ("REQUEST_TIMEOUT_SECONDS", "-5", &["REQUEST_TIMEOUT_SECONDS", "whole number"]),
            ("MAX_BODY_BYTES", "1MB", &["MAX_BODY_BYTES", "whole number"]),
            ("JWT_MAX_LIFETIME_MINUTES", "0", &["JWT_MAX_LIFETIME_MINUTES", "from 1"]),
            ("JWT_LEEWAY_SECONDS", "x", &["JWT_LEEWAY_SECONDS"]),
            ("JWKS_CACHE_TTL_SECONDS", "0", &["JWKS_CACHE_TTL_SECONDS"]),
            ("BATCH_REQUEST_TIMEOUT_SECONDS", "0", &["BATCH_REQUEST_TIMEOUT_SECONDS"]),
            ("BATCH_MAX_BODY_BYTES", "12", &["BATCH_MAX_BODY_BYTES"]),
            ("JWT_HS256_SECRET", "short", &["JWT_HS256_SECRET", "32 bytes"]),
            ("PLATFORM_API_TOKEN", "short", &["PLATFORM_API_TOKEN", "32 bytes"]),
            ("TRUSTED_PROXIES", "10.0.0.0/8, nope", &["TRUSTED_PROXIES", "\"nope\""]),
            ("ALLOWED_ORIGINS", "https://app.example.com/", &["ALLOWED_ORIGINS", "trailing"]),
            ("OIDC_ISSUER_URL", "idp.example.com", &["OIDC_ISSUER_URL"]),
            ("OIDC_CLIENT_ID", "carevault", &["OIDC_ISSUER_URL"]),
            ("DATABASE_URL", "mysql://u:hunter2@db/x", &["DATABASE_URL", "PostgreSQL URL"]),
            ("APP_DATABASE_URL", "postgres://carevault_api@db/x", &["PLATFORM_DATABASE_URL", "DATABASE_URL"]),
        ];
        for (name, value, words) in cases {
            let found = problems(&[(name, value)]);
            assert!(mentions(&found, words), "{name}={value}: {found:?}");
        }
    }

    #[test]
    fn good_values_are_parsed() {
        let config = serve(
            &[
                ("ENVIRONMENT", "staging"),
                ("DB_POOL_SIZE", "25"),
                ("DB_ACQUIRE_TIMEOUT_MS", "500"),
                ("DB_STATEMENT_CACHE", "false"),
                ("REQUEST_TIMEOUT_SECONDS", "5"),
                ("MAX_BODY_BYTES", "65536"),
                ("BATCH_REQUEST_TIMEOUT_SECONDS", "300"),
                ("BATCH_MAX_BODY_BYTES", "67108864"),
                ("JWT_HS256_SECRET", SECRET),
                ("PLATFORM_API_TOKEN", SECRET),
                ("LOG_LEVEL", "debug"),
            ],
            None,
        )
        .expect("valid");
        assert_eq!(config.environment, Environment::Staging);
        assert_eq!(config.pool.max_connections, 25);
        assert_eq!(config.pool.acquire_timeout, Duration::from_millis(500));
        assert!(!config.pool.statement_cache);
        assert_eq!(config.api.request_timeout, Duration::from_secs(5));
        assert_eq!(config.api.max_body_bytes, 65536);
        assert_eq!(config.api.batch_request_timeout, Duration::from_secs(300));
        assert_eq!(config.api.batch_max_body_bytes, 67_108_864);
        assert_eq!(config.api.platform_api_token.as_deref(), Some(SECRET));
        // Debug never shows the secrets.
        let debug = format!("{config:?}");
        assert!(!debug.contains(SECRET), "{debug}");
    }
}
