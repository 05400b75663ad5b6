//! The server's configuration (DESIGN §7.1), read from the environment through a lookup closure
//! so that it can be tested without touching the process environment.
//!
//! Every problem is reported at once, each naming the variable and the fix. An empty variable
//! counts as unset (container env files often write `NAME=`).

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use carevault_api::auth::{self, AuthConfig};
use carevault_api::{ApiConfig, Environment};
use carevault_db::PoolConfig;

/// `--listen` when neither it nor `PORT` is given.
pub const DEFAULT_LISTEN: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 8080);

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
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use crate::database::redact;
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

/// Everything `carevault serve` needs, validated.
#[derive(Clone)]
pub struct ServeConfig {
    /// `ENVIRONMENT`.
    pub environment: Environment,
    /// `--listen`, else `0.0.0.0:$PORT`, else [`DEFAULT_LISTEN`].
    pub listen: SocketAddr,
    /// The pools' URLs.
    pub database: DatabaseConfig,
    /// `DB_POOL_SIZE`, `DB_ACQUIRE_TIMEOUT_MS`.
    pub pool: PoolConfig,
    /// The HTTP layer's settings.
    pub api: ApiConfig,
    /// Token verification. On the embedded default in development without `JWT_HS256_SECRET`,
    /// `serve` fills in the generated development secret.
    pub auth: AuthConfig,
}

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
            .field("request_timeout", &self.api.request_timeout)
            .field("max_body_bytes", &self.api.max_body_bytes)
            .field("platform_api", &self.api.platform_api_token.is_some())
            .field("auth", &self.auth)
            .finish()
    }
}

/// The configuration problems, one per line, each naming the variable and the fix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError(pub Vec<String>);

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid configuration:")?;
        for problem in &self.0 {
            write!(f, "\n  - {problem}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

/// Reads the variables, treating an empty (or blank) value as unset.
struct Vars<'a> {
    lookup: &'a dyn Fn(&str) -> Option<String>,
    problems: Vec<String>,
}

impl<'a> Vars<'a> {
    fn new(lookup: &'a dyn Fn(&str) -> Option<String>) -> Vars<'a> {
        Vars { lookup, problems: Vec::new() }
    }

    fn get(&self, name: &str) -> Option<String> {
        (self.lookup)(name).map(|v| v.trim().to_owned()).filter(|v| !v.is_empty())
    }

    /// A whole number in `min..=max`, or `default` when unset.
    fn number(&mut self, name: &str, default: u64, min: u64, max: u64) -> u64 {
        let Some(text) = self.get(name) else { return default };
        match text.parse::<u64>() {
            Ok(n) if (min..=max).contains(&n) => n,
            _ => {
                self.problems.push(format!(
                    "{name} must be a whole number from {min} to {max}, got {text:?}; unset it for the default {default}"
                ));
                default
            }
        }
    }

    /// `true`/`1` or `false`/`0`, or `default` when unset.
    fn flag(&mut self, name: &str, default: bool) -> bool {
        match self.get(name).as_deref() {
            None => default,
            Some("true" | "1") => true,
            Some("false" | "0") => false,
            Some(text) => {
                self.problems
                    .push(format!("{name} must be true or false, got {text:?}; unset it for the default {default}"));
                default
            }
        }
    }

    fn environment(&mut self) -> Environment {
        match self.get("ENVIRONMENT") {
            None => Environment::Development,
            Some(text) => Environment::parse(&text).unwrap_or_else(|| {
                self.problems.push(format!("ENVIRONMENT must be development, staging or production, got {text:?}"));
                // Check the rest as development; the environment must be fixed first anyway.
                Environment::Development
            }),
        }
    }

    fn finish<T>(self, value: T) -> Result<T, ConfigError> {
        if self.problems.is_empty() { Ok(value) } else { Err(ConfigError(self.problems)) }
    }
}

/// `ENVIRONMENT` alone (for commands that need nothing else, like `token mint`).
pub fn environment(lookup: &dyn Fn(&str) -> Option<String>) -> Result<Environment, ConfigError> {
    let mut vars = Vars::new(lookup);
    let environment = vars.environment();
    vars.finish(environment)
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
        Some("0" | "false") => vars.problems.push(
            "DATABASE_URL is required: CAREVAULT_EMBEDDED=0 (set by the container image) refuses the embedded \
             PostgreSQL, which is for development machines. Set DATABASE_URL to your PostgreSQL's owner URL, \
             postgres://user:password@host:5432/database"
                .into(),
        ),
        Some(other) => vars.problems.push(format!(
            "CAREVAULT_EMBEDDED must be 0 (require DATABASE_URL) or 1 (allow the embedded PostgreSQL), got {other:?}"
        )),
    }
}

/// The address to listen on: `--listen` wins over `PORT` (which means `0.0.0.0:$PORT`); the
/// default is `127.0.0.1:8080`.
pub fn listen_addr(lookup: &dyn Fn(&str) -> Option<String>, listen: Option<&str>) -> Result<SocketAddr, ConfigError> {
    let mut vars = Vars::new(lookup);
    let addr = listen_with(&mut vars, listen);
    vars.finish(addr)
}

fn listen_with(vars: &mut Vars<'_>, listen: Option<&str>) -> SocketAddr {
    if let Some(listen) = listen {
        return match listen.trim().parse::<SocketAddr>() {
            Ok(addr) => addr,
            Err(_) => {
                vars.problems.push(format!(
                    "--listen must be ADDR:PORT, e.g. 127.0.0.1:8080 or [::1]:8080 (an IP address, not a host name), got {listen:?}"
                ));
                DEFAULT_LISTEN
            }
        };
    }
    match vars.get("PORT") {
        None => DEFAULT_LISTEN,
        Some(text) => match text.parse::<u16>() {
            Ok(port) if port > 0 => SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), port),
            _ => {
                vars.problems.push(format!("PORT must be a port number from 1 to 65535, got {text:?}"));
                DEFAULT_LISTEN
            }
        },
    }
}

