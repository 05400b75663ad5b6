//! `/documents`: read and searched by everyone, written by members and admins.

use axum::Json;
use axum::extract::Path;
use axum::http::{HeaderMap, StatusCode};
use carevault_db::repo::{Document, DocumentFilter, DocumentUpdate, NewDocument, SearchHit, SearchLimit, Threshold};
use carevault_db::{DocumentId, DocumentStatus, Embedding, Metadata, UserId, ValidationError};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::etag::{EtagHeader, check_if_match, etag_header, has_if_match};
use super::{ListResponse, PageQuery, double_option, not_null, optional_integer, parse_deleted, parse_id};
use crate::extract::{ApiJson, ApiQuery, Authed, Member, Viewer};
use crate::{ApiError, ErrorCode, schema};

/// A document.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct DocumentResponse {
    /// Id.
    pub id: uuid::Uuid,
    /// Uploading user.
    pub user_id: uuid::Uuid,
    /// File name.
    pub filename: String,
    /// Object key.
    pub s3_key: String,
    /// Bucket.
    pub s3_bucket: String,
    /// MIME type.
    pub content_type: Option<String>,
    /// Size in bytes.
    pub size_bytes: Option<i64>,
    /// `processing`, `completed` or `failed`.
    pub status: String,
    /// Free-form JSON object.
    #[schema(value_type = Object)]
    pub metadata: Value,
    /// Whether an embedding is stored.
    pub has_embedding: bool,
    /// The embedding, only with `?include=embedding`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub embedding: Option<Vec<f32>>,
    /// Created.
    pub created_at: DateTime<Utc>,
    /// Last changed.
    pub updated_at: DateTime<Utc>,
    /// Soft-deleted at.
    pub deleted_at: Option<DateTime<Utc>>,
}

impl From<Document> for DocumentResponse {
    fn from(d: Document) -> DocumentResponse {
        DocumentResponse {
            id: d.id.as_uuid(),
            user_id: d.user_id.as_uuid(),
            filename: d.filename,
            s3_key: d.s3_key,
            s3_bucket: d.s3_bucket,
            content_type: d.content_type,
            size_bytes: d.size_bytes,
            status: d.status.as_str().to_string(),
            metadata: d.metadata,
            has_embedding: d.has_embedding,
            embedding: d.embedding,
            created_at: d.created_at,
            updated_at: d.updated_at,
            deleted_at: d.deleted_at,
        }
    }
}

/// `POST /documents`. The uploader is the caller.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateDocumentRequest {
    /// File name.
    #[schema(value_type = schema::Text512)]
    pub filename: String,
    /// Object key.
    #[schema(value_type = schema::Text1024)]
    pub s3_key: String,
    /// Bucket.
    #[schema(value_type = schema::Text255)]
    pub s3_bucket: String,
    /// MIME type.
    #[schema(value_type = Option<schema::Text127>)]
    pub content_type: Option<String>,
    /// Size in bytes.
    #[serde(default, deserialize_with = "optional_integer")]
    #[schema(minimum = 0, maximum = 9_223_372_036_854_775_807_i64)]
    pub size_bytes: Option<i64>,
    /// `processing` (default), `completed` or `failed`.
    #[schema(value_type = Option<schema::DocumentStatusName>)]
    pub status: Option<String>,
    /// Metadata (default `{}`).
    #[schema(value_type = Option<schema::MetadataObject>)]
    pub metadata: Option<Value>,
    /// The embedding.
    #[schema(value_type = Option<schema::EmbeddingValues>)]
    pub embedding: Option<Vec<f64>>,
}

impl CreateDocumentRequest {
    /// The document to create for `user_id`, every field parsed by its domain type: the one
    /// statement of the rules of a new document, for `POST /documents`, `POST /documents/batch`
    /// and `carevault documents import`. The refusal names the field, never the value.
    pub fn into_new_document(self, user_id: UserId) -> Result<NewDocument, ValidationError> {
        let new = NewDocument {
            user_id,
            filename: schema::Text512::parse("filename", &self.filename)?,
            s3_key: schema::Text1024::parse("s3_key", &self.s3_key)?,
            s3_bucket: schema::Text255::parse("s3_bucket", &self.s3_bucket)?,
            content_type: self
                .content_type
                .as_deref()
                .map(|text| schema::Text127::parse("content_type", text))
                .transpose()?,
            size_bytes: self.size_bytes,
            status: self
                .status
                .as_deref()
                .map(DocumentStatus::parse)
                .transpose()?
                .unwrap_or(DocumentStatus::Processing),
            metadata: self.metadata.map(Metadata::parse).transpose()?.unwrap_or_else(Metadata::empty),
            embedding: self.embedding.map(Embedding::parse).transpose()?,
        };
        // The repository checks it too; here it is refused before any transaction opens.
        if new.size_bytes.is_some_and(|size| size < 0) {
            return Err(ValidationError::new("size_bytes", "must not be negative"));
        }
        Ok(new)
    }
}

