//! Per-tenant vector indexes: which tenants need one, and making it so (docs/ARCHITECTURE.md,
//! "Vector search").
//!
//! A tenant with at least [`IndexPolicy::create_at`] searchable rows gets its own partial HNSW
//! index, `idx_documents_embedding_t_<tenant id>`, holding that tenant's rows only; the index is
//! dropped when the tenant falls below [`IndexPolicy::drop_below`] (the gap keeps a tenant near
//! the threshold from flapping) or is deleted. Every other tenant is searched exactly. There is no
//! graph shared between tenants, so one tenant's search never walks another's vectors.
//!
//! Index DDL needs the table's owner, never the runtime role. [`reconcile`] runs on the owner's
//! pool: in `carevault serve` when it has the owner URL (the embedded default, or `DATABASE_URL`),
//! and as `carevault search reconcile` on a schedule otherwise. Counting a tenant's rows goes
//! through [`TenantTx`]: the owner itself sees no rows under FORCE ROW LEVEL SECURITY.
//!
//! Reading facts and deciding are separate ([`SearchIndexFacts::read`], [`plan`]), so the doctor
//! evaluates the same plan that [`reconcile`] carries out.

use std::fmt;

use sqlx::postgres::PgConnectOptions;
use sqlx::{AssertSqlSafe, Connection, PgConnection, PgPool};

use crate::domain::{AuditContext, TenantId};
use crate::{AppPool, DbError, PlatformPool, PlatformTx, TenantTx};

/// The name of every per-tenant index: this prefix and the tenant id as 32 hex digits.
pub const INDEX_PREFIX: &str = "idx_documents_embedding_t_";

/// The HNSW build parameters of a per-tenant index (pgvector's defaults).
const INDEX_WITH: &str = "m = 16, ef_construction = 64";

/// Memory for one index build. pgvector builds the graph in memory while it fits in
/// `maintenance_work_mem` and much more slowly on disk after that; a tenant of 20,000
/// 1024-dimension rows needs about 100 MB.
const BUILD_MEMORY: &str = "256MB";

/// The key of the session advisory lock that lets one reconciler run at a time, across replicas
/// and commands.
pub const RECONCILE_LOCK: i64 = 0x6361_7265_7661_756c; // "carevaul"

/// When a tenant has its own index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IndexPolicy {
    /// A tenant with at least this many searchable rows gets an index.
    pub create_at: i64,
    /// A tenant with an index keeps it until it has fewer than this many searchable rows.
    pub drop_below: i64,
    /// At most this many per-tenant indexes. The planner opens and locks every index of
    /// `documents` for every query on it, and tries to prove each partial index's predicate:
    /// each index costs every query a lock-table entry (the shared table holds
    /// `max_locks_per_transaction` × `max_connections`) and some planning time.
    pub max_indexes: usize,
}

impl IndexPolicy {
    /// The measured thresholds (docs/PERFORMANCE.md, "Search"): an exact scan of 1,000 rows takes
    /// about 4 ms on the development machine, so every tenant below that is answered within the
    /// latency target without an index.
    pub const DEFAULT: IndexPolicy = IndexPolicy { create_at: 1_000, drop_below: 500, max_indexes: 100 };
}

/// The index name of a tenant.
pub fn index_name(tenant: TenantId) -> String {
    format!("{INDEX_PREFIX}{}", tenant.as_uuid().simple())
}

/// The tenant an index name belongs to, when it is one of ours.
fn tenant_of(name: &str) -> Option<TenantId> {
    let hex = name.strip_prefix(INDEX_PREFIX)?;
    (hex.len() == 32).then(|| uuid::Uuid::try_parse(hex).ok().map(TenantId::from)).flatten()
}

/// One tenant, as the plan needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TenantRows {
    /// The tenant.
    pub tenant: TenantId,
    /// Its rows with an embedding and not deleted, counted up to the policy's `create_at`.
    pub searchable_rows: i64,
    /// Soft-deleted: its index goes.
    pub deleted: bool,
}

/// One per-tenant index found in the catalog.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TenantIndex {
    /// Its name.
    pub name: String,
    /// `pg_index.indisvalid AND indisready`: false while CREATE INDEX CONCURRENTLY runs, and
    /// after one failed.
    pub valid: bool,
}

/// What the plan is made from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SearchIndexFacts {
    /// Every tenant.
    pub tenants: Vec<TenantRows>,
    /// Every index named with [`INDEX_PREFIX`] on `documents`.
    pub indexes: Vec<TenantIndex>,
}

