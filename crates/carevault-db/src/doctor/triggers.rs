//! The triggers that guard the tables and the functions of ours, compared with the manifest.

use sqlx::{PgPool, Row};

use super::{Check, verdict};
use crate::DbError;
use crate::manifest::{Function, Manifest, Trigger, TriggerType};

/// A trigger on a tenant table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TriggerFacts {
    /// `schema.table`.
    pub table: String,
    /// Its name.
    pub name: String,
    /// `pg_trigger.tgenabled`: `O` (fires), `A` (always), `R` (replica only), `D` (disabled).
    pub enabled: String,
    /// `pg_trigger.tgtype` (row/before/event bits).
    pub tgtype: i16,
    /// The function it runs, `schema.name`.
    pub function: String,
    /// Whether that function belongs to an extension (such triggers are the extension's business).
    pub extension_function: bool,
    /// Whether it fires only sometimes or is told something: a WHEN condition, a column list
    /// (`UPDATE OF ...`) or arguments. None of ours has any.
    pub narrowed: bool,
}

pub(super) async fn trigger_facts(pool: &PgPool, manifest: &Manifest) -> Result<Vec<TriggerFacts>, DbError> {
    let tables: Vec<&str> = manifest.tenant_tables.iter().map(|t| t.name.as_str()).collect();
    let rows = sqlx::query(
        "SELECT t.tgrelid::regclass::text AS relation, \
                quote_ident(rn.nspname) || '.' || quote_ident(r.relname) AS table, \
                quote_ident(t.tgname) AS name, t.tgenabled::text AS enabled, \
                (t.tgqual IS NOT NULL OR t.tgnargs > 0 OR coalesce(array_length(t.tgattr::int2[], 1), 0) > 0) AS narrowed, t.tgtype::int2 AS tgtype, \
                quote_ident(pn.nspname) || '.' || quote_ident(p.proname) AS function, \
                EXISTS (SELECT 1 FROM pg_catalog.pg_depend d WHERE d.classid = 'pg_catalog.pg_proc'::regclass \
                        AND d.objid = p.oid AND d.deptype = 'e') AS extension_function \
         FROM pg_catalog.pg_trigger t \
         JOIN pg_catalog.pg_class r ON r.oid = t.tgrelid JOIN pg_catalog.pg_namespace rn ON rn.oid = r.relnamespace \
         JOIN pg_catalog.pg_proc p ON p.oid = t.tgfoid JOIN pg_catalog.pg_namespace pn ON pn.oid = p.pronamespace \
         WHERE quote_ident(rn.nspname) || '.' || quote_ident(r.relname) = ANY($1) AND NOT t.tgisinternal \
         ORDER BY 2, 3",
    )
    .bind(&tables)
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| TriggerFacts {
            table: r.get("table"),
            name: r.get("name"),
            enabled: r.get("enabled"),
            tgtype: r.get("tgtype"),
            function: r.get("function"),
            extension_function: r.get("extension_function"),
            narrowed: r.get("narrowed"),
        })
        .collect())
}

/// What is wrong with one trigger of the manifest, and the fix.
fn trigger_problem(triggers: &[TriggerFacts], expected: &Trigger) -> Option<(String, String)> {
    let Some(trigger) = triggers.iter().find(|t| t.table == expected.table && t.name == expected.name) else {
        return Some((format!("{} on {} is missing", expected.name, expected.table), expected.create_sql()));
    };
    if TriggerType(trigger.tgtype) != expected.tgtype || trigger.function != expected.function {
        let (when, level) = expected.tgtype.clauses();
        return Some((
            format!("{} on {} is not {when} {level} running {}()", expected.name, expected.table, expected.function),
            expected.create_sql(),
        ));
    }
    if trigger.narrowed {
        return Some((
            format!("{} on {} has a WHEN condition, a column list or arguments", expected.name, expected.table),
            expected.create_sql(),
        ));
    }
    if !matches!(trigger.enabled.as_str(), "O" | "A") {
        let state = if trigger.enabled == "R" { "fires only in replica mode" } else { "is disabled" };
        return Some((
            format!("{} on {} {state}", expected.name, expected.table),
            format!("ALTER TABLE {} ENABLE TRIGGER {};", expected.table, expected.name),
        ));
    }
    None
}

