//! The command line (docs/ARCHITECTURE.md, "Command line").

use clap::{Args, Parser, Subcommand, ValueEnum};

/// carevault: multi-tenant document storage with tenant isolation enforced by PostgreSQL.
#[derive(Debug, Parser)]
#[command(name = "carevault", version, about)]
pub struct Cli {
    /// The owner (or superuser) URL: migrations, bootstrap, platform commands. Unset: the embedded
    /// PostgreSQL, started on demand, whose data persists between runs.
    #[arg(long, env = "DATABASE_URL", global = true, hide_env_values = true)]
    pub database_url: Option<String>,

    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The top-level commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the HTTP API. Configuration comes from the environment (see the README); without
    /// DATABASE_URL it runs on the embedded PostgreSQL and, in development, seeds a demo tenant and
    /// prints ready-to-paste curl commands.
    Serve(ListenArgs),
    /// Apply, revert or inspect the schema migrations.
    Migrate(MigrateArgs),
    /// Create, list, suspend, activate, delete or restore tenants.
    Tenant(TenantArgs),
    /// Create users.
    User(UserArgs),
    /// Import documents into a tenant.
    Documents(DocumentsArgs),
    /// Maintain the per-tenant vector search indexes.
    Search(SearchArgs),
    /// Seal and verify the audit chain (docs/AUDIT_FORMAT.md).
    Audit(AuditArgs),
    /// Mint development tokens.
    Token(TokenArgs),
    /// Add, list or retire the keys of the tenant context (docs/THREAT_MODEL.md, "A tenant
    /// context the database verifies"). Needs the owner's DATABASE_URL.
    ContextKey(ContextKeyArgs),
    /// Check the database's security posture: one line per check, PASS, WARN or FAIL, with what to
    /// run to fix anything that is not PASS. Exit status 1 when any check fails (a warning alone
    /// exits 0).
    Doctor(DoctorArgs),
    /// Exit 0 when the local server answers GET /api/v1/health/live with 200, else 1 (for a
    /// container HEALTHCHECK).
    Healthcheck(ListenArgs),
}

/// `carevault context-key ...`.
#[derive(Debug, Args)]
pub struct ContextKeyArgs {
    /// The key command.
    #[command(subcommand)]
    pub command: ContextKeyCommand,
}

/// The key commands.
#[derive(Debug, Subcommand)]
pub enum ContextKeyCommand {
    /// Add the key in TENANT_CONTEXT_KEY (`<kid>:<64 hex>`) to the keys the database accepts.
    /// Adding the same key again changes nothing.
    Add,
    /// List the keys the database accepts: key id, when added, until when (never the key).
    List,
    /// Retire a key: proofs made with it stop verifying at once.
    Retire {
        /// The key id.
        kid: String,
    },
}

/// `--listen` of `serve` and `healthcheck`.
#[derive(Debug, Args)]
pub struct ListenArgs {
    /// The address to listen on (serve) or to check (healthcheck). Default: 0.0.0.0:$PORT when
    /// PORT is set, else 127.0.0.1:8080.
    #[arg(long, value_name = "ADDR:PORT")]
    pub listen: Option<String>,
}

/// `carevault doctor [--json]`.
#[derive(Debug, Args)]
pub struct DoctorArgs {
    /// Print a JSON array of checks (name, status, message, fix) instead of lines.
    #[arg(long)]
    pub json: bool,
}

/// `carevault tenant ...`.
#[derive(Debug, Args)]
pub struct TenantArgs {
    /// The tenant command.
    #[command(subcommand)]
    pub command: TenantCommand,
}

/// A tenant's status when created.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum InitialStatus {
    /// In use.
    Active,
    /// In use, on trial.
    Trial,
    /// Locked out until activated.
    Suspended,
}

/// Which tenants `tenant list` shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum)]
pub enum DeletedFilter {
    /// Only tenants that are not deleted.
    #[default]
    Exclude,
    /// Only soft-deleted tenants.
    Only,
    /// Both.
    Include,
}

/// The tenant commands (run on the platform path, audited in the tenant's log).
#[derive(Debug, Subcommand)]
pub enum TenantCommand {
    /// Create a tenant; prints its id.
    Create {
        /// The tenant's name (at most 255 characters).
        #[arg(long)]
        name: String,
        /// Its status.
        #[arg(long, value_enum, default_value_t = InitialStatus::Active)]
        status: InitialStatus,
    },
    /// List tenants, newest first.
    List {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
        /// Which tenants to show.
        #[arg(long, value_enum, default_value_t = DeletedFilter::Exclude)]
        deleted: DeletedFilter,
    },
    /// Suspend a tenant: its users are refused (403) until it is activated.
    Suspend {
        /// The tenant id.
        id: String,
    },
    /// Activate a suspended (or trial) tenant.
    Activate {
        /// The tenant id.
        id: String,
    },
    /// Soft-delete a tenant (restorable).
    Delete {
        /// The tenant id.
        id: String,
    },
    /// Restore a soft-deleted tenant.
    Restore {
        /// The tenant id.
        id: String,
    },
}

