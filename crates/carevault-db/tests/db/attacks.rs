//! The database attack catalogue (issue 5, item 1): attacker B of docs/THREAT_MODEL.md, a raw session of the
//! login role `carevault_api` switched to `carevault_app` inside tenant A's context, tries to
//! read, write, alter or erase tenant B's data or the audit trail, or to escape the role.
//!
//! Every attempt is an entry with its SQL, the expected and the observed outcome. Limits docs/THREAT_MODEL.md
//! accepts are marked `accepted` and pass when the observed outcome is the documented one. With
//! `CAREVAULT_EVIDENCE_DIR` set, the catalogue is written to `$CAREVAULT_EVIDENCE_DIR/db_attacks.json`
//! (an array of `{id, category, description, sql, expected, observed, passed, accepted}`).

use carevault_db::repo::Document;
use carevault_db::{AuditContext, TenantId, TenantTx, UserRole};
use carevault_testdb::TestDb;
use futures::StreamExt;
use sqlx::{AssertSqlSafe, Connection, PgConnection};

use crate::fixtures::{TwoTenants, app_session, document, new_user, two_tenants};

/// One attempt and what happened.
pub(crate) struct Entry {
    id: String,
    category: &'static str,
    description: &'static str,
    sql: String,
    expected: String,
    observed: String,
    passed: bool,
    accepted: bool,
}

/// The fixture and the entries.
pub(crate) struct Catalogue {
    pub(crate) db: TestDb,
    pub(crate) a: TenantId,
    pub(crate) b: TenantId,
    alice: uuid::Uuid,
    bob: uuid::Uuid,
    bob_doc: Document,
    entries: Vec<Entry>,
}

/// The outcome of a statement, reduced to what a session observes: the SQLSTATE, or the number
/// of rows returned or affected.
pub(crate) fn outcome<T>(result: Result<T, sqlx::Error>, rows: impl FnOnce(T) -> u64) -> String {
    match result {
        Ok(value) => format!("ok ({} rows)", rows(value)),
        Err(sqlx::Error::Database(db)) => format!("error {}", db.code().unwrap_or_default()),
        Err(other) => format!("client error: {other}"),
    }
}

/// Runs `sql` (one or more statements, simple protocol) on `conn`.
pub(crate) async fn run(conn: &mut PgConnection, sql: &str) -> String {
    outcome(sqlx::raw_sql(AssertSqlSafe(sql.to_owned())).execute(&mut *conn).await, |r| r.rows_affected())
}

/// A scalar query's value, or its error.
pub(crate) async fn scalar(conn: &mut PgConnection, sql: &str) -> Result<i64, String> {
    sqlx::query_scalar::<_, i64>(AssertSqlSafe(sql.to_owned()))
        .fetch_one(&mut *conn)
        .await
        .map_err(|e| outcome::<()>(Err(e), |_| 0))
}

impl Catalogue {
    /// A fresh attacker session in tenant A.
    pub(crate) async fn session(&self) -> PgConnection {
        app_session(&self.db, Some(self.a)).await
    }

    #[allow(clippy::too_many_arguments)]
    pub(crate) fn record(
        &mut self,
        category: &'static str,
        description: &'static str,
        sql: &str,
        expected: &[&str],
        observed: String,
        accepted: bool,
    ) {
        let passed = expected.contains(&observed.as_str());
        let id = format!("DB-{:02}", self.entries.len() + 1);
        let expected = expected.join(" | ");
        self.entries.push(Entry {
            id,
            category,
            description,
            sql: sql.to_owned(),
            expected,
            observed,
            passed,
            accepted,
        });
    }

    /// Runs `sql` in a fresh tenant-A session and records it.
    pub(crate) async fn attack(
        &mut self,
        category: &'static str,
        description: &'static str,
        sql: &str,
        expected: &[&str],
    ) {
        let mut conn = self.session().await;
        let observed = run(&mut conn, sql).await;
        self.record(category, description, sql, expected, observed, false);
    }

    /// Like [`Catalogue::attack`], for an accepted limit (docs/THREAT_MODEL.md, "Accepted limits").
    async fn accepted(&mut self, category: &'static str, description: &'static str, sql: &str, expected: &[&str]) {
        let mut conn = self.session().await;
        let observed = run(&mut conn, sql).await;
        self.record(category, description, sql, expected, observed, true);
    }

    /// Replaces the placeholders `:a`, `:b`, `:alice`, `:bob`, `:bob_doc` with literals.
    pub(crate) fn sql(&self, template: &str) -> String {
        template
            .replace(":bob_doc", &format!("'{}'", self.bob_doc.id))
            .replace(":alice", &format!("'{}'", self.alice))
            .replace(":bob", &format!("'{}'", self.bob))
            .replace(":a", &format!("'{}'", self.a))
            .replace(":b", &format!("'{}'", self.b))
    }
}