/// `PATCH /documents/{id}`: only the fields present change; at least one must be.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(min_properties = 1)]
pub struct UpdateDocumentRequest {
    /// New status (not `null`).
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = schema::DocumentStatusName)]
    pub status: Option<Option<String>>,
    /// A JSON Merge Patch (RFC 7396) applied to the stored metadata: `null` members remove (the
    /// patch itself is not `null`).
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = schema::MetadataObject)]
    pub metadata: Option<Option<Value>>,
    /// A new embedding; `null` removes it.
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<schema::EmbeddingValues>)]
    pub embedding: Option<Option<Vec<f64>>>,
}

/// `GET /documents` filters.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DocumentListQuery {
    /// Only this status.
    #[param(value_type = Option<schema::DocumentStatusName>)]
    pub status: Option<String>,
    /// Only this uploader.
    #[param(value_type = Option<uuid::Uuid>)]
    pub user_id: Option<String>,
    /// `exclude` (default), `only` or `include` soft-deleted documents.
    #[param(value_type = Option<schema::DeletedFilter>)]
    pub deleted: Option<String>,
    /// Rows per page: 1 to 200, default 50.
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<u32>,
    /// The `next_cursor` of the previous page.
    #[param(value_type = Option<schema::PageCursor>)]
    pub cursor: Option<String>,
}

/// `GET /documents/{id}` options.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct GetDocumentQuery {
    /// `embedding` to include the embedding.
    #[param(value_type = Option<schema::DocumentInclude>)]
    pub include: Option<String>,
}

/// `POST /documents/search`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SearchRequest {
    /// The query embedding.
    #[schema(value_type = schema::EmbeddingValues)]
    pub embedding: Vec<f64>,
    /// 1 to 100, default 10.
    #[serde(default, deserialize_with = "optional_integer")]
    #[schema(minimum = 1, maximum = 100)]
    pub limit: Option<u32>,
    /// The lowest similarity returned, -1 to 1, default 0.7.
    #[schema(minimum = -1, maximum = 1)]
    pub threshold: Option<f64>,
}

/// One search result.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct SearchResult {
    /// Document id.
    pub id: uuid::Uuid,
    /// File name.
    pub filename: String,
    /// Status.
    pub status: String,
    /// Metadata.
    #[schema(value_type = Object)]
    pub metadata: Value,
    /// Cosine distance.
    pub distance: f64,
    /// `1 - distance`.
    pub similarity: f64,
}

/// The answer of a search, nearest first.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct SearchResponse {
    /// The results.
    pub results: Vec<SearchResult>,
}

impl From<SearchHit> for SearchResult {
    fn from(h: SearchHit) -> SearchResult {
        SearchResult {
            id: h.id.as_uuid(),
            filename: h.filename,
            status: h.status.as_str().to_string(),
            metadata: h.metadata,
            distance: h.distance,
            similarity: h.similarity,
        }
    }
}

/// Creates a document (member, admin; audited `document.created`).
#[utoipa::path(post, path = "/api/v1/documents", operation_id = "createDocument", tag = "documents", security(("bearer" = [])), request_body = CreateDocumentRequest,
    responses((status = 201, description = "The document, created", body = DocumentResponse), (status = 422, description = "Invalid input; the error envelope names the field", body = crate::error::ErrorEnvelope)))]
pub async fn create(
    authed: Authed<Member>,
    ApiJson(body): ApiJson<CreateDocumentRequest>,
) -> Result<(StatusCode, Json<DocumentResponse>), ApiError> {
    let new = body.into_new_document(authed.user.id)?;
    let mut tx = authed.begin().await?;
    let document = tx.documents().create(new).await?;
    tx.commit().await?;
    Ok((StatusCode::CREATED, Json(document.into())))
}

/// Lists documents, newest first (audited `document.listed`).
#[utoipa::path(get, path = "/api/v1/documents", operation_id = "listDocuments", tag = "documents", security(("bearer" = [])), params(DocumentListQuery),
    responses((status = 200, description = "A page of the tenant's documents", body = ListResponse<DocumentResponse>)))]
