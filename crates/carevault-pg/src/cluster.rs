use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::binaries::tail;
use crate::fsutil::{
    check_private_dir, check_reachable, create_private_dir, create_shared_dir, lock_file, read_owned_file,
    replace_owned_file,
};
use crate::{PgBinaries, PgError, RunAs};

/// The cluster's bootstrap superuser (`initdb -U`).
pub const SUPERUSER: &str = "postgres";
/// The port number, which with Unix sockets only names the socket file (`.s.PGSQL.5432`); every
/// cluster has its own socket directory, so they never collide.
const PORT: u16 = 5432;

/// How to create a cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterOptions {
    /// The data directory (`PGDATA`).
    pub data_dir: PathBuf,
    /// Crash safety (`fsync`, `full_page_writes`). Off only for disposable test clusters.
    pub durable: bool,
    /// `max_connections`.
    pub max_connections: u32,
}

impl ClusterOptions {
    /// A cluster whose data must survive crashes (`carevault serve`'s embedded default).
    pub fn persistent(data_dir: PathBuf) -> ClusterOptions {
        ClusterOptions { data_dir, durable: true, max_connections: 100 }
    }

    /// A cluster for tests: no fsync (a crash loses it, which is fine), more connections because
    /// every test process opens its own pools.
    pub fn disposable(data_dir: PathBuf) -> ClusterOptions {
        ClusterOptions { data_dir, durable: false, max_connections: 300 }
    }
}

/// A running local cluster, listening on a private Unix socket only.
///
/// Authentication is `trust` on that socket; what keeps other local users out is the socket
/// directory, mode 0700 and owned by the user PostgreSQL runs as (root can still connect).
/// Nothing listens on TCP.
#[derive(Debug)]
pub struct Cluster {
    data_dir: PathBuf,
    socket_dir: PathBuf,
    pg_ctl: PathBuf,
    run_as: RunAs,
    started_here: bool,
    /// Held (shared) for as long as this process uses the cluster, so that [`Cluster::stop`] in
    /// another process can tell that the cluster is still in use.
    usage: File,
}

impl Cluster {
    /// Creates the cluster if `options.data_dir` holds none, starts it if it is not running, and
    /// otherwise reuses the running server.
    ///
    /// Safe to call from several processes at once: everything happens under an exclusive lock on
    /// `<data_dir>.lock`.
    pub fn start_or_reuse(binaries: &PgBinaries, options: &ClusterOptions) -> Result<Cluster, PgError> {
        let run_as = RunAs::detect()?;
        let data_dir = &options.data_dir;
        check_reachable(binaries.bin_dir(), &run_as)?;
        check_reachable(data_dir, &run_as)?;
        if let Some(parent) = data_dir.parent() {
            create_shared_dir(parent)?;
        }
        let start_lock = StartLock::acquire(data_dir)?;
        let usage_path = sibling(data_dir, "users");
        let usage = lock_file(&usage_path)?;
        usage.lock_shared().map_err(PgError::io("locking", &usage_path))?;

        if !data_dir.join("PG_VERSION").is_file() {
            create_private_dir(data_dir, &run_as)?;
            initdb(binaries, data_dir, &run_as)?;
        }
        let mut cluster = Cluster {
            data_dir: data_dir.clone(),
            socket_dir: PathBuf::new(),
            pg_ctl: binaries.tool("pg_ctl"),
            run_as,
            started_here: false,
            usage,
        };
        if cluster.is_running()? {
            cluster.socket_dir = running_socket_dir(data_dir, &cluster.run_as)?;
        } else {
            cluster.socket_dir = new_socket_dir(&cluster.run_as)?;
            write_settings(data_dir, &cluster.socket_dir, options, &cluster.run_as)?;
            cluster.pg_ctl_start()?;
            cluster.started_here = true;
        }
        drop(start_lock);
        Ok(cluster)
    }

    /// A connection URL for `user` on `database`, through the cluster's Unix socket.
    pub fn url(&self, user: &str, database: &str) -> String {
        format!("postgres://{user}@localhost/{database}?host={}&port={PORT}", self.socket_dir.display())
    }

    /// The directory holding the server's Unix socket.
    pub fn socket_dir(&self) -> &Path {
        &self.socket_dir
    }

    /// The data directory.
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// Whether this process started the server (rather than reusing a running one).
    pub fn started_here(&self) -> bool {
        self.started_here
    }

    /// Stops the server if this process started it and no other process is using it; otherwise
    /// leaves it running. Returns whether it was stopped.
    pub fn stop(self) -> Result<bool, PgError> {
        let start_lock = StartLock::acquire(&self.data_dir)?;
        let Cluster { data_dir, socket_dir, pg_ctl, run_as, started_here, usage } = self;
        drop(usage);
        if !started_here {
            return Ok(false);
        }
        // Another process holds a shared lock while it uses the cluster: then try_lock fails.
        let usage_path = sibling(&data_dir, "users");
        let probe = lock_file(&usage_path)?;
        if probe.try_lock().is_err() {
            tracing::info!("embedded PostgreSQL left running: another process is using it");
            return Ok(false);
        }
        let mut command = run_as.command(&pg_ctl);
        command.arg("stop").arg("-D").arg(&data_dir).args(["-m", "fast", "-w", "-t", "60"]);
        run(command, &data_dir, &run_as)?;
        // The server removed its socket and lock file; remove the then empty directory from /tmp
        // (remove_dir refuses a directory that is not empty).
        let _ = std::fs::remove_dir(&socket_dir);
        drop(start_lock);
        Ok(true)
    }