/// One change to the indexes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IndexChange {
    /// Build the tenant's index (it has reached `create_at` rows).
    Create(TenantId),
    /// Drop an invalid index (a failed or interrupted build) and build it again.
    Rebuild(TenantId),
    /// Drop an index: its tenant shrank below `drop_below`, was deleted, or does not exist.
    Drop(String),
}

impl fmt::Display for IndexChange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IndexChange::Create(tenant) => write!(f, "create the search index of tenant {tenant}"),
            IndexChange::Rebuild(tenant) => write!(f, "rebuild the invalid search index of tenant {tenant}"),
            IndexChange::Drop(name) => write!(f, "drop the search index {name}"),
        }
    }
}

/// What a pass should do.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    /// The changes, drops and rebuilds first.
    pub changes: Vec<IndexChange>,
    /// Tenants that reached `create_at` but get no index: `max_indexes` is reached.
    pub over_cap: Vec<TenantId>,
}

/// The changes that bring the indexes in line with the policy: pure, so that the doctor and
/// [`reconcile`] agree. An index whose name has the prefix but no tenant id after it (a
/// `REINDEX CONCURRENTLY` copy, `..._ccnew`) is not ours to touch.
pub fn plan(facts: &SearchIndexFacts, policy: IndexPolicy) -> Plan {
    let mut plan = Plan::default();
    let mut kept = 0;
    for index in &facts.indexes {
        let Some(id) = tenant_of(&index.name) else { continue };
        match facts.tenants.iter().find(|t| t.tenant == id) {
            Some(t) if !t.deleted && t.searchable_rows >= policy.drop_below => {
                kept += 1;
                if !index.valid {
                    plan.changes.push(IndexChange::Rebuild(t.tenant));
                }
            }
            _ => plan.changes.push(IndexChange::Drop(index.name.clone())),
        }
    }
    for t in &facts.tenants {
        let name = index_name(t.tenant);
        if !t.deleted && t.searchable_rows >= policy.create_at && !facts.indexes.iter().any(|i| i.name == name) {
            if kept < policy.max_indexes {
                kept += 1;
                plan.changes.push(IndexChange::Create(t.tenant));
            } else {
                plan.over_cap.push(t.tenant);
            }
        }
    }
    plan
}

impl SearchIndexFacts {
    /// Reads the tenants (platform path), each tenant's searchable rows (one tenant transaction
    /// each, counting up to `policy.create_at`) and the per-tenant indexes (catalog, through
    /// `catalog`, any role).
    pub async fn read(
        catalog: &PgPool,
        app: &AppPool,
        platform: &PlatformPool,
        policy: IndexPolicy,
    ) -> Result<SearchIndexFacts, DbError> {
        let mut tx = PlatformTx::begin(platform, AuditContext::default()).await?;
        let listed = tx.tenants().all_ids().await?;
        tx.commit().await?;
        let mut tenants = Vec::with_capacity(listed.len());
        for (tenant, deleted) in listed {
            let mut tx = TenantTx::begin(app, tenant, AuditContext::default()).await?;
            let searchable_rows = tx.documents().searchable_rows(policy.create_at).await?;
            tx.commit().await?;
            tenants.push(TenantRows { tenant, searchable_rows, deleted });
        }
        let indexes = sqlx::query_as::<_, (String, bool)>(
            "SELECT c.relname::text, i.indisvalid AND i.indisready \
             FROM pg_catalog.pg_index i JOIN pg_catalog.pg_class c ON c.oid = i.indexrelid \
             WHERE i.indrelid = to_regclass('public.documents') AND starts_with(c.relname::text, $1) \
             ORDER BY 1",
        )
        .bind(INDEX_PREFIX)
        .fetch_all(catalog)
        .await?
        .into_iter()
        .map(|(name, valid)| TenantIndex { name, valid })
        .collect();
        Ok(SearchIndexFacts { tenants, indexes })
    }
}

/// What [`reconcile`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReconcileOutcome {
    /// Another reconciler holds the lock; nothing was done.
    Busy,
    /// A pass ran: the changes made, in order, and those that failed with the error's text (a
    /// failure does not stop the others; the next pass tries again).
    Done {
        /// Made.
        applied: Vec<IndexChange>,
        /// Failed, with why.
        failed: Vec<(IndexChange, String)>,
    },
}

