//! The security manifest: the one statement of carevault's security model in the catalog.
//!
//! It says which roles exist and what they are, which privileges each holds on each table (and
//! column), every row-level security policy with its expressions, the functions of ours (their
//! attributes, who may execute them and a fingerprint of their body), the triggers that guard the
//! tables, and the SECURITY DEFINER functions we own (the verifier only). The migrations create this state; the
//! doctor and the catalog tests compare the live catalog with [`Manifest::carevault`] exactly, so
//! a policy widened with `OR true`, a grant added, a trigger function rewritten or a SECURITY
//! DEFINER function slipped in is a FAIL naming the difference (docs/ARCHITECTURE.md, "The
//! security manifest").
//!
//! The tenant predicate is stated once, in [`CURRENT_TENANT`]; every policy of `carevault_app` is
//! derived from it. A new tenant table enters with [`Manifest::with_tenant_table`]
//! (docs/EXTENSION_POINTS.md).

mod model;

pub use model::{Command, Function, Grant, Policy, Privilege, Role, Scope, Trigger, TriggerType};

/// The runtime role of the tenant path.
pub const APP_ROLE: &str = "carevault_app";
/// The runtime role of the platform path.
pub const PLATFORM_ROLE: &str = "carevault_platform";
/// The runtime role of the audit chain's sealer: it reads audit rows and appends chain entries.
pub const SEALER_ROLE: &str = "carevault_sealer";
/// The login role of the tenant path.
pub const API_LOGIN: &str = "carevault_api";
/// The login role of the platform path and of the sealer.
pub const OPS_LOGIN: &str = "carevault_ops";
/// The roles, runtime roles first.
pub const ROLES: [Role; 5] = [
    Role { name: APP_ROLE, login: false, member_of: &[] },
    Role { name: PLATFORM_ROLE, login: false, member_of: &[] },
    Role { name: SEALER_ROLE, login: false, member_of: &[] },
    Role { name: API_LOGIN, login: true, member_of: &[APP_ROLE] },
    Role { name: OPS_LOGIN, login: true, member_of: &[PLATFORM_ROLE, SEALER_ROLE] },
];

/// The names of [`ROLES`], as the doctor's queries bind them.
pub fn role_names() -> Vec<&'static str> {
    ROLES.iter().map(|r| r.name).collect()
}

/// The current tenant, as every policy of `carevault_app` reads it: the one function
/// `public.carevault_current_tenant()` (migration 15), in a sub-select so that PostgreSQL
/// evaluates it once per statement (an InitPlan) rather than once per row. Schema-qualified: the
/// doctor deparses it with an empty `search_path`, so a function of the same name in another
/// schema (or in `pg_catalog`) is not mistaken for it.
pub const CURRENT_TENANT: &str = "(SELECT public.carevault_current_tenant())";

/// The one SECURITY DEFINER function of ours: the verifier of the tenant context (migration 18),
/// which reads the keys no runtime role can.
pub const VERIFIER: &str = "public.carevault_current_tenant()";

/// `idle_in_transaction_session_timeout` of the two login roles: a session that leaves a transaction
/// open and idle longer is ended by the server. Sent by the pools at connect time and stored as the
/// logins' role default by the bootstrap (for a pooler that drops startup parameters).
pub const IDLE_IN_TRANSACTION_TIMEOUT: &str = "10s";

/// The columns of `audit_logs` the runtime roles may INSERT: `id` and `created_at` always take
/// their defaults (a random id, the database clock), so no session can backdate a row.
pub const AUDIT_INSERT_COLUMNS: [&str; 8] =
    ["action", "ip_address", "metadata", "resource_id", "resource_type", "tenant_id", "user_agent", "user_id"];

/// A table whose rows belong to one tenant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TenantTable {
    /// `schema.table`.
    pub name: String,
    /// The column holding the tenant: `id` for `tenants`, `tenant_id` elsewhere.
    pub tenant_column: &'static str,
}

