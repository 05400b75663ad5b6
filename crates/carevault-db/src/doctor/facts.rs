//! Reading the facts of every check, once.

use sqlx::PgPool;

use super::audit_chain::sealer_facts;
use super::exposure::{RuleFacts, SecurityDefinerFacts, ViewFacts, rule_facts, security_definer_facts, view_facts};
use super::policies::{TenantTableFacts, deparsed_manifest_policies, tenant_table_facts};
use super::privileges::{PrivilegeFacts, privilege_facts};
use super::roles::{LoginRolesFacts, RoleFacts, login_facts, role_facts, role_setting_facts};
use super::search_indexes::{SearchFacts, search_facts};
use super::server::{
    MigrationFacts, PgvectorFacts, ServerFacts, SystemTenantFacts, migration_facts, pgvector_facts, server_facts,
    system_tenant_facts,
};
use super::tls::{TlsFacts, tls_facts};
use super::triggers::{FunctionFacts, TriggerFacts, function_facts, trigger_facts};
use super::{DoctorContext, Unreadable};
use crate::DbError;
use crate::manifest::{Manifest, Policy};

/// What the checks judge, read from the catalog; a part that could not be read holds the error.
#[derive(Debug, Clone)]
pub struct Facts {
    /// `current_user` of the connection.
    pub current_user: String,
    /// The server's version.
    pub server: ServerFacts,
    /// The `vector` extension.
    pub pgvector: Result<PgvectorFacts, Unreadable>,
    /// Applied migrations.
    pub migrations: Result<MigrationFacts, Unreadable>,
    /// The System tenant.
    pub system_tenant: Result<SystemTenantFacts, Unreadable>,
    /// The manifest's tenant tables and every other table with a `tenant_id` column.
    pub tables: Result<Vec<TenantTableFacts>, Unreadable>,
    /// The manifest's policies with their expressions as this server deparses them.
    pub expected_policies: Result<Vec<Policy>, Unreadable>,
    /// Triggers on the tenant tables.
    pub triggers: Result<Vec<TriggerFacts>, Unreadable>,
    /// The manifest's functions as the catalog holds them.
    pub functions: Result<Vec<FunctionFacts>, Unreadable>,
    /// The vector search structures.
    pub search: Result<SearchFacts, Unreadable>,
    /// How far the audit chain's sealer is behind.
    pub sealer: Result<crate::audit_chain::SealerLag, Unreadable>,
    /// Our roles.
    pub roles: Result<Vec<RoleFacts>, Unreadable>,
    /// What our roles may do in this database.
    pub privileges: Result<PrivilegeFacts, Unreadable>,
    /// The pools' logins.
    pub logins: Result<LoginRolesFacts, Unreadable>,
    /// Views over tenant tables.
    pub views: Result<Vec<ViewFacts>, Unreadable>,
    /// Rewrite rules on tables.
    pub rules: Result<Vec<RuleFacts>, Unreadable>,
    /// SECURITY DEFINER functions in our schemas.
    pub security_definer: Result<Vec<SecurityDefinerFacts>, Unreadable>,
    /// This connection's transport.
    pub tls: Result<TlsFacts, Unreadable>,
    /// Defaults stored for our roles.
    pub role_settings: Result<Vec<String>, Unreadable>,
}

fn kept<T>(result: Result<T, DbError>) -> Result<T, Unreadable> {
    result.map_err(|error| error.to_string())
}

impl Facts {
    /// Reads every fact. Fails only when the server cannot be queried at all.
    pub async fn read(pool: &PgPool, ctx: &DoctorContext, manifest: &Manifest) -> Result<Facts, DbError> {
        let server = server_facts(pool).await?;
        let current_user: String = sqlx::query_scalar("SELECT current_user::text").fetch_one(pool).await?;
        Ok(Facts {
            pgvector: kept(pgvector_facts(pool).await),
            migrations: kept(migration_facts(pool).await),
            system_tenant: kept(system_tenant_facts(pool).await),
            tables: kept(tenant_table_facts(pool, manifest).await),
            expected_policies: kept(deparsed_manifest_policies(pool, manifest).await),
            triggers: kept(trigger_facts(pool, manifest).await),
            functions: kept(function_facts(pool, manifest).await),
            search: kept(search_facts(pool).await),
            sealer: kept(sealer_facts(pool).await),
            roles: kept(role_facts(pool).await),
            privileges: kept(privilege_facts(pool, server.version_num).await),
            logins: kept(login_facts(pool, ctx, &current_user).await),
            views: kept(view_facts(pool).await),
            rules: kept(rule_facts(pool).await),
            security_definer: kept(security_definer_facts(pool).await),
            tls: kept(tls_facts(pool).await),
            role_settings: kept(role_setting_facts(pool, ctx).await),
            server,
            current_user,
        })
    }
}
