//! Tenant-scoped vector similarity search (docs/ARCHITECTURE.md, "Vector search").
//!
//! A search only ever touches the tenant's own rows: exactly below 1,000 searchable rows, and
//! approximately above, with the recall measured in docs/PERFORMANCE.md ("Search"):
//!
//! 1. a tenant with its own HNSW index (`crate::search_index`: tenants from 1,000 searchable
//!    rows) is searched through it: the index holds that tenant's rows and nothing else, so no
//!    result is filtered away after the graph walk and no other tenant's vectors are visited;
//! 2. every other tenant, and a tenant whose index is being built, is searched exactly: the
//!    distance to each of its rows, found through the tenant index, then the top `limit`.
//!
//! The plan is forced, not hoped for. sqlx prepares every statement, and PostgreSQL plans a
//! prepared statement generically after five executions; a generic plan cannot prove that
//! `tenant_id = $1` matches a partial index's `tenant_id = '…'`, so it would silently fall back to
//! sorting every row of the tenant. When the index will answer, the search transaction therefore
//! sets `plan_cache_mode = force_custom_plan`, and `enable_sort = off` so that the planner prefers
//! the ordered index scan to an estimate-driven top-N sort (the exact fallback sorts a
//! materialized CTE and has no other plan, so the setting does not change it). The suite checks
//! the plan through the index's scan counter (`tests/db/search.rs`).
//!
//! The threshold is applied to the exact scan in SQL, and to the index scan's ordered result
//! afterwards (a `WHERE distance <= …` would make the iterative scan walk until
//! `max_scan_tuples` whenever fewer rows qualify).

use serde_json::{Value, json};
use sqlx::postgres::PgRow;
use sqlx::{FromRow, Row};

use super::Documents;
use crate::domain::{AuditAction, DocumentId, DocumentStatus, Embedding};
use crate::search_index::index_name;
use crate::{DbError, ValidationError};

/// The candidate list of an index scan (`hnsw.ef_search`), at least the limit. Measured against
/// the recall target in docs/PERFORMANCE.md ("Search").
pub const EF_SEARCH: u32 = 200;

/// How many results a search returns: 1 to 100, 10 by default.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SearchLimit(u32);

impl SearchLimit {
    /// The largest limit.
    pub const MAX: u32 = 100;

    /// Validates a limit.
    pub fn parse(limit: u32) -> Result<SearchLimit, ValidationError> {
        if (1..=Self::MAX).contains(&limit) {
            Ok(SearchLimit(limit))
        } else {
            Err(ValidationError::new("limit", "must be between 1 and 100"))
        }
    }

    /// The limit.
    pub fn get(&self) -> u32 {
        self.0
    }
}

impl Default for SearchLimit {
    fn default() -> SearchLimit {
        SearchLimit(10)
    }
}

/// The lowest similarity (`1 - cosine distance`) a result may have: a finite number in
/// [-1, 1], 0.7 by default.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Threshold(f64);

impl Threshold {
    /// Validates a threshold.
    pub fn parse(threshold: f64) -> Result<Threshold, ValidationError> {
        if threshold.is_finite() && (-1.0..=1.0).contains(&threshold) {
            Ok(Threshold(threshold))
        } else {
            Err(ValidationError::new("threshold", "must be a number between -1 and 1"))
        }
    }

    /// The threshold.
    pub fn get(&self) -> f64 {
        self.0
    }
}

impl Default for Threshold {
    fn default() -> Threshold {
        Threshold(0.7)
    }
}

/// One search result, nearest first.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct SearchHit {
    /// Document id.
    pub id: DocumentId,
    /// File name.
    pub filename: String,
    /// Status.
    pub status: DocumentStatus,
    /// Metadata.
    pub metadata: Value,
    /// Cosine distance (0 = same direction, 2 = opposite).
    pub distance: f64,
    /// `1 - distance`.
    pub similarity: f64,
}

impl<'r> FromRow<'r, PgRow> for SearchHit {
    fn from_row(row: &'r PgRow) -> Result<SearchHit, sqlx::Error> {
        let status: String = row.try_get("status")?;
        Ok(SearchHit {
            id: row.try_get("id")?,
            filename: row.try_get("filename")?,
            status: DocumentStatus::parse(&status).map_err(|e| sqlx::Error::Decode(Box::new(e)))?,
            metadata: row.try_get::<Option<Value>, _>("metadata")?.unwrap_or_else(|| json!({})),
            distance: row.try_get("distance")?,
            similarity: row.try_get("similarity")?,
        })
    }
}

/// A stored vector outside `Embedding`'s bounds (written before them, or by a direct database
/// writer) can have a NaN distance, and PostgreSQL orders NaN above every number, so
/// `1 - distance >= $3` alone would return it (found by the schema fuzzer as a `null` distance).
/// The index scan's threshold is applied in Rust with `filter`, where a NaN comparison is false
/// (a `take_while` would also drop the valid rows after a NaN one).
const EXACT_SCAN: &str = "WITH candidates AS MATERIALIZED ( \
        SELECT id, filename, status, metadata, embedding_vector <=> $2 AS distance \
        FROM documents \
        WHERE tenant_id = $1 AND deleted_at IS NULL AND embedding_vector IS NOT NULL) \
     SELECT id, filename, status, metadata, distance, 1 - distance AS similarity \
     FROM candidates WHERE 1 - distance >= $3 AND distance <> 'NaN' \
     ORDER BY distance, id LIMIT $4";

