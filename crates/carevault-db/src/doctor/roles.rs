//! The roles, the pools' logins and the defaults stored for the roles.

use sqlx::{PgPool, Row};

use super::{Check, DoctorContext, verdict};
use crate::DbError;
use crate::manifest::{API_LOGIN, APP_ROLE, Manifest, OPS_LOGIN, PLATFORM_ROLE};

/// Attributes of one carevault role.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoleFacts {
    /// A name of [`crate::manifest::ROLES`].
    pub name: String,
    /// SUPERUSER.
    pub superuser: bool,
    /// BYPASSRLS.
    pub bypass_rls: bool,
    /// LOGIN.
    pub can_login: bool,
    /// CREATEROLE.
    pub create_role: bool,
    /// CREATEDB.
    pub create_db: bool,
    /// REPLICATION.
    pub replication: bool,
    /// INHERIT.
    pub inherit: bool,
    /// What it owns in this database or cluster-wide (temporary tables excluded).
    pub owns: Vec<String>,
    /// The roles it is a member of.
    pub member_of: Vec<String>,
    /// The roles that are members of it (`quote_ident`-ed).
    pub members: Vec<String>,
}

pub(super) async fn role_facts(pool: &PgPool) -> Result<Vec<RoleFacts>, DbError> {
    let rows = sqlx::query(
        "SELECT r.rolname::text AS name, r.rolsuper, r.rolbypassrls, r.rolcanlogin, r.rolcreaterole, r.rolcreatedb, \
                r.rolreplication, r.rolinherit, \
                ARRAY(SELECT coalesce(pg_catalog.pg_describe_object(d.classid, d.objid, d.objsubid), 'an object') \
                      FROM pg_catalog.pg_shdepend d \
                      WHERE d.refclassid = 'pg_catalog.pg_authid'::regclass AND d.refobjid = r.oid \
                        AND d.deptype = 'o' \
                        AND (d.dbid = 0 OR d.dbid = (SELECT oid FROM pg_catalog.pg_database \
                                                     WHERE datname = current_database())) \
                        AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_class c \
                                        WHERE d.classid = 'pg_catalog.pg_class'::regclass AND c.oid = d.objid \
                                          AND c.relpersistence = 't') \
                        AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_type t \
                                        JOIN pg_catalog.pg_namespace n ON n.oid = t.typnamespace \
                                        WHERE d.classid = 'pg_catalog.pg_type'::regclass AND t.oid = d.objid \
                                          AND (n.nspname LIKE 'pg\\_temp\\_%' OR n.nspname LIKE 'pg\\_toast\\_temp\\_%')) \
                      ORDER BY 1) AS owns, \
                ARRAY(SELECT g.rolname::text FROM pg_catalog.pg_auth_members m \
                      JOIN pg_catalog.pg_roles g ON g.oid = m.roleid WHERE m.member = r.oid ORDER BY 1) AS member_of, \
                ARRAY(SELECT quote_ident(g.rolname) FROM pg_catalog.pg_auth_members m \
                      JOIN pg_catalog.pg_roles g ON g.oid = m.member WHERE m.roleid = r.oid ORDER BY 1) AS members \
         FROM pg_catalog.pg_roles r \
         WHERE r.rolname = ANY($1) \
         ORDER BY 1",
    )
    .bind(crate::manifest::role_names())
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| RoleFacts {
            name: r.get("name"),
            superuser: r.get("rolsuper"),
            bypass_rls: r.get("rolbypassrls"),
            can_login: r.get("rolcanlogin"),
            create_role: r.get("rolcreaterole"),
            create_db: r.get("rolcreatedb"),
            replication: r.get("rolreplication"),
            inherit: r.get("rolinherit"),
            owns: r.get("owns"),
            member_of: r.get("member_of"),
            members: r.get("members"),
        })
        .collect())
}

