//! Optimistic concurrency for documents, as FHIR clients know it: `GET` answers an `ETag`, and
//! `PATCH` and `DELETE` with `If-Match` apply only to that version (412 `RES_412` otherwise).

use axum::http::{HeaderMap, HeaderValue, header};
use carevault_db::repo::Document;
use sha2::{Digest, Sha256};

use crate::{ApiError, ErrorCode};

/// The strong entity tag of the document's current version. Every write moves `updated_at` (a
/// trigger) or `deleted_at`, so the pair names a version; it is hashed so that the tag says
/// nothing about when the document changed.
pub(crate) fn etag(document: &Document) -> String {
    let version = format!(
        "{}|{}|{}",
        document.id.as_uuid(),
        document.updated_at.timestamp_micros(),
        document.deleted_at.map(|at| at.timestamp_micros()).unwrap_or(0)
    );
    let digest = Sha256::digest(version.as_bytes());
    let hex: String = digest[..16].iter().map(|byte| format!("{byte:02x}")).collect();
    format!("\"{hex}\"")
}

/// The `ETag` header of `document`.
pub(crate) fn etag_header(document: &Document) -> [(header::HeaderName, HeaderValue); 1] {
    // Hex between quotes: always a valid header value.
    let value = HeaderValue::from_str(&etag(document)).unwrap_or_else(|_| HeaderValue::from_static("\"\""));
    [(header::ETAG, value)]
}

/// Whether the request carries `If-Match`.
pub(crate) fn has_if_match(headers: &HeaderMap) -> bool {
    headers.contains_key(header::IF_MATCH)
}

/// `If-Match` (RFC 9110, 13.1.1) against `current`: `*` or any listed strong tag equal to the
/// current one passes; weak tags never match. Absent: passes.
pub(crate) fn check_if_match(headers: &HeaderMap, current: &Document) -> Result<(), ApiError> {
    if !has_if_match(headers) {
        return Ok(());
    }
    let expected = etag(current);
    // A value that is not visible ASCII matches nothing.
    let matches = headers
        .get_all(header::IF_MATCH)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .map(str::trim)
        .any(|tag| tag == "*" || tag == expected);
    if matches {
        Ok(())
    } else {
        Err(ApiError::new(ErrorCode::Res412).with_message("If-Match does not name the current version: read it again"))
    }
}
