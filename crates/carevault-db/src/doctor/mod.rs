//! Health checks of a carevault database, for `carevault doctor` (docs/ARCHITECTURE.md, "Doctor").
//!
//! [`run`] reads the catalog once ([`Facts`]) and judges each check of [`CHECKS`] with a pure
//! function over those facts, so that a condition this machine cannot produce (another server
//! version, a connection without TLS) is still tested, on crafted facts. The security checks
//! compare the catalog with the [`Manifest`] exactly: the policies' expressions are deparsed from
//! the manifest on the same server and compared with what `pg_get_expr` shows of the live ones.
//! Every check that is not [`Status::Pass`] says what to run to fix it.
//!
//! The checks read catalogs only, plus one row of `tenants` (the System tenant) and temporary
//! tables of their own (to deparse the manifest's policies; rolled back). Any login that can
//! read the catalog works, but the owner (`DATABASE_URL`) sees the most. Under FORCE ROW LEVEL
//! SECURITY a non-superuser owner sees no tenant row, so the System tenant is read as
//! `carevault_platform` when the login may switch to it, and reported as unreadable otherwise.

mod audit_chain;
mod exposure;
mod facts;
mod policies;
mod privileges;
mod roles;
mod search_indexes;
mod server;
mod tls;
mod triggers;

pub use audit_chain::{MAX_UNSEALED_SECONDS, MAX_UNSIGNED_SECONDS, evaluate_audit_sealer};
pub use exposure::{RuleFacts, SecurityDefinerFacts, ViewFacts, evaluate_security_definer, evaluate_views};
pub use facts::Facts;
pub use policies::{
    PolicyFacts, TenantTableFacts, evaluate_policies, evaluate_row_level_security, evaluate_tenant_guard,
};
pub use privileges::{HeldPrivilege, PrivilegeFacts, evaluate_privileges};
pub use roles::{
    LoginFacts, LoginRolesFacts, RoleFacts, evaluate_login_roles, evaluate_role_settings, evaluate_runtime_roles,
    login_roles_sql,
};
pub use search_indexes::{SHARED_INDEX, SearchFacts, evaluate_search_indexes};
pub use server::{
    MigrationFacts, PgvectorFacts, ServerFacts, SystemTenantFacts, evaluate_migrations, evaluate_pgvector,
    evaluate_server_version, evaluate_system_tenant,
};
pub use tls::{TlsFacts, evaluate_tls};
pub use triggers::{
    FunctionFacts, TriggerFacts, evaluate_audit_triggers, evaluate_functions, evaluate_row_triggers,
    evaluate_truncate_guard,
};

use crate::DbError;
pub use crate::Environment;
use crate::manifest::Manifest;
pub use crate::manifest::{API_LOGIN, APP_ROLE, OPS_LOGIN, PLATFORM_ROLE};
use sqlx::PgPool;

/// The seeded System tenant.
pub const SYSTEM_TENANT_ID: &str = "00000000-0000-0000-0000-000000000000";
/// The oldest PostgreSQL major version supported (`server_version_num` / 10000).
pub const MIN_SERVER_MAJOR: i32 = 16;
/// The oldest pgvector supported (major, minor): iterative index scans.
pub const MIN_PGVECTOR: (u32, u32) = (0, 8);

/// The outcome of one check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Status {
    /// As designed.
    Pass,
    /// Works, but weaker than it should be.
    Warn,
    /// Broken: isolation, immutability or the service itself is at risk.
    Fail,
}

impl Status {
    /// `PASS`, `WARN` or `FAIL`.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Pass => "PASS",
            Status::Warn => "WARN",
            Status::Fail => "FAIL",
        }
    }
}

/// One line of the report.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Check {
    /// A stable name (`row_level_security`, `privileges`, ...).
    pub name: &'static str,
    /// The outcome.
    pub status: Status,
    /// What was found, in one sentence.
    pub message: String,
    /// For anything not PASS: what to run to fix it (may span several lines of SQL).
    pub fix: Option<String>,
}

impl Check {
    fn pass(name: &'static str, message: impl Into<String>) -> Check {
        Check { name, status: Status::Pass, message: message.into(), fix: None }
    }

    fn warn(name: &'static str, message: impl Into<String>, fix: impl Into<String>) -> Check {
        Check { name, status: Status::Warn, message: message.into(), fix: Some(fix.into()) }
    }

    fn fail(name: &'static str, message: impl Into<String>, fix: impl Into<String>) -> Check {
        Check { name, status: Status::Fail, message: message.into(), fix: Some(fix.into()) }
    }
}

/// What the caller knows that the database does not: where the server runs and which logins its
/// two pools use.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DoctorContext {
    /// `ENVIRONMENT`.
    pub environment: Environment,
    /// The login role of the tenant pool (the user of `APP_DATABASE_URL`; `carevault_api` on the
    /// embedded default). `None`: the pool uses `DATABASE_URL`, i.e. this connection's login.
    pub app_login: Option<String>,
    /// The login role of the platform pool (`PLATFORM_DATABASE_URL`), likewise.
    pub ops_login: Option<String>,
}

/// Facts a check needs that could not be read: the error's text.
type Unreadable = String;

/// One check: its stable name and how it judges the facts.
pub struct CheckDefinition {
    /// The name it reports under.
    pub name: &'static str,
    evaluate: fn(&Facts, &DoctorContext, &Manifest) -> Result<Check, Unreadable>,
}

/// The facts of one kind, or why they could not be read.
fn got<T>(facts: &Result<T, Unreadable>) -> Result<&T, Unreadable> {
    facts.as_ref().map_err(Clone::clone)
}

