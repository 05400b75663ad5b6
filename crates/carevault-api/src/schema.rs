//! Request schemas that state the API's validation rules in the OpenAPI document, so that a
//! client, or a schema-driven fuzzer, can tell a valid request from an invalid one without sending
//! it.
//!
//! The handlers take the fields as sent and parse them with the domain types of carevault-db (so
//! that a bad value is a 422 naming its field); these types exist only for the document, and each
//! one names the parser whose rule it states. The rules are stated exactly, not approximately, except
//! metadata's: its schema is a free-form object and its description alone gives its rules (no NUL,
//! numbers below 1e300, size, depth), so that client generators can use it (see [`MetadataObject`]).
//! The evidence suite's schemathesis run checks both directions (a request the schema allows must be
//! accepted, ST202; one it forbids must be refused, ST201), keeping the metadata it generates within
//! that description; `tests/schema_rules.rs` checks the patterns and bounds against the parsers, and
//! `handlers::tests` the cursor pattern.

use carevault_db::{
    AuditAction, AuditResourceType, BoundedText, Deleted, DocumentStatus, Email, EmailDomain, Embedding,
    METADATA_MAX_BYTES, METADATA_MAX_DEPTH, METADATA_MAX_NUMBER, TenantStatus, UserRole, ValidationError,
};
use serde_json::Value;
use utoipa::openapi::RefOr;
use utoipa::openapi::schema::{AdditionalProperties, ArrayBuilder, ObjectBuilder, Schema, Type};
use utoipa::{PartialSchema, ToSchema};

/// The characters `str::trim` removes: Unicode `White_Space`, as `char::is_whitespace`.
const WHITESPACE: &str = r"\t\n\x0b\x0c\r \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000";
/// The characters `char::is_control` refuses: general category `Cc`.
const CONTROL: &str = r"\x00-\x1f\x7f-\x9f";

/// `BoundedText::parse`: surrounding whitespace, then a non-blank core without control
/// characters. The patterns are read as ECMA-262, JSON Schema's dialect, where `$` is the end of
/// the string; the escapes used here mean the same in Python's `re` and Rust's `regex`, but
/// Python's `$` also matches before a final newline (schemathesis generates and validates by the
/// ECMA reading; here trailing whitespace is allowed anyway, and the tests use Rust's `regex`,
/// whose `$` is ECMA's).
pub fn text_pattern() -> String {
    format!("^[{WHITESPACE}]*[^{WHITESPACE}{CONTROL}]([^{CONTROL}]*[^{WHITESPACE}{CONTROL}])?[{WHITESPACE}]*$")
}

/// `Email::parse`: surrounding whitespace, then `local@domain` without whitespace or control
/// characters, with a dot inside the domain (not first, not last).
pub fn email_pattern() -> String {
    let char = format!("[^@{WHITESPACE}{CONTROL}]");
    let edge = format!("[^@.{WHITESPACE}{CONTROL}]");
    format!("^[{WHITESPACE}]*{char}+@{edge}{char}*\\.{char}*{edge}[{WHITESPACE}]*$")
}

/// `EmailDomain::parse`: surrounding whitespace, then dot-separated labels of letters, digits and
/// hyphens (none first or last in a label), two or more.
pub fn domain_pattern() -> String {
    let label = "[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?";
    format!("^[{WHITESPACE}]*({label}\\.)+{label}[{WHITESPACE}]*$")
}

/// The list cursor (`handlers::decode_cursor`): microseconds since the epoch (18 digits, or 17
/// before 1970, so that it stays inside `timestamptz`), a dot, a UUID in 32 lower-case hex digits.
pub const CURSOR_PATTERN: &str = r"^(-[0-9]{1,17}|[0-9]{1,18})\.[0-9a-f]{32}$";

fn text(max: usize) -> Schema {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .min_length(Some(1))
        .max_length(Some(max))
        .pattern(Some(text_pattern()))
        .description(Some(format!(
            "At most {max} characters as sent; not blank and without control characters once the \
             surrounding whitespace is trimmed (it is not stored)."
        )))
        .into()
}

