//! The HNSW index of the embeddings.

use sqlx::PgPool;

use super::Check;
use crate::DbError;

/// `idx_documents_embedding_hnsw`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexFacts {
    /// Whether it exists (on `public.documents`).
    pub present: bool,
    /// `pg_index.indisvalid` (false after a failed CREATE INDEX CONCURRENTLY).
    pub valid: bool,
    /// `pg_index.indisready`.
    pub ready: bool,
    /// Its access method (`hnsw`).
    pub method: String,
}

pub(super) async fn index_facts(pool: &PgPool) -> Result<IndexFacts, DbError> {
    let row: Option<(bool, bool, String)> = sqlx::query_as(
        "SELECT i.indisvalid, i.indisready, am.amname::text \
         FROM pg_catalog.pg_index i JOIN pg_catalog.pg_class c ON c.oid = i.indexrelid \
         JOIN pg_catalog.pg_am am ON am.oid = c.relam \
         WHERE i.indexrelid = to_regclass('public.idx_documents_embedding_hnsw') \
           AND i.indrelid = to_regclass('public.documents')",
    )
    .fetch_optional(pool)
    .await?;
    Ok(match row {
        Some((valid, ready, method)) => IndexFacts { present: true, valid, ready, method },
        None => IndexFacts { present: false, valid: false, ready: false, method: String::new() },
    })
}

/// The HNSW index exists and is valid.
pub fn evaluate_vector_index(facts: &IndexFacts) -> Check {
    const NAME: &str = "vector_index";
    const CREATE: &str = "CREATE INDEX CONCURRENTLY idx_documents_embedding_hnsw ON public.documents USING hnsw \
                          (embedding_vector vector_cosine_ops) WITH (m = 16, ef_construction = 64) \
                          WHERE embedding_vector IS NOT NULL AND deleted_at IS NULL;";
    if !facts.present {
        return Check::fail(NAME, "idx_documents_embedding_hnsw is missing: similarity search scans every row", CREATE);
    }
    if facts.method != "hnsw" {
        return Check::fail(
            NAME,
            format!("idx_documents_embedding_hnsw uses {}, not hnsw", facts.method),
            format!("DROP INDEX CONCURRENTLY public.idx_documents_embedding_hnsw; {CREATE}"),
        );
    }
    if !facts.valid || !facts.ready {
        return Check::fail(
            NAME,
            "idx_documents_embedding_hnsw is invalid (an interrupted CREATE INDEX CONCURRENTLY?): the planner ignores it",
            "REINDEX INDEX CONCURRENTLY public.idx_documents_embedding_hnsw;",
        );
    }
    Check::pass(NAME, "idx_documents_embedding_hnsw present and valid")
}
