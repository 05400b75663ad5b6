//! Domain types that validate on construction (`parse`), so the rest of the code never holds an
//! invalid id, email, role, status, audit action or embedding. Errors never echo the refused
//! value: it may be PHI.

mod audit_action;
mod audit_context;
mod email_domain;
mod embedding;
mod enums;
mod ids;
mod metadata;
mod page;
mod text;

pub use audit_action::{AuditAction, AuditResourceType};
pub use audit_context::AuditContext;
pub use email_domain::EmailDomain;
pub use embedding::{EMBEDDING_DIMENSIONS, Embedding};
pub use enums::{DocumentStatus, Environment, TenantStatus, UserRole};
pub use ids::{AuditLogId, DocumentId, TenantId, UserId};
pub use metadata::{METADATA_MAX_BYTES, METADATA_MAX_DEPTH, METADATA_MAX_NUMBER, Metadata};
pub use page::{Cursor, Deleted, Page, PageLimit};
pub use text::{BoundedText, Email};