/// Every check, in the order [`run`] reports them.
pub const CHECKS: [CheckDefinition; 20] = [
    CheckDefinition { name: "server_version", evaluate: |f, _, _| Ok(evaluate_server_version(&f.server)) },
    CheckDefinition { name: "pgvector_version", evaluate: |f, _, _| Ok(evaluate_pgvector(got(&f.pgvector)?)) },
    CheckDefinition { name: "migrations", evaluate: |f, _, _| Ok(evaluate_migrations(got(&f.migrations)?)) },
    CheckDefinition { name: "system_tenant", evaluate: |f, _, _| Ok(evaluate_system_tenant(got(&f.system_tenant)?)) },
    CheckDefinition {
        name: "row_level_security",
        evaluate: |f, _, m| Ok(evaluate_row_level_security(got(&f.tables)?, m)),
    },
    CheckDefinition {
        name: "policies",
        evaluate: |f, _, m| Ok(evaluate_policies(got(&f.tables)?, got(&f.expected_policies)?, m)),
    },
    CheckDefinition {
        name: "tenant_guard",
        evaluate: |f, _, m| Ok(evaluate_tenant_guard(got(&f.tables)?, got(&f.expected_policies)?, m)),
    },
    CheckDefinition { name: "audit_triggers", evaluate: |f, _, m| Ok(evaluate_audit_triggers(got(&f.triggers)?, m)) },
    CheckDefinition {
        name: "audit_truncate_guard",
        evaluate: |f, _, m| Ok(evaluate_truncate_guard(got(&f.triggers)?, m)),
    },
    CheckDefinition { name: "row_triggers", evaluate: |f, _, m| Ok(evaluate_row_triggers(got(&f.triggers)?, m)) },
    CheckDefinition { name: "functions", evaluate: |f, _, m| Ok(evaluate_functions(got(&f.functions)?, m)) },
    CheckDefinition { name: "audit_sealer", evaluate: |f, _, _| Ok(evaluate_audit_sealer(got(&f.sealer)?)) },
    CheckDefinition {
        name: "search_indexes",
        evaluate: |f, _, _| Ok(evaluate_search_indexes(got(&f.search)?, crate::search_index::IndexPolicy::DEFAULT)),
    },
    CheckDefinition {
        name: "runtime_roles",
        evaluate: |f, _, m| Ok(evaluate_runtime_roles(got(&f.roles)?, &f.current_user, m)),
    },
    CheckDefinition { name: "privileges", evaluate: |f, _, m| Ok(evaluate_privileges(got(&f.privileges)?, m)) },
    CheckDefinition { name: "login_roles", evaluate: |f, _, _| Ok(evaluate_login_roles(got(&f.logins)?)) },
    CheckDefinition { name: "views", evaluate: |f, _, _| Ok(evaluate_views(got(&f.views)?, got(&f.rules)?)) },
    CheckDefinition {
        name: "security_definer_functions",
        evaluate: |f, _, m| Ok(evaluate_security_definer(got(&f.security_definer)?, m)),
    },
    CheckDefinition { name: "tls", evaluate: |f, ctx, _| Ok(evaluate_tls(got(&f.tls)?, ctx.environment)) },
    CheckDefinition {
        name: "role_settings",
        evaluate: |f, _, m| Ok(evaluate_role_settings(got(&f.role_settings)?, m)),
    },
];

/// The names of [`CHECKS`], in order.
pub const CHECK_NAMES: [&str; CHECKS.len()] = {
    let mut names = [""; CHECKS.len()];
    let mut index = 0;
    while index < CHECKS.len() {
        names[index] = CHECKS[index].name;
        index += 1;
    }
    names
};

/// Runs every check against carevault's own manifest, in the order of [`CHECKS`].
///
/// Fails only when the server cannot be queried at all; a check whose facts cannot be read is
/// reported as FAIL with the error (an unproven guarantee is not a guarantee).
pub async fn run(pool: &PgPool, ctx: &DoctorContext) -> Result<Vec<Check>, DbError> {
    run_with(pool, ctx, &Manifest::carevault()).await
}

/// Runs every check against `manifest` (carevault's, extended with tables of your own:
/// docs/EXTENSION_POINTS.md).
pub async fn run_with(pool: &PgPool, ctx: &DoctorContext, manifest: &Manifest) -> Result<Vec<Check>, DbError> {
    let facts = Facts::read(pool, ctx, manifest).await?;
    Ok(evaluate(&facts, ctx, manifest))
}

/// Judges `facts`: one [`Check`] per entry of [`CHECKS`].
pub fn evaluate(facts: &Facts, ctx: &DoctorContext, manifest: &Manifest) -> Vec<Check> {
    CHECKS
        .iter()
        .map(|check| match (check.evaluate)(facts, ctx, manifest) {
            Ok(result) => Check { name: check.name, ..result },
            Err(error) => unreadable(check.name, &error),
        })
        .collect()
}

/// PASS with `pass` when nothing is wrong, else FAIL listing the problems and their fixes.
fn verdict(name: &'static str, problems: Vec<String>, fixes: Vec<String>, pass: impl FnOnce() -> String) -> Check {
    if problems.is_empty() {
        Check::pass(name, pass())
    } else {
        Check::fail(name, problems.join("; "), fixes.join("\n"))
    }
}

fn unreadable(name: &'static str, error: &str) -> Check {
    Check::fail(
        name,
        format!("could not read what this check needs: {error}"),
        "run `carevault doctor` with DATABASE_URL set to the database owner (or a superuser)",
    )
}