/// `carevault user ...`.
#[derive(Debug, Args)]
pub struct UserArgs {
    /// The user command.
    #[command(subcommand)]
    pub command: UserCommand,
}

/// The user commands.
#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Create a user in a tenant; prints its id.
    Create {
        /// The tenant id.
        #[arg(long)]
        tenant: String,
        /// Email, unique among the tenant's active users.
        #[arg(long)]
        email: String,
        /// admin, member or viewer.
        #[arg(long)]
        role: String,
        /// The identity provider's subject (`sub` of the user's tokens).
        #[arg(long)]
        sub: String,
        /// Display name.
        #[arg(long)]
        full_name: Option<String>,
    },
}

/// `carevault documents ...`.
#[derive(Debug, Args)]
pub struct DocumentsArgs {
    /// The documents command.
    #[command(subcommand)]
    pub command: DocumentsCommand,
}

/// The documents commands (tenant path, as the given user).
#[derive(Debug, Subcommand)]
pub enum DocumentsCommand {
    /// Import a JSON Lines file: one document per line, with the fields of POST /api/v1/documents,
    /// uploaded by --user. Inserted in batches of up to 1,000 (one `document.imported` audit row
    /// each). A bad line is reported on stderr by its number and skipped; with --strict any bad
    /// line means nothing is imported. Prints `imported N, skipped M`; exit status 1 when a line
    /// was bad.
    Import {
        /// The tenant id.
        #[arg(long)]
        tenant: String,
        /// The id of the uploading user, an active user of the tenant.
        #[arg(long)]
        user: String,
        /// All or nothing: one transaction for the whole file, rolled back on any bad line.
        #[arg(long)]
        strict: bool,
        /// The JSON Lines file.
        file: std::path::PathBuf,
    },
}

/// `carevault search ...`.
#[derive(Debug, Args)]
pub struct SearchArgs {
    /// The search command.
    #[command(subcommand)]
    pub command: SearchCommand,
}

/// The search commands (owner path: index DDL needs the table's owner).
#[derive(Debug, Subcommand)]
pub enum SearchCommand {
    /// Create the search index of every tenant that reached 1,000 searchable rows, drop those of
    /// tenants below 500 or deleted, and rebuild invalid ones (CREATE INDEX CONCURRENTLY: searches
    /// and writes go on). Waits for a pass already running elsewhere. Prints each change.
    /// `carevault serve` runs the same pass every SEARCH_INDEX_INTERVAL_SECONDS when it has the
    /// owner's URL; run this on a schedule when it does not.
    Reconcile,
}

/// `carevault audit ...`.
#[derive(Debug, Args)]
pub struct AuditArgs {
    /// The audit command.
    #[command(subcommand)]
    pub command: AuditCommand,
}

/// The audit chain commands, through the platform login (`carevault_ops` switching to
/// `carevault_sealer`).
#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Append every committed audit row that is not chained yet to its tenant's hash chain, sign a
    /// checkpoint of every head that moved (AUDIT_SIGNING_KEY) and keep the latest ones in the
    /// checkpoint directory (AUDIT_CHECKPOINT_DIR); print what was done. `carevault serve` does
    /// the same on a schedule; one sealer runs at a time (this one waits up to a minute).
    Seal,
    /// Check the live chain of every tenant (or one): each row against its entry, each entry
    /// against its predecessor, no row left out behind the sealer, and every signed checkpoint,
    /// in the database and in the checkpoint directory, against the chain. One line per tenant;
    /// exit status 1 when any chain is broken, naming the first bad sequence number and the kind
    /// of break (altered, missing, inserted or reordered rows, truncated tail, checkpoint that
    /// does not match or whose signature fails).
    Verify {
        /// Only this tenant (its id).
        #[arg(long)]
        tenant: Option<String>,
        /// Print a JSON array of verdicts (tenant_id, chained, head, checkpoint, unsealed, breaks).
        #[arg(long)]
        json: bool,
        /// A public key checkpoints may be signed with (64 hex; repeat for keys rotated out).
        /// Default: the public key of AUDIT_SIGNING_KEY (or of the key in the data directory).
        #[arg(long, value_name = "HEX")]
        public_key: Vec<String>,
        /// The checkpoint directory. Default: AUDIT_CHECKPOINT_DIR (or `<data dir>/audit-checkpoints`).
        #[arg(long, value_name = "DIR")]
        checkpoint_dir: Option<std::path::PathBuf>,
        /// Verify this export (`carevault audit export`) instead of the database, offline: only the
        /// file and the public key are read.
        #[arg(long, value_name = "FILE.jsonl", conflicts_with_all = ["tenant", "checkpoint_dir"])]
        file: Option<std::path::PathBuf>,
        /// With --file: the place the export starts at (an export made with --from); its first
        /// entry's predecessor is then taken on trust, and only its own checkpoints vouch for it.
        #[arg(long, value_name = "SEQ", default_value_t = 1, requires = "file")]
        from: i64,
    },
    /// Write one tenant's chain (entries, rows, checkpoints) as JSON lines on stdout, for
    /// `carevault audit verify --file` or any verifier written from docs/AUDIT_FORMAT.md. Seals
    /// and signs a checkpoint of the head first, and ends at the latest checkpoint (unless --to
    /// says otherwise), so that every exported entry is vouched for.
    Export {
        /// The tenant's id.
        #[arg(long)]
        tenant: String,
        /// The first sequence number (default 1).
        #[arg(long, value_name = "SEQ", default_value_t = 1)]
        from: i64,
        /// The last sequence number (default: the latest checkpoint's).
        #[arg(long, value_name = "SEQ")]
        to: Option<i64>,
    },
    /// Print the key id and the public key (64 hex) of AUDIT_SIGNING_KEY, which verifiers need.
    PublicKey,
}

