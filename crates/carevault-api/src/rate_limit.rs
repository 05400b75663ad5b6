//! Request rate limits per user and per tenant (`RATE_LIMIT_USER_PER_MINUTE`,
//! `RATE_LIMIT_TENANT_PER_MINUTE`).
//!
//! Every tenant request writes an audit row, and the audit log is append-only: without a limit
//! one caller could grow it without bound. The limit is checked on the *verified* token, before
//! the caller is resolved in the database, so a refused request costs no connection and writes
//! nothing; it is answered 429 `REQ_429` with `Retry-After`. Refusals are counted and logged
//! (at most one line per [`REPORT_EVERY`]), never audited one by one: that would defeat the limit.
//!
//! Each limit is a GCRA bucket (the `governor` crate) of `N` requests per minute that starts full:
//! a caller may send `N` at once, then one every `60/N` seconds. The user's bucket is checked
//! first and the tenant's only when it passed, so a user held back by their own limit does not
//! spend their colleagues' share of the tenant's. The buckets live in this process: with several
//! replicas, each enforces the limits on its own.
//!
//! The platform API (one operator credential) and unauthenticated requests (which write nothing)
//! are not limited here; a proxy in front can limit by address.

use std::num::NonZeroU32;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use carevault_db::TenantId;
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota};

use crate::{ApiError, ErrorCode};

/// Default of `RATE_LIMIT_USER_PER_MINUTE`.
pub const DEFAULT_USER_PER_MINUTE: u32 = 600;
/// Default of `RATE_LIMIT_TENANT_PER_MINUTE`.
pub const DEFAULT_TENANT_PER_MINUTE: u32 = 6000;
/// At most one log line about refusals per this interval.
const REPORT_EVERY: Duration = Duration::from_secs(10);
/// Buckets that are full again are dropped every this many checks, so that the memory held is that
/// of the recently active callers.
const PRUNE_EVERY: u64 = 4096;

/// The limits; `None` turns one off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimits {
    /// Requests per minute of one user (a token's tenant and `sub`).
    pub user_per_minute: Option<NonZeroU32>,
    /// Requests per minute of all users of one tenant together.
    pub tenant_per_minute: Option<NonZeroU32>,
}

impl Default for RateLimits {
    fn default() -> RateLimits {
        RateLimits {
            user_per_minute: NonZeroU32::new(DEFAULT_USER_PER_MINUTE),
            tenant_per_minute: NonZeroU32::new(DEFAULT_TENANT_PER_MINUTE),
        }
    }
}

impl RateLimits {
    /// No limit at all (benchmarks and load tests).
    pub const OFF: RateLimits = RateLimits { user_per_minute: None, tenant_per_minute: None };
}

/// Which limit refused a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scope {
    User,
    Tenant,
}

/// The buckets of [`RateLimits`], shared by every request of the process.
pub(crate) struct RateLimiter {
    users: Option<DefaultKeyedRateLimiter<(TenantId, String)>>,
    tenants: Option<DefaultKeyedRateLimiter<TenantId>>,
    checks: AtomicU64,
    refused_user: AtomicU64,
    refused_tenant: AtomicU64,
    last_report: Mutex<Option<Instant>>,
    /// The limiters' own clock kind, made once: `Retry-After` is measured on it.
    clock: DefaultClock,
}

impl RateLimiter {
    pub(crate) fn new(limits: RateLimits) -> RateLimiter {
        RateLimiter {
            users: limits.user_per_minute.map(|n| DefaultKeyedRateLimiter::dashmap(Quota::per_minute(n))),
            tenants: limits.tenant_per_minute.map(|n| DefaultKeyedRateLimiter::dashmap(Quota::per_minute(n))),
            checks: AtomicU64::new(0),
            refused_user: AtomicU64::new(0),
            refused_tenant: AtomicU64::new(0),
            last_report: Mutex::new(None),
            clock: DefaultClock::default(),
        }
    }

    /// Takes one request from the user's bucket, then from the tenant's: 429 `REQ_429` with the
    /// time until the refusing bucket allows the next one.
    pub(crate) fn check(&self, tenant: TenantId, sub: &str) -> Result<(), ApiError> {
        if self.checks.fetch_add(1, Ordering::Relaxed) % PRUNE_EVERY == PRUNE_EVERY - 1 {
            self.prune();
        }
        if let Some(users) = &self.users
            && let Err(not_until) = users.check_key(&(tenant, sub.to_owned()))
        {
            return Err(self.refuse(Scope::User, tenant, not_until.wait_time_from(self.clock.now())));
        }
        if let Some(tenants) = &self.tenants
            && let Err(not_until) = tenants.check_key(&tenant)
        {
            return Err(self.refuse(Scope::Tenant, tenant, not_until.wait_time_from(self.clock.now())));
        }
        Ok(())
    }

    fn refuse(&self, scope: Scope, tenant: TenantId, wait: Duration) -> ApiError {
        let counter = match scope {
            Scope::User => &self.refused_user,
            Scope::Tenant => &self.refused_tenant,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        self.report(scope, tenant);
        // Retry-After is in whole seconds (RFC 9110 §10.2.3): rounded up, so that a client that
        // waits that long is let in.
        let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
        let message = match scope {
            Scope::User => "too many requests from this user, retry later",
            Scope::Tenant => "too many requests for this tenant, retry later",
        };
        ApiError::new(ErrorCode::Req429).with_message(message).with_retry_after(seconds.max(1))
    }

    /// One log line per [`REPORT_EVERY`] at most, with the totals since start (the tenant id is
    /// not PHI; the user's `sub` is not logged).
    fn report(&self, scope: Scope, tenant: TenantId) {
        let Ok(mut last) = self.last_report.try_lock() else { return };
        let now = Instant::now();
        if last.is_some_and(|at| now.duration_since(at) < REPORT_EVERY) {
            return;
        }
        *last = Some(now);
        tracing::warn!(
            scope = ?scope,
            %tenant,
            refused_by_user_limit = self.refused_user.load(Ordering::Relaxed),
            refused_by_tenant_limit = self.refused_tenant.load(Ordering::Relaxed),
            "rate limit: requests refused (totals since start)"
        );
    }

    fn prune(&self) {
        if let Some(users) = &self.users {
            users.retain_recent();
            users.shrink_to_fit();
        }
        if let Some(tenants) = &self.tenants {
            tenants.retain_recent();
            tenants.shrink_to_fit();
        }
    }
}
