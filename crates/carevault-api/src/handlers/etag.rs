//! Optimistic concurrency for documents and users, as FHIR clients know it: `GET` answers an
//! `ETag`, and `PATCH` and `DELETE` with `If-Match` apply only to that version (412 `RES_412`
//! otherwise).

use axum::http::{HeaderMap, HeaderValue, header};
use carevault_db::repo::{Document, User};
use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};

use crate::{ApiError, ErrorCode};

/// A row with versions: its id, and the two columns every write moves (`updated_at` by a
/// trigger, `deleted_at` by a soft delete or a restore).
pub(crate) trait Versioned {
    /// (id, updated_at, deleted_at).
    fn version(&self) -> (uuid::Uuid, DateTime<Utc>, Option<DateTime<Utc>>);
}

impl Versioned for Document {
    fn version(&self) -> (uuid::Uuid, DateTime<Utc>, Option<DateTime<Utc>>) {
        (self.id.as_uuid(), self.updated_at, self.deleted_at)
    }
}

impl Versioned for User {
    fn version(&self) -> (uuid::Uuid, DateTime<Utc>, Option<DateTime<Utc>>) {
        (self.id.as_uuid(), self.updated_at, self.deleted_at)
    }
}

/// The `ETag` header of an answer.
pub(crate) type EtagHeader = [(header::HeaderName, HeaderValue); 1];

/// The strong entity tag of the row's current version, hashed so that the tag says nothing about
/// when the row changed.
pub(crate) fn etag(row: &impl Versioned) -> String {
    let (id, updated_at, deleted_at) = row.version();
    let version =
        format!("{}|{}|{}", id, updated_at.timestamp_micros(), deleted_at.map(|at| at.timestamp_micros()).unwrap_or(0));
    let digest = Sha256::digest(version.as_bytes());
    let hex: String = digest[..16].iter().map(|byte| format!("{byte:02x}")).collect();
    format!("\"{hex}\"")
}

/// The `ETag` header of `row`.
pub(crate) fn etag_header(row: &impl Versioned) -> EtagHeader {
    // Hex between quotes: always a valid header value.
    let value = HeaderValue::from_str(&etag(row)).unwrap_or_else(|_| HeaderValue::from_static("\"\""));
    [(header::ETAG, value)]
}

/// Whether the request carries `If-Match`.
pub(crate) fn has_if_match(headers: &HeaderMap) -> bool {
    headers.contains_key(header::IF_MATCH)
}

/// `If-Match` (RFC 9110, 13.1.1) against `current`: `*` or any listed strong tag equal to the
/// current one passes; weak tags never match. Absent: passes.
pub(crate) fn check_if_match(headers: &HeaderMap, current: &impl Versioned) -> Result<(), ApiError> {
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

/// The `If-Match` parameter of a `PATCH`, as the OpenAPI document states it. Any value but a
/// current ETag or `*` is answered 412 (RFC 9110, 13.1.1), a rule a schema cannot state.
pub(crate) const IF_MATCH_CHANGE: &str = "An ETag answered by GET, or `*`: change only that version. Any other value is \
                                          answered 412 RES_412 (RFC 9110, 13.1.1): the schema cannot state that rule.";
/// The `If-Match` parameter of a `DELETE` (see [`IF_MATCH_CHANGE`]).
pub(crate) const IF_MATCH_DELETE: &str = "An ETag answered by GET, or `*`: delete only that version. Any other value is \
                                          answered 412 RES_412 (RFC 9110, 13.1.1): the schema cannot state that rule.";