/// The address a local client (healthcheck, printed curl commands) reaches a server listening on
/// `addr`: a wildcard address becomes the loopback address of its family.
pub fn local_addr(addr: SocketAddr) -> SocketAddr {
    match addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), addr.port()),
        IpAddr::V6(ip) if ip.is_unspecified() => SocketAddr::new(IpAddr::V6(Ipv6Addr::LOCALHOST), addr.port()),
        _ => addr,
    }
}

/// The token settings (`OIDC_*`, `JWT_*`, `JWKS_CACHE_TTL_SECONDS`), checked by
/// [`AuthConfig::validate`] and, in production, refusing HS256 and requiring OIDC.
pub fn auth_config(lookup: &dyn Fn(&str) -> Option<String>) -> Result<(Environment, AuthConfig), ConfigError> {
    let mut vars = Vars::new(lookup);
    let environment = vars.environment();
    let auth = auth_with(&mut vars, environment);
    vars.finish((environment, auth))
}

fn auth_with(vars: &mut Vars<'_>, environment: Environment) -> AuthConfig {
    let max_lifetime_minutes = vars.number("JWT_MAX_LIFETIME_MINUTES", 60, 1, 7 * 24 * 60);
    let leeway = vars.number("JWT_LEEWAY_SECONDS", auth::DEFAULT_LEEWAY.as_secs(), 0, 600);
    let jwks_ttl = vars.number("JWKS_CACHE_TTL_SECONDS", auth::DEFAULT_JWKS_TTL.as_secs(), 1, 7 * 24 * 3600);
    let config = AuthConfig {
        issuer: vars.get("OIDC_ISSUER_URL"),
        audience: vars.get("OIDC_CLIENT_ID"),
        // Not trimmed: the secret is used byte for byte by whoever mints tokens with it.
        hs256_secret: (vars.lookup)("JWT_HS256_SECRET").filter(|s| !s.is_empty()),
        tenant_claim: vars.get("JWT_TENANT_CLAIM_NAME").unwrap_or_else(|| auth::DEFAULT_TENANT_CLAIM.to_owned()),
        max_lifetime: Duration::from_secs(max_lifetime_minutes * 60),
        leeway: Duration::from_secs(leeway),
        jwks_ttl: Duration::from_secs(jwks_ttl),
    };
    if environment == Environment::Production {
        if config.hs256_secret.is_some() {
            vars.problems.push(
                "JWT_HS256_SECRET is set, but development tokens are refused in production: unset it and use your \
                 identity provider (OIDC_ISSUER_URL, OIDC_CLIENT_ID)"
                    .into(),
            );
        }
        if config.issuer.is_none() {
            vars.problems.push(
                "OIDC_ISSUER_URL is required in production: set it to your identity provider's issuer URL \
                 (its discovery document is at <issuer>/.well-known/openid-configuration)"
                    .into(),
            );
        }
        if config.audience.is_none() {
            vars.problems.push(
                "OIDC_CLIENT_ID is required in production: set it to the audience (`aud`) your identity provider \
                 puts in the tokens for carevault"
                    .into(),
            );
        }
        // The signing keys are fetched from the issuer: over plain HTTP anyone on the path could
        // swap them and mint tokens for every tenant.
        if config.issuer.as_deref().is_some_and(|issuer| !issuer.starts_with("https://")) {
            vars.problems.push(
                "OIDC_ISSUER_URL must be an https:// URL in production: the signing keys are fetched from it".into(),
            );
        }
    }
    // The production messages above already cover a missing issuer or audience.
    let covered = environment == Environment::Production && (config.issuer.is_none() || config.audience.is_none());
    if let Err(problem) = config.validate()
        && !(covered && problem.starts_with("OIDC_"))
    {
        vars.problems.push(problem);
    }
    config
}

