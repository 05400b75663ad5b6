//! Tenant-scoped vector similarity search (docs/ARCHITECTURE.md, "Vector search").
//!
//! Correctness first: the result is never shorter than min(limit, eligible rows). The HNSW index
//! filters *after* its graph walk, so for a tenant holding a small share of the table a plain
//! `WHERE tenant_id = … ORDER BY embedding <=> q LIMIT k` silently returns fewer rows than exist.
//! pgvector 0.8's iterative scan helps, but stops at `hnsw.max_scan_tuples`. Hence:
//!
//! 1. a tenant with at most [`EXACT_SCAN_MAX_ROWS`] eligible rows is searched exactly (a
//!    sequential distance computation over its rows, found through the tenant index);
//! 2. a larger tenant goes through the index with `hnsw.iterative_scan = strict_order` (results
//!    in exact distance order); if the index yields fewer than `limit` rows, the exact scan runs
//!    instead.
//!
//! The threshold is applied to the exact scan in SQL, and to the index scan's ordered result
//! afterwards (a `WHERE distance <= …` would make the iterative scan walk until
//! `max_scan_tuples` whenever fewer rows qualify).

use serde_json::{Value, json};
use sqlx::postgres::PgRow;
use sqlx::{FromRow, Row};

use super::Documents;
use crate::domain::{AuditAction, DocumentId, DocumentStatus, Embedding};
use crate::{DbError, ValidationError};

/// Up to this many eligible rows, a tenant is searched exactly. Chosen for correctness; a later
/// issue tunes it against measured latency.
pub const EXACT_SCAN_MAX_ROWS: i64 = 2_000;

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

/// The scan that produced a result (recorded in the audit metadata as `scan`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ScanKind {
    /// Exact distance computation over the tenant's rows.
    Exact,
    /// HNSW iterative index scan.
    Index,
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
        let (hits, scan) = self.search(embedding, limit, threshold).await?;
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
                    "scan": match scan { ScanKind::Exact => "exact", ScanKind::Index => "index" },
                }),
            )
            .await?;
        Ok(hits)
    }

    /// The search itself, without the audit row, telling which scan answered.
    pub(crate) async fn search(
        &mut self,
        embedding: &Embedding,
        limit: SearchLimit,
        threshold: Threshold,
    ) -> Result<(Vec<SearchHit>, ScanKind), DbError> {
        let tenant_id = self.tx.tenant_id();
        let vector = embedding.to_pgvector();
        // Count at most EXACT_SCAN_MAX_ROWS + 1 rows: enough to choose, bounded in cost.
        let eligible: i64 = self
            .tx
            .sql()
            .query_scalar(
                "SELECT count(*) FROM (SELECT 1 FROM documents \
             WHERE tenant_id = $1 AND deleted_at IS NULL AND embedding_vector IS NOT NULL LIMIT $2) AS capped",
            )
            .bind(tenant_id)
            .bind(EXACT_SCAN_MAX_ROWS + 1)
            .fetch_one(self.tx.conn())
            .await?;

        if eligible > EXACT_SCAN_MAX_ROWS {
            // Transaction-local, like every setting of a TenantTx. ef_search must be at least the
            // limit for a full first batch; strict_order keeps exact distance order.
            self.tx
                .sql()
                .query(
                    "SELECT set_config('hnsw.iterative_scan', 'strict_order', true), \
                        set_config('hnsw.ef_search', $1, true)",
                )
                .bind(limit.get().max(40).to_string())
                .execute(self.tx.conn())
                .await?;
            let rows: Vec<SearchHit> = self
                .tx
                .sql()
                .query_as(INDEX_SCAN)
                .bind(tenant_id)
                .bind(&vector)
                .bind(i64::from(limit.get()))
                .fetch_all(self.tx.conn())
                .await?;
            if rows.len() == limit.get() as usize {
                let hits = rows.into_iter().filter(|h| h.similarity >= threshold.get()).collect();
                return Ok((hits, ScanKind::Index));
            }
            tracing::debug!(found = rows.len(), "index scan came back short; falling back to an exact scan");
        }

        let hits = self
            .tx
            .sql()
            .query_as(EXACT_SCAN)
            .bind(tenant_id)
            .bind(&vector)
            .bind(threshold.get())
            .bind(i64::from(limit.get()))
            .fetch_all(self.tx.conn())
            .await?;
        Ok((hits, ScanKind::Exact))
    }
}