/// `carevault token ...`.
#[derive(Debug, Args)]
pub struct TokenArgs {
    /// The token command.
    #[command(subcommand)]
    pub command: TokenCommand,
}

/// The token commands.
#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Mint an HS256 development token (refused in production); prints it alone on stdout.
    Mint {
        /// The tenant id (the token's tenant claim).
        #[arg(long)]
        tenant: String,
        /// The subject (matched to the user's external_idp_id).
        #[arg(long)]
        sub: String,
        /// Lifetime in seconds, at most JWT_MAX_LIFETIME_MINUTES.
        #[arg(long, default_value_t = 3600)]
        ttl: u64,
        /// The `email` claim (used when the user is provisioned just in time).
        #[arg(long)]
        email: Option<String>,
    },
}

/// `carevault migrate ...`.
#[derive(Debug, Args)]
pub struct MigrateArgs {
    /// The migration command.
    #[command(subcommand)]
    pub command: MigrateCommand,
}

/// The migration commands.
#[derive(Debug, Subcommand)]
pub enum MigrateCommand {
    /// Bootstrap (roles, pgvector) when connected as a superuser, then apply every pending
    /// migration. Safe to run from several processes at once.
    Up,
    /// Revert every migration above the target version. Roles and the pgvector extension are kept.
    Down {
        /// The version to go back to; 0 reverts everything.
        #[arg(long, allow_negative_numbers = true)]
        target: i64,
    },
    /// Show which migrations are applied.
    Status {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Print the bootstrap SQL (roles, pgvector) for a DBA to run as a superuser, when carevault's
    /// own URL is not a superuser.
    BootstrapSql,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn a_negative_target_parses_so_it_can_be_refused_with_a_clear_message() {
        let cli = Cli::try_parse_from(["carevault", "migrate", "down", "--target", "-1"]).expect("parses");
        assert!(matches!(cli.command, Command::Migrate(MigrateArgs { command: MigrateCommand::Down { target: -1 } })));
    }

    #[test]
    fn operator_commands_parse() {
        let cli = Cli::try_parse_from(["carevault", "serve", "--listen", "127.0.0.1:9"]).expect("parses");
        assert!(matches!(cli.command, Command::Serve(ListenArgs { listen: Some(ref l) }) if l == "127.0.0.1:9"));
        let cli =
            Cli::try_parse_from(["carevault", "tenant", "create", "--name", "A", "--status", "trial"]).expect("parses");
        assert!(matches!(
            cli.command,
            Command::Tenant(TenantArgs { command: TenantCommand::Create { status: InitialStatus::Trial, .. } })
        ));
        let cli = Cli::try_parse_from(["carevault", "tenant", "list", "--json", "--deleted", "only"]).expect("parses");
        assert!(matches!(
            cli.command,
            Command::Tenant(TenantArgs { command: TenantCommand::List { json: true, deleted: DeletedFilter::Only } })
        ));
        let cli = Cli::try_parse_from(["carevault", "token", "mint", "--tenant", "t", "--sub", "s"]).expect("parses");
        assert!(matches!(cli.command, Command::Token(TokenArgs { command: TokenCommand::Mint { ttl: 3600, .. } })));
        assert!(Cli::try_parse_from(["carevault", "tenant", "create", "--name", "A", "--status", "gone"]).is_err());
    }

    #[test]
    fn doctor_parses() {
        let cli = Cli::try_parse_from(["carevault", "doctor"]).expect("parses");
        assert!(matches!(cli.command, Command::Doctor(DoctorArgs { json: false })));
        let cli = Cli::try_parse_from(["carevault", "doctor", "--json"]).expect("parses");
        assert!(matches!(cli.command, Command::Doctor(DoctorArgs { json: true })));
    }
}