/// The whole expected state; see the module documentation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manifest {
    /// The tables under row-level security (enabled and forced).
    pub tenant_tables: Vec<TenantTable>,
    /// The roles.
    pub roles: Vec<Role>,
    /// Every privilege our roles hold on any relation of this database, and nothing else.
    pub grants: Vec<Grant>,
    /// Every policy on the tenant tables, and nothing else.
    pub policies: Vec<Policy>,
    /// Our functions.
    pub functions: Vec<Function>,
    /// The triggers on our tables, and nothing else (triggers of extensions aside).
    pub triggers: Vec<Trigger>,
    /// Our SECURITY DEFINER functions (`schema.name(argument types)`): [`VERIFIER`]. Such a function runs
    /// with its owner's rights, so one the runtime roles can call is a way around row-level
    /// security.
    pub security_definer_functions: Vec<&'static str>,
    /// Defaults stored for our roles (`ALTER ROLE ... SET`), as the doctor lists them
    /// (`role: name=value`, ` (every database)` for a cluster-wide one): the idle-transaction
    /// timeout of the login roles. Another value of a parameter named here is a FAIL; any other
    /// stored default is reported so that it is seen.
    pub role_settings: Vec<String>,
}

/// `column = (SELECT carevault_current_tenant())`.
pub fn tenant_predicate(column: &str) -> String {
    format!("{column} = {CURRENT_TENANT}")
}

fn policy(table: &str, name: &str, permissive: bool, command: Command, role: &str, condition: &str) -> Policy {
    let using = (command != Command::Insert).then(|| condition.to_string());
    let with_check = (!matches!(command, Command::Select | Command::Delete)).then(|| condition.to_string());
    Policy {
        table: table.to_string(),
        name: name.to_string(),
        permissive,
        command,
        roles: vec![role.to_string()],
        using,
        with_check,
    }
}

/// The restrictive `tenant_guard` of a tenant table: AND-ed with every permissive policy of
/// `carevault_app`, so that a permissive policy added later cannot widen a tenant's access.
fn tenant_guard(table: &TenantTable) -> Policy {
    policy(&table.name, "tenant_guard", false, Command::All, APP_ROLE, &tenant_predicate(table.tenant_column))
}

fn grants(role: &'static str, relation: &str, privileges: &[Privilege]) -> impl Iterator<Item = Grant> {
    privileges.iter().map(move |&privilege| Grant {
        role,
        relation: relation.to_string(),
        privilege,
        scope: Scope::Table,
    })
}

/// A column-level grant; `columns` sorted as the doctor reads them.
fn columns(role: &'static str, relation: &str, privilege: Privilege, columns: &[&str]) -> Grant {
    Grant {
        role,
        relation: relation.to_string(),
        privilege,
        scope: Scope::Columns(columns.iter().map(|c| c.to_string()).collect()),
    }
}

fn audit_insert(role: &'static str) -> Grant {
    columns(role, "public.audit_logs", Privilege::Insert, &AUDIT_INSERT_COLUMNS)
}

/// The trigger functions pin `search_path` so that a session cannot shadow what they call.
const PINNED: &[&str] = &["search_path=pg_catalog"];

