//! Row-level security, the policies and the tenant guard, compared with the manifest.

use sqlx::{PgConnection, PgPool, Row};

use super::{Check, verdict};
use crate::DbError;
use crate::manifest::{Command, Manifest, Policy};

/// A policy, as the catalog holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyFacts {
    /// Its name.
    pub name: String,
    /// PERMISSIVE (true) or RESTRICTIVE.
    pub permissive: bool,
    /// FOR ...; `None` for a command this version does not know.
    pub command: Option<Command>,
    /// The roles it applies to, sorted (`public` for PUBLIC).
    pub roles: Vec<String>,
    /// USING, as `pg_get_expr` writes it.
    pub using: Option<String>,
    /// WITH CHECK, as `pg_get_expr` writes it.
    pub with_check: Option<String>,
}

/// A tenant table: one of the manifest's, or any other table with a `tenant_id` column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TenantTableFacts {
    /// `schema.table` (quoted where needed).
    pub name: String,
    /// The type of its tenant column (`id` of `tenants`, `tenant_id` elsewhere), as `format_type`
    /// writes it with an empty `search_path`: `uuid`, or a schema-qualified domain or type, whose
    /// `=` operator could be anything.
    pub tenant_column_type: Option<String>,
    /// ENABLE ROW LEVEL SECURITY.
    pub rls_enabled: bool,
    /// FORCE ROW LEVEL SECURITY.
    pub rls_forced: bool,
    /// Its policies.
    pub policies: Vec<PolicyFacts>,
}

/// Names and expressions are read with an empty `search_path` (see [`deparsed_manifest_policies`]):
/// `pg_get_expr` then qualifies every function, operator and type outside `pg_catalog`.
const EMPTY_SEARCH_PATH: &str = "SELECT pg_catalog.set_config('search_path', '', true)";

const POLICIES: &str = "SELECT quote_ident(p.polname) AS name, p.polpermissive AS permissive, p.polcmd::text AS command, \
            ARRAY(SELECT CASE WHEN r = 0 THEN 'public' ELSE r::regrole::text END \
                  FROM unnest(p.polroles) AS r ORDER BY 1) AS roles, \
            pg_catalog.pg_get_expr(p.polqual, p.polrelid) AS using, \
            pg_catalog.pg_get_expr(p.polwithcheck, p.polrelid) AS with_check \
     FROM pg_catalog.pg_policy p WHERE p.polrelid = $1::regclass ORDER BY 1";

async fn policies_of(conn: &mut PgConnection, table: &str) -> Result<Vec<PolicyFacts>, DbError> {
    Ok(sqlx::query(POLICIES)
        .bind(table)
        .fetch_all(conn)
        .await?
        .into_iter()
        .map(|p| PolicyFacts {
            name: p.get("name"),
            permissive: p.get("permissive"),
            command: Command::from_polcmd(p.get::<String, _>("command").as_str()),
            roles: p.get("roles"),
            using: p.get("using"),
            with_check: p.get("with_check"),
        })
        .collect())
}

pub(super) async fn tenant_table_facts(pool: &PgPool, manifest: &Manifest) -> Result<Vec<TenantTableFacts>, DbError> {
    let names: Vec<String> = manifest.tenant_tables.iter().map(|t| t.name.clone()).collect();
    let mut tx = pool.begin().await?;
    sqlx::query(EMPTY_SEARCH_PATH).execute(&mut *tx).await?;
    let rows = sqlx::query(
        "SELECT quote_ident(n.nspname) || '.' || quote_ident(c.relname) AS name, \
                c.relrowsecurity, c.relforcerowsecurity, \
                (SELECT format_type(a.atttypid, a.atttypmod) FROM pg_catalog.pg_attribute a \
                 WHERE a.attrelid = c.oid AND NOT a.attisdropped \
                   AND a.attname = CASE WHEN c.relname = 'tenants' AND n.nspname = 'public' THEN 'id' \
                                        ELSE 'tenant_id' END) AS tenant_column_type \
         FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
         WHERE c.relkind IN ('r', 'p') AND n.nspname NOT LIKE 'pg\\_%' AND n.nspname <> 'information_schema' \
           AND (quote_ident(n.nspname) || '.' || quote_ident(c.relname) = ANY($1) \
                OR EXISTS (SELECT 1 FROM pg_catalog.pg_attribute a WHERE a.attrelid = c.oid \
                           AND a.attname = 'tenant_id' AND a.attnum > 0 AND NOT a.attisdropped)) \
         ORDER BY 1",
    )
    .bind(&names)
    .fetch_all(&mut *tx)
    .await?;
    let mut tables = Vec::with_capacity(rows.len());
    for row in rows {
        let name: String = row.get("name");
        tables.push(TenantTableFacts {
            policies: policies_of(&mut tx, &name).await?,
            name,
            tenant_column_type: row.get("tenant_column_type"),
            rls_enabled: row.get("relrowsecurity"),
            rls_forced: row.get("relforcerowsecurity"),
        });
    }
    tx.rollback().await?;
    Ok(tables)
}

