//! Scratch directories for tests that need a cluster of their own (lifecycle, bootstrap races).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use carevault_pg::Paths;

/// A directory of its own under `<cache_dir>/test-tmp` (which, as root, the `carevault` system
/// user can reach; a temp dir under root's home would not do). On drop it stops a server left
/// running on [`ScratchDir::data_dir`] by a failed assertion, then removes everything, including
/// a socket directory registered with [`ScratchDir::remember_socket_dir`].
#[derive(Debug)]
pub struct ScratchDir {
    root: PathBuf,
    socket_dir: Option<PathBuf>,
}

impl ScratchDir {
    /// Creates `<cache_dir>/test-tmp/<label>-<pid>-<random>`.
    pub fn new(label: &str) -> ScratchDir {
        let paths = Paths::from_env().expect("carevault-testdb: finding the carevault directories");
        let name = format!("{label}-{}-{}", std::process::id(), &uuid::Uuid::new_v4().simple().to_string()[..8]);
        let root = paths.cache_dir.join("test-tmp").join(name);
        std::fs::create_dir_all(&root).expect("carevault-testdb: creating a scratch directory");
        ScratchDir { root, socket_dir: None }
    }

    /// The directory itself.
    pub fn path(&self) -> &Path {
        &self.root
    }

    /// `<path>/data`, the place for a cluster's data directory (created by the cluster).
    pub fn data_dir(&self) -> PathBuf {
        self.root.join("data")
    }

    /// Removes `socket_dir` too on drop (it lives under /tmp, outside this directory).
    pub fn remember_socket_dir(&mut self, socket_dir: &Path) {
        self.socket_dir = Some(socket_dir.to_path_buf());
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        stop_postmaster(&self.data_dir());
        let _ = std::fs::remove_dir_all(&self.root);
        if let Some(socket_dir) = &self.socket_dir {
            let _ = std::fs::remove_dir_all(socket_dir);
        }
    }
}

/// Whether a server runs on `data_dir`: its pid file exists (the server removes it on shutdown).
/// `pg_ctl status` would be the tool, but it refuses to run as root.
pub fn is_running(data_dir: &Path) -> bool {
    data_dir.join("postmaster.pid").exists()
}

/// Stops a server without a [`carevault_pg::Cluster`] handle (fast shutdown, SIGINT), and waits
/// for it to remove its pid file.
pub fn stop_postmaster(data_dir: &Path) {
    let pid_file = data_dir.join("postmaster.pid");
    let Ok(text) = std::fs::read_to_string(&pid_file) else { return };
    // The pid file belongs to the system user: accept only a plain process id (a "-1" would signal
    // every process).
    let Some(pid) = text.lines().next().and_then(|line| line.trim().parse::<u32>().ok()).filter(|pid| *pid > 1) else {
        return;
    };
    // Nor any other process (as root, a pid written there could be anyone's): only a `postgres`
    // process of the user who owns the data directory.
    if !is_postgres_of_owner(pid, data_dir) {
        return;
    }
    let _ = std::process::Command::new("kill").args(["-INT", &pid.to_string()]).status();
    let deadline = Instant::now() + Duration::from_secs(60);
    while pid_file.exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Whether `pid` is a `postgres` process running as the owner of `data_dir`.
fn is_postgres_of_owner(pid: u32, data_dir: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    let process = Path::new("/proc").join(pid.to_string());
    let (Ok(process_meta), Ok(data_meta)) = (std::fs::metadata(&process), std::fs::symlink_metadata(data_dir)) else {
        return false;
    };
    let name = std::fs::read_to_string(process.join("comm")).unwrap_or_default();
    process_meta.uid() == data_meta.uid() && name.trim_end() == "postgres"
}

#[cfg(test)]
mod tests {
    use super::is_postgres_of_owner;

    #[test]
    fn only_a_postgres_process_of_the_data_directorys_owner_is_signalled() {
        // This test process is not postgres; pid 1 is not postgres either.
        let here = std::env::temp_dir();
        assert!(!is_postgres_of_owner(std::process::id(), &here));
        assert!(!is_postgres_of_owner(1, &here));
        assert!(!is_postgres_of_owner(u32::MAX, &here));
    }
}
