//! The vocabulary of the manifest: roles, privileges, policies, functions and triggers, each as
//! the catalog should hold it.

use std::fmt;

/// A role of the design.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Role {
    /// `carevault_app`, ...
    pub name: &'static str,
    /// LOGIN (the login roles) or NOLOGIN (the runtime roles). Every other attribute is the same
    /// for all: NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE NOREPLICATION NOINHERIT.
    pub login: bool,
    /// The roles it is a member of (`WITH INHERIT FALSE, SET TRUE`): a login role's runtime
    /// roles. Runtime roles are members of nothing.
    pub member_of: &'static [&'static str],
}

/// A table privilege.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Privilege {
    /// SELECT.
    Select,
    /// INSERT.
    Insert,
    /// UPDATE.
    Update,
    /// DELETE.
    Delete,
    /// TRUNCATE.
    Truncate,
    /// REFERENCES.
    References,
    /// TRIGGER.
    Trigger,
    /// MAINTAIN (PostgreSQL 17 and later: VACUUM, ANALYZE, REINDEX, LOCK, ...).
    Maintain,
}

impl Privilege {
    /// Every table privilege, in the order PostgreSQL lists them.
    pub const ALL: [Privilege; 8] = [
        Privilege::Select,
        Privilege::Insert,
        Privilege::Update,
        Privilege::Delete,
        Privilege::Truncate,
        Privilege::References,
        Privilege::Trigger,
        Privilege::Maintain,
    ];

    /// The SQL keyword.
    pub fn as_str(self) -> &'static str {
        match self {
            Privilege::Select => "SELECT",
            Privilege::Insert => "INSERT",
            Privilege::Update => "UPDATE",
            Privilege::Delete => "DELETE",
            Privilege::Truncate => "TRUNCATE",
            Privilege::References => "REFERENCES",
            Privilege::Trigger => "TRIGGER",
            Privilege::Maintain => "MAINTAIN",
        }
    }

    /// The privilege named `keyword`, if it is one.
    pub fn parse(keyword: &str) -> Option<Privilege> {
        Privilege::ALL.into_iter().find(|p| p.as_str() == keyword)
    }

    /// Whether PostgreSQL can grant it on single columns.
    pub fn has_column_form(self) -> bool {
        matches!(self, Privilege::Select | Privilege::Insert | Privilege::Update | Privilege::References)
    }
}

impl fmt::Display for Privilege {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a role may do on a relation: the whole table, or only some columns.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Scope {
    /// A table-level grant.
    Table,
    /// A column-level grant on exactly these columns (sorted).
    Columns(Vec<String>),
}

/// One privilege of one role on one relation.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Grant {
    /// The role.
    pub role: &'static str,
    /// `schema.relation`, as `quote_ident` writes it.
    pub relation: String,
    /// The privilege.
    pub privilege: Privilege,
    /// Table or columns.
    pub scope: Scope,
}

impl Grant {
    /// The GRANT statement that gives exactly this privilege.
    pub fn grant_sql(&self) -> String {
        match &self.scope {
            Scope::Table => format!("GRANT {} ON {} TO {};", self.privilege, self.relation, self.role),
            Scope::Columns(columns) => {
                format!("GRANT {} ({}) ON {} TO {};", self.privilege, columns.join(", "), self.relation, self.role)
            }
        }
    }
}

/// The command a policy covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    /// FOR ALL.
    All,
    /// FOR SELECT.
    Select,
    /// FOR INSERT.
    Insert,
    /// FOR UPDATE.
    Update,
    /// FOR DELETE.
    Delete,
}

impl Command {
    /// The SQL keyword.
    pub fn as_str(self) -> &'static str {
        match self {
            Command::All => "ALL",
            Command::Select => "SELECT",
            Command::Insert => "INSERT",
            Command::Update => "UPDATE",
            Command::Delete => "DELETE",
        }
    }

    /// The command of `pg_policy.polcmd` (`*`, `r`, `a`, `w`, `d`).
    pub fn from_polcmd(polcmd: &str) -> Option<Command> {
        Some(match polcmd {
            "*" => Command::All,
            "r" => Command::Select,
            "a" => Command::Insert,
            "w" => Command::Update,
            "d" => Command::Delete,
            _ => return None,
        })
    }
}

