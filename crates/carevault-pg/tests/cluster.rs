//! Cluster lifecycle on a real PostgreSQL: create, start, reuse, and stop only when nobody else
//! uses the server.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use carevault_pg::{Cluster, ClusterOptions, Paths, PgBinaries, PgError};

/// A data directory of its own under the cache directory (which, as root, the `carevault` system
/// user can reach; a temp dir under root's home would not do). Removed on drop, after stopping a
/// server that a failed assertion left running.
struct TempDataDir {
    root: PathBuf,
    data_dir: PathBuf,
    socket_dir: Option<PathBuf>,
}

impl TempDataDir {
    fn new(paths: &Paths) -> TempDataDir {
        let nanos = SystemTime::now().duration_since(UNIX_EPOCH).expect("the clock is after 1970").subsec_nanos();
        let root = paths.cache_dir.join("test-tmp").join(format!("cluster-{}-{nanos:08x}", std::process::id()));
        std::fs::create_dir_all(&root).expect("creating the temporary directory");
        TempDataDir { data_dir: root.join("data"), root, socket_dir: None }
    }
}

impl Drop for TempDataDir {
    fn drop(&mut self) {
        if is_running(&self.data_dir) {
            kill_postmaster(&self.data_dir);
        }
        let _ = std::fs::remove_dir_all(&self.root);
        if let Some(socket_dir) = &self.socket_dir {
            let _ = std::fs::remove_dir_all(socket_dir);
        }
    }
}

/// Whether a server runs on `data_dir`: its pid file exists (the server removes it on shutdown).
/// `pg_ctl status` would be the tool, but it refuses to run as root.
fn is_running(data_dir: &Path) -> bool {
    data_dir.join("postmaster.pid").exists()
}

/// Stops a server without a [`Cluster`] handle (fast shutdown, SIGINT), and waits for it.
fn kill_postmaster(data_dir: &Path) {
    let pid_file = data_dir.join("postmaster.pid");
    let Ok(text) = std::fs::read_to_string(&pid_file) else { return };
    let Some(pid) = text.lines().next().map(str::trim) else { return };
    let _ = std::process::Command::new("kill").args(["-INT", pid]).status();
    let deadline = Instant::now() + Duration::from_secs(60);
    while pid_file.exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn socket_exists(cluster: &Cluster) -> bool {
    cluster.socket_dir().join(".s.PGSQL.5432").exists()
}

#[test]
fn start_reuse_and_stop_only_when_unused() {
    let paths = Paths::from_env().expect("paths");
    let binaries = PgBinaries::locate(&paths).expect("PostgreSQL binaries");
    let mut temp = TempDataDir::new(&paths);
    let options = ClusterOptions::disposable(temp.data_dir.clone());

    // Creates (initdb) and starts.
    let starter = Cluster::start_or_reuse(&binaries, &options).expect("first start");
    temp.socket_dir = Some(starter.socket_dir().to_path_buf());
    assert!(starter.started_here(), "the first caller starts the server");
    assert!(temp.data_dir.join("PG_VERSION").is_file(), "initdb ran");
    assert!(is_running(&temp.data_dir) && socket_exists(&starter), "the server listens on its socket");
    assert!(
        starter.url("postgres", "postgres").contains(&format!("host={}", starter.socket_dir().display())),
        "the URL goes through the private socket"
    );

    // A second handle reuses; its stop leaves the server running.
    let reuser = Cluster::start_or_reuse(&binaries, &options).expect("reuse");
    assert!(!reuser.started_here(), "a running server is reused, not started again");
    assert_eq!(reuser.socket_dir(), starter.socket_dir());
    assert!(!reuser.stop().expect("stop of a reuser"), "a reuser never stops the server");
    assert!(is_running(&temp.data_dir) && socket_exists(&starter), "still running after the reuser's stop");

    // The starter does not stop a server that another handle still uses.
    let user = Cluster::start_or_reuse(&binaries, &options).expect("reuse");
    assert!(!user.started_here());
    assert!(!starter.stop().expect("stop of the starter"), "still in use: not stopped");
    assert!(is_running(&temp.data_dir) && socket_exists(&user), "still running for the other handle");
    drop(user);

    // Nobody holds a handle now, and nobody who started it is left to stop it: stop it by hand,
    // then start it again from the existing data directory.
    kill_postmaster(&temp.data_dir);
    assert!(!is_running(&temp.data_dir), "stopped by hand");
    let starter = Cluster::start_or_reuse(&binaries, &options).expect("restart");
    assert!(starter.started_here(), "a stopped server is started again");
    let other = Cluster::start_or_reuse(&binaries, &options).expect("reuse");
    assert!(!other.started_here());
    drop(other);

    // Once every other handle is gone, the starter's stop stops it.
    let socket = starter.socket_dir().join(".s.PGSQL.5432");
    assert!(starter.stop().expect("stop of the starter"), "unused: stopped");
    assert!(!is_running(&temp.data_dir), "the pid file is gone");
    assert!(!socket.exists(), "the socket is gone");
}

#[test]
fn a_bin_dir_without_postgres_is_refused() {
    let paths = Paths::from_env().expect("paths");
    let temp = TempDataDir::new(&paths);
    let empty = temp.root.join("bin");
    std::fs::create_dir_all(&empty).expect("creating an empty bin dir");
    match PgBinaries::from_bin_dir(&empty) {
        Err(PgError::BadBinDir { bin_dir, reason }) => {
            assert_eq!(bin_dir, empty);
            assert!(reason.contains("initdb"), "names the missing tool: {reason}");
        }
        other => panic!("expected BadBinDir, got {other:?}"),
    }
}