fn names<'a>(values: impl IntoIterator<Item = &'a str>, description: &str) -> Schema {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .enum_values(Some(values.into_iter().collect::<Vec<_>>()))
        .description(Some(description))
        .into()
}

/// Declares a schema-only type: a unit struct whose `ToSchema` is the given expression.
macro_rules! schema_type {
    ($(#[$doc:meta])* $name:ident => $schema:expr) => {
        $(#[$doc])*
        #[derive(Debug)]
        pub struct $name;

        impl PartialSchema for $name {
            fn schema() -> RefOr<Schema> {
                RefOr::T($schema)
            }
        }

        impl ToSchema for $name {}
    };
}

/// Declares a text kind: its schema and its parser share the limit, so they cannot drift apart.
macro_rules! text_type {
    ($(#[$doc:meta])* $name:ident, $max:literal) => {
        schema_type!($(#[$doc])* $name => text(Self::MAX));

        impl $name {
            /// The most characters, as sent.
            pub const MAX: usize = $max;

            /// `BoundedText::parse` with this limit.
            pub fn parse(field: &'static str, text: &str) -> Result<BoundedText, ValidationError> {
                BoundedText::parse(field, text, Self::MAX)
            }
        }
    };
}

text_type!(
    /// Text of at most 127 characters (`documents.content_type`).
    Text127, 127
);
text_type!(
    /// Text of at most 255 characters (names, buckets, identity subjects).
    Text255, 255
);
text_type!(
    /// Text of at most 512 characters (`documents.filename`).
    Text512, 512
);
text_type!(
    /// Text of at most 1024 characters (`documents.s3_key`).
    Text1024, 1024
);
schema_type!(
    /// `Email::parse`.
    EmailAddress => ObjectBuilder::new()
        .schema_type(Type::String)
        .max_length(Some(Email::MAX_CHARS))
        .pattern(Some(email_pattern()))
        .description(Some(
            "`name@example.org`: at most 255 characters as sent, no whitespace or control characters once \
             trimmed, a dot inside the domain. ASCII letters are stored lower-cased.",
        ))
        .into()
);
schema_type!(
    /// `EmailDomain::parse`.
    EmailDomainName => ObjectBuilder::new()
        .schema_type(Type::String)
        .max_length(Some(EmailDomain::MAX_CHARS))
        .pattern(Some(domain_pattern()))
        .description(Some(
            "A domain name such as `clinic.example`: at most 253 characters as sent, two or more labels of 1 to 63 \
             letters, digits or hyphens (not first or last), internationalised names in their `xn--` form. Stored \
             lower-cased; it admits addresses of exactly this domain, not of its subdomains.",
        ))
        .into()
);
schema_type!(
    /// `DocumentStatus::parse`.
    DocumentStatusName => names(DocumentStatus::ALL.iter().map(|s| s.as_str()), "A document's status.")
);
schema_type!(
    /// `UserRole::parse`.
    UserRoleName => names(UserRole::ALL.iter().map(|r| r.as_str()), "A user's role.")
);
schema_type!(
    /// `TenantStatus::parse`.
    TenantStatusName => names(TenantStatus::ALL.iter().map(|s| s.as_str()), "A tenant's status.")
);
schema_type!(
    /// `AuditAction::parse`.
    AuditActionName => names(AuditAction::ALL.iter().map(|a| a.as_str()), "An audit action.")
);
schema_type!(
    /// `AuditResourceType::parse`.
    AuditResourceTypeName => names(
        AuditResourceType::ALL.iter().map(|r| r.as_str()),
        "The type of resource an audit row names."
    )
);
schema_type!(
    /// `?deleted=` of the lists, read by `handlers::parse_deleted`.
    DeletedFilter => names(
        Self::VALUES.iter().map(|(name, _)| *name),
        "Soft-deleted rows: `exclude` (the default), `only` or `include`."
    )
);

impl DeletedFilter {
    /// Each value and the rows it selects; the first is the default.
    pub const VALUES: [(&'static str, Deleted); 3] =
        [("exclude", Deleted::Exclude), ("only", Deleted::Only), ("include", Deleted::Include)];
}

schema_type!(
    /// `GET /documents/{id}?include=`.
    DocumentInclude => names([Self::EMBEDDING], "`embedding` adds the embedding.")
);

impl DocumentInclude {
    /// The one value: the answer includes the embedding.
    pub const EMBEDDING: &'static str = "embedding";
}

schema_type!(
    /// `handlers::decode_cursor`.
    PageCursor => ObjectBuilder::new()
        .schema_type(Type::String)
        .pattern(Some(CURSOR_PATTERN))
        .description(Some("The `next_cursor` of the previous page."))
        .into()
);
schema_type!(
    /// `Embedding::parse`. Its "one value of at least 1e-15" rule is a `contains`, which utoipa
    /// cannot build: see [`add_keywords_utoipa_lacks`].
    EmbeddingValues => ArrayBuilder::new()
        .items(
            ObjectBuilder::new()
                .schema_type(Type::Number)
                .minimum(Some(-Embedding::MAX_MAGNITUDE))
                .maximum(Some(Embedding::MAX_MAGNITUDE)),
        )
        .min_items(Some(carevault_db::EMBEDDING_DIMENSIONS))
        .max_items(Some(carevault_db::EMBEDDING_DIMENSIONS))
        .description(Some(format!(
            "{} numbers between -{max:e} and {max:e}, at least one of magnitude {least:e} or more (pgvector \
             computes distances in float32: larger values overflow, a vector of only smaller ones underflows).",
            carevault_db::EMBEDDING_DIMENSIONS,
            max = Embedding::MAX_MAGNITUDE,
            least = Embedding::MIN_LARGEST_MAGNITUDE,
        )))
        .into()
);
schema_type!(
    /// `Metadata::parse`, stated as a free-form object (`additionalProperties: true`) whose rules
    /// are all in its description: no NUL character in keys or strings, numbers below 1e300 in
    /// magnitude, at most 64 KiB and 16 levels.
    ///
    /// Size and depth cannot be stated in JSON Schema at all. The other two could, but only by a
    /// schema that refers to itself (a value is a string, a number, …, an array of values or an
    /// object of values), and the mainstream client generators do not follow such a schema:
    /// openapi-python-client 0.29 drops it with every operation and model that uses it
    /// (`PATCH /documents/{id}` and the create request, whose generated code then imports a
    /// module that does not exist), and openapi-generator 7 wraps every value in a `MetadataValue`
    /// class whose integers must fit in 32 bits. A free-form object is what both turn into a plain
    /// `dict`. The evidence suite's schemathesis run keeps the metadata it generates within the
    /// description (`scripts/evidence/fuzz_hooks.py`), and `tests/schema_rules.rs` checks that the
    /// description names the parser's own limits and that no schema refers to itself.
    MetadataObject => ObjectBuilder::new()
        .schema_type(Type::Object)
        .additional_properties(Some(AdditionalProperties::FreeForm(true)))
        .description(Some(format!(
            "A JSON object of at most {} KiB (serialized) and {METADATA_MAX_DEPTH} levels of nesting (the \
             object itself is the first); no NUL character (U+0000) in any key or string, and every number \
             below {METADATA_MAX_NUMBER:e} in magnitude, at any depth. These rules are stated here only: a \
             schema for them would have to refer to itself, which client generators do not follow. A \
             request that breaks one is refused with 422 VAL_003.",
            METADATA_MAX_BYTES / 1024
        )))
        .into()
);

/// Adds what utoipa's typed schemas cannot hold: the rule of [`EmbeddingValues`] that one value
/// must reach 1e-15 in magnitude, a `contains` (JSON Schema 2020-12 core §10.3.1.3).
pub fn add_keywords_utoipa_lacks(document: &mut Value) {
    let least = Embedding::MIN_LARGEST_MAGNITUDE;
    if let Some(Value::Object(embedding)) = document.pointer_mut("/components/schemas/EmbeddingValues") {
        embedding.insert(
            "contains".into(),
            serde_json::json!({"anyOf": [
                {"type": "number", "minimum": least},
                {"type": "number", "maximum": -least},
            ]}),
        );
    }
}
