use std::process::Command;

use nix::unistd::{Gid, Uid, User};

use crate::PgError;

/// The system user that runs PostgreSQL when carevault runs as root.
pub const SYSTEM_USER: &str = "carevault";

/// Serialises the creation of [`SYSTEM_USER`] between processes (root only; /run is root's).
const USERADD_LOCK: &str = "/run/carevault-useradd.lock";

/// Which user the PostgreSQL tools run as.
///
/// `initdb` and `postgres` refuse to run as root ("cannot be run as root"), so as root we run them
/// as [`SYSTEM_USER`], created on first use with `useradd --system`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunAs {
    /// The current (non-root) user.
    CurrentUser,
    /// An unprivileged system user, switched to with setuid/setgid when spawning.
    SystemUser {
        /// Its uid.
        uid: u32,
        /// Its primary gid.
        gid: u32,
    },
}

impl RunAs {
    /// The current user when it is not root; otherwise [`SYSTEM_USER`], creating it if missing.
    pub fn detect() -> Result<RunAs, PgError> {
        if !nix::unistd::geteuid().is_root() {
            return Ok(RunAs::CurrentUser);
        }
        let user = match lookup()? {
            Some(user) => user,
            None => {
                // Concurrent `useradd`s all exit 0 and rewrite /etc/passwd in turn, each with a
                // uid of its own choice (seen here with four parallel test processes): the uid a
                // process read could change under it. One creator at a time, then re-read.
                let lock_path = std::path::Path::new(USERADD_LOCK);
                let lock = crate::fsutil::lock_file(lock_path)?;
                lock.lock().map_err(PgError::io("locking", lock_path))?;
                if lookup()?.is_none() {
                    create_system_user()?;
                }
                drop(lock);
                lookup()?.ok_or_else(|| PgError::SystemUser {
                    user: SYSTEM_USER,
                    reason: "useradd succeeded but the user is not in the user database".into(),
                })?
            }
        };
        Ok(RunAs::SystemUser { uid: user.uid.as_raw(), gid: user.gid.as_raw() })
    }

    /// The uid that owns PostgreSQL's files.
    pub fn uid(&self) -> u32 {
        match self {
            RunAs::CurrentUser => nix::unistd::geteuid().as_raw(),
            RunAs::SystemUser { uid, .. } => *uid,
        }
    }

    /// A command that runs `program` as this user.
    pub(crate) fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        use std::os::unix::process::CommandExt;
        let mut command = Command::new(program);
        // A relative working directory (e.g. root's home) may be unreadable for the system user;
        // initdb and pg_ctl then print "could not change directory" warnings.
        command.current_dir("/");
        if let RunAs::SystemUser { uid, gid } = self {
            command.uid(*uid).gid(*gid).env("HOME", "/").env("USER", SYSTEM_USER);
        }
        command
    }

    /// Changes the owner of an open file to this user (no-op for the current user).
    pub(crate) fn fchown(&self, file: &std::fs::File, path: &std::path::Path) -> Result<(), PgError> {
        if let RunAs::SystemUser { uid, gid } = self {
            std::os::unix::fs::fchown(file, Some(*uid), Some(*gid)).map_err(PgError::io("changing owner of", path))?;
        }
        Ok(())
    }

    /// Changes the owner of `path` to this user (no-op for the current user). Only for paths we
    /// just created ourselves in a directory only root can write.
    pub(crate) fn chown(&self, path: &std::path::Path) -> Result<(), PgError> {
        if let RunAs::SystemUser { uid, gid } = self {
            nix::unistd::chown(path, Some(Uid::from_raw(*uid)), Some(Gid::from_raw(*gid)))
                .map_err(|errno| PgError::io("changing owner of", path)(errno.into()))?;
        }
        Ok(())
    }
}

fn lookup() -> Result<Option<User>, PgError> {
    User::from_name(SYSTEM_USER)
        .map_err(|errno| PgError::SystemUser { user: SYSTEM_USER, reason: format!("lookup failed: {errno}") })
}

fn create_system_user() -> Result<(), PgError> {
    let output = Command::new("useradd")
        .args(["--system", "--no-create-home", "--home-dir", "/nonexistent", "--shell", "/usr/sbin/nologin"])
        .arg(SYSTEM_USER)
        .output()
        .map_err(|e| PgError::SystemUser { user: SYSTEM_USER, reason: format!("cannot run useradd: {e}") })?;
    // Exit status 9: the user was created meanwhile by another process (useradd(8)).
    if output.status.success() || output.status.code() == Some(9) {
        return Ok(());
    }
    Err(PgError::SystemUser {
        user: SYSTEM_USER,
        reason: format!("useradd failed ({}): {}", output.status, String::from_utf8_lossy(&output.stderr).trim()),
    })
}
