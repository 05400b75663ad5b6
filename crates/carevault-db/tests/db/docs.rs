//! The documents under `docs/` state facts about the database; these tests check them against
//! the live catalog and the running system, so the documents cannot drift from the code.
//!
//! - `docs/DATABASE_SCHEMA.md`: every table, column, constraint, index, policy, trigger and grant,
//!   compared both ways with the catalog.
//! - `docs/EXTENSION_POINTS.md`: the tenant-table checklist as a generic catalog check
//!   ([`tenant_table_problems`]), shown to catch each omission, and the document's example
//!   migration run and checked.
//! - `docs/RLS_PATTERNS.md`: the pitfalls no other test demonstrates.

use carevault_db::doctor::{self, DoctorContext, Status};
use carevault_db::manifest::{Manifest, Privilege, Trigger, TriggerType};
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use carevault_db::repo::DocumentFilter;
use carevault_db::{AppPool, AuditAction, DbError, PageLimit, PoolConfig, TenantTx, UserRole};
use carevault_testdb::TestDb;
use sqlx::{Connection, PgConnection, PgPool};

use crate::fixtures::{TwoTenants, app_session, as_user, document, message, sqlstate, two_tenants};

/// How `pg_policies` prints `(SELECT carevault_current_tenant())`, the manifest's tenant
/// sub-select.
const CURRENT_TENANT_CATALOG: &str = "( SELECT carevault_current_tenant() AS carevault_current_tenant)";
/// The abbreviation `docs/DATABASE_SCHEMA.md` uses for it.
const CURRENT_TENANT_DOC: &str = "current_tenant";

fn doc(name: &str) -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../docs").join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

async fn catalog_pool(db: &TestDb) -> PgPool {
    // Catalog reads need no privilege: the runtime login reads them as doctor would.
    PgPool::connect(&db.app_url()).await.expect("connect")
}

// ---------------------------------------------------------------------------------------------
// docs/DATABASE_SCHEMA.md
// ---------------------------------------------------------------------------------------------

/// `(table, section)` → the rows of that markdown table, each a list of cells.
type Rows = BTreeMap<(String, String), BTreeSet<Vec<String>>>;

/// Parses the fixed format of `docs/DATABASE_SCHEMA.md`: `## \`table\``, then `### Section`
/// headings each followed by one markdown table (header row, separator, rows), and a line
/// `Row-level security: …` (recorded as section `rls` with one cell).
fn parse_schema_doc(text: &str) -> Rows {
    let mut rows = Rows::new();
    let mut table: Option<String> = None;
    let mut section: Option<String> = None;
    let mut header_seen = false;
    for line in text.lines() {
        if let Some(heading) = line.strip_prefix("## ") {
            table = heading.split('`').nth(1).map(str::to_string);
            section = None;
        } else if let Some(heading) = line.strip_prefix("### ") {
            section = Some(heading.trim().to_lowercase());
            header_seen = false;
        } else if let (Some(t), Some(value)) = (&table, line.strip_prefix("Row-level security: ")) {
            let value = value.trim().trim_end_matches('.').to_string();
            rows.entry((t.clone(), "rls".into())).or_default().insert(vec![value]);
        } else if line.starts_with('|') {
            let (Some(t), Some(s)) = (&table, &section) else { continue };
            if line.starts_with("|---") || line.starts_with("| ---") {
                continue;
            }
            if !header_seen {
                header_seen = true;
                continue;
            }
            let cells: Vec<String> = line.trim().trim_matches('|').split('|').map(cell).collect();
            rows.entry((t.clone(), s.clone())).or_default().insert(cells);
        }
    }
    rows
}

/// A cell's text without the code backticks around it.
fn cell(text: &str) -> String {
    let text = text.trim();
    text.strip_prefix('`').and_then(|t| t.strip_suffix('`')).unwrap_or(text).to_string()
}

