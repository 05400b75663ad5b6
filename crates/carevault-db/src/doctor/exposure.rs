//! Ways around row-level security: views that run with their owner's rights, and SECURITY
//! DEFINER functions.

use sqlx::PgPool;

use super::{Check, verdict};
use crate::DbError;
use crate::manifest::Manifest;

/// A view or materialized view reading a tenant table (directly or through other views).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ViewFacts {
    /// `schema.view`.
    pub name: String,
    /// `v` (view) or `m` (materialized view).
    pub kind: String,
    /// `pg_class.reloptions`.
    pub options: Vec<String>,
    /// The tenant tables it reads.
    pub reads: Vec<String>,
}

pub(super) async fn view_facts(pool: &PgPool) -> Result<Vec<ViewFacts>, DbError> {
    let rows: Vec<(String, String, Vec<String>, Vec<String>)> = sqlx::query_as(
        "WITH RECURSIVE tenant_tables AS ( \
             SELECT c.oid FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
             WHERE c.relkind IN ('r', 'p') AND n.nspname NOT LIKE 'pg\\_%' AND n.nspname <> 'information_schema' \
               AND ((n.nspname = 'public' AND c.relname = 'tenants') \
                    OR EXISTS (SELECT 1 FROM pg_catalog.pg_attribute a WHERE a.attrelid = c.oid \
                               AND a.attname = 'tenant_id' AND a.attnum > 0 AND NOT a.attisdropped))), \
         readers (reader, tenant_table) AS ( \
             SELECT rw.ev_class, d.refobjid FROM pg_catalog.pg_depend d \
             JOIN pg_catalog.pg_rewrite rw ON rw.oid = d.objid \
             WHERE d.classid = 'pg_catalog.pg_rewrite'::regclass AND d.refclassid = 'pg_catalog.pg_class'::regclass \
               AND d.refobjid IN (SELECT oid FROM tenant_tables) AND rw.ev_class <> d.refobjid \
             UNION \
             SELECT rw.ev_class, r.tenant_table FROM readers r \
             JOIN pg_catalog.pg_depend d ON d.refobjid = r.reader \
                  AND d.refclassid = 'pg_catalog.pg_class'::regclass AND d.classid = 'pg_catalog.pg_rewrite'::regclass \
             JOIN pg_catalog.pg_rewrite rw ON rw.oid = d.objid \
             WHERE rw.ev_class <> r.reader) \
         SELECT quote_ident(n.nspname) || '.' || quote_ident(v.relname), v.relkind::text, \
                coalesce(v.reloptions, '{}')::text[], \
                array_agg(DISTINCT quote_ident(tn.nspname) || '.' || quote_ident(t.relname)) \
         FROM readers r JOIN pg_catalog.pg_class v ON v.oid = r.reader \
         JOIN pg_catalog.pg_namespace n ON n.oid = v.relnamespace \
         JOIN pg_catalog.pg_class t ON t.oid = r.tenant_table JOIN pg_catalog.pg_namespace tn ON tn.oid = t.relnamespace \
         WHERE v.relkind IN ('v', 'm') \
         GROUP BY 1, 2, 3 ORDER BY 1",
    )
    .fetch_all(pool)
    .await?;
    Ok(rows.into_iter().map(|(name, kind, options, reads)| ViewFacts { name, kind, options, reads }).collect())
}

fn security_invoker(options: &[String]) -> bool {
    options.iter().any(|o| match o.split_once('=') {
        Some((key, value)) => {
            key.eq_ignore_ascii_case("security_invoker")
                && matches!(value.to_ascii_lowercase().as_str(), "true" | "on" | "yes" | "1" | "t" | "y")
        }
        None => o.eq_ignore_ascii_case("security_invoker"),
    })
}

/// A rewrite rule on a tenant table (a view's own `_RETURN` rule aside).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleFacts {
    /// `schema.table`.
    pub table: String,
    /// The rule's name.
    pub name: String,
}

pub(super) async fn rule_facts(pool: &PgPool) -> Result<Vec<RuleFacts>, DbError> {
    let rows: Vec<(String, String)> = sqlx::query_as(
        "SELECT quote_ident(n.nspname) || '.' || quote_ident(c.relname), quote_ident(r.rulename) \
         FROM pg_catalog.pg_rewrite r JOIN pg_catalog.pg_class c ON c.oid = r.ev_class \
         JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
         WHERE c.relkind IN ('r', 'p') AND n.nspname NOT LIKE 'pg\\_%' AND n.nspname <> 'information_schema' \
         ORDER BY 1, 2",
    )
    .fetch_all(pool)
    .await?;
    Ok(rows.into_iter().map(|(table, name)| RuleFacts { table, name }).collect())
}

