//! `carevault doctor`'s checks: all PASS on a freshly migrated database; each sabotage FAILs
//! exactly the check it breaks. Conditions this cluster cannot produce (another server version,
//! TCP without TLS, a role that is a superuser) are tested on crafted facts.
//!
//! Roles are cluster-wide and shared by every test database running in parallel: no test here
//! alters a role's attributes or memberships. Sabotage is per database (grants, policies,
//! triggers, ...).

use std::collections::BTreeSet;

use carevault_db::doctor::{
    self, CHECK_NAMES, Check, DoctorContext, Environment, IndexFacts, LoginFacts, LoginRolesFacts, MigrationFacts,
    PgvectorFacts, PolicyFacts, PrivilegeFacts, RoleFacts, SecurityDefinerFacts, ServerFacts, Status,
    SystemTenantFacts, TenantTableFacts, TlsFacts, TriggerFacts, ViewFacts,
};
use carevault_testdb::TestDb;

/// The server's logins as the embedded default and a good deployment have them.
fn ctx() -> DoctorContext {
    DoctorContext {
        environment: Environment::Production,
        app_login: Some("carevault_api".into()),
        ops_login: Some("carevault_ops".into()),
    }
}

/// Runs doctor (as the owner, a superuser here) after running `sabotage` on a fresh database.
async fn doctor_after(sabotage: &'static str) -> Vec<Check> {
    let db = TestDb::new().await;
    let owner = db.owner_pool().await;
    if !sabotage.is_empty() {
        sqlx::raw_sql(sabotage).execute(&owner).await.unwrap();
    }
    let checks = doctor::run(&owner, &ctx()).await.unwrap();
    owner.close().await;
    checks
}

fn describe(checks: &[Check]) -> String {
    checks
        .iter()
        .map(|c| format!("{} {} {} | fix: {}", c.status.as_str(), c.name, c.message, c.fix.as_deref().unwrap_or("-")))
        .collect::<Vec<_>>()
        .join("\n")
}

/// `name` FAILs, every other check PASSes; returns the failing check.
fn only_failing(checks: &[Check], name: &str) -> Check {
    let failing: Vec<&str> = checks.iter().filter(|c| c.status != Status::Pass).map(|c| c.name).collect();
    assert_eq!(failing, [name], "{}", describe(checks));
    let check = checks.iter().find(|c| c.name == name).unwrap().clone();
    assert_eq!(check.status, Status::Fail, "{}", describe(checks));
    assert!(check.fix.as_deref().is_some_and(|f| !f.trim().is_empty()), "a FAIL names its fix: {check:?}");
    check
}

#[tokio::test]
async fn a_fresh_database_passes_every_check() {
    let checks = doctor_after("").await;
    assert_eq!(checks.iter().map(|c| c.name).collect::<Vec<_>>(), CHECK_NAMES, "{}", describe(&checks));
    assert!(checks.iter().all(|c| c.status == Status::Pass && c.fix.is_none()), "{}", describe(&checks));
}

#[tokio::test]
async fn a_superuser_database_url_for_the_pools_is_a_warning_with_the_sql() {
    let db = TestDb::new().await;
    let owner = db.owner_pool().await;
    // No APP_DATABASE_URL / PLATFORM_DATABASE_URL: the pools would use DATABASE_URL, the superuser.
    let context = DoctorContext { environment: Environment::Development, app_login: None, ops_login: None };
    let checks = doctor::run(&owner, &context).await.unwrap();
    owner.close().await;
    let not_passing: Vec<&str> = checks.iter().filter(|c| c.status != Status::Pass).map(|c| c.name).collect();
    assert_eq!(not_passing, ["login_roles"], "{}", describe(&checks));
    let login = checks.iter().find(|c| c.name == "login_roles").unwrap();
    assert_eq!(login.status, Status::Warn);
    assert!(login.message.contains("superuser"), "{login:?}");
    let fix = login.fix.as_deref().unwrap();
    // The roles exist on this cluster (the bootstrap made them): the fix sets their passwords.
    assert!(fix.contains("ALTER ROLE carevault_api LOGIN NOINHERIT PASSWORD"), "{fix}");
    assert!(fix.contains("GRANT carevault_app TO carevault_api WITH INHERIT FALSE, SET TRUE;"), "{fix}");
    assert!(fix.contains("GRANT carevault_platform TO carevault_ops WITH INHERIT FALSE, SET TRUE;"), "{fix}");
    assert!(fix.contains("APP_DATABASE_URL") && fix.contains("PLATFORM_DATABASE_URL"), "{fix}");
}