/// The same rows, read from the catalog.
async fn schema_from_catalog(pool: &PgPool) -> Rows {
    let mut rows = Rows::new();
    let mut add = |table: String, section: &str, cells: Vec<String>| {
        rows.entry((table, section.to_string())).or_default().insert(cells);
    };

    let tables: Vec<(String, bool, bool)> = sqlx::query_as(
        "SELECT relname::text, relrowsecurity, relforcerowsecurity FROM pg_class \
         WHERE relnamespace = 'public'::regnamespace AND relkind IN ('r', 'p')",
    )
    .fetch_all(pool)
    .await
    .unwrap();
    for (table, enabled, forced) in tables {
        let rls = match (enabled, forced) {
            (true, true) => "enabled, forced",
            (true, false) => "enabled, not forced",
            (false, true) => "disabled, forced",
            (false, false) => "disabled",
        };
        add(table, "rls", vec![rls.into()]);
    }

    let columns: Vec<(String, String, String, bool, Option<String>)> = sqlx::query_as(
        "SELECT c.relname::text, a.attname::text, format_type(a.atttypid, a.atttypmod), a.attnotnull, \
                pg_get_expr(d.adbin, d.adrelid) \
         FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid \
         LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum \
         WHERE c.relnamespace = 'public'::regnamespace AND c.relkind IN ('r', 'p') \
           AND a.attnum > 0 AND NOT a.attisdropped",
    )
    .fetch_all(pool)
    .await
    .unwrap();
    for (table, column, kind, not_null, default) in columns {
        let null = if not_null { "no" } else { "yes" };
        add(table, "columns", vec![column, kind, null.into(), default.unwrap_or_default()]);
    }

    // NOT NULL constraints (listed in pg_constraint since PostgreSQL 18) are the `null` column.
    let constraints: Vec<(String, String, String)> = sqlx::query_as(
        "SELECT conrelid::regclass::text, conname::text, pg_get_constraintdef(oid) FROM pg_constraint \
         WHERE connamespace = 'public'::regnamespace AND conrelid <> 0 AND contype <> 'n'",
    )
    .fetch_all(pool)
    .await
    .unwrap();
    for (table, name, definition) in constraints {
        add(table, "constraints", vec![name, definition]);
    }

    let indexes: Vec<(String, String, String)> =
        sqlx::query_as("SELECT tablename::text, indexname::text, indexdef FROM pg_indexes WHERE schemaname = 'public'")
            .fetch_all(pool)
            .await
            .unwrap();
    for (table, name, definition) in indexes {
        let unique = if definition.starts_with("CREATE UNIQUE INDEX") { "UNIQUE " } else { "" };
        let on = format!(" ON public.{table} ");
        let rest = definition.split_once(&on).map(|(_, rest)| rest).unwrap_or(&definition);
        add(table, "indexes", vec![name, format!("{unique}{rest}")]);
    }

    // (table, policy, permissive, command, roles, USING, WITH CHECK)
    type PolicyRow = (String, String, String, String, Vec<String>, Option<String>, Option<String>);
    let policies: Vec<PolicyRow> = sqlx::query_as(
        "SELECT tablename::text, policyname::text, permissive, cmd, roles::text[], qual, with_check \
             FROM pg_policies WHERE schemaname = 'public'",
    )
    .fetch_all(pool)
    .await
    .unwrap();
    let abbreviate = |e: Option<String>| e.unwrap_or_default().replace(CURRENT_TENANT_CATALOG, CURRENT_TENANT_DOC);
    for (table, name, permissive, command, roles, using, check) in policies {
        add(table, "policies", vec![name, permissive, command, roles.join(", "), abbreviate(using), abbreviate(check)]);
    }

    let triggers: Vec<(String, String, String)> = sqlx::query_as(
        "SELECT tgrelid::regclass::text, tgname::text, pg_get_triggerdef(oid) FROM pg_trigger WHERE NOT tgisinternal",
    )
    .fetch_all(pool)
    .await
    .unwrap();
    for (table, name, definition) in triggers {
        // CREATE TRIGGER <name> <timing event> ON public.<table> <level> EXECUTE FUNCTION <f>()
        let after_name = definition.trim_start_matches(&format!("CREATE TRIGGER {name} "));
        let (timing, rest) = after_name.split_once(&format!(" ON public.{table} ")).unwrap();
        let (level, function) = rest.split_once(" EXECUTE FUNCTION ").unwrap();
        add(table, "triggers", vec![name, format!("{timing} {level}"), function.to_string()]);
    }

    // Table-level grants, and column-level grants grouped per role and privilege.
    let grants: Vec<(String, String, String, Option<String>)> = sqlx::query_as(
        "SELECT c.relname::text, g.grantee::regrole::text, g.privilege_type, NULL::text \
         FROM pg_class c CROSS JOIN aclexplode(c.relacl) AS g \
         WHERE c.relnamespace = 'public'::regnamespace AND c.relkind IN ('r', 'p') AND g.grantee <> c.relowner \
         UNION ALL \
         SELECT c.relname::text, g.grantee::regrole::text, g.privilege_type, \
                string_agg(a.attname::text, ', ' ORDER BY a.attnum) \
         FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid CROSS JOIN aclexplode(a.attacl) AS g \
         WHERE c.relnamespace = 'public'::regnamespace AND c.relkind IN ('r', 'p') AND g.grantee <> c.relowner \
         GROUP BY 1, 2, 3",
    )
    .fetch_all(pool)
    .await
    .unwrap();
    for (table, role, privilege, columns) in grants {
        add(table, "privileges", vec![role, privilege, columns.unwrap_or_else(|| "all".into())]);
    }
    rows
}

