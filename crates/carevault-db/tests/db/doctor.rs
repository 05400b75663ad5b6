//! `carevault doctor`'s checks: all PASS on a freshly migrated database; each sabotage FAILs
//! exactly the check it breaks. Conditions this cluster cannot produce (another server version,
//! TCP without TLS, a role that is a superuser) are tested on crafted facts (`doctor_facts.rs`).
//!
//! Roles are cluster-wide and shared by every test database running in parallel: no test here
//! alters a role's attributes or memberships. Sabotage is per database (grants, policies,
//! triggers, ...).

use carevault_db::doctor::{self, CHECK_NAMES, Check, DoctorContext, Environment, Status};
use carevault_db::{AuditContext, TenantTx};
use carevault_testdb::TestDb;
use sqlx::Connection;

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
async fn a_policy_widened_with_or_true_fails_naming_it_and_its_expression() {
    // What the substring comparison of the past let through: the expression still mentions the
    // tenant, yet lets every row through.
    let checks = doctor_after(
        "ALTER POLICY document_isolation_policy ON documents \
             USING (true OR tenant_id = (SELECT carevault_current_tenant())) \
             WITH CHECK (tenant_id = (SELECT carevault_current_tenant()) OR true); \
         ALTER POLICY tenant_guard ON documents USING (tenant_id = (SELECT carevault_current_tenant()) OR true)",
    )
    .await;
    let failing: Vec<&str> = checks.iter().filter(|c| c.status != Status::Pass).map(|c| c.name).collect();
    assert_eq!(failing, ["policies", "tenant_guard"], "{}", describe(&checks));
    let policies = checks.iter().find(|c| c.name == "policies").unwrap();
    assert!(policies.message.contains("document_isolation_policy on public.documents has USING"), "{policies:?}");
    assert!(policies.message.contains("has WITH CHECK"), "{policies:?}");
    assert!(policies.message.contains("true"), "{policies:?}");
    let fix = policies.fix.as_deref().unwrap();
    assert!(
        fix.contains(
            "CREATE POLICY document_isolation_policy ON public.documents AS PERMISSIVE FOR ALL TO carevault_app \
             USING (tenant_id = (SELECT public.carevault_current_tenant()))"
        ),
        "{fix}"
    );
    let guard = checks.iter().find(|c| c.name == "tenant_guard").unwrap();
    assert!(guard.message.contains("tenant_guard on public.documents has USING"), "{guard:?}");
}

#[tokio::test]
async fn a_policy_read_from_the_raw_setting_fails() {
    // Equivalent today, but it bypasses the one tenant function the verified context will change.
    let check = only_failing(
        &doctor_after(
            "ALTER POLICY user_isolation_policy ON users \
                 USING (tenant_id = (SELECT nullif(current_setting('app.current_tenant_id', true), '')::uuid))",
        )
        .await,
        "policies",
    );
    assert!(check.message.contains("user_isolation_policy on public.users has USING"), "{check:?}");
}

#[tokio::test]
async fn a_policy_the_manifest_does_not_state_fails() {
    let check = only_failing(
        &doctor_after("CREATE POLICY read_more ON documents FOR SELECT TO carevault_app USING (true)").await,
        "policies",
    );
    assert!(check.message.contains("permissive policy read_more on public.documents is not in the security manifest"));
    assert_eq!(check.fix.as_deref(), Some("DROP POLICY read_more ON public.documents;"));
}

#[tokio::test]
async fn a_tenant_table_outside_the_manifest_fails() {
    let check = only_failing(
        &doctor_after(
            "CREATE TABLE notes (id uuid PRIMARY KEY, tenant_id uuid NOT NULL); \
             ALTER TABLE notes ENABLE ROW LEVEL SECURITY; ALTER TABLE notes FORCE ROW LEVEL SECURITY",
        )
        .await,
        "row_level_security",
    );
    assert!(check.message.contains("public.notes has a tenant_id column but is not in the security manifest"));
    assert!(check.fix.unwrap().contains("docs/EXTENSION_POINTS.md"));
}

