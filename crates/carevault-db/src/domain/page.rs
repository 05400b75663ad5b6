//! Lists: page size, keyset cursor, one page, and which soft-deleted rows to show.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::ValidationError;

/// How many rows a list returns: 1 to 200, 50 by default.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageLimit(u32);

impl PageLimit {
    /// The largest page.
    pub const MAX: u32 = 200;

    /// Validates a limit.
    pub fn parse(limit: u32) -> Result<PageLimit, ValidationError> {
        if (1..=Self::MAX).contains(&limit) {
            Ok(PageLimit(limit))
        } else {
            Err(ValidationError::new("limit", "must be between 1 and 200"))
        }
    }

    /// The limit.
    pub fn get(&self) -> u32 {
        self.0
    }
}

impl Default for PageLimit {
    fn default() -> PageLimit {
        PageLimit(50)
    }
}

/// A keyset position in a list ordered newest first: the `(created_at, id)` of the last row of
/// the previous page. Rows inserted meanwhile never shift a page, unlike OFFSET.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cursor {
    /// `created_at` of the last row seen.
    pub created_at: chrono::DateTime<chrono::Utc>,
    /// `id` of the last row seen (ties on `created_at`).
    pub id: Uuid,
}

/// One page of a list.
#[derive(Debug, Clone, PartialEq)]
pub struct Page<T> {
    /// The rows, newest first.
    pub items: Vec<T>,
    /// Where the next page starts, or `None` on the last page.
    pub next_cursor: Option<Cursor>,
}

/// Which rows of a soft-deletable table a list returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Deleted {
    /// Only rows that are not deleted (the default everywhere).
    #[default]
    Exclude,
    /// Only soft-deleted rows.
    Only,
    /// Both.
    Include,
}

impl Deleted {
    /// The value bound as `$n::int` in the static SQL
    /// `CASE $n WHEN 0 THEN deleted_at IS NULL WHEN 1 THEN deleted_at IS NOT NULL ELSE true END`.
    pub(crate) fn code(&self) -> i32 {
        match self {
            Deleted::Exclude => 0,
            Deleted::Only => 1,
            Deleted::Include => 2,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_limits_are_1_to_200_and_50_by_default() {
        assert!(PageLimit::parse(0).is_err());
        assert!(PageLimit::parse(201).is_err());
        assert_eq!(PageLimit::parse(200).unwrap().get(), 200);
        assert_eq!(PageLimit::default().get(), 50);
    }
}