/// The rows of `left` that `right` lacks, as markdown (so a failure message can be pasted).
fn missing(left: &Rows, right: &Rows) -> Vec<String> {
    let mut out = Vec::new();
    for (key, rows) in left {
        for row in rows {
            if !right.get(key).is_some_and(|r| r.contains(row)) {
                let cells: Vec<String> =
                    row.iter().map(|c| if c.is_empty() { String::new() } else { format!("`{c}`") }).collect();
                out.push(format!("{} / {}: | {} |", key.0, key.1, cells.join(" | ")));
            }
        }
    }
    out
}

#[tokio::test]
async fn database_schema_doc_matches_the_catalog() {
    let db = TestDb::new().await;
    let pool = catalog_pool(&db).await;
    let documented = parse_schema_doc(&doc("DATABASE_SCHEMA.md"));
    let actual = schema_from_catalog(&pool).await;
    assert!(documented.len() > 20, "the parser found the document's tables: {:?}", documented.keys());

    let undocumented = missing(&actual, &documented);
    let stale = missing(&documented, &actual);
    assert!(
        undocumented.is_empty() && stale.is_empty(),
        "docs/DATABASE_SCHEMA.md and the catalog disagree.\nIn the database, not in the document:\n{}\n\
         In the document, not in the database:\n{}",
        undocumented.join("\n"),
        stale.join("\n")
    );

    // The seed row the document names.
    let system: (String, String) = {
        let mut conn = app_session(&db, Some(carevault_db::TenantId::SYSTEM)).await;
        sqlx::query_as("SELECT name::text, status::text FROM tenants WHERE id = '00000000-0000-0000-0000-000000000000'")
            .fetch_one(&mut conn)
            .await
            .unwrap()
    };
    assert_eq!(system, ("System".to_string(), "active".to_string()));
}

#[test]
fn the_schema_doc_parser_reads_every_section() {
    let sample = "## `t`\n\nRow-level security: enabled, forced.\n\n### Columns\n\n| column | type | null | default |\n\
                  |---|---|---|---|\n| `id` | `uuid` | no | `gen_random_uuid()` |\n| `x` | `text` | yes | |\n\n\
                  ### Indexes\n\n| index | definition |\n|---|---|\n| `t_pkey` | `UNIQUE USING btree (id)` |\n";
    let rows = parse_schema_doc(sample);
    let get = |s: &str| rows.get(&("t".to_string(), s.to_string())).cloned().unwrap_or_default();
    assert_eq!(get("rls"), BTreeSet::from([vec!["enabled, forced".to_string()]]));
    assert_eq!(
        get("columns"),
        BTreeSet::from([
            vec!["id".into(), "uuid".into(), "no".into(), "gen_random_uuid()".into()],
            vec!["x".into(), "text".into(), "yes".into(), String::new()],
        ])
    );
    assert_eq!(get("indexes"), BTreeSet::from([vec!["t_pkey".into(), "UNIQUE USING btree (id)".into()]]));
}

// ---------------------------------------------------------------------------------------------
// docs/EXTENSION_POINTS.md: the tenant-table checklist
// ---------------------------------------------------------------------------------------------

