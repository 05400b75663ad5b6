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
use std::sync::atomic::{AtomicU64, Ordering};
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
    /// Counts [`CallerCache::forget_tenant`] calls: a caller resolved while one happened is not
    /// remembered (it may have been read before the change committed: a demotion racing a
    /// request that resolved the admin, found by an attacker review).
    forgotten: AtomicU64,
}

/// Taken before resolving a caller, handed to [`CallerCache::put`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct Generation(u64);

#[derive(Debug)]
struct Entry {
    stored: Instant,
    tenant: Tenant,
    user: User,
}

impl CallerCache {
    /// A cache whose entries live `ttl`; zero remembers nothing.
    pub(crate) fn new(ttl: Duration) -> CallerCache {
        CallerCache { ttl, entries: Mutex::new(HashMap::new()), forgotten: AtomicU64::new(0) }
    }

    /// The caller `sub` of `tenant`, as resolved less than the time to live ago.
    pub(crate) fn get(&self, tenant: TenantId, sub: &str) -> Option<(Tenant, User)> {
        let entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        let entry = entries.get(&(tenant, sub.to_owned()))?;
        (entry.stored.elapsed() < self.ttl).then(|| (entry.tenant.clone(), entry.user.clone()))
    }

    /// The generation to hand to [`CallerCache::put`], taken before resolving.
    pub(crate) fn generation(&self) -> Generation {
        Generation(self.forgotten.load(Ordering::Acquire))
    }

    /// Remembers a caller resolved since `generation`, unless a tenant was forgotten meanwhile.
    pub(crate) fn put(&self, generation: Generation, tenant: &Tenant, sub: &str, user: &User) {
        if self.ttl.is_zero() {
            return;
        }
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        // Checked under the lock that `forget_tenant` takes after counting.
        if self.forgotten.load(Ordering::Acquire) != generation.0 {
            return;
        }
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
        self.forgotten.fetch_add(1, Ordering::AcqRel);
        self.entries.lock().unwrap_or_else(PoisonError::into_inner).retain(|(id, _), _| *id != tenant);
    }
}

#[cfg(test)]
mod tests {
    use carevault_db::{TenantStatus, UserId, UserRole};

    use super::*;

    fn rows() -> (Tenant, User) {
        let now = chrono::Utc::now();
        let tenant = Tenant {
            id: TenantId::SYSTEM,
            name: "T".into(),
            status: TenantStatus::Active,
            kms_key_arn: None,
            jit_email_domains: Vec::new(),
            created_at: now,
            updated_at: now,
            deleted_at: None,
        };
        let user = User {
            id: UserId::new_random(),
            tenant_id: tenant.id,
            email: "a@b.test".into(),
            external_idp_id: Some("s".into()),
            full_name: None,
            role: UserRole::Admin,
            last_login_at: None,
            created_at: now,
            updated_at: now,
            deleted_at: None,
        };
        (tenant, user)
    }

    #[test]
    fn a_caller_resolved_while_a_tenant_was_forgotten_is_not_remembered() {
        let cache = CallerCache::new(Duration::from_secs(60));
        let (tenant, user) = rows();
        let generation = cache.generation();
        cache.put(generation, &tenant, "s", &user);
        assert!(cache.get(tenant.id, "s").is_some());
        // A request reads the admin; a demotion commits and forgets the tenant; the request then
        // stores what it read: refused.
        let generation = cache.generation();
        cache.forget_tenant(tenant.id);
        assert!(cache.get(tenant.id, "s").is_none());
        cache.put(generation, &tenant, "s", &user);
        assert!(cache.get(tenant.id, "s").is_none(), "the stale admin came back");
        // Zero time to live remembers nothing.
        let off = CallerCache::new(Duration::ZERO);
        off.put(off.generation(), &tenant, "s", &user);
        assert!(off.get(tenant.id, "s").is_none());
    }
}