#[tokio::test]
async fn a_login_that_does_not_exist_fails() {
    let db = TestDb::new().await;
    let owner = db.owner_pool().await;
    let context = DoctorContext { app_login: Some("carevault_nobody".into()), ..ctx() };
    let checks = doctor::run(&owner, &context).await.unwrap();
    owner.close().await;
    let check = only_failing(&checks, "login_roles");
    assert!(check.message.contains("carevault_nobody"), "{check:?}");
}

#[tokio::test]
async fn rls_not_forced_fails_row_level_security() {
    let check =
        only_failing(&doctor_after("ALTER TABLE documents NO FORCE ROW LEVEL SECURITY").await, "row_level_security");
    assert!(check.message.contains("public.documents"), "{check:?}");
    assert_eq!(check.fix.as_deref(), Some("ALTER TABLE public.documents FORCE ROW LEVEL SECURITY;"));
}

#[tokio::test]
async fn rls_disabled_fails_row_level_security() {
    let check = only_failing(&doctor_after("ALTER TABLE users DISABLE ROW LEVEL SECURITY").await, "row_level_security");
    assert!(check.fix.unwrap().contains("ALTER TABLE public.users ENABLE ROW LEVEL SECURITY;"));
}

#[tokio::test]
async fn a_dropped_tenant_guard_fails() {
    let check = only_failing(&doctor_after("DROP POLICY tenant_guard ON users").await, "tenant_guard");
    assert!(check.message.contains("public.users"), "{check:?}");
    assert!(check.fix.unwrap().contains("CREATE POLICY tenant_guard ON public.users AS RESTRICTIVE FOR ALL"));
}

#[tokio::test]
async fn a_dropped_isolation_policy_fails_policies() {
    let check = only_failing(&doctor_after("DROP POLICY document_isolation_policy ON documents").await, "policies");
    assert!(check.message.contains("document_isolation_policy"), "{check:?}");
}

#[tokio::test]
async fn a_widened_isolation_policy_fails_policies() {
    let check = only_failing(
        &doctor_after("ALTER POLICY user_isolation_policy ON users TO PUBLIC USING (true) WITH CHECK (true)").await,
        "policies",
    );
    assert!(check.message.contains("user_isolation_policy"), "{check:?}");
}

#[tokio::test]
async fn a_disabled_audit_trigger_fails() {
    let check = only_failing(
        &doctor_after("ALTER TABLE audit_logs DISABLE TRIGGER prevent_audit_log_delete").await,
        "audit_triggers",
    );
    assert_eq!(check.fix.as_deref(), Some("ALTER TABLE public.audit_logs ENABLE TRIGGER prevent_audit_log_delete;"));
}

#[tokio::test]
async fn a_dropped_truncate_guard_fails() {
    let check = only_failing(
        &doctor_after("DROP TRIGGER prevent_audit_log_truncate ON audit_logs").await,
        "audit_truncate_guard",
    );
    assert!(check.fix.unwrap().contains("CREATE TRIGGER prevent_audit_log_truncate BEFORE TRUNCATE"));
}

#[tokio::test]
async fn a_dropped_vector_index_fails() {
    let check = only_failing(&doctor_after("DROP INDEX idx_documents_embedding_hnsw").await, "vector_index");
    assert!(check.fix.unwrap().contains("USING hnsw"));
}

#[tokio::test]
async fn an_invalid_vector_index_fails() {
    // What an interrupted CREATE INDEX CONCURRENTLY leaves behind (the catalog is writable by a
    // superuser; this database is dropped after the test).
    let check = only_failing(
        &doctor_after(
            "UPDATE pg_index SET indisvalid = false WHERE indexrelid = 'idx_documents_embedding_hnsw'::regclass",
        )
        .await,
        "vector_index",
    );
    assert!(check.fix.unwrap().contains("REINDEX INDEX CONCURRENTLY"));
}