/// The runtime roles exist, are NOLOGIN NOSUPERUSER NOBYPASSRLS (and the rest of the bootstrap's
/// attributes), own nothing and are members of nothing; the login roles, when they exist, are
/// the same except LOGIN and a membership of exactly their runtime role.
///
/// `owner` names the role to hand owned objects to in the fix.
pub fn evaluate_runtime_roles(roles: &[RoleFacts], owner: &str, manifest: &Manifest) -> Check {
    const NAME: &str = "runtime_roles";
    let mut problems = Vec::new();
    let mut fixes = Vec::new();
    for designed in &manifest.roles {
        let (name, login, runtime) = (designed.name, designed.login, designed.member_of);
        let Some(role) = roles.iter().find(|r| r.name == name) else {
            if !login {
                problems.push(format!("{name} does not exist"));
                fixes.push(
                    "carevault migrate up as a superuser (or `carevault migrate bootstrap-sql` for a DBA)".into(),
                );
            }
            // A missing login role is the login_roles check's business.
            continue;
        };
        let mut wrong = Vec::new();
        for (bad, attribute) in [
            (role.superuser, "SUPERUSER"),
            (role.bypass_rls, "BYPASSRLS"),
            (role.can_login != login, if login { "NOLOGIN" } else { "LOGIN" }),
            (role.create_role, "CREATEROLE"),
            (role.create_db, "CREATEDB"),
            (role.replication, "REPLICATION"),
            (role.inherit, "INHERIT"),
        ] {
            if bad {
                wrong.push(attribute);
            }
        }
        if !wrong.is_empty() {
            problems.push(format!("{name} is {}", wrong.join(" ")));
            fixes.push(format!(
                "ALTER ROLE {name} {} NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE NOREPLICATION NOINHERIT;",
                if login { "LOGIN" } else { "NOLOGIN" }
            ));
        }
        if !role.owns.is_empty() {
            problems.push(format!("{name} owns {}", role.owns.join(", ")));
            fixes.push(format!("REASSIGN OWNED BY {name} TO {owner};  -- in each database where it owns something"));
        }
        let extra: Vec<&String> = role.member_of.iter().filter(|m| !runtime.contains(&m.as_str())).collect();
        if !extra.is_empty() {
            let list: Vec<&str> = extra.iter().map(|m| m.as_str()).collect();
            problems.push(format!("{name} is a member of {}", list.join(", ")));
            fixes.push(format!("REVOKE {} FROM {name};", list.join(", ")));
        }
        // Whoever is a member of a runtime role can switch to it: only its login role may be.
        let logins: Vec<&str> = manifest.roles.iter().filter(|r| r.member_of.contains(&name)).map(|r| r.name).collect();
        for member in role.members.iter().filter(|m| !logins.contains(&m.as_str())) {
            problems.push(format!("{name} has member {member}"));
            fixes.push(format!("REVOKE {name} FROM {member};"));
        }
    }
    verdict(NAME, problems, fixes, || {
        "carevault_app, carevault_platform and carevault_sealer: not superuser, not BYPASSRLS, own nothing".into()
    })
}

// Login roles

/// The login of one of the server's pools.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoginFacts {
    /// `tenant` or `platform`.
    pub pool: &'static str,
    /// The runtime role the pool switches to.
    pub runtime_role: &'static str,
    /// The login role.
    pub login: String,
    /// Whether the role exists.
    pub exists: bool,
    /// SUPERUSER.
    pub superuser: bool,
    /// BYPASSRLS.
    pub bypass_rls: bool,
    /// Whether it may switch to the runtime role (a member, or a superuser).
    pub can_switch: bool,
}

/// The server's two logins, and whether the recommended login roles exist.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoginRolesFacts {
    /// The tenant pool's and the platform pool's logins.
    pub logins: Vec<LoginFacts>,
    /// Whether `carevault_api` exists.
    pub api_exists: bool,
    /// Whether `carevault_ops` exists.
    pub ops_exists: bool,
}

