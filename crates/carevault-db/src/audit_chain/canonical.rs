//! The canonical form of an audit row and its chain hash, as `docs/AUDIT_FORMAT.md` specifies it
//! and the database's `audit_row_hash` computes it (migration 19). The two are compared on real
//! rows by the test suite (`tests/db/audit_chain.rs`).

use sha2::{Digest, Sha256};
use uuid::Uuid;

/// The first field of every row's encoding: the format and its version.
pub const FORMAT_TAG: &str = "carevault.audit.v1";

/// The predecessor of a tenant's first row: 32 zero bytes.
pub const GENESIS: [u8; 32] = [0; 32];

/// The fields of an audit row that the chain covers, in their stored form: the network address
/// and the metadata as PostgreSQL's text output of the `inet` and `jsonb` values, which is what
/// the hash covers (one stored value has one text form; docs/AUDIT_FORMAT.md says why). Its JSON
/// form is the `row` of an export line.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct CanonicalRow {
    /// Tenant.
    pub tenant_id: Uuid,
    /// Row id.
    pub id: Uuid,
    /// `created_at`, in microseconds since 1970-01-01T00:00:00Z (in JSON: `created_at`, RFC 3339).
    #[serde(rename = "created_at", with = "micros_as_rfc3339")]
    pub created_at_micros: i64,
    /// Acting user.
    pub user_id: Option<Uuid>,
    /// Action, as stored.
    pub action: String,
    /// Resource type, as stored.
    pub resource_type: String,
    /// Resource id.
    pub resource_id: Uuid,
    /// `ip_address::text`.
    pub ip_address: Option<String>,
    /// User agent.
    pub user_agent: Option<String>,
    /// `metadata::text`.
    pub metadata: Option<String>,
}

/// A time in microseconds as JSON: RFC 3339 in UTC with six fractional digits (`null` for one
/// no real row has, [`i64::MIN`]); any text that is not such a time reads back as [`i64::MIN`],
/// which matches no hash.
pub(crate) mod micros_as_rfc3339 {
    use chrono::{DateTime, Utc};
    use serde::{Deserialize, Deserializer, Serializer};

    /// The RFC 3339 form of `time`, as the format writes every time (checkpoints' included).
    pub(crate) fn format_time(time: DateTime<Utc>) -> String {
        time.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()
    }

    fn format(micros: i64) -> Option<String> {
        DateTime::from_timestamp_micros(micros).map(format_time)
    }

    pub(crate) fn serialize<S: Serializer>(micros: &i64, serializer: S) -> Result<S::Ok, S::Error> {
        match format(*micros) {
            Some(text) => serializer.serialize_str(&text),
            None => serializer.serialize_none(),
        }
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<i64, D::Error> {
        let text = Option::<String>::deserialize(deserializer)?;
        Ok(text
            .and_then(|t| DateTime::parse_from_rfc3339(&t).ok())
            .map_or(i64::MIN, |t| t.with_timezone(&Utc).timestamp_micros()))
    }
}

/// SHA-256 over `previous` and the row's fields at place `seq` of its tenant's chain, sealed at
/// `sealed_at_micros` (microseconds since 1970-01-01T00:00:00Z).
pub fn row_hash(previous: &[u8; 32], seq: i64, sealed_at_micros: i64, row: &CanonicalRow) -> [u8; 32] {
    let mut hasher = Sha256::new();
    hasher.update(previous);
    let mut field = |bytes: Option<&[u8]>| match bytes {
        None => hasher.update([0u8]),
        Some(bytes) => {
            hasher.update([1u8]);
            // Lengths are bounded by PostgreSQL's 1 GB field limit, far below i32::MAX.
            hasher.update((bytes.len() as u32).to_be_bytes());
            hasher.update(bytes);
        }
    };
    field(Some(FORMAT_TAG.as_bytes()));
    field(Some(&seq.to_be_bytes()));
    field(Some(&sealed_at_micros.to_be_bytes()));
    field(Some(row.tenant_id.as_bytes()));
    field(Some(row.id.as_bytes()));
    field(Some(&row.created_at_micros.to_be_bytes()));
    field(row.user_id.as_ref().map(|u| &u.as_bytes()[..]));
    field(Some(row.action.as_bytes()));
    field(Some(row.resource_type.as_bytes()));
    field(Some(row.resource_id.as_bytes()));
    field(row.ip_address.as_deref().map(str::as_bytes));
    field(row.user_agent.as_deref().map(str::as_bytes));
    field(row.metadata.as_deref().map(str::as_bytes));
    hasher.finalize().into()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The sealing time of the format page's example.
    const SEALED: i64 = 1_764_000_001_000_000;

    fn row() -> CanonicalRow {
        CanonicalRow {
            tenant_id: Uuid::from_u128(1),
            id: Uuid::from_u128(2),
            created_at_micros: 1_764_000_000_123_456,
            user_id: None,
            action: "document.read".into(),
            resource_type: "document".into(),
            resource_id: Uuid::from_u128(3),
            ip_address: Some("10.0.0.1".into()),
            user_agent: None,
            metadata: Some("{}".into()),
        }
    }

    #[test]
    fn every_field_the_place_and_the_predecessor_change_the_hash() {
        let base = row_hash(&GENESIS, 1, SEALED, &row());
        let mut variants = vec![
            row_hash(&[1; 32], 1, SEALED, &row()),
            row_hash(&GENESIS, 2, SEALED, &row()),
            row_hash(&GENESIS, 1, SEALED + 1, &row()),
        ];
        let edits: [fn(&mut CanonicalRow); 10] = [
            |r| r.tenant_id = Uuid::from_u128(9),
            |r| r.id = Uuid::from_u128(9),
            |r| r.created_at_micros += 1,
            |r| r.user_id = Some(Uuid::nil()),
            |r| r.action.push('x'),
            |r| r.resource_type.push('x'),
            |r| r.resource_id = Uuid::from_u128(9),
            |r| r.ip_address = None,
            |r| r.user_agent = Some(String::new()),
            |r| r.metadata = Some("{\"a\": 1}".into()),
        ];
        for edit in edits {
            let mut edited = row();
            edit(&mut edited);
            variants.push(row_hash(&GENESIS, 1, SEALED, &edited));
        }
        for (i, variant) in variants.iter().enumerate() {
            assert_ne!(*variant, base, "variant {i}");
        }
    }

    #[test]
    fn the_worked_example_of_the_format_page_holds() {
        let page = include_str!("../../../../docs/AUDIT_FORMAT.md");
        let hash = crate::hex::encode(&row_hash(&GENESIS, 1, SEALED, &row()));
        assert!(page.contains(&format!("    {hash}\n")), "docs/AUDIT_FORMAT.md does not show {hash}");
        for stated in ["sealed_at 1764000001000000 µs", "created_at 1764000000123456 µs", r#"ip_address "10.0.0.1""#]
        {
            assert!(page.contains(stated), "the page states {stated}");
        }
    }

    #[test]
    fn lengths_keep_adjacent_fields_apart() {
        // Without the length prefix "ab" + "c" and "a" + "bc" would hash alike.
        let mut one = row();
        one.action = "ab".into();
        one.resource_type = "c".into();
        let mut two = row();
        two.action = "a".into();
        two.resource_type = "bc".into();
        assert_ne!(row_hash(&GENESIS, 1, SEALED, &one), row_hash(&GENESIS, 1, SEALED, &two));
    }
}