#[tokio::test]
async fn delete_granted_to_the_runtime_role_fails_privileges() {
    let check = only_failing(&doctor_after("GRANT DELETE ON documents TO carevault_app").await, "privileges");
    assert!(check.message.contains("carevault_app has DELETE on public.documents"), "{check:?}");
    assert_eq!(check.fix.as_deref(), Some("REVOKE DELETE ON public.documents FROM carevault_app, PUBLIC;"));
}

#[tokio::test]
async fn truncate_granted_to_the_platform_role_fails_privileges() {
    let check = only_failing(&doctor_after("GRANT TRUNCATE ON audit_logs TO carevault_platform").await, "privileges");
    assert!(check.message.contains("carevault_platform has TRUNCATE on public.audit_logs"), "{check:?}");
}

#[tokio::test]
async fn a_grant_through_public_fails_privileges() {
    let check = only_failing(&doctor_after("GRANT SELECT ON users TO PUBLIC").await, "privileges");
    // The login roles inherit nothing from their runtime role, but everybody is PUBLIC.
    assert!(check.message.contains("carevault_api has SELECT on public.users"), "{check:?}");
}

#[tokio::test]
async fn create_on_the_schema_fails_privileges() {
    let check = only_failing(&doctor_after("GRANT CREATE ON SCHEMA public TO carevault_app").await, "privileges");
    assert!(check.message.contains("CREATE in schema public"), "{check:?}");
}

#[tokio::test]
async fn an_insertable_audit_timestamp_fails_privileges() {
    let check =
        only_failing(&doctor_after("GRANT INSERT (created_at) ON audit_logs TO carevault_app").await, "privileges");
    assert!(check.message.contains("audit_logs.created_at"), "{check:?}");
}

#[tokio::test]
async fn a_missing_grant_fails_privileges() {
    let check = only_failing(&doctor_after("REVOKE UPDATE ON users FROM carevault_app").await, "privileges");
    assert!(check.message.contains("carevault_app lacks UPDATE on public.users"), "{check:?}");
    assert_eq!(check.fix.as_deref(), Some("GRANT UPDATE ON public.users TO carevault_app;"));
}

#[tokio::test]
async fn a_view_without_security_invoker_fails() {
    let check = only_failing(&doctor_after("CREATE VIEW leaky AS SELECT * FROM documents").await, "views");
    assert!(check.message.contains("public.leaky"), "{check:?}");
    assert_eq!(check.fix.as_deref(), Some("ALTER VIEW public.leaky SET (security_invoker = true);"));
}

#[tokio::test]
async fn a_view_over_a_view_over_a_tenant_table_fails() {
    let check = only_failing(
        &doctor_after(
            "CREATE VIEW inner_view WITH (security_invoker = true) AS SELECT id, tenant_id FROM users; \
             CREATE VIEW outer_view AS SELECT id FROM inner_view",
        )
        .await,
        "views",
    );
    assert!(check.message.contains("public.outer_view") && !check.message.contains("inner_view "), "{check:?}");
}

#[tokio::test]
async fn views_with_security_invoker_and_views_over_other_tables_pass() {
    let checks = doctor_after(
        "CREATE VIEW careful WITH (security_invoker = true) AS SELECT * FROM documents; \
         CREATE VIEW unrelated AS SELECT version FROM _sqlx_migrations",
    )
    .await;
    assert!(checks.iter().all(|c| c.status == Status::Pass), "{}", describe(&checks));
}

#[tokio::test]
async fn a_materialized_view_over_a_tenant_table_fails() {
    let check =
        only_failing(&doctor_after("CREATE MATERIALIZED VIEW copied AS SELECT * FROM audit_logs").await, "views");
    assert!(check.message.contains("materialized view public.copied"), "{check:?}");
}

#[tokio::test]
async fn a_security_definer_function_executable_by_public_fails() {
    let check = only_failing(
        &doctor_after("CREATE FUNCTION f() RETURNS int SECURITY DEFINER LANGUAGE sql AS 'select 1'").await,
        "security_definer_functions",
    );
    assert!(check.message.contains("public.f()"), "{check:?}");
    assert!(check.message.contains("carevault_app"), "{check:?}");
    assert!(check.fix.unwrap().contains("REVOKE EXECUTE ON FUNCTION public.f() FROM PUBLIC"));
}

