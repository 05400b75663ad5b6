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
        }
    }
}