fn judge(name: &'static str, triggers: &[TriggerFacts], expected: &[&Trigger], what: &str) -> Check {
    let (problems, fixes): (Vec<String>, Vec<String>) =
        expected.iter().filter_map(|trigger| trigger_problem(triggers, trigger)).unzip();
    verdict(name, problems.iter().map(|p| format!("{what}: {p}")).collect(), fixes, || {
        let names: Vec<&str> = expected.iter().map(|t| t.name).collect();
        format!("{} enabled", names.join(", "))
    })
}

fn is_truncate_guard(trigger: &Trigger) -> bool {
    trigger.tgtype.0 & TriggerType::TRUNCATE != 0
}

fn is_audit_row_trigger(trigger: &Trigger) -> bool {
    trigger.table == "public.audit_logs" && !is_truncate_guard(trigger)
}

/// The row triggers that make audit rows immutable (`prevent_audit_log_update`,
/// `prevent_audit_log_delete`): present, as the manifest states, enabled.
pub fn evaluate_audit_triggers(triggers: &[TriggerFacts], manifest: &Manifest) -> Check {
    let expected: Vec<&Trigger> = manifest.triggers.iter().filter(|t| is_audit_row_trigger(t)).collect();
    judge("audit_triggers", triggers, &expected, "audit log rows can be changed")
}

/// The statement trigger that refuses TRUNCATE on `audit_logs`: present, as stated, enabled.
pub fn evaluate_truncate_guard(triggers: &[TriggerFacts], manifest: &Manifest) -> Check {
    let expected: Vec<&Trigger> = manifest.triggers.iter().filter(|t| is_truncate_guard(t)).collect();
    judge("audit_truncate_guard", triggers, &expected, "audit_logs can be truncated")
}

/// The other triggers of the manifest (immutable keys, `updated_at`) as stated, and no trigger on
/// a tenant table that the manifest does not state (an extension's aside).
pub fn evaluate_row_triggers(triggers: &[TriggerFacts], manifest: &Manifest) -> Check {
    const NAME: &str = "row_triggers";
    let expected: Vec<&Trigger> =
        manifest.triggers.iter().filter(|t| !is_audit_row_trigger(t) && !is_truncate_guard(t)).collect();
    let mut check = judge(NAME, triggers, &expected, "a row trigger differs");
    let extra: Vec<&TriggerFacts> = triggers
        .iter()
        .filter(|t| !t.extension_function)
        .filter(|t| !manifest.triggers.iter().any(|m| m.table == t.table && m.name == t.name))
        .collect();
    if !extra.is_empty() {
        let message = extra
            .iter()
            .map(|t| {
                format!("trigger {} on {} (running {}()) is not in the security manifest", t.name, t.table, t.function)
            })
            .collect::<Vec<_>>()
            .join("; ");
        let fix =
            extra.iter().map(|t| format!("DROP TRIGGER {} ON {};", t.name, t.table)).collect::<Vec<_>>().join("\n");
        check = match check.fix {
            None => Check::fail(NAME, message, fix),
            Some(fixes) => Check::fail(NAME, format!("{}; {message}", check.message), format!("{fixes}\n{fix}")),
        };
    }
    check
}

/// One function of the manifest as the catalog holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FunctionFacts {
    /// The manifest's signature.
    pub signature: String,
    /// Whether it exists.
    pub exists: bool,
    /// `pg_language.lanname`.
    pub language: String,
    /// `pg_proc.provolatile`.
    pub volatility: String,
    /// `pg_proc.prosecdef`.
    pub security_definer: bool,
    /// `pg_proc.proconfig`, sorted.
    pub config: Vec<String>,
    /// Which of our roles may execute it.
    pub executable_by: Vec<String>,
    /// SHA-256 (hex) of its body (see [`Function::fingerprint`]).
    pub fingerprint: String,
}

