use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use sqlx::postgres::PgRow;
use sqlx::{FromRow, Row};

use crate::domain::{
    AuditAction, BoundedText, Cursor, Deleted, DocumentId, DocumentStatus, Embedding, Metadata, Page, PageLimit,
    TenantId, UserId,
};
use crate::error::missing_reference;
use crate::{DbError, TenantTx, ValidationError};

/// A document of a tenant (the stored file's description; the file itself is in object storage).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Document {
    /// Id.
    pub id: DocumentId,
    /// Owning tenant.
    pub tenant_id: TenantId,
    /// Uploading user (same tenant, enforced by a composite foreign key).
    pub user_id: UserId,
    /// Object key.
    pub s3_key: String,
    /// Bucket.
    pub s3_bucket: String,
    /// Original file name (PHI: never logged or audited).
    pub filename: String,
    /// MIME type.
    pub content_type: Option<String>,
    /// Size in bytes.
    pub size_bytes: Option<i64>,
    /// Processing status.
    pub status: DocumentStatus,
    /// Free-form JSON object (PHI: never logged or audited).
    pub metadata: Value,
    /// Whether an embedding is stored.
    pub has_embedding: bool,
    /// The embedding, only when asked for ([`Documents::get_with_embedding`]).
    pub embedding: Option<Vec<f32>>,
    /// Created.
    pub created_at: DateTime<Utc>,
    /// Last changed (maintained by a trigger).
    pub updated_at: DateTime<Utc>,
    /// Soft-deleted at, if deleted.
    pub deleted_at: Option<DateTime<Utc>>,
}

impl Document {
    /// Whether the document is soft-deleted.
    pub fn is_deleted(&self) -> bool {
        self.deleted_at.is_some()
    }
}

impl<'r> FromRow<'r, PgRow> for Document {
    fn from_row(row: &'r PgRow) -> Result<Document, sqlx::Error> {
        let status: String = row.try_get("status")?;
        let embedding = match row.try_get::<Option<pgvector::Vector>, _>("embedding_vector") {
            Ok(vector) => vector.map(|v| v.to_vec()),
            Err(sqlx::Error::ColumnNotFound(_)) => None,
            Err(other) => return Err(other),
        };
        Ok(Document {
            id: row.try_get("id")?,
            tenant_id: row.try_get("tenant_id")?,
            user_id: row.try_get("user_id")?,
            s3_key: row.try_get("s3_key")?,
            s3_bucket: row.try_get("s3_bucket")?,
            filename: row.try_get("filename")?,
            content_type: row.try_get("content_type")?,
            size_bytes: row.try_get("size_bytes")?,
            status: DocumentStatus::parse(&status).map_err(|e| sqlx::Error::Decode(Box::new(e)))?,
            metadata: row.try_get::<Option<Value>, _>("metadata")?.unwrap_or_else(|| json!({})),
            has_embedding: row.try_get("has_embedding")?,
            embedding,
            created_at: row.try_get("created_at")?,
            updated_at: row.try_get("updated_at")?,
            deleted_at: row.try_get("deleted_at")?,
        })
    }
}

/// A document to create.
#[derive(Debug, Clone, PartialEq)]
pub struct NewDocument {
    /// Uploading user; must be an existing user of the same tenant.
    pub user_id: UserId,
    /// Object key (at most 1024 characters).
    pub s3_key: BoundedText,
    /// Bucket (at most 255 characters).
    pub s3_bucket: BoundedText,
    /// File name (at most 512 characters).
    pub filename: BoundedText,
    /// MIME type (at most 127 characters).
    pub content_type: Option<BoundedText>,
    /// Size in bytes (not negative).
    pub size_bytes: Option<i64>,
    /// Status (`processing` by default).
    pub status: DocumentStatus,
    /// Metadata object.
    pub metadata: Metadata,
    /// Embedding.
    pub embedding: Option<Embedding>,
}

/// A change to a document; `None` leaves a field unchanged.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DocumentUpdate {
    /// New status.
    pub status: Option<DocumentStatus>,
    /// New metadata (the whole object; the API applies JSON Merge Patch before calling).
    pub metadata: Option<Metadata>,
    /// New embedding; `Some(None)` removes it.
    pub embedding: Option<Option<Embedding>>,
}

impl DocumentUpdate {
    /// The names of the fields this update sets (for the audit row: names, never values).
    pub fn field_names(&self) -> Vec<&'static str> {
        let mut names = Vec::new();
        if self.status.is_some() {
            names.push("status");
        }
        if self.metadata.is_some() {
            names.push("metadata");
        }
        if self.embedding.is_some() {
            names.push("embedding");
        }
        names
    }
}

/// Filters of [`Documents::list`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DocumentFilter {
    /// Only this status.
    pub status: Option<DocumentStatus>,
    /// Only this uploader.
    pub user_id: Option<UserId>,
    /// Deleted rows or not (excluded by default).
    pub deleted: Deleted,
}

