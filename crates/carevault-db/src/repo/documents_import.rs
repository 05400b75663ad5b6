//! Bulk creation of documents: one statement and one audit row for up to
//! [`MAX_IMPORT_BATCH`] documents (`POST /documents/batch`, `carevault documents import`).

use std::collections::HashMap;

use serde_json::json;

use super::documents::{Document, Documents, NewDocument};
use crate::domain::{AuditAction, BoundedText, DocumentId, Embedding};
use crate::error::missing_reference;
use crate::{DbError, ValidationError};

/// The most documents [`Documents::create_many`] takes at once. It also bounds the `ids` of the
/// batch's audit row, so that one row never grows without limit.
pub const MAX_IMPORT_BATCH: usize = 1000;

impl Documents<'_> {
    /// Creates 1 to [`MAX_IMPORT_BATCH`] documents in one statement, audited by ONE row
    /// `document.imported` (resource: the tenant) with `{"count": N, "ids": [...]}`. The documents
    /// come back in the order given. A `user_id` that is not a user of this tenant →
    /// [`DbError::NotFound`] and nothing is inserted (the statement fails as a whole).
    #[tracing::instrument(skip_all, fields(count = new.len()))]
    pub async fn create_many(&mut self, new: Vec<NewDocument>) -> Result<Vec<Document>, DbError> {
        if new.is_empty() || new.len() > MAX_IMPORT_BATCH {
            return Err(ValidationError::new("documents", "must hold 1 to 1000 documents").into());
        }
        if new.iter().any(|d| d.size_bytes.is_some_and(|size| size < 0)) {
            return Err(ValidationError::new("size_bytes", "must not be negative").into());
        }
        // The ids are chosen here, not by the column default, so that the rows can be put back in
        // the caller's order: PostgreSQL does not promise that RETURNING follows insertion order.
        let ids: Vec<uuid::Uuid> = new.iter().map(|_| DocumentId::new_random().as_uuid()).collect();
        let user_ids: Vec<uuid::Uuid> = new.iter().map(|d| d.user_id.as_uuid()).collect();
        let s3_keys: Vec<&str> = new.iter().map(|d| d.s3_key.as_str()).collect();
        let s3_buckets: Vec<&str> = new.iter().map(|d| d.s3_bucket.as_str()).collect();
        let filenames: Vec<&str> = new.iter().map(|d| d.filename.as_str()).collect();
        let content_types: Vec<Option<&str>> =
            new.iter().map(|d| d.content_type.as_ref().map(BoundedText::as_str)).collect();
        let sizes: Vec<Option<i64>> = new.iter().map(|d| d.size_bytes).collect();
        let statuses: Vec<&str> = new.iter().map(|d| d.status.as_str()).collect();
        let metadata: Vec<&serde_json::Value> = new.iter().map(|d| d.metadata.as_value()).collect();
        let embeddings: Vec<Option<pgvector::Vector>> =
            new.iter().map(|d| d.embedding.as_ref().map(Embedding::to_pgvector)).collect();
        let tenant_id = self.tx.tenant_id();
        // One INSERT over `unnest` of one array per column: a single round trip and a single plan
        // whatever the batch size (COPY would be faster but is refused on a table with RLS).
        let rows: Vec<Document> = self
            .tx
            .sql()
            .query_as(concat!(
                "INSERT INTO documents (id, tenant_id, user_id, s3_key, s3_bucket, filename, content_type, size_bytes, status, metadata, embedding_vector) \
                 SELECT u.id, $1, u.user_id, u.s3_key, u.s3_bucket, u.filename, u.content_type, u.size_bytes, u.status, u.metadata, u.embedding \
                 FROM unnest($2::uuid[], $3::uuid[], $4::text[], $5::text[], $6::text[], $7::text[], $8::int8[], $9::text[], $10::jsonb[], $11::vector[]) \
                   AS u(id, user_id, s3_key, s3_bucket, filename, content_type, size_bytes, status, metadata, embedding) \
                 RETURNING ",
                document_columns!()
            ))
            .bind(tenant_id)
            .bind(&ids)
            .bind(&user_ids)
            .bind(&s3_keys)
            .bind(&s3_buckets)
            .bind(&filenames)
            .bind(&content_types)
            .bind(&sizes)
            .bind(&statuses)
            .bind(&metadata)
            .bind(&embeddings)
            .fetch_all(self.tx.conn())
            .await
            .map_err(missing_reference)?;
        let position: HashMap<uuid::Uuid, usize> = ids.iter().enumerate().map(|(i, id)| (*id, i)).collect();
        let mut documents = rows;
        documents.sort_by_key(|d| position.get(&d.id.as_uuid()).copied().unwrap_or(usize::MAX));
        self.tx
            .audit(AuditAction::DocumentImported, tenant_id.as_uuid(), json!({ "count": ids.len(), "ids": ids }))
            .await?;
        Ok(documents)
    }
}
