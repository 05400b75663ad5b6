//! `carevault doctor`'s judgements on crafted facts: conditions this cluster cannot produce (another
//! server version, TCP without TLS, a role that is a superuser) and each way a fact can differ from
//! the security manifest.

use carevault_db::Environment;
use carevault_db::doctor::{
    self, FunctionFacts, HeldPrivilege, LoginFacts, LoginRolesFacts, MigrationFacts, PgvectorFacts, PolicyFacts,
    PrivilegeFacts, RoleFacts, RuleFacts, SearchFacts, SecurityDefinerFacts, ServerFacts, Status, SystemTenantFacts,
    TenantTableFacts, TlsFacts, TriggerFacts, ViewFacts,
};
use carevault_db::manifest::{Command, Manifest, Privilege};

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
            "carevault_ops" => vec!["carevault_platform".into(), "carevault_sealer".into()],
            _ => vec![],
        },
        members: match name {
            "carevault_app" => vec!["carevault_api".into()],
            "carevault_platform" | "carevault_sealer" => vec!["carevault_ops".into()],
            _ => vec![],
        },
    }
}

fn designed_roles() -> Vec<RoleFacts> {
    carevault_db::manifest::role_names().into_iter().map(role).collect()
}

fn with_role(change: impl Fn(&mut RoleFacts)) -> Vec<RoleFacts> {
    let mut roles = designed_roles();
    change(roles.iter_mut().find(|r| r.name == "carevault_app").unwrap());
    roles
}

#[test]
fn runtime_roles() {
    assert_eq!(doctor::evaluate_runtime_roles(&designed_roles(), "owner", &manifest()).status, Status::Pass);

    let check = doctor::evaluate_runtime_roles(&with_role(|r| r.superuser = true), "owner", &manifest());
    assert_eq!(check.status, Status::Fail);
    assert!(check.message.contains("carevault_app is SUPERUSER"), "{check:?}");
    assert!(check.fix.unwrap().contains("ALTER ROLE carevault_app NOLOGIN NOSUPERUSER NOBYPASSRLS"));

    let check = doctor::evaluate_runtime_roles(&with_role(|r| r.bypass_rls = true), "owner", &manifest());
    assert_eq!(check.status, Status::Fail);
    assert!(check.message.contains("BYPASSRLS"), "{check:?}");

    let check =
        doctor::evaluate_runtime_roles(&with_role(|r| r.owns = vec!["table documents".into()]), "owner", &manifest());
    assert_eq!(check.status, Status::Fail);
    assert!(check.message.contains("carevault_app owns table documents"), "{check:?}");
    assert!(check.fix.unwrap().contains("REASSIGN OWNED BY carevault_app TO owner;"));

    let check =
        doctor::evaluate_runtime_roles(&with_role(|r| r.member_of = vec!["pg_read_all_data".into()]), "o", &manifest());
    assert_eq!(check.status, Status::Fail);
    assert_eq!(check.fix.as_deref(), Some("REVOKE pg_read_all_data FROM carevault_app;"));

    let check = doctor::evaluate_runtime_roles(&with_role(|r| r.can_login = true), "owner", &manifest());
    assert_eq!(check.status, Status::Fail);

    // Another login that may switch to the platform role.
    let mut roles = designed_roles();
    roles.iter_mut().find(|r| r.name == "carevault_platform").unwrap().members.push("reporting".into());
    let check = doctor::evaluate_runtime_roles(&roles, "owner", &manifest());
    assert_eq!(check.status, Status::Fail);
    assert!(check.message.contains("carevault_platform has member reporting"), "{check:?}");
    assert!(check.fix.unwrap().contains("REVOKE carevault_platform FROM reporting;"));

    // A login role with BYPASSRLS, or the runtime role missing.
    let mut roles = designed_roles();
    roles[0].bypass_rls = true;
    assert_eq!(doctor::evaluate_runtime_roles(&roles, "owner", &manifest()).status, Status::Fail);
    let without_platform: Vec<RoleFacts> =
        designed_roles().into_iter().filter(|r| r.name != "carevault_platform").collect();
    assert_eq!(doctor::evaluate_runtime_roles(&without_platform, "owner", &manifest()).status, Status::Fail);
}