/// Brings the per-tenant indexes in line with `policy`: one pass, one reconciler at a time (a
/// session advisory lock on a connection of its own, released when it closes, whatever
/// happens). `owner` must own `documents`; `app` and `platform` count the rows.
///
/// Builds run `CREATE INDEX CONCURRENTLY`, so searches and writes go on meanwhile; a tenant's
/// search stays exact until its index is valid. A build interrupted by a crash leaves an invalid
/// index, which the next pass rebuilds.
pub async fn reconcile(
    owner: &PgPool,
    app: &AppPool,
    platform: &PlatformPool,
    policy: IndexPolicy,
) -> Result<ReconcileOutcome, DbError> {
    let options: PgConnectOptions = (*owner.connect_options()).clone();
    let mut conn = PgConnection::connect_with(&options).await?;
    let result = reconcile_on(&mut conn, owner, app, platform, policy).await;
    // Closing ends the session, which releases the advisory lock.
    if let Err(e) = conn.close().await {
        tracing::debug!("closing the reconciler's connection: {e}");
    }
    result
}

async fn reconcile_on(
    conn: &mut PgConnection,
    owner: &PgPool,
    app: &AppPool,
    platform: &PlatformPool,
    policy: IndexPolicy,
) -> Result<ReconcileOutcome, DbError> {
    let locked: bool =
        sqlx::query_scalar("SELECT pg_try_advisory_lock($1)").bind(RECONCILE_LOCK).fetch_one(&mut *conn).await?;
    if !locked {
        return Ok(ReconcileOutcome::Busy);
    }
    // The session's own settings: memory for one build; no parallel build (a parallel HNSW build
    // keeps its graph in shared memory, which a container's small /dev/shm refuses, and the
    // server's cores are the requests'); the operator class found in pgvector's schema whatever
    // the owner's search_path; and a bound on lock waits. CREATE INDEX CONCURRENTLY waits for
    // every older transaction (a lock wait, so lock_timeout applies) while it holds SHARE UPDATE
    // EXCLUSIVE on documents, which holds back autovacuum there and queues a migration behind it:
    // a session that never ends its transaction fails the build after 15 minutes instead (the
    // invalid index it leaves is rebuilt by a later pass).
    for setting in [
        format!("SET maintenance_work_mem = '{BUILD_MEMORY}'"),
        "SET max_parallel_maintenance_workers = 0".to_owned(),
        "SET search_path = pg_catalog, public".to_owned(),
        "SET lock_timeout = '15min'".to_owned(),
    ] {
        sqlx::query(AssertSqlSafe(setting)).execute(&mut *conn).await?;
    }
    let facts = SearchIndexFacts::read(owner, app, platform, policy).await?;
    let (mut applied, mut failed) = (Vec::new(), Vec::new());
    for change in plan(&facts, policy).changes {
        let started = std::time::Instant::now();
        let result = match &change {
            IndexChange::Create(tenant) => create(conn, *tenant).await,
            IndexChange::Rebuild(tenant) => match drop_index(conn, &index_name(*tenant)).await {
                Ok(()) => create(conn, *tenant).await,
                Err(e) => Err(e),
            },
            IndexChange::Drop(name) => drop_index(conn, name).await,
        };
        match result {
            Ok(()) => {
                tracing::info!(elapsed_ms = started.elapsed().as_millis() as u64, "search index: {change}");
                applied.push(change);
            }
            Err(e) => {
                tracing::warn!("search index: {change} failed: {e}");
                failed.push((change, e.to_string()));
            }
        }
    }
    Ok(ReconcileOutcome::Done { applied, failed })
}

/// The statement that builds a tenant's index. Its predicate is the search's WHERE clause with the
/// tenant as a constant, which is what lets the planner prove that the index answers the query
/// (a partial index is used only when its predicate is implied by the query's conditions).
pub fn create_statement(tenant: TenantId) -> String {
    format!(
        "CREATE INDEX CONCURRENTLY IF NOT EXISTS {name} ON public.documents \
         USING hnsw (embedding_vector vector_cosine_ops) WITH ({INDEX_WITH}) \
         WHERE tenant_id = '{tenant}'::uuid AND deleted_at IS NULL AND embedding_vector IS NOT NULL",
        name = index_name(tenant),
    )
}