#[tokio::test]
async fn a_security_definer_function_nobody_of_ours_can_execute_passes() {
    let checks = doctor_after(
        "CREATE FUNCTION g() RETURNS int SECURITY DEFINER LANGUAGE sql AS 'select 1'; \
         REVOKE EXECUTE ON FUNCTION g() FROM PUBLIC",
    )
    .await;
    assert!(checks.iter().all(|c| c.status == Status::Pass), "{}", describe(&checks));
}

#[tokio::test]
async fn a_missing_migration_fails_migrations() {
    let check = only_failing(
        &doctor_after("DELETE FROM _sqlx_migrations WHERE version = (SELECT max(version) FROM _sqlx_migrations)").await,
        "migrations",
    );
    assert!(check.message.contains(&format!("pending {}", carevault_db::migrate::head_version())), "{check:?}");
    assert_eq!(check.fix.as_deref(), Some("carevault migrate up"));
}

#[tokio::test]
async fn a_dirty_migration_fails_migrations() {
    let check = only_failing(
        &doctor_after(
            "UPDATE _sqlx_migrations SET success = false WHERE version = (SELECT max(version) FROM _sqlx_migrations)",
        )
        .await,
        "migrations",
    );
    assert!(check.message.contains("dirty"), "{check:?}");
}

#[tokio::test]
async fn an_edited_migration_fails_migrations() {
    let check = only_failing(
        &doctor_after("UPDATE _sqlx_migrations SET checksum = '\\x00' WHERE version = 3").await,
        "migrations",
    );
    assert!(check.message.contains("checksum"), "{check:?}");
}

#[tokio::test]
async fn a_missing_system_tenant_fails() {
    let check = only_failing(
        &doctor_after("DELETE FROM tenants WHERE id = '00000000-0000-0000-0000-000000000000'").await,
        "system_tenant",
    );
    assert!(check.fix.unwrap().contains("INSERT INTO public.tenants"));
}

#[tokio::test]
async fn the_system_tenant_is_read_through_the_platform_role_by_a_member_of_it() {
    // A login that is not a superuser and may switch to carevault_platform (carevault_ops): the
    // forced RLS hides every row from it unless it switches.
    let db = TestDb::new().await;
    let ops = sqlx::PgPool::connect(&db.ops_url()).await.unwrap();
    let checks = doctor::run(&ops, &ctx()).await.unwrap();
    ops.close().await;
    let system = checks.iter().find(|c| c.name == "system_tenant").unwrap();
    assert_eq!(system.status, Status::Pass, "{}", describe(&checks));
    // It cannot read the migrations table: that check says so and fails rather than guessing.
    let migrations = checks.iter().find(|c| c.name == "migrations").unwrap();
    assert_eq!(migrations.status, Status::Fail, "{migrations:?}");
    assert!(migrations.message.contains("could not read"), "{migrations:?}");
}

#[tokio::test]
async fn a_login_that_cannot_switch_to_the_runtime_role_reports_unreadable_tenants() {
    // carevault_api is a member of carevault_app, not carevault_platform.
    let db = TestDb::new().await;
    let api = sqlx::PgPool::connect(&db.app_url()).await.unwrap();
    let checks = doctor::run(&api, &ctx()).await.unwrap();
    api.close().await;
    let system = checks.iter().find(|c| c.name == "system_tenant").unwrap();
    assert_eq!(system.status, Status::Warn, "{}", describe(&checks));
    // Catalog checks work from any login.
    for name in ["row_level_security", "policies", "tenant_guard", "privileges", "runtime_roles", "views"] {
        let check = checks.iter().find(|c| c.name == name).unwrap();
        assert_eq!(check.status, Status::Pass, "{check:?}");
    }
}

// ---------------------------------------------------------------------------------------------
// Crafted facts

#[test]
fn server_versions() {
    let check = |num: i32, text: &str| {
        doctor::evaluate_server_version(&ServerFacts { version_num: num, version: text.into() }).status
    };
    assert_eq!(check(150008, "15.8"), Status::Fail);
    assert_eq!(check(160000, "16.0"), Status::Pass);
    assert_eq!(check(180006, "18.6"), Status::Pass);
    let fail = doctor::evaluate_server_version(&ServerFacts { version_num: 150008, version: "15.8".into() });
    assert!(fail.message.contains("15.8") && fail.fix.is_some());
}

