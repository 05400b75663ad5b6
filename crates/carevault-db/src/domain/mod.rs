//! Domain types that validate on construction (`parse`), so the rest of the code never holds an
//! invalid id, email, role, status or embedding. Errors never echo the refused value: it may be
//! PHI.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::ValidationError;

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident, $field:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, sqlx::Type)]
        #[serde(transparent)]
        #[sqlx(transparent)]
        pub struct $name(Uuid);

        impl $name {
            /// Parses a UUID in any of its usual text forms.
            pub fn parse(text: &str) -> Result<Self, ValidationError> {
                Uuid::parse_str(text).map($name).map_err(|_| ValidationError::new($field, "must be a UUID"))
            }

            /// A fresh random id (v4).
            pub fn new_random() -> Self {
                $name(Uuid::new_v4())
            }

            /// The UUID.
            pub fn as_uuid(&self) -> Uuid {
                self.0
            }
        }

        impl From<Uuid> for $name {
            fn from(uuid: Uuid) -> Self {
                $name(uuid)
            }
        }

        impl FromStr for $name {
            type Err = ValidationError;
            fn from_str(text: &str) -> Result<Self, ValidationError> {
                Self::parse(text)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }
    };
}

id_type!(
    /// A tenant's id.
    TenantId,
    "tenant_id"
);
id_type!(
    /// A user's id.
    UserId,
    "user_id"
);
id_type!(
    /// A document's id.
    DocumentId,
    "document_id"
);
id_type!(
    /// An audit row's id.
    AuditLogId,
    "audit_log_id"
);

impl TenantId {
    /// The seeded `System` tenant (`00000000-0000-0000-0000-000000000000`).
    pub const SYSTEM: TenantId = TenantId(Uuid::nil());
}

/// An email address of at most 255 characters as sent, trimmed, with its ASCII letters
/// lower-cased, `local@domain` with a dot inside the domain and no whitespace or control
/// characters.
///
/// Lower-cased so that the unique index on `(tenant_id, email)` treats `Ann@x.org` and
/// `ann@x.org` as the same person. Only ASCII letters are folded: full Unicode lower-casing can
/// lengthen an address (`İ` becomes two characters), so the stored address could outgrow the
/// length that was checked. Folding is a convention of mail providers, not a rule: RFC 5321 §2.4
/// lets the local part be case-sensitive, so `Ä@x.org` and `ä@x.org` stay two addresses. The
/// rules are stated exactly in the OpenAPI document (`EmailAddress`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct Email(String);

impl Email {
    /// The most characters an address may have (the column is `VARCHAR(255)`).
    pub const MAX_CHARS: usize = 255;

    /// Validates and normalises an address.
    pub fn parse(text: &str) -> Result<Email, ValidationError> {
        let invalid = |reason| Err(ValidationError::new("email", reason));
        // Counted as sent, before trimming, so that the rule is a plain maxLength in OpenAPI.
        let email = text.trim().to_ascii_lowercase();
        if email.is_empty() || text.chars().count() > Self::MAX_CHARS {
            return invalid("must be 1 to 255 characters");
        }
        if email.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return invalid("must not contain spaces or control characters");
        }
        match email.split_once('@') {
            Some((local, domain))
                if !local.is_empty()
                    && !domain.contains('@')
                    && domain.contains('.')
                    && !domain.starts_with('.')
                    && !domain.ends_with('.') =>
            {
                Ok(Email(email))
            }
            _ => invalid("must look like name@example.org"),
        }
    }

    /// The normalised address.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Generates a string enum with `parse`, `as_str` and serde in lower case.