pub(super) async fn login_facts(
    pool: &PgPool,
    ctx: &DoctorContext,
    current_user: &str,
) -> Result<LoginRolesFacts, DbError> {
    let mut logins = Vec::new();
    for (pool_name, runtime_role, login) in
        [("tenant", APP_ROLE, &ctx.app_login), ("platform", PLATFORM_ROLE, &ctx.ops_login)]
    {
        let login = login.clone().unwrap_or_else(|| current_user.to_string());
        let row: Option<(bool, bool, bool)> = sqlx::query_as(
            "SELECT r.rolsuper, r.rolbypassrls, \
                    EXISTS (SELECT 1 FROM pg_catalog.pg_roles t WHERE t.rolname = $2 \
                            AND pg_has_role(r.oid, t.oid, 'MEMBER')) \
             FROM pg_catalog.pg_roles r WHERE r.rolname = $1",
        )
        .bind(&login)
        .bind(runtime_role)
        .fetch_optional(pool)
        .await?;
        let (exists, superuser, bypass_rls, can_switch) = match row {
            Some((superuser, bypass_rls, member)) => (true, superuser, bypass_rls, member),
            None => (false, false, false, false),
        };
        logins.push(LoginFacts { pool: pool_name, runtime_role, login, exists, superuser, bypass_rls, can_switch });
    }
    let (api_exists, ops_exists): (bool, bool) = sqlx::query_as(
        "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = 'carevault_api'), \
                EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = 'carevault_ops')",
    )
    .fetch_one(pool)
    .await?;
    Ok(LoginRolesFacts { logins, api_exists, ops_exists })
}

/// The SQL that gives the server its two least-privileged logins (as `sql/bootstrap.sql` makes
/// them), and the variables to point at them.
pub fn login_roles_sql(api_exists: bool, ops_exists: bool) -> String {
    let mut sql = vec!["-- as a superuser; choose two passwords".to_string()];
    for (login, runtime, exists) in [(API_LOGIN, APP_ROLE, api_exists), (OPS_LOGIN, PLATFORM_ROLE, ops_exists)] {
        if exists {
            sql.push(format!("ALTER ROLE {login} LOGIN NOINHERIT PASSWORD '<password>';"));
        } else {
            sql.push(format!("CREATE ROLE {login} LOGIN NOINHERIT PASSWORD '<password>';"));
        }
        sql.push(format!("GRANT {runtime} TO {login} WITH INHERIT FALSE, SET TRUE;"));
    }
    sql.push(
        "-- then set APP_DATABASE_URL=postgres://carevault_api:<password>@<host>/<database> and \
         PLATFORM_DATABASE_URL=postgres://carevault_ops:<password>@<host>/<database>"
            .into(),
    );
    sql.join("\n")
}

/// The server's pools log in as roles that exist, can switch to their runtime role, and are
/// neither superuser nor BYPASSRLS (a superuser session can switch back out of the runtime role:
/// WARN, with the SQL that creates `carevault_api` and `carevault_ops`).
pub fn evaluate_login_roles(facts: &LoginRolesFacts) -> Check {
    const NAME: &str = "login_roles";
    let mut failures = Vec::new();
    let mut fail_fixes = Vec::new();
    let mut warnings = Vec::new();
    // Both pools on one login (DATABASE_URL alone): say it once.
    let shared = facts.logins.len() == 2 && facts.logins[0].login == facts.logins[1].login;
    for (index, login) in facts.logins.iter().enumerate() {
        let who = if shared {
            if index > 0 && login.exists && (login.superuser || login.bypass_rls) {
                continue;
            }
            format!("both pools log in as {}", login.login)
        } else {
            format!("the {} pool logs in as {}", login.pool, login.login)
        };
        if !login.exists {
            if shared && index > 0 {
                continue;
            }
            failures.push(format!("{who}, which does not exist"));
            fail_fixes.push(login_roles_sql(facts.api_exists, facts.ops_exists));
        } else if login.superuser || login.bypass_rls {
            warnings.push(format!(
                "{who}, which {}: RLS applies only because the server switches to the runtime role per transaction, \
                 and such a session can switch back",
                if login.superuser { "is a superuser" } else { "has BYPASSRLS" },
            ));
        } else if !login.can_switch {
            failures.push(format!(
                "the {} pool logs in as {}, which cannot switch to {}: every request would fail",
                login.pool, login.login, login.runtime_role
            ));
            fail_fixes.push(format!("GRANT {} TO {} WITH INHERIT FALSE, SET TRUE;", login.runtime_role, login.login));
        }
    }
    if !failures.is_empty() {
        return Check::fail(NAME, failures.join("; "), fail_fixes.join("\n"));
    }
    if !warnings.is_empty() {
        return Check::warn(NAME, warnings.join("; "), login_roles_sql(facts.api_exists, facts.ops_exists));
    }
    let names: Vec<&str> = facts.logins.iter().map(|l| l.login.as_str()).collect();
    Check::pass(NAME, format!("the server logs in as {}: not superuser, not BYPASSRLS", names.join(" / ")))
}