const FUNCTIONS: [Function; 13] = [
    Function {
        signature: "public.carevault_current_tenant()",
        language: "plpgsql",
        volatility: 's',
        security_definer: true,
        config: &["search_path=pg_catalog, pg_temp"],
        executable_by: &[APP_ROLE],
        fingerprint: "11d6764e34d24c2e8767254511ab19dd5bdc1b79851ffab799952044476ae3be",
    },
    Function {
        signature: "public.carevault_enter_tenant(text, text)",
        language: "plpgsql",
        volatility: 'v',
        security_definer: false,
        config: &[],
        executable_by: &[API_LOGIN],
        fingerprint: "35455d0cd9be2925eddabc70f13b7a0f412a31ee532f181597ba6bd9f63ef73a",
    },
    Function {
        signature: "public.carevault_pin_transaction(text)",
        language: "plpgsql",
        volatility: 'v',
        security_definer: false,
        config: &[],
        executable_by: &[API_LOGIN, OPS_LOGIN],
        fingerprint: "9a45b16b1362669a699176b7452c3cb7c0ea41ce368608fc3f01ad0101bf829a",
    },
    Function {
        signature: "public.audit_chain_append()",
        language: "plpgsql",
        volatility: 'v',
        security_definer: false,
        config: PINNED,
        executable_by: &[],
        fingerprint: "4f27583aba730941b395d03418a5d726282363862042c64cfee504dd6b9e3f45",
    },
    Function {
        signature: "public.audit_checkpoint_matches_chain()",
        language: "plpgsql",
        volatility: 'v',
        security_definer: false,
        config: PINNED,
        executable_by: &[],
        fingerprint: "60a52399d55511ab6e49e7c619b82bad1419e7ce66fba4c77d68063b3bb24f3c",
    },
    Function {
        signature: "public.audit_log_stamp()",
        language: "plpgsql",
        volatility: 'v',
        security_definer: false,
        config: PINNED,
        executable_by: &[],
        fingerprint: "7616cf6cf764a262011f8260d4bb29de15360b2e493e716222b755756af30554",
    },
    Function {
        signature: "public.audit_row_hash(bytea, bigint, timestamp with time zone, audit_logs)",
        language: "sql",
        volatility: 's',
        security_definer: false,
        config: PINNED,
        executable_by: &[SEALER_ROLE],
        fingerprint: "2d70dec0973dc533f1f5f08bff36933f0d165fd64133891339ab1b04d0165ded",
    },
    Function {
        signature: "public.prevent_audit_log_modification()",
        language: "plpgsql",
        volatility: 'v',
        security_definer: false,
        config: PINNED,
        executable_by: &[],
        fingerprint: "56704689e9a526cad61c44c0ab4974d1b72d2d6b5c141b7ee8813793378c99ce",
    },
    Function {
        signature: "public.prevent_audit_log_truncate()",
        language: "plpgsql",
        volatility: 'v',
        security_definer: false,
        config: PINNED,
        executable_by: &[],
        fingerprint: "7c0fd532ce13627ab6d028319330ab0f6696dbfe09ceb61d9f864541b5bf2da3",
    },
    Function {
        signature: "public.prevent_key_change()",
        language: "plpgsql",
        volatility: 'v',
        security_definer: false,
        config: PINNED,
        executable_by: &[],
        fingerprint: "2ed4df57b138741eadd35bfce4cf81e94b93bbfdc5c316a43404c76b66a3e1cf",
    },
    Function {
        signature: "public.prevent_tenant_key_change()",
        language: "plpgsql",
        volatility: 'v',
        security_definer: false,
        config: PINNED,
        executable_by: &[],
        fingerprint: "93e2345328a051efb97d4460cf8b72ba9c9072517553ef53cf9cc619a44aa07f",
    },
    Function {
        signature: "public.refuse_audit_chain_change()",
        language: "plpgsql",
        volatility: 'v',
        security_definer: false,
        config: PINNED,
        executable_by: &[],
        fingerprint: "b5405850fe9783f9cb0bcdd3a3f9f37ce02d96b51e4b85eb4821b76e737fe069",
    },
    Function {
        signature: "public.set_updated_at()",
        language: "plpgsql",
        volatility: 'v',
        security_definer: false,
        config: PINNED,
        executable_by: &[],
        fingerprint: "b3640cfd5ab6a398b5ff7f04371b688d2f7f2d32bfd22f3a1246e348cd930ca3",
    },
];