pub async fn list(
    authed: Authed<Viewer>,
    ApiQuery(query): ApiQuery<DocumentListQuery>,
) -> Result<Json<ListResponse<DocumentResponse>>, ApiError> {
    let filter = DocumentFilter {
        status: query.status.as_deref().map(DocumentStatus::parse).transpose()?,
        user_id: query.user_id.as_deref().map(parse_id::<UserId>).transpose()?,
        deleted: parse_deleted(query.deleted.as_deref())?,
    };
    let (limit, cursor) = PageQuery { limit: query.limit, cursor: query.cursor }.parse()?;
    let mut tx = authed.begin().await?;
    let page = tx.documents().list(filter, limit, cursor).await?;
    tx.commit().await?;
    Ok(Json(ListResponse::from_page(page, DocumentResponse::from)))
}

/// A document (audited `document.read`); `?include=embedding` adds its embedding.
#[utoipa::path(get, path = "/api/v1/documents/{id}", operation_id = "getDocument", tag = "documents", security(("bearer" = [])),
    params(("id" = uuid::Uuid, Path), GetDocumentQuery),
    responses((status = 200, description = "The document", body = DocumentResponse, headers(("ETag" = String, description = "The version, for If-Match"))),
        (status = 404, description = "No such document in the caller's tenant", body = crate::error::ErrorEnvelope)))]
pub async fn get(
    authed: Authed<Viewer>,
    Path(id): Path<String>,
    ApiQuery(query): ApiQuery<GetDocumentQuery>,
) -> Result<(EtagHeader, Json<DocumentResponse>), ApiError> {
    let id: DocumentId = parse_id(&id)?;
    let with_embedding = match query.include.as_deref() {
        None => false,
        Some(schema::DocumentInclude::EMBEDDING) => true,
        Some(_) => return Err(ApiError::new(ErrorCode::Val003).with_message("include: only `embedding` is supported")),
    };
    let mut tx = authed.begin().await?;
    let document =
        if with_embedding { tx.documents().get_with_embedding(id).await? } else { tx.documents().get(id).await? };
    tx.commit().await?;
    Ok((etag_header(&document), Json(document.into())))
}

/// Changes a document (member, admin; audited `document.updated` with the names of the fields
/// set). `metadata` is a JSON Merge Patch. With `If-Match`, only the version it names changes.
#[utoipa::path(patch, path = "/api/v1/documents/{id}", operation_id = "updateDocument", tag = "documents", security(("bearer" = [])),
    params(("id" = uuid::Uuid, Path), ("If-Match" = Option<String>, Header, description = super::etag::IF_MATCH_CHANGE)),
    request_body = UpdateDocumentRequest, responses((status = 200, description = "The document, updated", body = DocumentResponse), (status = 404, description = "No such document in the caller's tenant", body = crate::error::ErrorEnvelope),
        (status = 412, description = "If-Match names another version", body = crate::error::ErrorEnvelope)))]
pub async fn update(
    authed: Authed<Member>,
    Path(id): Path<String>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<UpdateDocumentRequest>,
) -> Result<(EtagHeader, Json<DocumentResponse>), ApiError> {
    let id: DocumentId = parse_id(&id)?;
    let status = not_null("status", body.status)?.as_deref().map(DocumentStatus::parse).transpose()?;
    let embedding = body.embedding.map(|e| e.map(Embedding::parse).transpose()).transpose()?;
    let patch = not_null("metadata", body.metadata)?;
    if let Some(patch) = &patch
        && !patch.is_object()
    {
        return Err(ApiError::new(ErrorCode::Val003).with_message("metadata: must be a JSON object (a merge patch)"));
    }
    let mut tx = authed.begin().await?;
    // The merge patch applies to the stored metadata, read in the same transaction and locked
    // until commit, so concurrent patches apply one after the other and none is lost (the read is
    // audited as `document.read`, the write as `document.updated`). If-Match is checked on the
    // same locked read.
    let current = if patch.is_some() || has_if_match(&headers) {
        let current = tx.documents().get_for_update(id).await?;
        check_if_match(&headers, &current)?;
        Some(current)
    } else {
        None
    };
    let metadata = match (patch, current) {
        (Some(patch), Some(current)) => {
            let mut metadata = current.metadata;
            merge_patch(&mut metadata, patch);
            Some(Metadata::parse(metadata)?)
        }
        _ => None,
    };
    let document = tx.documents().update(id, DocumentUpdate { status, metadata, embedding }).await?;
    tx.commit().await?;
    Ok((etag_header(&document), Json(document.into())))
}