#[test]
fn pgvector_versions() {
    let check = |installed: Option<&str>, available: Option<&str>| {
        doctor::evaluate_pgvector(&PgvectorFacts {
            installed: installed.map(Into::into),
            available: available.map(Into::into),
        })
    };
    assert_eq!(check(Some("0.7.4"), Some("0.7.4")).status, Status::Fail);
    assert_eq!(check(Some("0.8.0"), None).status, Status::Pass);
    assert_eq!(check(Some("0.8.1"), Some("0.8.1")).status, Status::Pass);
    assert_eq!(check(Some("1.0"), None).status, Status::Pass);
    let upgradable = check(Some("0.7.0"), Some("0.8.1"));
    assert_eq!(upgradable.status, Status::Fail);
    assert!(upgradable.fix.unwrap().contains("ALTER EXTENSION vector UPDATE"));
    let absent = check(None, Some("0.8.1"));
    assert_eq!(absent.status, Status::Fail);
    assert!(absent.fix.unwrap().contains("CREATE EXTENSION vector"));
    assert_eq!(check(None, None).status, Status::Fail);
}

#[test]
fn migrations_facts() {
    let base = MigrationFacts { head: 14, current: 14, pending: vec![], dirty: None, changed: vec![] };
    assert_eq!(doctor::evaluate_migrations(&base).status, Status::Pass);
    let newer = MigrationFacts { current: 15, ..base.clone() };
    assert_eq!(doctor::evaluate_migrations(&newer).status, Status::Fail);
    let empty = MigrationFacts { current: 0, pending: (1..=14).collect(), ..base };
    assert_eq!(doctor::evaluate_migrations(&empty).fix.as_deref(), Some("carevault migrate up"));
}

#[test]
fn system_tenant_facts() {
    let present = |status: &str, deleted| {
        doctor::evaluate_system_tenant(&SystemTenantFacts::Present { status: status.into(), deleted }).status
    };
    assert_eq!(present("active", false), Status::Pass);
    assert_eq!(present("active", true), Status::Warn);
    assert_eq!(present("suspended", false), Status::Warn);
    assert_eq!(doctor::evaluate_system_tenant(&SystemTenantFacts::Missing).status, Status::Fail);
    assert_eq!(doctor::evaluate_system_tenant(&SystemTenantFacts::Unreadable).status, Status::Warn);
}

#[test]
fn tls_states() {
    let tcp = TlsFacts { encrypted: false, version: None, client_addr: Some("10.0.0.7".into()) };
    let production = doctor::evaluate_tls(&tcp, Environment::Production);
    assert_eq!(production.status, Status::Warn);
    assert!(production.fix.unwrap().contains("sslmode="));
    assert_eq!(doctor::evaluate_tls(&tcp, Environment::Staging).status, Status::Warn);
    assert_eq!(doctor::evaluate_tls(&tcp, Environment::Development).status, Status::Pass);
    let socket = TlsFacts { encrypted: false, version: None, client_addr: None };
    assert_eq!(doctor::evaluate_tls(&socket, Environment::Production).status, Status::Pass);
    let loopback = TlsFacts { client_addr: Some("127.0.0.1".into()), ..tcp.clone() };
    assert_eq!(doctor::evaluate_tls(&loopback, Environment::Production).status, Status::Pass);
    let encrypted = TlsFacts { encrypted: true, version: Some("TLSv1.3".into()), ..tcp };
    let check = doctor::evaluate_tls(&encrypted, Environment::Production);
    assert_eq!(check.status, Status::Pass);
    assert!(check.message.contains("TLSv1.3"));
}

fn login(pool: &'static str, runtime_role: &'static str, name: &str) -> LoginFacts {
    LoginFacts {
        pool,
        runtime_role,
        login: name.into(),
        exists: true,
        superuser: false,
        bypass_rls: false,
        can_switch: true,
    }
}

fn logins(api: LoginFacts, ops: LoginFacts, exist: bool) -> LoginRolesFacts {
    LoginRolesFacts { logins: vec![api, ops], api_exists: exist, ops_exists: exist }
}