/// The manifest's policies with USING and WITH CHECK as this server deparses them: each is
/// created on a temporary copy of its table's columns and read back with `pg_get_expr`, in a
/// transaction that is rolled back. Comparing texts the same server printed is exact where
/// comparing with hand-written SQL is not (`pg_get_expr` adds casts and parentheses, and its
/// output differs between PostgreSQL versions). Policies of tables that do not exist are kept as
/// written (the checks report the table missing).
///
/// Both sides are printed with an empty `search_path` (only `pg_catalog`), so every function,
/// operator and type outside it is printed with its schema: a policy that calls a
/// `carevault_current_tenant()` of another schema, or compares through an `=` operator of a domain
/// someone put on the tenant column, prints differently from the manifest's.
pub(super) async fn deparsed_manifest_policies(pool: &PgPool, manifest: &Manifest) -> Result<Vec<Policy>, DbError> {
    let mut tx = pool.begin().await?;
    sqlx::query(EMPTY_SEARCH_PATH).execute(&mut *tx).await?;
    let mut deparsed = Vec::with_capacity(manifest.policies.len());
    for (index, table) in manifest.tenant_tables.iter().enumerate() {
        let columns: Option<String> = sqlx::query_scalar(
            "SELECT string_agg(quote_ident(attname) || ' ' || format_type(atttypid, atttypmod), ', ' ORDER BY attnum) \
             FROM pg_catalog.pg_attribute WHERE attrelid = pg_catalog.to_regclass($1) AND attnum > 0 \
               AND NOT attisdropped",
        )
        .bind(&table.name)
        .fetch_one(&mut *tx)
        .await?;
        let policies = manifest.policies.iter().filter(|p| p.table == table.name);
        let Some(columns) = columns else {
            deparsed.extend(policies.cloned());
            continue;
        };
        let copy = format!("pg_temp.carevault_manifest_{index}");
        // One statement through the extended protocol: nothing read from the catalog can stack
        // another.
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE TEMPORARY TABLE {copy} ({columns})")))
            .execute(&mut *tx)
            .await?;
        for policy in policies {
            // Roles are compared on their own; PUBLIC keeps this independent of which exist.
            let mut create =
                format!("CREATE POLICY {} ON {copy} FOR {}", quote_ident(&policy.name), policy.command.as_str());
            if let Some(using) = &policy.using {
                create.push_str(&format!(" USING ({using})"));
            }
            if let Some(check) = &policy.with_check {
                create.push_str(&format!(" WITH CHECK ({check})"));
            }
            sqlx::query(sqlx::AssertSqlSafe(create)).execute(&mut *tx).await?;
            let (using, with_check): (Option<String>, Option<String>) = sqlx::query_as(
                "SELECT pg_catalog.pg_get_expr(polqual, polrelid), pg_catalog.pg_get_expr(polwithcheck, polrelid) \
                 FROM pg_catalog.pg_policy WHERE polrelid = $1::regclass AND polname = $2",
            )
            .bind(&copy)
            .bind(&policy.name)
            .fetch_one(&mut *tx)
            .await?;
            deparsed.push(Policy { using, with_check, ..policy.clone() });
        }
    }
    tx.rollback().await?;
    Ok(deparsed)
}

/// `name` as an identifier in SQL: quoted unless it is a plain lower-case name.
fn quote_ident(name: &str) -> String {
    let plain = name.chars().next().is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if plain { name.to_string() } else { format!("\"{}\"", name.replace('"', "\"\"")) }
}

fn missing_tables<'m>(tables: &[TenantTableFacts], manifest: &'m Manifest) -> Vec<&'m str> {
    manifest
        .tenant_tables
        .iter()
        .map(|t| t.name.as_str())
        .filter(|name| !tables.iter().any(|f| f.name == *name))
        .collect()
}

fn tables_missing(name: &'static str, missing: &[&str]) -> Check {
    Check::fail(name, format!("tables missing: {}", missing.join(", ")), "carevault migrate up")
}