/// Soft-deletes a document (member, admin; audited `document.deleted`). With `If-Match`, only
/// the version it names.
#[utoipa::path(delete, path = "/api/v1/documents/{id}", operation_id = "deleteDocument", tag = "documents", security(("bearer" = [])),
    params(("id" = uuid::Uuid, Path), ("If-Match" = Option<String>, Header, description = super::etag::IF_MATCH_DELETE)),
    responses((status = 200, description = "The document, soft-deleted", body = DocumentResponse), (status = 404, description = "No such document in the caller's tenant", body = crate::error::ErrorEnvelope),
        (status = 412, description = "If-Match names another version", body = crate::error::ErrorEnvelope)))]
pub async fn delete(
    authed: Authed<Member>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<(EtagHeader, Json<DocumentResponse>), ApiError> {
    let id: DocumentId = parse_id(&id)?;
    let mut tx = authed.begin().await?;
    if has_if_match(&headers) {
        let current = tx.documents().get_for_update(id).await?;
        check_if_match(&headers, &current)?;
    }
    let document = tx.documents().soft_delete(id).await?;
    tx.commit().await?;
    Ok((etag_header(&document), Json(document.into())))
}

/// Restores a soft-deleted document (member, admin; audited `document.restored`).
#[utoipa::path(post, path = "/api/v1/documents/{id}/restore", operation_id = "restoreDocument", tag = "documents", security(("bearer" = [])), params(("id" = uuid::Uuid, Path)),
    responses((status = 200, description = "The document, restored", body = DocumentResponse), (status = 404, description = "No such document in the caller's tenant", body = crate::error::ErrorEnvelope), (status = 409, description = "The document is not deleted", body = crate::error::ErrorEnvelope)))]
pub async fn restore(authed: Authed<Member>, Path(id): Path<String>) -> Result<Json<DocumentResponse>, ApiError> {
    let id: DocumentId = parse_id(&id)?;
    let mut tx = authed.begin().await?;
    let document = tx.documents().restore(id).await?;
    tx.commit().await?;
    Ok(Json(document.into()))
}

/// The caller's tenant's nearest documents (audited `document.searched`).
#[utoipa::path(post, path = "/api/v1/documents/search", operation_id = "searchDocuments", tag = "documents", security(("bearer" = [])), request_body = SearchRequest,
    responses((status = 200, description = "The tenant's nearest documents, nearest first", body = SearchResponse), (status = 422, description = "Invalid input; the error envelope names the field", body = crate::error::ErrorEnvelope)))]
pub async fn search(
    authed: Authed<Viewer>,
    ApiJson(body): ApiJson<SearchRequest>,
) -> Result<Json<SearchResponse>, ApiError> {
    let embedding = Embedding::parse(body.embedding)?;
    let limit = body.limit.map(SearchLimit::parse).transpose()?.unwrap_or_default();
    let threshold = body.threshold.map(Threshold::parse).transpose()?.unwrap_or_default();
    let mut tx = authed.begin().await?;
    let hits = tx.documents().similarity_search(&embedding, limit, threshold).await?;
    tx.commit().await?;
    Ok(Json(SearchResponse { results: hits.into_iter().map(SearchResult::from).collect() }))
}

/// JSON Merge Patch (RFC 7396): objects merge recursively, `null` removes a member, anything
/// else replaces.
fn merge_patch(target: &mut Value, patch: Value) {
    match patch {
        Value::Object(members) => {
            if !target.is_object() {
                *target = Value::Object(serde_json::Map::new());
            }
            if let Value::Object(map) = target {
                for (key, value) in members {
                    if value.is_null() {
                        map.remove(&key);
                    } else {
                        merge_patch(map.entry(key).or_insert(Value::Null), value);
                    }
                }
            }
        }
        other => *target = other,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::merge_patch;

    #[test]
    fn merge_patch_follows_rfc_7396() {
        // The examples of RFC 7396 §3 / Appendix A.
        let cases = [
            (json!({"a":"b"}), json!({"a":"c"}), json!({"a":"c"})),
            (json!({"a":"b"}), json!({"b":"c"}), json!({"a":"b","b":"c"})),
            (json!({"a":"b"}), json!({"a":null}), json!({})),
            (json!({"a":"b","b":"c"}), json!({"a":null}), json!({"b":"c"})),
            (json!({"a":["b"]}), json!({"a":"c"}), json!({"a":"c"})),
            (json!({"a":{"b":"c"}}), json!({"a":{"b":"d","c":null}}), json!({"a":{"b":"d"}})),
            (json!({"e":null}), json!({"a":1}), json!({"e":null,"a":1})),
            (json!({}), json!({"a":{"bb":{"ccc":null}}}), json!({"a":{"bb":{}}})),
        ];
        for (mut target, patch, expected) in cases {
            merge_patch(&mut target, patch);
            assert_eq!(target, expected);
        }
    }
}