/// A row-level security policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    /// `schema.table`.
    pub table: String,
    /// The policy's name.
    pub name: String,
    /// PERMISSIVE (true) or RESTRICTIVE.
    pub permissive: bool,
    /// FOR ...
    pub command: Command,
    /// TO ... (sorted; `public` for PUBLIC).
    pub roles: Vec<String>,
    /// USING, as SQL.
    pub using: Option<String>,
    /// WITH CHECK, as SQL.
    pub with_check: Option<String>,
}

impl Policy {
    /// DROP and CREATE statements that make the catalog hold exactly this policy.
    pub fn create_sql(&self) -> String {
        let mut sql = format!(
            "DROP POLICY IF EXISTS {name} ON {table}; CREATE POLICY {name} ON {table} AS {kind} FOR {command} TO {roles}",
            name = self.name,
            table = self.table,
            kind = if self.permissive { "PERMISSIVE" } else { "RESTRICTIVE" },
            command = self.command.as_str(),
            roles = self.roles.join(", "),
        );
        if let Some(using) = &self.using {
            sql.push_str(&format!(" USING ({using})"));
        }
        if let Some(check) = &self.with_check {
            sql.push_str(&format!(" WITH CHECK ({check})"));
        }
        sql.push(';');
        sql
    }
}

/// A function of ours: a trigger function or a helper the policies call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Function {
    /// `schema.name(argument types)`, as the catalog writes it.
    pub signature: &'static str,
    /// `plpgsql` or `sql`.
    pub language: &'static str,
    /// `pg_proc.provolatile`: `i`, `s` or `v`.
    pub volatility: char,
    /// SECURITY DEFINER.
    pub security_definer: bool,
    /// `pg_proc.proconfig` (e.g. `search_path=pg_catalog`), sorted.
    pub config: &'static [&'static str],
    /// The roles of ours that may execute it (trigger functions fire without EXECUTE: none).
    pub executable_by: &'static [&'static str],
    /// SHA-256 (hex) of its body: `prosrc` as written in the migration, or, for a SQL-standard
    /// body (`RETURN ...`), the server's text of it (`pg_get_function_sqlbody`).
    pub fingerprint: &'static str,
}

/// When a trigger fires.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TriggerType(pub i16);

impl TriggerType {
    /// FOR EACH ROW (otherwise FOR EACH STATEMENT).
    pub const ROW: i16 = 1;
    /// BEFORE.
    pub const BEFORE: i16 = 2;
    /// ON INSERT.
    pub const INSERT: i16 = 4;
    /// ON DELETE.
    pub const DELETE: i16 = 8;
    /// ON UPDATE.
    pub const UPDATE: i16 = 16;
    /// ON TRUNCATE.
    pub const TRUNCATE: i16 = 32;
    /// BEFORE UPDATE FOR EACH ROW: the immutable-key and `updated_at` triggers.
    pub const BEFORE_UPDATE_ROW: TriggerType = TriggerType(Self::ROW | Self::BEFORE | Self::UPDATE);

    /// The clause of CREATE TRIGGER between the name and `ON`, and the `FOR EACH` part.
    pub fn clauses(self) -> (String, &'static str) {
        let mut events = Vec::new();
        for (bit, event) in
            [(Self::INSERT, "INSERT"), (Self::UPDATE, "UPDATE"), (Self::DELETE, "DELETE"), (Self::TRUNCATE, "TRUNCATE")]
        {
            if self.0 & bit != 0 {
                events.push(event);
            }
        }
        let timing = if self.0 & Self::BEFORE != 0 { "BEFORE" } else { "AFTER" };
        let level = if self.0 & Self::ROW != 0 { "FOR EACH ROW" } else { "FOR EACH STATEMENT" };
        (format!("{timing} {}", events.join(" OR ")), level)
    }
}

/// A trigger on one of our tables.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Trigger {
    /// `schema.table`.
    pub table: &'static str,
    /// The trigger's name.
    pub name: &'static str,
    /// Timing, events and level.
    pub tgtype: TriggerType,
    /// The function it runs (`schema.name`).
    pub function: &'static str,
}

impl Trigger {
    /// DROP and CREATE statements that make the catalog hold exactly this trigger.
    pub fn create_sql(&self) -> String {
        let (when, level) = self.tgtype.clauses();
        format!(
            "DROP TRIGGER IF EXISTS {name} ON {table}; CREATE TRIGGER {name} {when} ON {table} {level} EXECUTE FUNCTION \
             {function}();",
            name = self.name,
            table = self.table,
            function = self.function,
        )
    }
}