/// Whether the tenant's own index is ready, and the settings of the index scan (all
/// transaction-local, like every setting of a TenantTx). The plan settings apply only when the
/// index will answer: the exact scan and the audit insert keep their cached plans.
const PREPARE: &str = "WITH tier AS (SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_index \
            WHERE indexrelid = to_regclass($1) AND indrelid = to_regclass('public.documents') \
              AND indisvalid AND indisready) AS indexed) \
     SELECT indexed, \
        set_config('plan_cache_mode', \
            CASE WHEN indexed THEN 'force_custom_plan' ELSE current_setting('plan_cache_mode') END, true), \
        set_config('enable_sort', CASE WHEN indexed THEN 'off' ELSE current_setting('enable_sort') END, true), \
        set_config('hnsw.ef_search', $2, true), \
        set_config('hnsw.iterative_scan', 'strict_order', true) \
     FROM tier";

const INDEX_SCAN: &str = "SELECT id, filename, status, metadata, \
            embedding_vector <=> $2 AS distance, 1 - (embedding_vector <=> $2) AS similarity \
     FROM documents \
     WHERE tenant_id = $1 AND deleted_at IS NULL AND embedding_vector IS NOT NULL \
     ORDER BY embedding_vector <=> $2 LIMIT $3";

impl Documents<'_> {
    /// The tenant's nearest documents to `embedding` with similarity ≥ `threshold`, nearest
    /// first (audited `document.searched` with the count and the returned ids).
    #[tracing::instrument(skip_all, fields(limit = limit.get()))]
    pub async fn similarity_search(
        &mut self,
        embedding: &Embedding,
        limit: SearchLimit,
        threshold: Threshold,
    ) -> Result<Vec<SearchHit>, DbError> {
        let hits = self.search(embedding, limit, threshold).await?;
        let ids: Vec<DocumentId> = hits.iter().map(|h| h.id).collect();
        let tenant_id = self.tx.tenant_id();
        self.tx
            .audit(
                AuditAction::DocumentSearched,
                tenant_id.as_uuid(),
                json!({
                    "count": ids.len(),
                    "ids": ids,
                    "limit": limit.get(),
                    "threshold": threshold.get(),
                }),
            )
            .await?;
        Ok(hits)
    }

    /// The search itself, without the audit row. Which structure answered is not recorded: the
    /// audit log would otherwise tell its readers the tenant's size class and when its index was
    /// built, and the issue that introduced the tiers asks for no such field.
    async fn search(
        &mut self,
        embedding: &Embedding,
        limit: SearchLimit,
        threshold: Threshold,
    ) -> Result<Vec<SearchHit>, DbError> {
        let tenant_id = self.tx.tenant_id();
        let vector = embedding.to_pgvector();
        let (indexed,): (bool,) = self
            .tx
            .sql()
            .query_as(PREPARE)
            .bind(format!("public.{}", index_name(tenant_id)))
            .bind(limit.get().max(EF_SEARCH).to_string())
            .fetch_one(self.tx.conn())
            .await?;

        if indexed {
            let mut rows: Vec<SearchHit> = self
                .tx
                .sql()
                .query_as(INDEX_SCAN)
                .bind(tenant_id)
                .bind(&vector)
                .bind(i64::from(limit.get()))
                .fetch_all(self.tx.conn())
                .await?;
            // A NaN distance (see EXACT_SCAN) fails every comparison, so `is_finite` drops it.
            rows.retain(|h| h.distance.is_finite());
            // The index holds at least `drop_below` rows, more than any limit: a short answer means
            // dead entries not yet vacuumed, or a NaN row; the exact scan is then the answer.
            if rows.len() == limit.get() as usize {
                rows.sort_by(|a, b| a.distance.total_cmp(&b.distance).then(a.id.cmp(&b.id)));
                rows.retain(|h| h.similarity >= threshold.get());
                return Ok(rows);
            }
            tracing::debug!(found = rows.len(), "index scan came back short; falling back to an exact scan");
        }

        Ok(self
            .tx
            .sql()
            .query_as(EXACT_SCAN)
            .bind(tenant_id)
            .bind(&vector)
            .bind(threshold.get())
            .bind(i64::from(limit.get()))
            .fetch_all(self.tx.conn())
            .await?)
    }

    /// The tenant's searchable rows (an embedding, not deleted), counted up to `cap`: what
    /// `crate::search_index` decides on. A count, no document: not audited.
    pub(crate) async fn searchable_rows(&mut self, cap: i64) -> Result<i64, DbError> {
        let tenant_id = self.tx.tenant_id();
        Ok(self
            .tx
            .sql()
            .query_scalar(
                "SELECT count(*) FROM (SELECT 1 FROM documents \
                 WHERE tenant_id = $1 AND deleted_at IS NULL AND embedding_vector IS NOT NULL LIMIT $2) AS capped",
            )
            .bind(tenant_id)
            .bind(cap)
            .fetch_one(self.tx.conn())
            .await?)
    }
}
