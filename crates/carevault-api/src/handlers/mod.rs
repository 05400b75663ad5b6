//! The endpoints under `/api/v1` (docs/ARCHITECTURE.md, "HTTP API").

pub mod audit;
pub mod documents;
pub mod documents_batch;
mod etag;
pub mod health;
pub mod me;
pub mod platform;
pub mod users;

use carevault_db::{Cursor, Deleted, Page, PageLimit};
use serde::{Deserialize, Serialize};

use crate::schema::DeletedFilter;
use crate::{ApiError, ErrorCode};

/// `?limit=&cursor=` of every list (each list's query struct documents them).
#[derive(Debug, Default)]
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

/// `deleted=exclude|only|include` (default exclude): [`DeletedFilter::VALUES`].
pub(crate) fn parse_deleted(value: Option<&str>) -> Result<Deleted, ApiError> {
    let Some(value) = value else { return Ok(Deleted::Exclude) };
    DeletedFilter::VALUES
        .iter()
        .find(|(name, _)| *name == value)
        .map(|(_, deleted)| *deleted)
        .ok_or_else(|| ApiError::new(ErrorCode::Val003).with_message("deleted: must be exclude, only or include"))
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

/// The inverse of [`encode_cursor`], exactly as strict as `schema::CURSOR_PATTERN` says: 1 to 18
/// digits, or `-` and 1 to 17, a dot and 32 lower-case hex digits. The bounds keep the timestamp
/// inside PostgreSQL's `timestamptz` range (4713 BC to 294276 AD; 18 negative digits reach
/// 29,700 BC, which was a 500 found by the schema fuzzer). `i64::from_str` alone would also take
/// a `+`, and `Uuid::parse_str` other spellings of a UUID.
fn decode_cursor(text: &str) -> Result<Cursor, ApiError> {
    let invalid = || ApiError::new(ErrorCode::Val003).with_message("cursor: not a cursor of this list");
    let (micros, id) = text.split_once('.').ok_or_else(invalid)?;
    let (digits, max_digits) = match micros.strip_prefix('-') {
        Some(digits) => (digits, 17),
        None => (micros, 18),
    };
    let is_lower_hex = |c: char| c.is_ascii_digit() || ('a'..='f').contains(&c);
    if !(1..=max_digits).contains(&digits.len())
        || !digits.chars().all(|c| c.is_ascii_digit())
        || id.len() != 32
        || !id.chars().all(is_lower_hex)
    {
        return Err(invalid());
    }
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

/// Deserializes an optional integer written `5` or `5.0`: JSON Schema counts both as integers
/// (2020-12 validation §6.1.1: "a number with a zero fractional part"), serde's integer types
/// only the first (found by the schema fuzzer: `"size_bytes": -1000000000.0` was a 400).
/// Anything else that is not an integer in `T`'s range stays a body error (400 `VAL_001`).
pub(crate) fn optional_integer<'de, T, D>(deserializer: D) -> Result<Option<T>, D::Error>
where
    T: TryFrom<i64>,
    D: serde::Deserializer<'de>,
{
    use serde::de::Error;
    let Some(number) = Option::<serde_json::Number>::deserialize(deserializer)? else { return Ok(None) };
    // 2^63 is exact in f64; every integral f64 in [-2^63, 2^63) converts to i64 exactly.
    let limit = 9_223_372_036_854_775_808.0_f64;
    let integer = number
        .as_i64()
        .or_else(|| number.as_f64().filter(|f| f.fract() == 0.0 && (-limit..limit).contains(f)).map(|f| f as i64));
    integer
        .and_then(|i| T::try_from(i).ok())
        .map(Some)
        .ok_or_else(|| D::Error::custom(format!("invalid value: {number}, expected an integer in range")))
}

/// A field that may be absent but not `null` (read with [`double_option`]): `null` is 422
/// `VAL_003`, as the OpenAPI document (which does not list `null` for it) says.
pub(crate) fn not_null<T>(field: &'static str, value: Option<Option<T>>) -> Result<Option<T>, ApiError> {
    match value {
        Some(None) => Err(ApiError::new(ErrorCode::Val003).with_message(format!("{field}: must not be null"))),
        Some(Some(value)) => Ok(Some(value)),
        None => Ok(None),
    }
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
        // The documented pattern and the decoder agree on every case.
        let pattern = regex::Regex::new(crate::schema::CURSOR_PATTERN).unwrap();
        let hex = "0123456789abcdef0123456789abcdef";
        let good = [
            encode_cursor(cursor),
            format!("-5.{hex}"),
            format!("0.{hex}"),
            format!("{}.{hex}", "9".repeat(18)),
            format!("-{}.{hex}", "9".repeat(17)),
        ];
        for good in good {
            assert!(decode_cursor(&good).is_ok(), "{good}");
            assert!(pattern.is_match(&good), "{good}");
        }
        for bad in [
            "",
            "x",
            "1.2",
            "abc.0000",
            "99999999999999999999.00000000000000000000000000000000",
            // Other spellings `i64` and `Uuid` would take: refused, as the documented pattern says.
            "+1.0123456789abcdef0123456789abcdef",
            "1.0123456789ABCDEF0123456789ABCDEF",
            "1.01234567-89ab-cdef-0123-456789abcdef",
            "1234567890123456789.0123456789abcdef0123456789abcdef",
            "-.0123456789abcdef0123456789abcdef",
            // About 14,100 BC: outside timestamptz (was a 500).
            "-507178960083044105.9ac0dbad3a7e48b040d63a51dd1393ab",
        ] {
            assert_eq!(decode_cursor(bad).unwrap_err().code, ErrorCode::Val003, "{bad}");
            assert!(!pattern.is_match(bad), "{bad}");
        }
    }
}