/// Everything wrong with the tenant tables of the database, by the checklist of
/// `docs/EXTENSION_POINTS.md`: each table holding a `tenant_id` column (and `tenants`, keyed by
/// `id`) must have RLS enabled and forced, `tenant_id NOT NULL`, the RESTRICTIVE `tenant_guard`
/// for `carevault_app`, a permissive policy with the right clauses for every command
/// `carevault_app` is granted (table or column level), no privilege no policy can cover
/// (TRUNCATE, REFERENCES, TRIGGER), no policy for PUBLIC, the tenant read in the sub-select form,
/// and composite foreign keys between tenant tables. Empty when all is well.
async fn tenant_table_problems(pool: &PgPool) -> Vec<String> {
    let mut problems = Vec::new();
    let tables: Vec<(String, bool, bool, Option<bool>)> = sqlx::query_as(
        "SELECT c.relname::text, c.relrowsecurity, c.relforcerowsecurity, a.attnotnull FROM pg_class c \
         LEFT JOIN pg_attribute a ON a.attrelid = c.oid AND a.attname = 'tenant_id' AND NOT a.attisdropped \
         WHERE c.relnamespace = 'public'::regnamespace AND c.relkind IN ('r', 'p') \
           AND (a.attnum IS NOT NULL OR c.relname = 'tenants') \
         ORDER BY 1",
    )
    .fetch_all(pool)
    .await
    .unwrap();
    for (table, enabled, forced, tenant_id_not_null) in &tables {
        if !enabled || !forced {
            problems.push(format!("{table}: row-level security not enabled and forced"));
        }
        if *tenant_id_not_null == Some(false) {
            problems.push(format!("{table}: tenant_id is nullable"));
        }
        // (name, command, permissive, USING, WITH CHECK, applies to PUBLIC) of the policies that
        // apply to carevault_app.
        type AppPolicy = (String, String, bool, Option<String>, Option<String>, bool);
        let policies: Vec<AppPolicy> = sqlx::query_as(
            "SELECT polname::text, polcmd::text, polpermissive, pg_get_expr(polqual, polrelid), \
                    pg_get_expr(polwithcheck, polrelid), 0::oid = ANY (polroles) FROM pg_policy \
             WHERE polrelid = $1::regclass AND ('carevault_app'::regrole = ANY (polroles) OR 0::oid = ANY (polroles))",
        )
        .bind(table)
        .fetch_all(pool)
        .await
        .unwrap();
        for (name, _, _, using, check, public) in &policies {
            if *public {
                problems.push(format!("{table}: policy {name} applies to PUBLIC, not TO carevault_app"));
            }
            for expression in [using, check].into_iter().flatten() {
                if !expression.contains(CURRENT_TENANT_CATALOG) {
                    problems
                        .push(format!("{table}: policy {name} does not compare with the current tenant sub-select"));
                }
            }
        }
        let guard = policies.iter().any(|(_, cmd, permissive, using, check, _)| {
            cmd == "*" && !permissive && using.is_some() && check.is_some()
        });
        if !guard {
            problems.push(format!("{table}: no RESTRICTIVE FOR ALL tenant guard with USING and WITH CHECK"));
        }
        for (privilege, letter) in [("SELECT", "r"), ("INSERT", "a"), ("UPDATE", "w"), ("DELETE", "d")] {
            let granted: bool = sqlx::query_scalar(
                "SELECT has_table_privilege('carevault_app', $1::regclass, $2) \
                     OR ($2 <> 'DELETE' AND has_any_column_privilege('carevault_app', $1::regclass, $2))",
            )
            .bind(table)
            .bind(privilege)
            .fetch_one(pool)
            .await
            .unwrap();
            if !granted {
                continue;
            }
            let covering: Vec<_> = policies.iter().filter(|p| p.2 && (p.1 == letter || p.1 == "*")).collect();
            if covering.is_empty() {
                problems.push(format!("{table}: carevault_app may {privilege} but no permissive policy covers it"));
            }
            let clauses_missing = covering.iter().any(|p| match privilege {
                "INSERT" => p.4.is_none(),
                "UPDATE" => p.3.is_none() || p.4.is_none(),
                _ => p.3.is_none(),
            });
            if clauses_missing {
                problems.push(format!("{table}: a policy covering {privilege} lacks USING or WITH CHECK"));
            }
        }
        for privilege in ["TRUNCATE", "REFERENCES", "TRIGGER"] {
            let granted: bool = sqlx::query_scalar(
                "SELECT has_table_privilege('carevault_app', $1::regclass, $2) \
                     OR ($2 = 'REFERENCES' AND has_any_column_privilege('carevault_app', $1::regclass, $2))",
            )
            .bind(table)
            .bind(privilege)
            .fetch_one(pool)
            .await
            .unwrap();
            if granted {
                problems.push(format!("{table}: carevault_app holds {privilege}, which no policy can restrict"));
            }
        }
    }
    // A foreign key between two tables that both hold tenant_id must pair tenant_id with tenant_id.
    let single: Vec<(String, String, String)> = sqlx::query_as(
        "SELECT c.conrelid::regclass::text, c.conname::text, c.confrelid::regclass::text FROM pg_constraint c \
         JOIN pg_attribute ca ON ca.attrelid = c.conrelid AND ca.attname = 'tenant_id' AND NOT ca.attisdropped \
         JOIN pg_attribute fa ON fa.attrelid = c.confrelid AND fa.attname = 'tenant_id' AND NOT fa.attisdropped \
         WHERE c.contype = 'f' AND c.connamespace = 'public'::regnamespace \
           AND NOT EXISTS (SELECT 1 FROM unnest(c.conkey, c.confkey) AS k(src, dst) \
                           WHERE k.src = ca.attnum AND k.dst = fa.attnum) \
         ORDER BY 1, 2",
    )
    .fetch_all(pool)
    .await
    .unwrap();
    for (table, name, target) in single {
        problems.push(format!("{table}: foreign key {name} to {target} does not include tenant_id on both sides"));
    }
    problems
}

