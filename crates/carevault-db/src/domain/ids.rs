//! The row ids: UUIDs, one type per table so that a user id cannot be passed as a document id.

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_must_be_uuids() {
        assert!(TenantId::parse("org-456").is_err());
        assert_eq!(TenantId::parse("00000000-0000-0000-0000-000000000000").unwrap(), TenantId::SYSTEM);
        assert!(UserId::parse("' OR 1=1 --").is_err());
    }
}
