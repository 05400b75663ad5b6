//! The audit vocabulary: every action an audit row records, and the type of resource it names.
//!
//! Writers pass an [`AuditAction`] and nothing else: the action decides its resource type, so a
//! row cannot pair `document.read` with `user`. The wire names (`document.read`, `audit_log`, ...)
//! are what `audit_logs.action` and `audit_logs.resource_type` store and what
//! `GET /audit-logs?action=` filters on; they are also meant to be part of the canonical form of
//! an audit row (a hash chain over the log), so a name never changes once released: a new
//! meaning gets a new variant with a new name.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::enums::string_enum;
use crate::ValidationError;

string_enum!(
    /// What kind of thing an audit row's `resource_id` names.
    AuditResourceType, "resource_type", "must be tenant, user, document, audit_log or endpoint" {
        /// A tenant (`resource_id` is the tenant's id).
        Tenant => "tenant",
        /// A user (`resource_id` is the user's id, or the tenant's for a list).
        User => "user",
        /// A document (`resource_id` is the document's id, or the tenant's for a list or search).
        Document => "document",
        /// The audit log itself (`resource_id` is the tenant's id).
        AuditLog => "audit_log",
        /// An API endpoint that refused the caller (`resource_id` is the tenant's id, the route is
        /// in the metadata).
        Endpoint => "endpoint",
    }
);

