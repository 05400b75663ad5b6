//! Settings of the HTTP layer. Parsing and validating the environment is the binary's job
//! (`carevault serve`); this is the validated result.

use std::time::Duration;

pub use carevault_db::Environment;

use crate::rate_limit::RateLimits;
use crate::server::ConnectionLimits;

/// The HTTP layer's settings (`REQUEST_TIMEOUT_SECONDS`, `MAX_BODY_BYTES`, ... of the README's configuration table).
#[derive(Debug, Clone)]
pub struct ApiConfig {
    /// The environment.
    pub environment: Environment,
    /// Origins allowed by CORS (`ALLOWED_ORIGINS`); empty: no CORS headers at all.
    pub allowed_origins: Vec<String>,
    /// Proxies whose `X-Forwarded-For` is believed (`TRUSTED_PROXIES`).
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// Requests running longer are answered 504 `SYS_005` (`REQUEST_TIMEOUT_SECONDS`).
    pub request_timeout: Duration,
    /// Larger bodies are answered 413 `REQ_413` (`MAX_BODY_BYTES`).
    pub max_body_bytes: usize,
    /// `POST /documents/batch` running longer is answered 504 `SYS_005`
    /// (`BATCH_REQUEST_TIMEOUT_SECONDS`); every other route keeps `request_timeout`.
    pub batch_request_timeout: Duration,
    /// Larger bodies of `POST /documents/batch` are answered 413 `REQ_413` (`BATCH_MAX_BODY_BYTES`);
    /// every other route keeps `max_body_bytes`.
    pub batch_max_body_bytes: usize,
    /// The platform API's bearer secret (`PLATFORM_API_TOKEN`); `None` disables the platform API.
    pub platform_api_token: Option<String>,
    /// Header-read timeout and connection cap of the listener (`HEADER_READ_TIMEOUT_SECONDS`,
    /// `MAX_CONNECTIONS`), for [`crate::server::serve`].
    pub connections: ConnectionLimits,
    /// Requests per minute of one user and of one tenant (`RATE_LIMIT_USER_PER_MINUTE`,
    /// `RATE_LIMIT_TENANT_PER_MINUTE`).
    pub rate_limits: RateLimits,
    /// Whether a valid token of an unknown `sub` creates its user (`JIT_PROVISIONING`).
    pub jit_provisioning: JitProvisioning,
    /// How long a token's caller (tenant and user, as resolved) is remembered
    /// (`CALLER_CACHE_SECONDS`; zero: not at all). A change made through another replica reaches a
    /// remembered caller within this time.
    pub caller_cache_ttl: Duration,
}

impl Default for ApiConfig {
    fn default() -> ApiConfig {
        ApiConfig {
            environment: Environment::Development,
            allowed_origins: Vec::new(),
            trusted_proxies: Vec::new(),
            request_timeout: Duration::from_secs(30),
            max_body_bytes: 1_048_576,
            // 1,000 documents of 1,024 floats are about 15 MB of JSON: room for twice that.
            batch_request_timeout: Duration::from_secs(120),
            batch_max_body_bytes: 33_554_432,
            platform_api_token: None,
            connections: ConnectionLimits::default(),
            rate_limits: RateLimits::default(),
            jit_provisioning: JitProvisioning::default_for(Environment::Development),
            caller_cache_ttl: Duration::from_secs(5),
        }
    }
}

/// Just-in-time provisioning (`JIT_PROVISIONING`): what happens to a valid token whose `sub` is
/// not a user of the tenant it names. Whoever can make the identity provider put a tenant in a
/// token can then join that tenant, so in production it is off unless chosen
/// (docs/THREAT_MODEL.md, "The identity provider").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JitProvisioning {
    /// Refused: 403 `AUTH_010`; an admin creates users (`POST /users`).
    Off,
    /// Created as a viewer when the token carries a verified email.
    On,
    /// Created as a viewer only when the verified email's domain is one of the tenant's
    /// `jit_email_domains` (set on the platform API), else 403 `AUTH_010`.
    Domains,
}

impl JitProvisioning {
    /// Every mode, in the order of the documentation.
    pub const ALL: [JitProvisioning; 3] = [JitProvisioning::Off, JitProvisioning::On, JitProvisioning::Domains];

    /// The mode when `JIT_PROVISIONING` is unset: off in production, on elsewhere.
    pub fn default_for(environment: Environment) -> JitProvisioning {
        match environment {
            Environment::Production => JitProvisioning::Off,
            Environment::Development | Environment::Staging => JitProvisioning::On,
        }
    }

    /// `off`, `on` or `domains`.
    pub fn as_str(&self) -> &'static str {
        match self {
            JitProvisioning::Off => "off",
            JitProvisioning::On => "on",
            JitProvisioning::Domains => "domains",
        }
    }

    /// Parses [`Self::as_str`].
    pub fn parse(text: &str) -> Option<JitProvisioning> {
        JitProvisioning::ALL.into_iter().find(|mode| mode.as_str() == text)
    }
}