async fn create(conn: &mut PgConnection, tenant: TenantId) -> Result<(), DbError> {
    // The simple query protocol: CONCURRENTLY refuses to run inside a transaction block. The
    // text is built from a typed id only (32 hex digits and a UUID), never from input.
    sqlx::raw_sql(AssertSqlSafe(create_statement(tenant))).execute(&mut *conn).await?;
    Ok(())
}

async fn drop_index(conn: &mut PgConnection, name: &str) -> Result<(), DbError> {
    let sql = format!("DROP INDEX CONCURRENTLY IF EXISTS public.{}", quote_ident(name));
    sqlx::raw_sql(AssertSqlSafe(sql)).execute(&mut *conn).await?;
    Ok(())
}

/// A double-quoted identifier (an index found by prefix may have any name after it).
fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tenant(n: u128) -> TenantId {
        TenantId::from(uuid::Uuid::from_u128(n))
    }

    fn rows(n: u128, searchable_rows: i64) -> TenantRows {
        TenantRows { tenant: tenant(n), searchable_rows, deleted: false }
    }

    fn index(n: u128, valid: bool) -> TenantIndex {
        TenantIndex { name: index_name(tenant(n)), valid }
    }

    const POLICY: IndexPolicy = IndexPolicy { create_at: 100, drop_below: 50, max_indexes: 10 };

    #[test]
    fn names_round_trip_and_fit_postgres_identifiers() {
        let name = index_name(tenant(0xabc));
        assert_eq!(name, "idx_documents_embedding_t_00000000000000000000000000000abc");
        assert!(name.len() <= 63, "NAMEDATALEN - 1");
        assert_eq!(tenant_of(&name), Some(tenant(0xabc)));
        assert_eq!(tenant_of("idx_documents_embedding_t_xyz"), None);
        assert_eq!(tenant_of("idx_documents_embedding_hnsw"), None);
    }

    #[test]
    fn the_plan_creates_at_the_threshold_keeps_in_the_gap_and_drops_below() {
        let facts = SearchIndexFacts {
            tenants: vec![rows(1, 99), rows(2, 100), rows(3, 60), rows(4, 49), rows(5, 100)],
            indexes: vec![index(3, true), index(4, true), index(5, true)],
        };
        assert_eq!(
            plan(&facts, POLICY).changes,
            vec![IndexChange::Drop(index_name(tenant(4))), IndexChange::Create(tenant(2))]
        );
    }

    #[test]
    fn the_plan_rebuilds_invalid_indexes_drops_those_of_deleted_or_unknown_tenants_and_leaves_others_alone() {
        let facts = SearchIndexFacts {
            tenants: vec![rows(1, 500), TenantRows { deleted: true, ..rows(2, 500) }],
            indexes: vec![
                index(1, false),
                index(2, true),
                index(9, true),
                TenantIndex { name: format!("{INDEX_PREFIX}stray"), valid: true },
            ],
        };
        // The stray name (a REINDEX CONCURRENTLY copy looks like one) is left alone.
        assert_eq!(
            plan(&facts, POLICY).changes,
            vec![
                IndexChange::Rebuild(tenant(1)),
                IndexChange::Drop(index_name(tenant(2))),
                IndexChange::Drop(index_name(tenant(9))),
            ]
        );
        // An invalid index of a tenant that no longer needs one is dropped, not rebuilt.
        let shrunk = SearchIndexFacts { tenants: vec![rows(1, 10)], indexes: vec![index(1, false)] };
        assert_eq!(plan(&shrunk, POLICY).changes, vec![IndexChange::Drop(index_name(tenant(1)))]);
    }

    #[test]
    fn the_plan_creates_no_more_than_the_cap_and_names_those_left_waiting() {
        let policy = IndexPolicy { max_indexes: 2, ..POLICY };
        let facts = SearchIndexFacts {
            tenants: vec![rows(1, 500), rows(2, 500), rows(3, 500), rows(4, 500)],
            indexes: vec![index(1, true)],
        };
        let planned = plan(&facts, policy);
        assert_eq!(planned.changes, vec![IndexChange::Create(tenant(2))]);
        assert_eq!(planned.over_cap, vec![tenant(3), tenant(4)]);
    }

    #[test]
    fn the_create_statement_names_the_tenant_as_a_constant() {
        let sql = create_statement(tenant(7));
        assert!(sql.contains("WHERE tenant_id = '00000000-0000-0000-0000-000000000007'::uuid"), "{sql}");
        assert!(sql.contains(&index_name(tenant(7))));
    }
}