const TRIGGERS: [Trigger; 18] = [
    Trigger {
        table: "public.audit_checkpoints",
        name: "audit_checkpoints_match",
        tgtype: TriggerType(TriggerType::ROW | TriggerType::BEFORE | TriggerType::INSERT),
        function: "public.audit_checkpoint_matches_chain",
    },
    Trigger {
        table: "public.audit_checkpoints",
        name: "audit_checkpoints_no_update",
        tgtype: TriggerType::BEFORE_UPDATE_ROW,
        function: "public.refuse_audit_chain_change",
    },
    Trigger {
        table: "public.audit_checkpoints",
        name: "audit_checkpoints_no_delete",
        tgtype: TriggerType(TriggerType::ROW | TriggerType::BEFORE | TriggerType::DELETE),
        function: "public.refuse_audit_chain_change",
    },
    Trigger {
        table: "public.audit_checkpoints",
        name: "audit_checkpoints_no_truncate",
        tgtype: TriggerType(TriggerType::BEFORE | TriggerType::TRUNCATE),
        function: "public.refuse_audit_chain_change",
    },
    Trigger {
        table: "public.audit_logs",
        name: "audit_logs_stamp",
        tgtype: TriggerType(TriggerType::ROW | TriggerType::BEFORE | TriggerType::INSERT),
        function: "public.audit_log_stamp",
    },
    Trigger {
        table: "public.audit_chain",
        name: "audit_chain_append",
        tgtype: TriggerType(TriggerType::ROW | TriggerType::BEFORE | TriggerType::INSERT),
        function: "public.audit_chain_append",
    },
    Trigger {
        table: "public.audit_chain",
        name: "audit_chain_no_update",
        tgtype: TriggerType::BEFORE_UPDATE_ROW,
        function: "public.refuse_audit_chain_change",
    },
    Trigger {
        table: "public.audit_chain",
        name: "audit_chain_no_delete",
        tgtype: TriggerType(TriggerType::ROW | TriggerType::BEFORE | TriggerType::DELETE),
        function: "public.refuse_audit_chain_change",
    },
    Trigger {
        table: "public.audit_chain",
        name: "audit_chain_no_truncate",
        tgtype: TriggerType(TriggerType::BEFORE | TriggerType::TRUNCATE),
        function: "public.refuse_audit_chain_change",
    },
    Trigger {
        table: "public.audit_logs",
        name: "prevent_audit_log_update",
        tgtype: TriggerType::BEFORE_UPDATE_ROW,
        function: "public.prevent_audit_log_modification",
    },
    Trigger {
        table: "public.audit_logs",
        name: "prevent_audit_log_delete",
        tgtype: TriggerType(TriggerType::ROW | TriggerType::BEFORE | TriggerType::DELETE),
        function: "public.prevent_audit_log_modification",
    },
    Trigger {
        table: "public.audit_logs",
        name: "prevent_audit_log_truncate",
        tgtype: TriggerType(TriggerType::BEFORE | TriggerType::TRUNCATE),
        function: "public.prevent_audit_log_truncate",
    },
    Trigger {
        table: "public.tenants",
        name: "tenants_keys_immutable",
        tgtype: TriggerType::BEFORE_UPDATE_ROW,
        function: "public.prevent_key_change",
    },
    Trigger {
        table: "public.users",
        name: "users_keys_immutable",
        tgtype: TriggerType::BEFORE_UPDATE_ROW,
        function: "public.prevent_tenant_key_change",
    },
    Trigger {
        table: "public.documents",
        name: "documents_keys_immutable",
        tgtype: TriggerType::BEFORE_UPDATE_ROW,
        function: "public.prevent_tenant_key_change",
    },
    Trigger {
        table: "public.tenants",
        name: "tenants_set_updated_at",
        tgtype: TriggerType::BEFORE_UPDATE_ROW,
        function: "public.set_updated_at",
    },
    Trigger {
        table: "public.users",
        name: "users_set_updated_at",
        tgtype: TriggerType::BEFORE_UPDATE_ROW,
        function: "public.set_updated_at",
    },
    Trigger {
        table: "public.documents",
        name: "documents_set_updated_at",
        tgtype: TriggerType::BEFORE_UPDATE_ROW,
        function: "public.set_updated_at",
    },
];

