//! Who a token's caller is, remembered for a few seconds (`CALLER_CACHE_SECONDS`), so that the
//! requests of a busy client do not each open a transaction just to find their tenant and user.
//!
//! What a hit skips is the lookup of the tenant (existing, active) and of the user (existing, not
//! deleted, their role). So a suspension, a deletion or a demotion reaches a cached caller:
//! - at once when it is made through this process (the platform API and the user endpoints forget
//!   the tenant's entries after they commit);
//! - within the time to live otherwise (another replica, the CLI, SQL), tested by
//!   `tests/api/caller_cache.rs`.
//!
//! Every request still runs in its own transaction with its own proof, and the database still
//! applies row-level security to it: the cache decides nothing about isolation.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use carevault_db::TenantId;
use carevault_db::repo::{Tenant, User};

/// The most callers remembered; beyond it the expired ones go, and if that is not enough, all.
const MAX_ENTRIES: usize = 10_000;

/// The remembered callers, by tenant and `sub`.
#[derive(Debug)]
pub(crate) struct CallerCache {
    ttl: Duration,
    entries: Mutex<HashMap<(TenantId, String), Entry>>,
}

#[derive(Debug)]
struct Entry {
    stored: Instant,
    tenant: Tenant,
    user: User,
}

impl CallerCache {
    /// A cache whose entries live `ttl`; zero remembers nothing.
    pub(crate) fn new(ttl: Duration) -> CallerCache {
        CallerCache { ttl, entries: Mutex::new(HashMap::new()) }
    }

    /// The caller `sub` of `tenant`, as resolved less than the time to live ago.
    pub(crate) fn get(&self, tenant: TenantId, sub: &str) -> Option<(Tenant, User)> {
        let entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        let entry = entries.get(&(tenant, sub.to_owned()))?;
        (entry.stored.elapsed() < self.ttl).then(|| (entry.tenant.clone(), entry.user.clone()))
    }

    /// Remembers a caller just resolved.
    pub(crate) fn put(&self, tenant: &Tenant, sub: &str, user: &User) {
        if self.ttl.is_zero() {
            return;
        }
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        if entries.len() >= MAX_ENTRIES {
            entries.retain(|_, entry| entry.stored.elapsed() < self.ttl);
            if entries.len() >= MAX_ENTRIES {
                entries.clear();
            }
        }
        let entry = Entry { stored: Instant::now(), tenant: tenant.clone(), user: user.clone() };
        entries.insert((tenant.id, sub.to_owned()), entry);
    }

    /// Forgets every caller of `tenant` (after a change of the tenant or of one of its users).
    pub(crate) fn forget_tenant(&self, tenant: TenantId) {
        self.entries.lock().unwrap_or_else(PoisonError::into_inner).retain(|(id, _), _| *id != tenant);
    }
}
