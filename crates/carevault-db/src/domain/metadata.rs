//! Document metadata: a bounded JSON object that jsonb can store and read back.

use serde::Serialize;

use crate::ValidationError;

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

#[cfg(test)]
mod tests {
    use super::*;

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
}