impl Manifest {
    /// carevault's schema as its migrations leave it.
    pub fn carevault() -> Manifest {
        use Privilege::{Insert, Select, Update};

        let table = |name: &str, tenant_column| TenantTable { name: name.to_string(), tenant_column };
        let tenant_tables = vec![
            table("public.audit_chain", "tenant_id"),
            table("public.audit_checkpoints", "tenant_id"),
            table("public.audit_logs", "tenant_id"),
            table("public.documents", "tenant_id"),
            table("public.tenants", "id"),
            table("public.users", "tenant_id"),
        ];
        let tenant = tenant_predicate("id");
        let row = tenant_predicate("tenant_id");
        let mut policies = vec![
            policy("public.tenants", "tenant_isolation_policy", true, Command::All, APP_ROLE, &tenant),
            policy("public.tenants", "platform_tenant_policy", true, Command::All, PLATFORM_ROLE, "true"),
            policy("public.users", "user_isolation_policy", true, Command::All, APP_ROLE, &row),
            policy("public.documents", "document_isolation_policy", true, Command::All, APP_ROLE, &row),
            policy("public.audit_chain", "audit_chain_isolation_policy", true, Command::All, APP_ROLE, &row),
            policy(
                "public.audit_chain",
                "audit_chain_sealer_select_policy",
                true,
                Command::Select,
                SEALER_ROLE,
                "true",
            ),
            policy(
                "public.audit_chain",
                "audit_chain_sealer_insert_policy",
                true,
                Command::Insert,
                SEALER_ROLE,
                "true",
            ),
            policy(
                "public.audit_checkpoints",
                "audit_checkpoints_isolation_policy",
                true,
                Command::All,
                APP_ROLE,
                &row,
            ),
            policy(
                "public.audit_checkpoints",
                "audit_checkpoints_sealer_select_policy",
                true,
                Command::Select,
                SEALER_ROLE,
                "true",
            ),
            policy(
                "public.audit_checkpoints",
                "audit_checkpoints_sealer_insert_policy",
                true,
                Command::Insert,
                SEALER_ROLE,
                "true",
            ),
            policy("public.audit_logs", "audit_log_sealer_select_policy", true, Command::Select, SEALER_ROLE, "true"),
            policy("public.audit_logs", "audit_log_select_policy", true, Command::Select, APP_ROLE, &row),
            policy("public.audit_logs", "audit_log_insert_policy", true, Command::Insert, APP_ROLE, &row),
            policy(
                "public.audit_logs",
                "platform_audit_log_select_policy",
                true,
                Command::Select,
                PLATFORM_ROLE,
                "true",
            ),
            policy(
                "public.audit_logs",
                "platform_audit_log_insert_policy",
                true,
                Command::Insert,
                PLATFORM_ROLE,
                "true",
            ),
        ];
        policies.extend(tenant_tables.iter().map(tenant_guard));

        let mut all_grants: Vec<Grant> = grants(APP_ROLE, "public._sqlx_migrations", &[Select])
            .chain(grants(APP_ROLE, "public.tenants", &[Select]))
            .chain(grants(APP_ROLE, "public.users", &[Select, Insert, Update]))
            .chain(grants(APP_ROLE, "public.documents", &[Select, Insert, Update]))
            .chain(grants(APP_ROLE, "public.audit_logs", &[Select]))
            .chain(grants(PLATFORM_ROLE, "public.tenants", &[Select, Insert, Update]))
            .chain(grants(PLATFORM_ROLE, "public.audit_logs", &[Select]))
            .chain(grants(APP_ROLE, "public.audit_chain", &[Select]))
            .chain(grants(APP_ROLE, "public.audit_checkpoints", &[Select]))
            .chain(grants(SEALER_ROLE, "public.audit_checkpoints", &[Select, Insert]))
            .chain(grants(SEALER_ROLE, "public.audit_logs", &[Select]))
            .chain(grants(SEALER_ROLE, "public.audit_chain", &[Select]))
            .chain(grants(SEALER_ROLE, "public.audit_sealer", &[Select]))
            .chain([
                columns(SEALER_ROLE, "public.audit_chain", Privilege::Insert, &["audit_id", "tenant_id"]),
                columns(SEALER_ROLE, "public.audit_sealer", Privilege::Update, &["watermark"]),
            ])
            .collect();
        all_grants.push(audit_insert(APP_ROLE));
        all_grants.push(audit_insert(PLATFORM_ROLE));
        all_grants.sort();

        Manifest {
            tenant_tables,
            roles: ROLES.to_vec(),
            grants: all_grants,
            policies,
            functions: FUNCTIONS.to_vec(),
            triggers: TRIGGERS.to_vec(),
            security_definer_functions: vec![VERIFIER],
            role_settings: [API_LOGIN, OPS_LOGIN]
                .map(|login| {
                    format!(
                        "{login}: idle_in_transaction_session_timeout={IDLE_IN_TRANSACTION_TIMEOUT} (every database)"
                    )
                })
                .to_vec(),
        }
    }

