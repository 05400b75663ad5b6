//! carevault-pg's cluster lifecycle on a real PostgreSQL: create, start, reuse, and stop only
//! when nobody else uses the server.
//!
//! These tests live here rather than in carevault-pg because they need this crate's
//! [`ScratchDir`] (a directory the `carevault` system user can reach, cleaned up with any server
//! left running in it), and carevault-testdb depends on carevault-pg: a dev-dependency the other
//! way round would be a cycle.

use carevault_pg::{Cluster, ClusterOptions, Paths, PgBinaries, PgError};
use carevault_testdb::{ScratchDir, is_running, stop_postmaster};

fn socket_exists(cluster: &Cluster) -> bool {
    cluster.socket_dir().join(".s.PGSQL.5432").exists()
}

#[test]
fn start_reuse_and_stop_only_when_unused() {
    let paths = Paths::from_env().expect("paths");
    let binaries = PgBinaries::locate(&paths).expect("PostgreSQL binaries");
    let mut temp = ScratchDir::new("cluster");
    let data_dir = temp.data_dir();
    let options = ClusterOptions::disposable(data_dir.clone());

    // Creates (initdb) and starts.
    let starter = Cluster::start_or_reuse(&binaries, &options).expect("first start");
    temp.remember_socket_dir(starter.socket_dir());
    assert!(starter.started_here(), "the first caller starts the server");
    let starter_socket = starter.socket_dir().to_path_buf();
    assert!(data_dir.join("PG_VERSION").is_file(), "initdb ran");
    assert!(is_running(&data_dir) && socket_exists(&starter), "the server listens on its socket");
    assert!(
        starter.url("postgres", "postgres").contains(&format!("host={}", starter.socket_dir().display())),
        "the URL goes through the private socket"
    );

    // A second handle reuses; its stop leaves the server running.
    let reuser = Cluster::start_or_reuse(&binaries, &options).expect("reuse");
    assert!(!reuser.started_here(), "a running server is reused, not started again");
    assert_eq!(reuser.socket_dir(), starter.socket_dir());
    assert!(!reuser.stop().expect("stop of a reuser"), "a reuser never stops the server");
    assert!(is_running(&data_dir) && socket_exists(&starter), "still running after the reuser's stop");

    // A socket directory that others may enter is refused, not used: its name is in /tmp for
    // anyone to list, and another user could re-create it if it were removed.
    use std::os::unix::fs::PermissionsExt;
    let mode = |bits| std::fs::set_permissions(starter.socket_dir(), std::fs::Permissions::from_mode(bits));
    mode(0o755).expect("chmod");
    assert!(Cluster::start_or_reuse(&binaries, &options).is_err(), "a socket directory open to others was used");
    mode(0o700).expect("chmod");

    // The starter does not stop a server that another handle still uses.
    let user = Cluster::start_or_reuse(&binaries, &options).expect("reuse");
    assert!(!user.started_here());
    assert!(!starter.stop().expect("stop of the starter"), "still in use: not stopped");
    assert!(is_running(&data_dir) && socket_exists(&user), "still running for the other handle");
    drop(user);

    // Nobody holds a handle now, and nobody who started it is left to stop it: stop it by hand,
    // then start it again from the existing data directory.
    let first_socket_dir = starter_socket.clone();
    stop_postmaster(&data_dir);
    assert!(!is_running(&data_dir), "stopped by hand");
    let starter = Cluster::start_or_reuse(&binaries, &options).expect("restart");
    temp.remember_socket_dir(starter.socket_dir());
    assert!(starter.started_here(), "a stopped server is started again");
    // Each start takes a new, unpredictable socket directory: another local user cannot create it
    // first and so stop the server from starting.
    assert_ne!(starter.socket_dir(), first_socket_dir, "a predictable socket directory");
    let name = starter.socket_dir().file_name().unwrap().to_string_lossy().to_string();
    let random = name.rsplit('-').next().unwrap();
    assert!(random.len() == 16 && random.chars().all(|c| c.is_ascii_hexdigit()), "{name}");
    let other = Cluster::start_or_reuse(&binaries, &options).expect("reuse");
    assert!(!other.started_here());
    drop(other);

    // Once every other handle is gone, the starter's stop stops it.
    let socket = starter.socket_dir().join(".s.PGSQL.5432");
    assert!(starter.stop().expect("stop of the starter"), "unused: stopped");
    assert!(!is_running(&data_dir), "the pid file is gone");
    assert!(!socket.exists(), "the socket is gone");
}

#[test]
fn a_bin_dir_without_postgres_is_refused() {
    let temp = ScratchDir::new("bin");
    let empty = temp.path().join("bin");
    std::fs::create_dir_all(&empty).expect("creating an empty bin dir");
    match PgBinaries::from_bin_dir(&empty) {
        Err(PgError::BadBinDir { bin_dir, reason }) => {
            assert_eq!(bin_dir, empty);
            assert!(reason.contains("initdb"), "names the missing tool: {reason}");
        }
        other => panic!("expected BadBinDir, got {other:?}"),
    }
}

#[test]
fn a_symlink_planted_in_the_data_dir_is_never_followed() {
    let paths = Paths::from_env().expect("paths");
    let binaries = PgBinaries::locate(&paths).expect("PostgreSQL binaries");
    let mut temp = ScratchDir::new("symlink");
    let data_dir = temp.data_dir();
    let options = ClusterOptions::disposable(data_dir.clone());
    let cluster = Cluster::start_or_reuse(&binaries, &options).expect("first start");
    temp.remember_socket_dir(cluster.socket_dir());
    assert!(cluster.stop().expect("stop"));

    // The system user owns the data directory and could replace our settings file with a link
    // to a file of root's; the next start (as root) must replace the link, not write through it.
    let victim = temp.path().join("victim");
    std::fs::write(&victim, "precious\n").expect("writing the victim file");
    let settings = data_dir.join("carevault.conf");
    std::fs::remove_file(&settings).expect("removing the settings file");
    std::os::unix::fs::symlink(&victim, &settings).expect("planting the symlink");

    let cluster = Cluster::start_or_reuse(&binaries, &options).expect("start with a planted symlink");
    assert_eq!(std::fs::read_to_string(&victim).expect("reading the victim"), "precious\n");
    assert!(!std::fs::symlink_metadata(&settings).expect("settings").file_type().is_symlink());
    assert!(std::fs::read_to_string(&settings).expect("settings").contains("listen_addresses = ''"));
    assert!(cluster.stop().expect("stop"));
}