macro_rules! string_enum {
    ($(#[$doc:meta])* $name:ident, $field:literal, $reason:literal { $($(#[$vdoc:meta])* $variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
        #[serde(rename_all = "lowercase")]
        pub enum $name {
            $($(#[$vdoc])* $variant),+
        }

        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// Parses the lower-case name.
            pub fn parse(text: &str) -> Result<Self, ValidationError> {
                match text {
                    $($text => Ok($name::$variant),)+
                    _ => Err(ValidationError::new($field, $reason)),
                }
            }

            /// The lower-case name, as stored.
            pub fn as_str(&self) -> &'static str {
                match self {
                    $($name::$variant => $text),+
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

string_enum!(
    /// A user's role, which decides what the API lets them do (DESIGN §7.3).
    UserRole, "role", "must be admin, member or viewer" {
        /// Everything in the tenant, including users and the audit log.
        Admin => "admin",
        /// Reads, and writes documents.
        Member => "member",
        /// Reads only. Also what a NULL role in the database means.
        Viewer => "viewer",
    }
);

string_enum!(
    /// A document's processing status.
    DocumentStatus, "status", "must be processing, completed or failed" {
        /// Uploaded, not yet processed (the default).
        Processing => "processing",
        /// Processed.
        Completed => "completed",
        /// Processing failed.
        Failed => "failed",
    }
);

string_enum!(
    /// A tenant's status. Only `active` and `trial` tenants may use the API.
    TenantStatus, "status", "must be active, suspended or trial" {
        /// In use.
        Active => "active",
        /// Locked out by the platform operator.
        Suspended => "suspended",
        /// In use, on trial.
        Trial => "trial",
    }
);

impl TenantStatus {
    /// Whether the tenant's users may use the service.
    pub fn allows_access(&self) -> bool {
        matches!(self, TenantStatus::Active | TenantStatus::Trial)
    }
}

/// A bounded, trimmed, non-empty text without control characters (names, filenames, keys).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct BoundedText(String);

impl BoundedText {
    /// Validates `text` for `field`: at most `max` characters as sent (the column's VARCHAR
    /// length), not blank, and no control characters once the surrounding whitespace is trimmed.
    ///
    /// The length is counted before trimming so that the rule is a plain `maxLength` in the
    /// OpenAPI document, which states these rules exactly.
    pub fn parse(field: &'static str, text: &str, max: usize) -> Result<BoundedText, ValidationError> {
        if text.chars().count() > max {
            return Err(ValidationError::new(field, "is too long"));
        }
        let trimmed = text.trim();
        if trimmed.is_empty() {
            return Err(ValidationError::new(field, "must not be empty"));
        }
        if trimmed.chars().any(char::is_control) {
            return Err(ValidationError::new(field, "must not contain control characters"));
        }
        Ok(BoundedText(trimmed.to_string()))
    }

    /// The text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The number of dimensions of every embedding (`VECTOR(1024)`).
pub const EMBEDDING_DIMENSIONS: usize = 1024;

/// A document embedding: exactly 1024 finite values of magnitude at most 1e15, at least one of
/// them of magnitude 1e-15 or more.
///
/// The bounds keep pgvector's arithmetic meaningful. pgvector 0.8 accumulates the dot product and
/// the norms of `<=>` in float32, so a square beyond float32's range overflows and one below it
/// underflows, and the distance silently comes out wrong or NaN. Measured on PostgreSQL 18 +
/// pgvector 0.8.6 against `[1,1,0]`, whose true distance is 0.2929 from any `[x,0,0]`:
/// `[1e20,0,0]` gives 1, `[1e-30,0,0]` gives 0, and a query of float32's largest value against
/// the stored documents gave NaN (found by the schema fuzzer). With every value within 1e15 the
/// sums stay below 1024 × 1e30, far inside float32; with one value of at least 1e-15 the norm
/// stays a normal float32. The zero vector, whose cosine distance is NaN and which the HNSW index
/// skips, is refused by the same rule.
#[derive(Debug, Clone, PartialEq)]
pub struct Embedding(Vec<f32>);

impl Embedding {
    /// The largest magnitude a value may have.
    pub const MAX_MAGNITUDE: f64 = 1e15;

    /// The magnitude at least one value must reach.
    pub const MIN_LARGEST_MAGNITUDE: f64 = 1e-15;

    /// Validates the values, as sent (in f64, as JSON numbers arrive), before they are rounded to
    /// float32.
    pub fn parse<V: Into<f64>>(values: impl IntoIterator<Item = V>) -> Result<Embedding, ValidationError> {
        let invalid = |reason| Err(ValidationError::new("embedding", reason));
        let values: Vec<f64> = values.into_iter().map(Into::into).collect();
        if values.len() != EMBEDDING_DIMENSIONS {
            return invalid("must have exactly 1024 values");
        }
        if values.iter().any(|v| !v.is_finite() || v.abs() > Self::MAX_MAGNITUDE) {
            return invalid("values must be finite numbers between -1e15 and 1e15");
        }
        if values.iter().all(|v| v.abs() < Self::MIN_LARGEST_MAGNITUDE) {
            return invalid("must not be the zero vector (at least one value of magnitude 1e-15 or more)");
        }
        // Rounding to nearest; every value is inside float32's range.
        Ok(Embedding(values.into_iter().map(|v| v as f32).collect()))
    }

    /// The values.
    pub fn as_slice(&self) -> &[f32] {
        &self.0
    }

    pub(crate) fn to_pgvector(&self) -> pgvector::Vector {
        pgvector::Vector::from(self.0.clone())
    }
}

/// The largest serialized metadata object accepted.
pub const METADATA_MAX_BYTES: usize = 64 * 1024;
/// The deepest nesting of metadata accepted.
pub const METADATA_MAX_DEPTH: usize = 16;
/// The magnitude every number in metadata must stay below. jsonb stores numbers as exact decimals
/// and prints them in full; near f64's limits the printed form no longer reads back as a finite
/// f64, and every later read of the row fails (found by the schema fuzzer:
/// 1.7976931348623157e308).
pub const METADATA_MAX_NUMBER: f64 = 1e300;

/// Document metadata: a JSON object of at most 64 KiB and 16 levels.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct Metadata(serde_json::Value);

impl Metadata {
    /// Validates a JSON value.
    pub fn parse(value: serde_json::Value) -> Result<Metadata, ValidationError> {
        if !value.is_object() {
            return Err(ValidationError::new("metadata", "must be a JSON object"));
        }
        if depth(&value) > METADATA_MAX_DEPTH {
            return Err(ValidationError::new("metadata", "is nested too deeply"));
        }
        if value.to_string().len() > METADATA_MAX_BYTES {
            return Err(ValidationError::new("metadata", "is too large"));
        }
        // PostgreSQL's jsonb cannot store U+0000 (`\u0000`): refuse it here, not with a 500.
        if has_nul(&value) {
            return Err(ValidationError::new("metadata", "must not contain the NUL character"));
        }
        if has_huge_number(&value) {
            return Err(ValidationError::new("metadata", "numbers must be below 1e300 in magnitude"));
        }
        Ok(Metadata(value))
    }

    /// An empty object.
    pub fn empty() -> Metadata {
        Metadata(serde_json::Value::Object(serde_json::Map::new()))
    }

    /// The JSON value.
    pub fn as_value(&self) -> &serde_json::Value {
        &self.0
    }
}

fn has_huge_number(value: &serde_json::Value) -> bool {
    match value {
        serde_json::Value::Number(number) => number.as_f64().is_none_or(|n| n.abs() >= METADATA_MAX_NUMBER),
        serde_json::Value::Object(map) => map.values().any(has_huge_number),
        serde_json::Value::Array(items) => items.iter().any(has_huge_number),
        _ => false,
    }
}

fn has_nul(value: &serde_json::Value) -> bool {
    match value {
        serde_json::Value::String(text) => text.contains('\0'),
        serde_json::Value::Object(map) => map.iter().any(|(key, value)| key.contains('\0') || has_nul(value)),
        serde_json::Value::Array(items) => items.iter().any(has_nul),
        _ => false,
    }
}

fn depth(value: &serde_json::Value) -> usize {
    match value {
        serde_json::Value::Object(map) => 1 + map.values().map(depth).max().unwrap_or(0),
        serde_json::Value::Array(items) => 1 + items.iter().map(depth).max().unwrap_or(0),
        _ => 0,
    }
}

/// How many rows a list returns: 1 to 200, 50 by default (DESIGN §7.3).
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

/// The deployment environment (`ENVIRONMENT`, DESIGN §7.1), shared by the HTTP layer and
/// `carevault doctor`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Environment {
    /// A developer's machine: error `detail` shown, development tokens allowed.
    #[default]
    Development,
    /// Like production, but not production.
    Staging,
    /// Strict: no `detail`, no HS256, no wildcard CORS, OIDC required.
    Production,
}

impl Environment {
    /// Parses `development`, `staging` or `production`.
    pub fn parse(text: &str) -> Option<Environment> {
        match text {
            "development" => Some(Environment::Development),
            "staging" => Some(Environment::Staging),
            "production" => Some(Environment::Production),
            _ => None,
        }
    }

    /// The lower-case name.
    pub fn as_str(&self) -> &'static str {
        match self {
            Environment::Development => "development",
            Environment::Staging => "staging",
            Environment::Production => "production",
        }
    }
}

/// Who is acting and from where; written into every audit row of a transaction.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditContext {
    /// The acting user (`None` for system actions such as just-in-time provisioning before the
    /// user exists, or the platform path).
    pub user_id: Option<UserId>,
    /// The request id (stored in the audit metadata).
    pub request_id: Option<String>,
    /// The client's IP address.
    pub ip_address: Option<std::net::IpAddr>,
    /// The client's user agent (truncated to 512 characters).
    pub user_agent: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedding_requires_1024_bounded_values_not_all_tiny() {
        assert!(Embedding::parse(vec![0.5_f32; EMBEDDING_DIMENSIONS]).is_ok());
        assert!(Embedding::parse(vec![0.5_f32; EMBEDDING_DIMENSIONS - 1]).is_err());
        assert!(Embedding::parse(vec![0.5_f32; EMBEDDING_DIMENSIONS + 1]).is_err());
        assert!(Embedding::parse(Vec::<f32>::new()).is_err());
        assert!(
            Embedding::parse(vec![0.0_f32; EMBEDDING_DIMENSIONS])
                .unwrap_err()
                .reason
                .starts_with("must not be the zero")
        );
        for bad in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY, f32::MAX] {
            let mut values = vec![0.5; EMBEDDING_DIMENSIONS];
            values[17] = bad;
            assert!(Embedding::parse(values).is_err());
        }
        // Tiny values are fine next to one that is not.
        let mut values = vec![1e-30_f32; EMBEDDING_DIMENSIONS];
        assert!(Embedding::parse(values.clone()).is_err());
        values[5] = 0.1;
        assert!(Embedding::parse(values).is_ok());
    }

    #[test]
    fn embedding_bounds_are_exact() {
        let one_value = |v: f64| {
            let mut values = vec![0.0_f64; EMBEDDING_DIMENSIONS];
            values[3] = v;
            Embedding::parse(values)
        };
        let next_up = |v: f64| f64::from_bits(v.to_bits() + 1);
        let next_down = |v: f64| f64::from_bits(v.to_bits() - 1);
        for sign in [1.0, -1.0] {
            assert!(one_value(sign * Embedding::MAX_MAGNITUDE).is_ok());
            assert!(one_value(sign * next_up(Embedding::MAX_MAGNITUDE)).is_err());
            assert!(one_value(sign * Embedding::MIN_LARGEST_MAGNITUDE).is_ok());
            assert!(one_value(sign * next_down(Embedding::MIN_LARGEST_MAGNITUDE)).is_err());
        }
    }

    #[test]
    fn email_is_normalised_and_validated() {
        assert_eq!(Email::parse("  Ann.Lee@Clinic.Example ").unwrap().as_str(), "ann.lee@clinic.example");
        // Only ASCII letters fold: `İ` would lower-case to two characters.
        assert_eq!(Email::parse("İ@X.org").unwrap().as_str(), "İ@x.org");
        for bad in [
            "",
            "ann",
            "@x.org",
            "ann@",
            "ann@x",
            "ann@@x.org",
            "a b@x.org",
            "ann@x.org.",
            "ann@.org",
            "a\u{0}@x.org",
            "a\u{a0}b@x.org",
            "a@x\u{3000}.org",
        ] {
            assert!(Email::parse(bad).is_err(), "{bad:?}");
        }
        // 255 characters as sent, surrounding whitespace included.
        let longest = format!("{}@x.org", "a".repeat(249));
        assert!(Email::parse(&longest).is_ok());
        assert!(Email::parse(&format!("{longest} ")).is_err());
    }

    #[test]
    fn enums_parse_their_lower_case_names_only() {
        for role in UserRole::ALL {
            assert_eq!(UserRole::parse(role.as_str()).unwrap(), *role);
        }
        for status in DocumentStatus::ALL {
            assert_eq!(DocumentStatus::parse(status.as_str()).unwrap(), *status);
        }
        assert!(UserRole::parse("Admin").is_err());
        assert!(UserRole::parse("superadmin").is_err());
        assert!(DocumentStatus::parse("deleted").is_err());
        assert!(TenantStatus::parse("active").unwrap().allows_access());
        assert!(TenantStatus::parse("trial").unwrap().allows_access());
        assert!(!TenantStatus::parse("suspended").unwrap().allows_access());
    }

    #[test]
    fn ids_must_be_uuids() {
        assert!(TenantId::parse("org-456").is_err());
        assert_eq!(TenantId::parse("00000000-0000-0000-0000-000000000000").unwrap(), TenantId::SYSTEM);
        assert!(UserId::parse("' OR 1=1 --").is_err());
    }

    #[test]
    fn metadata_must_be_a_bounded_object() {
        assert!(Metadata::parse(serde_json::json!({"a": [1, {"b": 2}]})).is_ok());
        assert!(Metadata::parse(serde_json::json!([1, 2])).is_err());
        assert!(Metadata::parse(serde_json::json!("text")).is_err());
        let mut deep = serde_json::json!({});
        for _ in 0..METADATA_MAX_DEPTH {
            deep = serde_json::json!({ "n": deep });
        }
        assert_eq!(Metadata::parse(deep).unwrap_err().reason, "is nested too deeply");
        assert!(Metadata::parse(serde_json::json!({"a": ["ok", "x\u{0}y"]})).is_err());
        assert!(Metadata::parse(serde_json::json!({"k\u{0}": 1})).is_err());
        assert!(Metadata::parse(serde_json::json!({"x": [-1.797_693_134_862_315_7e308]})).is_err());
        assert!(Metadata::parse(serde_json::json!({"x": 1e299, "y": u64::MAX, "z": i64::MIN})).is_ok());
        let big = serde_json::json!({ "x": "y".repeat(METADATA_MAX_BYTES) });
        assert_eq!(Metadata::parse(big).unwrap_err().reason, "is too large");
    }

    #[test]
    fn bounded_text_and_limits() {
        assert_eq!(BoundedText::parse("name", "  Acme  ", 10).unwrap().as_str(), "Acme");
        assert!(BoundedText::parse("name", "   ", 10).is_err());
        assert!(BoundedText::parse("name", "x".repeat(11).as_str(), 10).is_err());
        assert!(BoundedText::parse("name", "a\nb", 10).is_err());
        // Counted as sent: trailing whitespace counts towards the limit.
        assert!(BoundedText::parse("name", "x".repeat(10).as_str(), 10).is_ok());
        assert!(BoundedText::parse("name", format!("{} ", "x".repeat(10)).as_str(), 10).is_err());
        // Whitespace control characters are trimmed; other control characters are refused.
        assert_eq!(BoundedText::parse("name", "\tAcme\r\n", 10).unwrap().as_str(), "Acme");
        assert!(BoundedText::parse("name", "\u{1c}Acme", 10).is_err());
        assert!(PageLimit::parse(0).is_err());
        assert!(PageLimit::parse(201).is_err());
        assert_eq!(PageLimit::parse(200).unwrap().get(), 200);
        assert_eq!(PageLimit::default().get(), 50);
    }
}