#[test]
fn privileges() {
    let manifest = manifest();
    let held: Vec<HeldPrivilege> = manifest
        .grants
        .iter()
        .map(|g| HeldPrivilege {
            role: g.role.into(),
            relation: g.relation.clone(),
            privilege: g.privilege,
            scope: g.scope.clone(),
        })
        .collect();
    let facts = PrivilegeFacts { held, database: "carevault".into(), ..PrivilegeFacts::default() };
    assert_eq!(doctor::evaluate_privileges(&facts, &manifest).status, Status::Pass);
    let create = PrivilegeFacts { database_create: vec!["carevault_app".into()], ..facts.clone() };
    let check = doctor::evaluate_privileges(&create, &manifest);
    assert_eq!(check.status, Status::Fail);
    assert_eq!(check.fix.as_deref(), Some("REVOKE CREATE ON DATABASE carevault FROM carevault_app, PUBLIC;"));
    // A column grant turned into a table grant.
    let mut widened = facts;
    let insert = widened
        .held
        .iter_mut()
        .find(|h| h.role == "carevault_app" && h.relation == "public.audit_logs" && h.privilege == Privilege::Insert)
        .unwrap();
    insert.scope = carevault_db::manifest::Scope::Table;
    let check = doctor::evaluate_privileges(&widened, &manifest);
    assert_eq!(check.status, Status::Fail);
    assert!(check.message.contains("carevault_app has INSERT on all of public.audit_logs"), "{check:?}");
}

#[test]
fn security_definer_functions() {
    let exposed = SecurityDefinerFacts { function: "public.f()".into(), executable_by: vec!["carevault_app".into()] };
    assert_eq!(doctor::evaluate_security_definer(std::slice::from_ref(&exposed), &manifest()).status, Status::Fail);
    let private = SecurityDefinerFacts { executable_by: vec![], ..exposed };
    assert_eq!(doctor::evaluate_security_definer(&[private], &manifest()).status, Status::Pass);
}

#[test]
fn views() {
    let view = |kind: &str, options: &[&str]| ViewFacts {
        name: "public.v".into(),
        kind: kind.into(),
        options: options.iter().map(|o| o.to_string()).collect(),
        reads: vec!["public.documents".into()],
    };
    assert_eq!(doctor::evaluate_views(&[view("v", &[])], &[]).status, Status::Fail);
    assert_eq!(doctor::evaluate_views(&[view("v", &["security_invoker=false"])], &[]).status, Status::Fail);
    assert_eq!(doctor::evaluate_views(&[view("v", &["security_invoker=on"])], &[]).status, Status::Pass);
    assert_eq!(doctor::evaluate_views(&[view("m", &[])], &[]).status, Status::Fail);
    assert_eq!(doctor::evaluate_views(&[], &[]).status, Status::Pass);
    let rule = RuleFacts { table: "public.audit_logs".into(), name: "swallow".into() };
    assert_eq!(doctor::evaluate_views(&[], &[rule]).status, Status::Fail);
}

#[test]
fn search_indexes() {
    use carevault_db::TenantId;
    use carevault_db::search_index::{IndexPolicy, SearchIndexFacts, TenantIndex, TenantRows, index_name};
    let policy = IndexPolicy::DEFAULT;
    let (large, small) = (TenantId::new_random(), TenantId::new_random());
    let tenants = vec![
        TenantRows { tenant: large, searchable_rows: policy.create_at, deleted: false },
        TenantRows { tenant: small, searchable_rows: 3, deleted: false },
    ];
    let indexed = |valid| vec![TenantIndex { name: index_name(large), valid }];
    let facts = |shared_index, indexes| SearchFacts {
        shared_index,
        indexes: SearchIndexFacts { tenants: tenants.clone(), indexes },
    };
    assert_eq!(doctor::evaluate_search_indexes(&facts(false, indexed(true)), policy).status, Status::Pass);
    let shared = doctor::evaluate_search_indexes(&facts(true, indexed(true)), policy);
    assert_eq!(shared.status, Status::Fail);
    assert!(shared.fix.unwrap().contains("DROP INDEX CONCURRENTLY public.idx_documents_embedding_hnsw"));
    for indexes in [vec![], indexed(false)] {
        let missing = doctor::evaluate_search_indexes(&facts(false, indexes), policy);
        assert_eq!(missing.status, Status::Warn, "{missing:?}");
        assert!(missing.message.contains(&large.to_string()), "names the tenant: {missing:?}");
        assert!(missing.fix.unwrap().contains("carevault search reconcile"));
    }
    // At the cap, a large tenant without an index is a warning about the cap, not a fix to run.
    let capped = IndexPolicy { max_indexes: 1, create_at: 3, ..policy };
    let over = doctor::evaluate_search_indexes(&facts(false, indexed(true)), capped);
    assert_eq!(over.status, Status::Warn, "{over:?}");
    assert!(over.message.contains("cap of 1"), "{over:?}");
    assert!(over.fix.unwrap().contains("max_locks_per_transaction"));
}

