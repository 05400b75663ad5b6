//! carevault's data layer: the schema, tenant isolation, and the repositories.
//!
//! The only crate that writes SQL. Tenant code reaches tenant tables through exactly one door,
//! [`TenantTx`], which switches to the restricted role `carevault_app` and sets the tenant for
//! row-level security before anything else runs (see `tenant_tx.rs`: the whole protocol is in
//! that one file). Cross-tenant administration goes through [`PlatformTx`] on a separate
//! [`PlatformPool`]. Every access to patient data writes its audit row in the same transaction.
//!
//! ```no_run
//! # async fn example() -> Result<(), Box<dyn std::error::Error>> {
//! use carevault_db::tenant_context::TenantContextKey;
//! use carevault_db::{AppPool, AuditContext, PoolConfig, TenantId, TenantTx};
//!
//! // A key the database holds (`carevault context-key add`).
//! let key = TenantContextKey::parse(&std::env::var("TENANT_CONTEXT_KEY")?)?;
//! let pool = AppPool::connect_lazy("postgres://carevault_api@localhost/carevault", PoolConfig::default(), key)?;
//! let tenant = TenantId::parse("3f2b8c1e-0000-4000-8000-000000000001")?;
//! let mut tx = TenantTx::begin(&pool, tenant, AuditContext::default()).await?;
//! let me = tx.tenant().read().await?; // audited `tenant.read`
//! tx.commit().await?;
//! println!("{}", me.name);
//! # Ok(()) }
//! ```

pub mod audit_chain;
pub mod cluster;
pub mod doctor;
mod domain;
mod error;
mod hex;
pub mod manifest;
pub mod migrate;
mod platform_tx;
mod pool;
#[macro_use]
pub mod repo;
pub mod search_index;
pub mod tenant_context;
mod tenant_tx;

pub use domain::{
    AuditAction, AuditContext, AuditLogId, AuditResourceType, BoundedText, Cursor, Deleted, DocumentId, DocumentStatus,
    EMBEDDING_DIMENSIONS, Email, EmailDomain, Embedding, Environment, METADATA_MAX_BYTES, METADATA_MAX_DEPTH,
    METADATA_MAX_NUMBER, Metadata, Page, PageLimit, TenantId, TenantStatus, UserId, UserRole,
};
pub use error::{DbError, ValidationError};
pub use platform_tx::PlatformTx;
pub use pool::{
    AppPool, DEFAULT_STATEMENT_TIMEOUT, PINNED_SETTINGS, PlatformPool, PoolConfig, Pooler, SchemaState,
    connection_is_clean, settings_not_pinned,
};
pub use tenant_tx::TenantTx;

/// The guide `docs/MODEL_USAGE.md`, included here so that its examples are compiled by
/// `cargo test --doc` and cannot drift from the code.
#[doc = include_str!("../../../docs/MODEL_USAGE.md")]
pub mod guide {}

/// The guide `docs/EXTENSION_POINTS.md`, included here so that its manifest example is compiled
/// and run by `cargo test --doc`.
#[doc = include_str!("../../../docs/EXTENSION_POINTS.md")]
pub mod extension_guide {}