#[tokio::test]
async fn every_tenant_table_follows_the_extension_checklist() {
    let db = TestDb::new().await;
    let pool = catalog_pool(&db).await;
    let problems = tenant_table_problems(&pool).await;
    assert!(problems.is_empty(), "{problems:#?}");
}

#[tokio::test]
async fn the_checklist_test_catches_each_omission() {
    let db = TestDb::new().await;
    let owner = db.owner_pool().await;
    sqlx::raw_sql(
        "CREATE TABLE bad_notes (
             id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
             tenant_id uuid,
             user_id uuid REFERENCES users (id),
             body text);
         ALTER TABLE bad_notes ENABLE ROW LEVEL SECURITY;
         CREATE POLICY read_all ON bad_notes FOR SELECT TO carevault_app USING (true);
         CREATE POLICY everyone ON bad_notes FOR SELECT USING (tenant_id = (SELECT carevault_current_tenant()));
         GRANT SELECT, INSERT, DELETE, TRUNCATE ON bad_notes TO carevault_app;
         GRANT UPDATE (body) ON bad_notes TO carevault_app;
         DROP POLICY tenant_guard ON documents;",
    )
    .execute(&owner)
    .await
    .unwrap();
    let pool = catalog_pool(&db).await;
    let problems: BTreeSet<String> = tenant_table_problems(&pool).await.into_iter().collect();
    let expected: BTreeSet<String> = [
        "bad_notes: row-level security not enabled and forced",
        "bad_notes: tenant_id is nullable",
        "bad_notes: policy everyone applies to PUBLIC, not TO carevault_app",
        "bad_notes: policy read_all does not compare with the current tenant sub-select",
        "bad_notes: no RESTRICTIVE FOR ALL tenant guard with USING and WITH CHECK",
        "bad_notes: carevault_app may INSERT but no permissive policy covers it",
        "bad_notes: carevault_app may UPDATE but no permissive policy covers it",
        "bad_notes: carevault_app may DELETE but no permissive policy covers it",
        "bad_notes: carevault_app holds TRUNCATE, which no policy can restrict",
        "bad_notes: foreign key bad_notes_user_id_fkey to users does not include tenant_id on both sides",
        "documents: no RESTRICTIVE FOR ALL tenant guard with USING and WITH CHECK",
    ]
    .into_iter()
    .map(String::from)
    .collect();
    assert_eq!(problems, expected);
}

/// The fenced ```sql block of `text` whose first line is `-- <path>`.
fn sql_block(text: &str, path: &str) -> String {
    let start = format!("```sql\n-- {path}\n");
    let begin = text.find(&start).unwrap_or_else(|| panic!("no ```sql block starting with `-- {path}`"));
    let body = &text[begin + "```sql\n".len()..];
    body[..body.find("```").expect("an unterminated block")].to_string()
}