pub(super) async fn function_facts(pool: &PgPool, manifest: &Manifest) -> Result<Vec<FunctionFacts>, DbError> {
    let mut facts = Vec::with_capacity(manifest.functions.len());
    for function in &manifest.functions {
        let row = sqlx::query(
            "SELECT l.lanname::text AS language, p.provolatile::text AS volatility, p.prosecdef, \
                    ARRAY(SELECT c FROM unnest(coalesce(p.proconfig, '{}')) AS c ORDER BY 1) AS config, \
                    ARRAY(SELECT r.rolname::text FROM pg_catalog.pg_roles r \
                          WHERE r.rolname = ANY($2) \
                            AND has_function_privilege(r.oid, p.oid, 'EXECUTE') ORDER BY 1) AS executable_by, \
                    encode(sha256(convert_to(coalesce(pg_catalog.pg_get_function_sqlbody(p.oid), p.prosrc), 'UTF8')), \
                           'hex') AS fingerprint \
             FROM pg_catalog.pg_proc p JOIN pg_catalog.pg_language l ON l.oid = p.prolang \
             WHERE p.oid = to_regprocedure($1)",
        )
        .bind(function.signature)
        .bind(crate::manifest::role_names())
        .fetch_optional(pool)
        .await?;
        facts.push(match row {
            None => FunctionFacts {
                signature: function.signature.to_string(),
                exists: false,
                language: String::new(),
                volatility: String::new(),
                security_definer: false,
                config: Vec::new(),
                executable_by: Vec::new(),
                fingerprint: String::new(),
            },
            Some(row) => FunctionFacts {
                signature: function.signature.to_string(),
                exists: true,
                language: row.get("language"),
                volatility: row.get("volatility"),
                security_definer: row.get("prosecdef"),
                config: row.get("config"),
                executable_by: row.get("executable_by"),
                fingerprint: row.get("fingerprint"),
            },
        });
    }
    Ok(facts)
}

/// How `live` differs from `expected`.
fn function_differences(expected: &Function, live: &FunctionFacts) -> Vec<String> {
    let mut wrong = Vec::new();
    if live.language != expected.language {
        wrong.push(format!("is LANGUAGE {} (expected {})", live.language, expected.language));
    }
    if live.volatility != expected.volatility.to_string() {
        wrong.push(format!("has volatility {} (expected {})", live.volatility, expected.volatility));
    }
    if live.security_definer != expected.security_definer {
        wrong.push(if live.security_definer { "is SECURITY DEFINER" } else { "is not SECURITY DEFINER" }.into());
    }
    if live.config != expected.config {
        wrong.push(format!("has settings [{}] (expected [{}])", live.config.join(", "), expected.config.join(", ")));
    }
    if live.executable_by != expected.executable_by {
        wrong.push(format!(
            "is executable by [{}] (expected [{}])",
            live.executable_by.join(", "),
            expected.executable_by.join(", ")
        ));
    }
    if live.fingerprint != expected.fingerprint {
        wrong.push(format!(
            "has a different body (fingerprint {}, expected {})",
            live.fingerprint, expected.fingerprint
        ));
    }
    wrong
}

/// Our functions (the trigger functions and the tenant function of the policies) exist with the
/// attributes, EXECUTE privileges and body the manifest states.
pub fn evaluate_functions(functions: &[FunctionFacts], manifest: &Manifest) -> Check {
    const NAME: &str = "functions";
    let mut problems = Vec::new();
    let mut fixes = Vec::new();
    for expected in &manifest.functions {
        let live = functions.iter().find(|f| f.signature == expected.signature);
        let wrong = match live {
            Some(live) if live.exists => function_differences(expected, live),
            _ => vec!["is missing".to_string()],
        };
        if !wrong.is_empty() {
            problems.push(format!("{} {}", expected.signature, wrong.join(", ")));
            fixes.push(format!(
                "restore {} as the migrations define it (crates/carevault-db/migrations; `carevault migrate status` \
                 shows the applied versions), then REVOKE EXECUTE ON FUNCTION {} FROM PUBLIC;{}",
                expected.signature,
                expected.signature,
                expected
                    .executable_by
                    .iter()
                    .map(|role| format!(" GRANT EXECUTE ON FUNCTION {} TO {role};", expected.signature))
                    .collect::<String>()
            ));
        }
    }
    verdict(NAME, problems, fixes, || {
        format!("the {} functions of the manifest, bodies as fingerprinted", manifest.functions.len())
    })
}