/// The documents of the transaction's tenant.
#[derive(Debug)]
pub struct Documents<'t> {
    pub(crate) tx: &'t mut TenantTx,
}

impl TenantTx {
    /// The documents repository.
    pub fn documents(&mut self) -> Documents<'_> {
        Documents { tx: self }
    }
}

impl Documents<'_> {
    /// Creates a document (audited `document.created`). A `user_id` that is not a user of this
    /// tenant → [`DbError::NotFound`].
    #[tracing::instrument(skip_all)]
    pub async fn create(&mut self, new: NewDocument) -> Result<Document, DbError> {
        if new.size_bytes.is_some_and(|size| size < 0) {
            return Err(ValidationError::new("size_bytes", "must not be negative").into());
        }
        let tenant_id = self.tx.tenant_id();
        let document: Document = self.tx.sql().query_as(concat!(
            "INSERT INTO documents (tenant_id, user_id, s3_key, s3_bucket, filename, content_type, size_bytes, status, metadata, embedding_vector) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) RETURNING ",
            document_columns!()
        ))
        .bind(tenant_id)
        .bind(new.user_id)
        .bind(new.s3_key.as_str())
        .bind(new.s3_bucket.as_str())
        .bind(new.filename.as_str())
        .bind(new.content_type.as_ref().map(BoundedText::as_str))
        .bind(new.size_bytes)
        .bind(new.status.as_str())
        .bind(new.metadata.as_value())
        .bind(new.embedding.as_ref().map(Embedding::to_pgvector))
        .fetch_one(self.tx.conn())
        .await
        .map_err(missing_reference)?;
        self.tx.audit(AuditAction::DocumentCreated, document.id.as_uuid(), json!({})).await?;
        Ok(document)
    }

    /// A document that is not deleted, without its embedding (audited `document.read`).
    #[tracing::instrument(skip_all, fields(document_id = %id))]
    pub async fn get(&mut self, id: DocumentId) -> Result<Document, DbError> {
        // The read and its audit row in one statement: the hot path of the API.
        const SQL: &str = concat!(
            "WITH d AS (SELECT ",
            document_columns!(),
            " FROM documents WHERE tenant_id = $1 AND id = $2 AND deleted_at IS NULL), ",
            audit_cte!(),
            " SELECT * FROM d"
        );
        let details = json!({ "embedding": false });
        self.tx.fetch_audited(SQL, id.as_uuid(), AuditAction::DocumentRead, details).await?.ok_or(DbError::NotFound)
    }

    /// A document that is not deleted, with its embedding (audited `document.read`).
    #[tracing::instrument(skip_all, fields(document_id = %id))]
    pub async fn get_with_embedding(&mut self, id: DocumentId) -> Result<Document, DbError> {
        const SQL: &str = concat!(
            "SELECT ",
            document_columns!(),
            ", embedding_vector FROM documents WHERE tenant_id = $1 AND id = $2 AND deleted_at IS NULL"
        );
        self.fetch(SQL, id, true).await
    }

    /// A document that is not deleted, locked until the transaction ends (`FOR UPDATE`), for a
    /// read-modify-write such as a metadata merge patch: a concurrent one waits for this
    /// transaction and then reads its result, so no update is lost (audited `document.read`).
    #[tracing::instrument(skip_all, fields(document_id = %id))]
    pub async fn get_for_update(&mut self, id: DocumentId) -> Result<Document, DbError> {
        const SQL: &str = concat!(
            "SELECT ",
            document_columns!(),
            " FROM documents WHERE tenant_id = $1 AND id = $2 AND deleted_at IS NULL FOR UPDATE"
        );
        self.fetch(SQL, id, false).await
    }

    async fn fetch(&mut self, sql: &'static str, id: DocumentId, with_embedding: bool) -> Result<Document, DbError> {
        let tenant_id = self.tx.tenant_id();
        let document: Option<Document> =
            self.tx.sql().query_as(sql).bind(tenant_id).bind(id).fetch_optional(self.tx.conn()).await?;
        let document = document.ok_or(DbError::NotFound)?;
        self.tx.audit(AuditAction::DocumentRead, id.as_uuid(), json!({ "embedding": with_embedding })).await?;
        Ok(document)
    }

    /// A page of documents, newest first (audited `document.listed` with the count and ids).
    #[tracing::instrument(skip_all)]
    pub async fn list(
        &mut self,
        filter: DocumentFilter,
        limit: PageLimit,
        after: Option<Cursor>,
    ) -> Result<Page<Document>, DbError> {
        let tenant_id = self.tx.tenant_id();
        let rows: Vec<Document> = self
            .tx
            .sql()
            .query_as(concat!(
                "SELECT ",
                document_columns!(),
                " FROM documents \
             WHERE tenant_id = $1 \
               AND CASE $2::int WHEN 0 THEN deleted_at IS NULL WHEN 1 THEN deleted_at IS NOT NULL ELSE true END \
               AND ($3::text IS NULL OR status = $3) \
               AND ($4::uuid IS NULL OR user_id = $4) \
               AND ($5::timestamptz IS NULL OR (created_at, id) < ($5, $6)) \
             ORDER BY created_at DESC, id DESC LIMIT $7"
            ))
            .bind(tenant_id)
            .bind(filter.deleted.code())
            .bind(filter.status.map(|s| s.as_str()))
            .bind(filter.user_id)
            .bind(after.map(|c| c.created_at))
            .bind(after.map(|c| c.id))
            .bind(i64::from(limit.get()) + 1)
            .fetch_all(self.tx.conn())
            .await?;
        let page = super::into_page(rows, limit, |d| Cursor { created_at: d.created_at, id: d.id.as_uuid() });
        let ids: Vec<DocumentId> = page.items.iter().map(|d| d.id).collect();
        self.tx
            .audit(AuditAction::DocumentListed, tenant_id.as_uuid(), json!({ "count": ids.len(), "ids": ids }))
            .await?;
        Ok(page)
    }

    /// Changes a document that is not deleted (audited `document.updated` with the names of the
    /// fields set).
    #[tracing::instrument(skip_all, fields(document_id = %id))]
    pub async fn update(&mut self, id: DocumentId, update: DocumentUpdate) -> Result<Document, DbError> {
        let fields = update.field_names();
        if fields.is_empty() {
            return Err(ValidationError::new("body", "names no field to change").into());
        }
        let tenant_id = self.tx.tenant_id();
        let document: Option<Document> = self
            .tx
            .sql()
            .query_as(concat!(
                "UPDATE documents SET \
                status = coalesce($3, status), \
                metadata = coalesce($4, metadata), \
                embedding_vector = CASE WHEN $5 THEN $6 ELSE embedding_vector END \
             WHERE tenant_id = $1 AND id = $2 AND deleted_at IS NULL RETURNING ",
                document_columns!()
            ))
            .bind(tenant_id)
            .bind(id)
            .bind(update.status.map(|s| s.as_str()))
            .bind(update.metadata.as_ref().map(Metadata::as_value))
            .bind(update.embedding.is_some())
            .bind(update.embedding.as_ref().and_then(|e| e.as_ref().map(Embedding::to_pgvector)))
            .fetch_optional(self.tx.conn())
            .await?;
        let document = document.ok_or(DbError::NotFound)?;
        self.tx.audit(AuditAction::DocumentUpdated, id.as_uuid(), json!({ "fields": fields })).await?;
        Ok(document)
    }

    /// Soft-deletes a document (audited `document.deleted`). Already deleted → not found.
    #[tracing::instrument(skip_all, fields(document_id = %id))]
    pub async fn soft_delete(&mut self, id: DocumentId) -> Result<Document, DbError> {
        let tenant_id = self.tx.tenant_id();
        let document: Option<Document> = self.tx.sql().query_as(concat!(
            "UPDATE documents SET deleted_at = now() WHERE tenant_id = $1 AND id = $2 AND deleted_at IS NULL RETURNING ",
            document_columns!()
        ))
        .bind(tenant_id)
        .bind(id)
        .fetch_optional(self.tx.conn())
        .await?;
        let document = document.ok_or(DbError::NotFound)?;
        self.tx.audit(AuditAction::DocumentDeleted, id.as_uuid(), json!({})).await?;
        Ok(document)
    }

    /// Restores a soft-deleted document (audited `document.restored`). Not deleted → conflict.
    #[tracing::instrument(skip_all, fields(document_id = %id))]
    pub async fn restore(&mut self, id: DocumentId) -> Result<Document, DbError> {
        let tenant_id = self.tx.tenant_id();
        let document: Option<Document> = self.tx.sql().query_as(concat!(
            "UPDATE documents SET deleted_at = NULL WHERE tenant_id = $1 AND id = $2 AND deleted_at IS NOT NULL RETURNING ",
            document_columns!()
        ))
        .bind(tenant_id)
        .bind(id)
        .fetch_optional(self.tx.conn())
        .await?;
        let Some(document) = document else {
            let exists: bool = self
                .tx
                .sql()
                .query_scalar("SELECT EXISTS (SELECT 1 FROM documents WHERE tenant_id = $1 AND id = $2)")
                .bind(tenant_id)
                .bind(id)
                .fetch_one(self.tx.conn())
                .await?;
            return Err(if exists { DbError::Conflict("the document is not deleted") } else { DbError::NotFound });
        };
        self.tx.audit(AuditAction::DocumentRestored, id.as_uuid(), json!({})).await?;
        Ok(document)
    }
}