#[tokio::test]
async fn the_extension_points_example_migration_passes_the_checklist_and_isolates() {
    let text = doc("EXTENSION_POINTS.md");
    let up = sql_block(&text, "migrations/0016_create_notes.up.sql");
    let down = sql_block(&text, "migrations/0016_create_notes.down.sql");
    let db = TestDb::new().await;
    let owner = db.owner_pool().await;
    sqlx::raw_sql(sqlx::AssertSqlSafe(up)).execute(&owner).await.unwrap();
    let pool = catalog_pool(&db).await;
    let problems = tenant_table_problems(&pool).await;
    assert!(problems.is_empty(), "{problems:#?}");

    // The doctor with the document's manifest: every check passes; without the table in the
    // manifest, it fails.
    let notes_trigger =
        |name, function| Trigger { table: "public.notes", name, tgtype: TriggerType::BEFORE_UPDATE_ROW, function };
    let manifest = Manifest::carevault()
        .with_tenant_table("public.notes", &[Privilege::Select, Privilege::Insert, Privilege::Update])
        .with_trigger(notes_trigger("notes_keys_immutable", "public.prevent_tenant_key_change"))
        .with_trigger(notes_trigger("notes_set_updated_at", "public.set_updated_at"));
    let context = DoctorContext {
        environment: carevault_db::Environment::Production,
        app_login: Some("carevault_api".into()),
        ops_login: Some("carevault_ops".into()),
    };
    let checks = doctor::run_with(&owner, &context, &manifest).await.unwrap();
    let not_passing: Vec<_> = checks.iter().filter(|c| c.status != Status::Pass).collect();
    assert!(not_passing.is_empty(), "{not_passing:#?}");
    let checks = doctor::run(&owner, &context).await.unwrap();
    let failing: Vec<&str> = checks.iter().filter(|c| c.status == Status::Fail).map(|c| c.name).collect();
    assert_eq!(failing, ["row_level_security", "policies", "tenant_guard", "privileges"], "{checks:#?}");

    // The new table isolates tenants as the runtime role, including through its foreign keys.
    let TwoTenants { pool: app, a, b, alice, bob } = two_tenants(&db, UserRole::Member).await;
    let doc_a = document(&app, &alice, "a.pdf").await;
    let mut conn_a = app_session(&db, Some(a)).await;
    let created: chrono::DateTime<chrono::Utc> = sqlx::query_scalar(
        "INSERT INTO notes (tenant_id, document_id, user_id, body) VALUES ($1, $2, $3, 'n') RETURNING updated_at",
    )
    .bind(a)
    .bind(doc_a.id)
    .bind(alice.id)
    .fetch_one(&mut conn_a)
    .await
    .unwrap();
    let updated: chrono::DateTime<chrono::Utc> =
        sqlx::query_scalar("UPDATE notes SET body = 'm' RETURNING updated_at").fetch_one(&mut conn_a).await.unwrap();
    assert!(updated > created, "the updated_at trigger");
    // The BEFORE trigger refuses first; WITH CHECK would refuse too.
    let moved = sqlx::query("UPDATE notes SET tenant_id = $1").bind(b).execute(&mut conn_a).await;
    assert!(message(moved).contains("tenant_id is immutable"));
    assert_eq!(sqlstate(sqlx::query("DELETE FROM notes").execute(&mut conn_a).await), "42501");

    let mut conn_b = app_session(&db, Some(b)).await;
    let seen: i64 = sqlx::query_scalar("SELECT count(*) FROM notes").fetch_one(&mut conn_b).await.unwrap();
    assert_eq!(seen, 0);
    let cross = sqlx::query("INSERT INTO notes (tenant_id, document_id, user_id, body) VALUES ($1, $2, $3, 'x')")
        .bind(b)
        .bind(doc_a.id)
        .bind(bob.id)
        .execute(&mut conn_b)
        .await;
    assert_eq!(sqlstate(cross), "23503", "a tenant-B note cannot name tenant A's document");
    let owner_move = sqlx::query("UPDATE notes SET tenant_id = $1").bind(b).execute(&owner).await;
    assert!(message(owner_move).contains("tenant_id is immutable"));
    drop((conn_a, conn_b));

    sqlx::raw_sql(sqlx::AssertSqlSafe(down)).execute(&owner).await.unwrap();
    let left: Option<String> =
        sqlx::query_scalar("SELECT to_regclass('public.notes')::text").fetch_one(&owner).await.unwrap();
    assert_eq!(left, None);
}