#[test]
fn login_roles() {
    let api = login("tenant", "carevault_app", "carevault_api");
    let ops = login("platform", "carevault_platform", "carevault_ops");
    assert_eq!(doctor::evaluate_login_roles(&logins(api.clone(), ops.clone(), true)).status, Status::Pass);

    // A single superuser URL (Railway's postgres), on a cluster without the login roles.
    let postgres = |pool, runtime| LoginFacts { superuser: true, ..login(pool, runtime, "postgres") };
    let check = doctor::evaluate_login_roles(&logins(
        postgres("tenant", "carevault_app"),
        postgres("platform", "carevault_platform"),
        false,
    ));
    assert_eq!(check.status, Status::Warn);
    assert!(check.message.contains("postgres") && check.message.contains("superuser"), "{check:?}");
    assert_eq!(check.message.matches("both pools log in as postgres").count(), 1, "said once: {check:?}");
    let fix = check.fix.unwrap();
    for line in [
        "CREATE ROLE carevault_api LOGIN NOINHERIT PASSWORD '<password>';",
        "GRANT carevault_app TO carevault_api WITH INHERIT FALSE, SET TRUE;",
        "CREATE ROLE carevault_ops LOGIN NOINHERIT PASSWORD '<password>';",
        "GRANT carevault_platform TO carevault_ops WITH INHERIT FALSE, SET TRUE;",
    ] {
        assert!(fix.contains(line), "{fix}");
    }

    let bypass = LoginFacts { bypass_rls: true, ..api.clone() };
    let check = doctor::evaluate_login_roles(&logins(bypass, ops.clone(), true));
    assert_eq!(check.status, Status::Warn);
    assert!(check.message.contains("BYPASSRLS"));

    let stranger = LoginFacts { can_switch: false, ..login("platform", "carevault_platform", "someone") };
    let check = doctor::evaluate_login_roles(&logins(api.clone(), stranger, true));
    assert_eq!(check.status, Status::Fail);
    assert_eq!(check.fix.as_deref(), Some("GRANT carevault_platform TO someone WITH INHERIT FALSE, SET TRUE;"));

    let missing = LoginFacts { exists: false, can_switch: false, ..ops };
    assert_eq!(doctor::evaluate_login_roles(&logins(api, missing, false)).status, Status::Fail);
}

fn role(name: &str) -> RoleFacts {
    let login = name == "carevault_api" || name == "carevault_ops";
    RoleFacts {
        name: name.into(),
        superuser: false,
        bypass_rls: false,
        can_login: login,
        create_role: false,
        create_db: false,
        replication: false,
        inherit: false,
        owns: vec![],
        member_of: match name {
            "carevault_api" => vec!["carevault_app".into()],
            "carevault_ops" => vec!["carevault_platform".into()],
            _ => vec![],
        },
    }
}

fn designed_roles() -> Vec<RoleFacts> {
    ["carevault_api", "carevault_app", "carevault_ops", "carevault_platform"].map(role).to_vec()
}

fn with_role(change: impl Fn(&mut RoleFacts)) -> Vec<RoleFacts> {
    let mut roles = designed_roles();
    change(roles.iter_mut().find(|r| r.name == "carevault_app").unwrap());
    roles
}

