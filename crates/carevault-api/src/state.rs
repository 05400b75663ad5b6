//! What every handler shares.

use std::sync::Arc;

use carevault_db::{AppPool, PlatformPool};

use crate::ApiConfig;
use crate::auth::Authenticator;
use crate::caller_cache::CallerCache;
use crate::rate_limit::RateLimiter;

/// The application state: pools, authenticator, settings. Cheap to clone.
#[derive(Clone)]
pub struct AppState {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub(crate) app_pool: AppPool,
    pub(crate) platform_pool: PlatformPool,
    pub(crate) auth: Authenticator,
    pub(crate) config: ApiConfig,
    pub(crate) rate_limiter: RateLimiter,
    pub(crate) callers: Arc<CallerCache>,
}

impl AppState {
    /// Builds the state. The tenant path only ever reaches `app_pool`; `platform_pool` is used by
    /// the platform API alone.
    pub fn new(app_pool: AppPool, platform_pool: PlatformPool, auth: Authenticator, config: ApiConfig) -> AppState {
        let rate_limiter = RateLimiter::new(config.rate_limits);
        let callers = Arc::new(CallerCache::new(config.caller_cache_ttl));
        AppState { inner: Arc::new(Inner { app_pool, platform_pool, auth, config, rate_limiter, callers }) }
    }

    /// The authenticator (for the binary's start-up JWKS fetch).
    pub fn authenticator(&self) -> &Authenticator {
        &self.inner.auth
    }
}
