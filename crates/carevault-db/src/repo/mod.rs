//! Repositories: every SQL statement of carevault, reached through [`crate::TenantTx`] or
//! [`crate::PlatformTx`].
//!
//! Every query also filters on `tenant_id` itself: RLS is the second line of defence, so a bug in
//! one of the two is not enough to leak (docs/THREAT_MODEL.md, "Two lines of defence").

// The columns each query returns, as macros so that `concat!` can build the `&'static str` SQL
// text that sqlx 0.9 requires (`SqlSafeStr`), with no run-time string formatting.
macro_rules! tenant_columns {
    () => {
        "id, name, status, kms_key_arn, jit_email_domains, created_at, updated_at, deleted_at"
    };
}
macro_rules! user_columns {
    () => {
        "id, tenant_id, email, external_idp_id, full_name, role, last_login_at, created_at, updated_at, deleted_at"
    };
}
macro_rules! document_columns {
    () => {
        "id, tenant_id, user_id, s3_key, s3_bucket, filename, content_type, size_bytes, status, metadata, \
         embedding_vector IS NOT NULL AS has_embedding, created_at, updated_at, deleted_at"
    };
}

/// The columns an audit row is inserted with, in the order of `insert_audit_row`'s parameters
/// (`tenant_tx.rs`), where every audit row is written: one statement of its own, or
/// [`audit_cte!`] in the statement of a read.
macro_rules! audit_insert_columns {
    () => {
        "audit_logs (tenant_id, user_id, action, resource_type, resource_id, ip_address, user_agent, metadata)"
    };
}

/// The audit row of a read that records itself in the same statement: a CTE after the read's
/// CTE `d`, inserting one row per row read (`d.id` the resource), with `$1` the tenant and `$3`
/// to `$8` the values `TenantTx::fetch_audited` binds. A read that finds nothing writes nothing.
macro_rules! audit_cte {
    () => {
        concat!(
            "audited AS (INSERT INTO ",
            audit_insert_columns!(),
            " SELECT $1, $3, $4, $5, d.id, $6::inet, $7, $8 FROM d)"
        )
    };
}

mod audit;
mod current_tenant;
mod documents;
mod documents_import;
mod search;
mod tenants;
mod users;

pub use audit::{AuditEntry, AuditFilter, AuditLog};
pub use current_tenant::CurrentTenant;
pub use documents::{Document, DocumentFilter, DocumentUpdate, Documents, NewDocument};
pub use documents_import::MAX_IMPORT_BATCH;
pub use search::{SearchHit, SearchLimit, Threshold};
pub use tenants::{Tenant, Tenants};
pub use users::{NewUser, User, UserUpdate, Users};

use crate::domain::{Cursor, Page, PageLimit};

/// Splits `limit + 1` fetched rows into a page and the cursor of the next one.
pub(crate) fn into_page<T>(mut rows: Vec<T>, limit: PageLimit, key: impl Fn(&T) -> Cursor) -> Page<T> {
    let limit = limit.get() as usize;
    let next_cursor = if rows.len() > limit {
        rows.truncate(limit);
        rows.last().map(key)
    } else {
        None
    };
    Page { items: rows, next_cursor }
}
