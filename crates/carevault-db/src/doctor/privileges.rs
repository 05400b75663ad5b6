//! What our roles may do in this database, compared with the manifest's grants.

use sqlx::PgPool;

use super::{Check, verdict};
use crate::DbError;
use crate::manifest::{Manifest, Privilege, Scope};

/// One privilege one of our roles holds on one relation (directly, through PUBLIC, or on columns).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct HeldPrivilege {
    /// The role.
    pub role: String,
    /// `schema.relation`.
    pub relation: String,
    /// The privilege.
    pub privilege: Privilege,
    /// The whole table, or the columns it covers.
    pub scope: Scope,
}

/// What the four carevault roles may do in this database.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PrivilegeFacts {
    /// Every relation privilege held, sorted.
    pub held: Vec<HeldPrivilege>,
    /// (role, schema) where the role may CREATE.
    pub schema_create: Vec<(String, String)>,
    /// Roles that may CREATE schemas in this database.
    pub database_create: Vec<String>,
    /// This database's name (for the fix).
    pub database: String,
}

pub(super) async fn privilege_facts(pool: &PgPool, version_num: i32) -> Result<PrivilegeFacts, DbError> {
    // MAINTAIN (VACUUM, REINDEX, LOCK, ...) exists from PostgreSQL 17; naming it before errs.
    let privileges = Privilege::ALL
        .iter()
        .filter(|p| version_num >= 170000 || **p != Privilege::Maintain)
        .map(|p| format!("'{p}'"))
        .collect::<Vec<_>>()
        .join(", ");
    let rows: Vec<(String, String, String, bool, Vec<String>)> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT r.rolname::text, quote_ident(n.nspname) || '.' || quote_ident(c.relname), p, \
                has_table_privilege(r.oid, c.oid, p), \
                ARRAY(SELECT a.attname::text FROM pg_catalog.pg_attribute a \
                      WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped \
                        AND p IN ('SELECT', 'INSERT', 'UPDATE', 'REFERENCES') \
                        AND has_column_privilege(r.oid, c.oid, a.attnum, p) \
                      ORDER BY a.attname::text COLLATE \"C\") \
         FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
         CROSS JOIN pg_catalog.pg_roles r CROSS JOIN unnest(ARRAY[{privileges}]) AS p \
         WHERE n.nspname NOT LIKE 'pg\\_%' AND n.nspname <> 'information_schema' \
           AND c.relkind IN ('r', 'p', 'v', 'm', 'f') AND r.rolname = ANY($1) \
           AND (has_table_privilege(r.oid, c.oid, p) \
                OR (p IN ('SELECT', 'INSERT', 'UPDATE', 'REFERENCES') AND has_any_column_privilege(r.oid, c.oid, p)))"
    )))
    .bind(crate::manifest::role_names())
    .fetch_all(pool)
    .await?;
    let mut held: Vec<HeldPrivilege> = rows
        .into_iter()
        .filter_map(|(role, relation, privilege, whole, columns)| {
            Some(HeldPrivilege {
                role,
                relation,
                privilege: Privilege::parse(&privilege)?,
                scope: if whole { Scope::Table } else { Scope::Columns(columns) },
            })
        })
        .collect();
    held.sort();
    let schema_create: Vec<(String, String)> = sqlx::query_as(
        "SELECT r.rolname::text, quote_ident(n.nspname) FROM pg_catalog.pg_namespace n CROSS JOIN pg_catalog.pg_roles r \
         WHERE r.rolname = ANY($1) AND n.nspname NOT LIKE 'pg\\_%' AND n.nspname <> 'information_schema' \
           AND has_schema_privilege(r.oid, n.oid, 'CREATE') ORDER BY 1, 2",
    )
    .bind(crate::manifest::role_names())
    .fetch_all(pool)
    .await?;
    let database_create: Vec<String> = sqlx::query_scalar(
        "SELECT r.rolname::text FROM pg_catalog.pg_roles r \
         WHERE r.rolname = ANY($1) AND has_database_privilege(r.oid, current_database(), 'CREATE') ORDER BY 1",
    )
    .bind(crate::manifest::role_names())
    .fetch_all(pool)
    .await?;
    let database: String = sqlx::query_scalar("SELECT quote_ident(current_database())").fetch_one(pool).await?;
    Ok(PrivilegeFacts { held, schema_create, database_create, database })
}

/// Columns in `left` and not in `right`.
fn columns_not_in<'a>(left: &'a Scope, right: &Scope) -> Vec<&'a str> {
    match (left, right) {
        (Scope::Columns(left), Scope::Columns(right)) => {
            left.iter().filter(|c| !right.contains(c)).map(String::as_str).collect()
        }
        _ => Vec::new(),
    }
}

/// The four roles hold exactly the manifest's grants, table by table and column by column:
/// nothing more (no DELETE, TRUNCATE, REFERENCES, TRIGGER, no CREATE on a schema or the database,
/// no INSERT of audit ids or timestamps), nothing less.
pub fn evaluate_privileges(facts: &PrivilegeFacts, manifest: &Manifest) -> Check {
    const NAME: &str = "privileges";
    let mut problems = Vec::new();
    let mut fixes = Vec::new();
    let find = |role: &str, relation: &str, privilege: Privilege| {
        manifest.grants.iter().find(|g| g.role == role && g.relation == relation && g.privilege == privilege)
    };
    for held in &facts.held {
        let (role, relation, privilege) = (&held.role, &held.relation, held.privilege);
        match find(role, relation, privilege) {
            None => {
                problems.push(format!("{role} has {privilege} on {relation}"));
                fixes.push(format!("REVOKE {privilege} ON {relation} FROM {role}, PUBLIC;"));
            }
            Some(grant) if grant.scope != held.scope => {
                let mut wrong = Vec::new();
                match (&held.scope, &grant.scope) {
                    (Scope::Table, _) => wrong.push(format!("{role} has {privilege} on all of {relation}")),
                    (_, Scope::Table) => {
                        wrong.push(format!("{role} has {privilege} on only some columns of {relation}"))
                    }
                    _ => {}
                }
                for column in columns_not_in(&held.scope, &grant.scope) {
                    wrong
                        .push(format!("{role} may {privilege} {relation}.{column}, which the manifest does not grant"));
                }
                for column in columns_not_in(&grant.scope, &held.scope) {
                    wrong.push(format!("{role} lacks {privilege} on {relation}.{column}"));
                }
                problems.push(wrong.join(", "));
                fixes.push(format!("REVOKE {privilege} ON {relation} FROM {role}, PUBLIC; {}", grant.grant_sql()));
            }
            Some(_) => {}
        }
    }
    for grant in &manifest.grants {
        if !facts
            .held
            .iter()
            .any(|h| h.role == grant.role && h.relation == grant.relation && h.privilege == grant.privilege)
        {
            problems.push(format!("{} lacks {} on {}", grant.role, grant.privilege, grant.relation));
            fixes.push(grant.grant_sql());
        }
    }
    for (role, schema) in &facts.schema_create {
        problems.push(format!("{role} may CREATE in schema {schema}"));
        fixes.push(format!("REVOKE CREATE ON SCHEMA {schema} FROM {role}, PUBLIC;"));
    }
    for role in &facts.database_create {
        problems.push(format!("{role} may CREATE schemas in this database"));
        fixes.push(format!("REVOKE CREATE ON DATABASE {} FROM {role}, PUBLIC;", facts.database));
    }
    verdict(NAME, problems, fixes, || {
        format!("exactly the {} privileges of the manifest, no DDL", manifest.grants.len())
    })
}