// ---------------------------------------------------------------------------------------------
// docs/RLS_PATTERNS.md: pitfalls not demonstrated elsewhere
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn a_superuser_login_is_still_bound_by_rls_inside_a_tenant_transaction() {
    let db = TestDb::new().await;
    let TwoTenants { pool, a, alice, bob, .. } = two_tenants(&db, UserRole::Member).await;
    document(&pool, &alice, "a.pdf").await;
    document(&pool, &bob, "b.pdf").await;
    // The single-URL deployment: the pool logs in as the superuser; TenantTx switches role.
    let superuser =
        AppPool::connect_lazy(&db.owner_url(), PoolConfig::default(), carevault_testdb::context_key()).unwrap();
    let mut tx = TenantTx::begin(&superuser, a, as_user(&alice)).await.unwrap();
    let page = tx.documents().list(DocumentFilter::default(), PageLimit::default(), None).await.unwrap();
    assert_eq!(page.items.len(), 1);
    assert!(page.items.iter().all(|d| d.tenant_id == a));
    // Another tenant's user is not found even though the login could bypass RLS.
    assert!(matches!(tx.users().get(bob.id).await, Err(DbError::NotFound)));
    drop(tx);
    superuser.close().await;
}

#[tokio::test]
async fn set_local_takes_no_bind_parameters_and_set_config_does() {
    let db = TestDb::new().await;
    let mut conn = PgConnection::connect(&db.app_url()).await.unwrap();
    let mut tx = conn.begin().await.unwrap();
    let set_local = sqlx::query("SET LOCAL app.current_tenant_id = $1").bind("x").execute(&mut *tx).await;
    assert_eq!(sqlstate(set_local), "42601", "the reference's statement is a syntax error");
    drop(tx);
    let mut tx = conn.begin().await.unwrap();
    let value: String = sqlx::query_scalar("SELECT set_config('app.current_tenant_id', $1, true)")
        .bind(carevault_db::TenantId::SYSTEM.to_string())
        .fetch_one(&mut *tx)
        .await
        .unwrap();
    assert_eq!(value, "00000000-0000-0000-0000-000000000000");
    tx.commit().await.unwrap();
    let after: String =
        sqlx::query_scalar("SELECT current_setting('app.current_tenant_id')").fetch_one(&mut conn).await.unwrap();
    assert_eq!(after, "", "transaction-local: gone after COMMIT");
}

#[tokio::test]
async fn a_later_permissive_policy_cannot_widen_access() {
    let db = TestDb::new().await;
    let TwoTenants { pool, a, alice, bob, .. } = two_tenants(&db, UserRole::Member).await;
    document(&pool, &alice, "a.pdf").await;
    document(&pool, &bob, "b.pdf").await;
    let owner = db.owner_pool().await;
    sqlx::query("CREATE POLICY oops ON documents FOR ALL TO carevault_app USING (true) WITH CHECK (true)")
        .execute(&owner)
        .await
        .unwrap();
    let mut conn = app_session(&db, Some(a)).await;
    let tenants: Vec<carevault_db::TenantId> =
        sqlx::query_scalar("SELECT tenant_id FROM documents").fetch_all(&mut conn).await.unwrap();
    assert_eq!(tenants, vec![a], "the RESTRICTIVE tenant_guard is AND-ed with every permissive policy");
}

#[tokio::test]
async fn policies_evaluate_the_tenant_once_per_query() {
    let db = TestDb::new().await;
    let TwoTenants { a, .. } = two_tenants(&db, UserRole::Member).await;
    let mut conn = app_session(&db, Some(a)).await;
    let plan: Vec<String> = sqlx::query_scalar("EXPLAIN SELECT * FROM documents").fetch_all(&mut conn).await.unwrap();
    let plan = plan.join("\n");
    // The sub-select becomes an InitPlan, run once, whose result every row is compared with.
    assert!(plan.contains("InitPlan"), "{plan}");
}