fn manifest() -> Manifest {
    Manifest::carevault()
}

/// The triggers as the manifest states them.
fn designed_triggers() -> Vec<TriggerFacts> {
    manifest()
        .triggers
        .iter()
        .map(|t| TriggerFacts {
            table: t.table.into(),
            name: t.name.into(),
            enabled: "O".into(),
            tgtype: t.tgtype.0,
            function: t.function.into(),
            extension_function: false,
            narrowed: false,
        })
        .collect()
}

#[test]
fn triggers() {
    let manifest = manifest();
    let designed = designed_triggers();
    assert_eq!(doctor::evaluate_audit_triggers(&designed, &manifest).status, Status::Pass);
    assert_eq!(doctor::evaluate_truncate_guard(&designed, &manifest).status, Status::Pass);
    assert_eq!(doctor::evaluate_row_triggers(&designed, &manifest).status, Status::Pass);
    let index = |name: &str| designed.iter().position(|t| t.name == name).unwrap();
    // Replica-only triggers do not fire in normal sessions.
    let mut replica = designed.clone();
    replica[index("prevent_audit_log_update")].enabled = "R".into();
    assert_eq!(doctor::evaluate_audit_triggers(&replica, &manifest).status, Status::Fail);
    // An AFTER trigger cannot stop anything already done... and is not the designed one.
    let mut after = designed.clone();
    after[index("prevent_audit_log_delete")].tgtype = 1 | 8;
    assert_eq!(doctor::evaluate_audit_triggers(&after, &manifest).status, Status::Fail);
    // The truncate guard running another function.
    let mut other = designed.clone();
    other[index("prevent_audit_log_truncate")].function = "public.set_updated_at".into();
    assert_eq!(doctor::evaluate_truncate_guard(&other, &manifest).status, Status::Fail);
    // A guard that fires only WHEN (false), or only for some columns, is no guard.
    let mut narrowed = designed.clone();
    narrowed[index("prevent_audit_log_truncate")].narrowed = true;
    let check = doctor::evaluate_truncate_guard(&narrowed, &manifest);
    assert_eq!(check.status, Status::Fail);
    assert!(check.message.contains("has a WHEN condition"), "{check:?}");
    // A trigger the manifest does not state fails, unless an extension owns its function.
    let mut extra = designed.clone();
    extra.push(TriggerFacts { name: "copy_rows".into(), function: "public.copy_rows".into(), ..designed[0].clone() });
    let check = doctor::evaluate_row_triggers(&extra, &manifest);
    assert_eq!(check.status, Status::Fail);
    assert!(check.message.contains("copy_rows"), "{check:?}");
    extra.last_mut().unwrap().extension_function = true;
    assert_eq!(doctor::evaluate_row_triggers(&extra, &manifest).status, Status::Pass);
}

#[test]
fn functions() {
    let manifest = manifest();
    let designed: Vec<FunctionFacts> = manifest
        .functions
        .iter()
        .map(|f| FunctionFacts {
            signature: f.signature.into(),
            exists: true,
            language: f.language.into(),
            volatility: f.volatility.to_string(),
            security_definer: f.security_definer,
            config: f.config.iter().map(|c| c.to_string()).collect(),
            executable_by: f.executable_by.iter().map(|r| r.to_string()).collect(),
            fingerprint: f.fingerprint.into(),
        })
        .collect();
    assert_eq!(doctor::evaluate_functions(&designed, &manifest).status, Status::Pass);
    for change in [
        (|f: &mut FunctionFacts| f.fingerprint = "0".repeat(64)) as fn(&mut FunctionFacts),
        |f| f.security_definer = true,
        |f| f.config.clear(),
        |f| f.executable_by.push("carevault_api".into()),
        |f| f.exists = false,
        |f| f.volatility = "i".into(),
    ] {
        // A trigger function: pinned search_path, executable by nobody.
        let last = designed.len() - 1;
        let mut changed = designed.clone();
        change(&mut changed[last]);
        let check = doctor::evaluate_functions(&changed, &manifest);
        assert_eq!(check.status, Status::Fail, "{changed:?}");
        assert!(check.message.contains(&changed[last].signature), "{check:?}");
    }
}