/// Tenant B's rows, the policies, triggers, privileges and roles, as one fingerprint read by the
/// owner: equal before and after the catalogue means no attempt changed any of it.
async fn fingerprint(db: &TestDb, b: TenantId) -> String {
    let mut owner = PgConnection::connect(&db.owner_url()).await.unwrap();
    sqlx::query_scalar(
        "SELECT md5(concat_ws('|', \
            (SELECT string_agg(u::text, ',' ORDER BY u.id) FROM users u WHERE tenant_id = $1), \
            (SELECT string_agg(d::text, ',' ORDER BY d.id) FROM documents d WHERE tenant_id = $1), \
            (SELECT string_agg(l::text, ',' ORDER BY l.id) FROM audit_logs l), \
            (SELECT string_agg(t::text, ',' ORDER BY t.id) FROM tenants t), \
            (SELECT string_agg(p::text, ',' ORDER BY p.tablename, p.policyname) FROM pg_policies p), \
            (SELECT string_agg(concat_ws(':', relname, relrowsecurity, relforcerowsecurity, relacl, relowner), ',' \
                ORDER BY relname) FROM pg_class WHERE relnamespace = 'public'::regnamespace), \
            (SELECT string_agg(concat_ws(':', tgrelid::regclass, tgname, tgenabled), ',' ORDER BY tgrelid, tgname) \
                FROM pg_trigger WHERE NOT tgisinternal), \
            (SELECT string_agg(concat_ws(':', rolname, rolsuper, rolbypassrls, rolinherit, rolcanlogin, \
                rolcreaterole, rolcreatedb), ',' ORDER BY rolname) FROM pg_roles WHERE rolname LIKE 'carevault\\_%'), \
            (SELECT string_agg(concat_ws(':', roleid, member, admin_option, inherit_option, set_option), ',' \
                ORDER BY roleid, member) FROM pg_auth_members), \
            (SELECT string_agg(concat_ws(':', proname, proacl, prosecdef), ',' ORDER BY oid) FROM pg_proc \
                WHERE pronamespace = 'public'::regnamespace), \
            (SELECT string_agg(k::text, ',' ORDER BY k.kid) FROM carevault_private.tenant_context_keys k)))",
    )
    .bind(b)
    .fetch_one(&mut owner)
    .await
    .unwrap()
}

