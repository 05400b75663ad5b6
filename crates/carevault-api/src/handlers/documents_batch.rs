//! `POST /documents/batch`: up to 1,000 documents at once, all or nothing.

use axum::Json;
use axum::http::StatusCode;
use carevault_db::repo::MAX_IMPORT_BATCH;
use serde::{Deserialize, Serialize};

use super::documents::{CreateDocumentRequest, DocumentResponse};
use crate::extract::{ApiJson, Authed, Member};
use crate::{ApiError, ErrorCode};

/// `POST /documents/batch`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BatchCreateRequest {
    /// 1 to 1,000 documents, each exactly as `POST /documents` takes it.
    #[schema(min_items = 1, max_items = 1000)]
    pub documents: Vec<CreateDocumentRequest>,
}

/// The created documents, in the order of the request (without their embeddings).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct BatchCreateResponse {
    /// The documents.
    pub documents: Vec<DocumentResponse>,
}

/// Creates 1 to 1,000 documents at once, all or nothing (member, admin; ONE audit row
/// `document.imported` with the count and the ids). Every document is validated before anything is
/// written; the first invalid one is answered 422 naming its index (`documents[17].embedding: ...`).
/// This route alone takes bodies up to `BATCH_MAX_BODY_BYTES` and runs up to
/// `BATCH_REQUEST_TIMEOUT_SECONDS`.
#[utoipa::path(post, path = "/api/v1/documents/batch", operation_id = "createDocumentsBatch", tag = "documents", security(("bearer" = [])), request_body = BatchCreateRequest,
    responses((status = 201, description = "The documents, all created in one transaction", body = BatchCreateResponse),
        (status = 413, description = "body larger than BATCH_MAX_BODY_BYTES", body = crate::error::ErrorEnvelope),
        (status = 422, description = "not 1 to 1,000 documents, or an invalid document (named by its index)", body = crate::error::ErrorEnvelope)))]
pub async fn batch(
    authed: Authed<Member>,
    ApiJson(body): ApiJson<BatchCreateRequest>,
) -> Result<(StatusCode, Json<BatchCreateResponse>), ApiError> {
    if body.documents.is_empty() || body.documents.len() > MAX_IMPORT_BATCH {
        return Err(ApiError::new(ErrorCode::Val003).with_message("documents: must hold 1 to 1000 documents"));
    }
    let mut batch = Vec::with_capacity(body.documents.len());
    for (index, document) in body.documents.into_iter().enumerate() {
        let new = document.into_new_document(authed.user.id).map_err(|refused| {
            ApiError::new(ErrorCode::Val003).with_message(format!("documents[{index}].{refused}"))
        })?;
        batch.push(new);
    }
    let mut tx = authed.begin().await?;
    let documents = tx.documents().create_many(batch).await?;
    tx.commit().await?;
    Ok((StatusCode::CREATED, Json(BatchCreateResponse { documents: documents.into_iter().map(Into::into).collect() })))
}