/// No view over a tenant table runs with its owner's rights (a view without `security_invoker`
/// reads the table as its owner, whom FORCE RLS does not stop if it is a superuser, and whose
/// policies are not the caller's), and no materialized view copies tenant rows out of RLS.
///
/// No table has a rewrite rule either: an `INSTEAD` rule can turn an audit insert into nothing
/// while the statement still reports success, or send rows elsewhere. carevault defines none.
pub fn evaluate_views(views: &[ViewFacts], rules: &[RuleFacts]) -> Check {
    const NAME: &str = "views";
    let mut problems = Vec::new();
    let mut fixes = Vec::new();
    for rule in rules {
        problems.push(format!("rule {} on {} rewrites its statements", rule.name, rule.table));
        fixes.push(format!("DROP RULE {} ON {};", rule.name, rule.table));
    }
    for view in views {
        if view.kind == "m" {
            problems.push(format!(
                "materialized view {} copies rows of {} outside row-level security",
                view.name,
                view.reads.join(", ")
            ));
            fixes.push(format!("DROP MATERIALIZED VIEW {};", view.name));
        } else if !security_invoker(&view.options) {
            problems.push(format!("view {} reads {} without security_invoker", view.name, view.reads.join(", ")));
            fixes.push(format!("ALTER VIEW {} SET (security_invoker = true);", view.name));
        }
    }
    verdict(NAME, problems, fixes, || {
        format!("{} view(s) over tenant tables, all security_invoker; no rules", views.len())
    })
}

/// A SECURITY DEFINER function of our schemas (not a system schema's, not an extension's).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecurityDefinerFacts {
    /// `schema.name(argument types)`.
    pub function: String,
    /// Which carevault roles may execute it (directly, through PUBLIC or membership).
    pub executable_by: Vec<String>,
}

pub(super) async fn security_definer_facts(pool: &PgPool) -> Result<Vec<SecurityDefinerFacts>, DbError> {
    let rows: Vec<(String, Vec<String>)> = sqlx::query_as(
        "SELECT quote_ident(n.nspname) || '.' || quote_ident(p.proname) \
                    || '(' || pg_catalog.pg_get_function_identity_arguments(p.oid) || ')', \
                ARRAY(SELECT r.rolname::text FROM pg_catalog.pg_roles r \
                      WHERE r.rolname = ANY($1) \
                        AND has_function_privilege(r.oid, p.oid, 'EXECUTE') ORDER BY 1) \
         FROM pg_catalog.pg_proc p JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace \
         WHERE p.prosecdef AND n.nspname NOT LIKE 'pg\\_%' AND n.nspname <> 'information_schema' \
           AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_depend d WHERE d.classid = 'pg_catalog.pg_proc'::regclass \
                           AND d.objid = p.oid AND d.deptype = 'e') \
         ORDER BY 1",
    )
    .bind(crate::manifest::role_names())
    .fetch_all(pool)
    .await?;
    Ok(rows.into_iter().map(|(function, executable_by)| SecurityDefinerFacts { function, executable_by }).collect())
}

/// No SECURITY DEFINER function the carevault roles can execute, except the manifest's (the verifier of the tenant context).
/// Functions that extensions own are theirs to answer for, and are not listed.
pub fn evaluate_security_definer(functions: &[SecurityDefinerFacts], manifest: &Manifest) -> Check {
    const NAME: &str = "security_definer_functions";
    let exposed: Vec<&SecurityDefinerFacts> = functions
        .iter()
        .filter(|f| !f.executable_by.is_empty() && !manifest.security_definer_functions.contains(&f.function.as_str()))
        .collect();
    if exposed.is_empty() {
        return Check::pass(NAME, "no SECURITY DEFINER function the runtime roles can execute");
    }
    let message = exposed
        .iter()
        .map(|f| format!("{} (executable by {})", f.function, f.executable_by.join(", ")))
        .collect::<Vec<_>>()
        .join("; ");
    let fixes = exposed
        .iter()
        .map(|f| {
            format!(
                "REVOKE EXECUTE ON FUNCTION {} FROM PUBLIC, {};  -- or ALTER FUNCTION {} SECURITY INVOKER;",
                f.function,
                f.executable_by.join(", "),
                f.function
            )
        })
        .collect::<Vec<_>>()
        .join("\n");
    Check::fail(NAME, format!("SECURITY DEFINER functions run with their owner's rights: {message}"), fixes)
}

#[cfg(test)]
mod tests {
    use super::security_invoker;

    #[test]
    fn security_invoker_options() {
        assert!(security_invoker(&["security_invoker=true".into()]));
        assert!(security_invoker(&["security_barrier=true".into(), "security_invoker=on".into()]));
        assert!(!security_invoker(&["security_invoker=false".into()]));
        assert!(!security_invoker(&[]));
    }
}