    fn is_running(&self) -> Result<bool, PgError> {
        // pg_ctl status: 0 = running, 3 = not running (a stale postmaster.pid counts as not
        // running), 4 = no accessible data directory.
        let status = self
            .run_as
            .command(&self.pg_ctl)
            .arg("status")
            .arg("-D")
            .arg(&self.data_dir)
            .output()
            .map_err(PgError::io("running", &self.pg_ctl))?
            .status;
        Ok(status.success())
    }

    fn pg_ctl_start(&self) -> Result<(), PgError> {
        let mut command = self.run_as.command(&self.pg_ctl);
        command
            .arg("start")
            .arg("-D")
            .arg(&self.data_dir)
            .arg("-l")
            .arg(self.data_dir.join("server.log"))
            .args(["-w", "-t", "120"]);
        run(command, &self.data_dir, &self.run_as)
    }
}

/// An exclusive lock on `<data_dir>.lock`, serialising creation, start and stop.
struct StartLock {
    _file: File,
}

impl StartLock {
    fn acquire(data_dir: &Path) -> Result<StartLock, PgError> {
        let path = sibling(data_dir, "lock");
        let file = lock_file(&path)?;
        file.lock().map_err(PgError::io("locking", &path))?;
        Ok(StartLock { _file: file })
    }
}

/// `<data_dir>.<extension>`, beside the data directory (initdb wants the data directory empty).
fn sibling(data_dir: &Path, extension: &str) -> PathBuf {
    let mut name = data_dir.file_name().unwrap_or_default().to_os_string();
    name.push(".");
    name.push(extension);
    data_dir.with_file_name(name)
}

/// A new socket directory for a server about to start: under /tmp, because a Unix socket path is
/// limited to about 107 bytes (`sun_path`), which a data directory under a deep home directory
/// would exceed; with a random name, because a predictable one could be created first by another
/// local user, and the server could then not start (created here, mode 0700, or refused).
fn new_socket_dir(run_as: &RunAs) -> Result<PathBuf, PgError> {
    let mut random = [0u8; 8];
    File::open("/dev/urandom")
        .and_then(|mut source| source.read_exact(&mut random))
        .map_err(PgError::io("reading", Path::new("/dev/urandom")))?;
    let name: String = random.iter().map(|byte| format!("{byte:02x}")).collect();
    let dir = PathBuf::from(format!("/tmp/carevault-{}-{name}", run_as.uid()));
    create_private_dir(&dir, run_as)?;
    Ok(dir)
}

/// The socket directory of the server running on `data_dir`: the fifth line of its
/// `postmaster.pid` (PostgreSQL writes the first of `unix_socket_directories` there).
fn running_socket_dir(data_dir: &Path, run_as: &RunAs) -> Result<PathBuf, PgError> {
    let pid_file = data_dir.join("postmaster.pid");
    let text = read_owned_file(&pid_file, run_as)?;
    match text.lines().nth(4).map(str::trim).filter(|dir| dir.starts_with('/')) {
        Some(dir) => {
            let dir = PathBuf::from(dir);
            check_private_dir(&dir, run_as)?;
            Ok(dir)
        }
        None => Err(PgError::CommandFailed {
            command: format!("reading {}", pid_file.display()),
            status: "no socket directory on its fifth line".into(),
            output: String::new(),
        }),
    }
}

fn initdb(binaries: &PgBinaries, data_dir: &Path, run_as: &RunAs) -> Result<(), PgError> {
    let mut command = run_as.command(binaries.tool("initdb"));
    command.arg("-D").arg(data_dir).args([
        "-U",
        SUPERUSER,
        "--auth-local=trust",
        "--auth-host=reject",
        "--encoding=UTF8",
        "--locale=C",
    ]);
    run(command, data_dir, run_as)?;
    // Our settings live in their own file, rewritten at every start.
    let conf = data_dir.join("postgresql.conf");
    let mut text = read_owned_file(&conf, run_as)?;
    text.push_str("\ninclude_if_exists = 'carevault.conf'\n");
    replace_owned_file(&conf, &text, run_as)
}

fn write_settings(data_dir: &Path, socket_dir: &Path, options: &ClusterOptions, run_as: &RunAs) -> Result<(), PgError> {
    let durable = if options.durable { "on" } else { "off" };
    let settings = format!(
        "# Written by carevault at every start; edit carevault-pg instead.\n\
         listen_addresses = ''\n\
         port = {PORT}\n\
         unix_socket_directories = '{socket}'\n\
         unix_socket_permissions = 0700\n\
         max_connections = {max_connections}\n\
         fsync = {durable}\n\
         full_page_writes = {durable}\n\
         synchronous_commit = {durable}\n\
         # Never log statements: they carry PHI.\n\
         log_statement = 'none'\n\
         log_min_duration_statement = -1\n",
        socket = socket_dir.display(),
        max_connections = options.max_connections,
    );
    let path = data_dir.join("carevault.conf");
    replace_owned_file(&path, &settings, run_as)
}

fn run(mut command: Command, data_dir: &Path, run_as: &RunAs) -> Result<(), PgError> {
    let output = command.output().map_err(|e| PgError::CommandFailed {
        command: format!("{command:?}"),
        status: "not started".into(),
        output: e.to_string(),
    })?;
    if output.status.success() {
        return Ok(());
    }
    // The log is the system user's file: never follow a symlink planted there into the error text.
    let log = read_owned_file(&data_dir.join("server.log"), run_as).unwrap_or_default();
    Err(PgError::CommandFailed {
        command: format!("{command:?}"),
        status: output.status.to_string(),
        output: format!(
            "{}{}\n{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr),
            tail(&log, 20)
        ),
    })
}