/// Generates [`AuditAction`] from one table of `Variant => "wire.name", ResourceType`, so that an
/// action's name and its resource type are stated once, side by side.
macro_rules! audit_actions {
    ($($(#[$vdoc:meta])* $variant:ident => $text:literal, $resource:ident),+ $(,)?) => {
        /// An audited action: a fixed catalogue, so that no caller can invent one.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
        pub enum AuditAction {
            $($(#[$vdoc])* #[serde(rename = $text)] $variant),+
        }

        impl AuditAction {
            /// Every action, in declaration order.
            pub const ALL: &'static [AuditAction] = &[$(AuditAction::$variant),+];

            /// Parses a wire name; an unknown one is refused without echoing it.
            pub fn parse(text: &str) -> Result<AuditAction, ValidationError> {
                match text {
                    $($text => Ok(AuditAction::$variant),)+
                    _ => Err(ValidationError::new("action", "must be one of the audit actions")),
                }
            }

            /// The wire name, as stored in `audit_logs.action` (stable).
            pub fn as_str(&self) -> &'static str {
                match self {
                    $(AuditAction::$variant => $text),+
                }
            }

            /// The type of resource the row's `resource_id` names, as stored in
            /// `audit_logs.resource_type`.
            pub fn resource_type(&self) -> AuditResourceType {
                match self {
                    $(AuditAction::$variant => AuditResourceType::$resource),+
                }
            }
        }
    };
}

audit_actions!(
    /// A tenant was created (platform path).
    TenantCreated => "tenant.created", Tenant,
    /// A tenant was suspended (platform path).
    TenantSuspended => "tenant.suspended", Tenant,
    /// A tenant was activated (platform path).
    TenantActivated => "tenant.activated", Tenant,
    /// A tenant was soft-deleted (platform path).
    TenantDeleted => "tenant.deleted", Tenant,
    /// A tenant was restored (platform path).
    TenantRestored => "tenant.restored", Tenant,
    /// A tenant's settings were changed (platform path): the metadata names the new values.
    TenantUpdated => "tenant.updated", Tenant,
    /// The current tenant was read.
    TenantRead => "tenant.read", Tenant,
    /// A user was created.
    UserCreated => "user.created", User,
    /// A user was read.
    UserRead => "user.read", User,
    /// Users were listed.
    UserListed => "user.listed", User,
    /// A user was changed.
    UserUpdated => "user.updated", User,
    /// A user was soft-deleted.
    UserDeleted => "user.deleted", User,
    /// A user was restored.
    UserRestored => "user.restored", User,
    /// A user was provisioned just in time from a token.
    UserProvisioned => "user.provisioned", User,
    /// A user's login was recorded (`last_login_at`), so that this write, too, has its audit row.
    UserLogin => "user.login", User,
    /// A document was created.
    DocumentCreated => "document.created", Document,
    /// A document was read.
    DocumentRead => "document.read", Document,
    /// Documents were listed.
    DocumentListed => "document.listed", Document,
    /// A document was changed.
    DocumentUpdated => "document.updated", Document,
    /// A document was soft-deleted.
    DocumentDeleted => "document.deleted", Document,
    /// A document was restored.
    DocumentRestored => "document.restored", Document,
    /// A similarity search ran.
    DocumentSearched => "document.searched", Document,
    /// A batch of documents was created at once (`resource_id` is the tenant's id, the count and
    /// ids are in the metadata).
    DocumentImported => "document.imported", Document,
    /// The audit log was read.
    AuditRead => "audit.read", AuditLog,
    /// An authenticated user was refused by the role matrix.
    AccessDenied => "access.denied", Endpoint,
);

impl fmt::Display for AuditAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The released wire names and their resource types. Rows already stored (and, later, their
    /// hashes) use these exact strings: this list only ever grows.
    const RELEASED: &[(&str, &str)] = &[
        ("tenant.created", "tenant"),
        ("tenant.suspended", "tenant"),
        ("tenant.activated", "tenant"),
        ("tenant.deleted", "tenant"),
        ("tenant.restored", "tenant"),
        ("tenant.read", "tenant"),
        ("tenant.updated", "tenant"),
        ("user.created", "user"),
        ("user.read", "user"),
        ("user.listed", "user"),
        ("user.updated", "user"),
        ("user.deleted", "user"),
        ("user.restored", "user"),
        ("user.provisioned", "user"),
        ("user.login", "user"),
        ("document.created", "document"),
        ("document.read", "document"),
        ("document.listed", "document"),
        ("document.updated", "document"),
        ("document.deleted", "document"),
        ("document.restored", "document"),
        ("document.searched", "document"),
        ("document.imported", "document"),
        ("audit.read", "audit_log"),
        ("access.denied", "endpoint"),
    ];

    #[test]
    fn wire_names_are_stable() {
        for (name, resource_type) in RELEASED {
            let action = AuditAction::parse(name).expect(name);
            assert_eq!(action.as_str(), *name);
            assert_eq!(action.resource_type().as_str(), *resource_type, "{name}");
        }
        assert_eq!(AuditAction::ALL.len(), RELEASED.len(), "a new action must be added to RELEASED");
    }

    #[test]
    fn every_action_round_trips_through_parse_serde_and_display() {
        for action in AuditAction::ALL {
            assert_eq!(AuditAction::parse(action.as_str()).unwrap(), *action);
            assert_eq!(action.to_string(), action.as_str());
            assert_eq!(serde_json::to_value(action).unwrap(), action.as_str());
            assert_eq!(serde_json::from_value::<AuditAction>(action.as_str().into()).unwrap(), *action);
        }
        for resource_type in AuditResourceType::ALL {
            assert_eq!(AuditResourceType::parse(resource_type.as_str()).unwrap(), *resource_type);
            assert_eq!(serde_json::to_value(resource_type).unwrap(), resource_type.as_str());
        }
        // Every resource type is used by some action.
        for resource_type in AuditResourceType::ALL {
            assert!(AuditAction::ALL.iter().any(|a| a.resource_type() == *resource_type), "{resource_type}");
        }
    }

    #[test]
    fn unknown_names_are_refused_without_echoing_them() {
        for bad in ["", "Document.Read", "document.read ", "document", "forged", "x.y", "patient:Ann Lee"] {
            let error = AuditAction::parse(bad).unwrap_err();
            assert_eq!(error.field, "action");
            assert!(bad.is_empty() || !error.to_string().contains(bad), "{bad:?} echoed: {error}");
        }
        for bad in ["", "Tenant", "auditlog", "audit-log", "patient:Ann Lee"] {
            let error = AuditResourceType::parse(bad).unwrap_err();
            assert_eq!(error.field, "resource_type");
            assert!(bad.is_empty() || !error.to_string().contains(bad), "{bad:?} echoed: {error}");
        }
    }
}