#[tokio::test]
async fn copy_from_is_refused_and_copy_to_is_filtered_under_rls() {
    let db = TestDb::new().await;
    let TwoTenants { pool, a, alice, bob, .. } = two_tenants(&db, UserRole::Member).await;
    document(&pool, &alice, "a.pdf").await;
    document(&pool, &bob, "b.pdf").await;
    let mut conn = app_session(&db, Some(a)).await;
    let refused = conn.copy_in_raw("COPY documents (tenant_id, user_id, s3_key, s3_bucket, filename) FROM STDIN").await;
    let Err(error) = refused else { panic!("COPY FROM on a table with RLS was accepted") };
    assert!(error.to_string().contains("row-level security"), "{error}");

    let mut conn = app_session(&db, Some(a)).await;
    let mut out = conn.copy_out_raw("COPY documents (tenant_id, filename) TO STDOUT").await.unwrap();
    let mut text = Vec::new();
    use futures::StreamExt;
    while let Some(chunk) = out.next().await {
        text.extend_from_slice(&chunk.unwrap());
    }
    let text = String::from_utf8(text).unwrap();
    assert_eq!(text, format!("{a}\ta.pdf\n"), "only the current tenant's rows are copied out");
}

#[tokio::test]
async fn a_tenant_transaction_waits_at_most_five_seconds_for_a_lock() {
    let db = TestDb::new().await;
    let TwoTenants { pool, a, alice, .. } = two_tenants(&db, UserRole::Member).await;
    let mut holder = PgConnection::connect(&db.owner_url()).await.unwrap();
    let mut lock = holder.begin().await.unwrap();
    sqlx::query("LOCK TABLE documents IN ACCESS EXCLUSIVE MODE").execute(&mut *lock).await.unwrap();

    let started = std::time::Instant::now();
    let mut tx = TenantTx::begin(&pool, a, as_user(&alice)).await.unwrap();
    let result = tx.documents().list(DocumentFilter::default(), PageLimit::default(), None).await;
    let error = result.expect_err("the table is locked");
    assert_eq!(error.sqlstate().as_deref(), Some("55P03"), "lock_not_available: {error:?}");
    let waited = started.elapsed();
    assert!(waited >= std::time::Duration::from_secs(4), "{waited:?}");
    drop(tx);
    lock.rollback().await.unwrap();
    // Nothing was audited for the failed read.
    assert_eq!(crate::fixtures::audit_count(&db, a, AuditAction::DocumentListed.as_str()).await, 0);
}

// ---------------------------------------------------------------------------------------------
// Every document: the tests it names exist
// ---------------------------------------------------------------------------------------------

fn rust_files(dir: &std::path::Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            if path.file_name().is_some_and(|n| n != "target") {
                rust_files(&path, out);
            }
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn every_test_the_documents_name_exists() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let mut files = Vec::new();
    rust_files(&root.join("crates"), &mut files);
    let sources: Vec<(String, String)> =
        files.iter().map(|p| (p.to_string_lossy().replace('\\', "/"), std::fs::read_to_string(p).unwrap())).collect();
    let documents = [
        "DATABASE_SCHEMA.md",
        "RLS_PATTERNS.md",
        "MODEL_USAGE.md",
        "EXTENSION_POINTS.md",
        "POSTGRESQL_TUNING.md",
        "ERROR_CODES.md",
        "HIPAA_MAPPING.md",
        "ARCHITECTURE.md",
        "THREAT_MODEL.md",
        "PERFORMANCE.md",
    ];
    let mut checked = 0;
    let mut broken = Vec::new();
    for name in documents {
        let text = doc(name);
        // `some/path/file.rs::test_name`
        for (index, _) in text.match_indices(".rs::") {
            let start =
                text[..index].rfind(|c: char| !(c.is_ascii_alphanumeric() || "_/-.".contains(c))).map_or(0, |i| i + 1);
            let end = text[index + 5..]
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .map_or(text.len(), |i| index + 5 + i);
            let file = &text[start..index + 3];
            let test = &text[index + 5..end];
            let suffix = format!("/{file}");
            let found = sources.iter().any(|(path, source)| {
                path.ends_with(&suffix)
                    && (source.contains(&format!("fn {test}(")) || source.contains(&format!("fn {test}<")))
            });
            checked += 1;
            if !found {
                broken.push(format!("{name}: {file}::{test}"));
            }
        }
    }
    assert!(checked > 50, "found only {checked} test references");
    assert!(broken.is_empty(), "the documents name tests that do not exist:\n{}", broken.join("\n"));
}