    /// This manifest with one more tenant table: row-level security enabled and forced, a
    /// permissive `<table>_isolation_policy` FOR ALL TO `carevault_app` and the restrictive
    /// `tenant_guard`, both on [`tenant_predicate`]`("tenant_id")`, and `privileges` granted to
    /// `carevault_app` on the whole table. `table` is `schema.table`, as `quote_ident` writes it.
    pub fn with_tenant_table(mut self, table: &str, privileges: &[Privilege]) -> Manifest {
        let entry = TenantTable { name: table.to_string(), tenant_column: "tenant_id" };
        let bare = table.rsplit('.').next().unwrap_or(table).trim_matches('"');
        let isolation = format!("{bare}_isolation_policy");
        self.policies.push(policy(table, &isolation, true, Command::All, APP_ROLE, &tenant_predicate("tenant_id")));
        self.policies.push(tenant_guard(&entry));
        self.tenant_tables.push(entry);
        self.tenant_tables.sort_by(|a, b| a.name.cmp(&b.name));
        self.grants.extend(grants(APP_ROLE, table, privileges));
        self.grants.sort();
        self
    }

    /// This manifest with one more trigger (on a table added with [`Manifest::with_tenant_table`]).
    pub fn with_trigger(mut self, trigger: Trigger) -> Manifest {
        self.triggers.push(trigger);
        self
    }

    /// The tenant table named `name`, if it is one.
    pub fn tenant_table(&self, name: &str) -> Option<&TenantTable> {
        self.tenant_tables.iter().find(|t| t.name == name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_policy_of_the_runtime_role_reads_the_one_tenant_function() {
        let manifest = Manifest::carevault();
        for policy in manifest.policies.iter().filter(|p| p.roles == [APP_ROLE]) {
            for expression in [&policy.using, &policy.with_check].into_iter().flatten() {
                assert!(expression.ends_with(&format!("= {CURRENT_TENANT}")), "{policy:?}");
            }
        }
    }

    #[test]
    fn the_bootstrap_stores_the_stated_idle_transaction_timeout() {
        for login in [API_LOGIN, OPS_LOGIN] {
            let statement = format!(
                "ALTER ROLE {login} SET idle_in_transaction_session_timeout = '{IDLE_IN_TRANSACTION_TIMEOUT}';"
            );
            assert!(crate::migrate::BOOTSTRAP_SQL.contains(&statement), "{statement}");
        }
    }

    #[test]
    fn every_tenant_table_has_its_guard() {
        let manifest = Manifest::carevault().with_tenant_table("public.notes", &[Privilege::Select]);
        for table in &manifest.tenant_tables {
            let guard = manifest.policies.iter().find(|p| p.table == table.name && p.name == "tenant_guard");
            assert!(guard.is_some_and(|g| !g.permissive && g.command == Command::All), "{}", table.name);
        }
        assert!(manifest.policies.iter().any(|p| p.name == "notes_isolation_policy" && p.permissive));
    }
}
