//! The endpoints under `/api/v1` (DESIGN §7.3).

pub mod audit;
pub mod documents;
pub mod health;
pub mod me;
pub mod platform;
pub mod users;

use carevault_db::{Cursor, Deleted, Page, PageLimit};
use serde::{Deserialize, Serialize};

use crate::{ApiError, ErrorCode};

/// `?limit=&cursor=` of every list.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageQuery {
    /// Rows per page: 1 to 200, default 50.
    pub limit: Option<u32>,
    /// The `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

impl PageQuery {
    pub(crate) fn parse(&self) -> Result<(PageLimit, Option<Cursor>), ApiError> {
        let limit = match self.limit {
            Some(limit) => PageLimit::parse(limit)?,
            None => PageLimit::default(),
        };
        let cursor = self.cursor.as_deref().map(decode_cursor).transpose()?;
        Ok((limit, cursor))
    }
}

/// `deleted=exclude|only|include` (default exclude).
pub(crate) fn parse_deleted(value: Option<&str>) -> Result<Deleted, ApiError> {
    match value {
        None | Some("exclude") => Ok(Deleted::Exclude),
        Some("only") => Ok(Deleted::Only),
        Some("include") => Ok(Deleted::Include),
        Some(_) => Err(ApiError::new(ErrorCode::Val003).with_message("deleted: must be exclude, only or include")),
    }
}

/// A page of a list.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ListResponse<T> {
    /// The rows, newest first.
    pub items: Vec<T>,
    /// Pass as `cursor` for the next page; `null` on the last page.
    pub next_cursor: Option<String>,
}

impl<T> ListResponse<T> {
    pub(crate) fn from_page<U>(page: Page<U>, map: impl Fn(U) -> T) -> ListResponse<T> {
        ListResponse {
            items: page.items.into_iter().map(map).collect(),
            next_cursor: page.next_cursor.map(encode_cursor),
        }
    }
}

/// Cursors are opaque to clients: `<microseconds since the epoch>.<uuid>`.
fn encode_cursor(cursor: Cursor) -> String {
    format!("{}.{}", cursor.created_at.timestamp_micros(), cursor.id.simple())
}

fn decode_cursor(text: &str) -> Result<Cursor, ApiError> {
    let invalid = || ApiError::new(ErrorCode::Val003).with_message("cursor: not a cursor of this list");
    let (micros, id) = text.split_once('.').ok_or_else(invalid)?;
    let micros: i64 = micros.parse().map_err(|_| invalid())?;
    let created_at = chrono::DateTime::from_timestamp_micros(micros).ok_or_else(invalid)?;
    let id = uuid::Uuid::parse_str(id).map_err(|_| invalid())?;
    Ok(Cursor { created_at, id })
}

/// Parses a path id; anything but a UUID is 422 `VAL_003`.
pub(crate) fn parse_id<T: std::str::FromStr<Err = carevault_db::ValidationError>>(text: &str) -> Result<T, ApiError> {
    text.parse::<T>().map_err(ApiError::from)
}

/// Validates an optional text field of at most `max` characters.
pub(crate) fn optional_text(
    field: &'static str,
    value: Option<&str>,
    max: usize,
) -> Result<Option<carevault_db::BoundedText>, ApiError> {
    Ok(value.map(|v| carevault_db::BoundedText::parse(field, v, max)).transpose()?)
}

/// Deserializes a field that distinguishes "absent" (`None`) from `null` (`Some(None)`).
pub(crate) fn double_option<'de, T, D>(deserializer: D) -> Result<Option<Option<T>>, D::Error>
where
    T: Deserialize<'de>,
    D: serde::Deserializer<'de>,
{
    Option::<T>::deserialize(deserializer).map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_garbage_is_refused() {
        let cursor = Cursor {
            created_at: chrono::DateTime::from_timestamp_micros(1_700_000_000_123_456).unwrap(),
            id: uuid::Uuid::new_v4(),
        };
        assert_eq!(decode_cursor(&encode_cursor(cursor)).unwrap(), cursor);
        for bad in ["", "x", "1.2", "abc.0000", "99999999999999999999.00000000000000000000000000000000"] {
            assert_eq!(decode_cursor(bad).unwrap_err().code, ErrorCode::Val003, "{bad}");
        }
    }
}