/// Defaults stored for carevault's roles and the pools' logins (`ALTER ROLE ... SET`), and for
/// every role, cluster-wide or in this database, as `role: setting=value`.
pub(super) async fn role_setting_facts(pool: &PgPool, ctx: &DoctorContext) -> Result<Vec<String>, DbError> {
    // The pools may log in with roles of other names (APP_DATABASE_URL, PLATFORM_DATABASE_URL).
    let logins: Vec<&str> = [&ctx.app_login, &ctx.ops_login].into_iter().flatten().map(String::as_str).collect();
    Ok(sqlx::query_scalar(
        "SELECT coalesce(r.rolname::text, 'every role') || ': ' || s \
                || CASE WHEN d.setdatabase = 0 THEN ' (every database)' ELSE '' END \
         FROM pg_catalog.pg_db_role_setting d \
         LEFT JOIN pg_catalog.pg_roles r ON r.oid = d.setrole \
         CROSS JOIN unnest(d.setconfig) AS s \
         WHERE (d.setrole = 0 OR r.rolname LIKE 'carevault\\_%' OR r.rolname = ANY($1)) \
           AND d.setdatabase IN (0, (SELECT oid FROM pg_catalog.pg_database WHERE datname = current_database())) \
         ORDER BY 1",
    )
    .bind(&logins)
    .fetch_all(pool)
    .await?)
}