/// The whole server configuration. `listen` is the `--listen` argument.
pub fn serve_config(lookup: &dyn Fn(&str) -> Option<String>, listen: Option<&str>) -> Result<ServeConfig, ConfigError> {
    let mut vars = Vars::new(lookup);
    let environment = vars.environment();
    let listen = listen_with(&mut vars, listen);
    let database = database_with(&mut vars);
    let pool = PoolConfig {
        max_connections: u32::try_from(vars.number("DB_POOL_SIZE", 10, 1, 1000)).unwrap_or(10),
        acquire_timeout: Duration::from_millis(vars.number("DB_ACQUIRE_TIMEOUT_MS", 2000, 1, 600_000)),
        // Off behind PgBouncer < 1.21 in transaction mode (DESIGN §6): queries are then sent as
        // unnamed statements.
        statement_cache: vars.flag("DB_STATEMENT_CACHE", true),
    };
    let allowed_origins = origins_with(&mut vars, environment);
    let trusted_proxies = proxies_with(&mut vars);
    let request_timeout = Duration::from_secs(vars.number("REQUEST_TIMEOUT_SECONDS", 30, 1, 3600));
    let max_body_bytes = usize::try_from(vars.number("MAX_BODY_BYTES", 1_048_576, 1024, 1 << 30)).unwrap_or(1_048_576);
    let platform_api_token = (vars.lookup)("PLATFORM_API_TOKEN").filter(|t| !t.is_empty());
    if platform_api_token.as_ref().is_some_and(|t| t.len() < 32) {
        vars.problems.push(
            "PLATFORM_API_TOKEN must be at least 32 bytes (e.g. `openssl rand -hex 32`), or unset to disable the \
             platform API"
                .into(),
        );
    }
    let auth = auth_with(&mut vars, environment);
    let api = ApiConfig {
        environment,
        allowed_origins,
        trusted_proxies,
        request_timeout,
        max_body_bytes,
        platform_api_token,
    };
    vars.finish(ServeConfig { environment, listen, database, pool, api, auth })
}

