//! The command line (DESIGN §7.2). `serve`, `doctor`, `tenant`, `user`, `token` and
//! `healthcheck` join [`Command`] as they are built.

use clap::{Args, Parser, Subcommand};

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
    /// Apply, revert or inspect the schema migrations.
    Migrate(MigrateArgs),
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
}
