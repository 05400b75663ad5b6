//! The vector search structures: no graph shared between tenants, and every tenant that needs
//! its own index has it (`crate::search_index`).

use sqlx::PgPool;

use super::Check;
use crate::search_index::{IndexPolicy, SearchIndexFacts, plan};
use crate::{AppPool, DbError, PlatformPool};

/// The HNSW index of migrations 6 to 15, one graph over every tenant.
pub const SHARED_INDEX: &str = "idx_documents_embedding_hnsw";

/// What the check judges.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SearchFacts {
    /// Whether an index named [`SHARED_INDEX`] exists on `documents`.
    pub shared_index: bool,
    /// The tenants and their indexes.
    pub indexes: SearchIndexFacts,
}

pub(super) async fn search_facts(pool: &PgPool) -> Result<SearchFacts, DbError> {
    let shared_index: bool = sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_index \
         WHERE indexrelid = to_regclass($1) AND indrelid = to_regclass('public.documents'))",
    )
    .bind(format!("public.{SHARED_INDEX}"))
    .fetch_one(pool)
    .await?;
    // Counting a tenant's rows needs a tenant transaction: under FORCE ROW LEVEL SECURITY the
    // owner sees none. The login must be able to switch to both runtime roles.
    let indexes = SearchIndexFacts::read(
        pool,
        &AppPool::over_owner(pool).await?,
        &PlatformPool::over(pool),
        IndexPolicy::DEFAULT,
    )
    .await?;
    Ok(SearchFacts { shared_index, indexes })
}

/// FAIL when a graph over every tenant exists (a tenant's search would walk other tenants'
/// vectors, and its duration would tell where they lie); WARN when a tenant lacks the index the
/// policy gives it, or keeps one it no longer needs, naming the command that fixes it.
pub fn evaluate_search_indexes(facts: &SearchFacts, policy: IndexPolicy) -> Check {
    const NAME: &str = "search_indexes";
    const RECONCILE: &str = "carevault search reconcile   (carevault serve also runs it every \
                             SEARCH_INDEX_INTERVAL_SECONDS when it has the owner's URL)";
    if facts.shared_index {
        return Check::fail(
            NAME,
            format!(
                "{SHARED_INDEX} holds every tenant's vectors in one graph: searches walk other tenants' rows and \
                 their duration reveals where those lie"
            ),
            format!("DROP INDEX CONCURRENTLY public.{SHARED_INDEX};   then: {RECONCILE}"),
        );
    }
    let planned = plan(&facts.indexes, policy);
    if !planned.changes.is_empty() {
        let changes = &planned.changes;
        let shown: Vec<String> = changes.iter().take(5).map(ToString::to_string).collect();
        let more = if changes.len() > shown.len() {
            format!(" and {} more", changes.len() - shown.len())
        } else {
            String::new()
        };
        return Check::warn(
            NAME,
            format!(
                "the per-tenant search indexes differ from the policy (a tenant without its index is searched exactly \
                 meanwhile, more slowly): {}{more}",
                shown.join("; ")
            ),
            RECONCILE,
        );
    }
    if !planned.over_cap.is_empty() {
        return Check::warn(
            NAME,
            format!(
                "{} tenant(s) with at least {} searchable rows get no index of their own: the cap of {} per-tenant \
                 indexes is reached (each one adds a lock and planning work to every query on documents), so they \
                 are searched exactly, more slowly",
                planned.over_cap.len(),
                policy.create_at,
                policy.max_indexes
            ),
            "raise max_locks_per_transaction with the cap (IndexPolicy::max_indexes in carevault_db::search_index), \
             or move the largest tenants to a deployment of their own",
        );
    }
    let indexed = facts.indexes.indexes.len();
    Check::pass(
        NAME,
        format!(
            "{indexed} tenant(s) have their own search index (from {} searchable rows); the others are searched exactly",
            policy.create_at
        ),
    )
}