#[test]
fn runtime_roles() {
    assert_eq!(doctor::evaluate_runtime_roles(&designed_roles(), "owner").status, Status::Pass);

    let check = doctor::evaluate_runtime_roles(&with_role(|r| r.superuser = true), "owner");
    assert_eq!(check.status, Status::Fail);
    assert!(check.message.contains("carevault_app is SUPERUSER"), "{check:?}");
    assert!(check.fix.unwrap().contains("ALTER ROLE carevault_app NOLOGIN NOSUPERUSER NOBYPASSRLS"));

    let check = doctor::evaluate_runtime_roles(&with_role(|r| r.bypass_rls = true), "owner");
    assert_eq!(check.status, Status::Fail);
    assert!(check.message.contains("BYPASSRLS"), "{check:?}");

    let check = doctor::evaluate_runtime_roles(&with_role(|r| r.owns = vec!["table documents".into()]), "owner");
    assert_eq!(check.status, Status::Fail);
    assert!(check.message.contains("carevault_app owns table documents"), "{check:?}");
    assert!(check.fix.unwrap().contains("REASSIGN OWNED BY carevault_app TO owner;"));

    let check = doctor::evaluate_runtime_roles(&with_role(|r| r.member_of = vec!["pg_read_all_data".into()]), "o");
    assert_eq!(check.status, Status::Fail);
    assert_eq!(check.fix.as_deref(), Some("REVOKE pg_read_all_data FROM carevault_app;"));

    let check = doctor::evaluate_runtime_roles(&with_role(|r| r.can_login = true), "owner");
    assert_eq!(check.status, Status::Fail);

    // A login role with BYPASSRLS, or the runtime role missing.
    let mut roles = designed_roles();
    roles[0].bypass_rls = true;
    assert_eq!(doctor::evaluate_runtime_roles(&roles, "owner").status, Status::Fail);
    let without_platform: Vec<RoleFacts> =
        designed_roles().into_iter().filter(|r| r.name != "carevault_platform").collect();
    assert_eq!(doctor::evaluate_runtime_roles(&without_platform, "owner").status, Status::Fail);
}

#[test]
fn privileges() {
    let designed: BTreeSet<(String, String, String)> =
        doctor::DESIGNED_PRIVILEGES.iter().map(|(r, t, p)| (r.to_string(), t.to_string(), p.to_string())).collect();
    let facts = PrivilegeFacts { granted: designed, database: "carevault".into(), ..PrivilegeFacts::default() };
    assert_eq!(doctor::evaluate_privileges(&facts).status, Status::Pass);
    let create = PrivilegeFacts { database_create: vec!["carevault_app".into()], ..facts };
    let check = doctor::evaluate_privileges(&create);
    assert_eq!(check.status, Status::Fail);
    assert_eq!(check.fix.as_deref(), Some("REVOKE CREATE ON DATABASE carevault FROM carevault_app, PUBLIC;"));
}

#[test]
fn security_definer_functions() {
    let exposed = SecurityDefinerFacts { function: "public.f()".into(), executable_by: vec!["carevault_app".into()] };
    assert_eq!(doctor::evaluate_security_definer(std::slice::from_ref(&exposed)).status, Status::Fail);
    let private = SecurityDefinerFacts { executable_by: vec![], ..exposed };
    assert_eq!(doctor::evaluate_security_definer(&[private]).status, Status::Pass);
}

#[test]
fn views() {
    let view = |kind: &str, options: &[&str]| ViewFacts {
        name: "public.v".into(),
        kind: kind.into(),
        options: options.iter().map(|o| o.to_string()).collect(),
        reads: vec!["public.documents".into()],
    };
    assert_eq!(doctor::evaluate_views(&[view("v", &[])]).status, Status::Fail);
    assert_eq!(doctor::evaluate_views(&[view("v", &["security_invoker=false"])]).status, Status::Fail);
    assert_eq!(doctor::evaluate_views(&[view("v", &["security_invoker=on"])]).status, Status::Pass);
    assert_eq!(doctor::evaluate_views(&[view("m", &[])]).status, Status::Fail);
    assert_eq!(doctor::evaluate_views(&[]).status, Status::Pass);
}

#[test]
fn vector_index() {
    let good = IndexFacts { present: true, valid: true, ready: true, method: "hnsw".into() };
    assert_eq!(doctor::evaluate_vector_index(&good).status, Status::Pass);
    assert_eq!(
        doctor::evaluate_vector_index(&IndexFacts { method: "ivfflat".into(), ..good.clone() }).status,
        Status::Fail
    );
    assert_eq!(doctor::evaluate_vector_index(&IndexFacts { valid: false, ..good }).status, Status::Fail);
}