#[tokio::test]
async fn a_rewritten_trigger_function_fails_functions() {
    let check = only_failing(
        &doctor_after(
            "CREATE OR REPLACE FUNCTION prevent_audit_log_modification() RETURNS trigger \
             LANGUAGE plpgsql SET search_path = pg_catalog AS $$ BEGIN RETURN NEW; END $$",
        )
        .await,
        "functions",
    );
    assert!(check.message.contains("public.prevent_audit_log_modification() has a different body"), "{check:?}");
}

#[tokio::test]
async fn a_replaced_tenant_function_fails_functions() {
    let check = only_failing(
        &doctor_after(
            "CREATE OR REPLACE FUNCTION carevault_current_tenant() RETURNS uuid LANGUAGE sql STABLE PARALLEL SAFE \
             RETURN coalesce(nullif(current_setting('app.current_tenant_id', true), ''), \
                             '00000000-0000-0000-0000-000000000000')::uuid",
        )
        .await,
        "functions",
    );
    // The verifier replaced by a function that trusts the setting (migration 15's) is named.
    assert!(check.message.contains("public.carevault_current_tenant() is LANGUAGE sql"), "{check:?}");
    assert!(check.message.contains("is not SECURITY DEFINER"), "{check:?}");
    assert!(check.message.contains("has a different body"), "{check:?}");
}

#[tokio::test]
async fn execute_on_the_tenant_function_for_the_login_role_fails_functions() {
    let check = only_failing(
        &doctor_after("GRANT EXECUTE ON FUNCTION carevault_current_tenant() TO carevault_api").await,
        "functions",
    );
    assert!(check.message.contains("is executable by [carevault_api, carevault_app]"), "{check:?}");
}

#[tokio::test]
async fn a_trigger_the_manifest_does_not_state_fails_row_triggers() {
    let check = only_failing(
        &doctor_after("CREATE TRIGGER touch AFTER INSERT ON documents FOR EACH ROW EXECUTE FUNCTION set_updated_at()")
            .await,
        "row_triggers",
    );
    assert!(check.message.contains("trigger touch on public.documents"), "{check:?}");
    assert_eq!(check.fix.as_deref(), Some("DROP TRIGGER touch ON public.documents;"));
}

#[tokio::test]
async fn a_dropped_updated_at_trigger_fails_row_triggers() {
    let check = only_failing(&doctor_after("DROP TRIGGER users_set_updated_at ON users").await, "row_triggers");
    assert!(check.fix.unwrap().contains("CREATE TRIGGER users_set_updated_at BEFORE UPDATE ON public.users"));
}