#[tokio::test]
async fn attacker_b_catalogue_every_attempt_fails_or_is_an_accepted_limit() {
    let started = std::time::Instant::now();
    let db = TestDb::new().await;
    let TwoTenants { pool, a, b, alice, bob } = two_tenants(&db, UserRole::Admin).await;
    document(&pool, &alice, "a.pdf").await;
    let bob_doc = document(&pool, &bob, "b.pdf").await;
    let mut c = Catalogue { db, a, b, alice: alice.id.as_uuid(), bob: bob.id.as_uuid(), bob_doc, entries: Vec::new() };
    let before = fingerprint(&c.db, b).await;
    let owner_role: String = {
        let mut conn = c.session().await;
        sqlx::query_scalar("SELECT tableowner::text FROM pg_tables WHERE tablename = 'documents'")
            .fetch_one(&mut conn)
            .await
            .unwrap()
    };
    let superuser = carevault_pg::SUPERUSER;

    // --- Role escape -------------------------------------------------------------------------
    let e = ["error 42501"];
    let sql = format!("SET ROLE {superuser}");
    c.attack("role escape", "switch to the superuser", &sql, &e).await;
    let sql = format!("SET ROLE {owner_role}; SELECT count(*) FROM audit_logs");
    c.attack("role escape", "switch to the table owner (bypasses RLS unless forced)", &sql, &e).await;
    c.attack("role escape", "switch to the platform role (sees every tenant)", "SET ROLE carevault_platform", &e).await;
    c.attack("role escape", "switch to the other login role", "SET ROLE carevault_ops", &e).await;
    c.attack(
        "role escape",
        "RESET ROLE back to the login, then read: the login inherits nothing",
        "RESET ROLE; SELECT count(*) FROM documents",
        &e,
    )
    .await;
    let sql = format!("SET SESSION AUTHORIZATION {superuser}");
    c.attack("role escape", "change the session user", &sql, &e).await;
    let sql = format!("SELECT set_config('role', '{owner_role}', false)");
    c.attack("role escape", "set the role through set_config", &sql, &e).await;
    c.attack(
        "role escape",
        "set the platform role through set_config, transaction-local",
        "BEGIN; SELECT set_config('role', 'carevault_platform', true); SELECT count(*) FROM tenants",
        &e,
    )
    .await;
    c.attack("role escape", "give the runtime role BYPASSRLS", "ALTER ROLE carevault_app BYPASSRLS", &e).await;
    c.attack("role escape", "make the runtime role superuser", "ALTER ROLE carevault_app SUPERUSER", &e).await;
    c.attack("role escape", "grant itself the platform role", "GRANT carevault_platform TO carevault_app", &e).await;
    c.attack("role escape", "grant itself pg_read_all_data", "RESET ROLE; GRANT pg_read_all_data TO carevault_api", &e)
        .await;
    c.attack("role escape", "create a role", "CREATE ROLE cv_evil SUPERUSER LOGIN", &e).await;
    c.attack(
        "role escape",
        "turn row security off for the session (errors instead of bypassing)",
        "SET row_security = off; SELECT count(*) FROM documents",
        &e,
    )
    .await;

    // --- Schema and policies -------------------------------------------------------------------
    c.attack("schema", "disable RLS", "ALTER TABLE documents DISABLE ROW LEVEL SECURITY", &e).await;
    c.attack("schema", "stop forcing RLS", "ALTER TABLE users NO FORCE ROW LEVEL SECURITY", &e).await;
    c.attack(
        "schema",
        "add a permissive policy",
        "CREATE POLICY cv_evil ON documents FOR SELECT TO carevault_app USING (true)",
        &e,
    )
    .await;
    c.attack("schema", "drop the restrictive guard", "DROP POLICY tenant_guard ON documents", &e).await;
    c.attack(
        "schema",
        "widen the isolation policy",
        "ALTER POLICY document_isolation_policy ON documents USING (true)",
        &e,
    )
    .await;
    c.attack("schema", "take ownership of a table", "ALTER TABLE documents OWNER TO carevault_app", &e).await;
    c.attack("schema", "add a column", "ALTER TABLE documents ADD COLUMN cv_evil int", &e).await;
    c.attack("schema", "drop a table", "DROP TABLE documents", &e).await;
    c.attack("schema", "create a table in public", "CREATE TABLE public.cv_evil (x int)", &e).await;
    c.attack("schema", "create a schema", "CREATE SCHEMA cv_evil", &e).await;
    c.attack(
        "schema",
        "create a view in public (a view runs as its owner)",
        "CREATE VIEW public.cv_evil AS SELECT * FROM documents",
        &e,
    )
    .await;
    c.attack(
        "schema",
        "create a SECURITY DEFINER function in public",
        "CREATE FUNCTION public.cv_evil() RETURNS bigint LANGUAGE sql SECURITY DEFINER AS 'SELECT count(*) FROM documents'",
        &e,
    )
    .await;
    c.attack(
        "schema",
        "create a trigger on a tenant table",
        "CREATE TRIGGER cv_evil BEFORE INSERT ON documents FOR EACH ROW EXECUTE FUNCTION set_updated_at()",
        &e,
    )
    .await;
    c.attack("schema", "create an index (owner only)", "CREATE INDEX cv_evil ON documents (filename)", &e).await;
    c.attack("schema", "comment on a table (owner only)", "COMMENT ON TABLE audit_logs IS 'pwned'", &e).await;
    c.attack(
        "schema",
        "default privileges on the owner's future tables",
        &format!("ALTER DEFAULT PRIVILEGES FOR ROLE {owner_role} GRANT ALL ON TABLES TO carevault_app"),
        &e,
    )
    .await;
    c.accepted(
        "schema",
        "default privileges on its own future objects: harmless, it can create none outside pg_temp",
        "ALTER DEFAULT PRIVILEGES GRANT ALL ON TABLES TO PUBLIC",
        &["ok (0 rows)"],
    )
    .await;
    {
        let sql = "GRANT DELETE, TRUNCATE ON audit_logs TO carevault_app";
        let mut conn = c.session().await;
        let granted = run(&mut conn, sql).await;
        let has = scalar(
            &mut conn,
            "SELECT (has_table_privilege('carevault_app', 'audit_logs', 'DELETE') \
                 OR has_table_privilege('carevault_app', 'audit_logs', 'TRUNCATE'))::int::bigint",
        )
        .await;
        let observed = format!("{granted}; privilege held afterwards: {}", has == Ok(1));
        let expected = "ok (0 rows); privilege held afterwards: false";
        c.record(
            "schema",
            "grant itself DELETE/TRUNCATE on the audit log (warning 01007 only)",
            sql,
            &[expected],
            observed,
            false,
        );
    }
    c.attack("schema", "rebuild an index (owner / MAINTAIN only)", "REINDEX TABLE documents", &e).await;
    {
        let sql = "VACUUM documents; ANALYZE documents";
        let mut conn = c.session().await;
        let vacuum = run(&mut conn, "VACUUM documents").await;
        let analyze = run(&mut conn, "ANALYZE documents").await;
        let result = format!("{vacuum}, {analyze}");
        let touched = scalar(
            &mut conn,
            "SELECT count(*) FROM pg_stat_user_tables WHERE relname = 'documents' \
               AND (last_vacuum IS NOT NULL OR last_analyze IS NOT NULL)",
        )
        .await;
        let observed = format!("{result}; vacuumed or analyzed: {}", touched != Ok(0));
        c.record(
            "schema",
            "VACUUM / ANALYZE as a non-owner: skipped with a warning",
            sql,
            &["ok (0 rows), ok (0 rows); vacuumed or analyzed: false"],
            observed,
            false,
        );
    }

    // --- The audit trail -------------------------------------------------------------------------
    c.attack("audit trail", "truncate the audit log", "TRUNCATE audit_logs", &e).await;
    c.attack("audit trail", "delete audit rows", "DELETE FROM audit_logs", &e).await;
    c.attack("audit trail", "rewrite audit rows", "UPDATE audit_logs SET action = 'forged'", &e).await;
    let sql = c.sql(
        "INSERT INTO audit_logs (id, tenant_id, action, resource_type, resource_id) \
         VALUES (gen_random_uuid(), :a, 'forged', 'x', :a)",
    );
    c.attack("audit trail", "insert an audit row with a chosen id", &sql, &e).await;
    let sql = c.sql(
        "INSERT INTO audit_logs (created_at, tenant_id, action, resource_type, resource_id) \
         VALUES (now() - interval '1 year', :a, 'forged', 'x', :a)",
    );
    c.attack("audit trail", "insert a backdated audit row", &sql, &e).await;
    let sql =
        c.sql("INSERT INTO audit_logs (tenant_id, action, resource_type, resource_id) VALUES (:b, 'forged', 'x', :b)");
    c.attack("audit trail", "insert an audit row into tenant B's log", &sql, &e).await;
    let sql = c.sql(
        "INSERT INTO audit_logs (tenant_id, user_id, action, resource_type, resource_id) VALUES (:a, :bob, 'forged', 'x', :a)",
    );
    c.attack("audit trail", "attribute an audit row to tenant B's user", &sql, &["error 23503"]).await;
    c.attack("audit trail", "disable the audit triggers", "ALTER TABLE audit_logs DISABLE TRIGGER ALL", &e).await;
    c.attack("audit trail", "drop the TRUNCATE guard", "DROP TRIGGER prevent_audit_log_truncate ON audit_logs", &e)
        .await;
    c.attack("audit trail", "call a trigger function directly", "SELECT prevent_audit_log_modification()", &e).await;
    let sql = c.sql(
        "SELECT set_config('app.tenant_context', 'c1.test.' || :b || '..9999999999.' || repeat('0', 64), false); \
         UPDATE audit_logs SET action = 'forged'",
    );
    c.attack("audit trail", "claim tenant B with a made-up proof, then rewrite its audit rows", &sql, &e).await;

    // --- Tenant B's rows through writes, keys and constraints ------------------------------------
    let sql = c.sql("INSERT INTO users (tenant_id, email, role) VALUES (:b, 'evil@b.test', 'admin')");
    c.attack("cross-tenant write", "insert an admin into tenant B", &sql, &e).await;
    let sql = c.sql("UPDATE users SET role = 'viewer' WHERE id = :bob");
    c.attack("cross-tenant write", "demote tenant B's user by id", &sql, &["ok (0 rows)"]).await;
    let sql = c.sql("UPDATE documents SET deleted_at = now() WHERE tenant_id = :b");
    c.attack("cross-tenant write", "soft-delete tenant B's documents", &sql, &["ok (0 rows)"]).await;
    let sql = c.sql("UPDATE documents SET tenant_id = :b");
    c.attack("cross-tenant write", "move own documents into tenant B", &sql, &["error 23000", "error 42501"]).await;
    c.attack("cross-tenant write", "delete documents", "DELETE FROM documents", &e).await;
    c.attack("cross-tenant write", "delete users", "DELETE FROM users", &e).await;
    c.attack("cross-tenant write", "change a tenant row", "UPDATE tenants SET name = 'pwned'", &e).await;
    let sql = c.sql("SELECT id FROM documents WHERE tenant_id = :b FOR UPDATE");
    c.attack("cross-tenant write", "lock tenant B's rows", &sql, &["ok (0 rows)"]).await;
    let sql = c.sql(
        "INSERT INTO documents (id, tenant_id, user_id, s3_key, s3_bucket, filename) \
         VALUES (:bob_doc, :a, :alice, 'k', 'b', 'f') ON CONFLICT (id) DO UPDATE SET filename = 'pwned'",
    );
    c.attack("cross-tenant write", "upsert onto tenant B's document id", &sql, &e).await;
    {
        let sql = c.sql(
            "INSERT INTO documents (tenant_id, user_id, s3_key, s3_bucket, filename) VALUES (:a, :bob, 'k', 'b', 'f')",
        );
        let mut conn = c.session().await;
        let result = sqlx::raw_sql(AssertSqlSafe(sql.clone())).execute(&mut conn).await;
        let text = match &result {
            Err(sqlx::Error::Database(db)) => {
                let pg = db.try_downcast_ref::<sqlx::postgres::PgDatabaseError>();
                format!(
                    "{} {} {}",
                    db.message(),
                    pg.and_then(|p| p.detail()).unwrap_or(""),
                    pg.and_then(|p| p.hint()).unwrap_or("")
                )
            }
            _ => String::new(),
        };
        let leaks = text.contains(&c.b.to_string()) || text.contains("bob@b.test") || text.contains("b.pdf");
        let observed = format!("{}; message names tenant B's data: {leaks}", outcome(result, |r| r.rows_affected()));
        c.record(
            "constraint oracle",
            "foreign key to tenant B's user: refused like a missing user, the message reveals nothing of B",
            &sql,
            &["error 23503; message names tenant B's data: false"],
            observed,
            false,
        );
    }
    let sql = c.sql("BEGIN; INSERT INTO users (tenant_id, email, role) VALUES (:a, 'bob@b.test', 'viewer'); ROLLBACK");
    c.attack(
        "constraint oracle",
        "unique-violation probe of tenant B's email: the index is per tenant, no conflict",
        &sql,
        &["ok (1 rows)"],
    )
    .await;
    let sql = c.sql(
        "INSERT INTO documents (id, tenant_id, user_id, s3_key, s3_bucket, filename) \
         VALUES (:bob_doc, :a, :alice, 'k', 'b', 'f')",
    );
    c.accepted(
        "constraint oracle",
        "primary-key probe: a unique violation reveals that tenant B's document id exists (accepted)",
        &sql,
        &["error 23505"],
    )
    .await;

    // --- Reads: COPY, temporary objects, functions, side channels --------------------------------
    for (description, sql) in [
        ("COPY a table TO STDOUT: rewritten into a query under RLS", "COPY documents (tenant_id) TO STDOUT"),
        (
            "COPY (SELECT ...) TO STDOUT",
            "COPY (SELECT tenant_id FROM documents UNION ALL SELECT tenant_id FROM users) TO STDOUT",
        ),
    ] {
        let mut conn = c.session().await;
        let lines = match conn.copy_out_raw(sql).await {
            Ok(stream) => {
                let chunks: Vec<_> = stream.collect().await;
                let bytes: Vec<u8> =
                    chunks.into_iter().flat_map(|c| c.map(|b| b.to_vec()).unwrap_or_default()).collect();
                let text = String::from_utf8_lossy(&bytes).to_string();
                let own = text.lines().filter(|l| *l == c.a.to_string()).count();
                format!("ok; own rows: {own}; other rows: {}", text.lines().count() - own)
            }
            Err(e) => outcome::<()>(Err(e), |_| 0),
        };
        let expected =
            if sql.contains("users") { "ok; own rows: 2; other rows: 0" } else { "ok; own rows: 1; other rows: 0" };
        c.record("read", description, sql, &[expected], lines, false);
    }
    {
        let sql = "COPY documents FROM STDIN";
        let mut conn = c.session().await;
        let observed = match conn.copy_in_raw(sql).await {
            Ok(copy) => {
                let _ = copy.abort("test").await;
                "ok (copy started)".to_string()
            }
            Err(e) => outcome::<()>(Err(e), |_| 0),
        };
        c.record("write", "COPY FROM STDIN is refused under RLS", sql, &["error 0A000"], observed, false);
    }
    c.attack("read", "COPY to a server file", "COPY documents TO '/tmp/cv_evil.csv'", &e).await;
    c.attack("read", "COPY from a server program", "COPY documents (filename) FROM PROGRAM 'id'", &e).await;
    c.attack("read", "read a server file", "SELECT pg_read_file('/etc/passwd')", &e).await;
    c.attack("read", "list the data directory", "SELECT pg_ls_dir('.')", &e).await;
    c.attack("read", "import a server file as a large object", "SELECT lo_import('/etc/passwd')", &e).await;
    c.attack(
        "read",
        "install dblink to reach the database as another user",
        "CREATE EXTENSION dblink",
        &["error 42501", "error 0A000", "error 58P01"],
    )
    .await;
    c.attack("read", "call dblink", "SELECT dblink_connect('dbname=postgres')", &["error 42883"]).await;
    c.attack("read", "read password hashes", "SELECT rolpassword FROM pg_authid", &e).await;
    {
        let sql = c.sql(
            "CREATE TEMP TABLE cv_copy AS SELECT tenant_id FROM documents; SELECT count(*) FROM cv_copy WHERE tenant_id <> :a",
        );
        let mut conn = c.session().await;
        let created = run(&mut conn, "CREATE TEMP TABLE cv_copy AS SELECT tenant_id FROM documents").await;
        let other = scalar(&mut conn, &c.sql("SELECT count(*) FROM cv_copy WHERE tenant_id <> :a")).await;
        c.record(
            "read",
            "copy documents into a temporary table: refused (no TEMPORARY privilege since migration 18)",
            &sql,
            &["error 42501; other tenants' rows copied: Err(\"error 42P01\")"],
            format!("{created}; other tenants' rows copied: {other:?}"),
            false,
        );
    }
    {
        let sql = c.sql(
            "CREATE TEMP VIEW cv_view AS SELECT tenant_id FROM documents; SELECT count(*) FROM cv_view WHERE tenant_id <> :a",
        );
        let mut conn = c.session().await;
        let created = run(&mut conn, "CREATE TEMP VIEW cv_view AS SELECT tenant_id FROM documents").await;
        let other = scalar(&mut conn, &c.sql("SELECT count(*) FROM cv_view WHERE tenant_id <> :a")).await;
        let observed = format!("{created}; other tenants' rows through the view: {other:?}");
        c.record(
            "read",
            "a temporary view over documents: refused (no TEMPORARY privilege since migration 18)",
            &sql,
            &["error 42501; other tenants' rows through the view: Err(\"error 42P01\")"],
            observed,
            false,
        );
    }
    {
        let setup = "CREATE TEMP TABLE cv_loot (v text); \
             CREATE FUNCTION pg_temp.cv_leak(v text) RETURNS boolean LANGUAGE sql VOLATILE COST 0.0000001 \
             AS 'INSERT INTO pg_temp.cv_loot VALUES (v) RETURNING true'";
        let attack = "SELECT count(*) FROM documents WHERE pg_temp.cv_leak(filename)";
        let mut conn = c.session().await;
        let created = run(&mut conn, setup).await;
        let ran = run(&mut conn, attack).await;
        let loot = scalar(&mut conn, "SELECT count(*) FROM pg_temp.cv_loot WHERE v = 'b.pdf'").await;
        let observed = format!("{created}; {ran}; tenant B's values captured: {loot:?}");
        c.record(
            "read",
            "a cheap leaky function in WHERE that would see rows before the policy filters them: it cannot be \
             created (no TEMPORARY privilege since migration 18)",
            &format!("{setup}; {attack}"),
            &["error 42501; error 3F000; tenant B's values captured: Err(\"error 42P01\")"],
            observed,
            false,
        );
    }
    c.attack(
        "read",
        "no SECURITY DEFINER function in public to abuse but the verifier of the tenant context",
        "SELECT 1 FROM pg_proc WHERE prosecdef AND pronamespace = 'public'::regnamespace \
         AND oid <> 'public.carevault_current_tenant()'::regprocedure",
        &["ok (0 rows)"],
    )
    .await;
    {
        let set = "SELECT set_config('app.tenant_context', ''' OR true --', false)";
        let mut conn = c.session().await;
        run(&mut conn, set).await;
        let count = scalar(&mut conn, "SELECT count(*) FROM documents").await;
        let sql = format!("{set}; SELECT count(*) FROM documents");
        let what = "a tenant context that is an injection matches nothing";
        c.record("read", what, &sql, &["Ok(0)"], format!("{count:?}"), false);
    }
    // One row per migration (their versions run from 1 to the head without a gap).
    let migrations = format!("ok ({} rows)", carevault_db::migrate::head_version());
    c.accepted(
        "read",
        "the migrations table is readable (readiness check): harmless",
        "SELECT 1 FROM _sqlx_migrations",
        &[&migrations],
    )
    .await;
    c.attack("write", "rewrite the migrations table", "UPDATE _sqlx_migrations SET checksum = '\\x00'", &e).await;
    {
        let sql = "LISTEN cv_channel (session 1); NOTIFY cv_channel, 'x' (session 2)";
        let (mut listener, mut notifier) = (c.session().await, c.session().await);
        let listened = run(&mut listener, "LISTEN cv_channel").await;
        let notified = run(&mut notifier, "NOTIFY cv_channel, 'x'").await;
        c.record(
            "side channel",
            "LISTEN / NOTIFY: allowed between sessions of the role, carries nothing (the application uses no channel)",
            sql,
            &["ok (0 rows), ok (0 rows)"],
            format!("{listened}, {notified}"),
            true,
        );
    }

    // --- Sessions of others ----------------------------------------------------------------------
    {
        let mut owner = PgConnection::connect(&c.db.owner_url()).await.unwrap();
        let owner_pid: i32 = sqlx::query_scalar("SELECT pg_backend_pid()").fetch_one(&mut owner).await.unwrap();
        sqlx::raw_sql("SELECT 'cv-secret-' || 'owner-marker'").execute(&mut owner).await.unwrap();
        let mut sibling = c.session().await;
        sqlx::raw_sql("SELECT 'cv-secret-' || 'api-marker'").execute(&mut sibling).await.unwrap();

        let sql =
            "SELECT count(*) FROM pg_stat_activity WHERE query LIKE '%cv-secret-%marker%' AND pid <> pg_backend_pid()";
        let mut conn = c.session().await;
        let as_app = scalar(&mut conn, sql).await;
        c.record(
            "side channel",
            "pg_stat_activity as carevault_app: other sessions' query text is hidden",
            sql,
            &["Ok(0)"],
            format!("{as_app:?}"),
            false,
        );
        run(&mut conn, "RESET ROLE").await;
        let as_login = scalar(&mut conn, sql).await;
        c.record(
            "side channel",
            "pg_stat_activity after RESET ROLE: the sibling carevault_api session's statement text is visible \
             (same login role; the data layer binds every value as a parameter), the owner's is not",
            &format!("RESET ROLE; {sql}"),
            &["Ok(1)"],
            format!("{as_login:?}"),
            true,
        );
        let sql = format!("SELECT pg_terminate_backend({owner_pid})");
        c.attack("side channel", "terminate another role's session", &sql, &e).await;
    }
    {
        // A table lock is allowed with UPDATE; our transactions set lock_timeout (5 s in TenantTx,
        // 200 ms here to keep the run short), so a victim fails fast with 55P03 instead of queueing.
        let sql = "BEGIN; LOCK TABLE documents IN ACCESS EXCLUSIVE MODE";
        let mut conn = c.session().await;
        let locked = run(&mut conn, sql).await;
        let mut victim = app_session(&c.db, Some(c.b)).await;
        let waited = run(&mut victim, "BEGIN; SET LOCAL lock_timeout = '200ms'; SELECT count(*) FROM documents").await;
        run(&mut conn, "ROLLBACK").await;
        c.record(
            "denial of service",
            "hold an exclusive lock on documents (accepted: lock_timeout makes victims fail fast)",
            sql,
            &["ok (0 rows); victim with lock_timeout: error 55P03"],
            format!("{locked}; victim with lock_timeout: {waited}"),
            true,
        );
    }

    // --- The tenant context: prepared statements and claims without the key -----------------------
    {
        let sql = "SET plan_cache_mode = force_generic_plan; PREPARE cv_p AS SELECT tenant_id FROM documents; \
                   EXECUTE cv_p (tenant A); clear the context; EXECUTE cv_p";
        let mut conn = c.session().await;
        run(&mut conn, "SET plan_cache_mode = force_generic_plan; PREPARE cv_p AS SELECT tenant_id FROM documents")
            .await;
        let under_a = run(&mut conn, "EXECUTE cv_p").await;
        let proof_of_a: String =
            sqlx::query_scalar("SELECT current_setting('app.tenant_context')").fetch_one(&mut conn).await.unwrap();
        run(&mut conn, "SELECT set_config('app.tenant_context', '', false)").await;
        let unset = run(&mut conn, "EXECUTE cv_p").await;
        c.record(
            "prepared statements",
            "a generic plan prepared under tenant A returns nothing once the context is cleared",
            sql,
            &["A: ok (1 rows); unset: ok (0 rows)"],
            format!("A: {under_a}; unset: {unset}"),
            false,
        );
        let forged = proof_of_a.replace(&c.a.to_string(), &c.b.to_string());
        let claimed = outcome(
            sqlx::query("SELECT set_config('app.tenant_context', $1, false)").bind(&forged).execute(&mut conn).await,
            |r| r.rows_affected(),
        );
        let rows: Vec<TenantId> = sqlx::query_scalar("EXECUTE cv_p").fetch_all(&mut conn).await.unwrap_or_default();
        c.record(
            "prepared statements",
            "the same plan after claiming tenant B with A's proof edited to name B: nothing (held since the \
             database verifies the tenant context)",
            "SELECT set_config('app.tenant_context', '<A's proof, tenant replaced by B>', false); EXECUTE cv_p",
            &["ok (1 rows); rows: 0"],
            format!("{claimed}; rows: {}", rows.len()),
            false,
        );
    }
    {
        let sql = c.sql("SELECT set_config('app.current_tenant_id', :b, false); SELECT tenant_id FROM documents");
        let mut conn = c.session().await;
        run(&mut conn, &c.sql("SELECT set_config('app.current_tenant_id', :b, false)")).await;
        run(&mut conn, "SELECT set_config('app.tenant_context', '', false)").await;
        let rows = scalar(&mut conn, "SELECT count(*) FROM documents").await;
        c.record(
            "tenant context",
            "claim tenant B with set_config, the way the policies trusted until migration 18, and read its \
             documents: nothing (held since the database verifies the tenant context)",
            &sql,
            &["Ok(0)"],
            format!("{rows:?}"),
            false,
        );
    }

    // --- Persistent settings of the login role -------------------------------------------------
    {
        // Scoped to this test's database (the cluster is shared): an ordinary role may set its own
        // defaults, which apply to every later login, e.g. the API's pooled connections.
        let mut conn = c.session().await;
        let name: String = sqlx::query_scalar("SELECT current_database()::text").fetch_one(&mut conn).await.unwrap();
        let sql = format!(
            "RESET ROLE; ALTER ROLE carevault_api IN DATABASE \"{name}\" SET default_transaction_read_only = on"
        );
        let altered = run(&mut conn, &sql).await;
        let fresh = c.db.app_pool(1);
        let write = match TenantTx::begin(&fresh, c.a, AuditContext::default()).await {
            Ok(mut tx) => match tx.users().create(new_user("late@a.test", UserRole::Viewer)).await {
                Ok(_) => "ok".to_string(),
                Err(e) => format!("refused: {e}"),
            },
            Err(e) => format!("refused: {e}"),
        };
        fresh.close().await;
        let owner = c.db.owner_pool().await;
        sqlx::raw_sql(AssertSqlSafe(format!("ALTER ROLE carevault_api IN DATABASE \"{name}\" RESET ALL")))
            .execute(&owner)
            .await
            .unwrap();
        c.record(
            "persistence",
            "set a default of the login role (default_transaction_read_only, statement_timeout, search_path...): \
             it must not change what the API's tenant transactions do",
            &sql,
            &["error 42501; API write afterwards: ok", "ok (0 rows); API write afterwards: ok"],
            format!("{altered}; API write afterwards: {write}"),
            false,
        );
    }

    crate::attacks_context::attempts(&mut c).await;

    // --- Ground truth ------------------------------------------------------------------------------
    let after = fingerprint(&c.db, b).await;
    c.record(
        "ground truth",
        "read by the owner after every attempt: tenant B's rows, the audit log, tenants, policies, \
         privileges, triggers, roles and functions are unchanged",
        "fingerprint (md5) of B's rows, audit_logs, tenants, pg_policies, pg_class ACLs, pg_trigger, roles, memberships",
        &["unchanged"],
        if after == before { "unchanged".into() } else { "changed".into() },
        false,
    );

    write_evidence(&c.entries);
    let failed: Vec<String> = c
        .entries
        .iter()
        .filter(|e| !e.passed)
        .map(|e| format!("{} {}: expected {}, observed {}", e.id, e.description, e.expected, e.observed))
        .collect();
    assert!(c.entries.len() >= 30, "{} entries", c.entries.len());
    assert!(failed.is_empty(), "attacks with an unexpected outcome:\n{}", failed.join("\n"));
    assert!(started.elapsed() < std::time::Duration::from_secs(20), "{:?}", started.elapsed());
}

/// Writes the catalogue to `$CAREVAULT_EVIDENCE_DIR/db_attacks.json` when the variable is set.
fn write_evidence(entries: &[Entry]) {
    let Some(dir) = std::env::var_os("CAREVAULT_EVIDENCE_DIR") else { return };
    let json: Vec<serde_json::Value> = entries
        .iter()
        .map(|e| {
            serde_json::json!({
                "id": e.id, "category": e.category, "description": e.description, "sql": e.sql,
                "expected": e.expected, "observed": e.observed, "passed": e.passed, "accepted": e.accepted,
            })
        })
        .collect();
    let dir = std::path::PathBuf::from(dir);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("db_attacks.json"), serde_json::to_string_pretty(&json).unwrap()).unwrap();
}