#[test]
fn audit_triggers() {
    let trigger = |name: &str, enabled: &str, tgtype: i16, function: &str| TriggerFacts {
        name: name.into(),
        enabled: enabled.into(),
        tgtype,
        function: function.into(),
        raises: true,
    };
    let designed = vec![
        trigger("prevent_audit_log_delete", "O", 1 | 2 | 8, "prevent_audit_log_modification"),
        trigger("prevent_audit_log_truncate", "O", 2 | 32, "prevent_audit_log_truncate"),
        trigger("prevent_audit_log_update", "O", 1 | 2 | 16, "prevent_audit_log_modification"),
    ];
    assert_eq!(doctor::evaluate_audit_triggers(&designed).status, Status::Pass);
    assert_eq!(doctor::evaluate_truncate_guard(&designed).status, Status::Pass);
    // Replica-only triggers do not fire in normal sessions.
    let mut replica = designed.clone();
    replica[2].enabled = "R".into();
    assert_eq!(doctor::evaluate_audit_triggers(&replica).status, Status::Fail);
    // A trigger whose function was replaced by one that lets the change through.
    let mut defanged = designed.clone();
    defanged[1].raises = false;
    assert_eq!(doctor::evaluate_truncate_guard(&defanged).status, Status::Fail);
    // An AFTER trigger cannot stop anything already done... and is not the designed one.
    let mut after = designed;
    after[0].tgtype = 1 | 8;
    assert_eq!(doctor::evaluate_audit_triggers(&after).status, Status::Fail);
}

#[test]
fn a_new_tenant_table_needs_forced_rls_and_the_guard() {
    let guard = PolicyFacts {
        name: "tenant_guard".into(),
        permissive: false,
        command: "ALL".into(),
        roles: vec!["carevault_app".into()],
        using: Some(
            "(tenant_id = ( SELECT (NULLIF(current_setting('app.current_tenant_id'::text, true), ''::text))::uuid))"
                .into(),
        ),
        with_check: Some(
            "(tenant_id = ( SELECT (NULLIF(current_setting('app.current_tenant_id'::text, true), ''::text))::uuid))"
                .into(),
        ),
    };
    let table = |name: &str, forced: bool, policies: Vec<PolicyFacts>| TenantTableFacts {
        name: name.into(),
        rls_enabled: true,
        rls_forced: forced,
        policies,
    };
    let four = ["public.audit_logs", "public.documents", "public.tenants", "public.users"];
    let mut tables: Vec<TenantTableFacts> = four.iter().map(|n| table(n, true, vec![guard.clone()])).collect();
    tables.push(table("public.notes", false, vec![]));
    let rls = doctor::evaluate_row_level_security(&tables);
    assert_eq!(rls.status, Status::Fail);
    assert!(rls.message.contains("public.notes"), "{rls:?}");
    let guard_check = doctor::evaluate_tenant_guard(&tables);
    assert_eq!(guard_check.status, Status::Fail);
    assert!(guard_check.message.contains("public.notes has no tenant_guard"), "{guard_check:?}");
    // A permissive "guard" is no guard.
    tables.pop();
    tables[0].policies[0].permissive = true;
    assert_eq!(doctor::evaluate_tenant_guard(&tables).status, Status::Fail);
    // Without the schema, the fix is to migrate.
    let none = doctor::evaluate_row_level_security(&[]);
    assert_eq!((none.status, none.fix.as_deref()), (Status::Fail, Some("carevault migrate up")));
}

#[tokio::test]
async fn a_role_default_of_a_login_role_is_a_warning() {
    let db = TestDb::new().await;
    let owner = db.owner_pool().await;
    let name: String = sqlx::query_scalar("SELECT current_database()::text").fetch_one(&owner).await.unwrap();
    let set = format!("ALTER ROLE carevault_api IN DATABASE \"{name}\" SET statement_timeout = '1ms'");
    sqlx::raw_sql(sqlx::AssertSqlSafe(set)).execute(&owner).await.unwrap();
    let checks = doctor::run(&owner, &ctx()).await.unwrap();
    let reset = format!("ALTER ROLE carevault_api IN DATABASE \"{name}\" RESET ALL");
    sqlx::raw_sql(sqlx::AssertSqlSafe(reset)).execute(&owner).await.unwrap();
    let flagged: Vec<&Check> = checks.iter().filter(|c| c.status != Status::Pass).collect();
    assert_eq!(flagged.len(), 1, "{}", describe(&checks));
    assert_eq!((flagged[0].name, flagged[0].status), ("role_settings", Status::Warn));
    assert!(flagged[0].message.contains("carevault_api: statement_timeout=1ms"), "{}", flagged[0].message);
}