#[tokio::test]
async fn a_widened_column_grant_fails_privileges() {
    let check =
        only_failing(&doctor_after("GRANT UPDATE (tenant_id) ON audit_logs TO carevault_platform").await, "privileges");
    assert!(check.message.contains("carevault_platform has UPDATE on public.audit_logs"), "{check:?}");
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

/// A committed row that has waited long for the chain (written here with its time set back, as
/// the stamp trigger is off under `session_replication_role = replica`) is a WARN until a pass
/// chains it.
#[tokio::test]
async fn a_sealer_that_falls_behind_is_a_warning_until_a_pass_runs() {
    let db = TestDb::new().await;
    let owner = db.owner_pool().await;
    sqlx::raw_sql(
        "SET session_replication_role = replica; \
         INSERT INTO audit_logs (tenant_id, action, resource_type, resource_id, created_at, xact_id) \
         VALUES ('00000000-0000-0000-0000-000000000000', 'tenant.read', 'tenant', \
                 '00000000-0000-0000-0000-000000000000', now() - interval '5 minutes', pg_current_xact_id())",
    )
    .execute(&owner)
    .await
    .unwrap();
    let checks = doctor::run(&owner, &ctx()).await.unwrap();
    let sealer = checks.iter().find(|c| c.name == "audit_sealer").unwrap();
    assert_eq!(sealer.status, Status::Warn, "{}", describe(&checks));
    assert!(sealer.message.starts_with("1 audit rows are not in the hash chain"), "{sealer:?}");
    assert!(sealer.fix.as_deref().unwrap().starts_with("carevault audit seal"));

    carevault_db::audit_chain::seal(&db.platform_pool(), None).await.unwrap();
    let checks = doctor::run(&owner, &ctx()).await.unwrap();
    assert!(checks.iter().all(|c| c.status == Status::Pass), "{}", describe(&checks));
    owner.close().await;
}

#[tokio::test]
async fn a_vector_graph_shared_by_every_tenant_fails() {
    let check = only_failing(
        &doctor_after(
            "CREATE INDEX idx_documents_embedding_hnsw ON documents USING hnsw (embedding_vector vector_cosine_ops) \
             WHERE embedding_vector IS NOT NULL AND deleted_at IS NULL",
        )
        .await,
        "search_indexes",
    );
    assert!(check.fix.unwrap().starts_with("DROP INDEX CONCURRENTLY public.idx_documents_embedding_hnsw;"));
}

/// A tenant that reached the threshold is a WARN until `carevault search reconcile` (or the
/// server's maintenance) builds its index; then the check passes.
#[tokio::test]
async fn a_large_tenant_without_its_search_index_is_a_warning_naming_the_fix() {
    use carevault_db::search_index::{self, IndexPolicy, ReconcileOutcome};
    let db = TestDb::new().await;
    let (pool, platform, owner) = (db.app_pool(2), db.platform_pool(), db.owner_pool().await);
    let large = crate::fixtures::tenant(&platform, "Large").await;
    let member = crate::fixtures::user(&pool, large, "l@l.test", carevault_db::UserRole::Member).await;
    sqlx::query(
        "INSERT INTO documents (tenant_id, user_id, s3_key, s3_bucket, filename, embedding_vector) \
         SELECT $1, $2, 'k/' || g, 'b', 'd.pdf', \
                (SELECT array_agg(random()::real) FROM generate_series(1, 1024) WHERE g > 0)::vector \
         FROM generate_series(1, $3) AS g",
    )
    .bind(large)
    .bind(member.id)
    .bind(IndexPolicy::DEFAULT.create_at)
    .execute(&owner)
    .await
    .unwrap();

    let checks = doctor::run(&owner, &ctx()).await.unwrap();
    let not_passing: Vec<&str> = checks.iter().filter(|c| c.status != Status::Pass).map(|c| c.name).collect();
    assert_eq!(not_passing, ["search_indexes"], "{}", describe(&checks));
    let check = checks.iter().find(|c| c.name == "search_indexes").unwrap();
    assert_eq!(check.status, Status::Warn);
    assert!(check.message.contains(&large.to_string()), "{check:?}");
    assert!(check.fix.as_deref().unwrap().starts_with("carevault search reconcile"));

    let outcome = search_index::reconcile(&owner, &pool, &platform, IndexPolicy::DEFAULT).await.unwrap();
    assert!(matches!(outcome, ReconcileOutcome::Done { applied, failed } if applied.len() == 1 && failed.is_empty()));
    let checks = doctor::run(&owner, &ctx()).await.unwrap();
    assert!(checks.iter().all(|c| c.status == Status::Pass), "{}", describe(&checks));
    owner.close().await;
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
async fn a_database_migrated_before_the_comment_only_edits_still_migrates_and_passes() {
    // The checksums sqlx recorded for migrations 8 and 12 as released, before their comments
    // stopped citing a document outside the repository.
    const RELEASED: &str = "UPDATE _sqlx_migrations SET checksum = decode(CASE version \
        WHEN 8 THEN '8a22bfdfd543f809b09e0a961c7ef950c53abd59564c4830b626b1ad98b50ef70eb331d08d1e488bb020930706466542' \
        WHEN 12 THEN 'ee74dcc36840d62beab0d6ea3dafdea1d9c274e7e8021d539cf5bb1e58c70b11d22d2f65a86c815f86510eb188ab6f8a' \
        END, 'hex') WHERE version IN (8, 12)";
    let db = TestDb::new().await;
    let owner = db.owner_pool().await;
    sqlx::raw_sql(RELEASED).execute(&owner).await.unwrap();
    let checks = doctor::run(&owner, &ctx()).await.unwrap();
    assert!(checks.iter().all(|c| c.status == Status::Pass), "{}", describe(&checks));
    carevault_db::migrate::up(&owner).await.unwrap();
    let (statuses, dirty) = carevault_db::migrate::status(&owner).await.unwrap();
    assert!(dirty.is_none() && statuses.iter().all(|s| s.applied && !s.checksum_mismatch), "{statuses:?}");
    let recorded: Vec<u8> =
        sqlx::query_scalar("SELECT checksum FROM _sqlx_migrations WHERE version = 8").fetch_one(&owner).await.unwrap();
    let current = carevault_db::migrate::MIGRATOR.iter().find(|m| m.version == 8).unwrap();
    assert_eq!(recorded, current.checksum.as_ref(), "migrate up records today's checksum");
}

#[tokio::test]
async fn a_stored_session_replication_role_fails_role_settings() {
    let db = TestDb::new().await;
    let owner = db.owner_pool().await;
    let name: String = sqlx::query_scalar("SELECT current_database()::text").fetch_one(&owner).await.unwrap();
    let set = format!("ALTER DATABASE \"{name}\" SET session_replication_role = replica");
    sqlx::raw_sql(sqlx::AssertSqlSafe(set)).execute(&owner).await.unwrap();
    let checks = doctor::run(&owner, &ctx()).await.unwrap();
    let reset = format!("ALTER DATABASE \"{name}\" RESET ALL");
    sqlx::raw_sql(sqlx::AssertSqlSafe(reset)).execute(&owner).await.unwrap();
    let check = only_failing(&checks, "role_settings");
    assert!(check.message.contains("every role: session_replication_role=replica"), "{check:?}");
}

#[tokio::test]
async fn a_domain_with_its_own_equality_on_the_tenant_column_fails() {
    // The owner swaps the tenant column's type for a domain whose = is always true and re-creates
    // the policy with the same text: it prints the same with the default search_path.
    let checks = doctor_after(
        "CREATE DOMAIN public.tenant_uuid AS uuid; \
         CREATE FUNCTION public.always(public.tenant_uuid, uuid) RETURNS boolean LANGUAGE sql IMMUTABLE \
             AS 'SELECT true'; \
         CREATE OPERATOR public.= (LEFTARG = public.tenant_uuid, RIGHTARG = uuid, FUNCTION = public.always); \
         DROP POLICY document_isolation_policy ON documents; DROP POLICY tenant_guard ON documents; \
         ALTER TABLE documents ALTER COLUMN tenant_id TYPE public.tenant_uuid; \
         CREATE POLICY document_isolation_policy ON documents FOR ALL TO carevault_app \
             USING (tenant_id = (SELECT carevault_current_tenant())) \
             WITH CHECK (tenant_id = (SELECT carevault_current_tenant())); \
         CREATE POLICY tenant_guard ON documents AS RESTRICTIVE FOR ALL TO carevault_app \
             USING (tenant_id = (SELECT carevault_current_tenant())) \
             WITH CHECK (tenant_id = (SELECT carevault_current_tenant()))",
    )
    .await;
    let failing: Vec<&str> = checks.iter().filter(|c| c.status != Status::Pass).map(|c| c.name).collect();
    assert!(
        ["row_level_security", "policies", "tenant_guard"].iter().all(|name| failing.contains(name)),
        "{}",
        describe(&checks)
    );
    let rls = checks.iter().find(|c| c.name == "row_level_security").unwrap();
    assert!(rls.message.contains("public.documents's tenant column is of type public.tenant_uuid"), "{rls:?}");
}

#[tokio::test]
async fn a_shadowing_tenant_function_in_another_schema_fails() {
    // A schema named after the owner comes first on the default search_path ("$user", public).
    let checks = doctor_after(
        "CREATE SCHEMA shadow; \
         CREATE FUNCTION shadow.carevault_current_tenant() RETURNS uuid LANGUAGE sql STABLE \
             RETURN '00000000-0000-0000-0000-000000000000'::uuid; \
         SET search_path = shadow, public; \
         ALTER POLICY user_isolation_policy ON users \
             USING (tenant_id = (SELECT carevault_current_tenant())) \
             WITH CHECK (tenant_id = (SELECT carevault_current_tenant())); \
         RESET search_path",
    )
    .await;
    let check = checks.iter().find(|c| c.name == "policies").unwrap();
    assert_eq!(check.status, Status::Fail, "{}", describe(&checks));
    assert!(check.message.contains("shadow.carevault_current_tenant()"), "{check:?}");
}

#[tokio::test]
async fn a_rule_on_a_tenant_table_fails() {
    // An INSTEAD rule makes every audit insert "succeed" without a row.
    let check =
        only_failing(&doctor_after("CREATE RULE swallow AS ON INSERT TO audit_logs DO INSTEAD NOTHING").await, "views");
    assert!(check.message.contains("rule swallow on public.audit_logs"), "{check:?}");
    assert_eq!(check.fix.as_deref(), Some("DROP RULE swallow ON public.audit_logs;"));
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
    for name in ["row_level_security", "privileges", "runtime_roles", "views"] {
        let check = checks.iter().find(|c| c.name == name).unwrap();
        assert_eq!(check.status, Status::Pass, "{check:?}");
    }
    // Comparing policies needs a temporary table, which only the owner may create since
    // migration 18: those checks say so and name the fix.
    for name in ["policies", "tenant_guard"] {
        let check = checks.iter().find(|c| c.name == name).unwrap();
        assert_eq!(check.status, Status::Fail, "{check:?}");
        assert!(check.message.contains("could not read"), "{check:?}");
        assert!(check.fix.as_deref().is_some_and(|fix| fix.contains("owner")), "{check:?}");
    }
}

#[tokio::test]
async fn a_hostile_default_of_a_login_role_fails_and_does_not_stop_the_service() {
    let db = TestDb::new().await;
    let owner = db.owner_pool().await;
    let name: String = sqlx::query_scalar("SELECT current_database()::text").fetch_one(&owner).await.unwrap();
    // What a session holding the login's credentials may store for itself, no privilege needed.
    let set = format!(
        "ALTER ROLE carevault_api IN DATABASE \"{name}\" SET statement_timeout = '1ms'; \
         ALTER ROLE carevault_api IN DATABASE \"{name}\" SET synchronous_commit = off; \
         ALTER ROLE carevault_api IN DATABASE \"{name}\" SET default_transaction_isolation = serializable"
    );
    sqlx::raw_sql(sqlx::AssertSqlSafe(set)).execute(&owner).await.unwrap();
    let checks = doctor::run(&owner, &ctx()).await.unwrap();
    // What every transaction of the service pins for itself, as TenantTx and PlatformTx begin
    // them, on a session of the login that starts as the pools' do (with the service's statement
    // timeout in its startup packet: a stored 1 ms would cancel the pinning statement itself).
    let options: sqlx::postgres::PgConnectOptions = db.app_url().parse().unwrap();
    let mut login =
        sqlx::PgConnection::connect_with(&options.options([("statement_timeout", "120000ms")])).await.unwrap();
    let settings = "SELECT current_setting('statement_timeout'), current_setting('synchronous_commit'), \
                    current_setting('transaction_isolation')";
    sqlx::raw_sql(
        "BEGIN ISOLATION LEVEL READ COMMITTED READ WRITE; SELECT public.carevault_pin_transaction('120000ms')",
    )
    .execute(&mut login)
    .await
    .unwrap();
    let pinned: (String, String, String) = sqlx::query_as(settings).fetch_one(&mut login).await.unwrap();
    assert_eq!(pinned, ("2min".into(), "on".into(), "read committed".into()));
    // Without the pinning, the session would have had the stored values.
    sqlx::raw_sql("ROLLBACK").execute(&mut login).await.unwrap();
    let stored: (String, String, String) = sqlx::query_as(settings).fetch_one(&mut login).await.unwrap();
    assert_eq!((stored.1.as_str(), stored.2.as_str()), ("off", "serializable"), "{stored:?}");
    // A write and a read through the data layer work.
    let pool = db.app_pool(1);
    let mut tx = TenantTx::begin(&pool, carevault_db::TenantId::SYSTEM, AuditContext::default()).await.unwrap();
    tx.tenant().read().await.unwrap();
    tx.commit().await.unwrap();
    pool.close().await;
    let reset = format!("ALTER ROLE carevault_api IN DATABASE \"{name}\" RESET ALL");
    sqlx::raw_sql(sqlx::AssertSqlSafe(reset)).execute(&owner).await.unwrap();
    let flagged: Vec<&Check> = checks.iter().filter(|c| c.status != Status::Pass).collect();
    assert_eq!(flagged.len(), 1, "{}", describe(&checks));
    assert_eq!((flagged[0].name, flagged[0].status), ("role_settings", Status::Fail));
    assert!(flagged[0].message.contains("carevault_api: statement_timeout=1ms"), "{}", flagged[0].message);
    assert!(flagged[0].message.contains("carevault_api: synchronous_commit=off"), "{}", flagged[0].message);
}

#[tokio::test]
async fn a_default_stored_for_a_pool_login_of_another_name_fails() {
    // A deployment whose APP_DATABASE_URL logs in as a role not named carevault_* (here the
    // superuser, its default scoped to this test's database: roles are cluster-wide).
    let db = TestDb::new().await;
    let owner = db.owner_pool().await;
    let login = carevault_pg::SUPERUSER;
    let name = db.name().to_string();
    let set = format!("ALTER ROLE {login} IN DATABASE \"{name}\" SET work_mem = '64kB'");
    sqlx::raw_sql(sqlx::AssertSqlSafe(set)).execute(&owner).await.unwrap();
    let context = DoctorContext { app_login: Some(login.to_string()), ..ctx() };
    let checks = doctor::run(&owner, &context).await.unwrap();
    let reset = format!("ALTER ROLE {login} IN DATABASE \"{name}\" RESET ALL");
    sqlx::raw_sql(sqlx::AssertSqlSafe(reset)).execute(&owner).await.unwrap();
    let settings = checks.iter().find(|c| c.name == "role_settings").unwrap();
    assert_eq!(settings.status, Status::Fail, "{settings:?}");
    assert!(settings.message.contains(&format!("{login}: work_mem=64kB")), "{settings:?}");
    // The same database without the pool naming that login: not ours to judge.
    let set = format!("ALTER ROLE {login} IN DATABASE \"{name}\" SET work_mem = '64kB'");
    sqlx::raw_sql(sqlx::AssertSqlSafe(set)).execute(&owner).await.unwrap();
    let checks = doctor::run(&owner, &ctx()).await.unwrap();
    let reset = format!("ALTER ROLE {login} IN DATABASE \"{name}\" RESET ALL");
    sqlx::raw_sql(sqlx::AssertSqlSafe(reset)).execute(&owner).await.unwrap();
    let settings = checks.iter().find(|c| c.name == "role_settings").unwrap();
    assert_eq!(settings.status, Status::Pass, "{settings:?}");
}
