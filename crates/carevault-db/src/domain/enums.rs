//! The closed sets of names stored in text columns (roles, statuses) and the deployment
//! environment. Each name is written once, in its enum's declaration; `ALL` lists them for the
//! OpenAPI document and the tests.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::ValidationError;

/// Generates a string enum with `ALL`, `parse`, `as_str`, `Display`, and serde by the same name.
macro_rules! string_enum {
    ($(#[$doc:meta])* $name:ident, $field:literal, $reason:literal { $($(#[$vdoc:meta])* $variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
        pub enum $name {
            // Renamed one by one rather than `rename_all`, so that serde uses exactly the name
            // `as_str` returns (`rename_all = "lowercase"` would turn `AuditLog` into `auditlog`).
            $($(#[$vdoc])* #[serde(rename = $text)] $variant),+
        }

        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// Parses the name; anything else is refused without echoing it.
            pub fn parse(text: &str) -> Result<Self, ValidationError> {
                match text {
                    $($text => Ok($name::$variant),)+
                    _ => Err(ValidationError::new($field, $reason)),
                }
            }

            /// The name, as stored.
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
pub(super) use string_enum;

string_enum!(
    /// A user's role, which decides what the API lets them do.
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

/// The deployment environment (`ENVIRONMENT`), shared by the HTTP layer and `carevault doctor`.
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

#[cfg(test)]
mod tests {
    use super::*;

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
    fn serde_uses_the_stored_names() {
        for role in UserRole::ALL {
            assert_eq!(serde_json::to_value(role).unwrap(), role.as_str());
            assert_eq!(serde_json::from_value::<UserRole>(role.as_str().into()).unwrap(), *role);
        }
        for status in TenantStatus::ALL {
            assert_eq!(serde_json::to_value(status).unwrap(), status.as_str());
        }
    }
}
