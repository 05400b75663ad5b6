//! The catalog: roles, privileges and policies are what the security manifest
//! (`carevault_db::manifest`) states, read here with queries of their own (the doctor has its
//! own), and the schema does not change by accident. These tests read the catalog, which needs no
//! superuser.

use std::collections::BTreeSet;

use carevault_db::manifest::{Manifest, Scope};
use carevault_testdb::TestDb;
use sqlx::PgPool;

async fn pool(db: &TestDb) -> PgPool {
    // Catalog reads only; any login works, and the runtime login proves the catalog is readable
    // by it.
    PgPool::connect(&db.app_url()).await.expect("connect")
}

#[tokio::test]
async fn runtime_roles_are_restricted_and_own_nothing() {
    let db = TestDb::new().await;
    let pool = pool(&db).await;
    let roles: Vec<(String, bool, bool, bool, bool)> = sqlx::query_as(
        "SELECT rolname::text, rolsuper, rolbypassrls, rolcanlogin, rolinherit FROM pg_roles \
         WHERE rolname LIKE 'carevault\\_%' ORDER BY rolname",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    // Not superuser, not BYPASSRLS, NOINHERIT; LOGIN as the manifest says.
    let mut expected: Vec<(String, bool, bool, bool, bool)> =
        Manifest::carevault().roles.iter().map(|r| (r.name.to_string(), false, false, r.login, false)).collect();
    expected.sort();
    assert_eq!(roles, expected);
    // Each login role is a member of exactly its runtime role, may SET it, inherits nothing.
    let memberships: Vec<(String, String, bool, bool)> = sqlx::query_as(
        "SELECT m.rolname::text, r.rolname::text, a.inherit_option, a.set_option FROM pg_auth_members a \
         JOIN pg_roles m ON m.oid = a.member JOIN pg_roles r ON r.oid = a.roleid \
         WHERE m.rolname LIKE 'carevault\\_%' OR r.rolname LIKE 'carevault\\_%' ORDER BY 1, 2",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    let carevault: Vec<_> = memberships.into_iter().filter(|m| m.0.starts_with("carevault_")).collect();
    let mut expected: Vec<(String, String, bool, bool)> = Manifest::carevault()
        .roles
        .iter()
        .flat_map(|r| r.member_of.iter().map(|runtime| (r.name.to_string(), runtime.to_string(), false, true)))
        .collect();
    expected.sort();
    assert_eq!(carevault, expected);
    let owned: i64 = sqlx::query_scalar(
        "WITH r AS (SELECT oid FROM pg_roles WHERE rolname LIKE 'carevault\\_%') \
         SELECT (SELECT count(*) FROM pg_class WHERE relowner IN (SELECT oid FROM r)) \
              + (SELECT count(*) FROM pg_proc WHERE proowner IN (SELECT oid FROM r)) \
              + (SELECT count(*) FROM pg_namespace WHERE nspowner IN (SELECT oid FROM r)) \
              + (SELECT count(*) FROM pg_type WHERE typowner IN (SELECT oid FROM r)) \
              + (SELECT count(*) FROM pg_database WHERE datdba IN (SELECT oid FROM r))",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(owned, 0);
}

#[tokio::test]
async fn privileges_are_exactly_the_designed_ones() {
    let db = TestDb::new().await;
    let pool = pool(&db).await;
    let granted: Vec<(String, String, String)> = sqlx::query_as(
        "SELECT r.rolname::text, c.relname::text, p FROM pg_class c \
         CROSS JOIN unnest(ARRAY['SELECT','INSERT','UPDATE','DELETE','TRUNCATE','REFERENCES','TRIGGER']) AS p \
         CROSS JOIN pg_roles r \
         WHERE c.relnamespace = 'public'::regnamespace AND c.relkind IN ('r', 'p', 'v', 'm', 'f') \
           AND r.rolname = ANY($1) \
           AND (has_table_privilege(r.oid, c.oid, p) \
                OR (p IN ('SELECT', 'INSERT', 'UPDATE', 'REFERENCES') AND has_any_column_privilege(r.oid, c.oid, p))) \
         ORDER BY 1, 2, 3",
    )
    .bind(carevault_db::manifest::role_names())
    .fetch_all(&pool)
    .await
    .unwrap();
    let manifest = Manifest::carevault();
    let mut expected: Vec<(String, String, String)> = manifest
        .grants
        .iter()
        .map(|g| {
            let table = g.relation.strip_prefix("public.").expect("a table of schema public");
            (g.role.to_string(), table.to_string(), g.privilege.to_string())
        })
        .collect();
    expected.sort();
    assert_eq!(granted, expected);

    // Column grants exactly as stated: no role may set an audit row's id or created_at.
    for grant in manifest.grants.iter().filter(|g| matches!(g.scope, Scope::Columns(_))) {
        let columns: Vec<String> = sqlx::query_scalar(
            "SELECT attname::text FROM pg_attribute WHERE attrelid = $1::regclass AND attnum > 0 \
               AND NOT attisdropped AND has_column_privilege($2::regrole, attrelid, attnum, $3) \
             ORDER BY attname::text COLLATE \"C\"",
        )
        .bind(&grant.relation)
        .bind(grant.role)
        .bind(grant.privilege.as_str())
        .fetch_all(&pool)
        .await
        .unwrap();
        assert_eq!(Scope::Columns(columns), grant.scope, "{grant:?}");
    }

    let schema_create: Vec<(String, bool)> = sqlx::query_as(
        "SELECT rolname::text, has_schema_privilege(oid, 'public', 'CREATE') FROM pg_roles \
         WHERE rolname LIKE 'carevault\\_%' ORDER BY 1",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert!(schema_create.iter().all(|(_, create)| !create), "{schema_create:?}");
    // The only SECURITY DEFINER function is the verifier of the tenant context.
    let definers: Vec<String> = sqlx::query_scalar(
        "SELECT oid::regprocedure::text FROM pg_proc \
         WHERE pronamespace IN ('public'::regnamespace, 'carevault_private'::regnamespace) AND prosecdef",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(definers, ["carevault_current_tenant()"]);
    assert_eq!(Manifest::carevault().security_definer_functions, [carevault_db::manifest::VERIFIER]);
}

#[tokio::test]
async fn every_tenant_table_has_forced_rls_a_guard_and_a_policy_per_granted_command() {
    let db = TestDb::new().await;
    let pool = pool(&db).await;
    // Every table holding a tenant_id column, plus tenants itself.
    let tables: Vec<(String, bool, bool)> = sqlx::query_as(
        "SELECT c.relname::text, c.relrowsecurity, c.relforcerowsecurity FROM pg_class c \
         WHERE c.relnamespace = 'public'::regnamespace AND c.relkind = 'r' \
           AND (c.relname = 'tenants' OR EXISTS (SELECT 1 FROM pg_attribute a \
                WHERE a.attrelid = c.oid AND a.attname = 'tenant_id' AND NOT a.attisdropped)) \
         ORDER BY 1",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    let stated: Vec<String> = Manifest::carevault()
        .tenant_tables
        .iter()
        .map(|t| t.name.strip_prefix("public.").expect("a table of schema public").to_string())
        .collect();
    assert_eq!(tables.iter().map(|t| t.0.clone()).collect::<Vec<_>>(), stated);
    assert!(tables.iter().all(|t| t.1 && t.2), "RLS enabled and forced: {tables:?}");

    for (table, _, _) in &tables {
        for role in ["carevault_app", "carevault_platform"] {
            // (command letter, permissive, has USING, has WITH CHECK) of policies applying to role.
            let policies: Vec<(String, bool, bool, bool)> = sqlx::query_as(
                "SELECT polcmd::text, polpermissive, polqual IS NOT NULL, polwithcheck IS NOT NULL FROM pg_policy \
                 WHERE polrelid = $1::regclass AND $2::regrole = ANY (polroles)",
            )
            .bind(table)
            .bind(role)
            .fetch_all(&pool)
            .await
            .unwrap();
            for (privilege, letter) in [("SELECT", "r"), ("INSERT", "a"), ("UPDATE", "w"), ("DELETE", "d")] {
                let granted: bool = sqlx::query_scalar(
                    "SELECT has_table_privilege($1::regrole, $2::regclass, $3) \
                         OR ($3 <> 'DELETE' AND has_any_column_privilege($1::regrole, $2::regclass, $3))",
                )
                .bind(role)
                .bind(table)
                .bind(privilege)
                .fetch_one(&pool)
                .await
                .unwrap();
                if !granted {
                    continue;
                }
                let covering: Vec<_> = policies.iter().filter(|p| p.1 && (p.0 == letter || p.0 == "*")).collect();
                assert!(!covering.is_empty(), "{role} may {privilege} {table} but no permissive policy covers it");
                // Every write path is checked: INSERT and UPDATE policies carry WITH CHECK.
                if matches!(privilege, "INSERT" | "UPDATE") {
                    assert!(covering.iter().all(|p| p.3), "{role} {privilege} {table}: a policy without WITH CHECK");
                }
            }
            if role == "carevault_app" {
                let guard = policies.iter().any(|p| p.0 == "*" && !p.1 && p.2 && p.3);
                assert!(guard, "{table} has no restrictive tenant guard for {role}");
            }
        }
    }
}

/// A transaction switched to `carevault_app` in the System tenant, as `TenantTx` opens one.
async fn system_tenant_transaction(pool: &PgPool) -> sqlx::Transaction<'static, sqlx::Postgres> {
    let mut tx = pool.begin().await.unwrap();
    prove_system_tenant(&mut tx).await;
    tx
}

/// [`system_tenant_transaction`] on `conn`.
async fn system_tenant_transaction_on(conn: &mut sqlx::PgConnection) -> sqlx::Transaction<'_, sqlx::Postgres> {
    let mut tx = sqlx::Connection::begin(conn).await.unwrap();
    prove_system_tenant(&mut tx).await;
    tx
}

async fn prove_system_tenant(tx: &mut sqlx::PgConnection) {
    use carevault_db::tenant_context::{Binding, expiry_from_now};
    let binding = Binding::read_transaction(tx).await.unwrap();
    let proof =
        carevault_testdb::context_key().prove(carevault_db::TenantId::SYSTEM, None, &binding, expiry_from_now());
    sqlx::query("SELECT set_config('role', 'carevault_app', true), set_config('app.tenant_context', $1, true)")
        .bind(proof)
        .execute(tx)
        .await
        .unwrap();
}

#[tokio::test]
async fn policies_call_the_tenant_function_once_per_query() {
    let db = TestDb::new().await;
    let pool = pool(&db).await;
    let expressions: Vec<String> = sqlx::query_scalar(
        "SELECT e FROM pg_policies CROSS JOIN unnest(ARRAY[qual, with_check]) AS e \
         WHERE schemaname = 'public' AND 'carevault_app' = ANY (roles) AND e IS NOT NULL",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    let stated = Manifest::carevault()
        .policies
        .iter()
        .filter(|p| p.roles == ["carevault_app"])
        .map(|p| usize::from(p.using.is_some()) + usize::from(p.with_check.is_some()))
        .sum::<usize>();
    assert_eq!(expressions.len(), stated, "{expressions:?}");
    for expression in &expressions {
        // A sub-select becomes an InitPlan evaluated once per statement, not once per row.
        assert!(
            expression.contains("= ( SELECT carevault_current_tenant() AS carevault_current_tenant))"),
            "{expression}"
        );
    }
    // The plan of a tenant's scan: the tenant is an InitPlan's parameter, and nothing calls the
    // function per row.
    let mut tx = system_tenant_transaction(&pool).await;
    sqlx::raw_sql("SET LOCAL enable_indexscan = off; SET LOCAL enable_bitmapscan = off")
        .execute(&mut *tx)
        .await
        .unwrap();
    let plan: Vec<String> =
        sqlx::query_scalar("EXPLAIN (VERBOSE) SELECT id FROM documents").fetch_all(&mut *tx).await.unwrap();
    let plan = plan.join("\n");
    assert!(plan.contains("Filter: (documents.tenant_id = (InitPlan 1).col1)"), "{plan}");
    // The verifier is called once, in the InitPlan.
    assert_eq!(plan.matches("carevault_current_tenant()").count(), 1, "{plan}");
    assert!(plan.contains("InitPlan 1\n"), "{plan}");
    // STABLE: a cached generic plan re-reads it on every execution.
    let volatility: String = sqlx::query_scalar(
        "SELECT provolatile::text FROM pg_proc WHERE oid = 'carevault_current_tenant()'::regprocedure",
    )
    .fetch_one(&mut *tx)
    .await
    .unwrap();
    assert_eq!(volatility, "s");
}

#[tokio::test]
async fn the_tenant_function_ignores_a_hostile_search_path() {
    let db = TestDb::new().await;
    let pool = db.owner_pool().await;
    // pg_temp is searched first for types: a temporary table named uuid shadows the type uuid for
    // anything parsed now... (made by the owner on the connection first: since migration 18 no
    // runtime role may create temporary objects at all, `attacks.rs` DB-69 to DB-71)
    let mut conn = pool.acquire().await.unwrap();
    sqlx::raw_sql("CREATE TEMPORARY TABLE uuid (x text); GRANT USAGE ON TYPE pg_temp.uuid TO PUBLIC")
        .execute(&mut *conn)
        .await
        .unwrap();
    let mut tx = system_tenant_transaction_on(&mut conn).await;
    let shadowed: bool =
        sqlx::query_scalar("SELECT 'uuid'::regtype <> 'pg_catalog.uuid'::regtype").fetch_one(&mut *tx).await.unwrap();
    assert!(shadowed, "the type was not shadowed: the test proves nothing");
    // ...but not the verifier, whose search_path is pinned with pg_temp last, nor the policies.
    let (tenant, kind): (uuid::Uuid, String) =
        sqlx::query_as("SELECT carevault_current_tenant(), pg_typeof(carevault_current_tenant())::text")
            .fetch_one(&mut *tx)
            .await
            .unwrap();
    assert_eq!((tenant, kind.as_str()), (carevault_db::TenantId::SYSTEM.as_uuid(), "pg_catalog.uuid"));
    let visible: i64 = sqlx::query_scalar("SELECT count(*) FROM tenants").fetch_one(&mut *tx).await.unwrap();
    assert_eq!(visible, 1);
}

/// A text dump of the schema: an accidental change (a dropped index, a loosened policy, a column
/// type) fails this snapshot. Update it deliberately with `INSTA_UPDATE=always`.
#[tokio::test]
async fn schema_snapshot() {
    let db = TestDb::new().await;
    let pool = pool(&db).await;
    let sections = [
        (
            "columns",
            "SELECT c.relname || '.' || a.attname || ' ' || format_type(a.atttypid, a.atttypmod) \
                    || CASE WHEN a.attnotnull THEN ' NOT NULL' ELSE '' END \
                    || coalesce(' DEFAULT ' || pg_get_expr(d.adbin, d.adrelid), '') \
             FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid \
             LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum \
             WHERE c.relnamespace = 'public'::regnamespace AND c.relkind = 'r' AND c.relname <> '_sqlx_migrations' \
               AND a.attnum > 0 AND NOT a.attisdropped \
             ORDER BY c.relname, a.attnum",
        ),
        (
            "constraints",
            "SELECT conrelid::regclass || ' ' || conname || ' ' || pg_get_constraintdef(oid) FROM pg_constraint \
             WHERE connamespace = 'public'::regnamespace AND conrelid <> 0 AND conrelid <> '_sqlx_migrations'::regclass \
             ORDER BY 1",
        ),
        (
            "indexes",
            "SELECT indexdef FROM pg_indexes WHERE schemaname = 'public' AND tablename <> '_sqlx_migrations' ORDER BY indexname",
        ),
        (
            "policies",
            "SELECT tablename || ' ' || policyname || ' ' || permissive || ' ' || cmd || ' TO ' || array_to_string(roles, ',') \
                    || coalesce(' USING ' || qual, '') || coalesce(' CHECK ' || with_check, '') \
             FROM pg_policies WHERE schemaname = 'public' ORDER BY tablename, policyname",
        ),
        (
            "grants",
            "SELECT c.relname || ' ' || g.grantee::regrole || ' ' || g.privilege_type \
             FROM pg_class c CROSS JOIN aclexplode(c.relacl) AS g \
             WHERE c.relnamespace = 'public'::regnamespace AND c.relkind = 'r' AND g.grantee <> c.relowner \
             UNION ALL \
             SELECT c.relname || '.' || a.attname || ' ' || g.grantee::regrole || ' ' || g.privilege_type \
             FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid CROSS JOIN aclexplode(a.attacl) AS g \
             WHERE c.relnamespace = 'public'::regnamespace AND c.relkind = 'r' AND g.grantee <> c.relowner \
             ORDER BY 1",
        ),
        (
            "tables",
            "SELECT relname || ' rls=' || relrowsecurity || ' force=' || relforcerowsecurity FROM pg_class \
             WHERE relnamespace = 'public'::regnamespace AND relkind = 'r' AND relname <> '_sqlx_migrations' ORDER BY 1",
        ),
        (
            "triggers",
            "SELECT pg_get_triggerdef(oid) FROM pg_trigger WHERE NOT tgisinternal ORDER BY tgrelid::regclass::text, tgname",
        ),
        (
            "functions",
            "SELECT proname || ' secdef=' || prosecdef || ' config=' || coalesce(array_to_string(proconfig, ','), '') \
                    || ' execute=' || coalesce(array_to_string(proacl, ','), 'default') \
             FROM pg_proc WHERE pronamespace = 'public'::regnamespace \
               AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.objid = pg_proc.oid AND d.deptype = 'e') \
             ORDER BY proname",
        ),
    ];
    let mut dump = String::new();
    for (title, sql) in sections {
        let lines: Vec<String> = sqlx::query_scalar(sql).fetch_all(&pool).await.unwrap();
        dump.push_str(&format!("## {title}\n"));
        for line in lines {
            dump.push_str(&line);
            dump.push('\n');
        }
    }
    let migrations: BTreeSet<String> = carevault_db::migrate::MIGRATOR
        .iter()
        .filter(|m| m.migration_type.is_up_migration())
        .map(|m| format!("{:04} {}", m.version, m.description))
        .collect();
    dump.push_str("## migrations\n");
    for line in migrations {
        dump.push_str(&line);
        dump.push('\n');
    }
    insta::assert_snapshot!("schema", dump);
}