fn database_with(vars: &mut Vars<'_>) -> DatabaseConfig {
    let owner = vars.get("DATABASE_URL");
    let app = vars.get("APP_DATABASE_URL");
    let platform = vars.get("PLATFORM_DATABASE_URL");
    for (name, url) in [("DATABASE_URL", &owner), ("APP_DATABASE_URL", &app), ("PLATFORM_DATABASE_URL", &platform)] {
        if let Some(url) = url
            && !(url.starts_with("postgres://") || url.starts_with("postgresql://"))
        {
            vars.problems.push(format!(
                "{name} must be a PostgreSQL URL (postgres://user:password@host:port/database), got {}",
                crate::database::redact(url)
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
            let (set, unset) = if app.is_some() {
                ("APP_DATABASE_URL", "PLATFORM_DATABASE_URL")
            } else {
                ("PLATFORM_DATABASE_URL", "APP_DATABASE_URL")
            };
            vars.problems.push(format!(
                "{set} is set but neither {unset} nor DATABASE_URL is: set {unset} too (the login role \
                 carevault_{}), or DATABASE_URL for both pools",
                if unset == "APP_DATABASE_URL" { "api" } else { "ops" }
            ));
            DatabaseConfig::Embedded
        }
    }
}

fn origins_with(vars: &mut Vars<'_>, environment: Environment) -> Vec<String> {
    let origins: Vec<String> = vars
        .get("ALLOWED_ORIGINS")
        .map(|text| text.split(',').map(str::trim).filter(|o| !o.is_empty()).map(str::to_owned).collect())
        .unwrap_or_default();
    for origin in &origins {
        if origin != "*" && !is_origin(origin) {
            vars.problems.push(format!(
                "ALLOWED_ORIGINS: {origin:?} is not an origin: write scheme://host[:port] with no path or trailing \
                 slash, e.g. https://app.example.com"
            ));
        }
    }
    if environment == Environment::Production {
        if origins.is_empty() {
            vars.problems.push(
                "ALLOWED_ORIGINS is required in production: set it to the comma-separated origins of your web \
                 front-ends, e.g. https://app.example.com"
                    .into(),
            );
        } else if origins.iter().any(|o| o == "*") {
            vars.problems.push(
                "ALLOWED_ORIGINS must not contain `*` in production: list your front-ends' origins instead, e.g. \
                 https://app.example.com"
                    .into(),
            );
        }
    }
    origins
}

/// `scheme://host[:port]`: what a browser sends in `Origin`, compared byte for byte.
fn is_origin(text: &str) -> bool {
    let Some((scheme, rest)) = text.split_once("://") else { return false };
    matches!(scheme, "http" | "https")
        && !rest.is_empty()
        && !rest.contains(['/', '?', '#', '@', ' '])
        && rest.parse::<axum::http::uri::Authority>().is_ok()
}

fn proxies_with(vars: &mut Vars<'_>) -> Vec<ipnet::IpNet> {
    let Some(text) = vars.get("TRUSTED_PROXIES") else { return Vec::new() };
    let mut proxies = Vec::new();
    for item in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        // A bare address means that one host.
        match item.parse::<ipnet::IpNet>().or_else(|_| item.parse::<IpAddr>().map(ipnet::IpNet::from)) {
            Ok(net) => proxies.push(net),
            Err(_) => vars.problems.push(format!(
                "TRUSTED_PROXIES: {item:?} is not an IP address or CIDR (e.g. 10.0.0.0/8 or 192.168.1.7)"
            )),
        }
    }
    proxies
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    const SECRET: &str = "0123456789abcdef0123456789abcdef";

    fn lookup(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        move |name| map.get(name).cloned()
    }

    fn serve(vars: &[(&str, &str)], listen: Option<&str>) -> Result<ServeConfig, ConfigError> {
        serve_config(&lookup(vars), listen)
    }

    fn problems(vars: &[(&str, &str)]) -> Vec<String> {
        serve(vars, None).expect_err("refused").0
    }

    fn mentions(problems: &[String], words: &[&str]) -> bool {
        problems.iter().any(|p| words.iter().all(|w| p.contains(w)))
    }

    const PRODUCTION_OK: &[(&str, &str)] = &[
        ("ENVIRONMENT", "production"),
        ("DATABASE_URL", "postgres://u:p@db/carevault"),
        ("ALLOWED_ORIGINS", "https://app.example.com, https://admin.example.com"),
        ("OIDC_ISSUER_URL", "https://idp.example.com"),
        ("OIDC_CLIENT_ID", "carevault"),
    ];

    fn production_with(changes: &[(&'static str, &'static str)]) -> Vec<(&'static str, &'static str)> {
        let mut vars: Vec<(&str, &str)> =
            PRODUCTION_OK.iter().filter(|(k, _)| !changes.iter().any(|(c, _)| c == k)).copied().collect();
        vars.extend(changes.iter().filter(|(_, v)| !v.is_empty()));
        vars
    }

    #[test]
    fn defaults_follow_the_design_table() {
        let config = serve(&[], None).expect("an empty environment is a valid development setup");
        assert_eq!(config.environment, Environment::Development);
        assert_eq!(config.listen, DEFAULT_LISTEN);
        assert_eq!(config.database, DatabaseConfig::Embedded);
        assert_eq!(config.pool.max_connections, 10);
        assert_eq!(config.pool.acquire_timeout, Duration::from_millis(2000));
        assert!(config.api.allowed_origins.is_empty());
        assert!(config.api.trusted_proxies.is_empty());
        assert_eq!(config.api.request_timeout, Duration::from_secs(30));
        assert_eq!(config.api.max_body_bytes, 1_048_576);
        assert_eq!(config.api.platform_api_token, None);
        assert_eq!(config.auth.tenant_claim, "tenant_id");
        assert_eq!(config.auth.max_lifetime, Duration::from_secs(3600));
        assert_eq!(config.auth.leeway, Duration::from_secs(30));
        assert_eq!(config.auth.jwks_ttl, Duration::from_secs(3600));
        assert_eq!(config.auth.hs256_secret, None);
        assert_eq!(config.auth.issuer, None);
    }

    #[test]
    fn a_complete_production_setup_is_accepted() {
        let config = serve(PRODUCTION_OK, None).expect("valid");
        assert_eq!(config.environment, Environment::Production);
        assert_eq!(config.api.allowed_origins, ["https://app.example.com", "https://admin.example.com"]);
    }

    #[test]
    fn production_refuses_hs256() {
        let found = problems(&production_with(&[("JWT_HS256_SECRET", SECRET)]));
        assert!(mentions(&found, &["JWT_HS256_SECRET", "production", "unset"]), "{found:?}");
    }

    #[test]
    fn production_refuses_missing_or_wildcard_origins() {
        let found = problems(&production_with(&[("ALLOWED_ORIGINS", "")]));
        assert!(mentions(&found, &["ALLOWED_ORIGINS", "required in production"]), "{found:?}");
        let found = problems(&production_with(&[("ALLOWED_ORIGINS", "https://app.example.com,*")]));
        assert!(mentions(&found, &["ALLOWED_ORIGINS", "`*`", "production"]), "{found:?}");
        // Outside production a wildcard is allowed.
        let config = serve(&[("ALLOWED_ORIGINS", "*")], None).expect("development allows *");
        assert_eq!(config.api.allowed_origins, ["*"]);
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
    fn listen_wins_over_port_and_port_means_all_interfaces() {
        let vars = [("PORT", "9000")];
        assert_eq!(serve(&vars, None).expect("valid").listen, "0.0.0.0:9000".parse().expect("addr"));
        assert_eq!(
            serve(&vars, Some("127.0.0.1:7000")).expect("valid").listen,
            "127.0.0.1:7000".parse().expect("addr")
        );
        assert_eq!(serve(&[], Some("[::1]:7001")).expect("valid").listen, "[::1]:7001".parse().expect("addr"));
        assert_eq!(serve(&[], None).expect("valid").listen, "127.0.0.1:8080".parse().expect("addr"));
        // listen_addr (healthcheck) follows the same rules.
        assert_eq!(listen_addr(&lookup(&vars), None).expect("valid").port(), 9000);
        assert_eq!(listen_addr(&lookup(&vars), Some("127.0.0.1:7000")).expect("valid").port(), 7000);
    }

    #[test]
    fn bad_listen_and_port_values_are_named() {
        for bad in ["0", "65536", "-1", "80a"] {
            let found = problems(&[("PORT", bad)]);
            assert!(mentions(&found, &["PORT", "1 to 65535", bad]), "{found:?}");
        }
        for bad in ["localhost:8080", "8080", "127.0.0.1"] {
            let found = serve(&[], Some(bad)).expect_err("refused").0;
            assert!(mentions(&found, &["--listen", "ADDR:PORT", bad]), "{found:?}");
        }
        // A bad PORT does not matter when --listen is given.
        assert!(serve(&[("PORT", "nope")], Some("127.0.0.1:1")).is_ok());
    }

    #[test]
    fn wildcard_listen_addresses_are_reached_on_loopback() {
        assert_eq!(local_addr("0.0.0.0:9000".parse().expect("addr")), "127.0.0.1:9000".parse().expect("addr"));
        assert_eq!(local_addr("[::]:9000".parse().expect("addr")), "[::1]:9000".parse().expect("addr"));
        assert_eq!(local_addr("10.1.2.3:9000".parse().expect("addr")), "10.1.2.3:9000".parse().expect("addr"));
    }

    #[test]
    fn bad_values_are_named_with_the_fix() {
        let cases: &[(&str, &str, &[&str])] = &[
            ("ENVIRONMENT", "prod", &["ENVIRONMENT", "development, staging or production", "\"prod\""]),
            ("DB_POOL_SIZE", "0", &["DB_POOL_SIZE", "from 1 to", "default 10"]),
            ("DB_ACQUIRE_TIMEOUT_MS", "2s", &["DB_ACQUIRE_TIMEOUT_MS", "whole number"]),
            ("REQUEST_TIMEOUT_SECONDS", "-5", &["REQUEST_TIMEOUT_SECONDS", "whole number"]),
            ("MAX_BODY_BYTES", "1MB", &["MAX_BODY_BYTES", "whole number"]),
            ("JWT_MAX_LIFETIME_MINUTES", "0", &["JWT_MAX_LIFETIME_MINUTES", "from 1"]),
            ("JWT_LEEWAY_SECONDS", "x", &["JWT_LEEWAY_SECONDS"]),
            ("JWKS_CACHE_TTL_SECONDS", "0", &["JWKS_CACHE_TTL_SECONDS"]),
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
        // The password of a bad URL is not echoed.
        let found = problems(&[("DATABASE_URL", "mysql://u:hunter2@db/x")]);
        assert!(!found.iter().any(|p| p.contains("hunter2")), "{found:?}");
    }

    #[test]
    fn good_values_are_parsed() {
        let config = serve(
            &[
                ("ENVIRONMENT", "staging"),
                ("DB_POOL_SIZE", "25"),
                ("DB_ACQUIRE_TIMEOUT_MS", "500"),
                ("REQUEST_TIMEOUT_SECONDS", "5"),
                ("MAX_BODY_BYTES", "65536"),
                ("TRUSTED_PROXIES", "10.0.0.0/8, 192.168.1.7, ::1"),
                ("JWT_TENANT_CLAIM_NAME", "custom:tenant_id"),
                ("JWT_MAX_LIFETIME_MINUTES", "15"),
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
        assert_eq!(config.api.request_timeout, Duration::from_secs(5));
        assert_eq!(config.api.max_body_bytes, 65536);
        let proxies: Vec<String> = config.api.trusted_proxies.iter().map(ToString::to_string).collect();
        assert_eq!(proxies, ["10.0.0.0/8", "192.168.1.7/32", "::1/128"]);
        assert_eq!(config.auth.tenant_claim, "custom:tenant_id");
        assert_eq!(config.auth.max_lifetime, Duration::from_secs(15 * 60));
        assert_eq!(config.auth.hs256_secret.as_deref(), Some(SECRET));
        assert_eq!(config.api.platform_api_token.as_deref(), Some(SECRET));
        // Debug never shows the secrets.
        let debug = format!("{config:?}");
        assert!(!debug.contains(SECRET), "{debug}");
    }

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
    fn the_auth_subset_is_checked_alone() {
        let (environment, auth) = auth_config(&lookup(&[("JWT_HS256_SECRET", SECRET)])).expect("valid");
        assert_eq!(environment, Environment::Development);
        assert_eq!(auth.hs256_secret.as_deref(), Some(SECRET));
        let found = auth_config(&lookup(&[("ENVIRONMENT", "production"), ("JWT_HS256_SECRET", SECRET)]))
            .expect_err("refused")
            .0;
        assert!(mentions(&found, &["JWT_HS256_SECRET", "production"]), "{found:?}");
        assert_eq!(environment_of(&[("ENVIRONMENT", "staging")]), Ok(Environment::Staging));
        assert!(environment_of(&[("ENVIRONMENT", "Production")]).is_err(), "names are lower case");
    }

    fn environment_of(vars: &[(&str, &str)]) -> Result<Environment, ConfigError> {
        environment(&lookup(vars))
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

    /// One row of `config/variables.json`.
    struct Variable {
        name: String,
        default: Option<String>,
        scope: String,
    }

    fn variables() -> Vec<Variable> {
        let json: serde_json::Value =
            serde_json::from_str(include_str!("../config/variables.json")).expect("variables.json is JSON");
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
        let asked = std::cell::RefCell::new(std::collections::BTreeSet::new());
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
        let listed: std::collections::BTreeSet<String> =
            table.iter().filter(|v| !elsewhere(v)).map(|v| v.name.clone()).collect();
        assert_eq!(listed, asked, "config/variables.json and the names config.rs reads");
        for v in &table {
            assert!(matches!(v.scope.as_str(), "service" | "image" | "local"), "{}: scope {}", v.name, v.scope);
        }
    }

    #[test]
    fn the_variable_table_defaults_are_the_applied_defaults() {
        // Setting a variable to its listed default changes nothing.
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
        for (name, other) in [("JWT_TENANT_CLAIM_NAME", "org"), ("DB_POOL_SIZE", "11"), ("MAX_BODY_BYTES", "2048")] {
            assert_ne!(format!("{:?}", serve(&[(name, other)], None).expect("valid")), unset, "{name}");
        }
    }
}