#[test]
fn a_new_tenant_table_needs_to_be_in_the_manifest_with_forced_rls_and_its_policies() {
    let manifest = manifest();
    let live = |p: &carevault_db::manifest::Policy| PolicyFacts {
        name: p.name.clone(),
        permissive: p.permissive,
        command: Some(p.command),
        roles: p.roles.clone(),
        using: p.using.clone(),
        with_check: p.with_check.clone(),
    };
    let table = |name: &str, forced: bool, policies: Vec<PolicyFacts>| TenantTableFacts {
        name: name.into(),
        tenant_column_type: Some("uuid".into()),
        rls_enabled: true,
        rls_forced: forced,
        policies,
    };
    let tables_of = |manifest: &Manifest| -> Vec<TenantTableFacts> {
        manifest
            .tenant_tables
            .iter()
            .map(|t| table(&t.name, true, manifest.policies.iter().filter(|p| p.table == t.name).map(live).collect()))
            .collect()
    };
    let mut tables = tables_of(&manifest);
    // Crafted facts: the manifest's own text stands in for the server's deparsed text.
    let expected = manifest.policies.clone();
    assert_eq!(doctor::evaluate_policies(&tables, &expected, &manifest).status, Status::Pass);
    assert_eq!(doctor::evaluate_tenant_guard(&tables, &expected, &manifest).status, Status::Pass);
    assert_eq!(doctor::evaluate_row_level_security(&tables, &manifest).status, Status::Pass);

    tables.push(table("public.notes", false, vec![]));
    let rls = doctor::evaluate_row_level_security(&tables, &manifest);
    assert_eq!(rls.status, Status::Fail);
    assert!(rls.message.contains("public.notes has a tenant_id column but is not in the security manifest"), "{rls:?}");
    assert!(rls.message.contains("public.notes does not FORCE"), "{rls:?}");

    // In the manifest, without its policies.
    let extended = manifest.clone().with_tenant_table("public.notes", &[Privilege::Select]);
    let guard = doctor::evaluate_tenant_guard(&tables, &extended.policies, &extended);
    assert_eq!(guard.status, Status::Fail);
    assert!(guard.message.contains("tenant_guard on public.notes is missing"), "{guard:?}");
    // With them, it passes.
    let tables = tables_of(&extended);
    assert_eq!(doctor::evaluate_tenant_guard(&tables, &extended.policies, &extended).status, Status::Pass);
    assert_eq!(doctor::evaluate_policies(&tables, &extended.policies, &extended).status, Status::Pass);

    // A permissive "guard" is no guard, and a widened expression is named.
    let mut weak = tables_of(&manifest);
    let guard = weak[0].policies.iter_mut().find(|p| p.name == "tenant_guard").unwrap();
    guard.permissive = true;
    let check = doctor::evaluate_tenant_guard(&weak, &expected, &manifest);
    assert_eq!(check.status, Status::Fail);
    assert!(check.message.contains("is PERMISSIVE"), "{check:?}");
    let mut wide = tables_of(&manifest);
    let audit_logs = wide.iter_mut().find(|t| t.name == "public.audit_logs").unwrap();
    let policy = audit_logs
        .policies
        .iter_mut()
        .find(|p| p.command == Some(Command::Select) && p.roles == ["carevault_app"])
        .unwrap();
    policy.using = Some("true".into());
    let check = doctor::evaluate_policies(&wide, &expected, &manifest);
    assert_eq!(check.status, Status::Fail);
    assert!(check.message.contains("has USING (true)"), "{check:?}");
    // Without the schema, the fix is to migrate.
    let none = doctor::evaluate_row_level_security(&[], &manifest);
    assert_eq!((none.status, none.fix.as_deref()), (Status::Fail, Some("carevault migrate up")));
}