/// A default stored for one of our roles or the pools' logins, other than the manifest's, is a
/// FAIL: a role may set
/// its own defaults without any privilege, so a session holding a login's credentials can leave
/// settings for every later connection. Every transaction of the service pins what it needs
/// (`carevault_pin_transaction`, its `BEGIN`, and the settings of each connection's startup
/// packet), so such a default is either overridden anyway or one the service cannot pin and that
/// can stop or slow it (`idle_session_timeout`, `transaction_timeout`, `work_mem`,
/// `temp_file_limit`, `plan_cache_mode`, `enable_*`, ...). A default stored for every role (the
/// database's) is a warning: it may be the operator's tuning, but must be seen.
///
/// `session_replication_role` is a FAIL wherever it is stored (for our roles, for every role, for
/// the database): `replica` silences every ordinary trigger (the audit log's immutability, the
/// immutable keys) and every foreign-key check, and the pools cannot pin it back (it needs a
/// superuser).
pub fn evaluate_role_settings(settings: &[String], manifest: &Manifest) -> Check {
    const NAME: &str = "role_settings";
    // `role: name=value...` -> (role, name)
    let key = |setting: &str| -> Option<(String, String)> {
        let (role, rest) = setting.split_once(": ")?;
        Some((role.to_string(), rest.split_once('=')?.0.to_string()))
    };
    let stated: Vec<(String, String)> = manifest.role_settings.iter().filter_map(|s| key(s)).collect();
    let unexpected: Vec<&String> = settings.iter().filter(|s| !manifest.role_settings.contains(s)).collect();
    let mut failures: Vec<String> = unexpected
        .iter()
        .filter(|s| {
            !s.starts_with("every role: ")
                || s.contains(": session_replication_role=")
                || key(s).is_some_and(|k| stated.contains(&k))
        })
        .map(|s| s.to_string())
        .collect();
    let missing: Vec<&String> = manifest.role_settings.iter().filter(|s| !settings.contains(s)).collect();
    failures.extend(missing.iter().map(|s| format!("missing {s}")));
    if !failures.is_empty() {
        // The stated defaults, as the statements that store them.
        let restore: Vec<String> = manifest
            .role_settings
            .iter()
            .filter_map(|s| {
                let (role, rest) = s.split_once(": ")?;
                let (name, value) = rest.trim_end_matches(" (every database)").split_once('=')?;
                Some(format!("ALTER ROLE {role} SET {name} = '{value}';"))
            })
            .collect();
        return Check::fail(
            NAME,
            format!(
                "stored defaults differ from the manifest (a default of a carevault role is either overridden by \
                 the service or one that can stop or slow it; session_replication_role silences triggers and \
                 foreign keys; the login roles' idle-transaction timeout is stated): {}",
                failures.join("; ")
            ),
            format!(
                "as a superuser: RESET what differs (ALTER DATABASE <db> RESET <name>; ALTER ROLE <role> [IN \
                 DATABASE <db>] RESET <name>), then restore the stated defaults:\n{}",
                restore.join("\n")
            ),
        );
    }
    if unexpected.is_empty() {
        return Check::pass(NAME, "the stored defaults of the carevault roles are the manifest's");
    }
    Check::warn(
        NAME,
        format!(
            "defaults stored for every role of the database: {}",
            unexpected.iter().map(|s| s.as_str()).collect::<Vec<_>>().join("; ")
        ),
        "if you did not set them, remove them as a superuser: ALTER DATABASE <db> RESET <name> (or ALTER ROLE ALL \
         RESET <name>)",
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::doctor::Status;

    fn stated() -> Vec<String> {
        Manifest::carevault().role_settings
    }

    #[test]
    fn the_stated_defaults_pass_others_of_our_roles_fail_and_the_databases_are_reported() {
        let manifest = Manifest::carevault();
        assert_eq!(evaluate_role_settings(&stated(), &manifest).status, Status::Pass);
        for hostile in [
            "carevault_api: statement_timeout=1ms",
            "carevault_app: work_mem=64kB",
            "carevault_ops: enable_indexscan=off",
        ] {
            let mut more = stated();
            more.push(hostile.into());
            let found = evaluate_role_settings(&more, &manifest);
            assert_eq!(found.status, Status::Fail, "{hostile}");
            assert!(found.message.contains(hostile), "{found:?}");
        }
        let mut more = stated();
        more.push("every role: work_mem=64MB".into());
        let found = evaluate_role_settings(&more, &manifest);
        assert_eq!(found.status, Status::Warn);
        assert!(found.message.contains("work_mem=64MB"));
    }

    #[test]
    fn a_stated_default_missing_or_changed_fails() {
        let manifest = Manifest::carevault();
        let check = evaluate_role_settings(&stated()[1..], &manifest);
        assert_eq!(check.status, Status::Fail);
        assert!(check.message.contains("missing carevault_api: idle_in_transaction_session_timeout=10s"), "{check:?}");
        let fix = check.fix.unwrap_or_default();
        assert!(fix.contains("ALTER ROLE carevault_api SET idle_in_transaction_session_timeout = '10s';"), "{fix}");

        let mut changed = stated();
        changed.push("carevault_ops: idle_in_transaction_session_timeout=0".into());
        let check = evaluate_role_settings(&changed, &manifest);
        assert_eq!(check.status, Status::Fail);
        assert!(check.message.contains("carevault_ops: idle_in_transaction_session_timeout=0"), "{check:?}");
    }
}