/// Every tenant table is in the manifest and has row-level security enabled and forced (without
/// FORCE the owner bypasses every policy).
pub fn evaluate_row_level_security(tables: &[TenantTableFacts], manifest: &Manifest) -> Check {
    const NAME: &str = "row_level_security";
    let missing = missing_tables(tables, manifest);
    if !missing.is_empty() {
        return tables_missing(NAME, &missing);
    }
    let mut problems = Vec::new();
    let mut fixes = Vec::new();
    for table in tables {
        if manifest.tenant_table(&table.name).is_none() {
            problems.push(format!("{} has a tenant_id column but is not in the security manifest", table.name));
            fixes.push(format!(
                "add {} to the manifest with Manifest::with_tenant_table and give it the policies it states \
                 (docs/EXTENSION_POINTS.md)",
                table.name
            ));
        }
        if table.tenant_column_type.as_deref() != Some("uuid") {
            let found = table.tenant_column_type.as_deref().unwrap_or("missing");
            problems.push(format!(
                "{}'s tenant column is of type {found}, not uuid: a domain or type of its own brings its own = \
                 operator to every policy and query",
                table.name
            ));
            fixes.push(format!(
                "restore the column's type from the migrations (ALTER TABLE {} ALTER COLUMN ... TYPE uuid)",
                table.name
            ));
        }
        if !table.rls_enabled {
            problems.push(format!("{} has row-level security disabled", table.name));
            fixes.push(format!("ALTER TABLE {} ENABLE ROW LEVEL SECURITY;", table.name));
        }
        if !table.rls_forced {
            problems.push(format!("{} does not FORCE row-level security", table.name));
            fixes.push(format!("ALTER TABLE {} FORCE ROW LEVEL SECURITY;", table.name));
        }
    }
    verdict(NAME, problems, fixes, || {
        let names: Vec<&str> = tables.iter().map(|t| t.name.as_str()).collect();
        format!("enabled and forced on {}", names.join(", "))
    })
}

/// How `live` differs from `expected` (deparsed), if it does.
fn difference(expected: &Policy, live: &PolicyFacts) -> Option<String> {
    let mut wrong = Vec::new();
    if live.permissive != expected.permissive {
        wrong.push(if live.permissive { "is PERMISSIVE (expected RESTRICTIVE)" } else { "is RESTRICTIVE" }.to_string());
    }
    if live.command != Some(expected.command) {
        let command = live.command.map_or("an unknown command", Command::as_str);
        wrong.push(format!("is FOR {command} (expected {})", expected.command.as_str()));
    }
    if live.roles != expected.roles {
        wrong.push(format!("applies to {} (expected {})", live.roles.join(", "), expected.roles.join(", ")));
    }
    for (clause, live, expected) in
        [("USING", &live.using, &expected.using), ("WITH CHECK", &live.with_check, &expected.with_check)]
    {
        if live != expected {
            wrong.push(format!(
                "has {clause} {} (expected {})",
                live.as_deref().map_or("none".to_string(), |e| format!("({e})")),
                expected.as_deref().map_or("none".to_string(), |e| format!("({e})")),
            ));
        }
    }
    (!wrong.is_empty()).then(|| wrong.join(", "))
}

/// Compares the live policies of kind `permissive` with the manifest's: each exists exactly as
/// stated, and no other policy of that kind exists on a tenant table.
fn compare(
    name: &'static str,
    permissive: bool,
    tables: &[TenantTableFacts],
    expected: &[Policy],
    manifest: &Manifest,
) -> Check {
    let missing = missing_tables(tables, manifest);
    if !missing.is_empty() {
        return tables_missing(name, &missing);
    }
    let mut problems = Vec::new();
    let mut fixes = Vec::new();
    let stated = |table: &str, policy: &str| manifest.policies.iter().find(|p| p.table == table && p.name == policy);
    for expected in expected.iter().filter(|p| p.permissive == permissive) {
        let live = tables
            .iter()
            .find(|t| t.name == expected.table)
            .and_then(|t| t.policies.iter().find(|p| p.name == expected.name));
        let problem = match live {
            None => Some(format!("{} on {} is missing", expected.name, expected.table)),
            Some(live) => {
                difference(expected, live).map(|why| format!("{} on {} {why}", expected.name, expected.table))
            }
        };
        if let Some(problem) = problem {
            problems.push(problem);
            fixes.push(stated(&expected.table, &expected.name).unwrap_or(expected).create_sql());
        }
    }
    for table in tables {
        for policy in table.policies.iter().filter(|p| p.permissive == permissive) {
            if stated(&table.name, &policy.name).is_none() {
                problems.push(format!(
                    "{} policy {} on {} is not in the security manifest",
                    if permissive { "permissive" } else { "restrictive" },
                    policy.name,
                    table.name
                ));
                fixes.push(format!("DROP POLICY {} ON {};", policy.name, table.name));
            }
        }
    }
    verdict(name, problems, fixes, || {
        let count = expected.iter().filter(|p| p.permissive == permissive).count();
        format!(
            "the {count} {} policies of the manifest, exactly",
            if permissive { "permissive" } else { "restrictive" }
        )
    })
}

/// The permissive policies are exactly the manifest's: names, commands, roles, and USING and
/// WITH CHECK as this server deparses them; no other permissive policy on a tenant table.
pub fn evaluate_policies(tables: &[TenantTableFacts], expected: &[Policy], manifest: &Manifest) -> Check {
    compare("policies", true, tables, expected, manifest)
}

/// The restrictive policies (`tenant_guard` on every tenant table) are exactly the manifest's:
/// AND-ed with every permissive policy, they stop a permissive policy added later from widening a
/// tenant's access.
pub fn evaluate_tenant_guard(tables: &[TenantTableFacts], expected: &[Policy], manifest: &Manifest) -> Check {
    compare("tenant_guard", false, tables, expected, manifest)
}
