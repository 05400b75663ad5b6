use std::path::PathBuf;

use crate::PgError;

/// The directories carevault uses on this machine (docs/ARCHITECTURE.md, "Local PostgreSQL").
///
/// | | as a normal user | as root |
/// |---|---|---|
/// | cache (binaries, test cluster) | `$XDG_CACHE_HOME/carevault` (`~/.cache/carevault`) | `/var/cache/carevault` |
/// | data (`serve`) | `$XDG_DATA_HOME/carevault` (`~/.local/share/carevault`) | `/var/lib/carevault` |
///
/// `CAREVAULT_CACHE_DIR`, `CAREVAULT_DATA_DIR` and `CAREVAULT_PG_BIN` override them. Root gets
/// system directories because PostgreSQL then runs as the system user `carevault`, which cannot
/// enter root's home directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Paths {
    /// Where the wheel is installed and the test cluster lives; disposable.
    pub cache_dir: PathBuf,
    /// Where `serve`'s embedded cluster keeps its data; persistent.
    pub data_dir: PathBuf,
    /// An explicit PostgreSQL bin directory (`CAREVAULT_PG_BIN`), skipping the wheel.
    pub pg_bin: Option<PathBuf>,
}

impl Paths {
    /// Reads the paths from the environment, with the defaults above.
    pub fn from_env() -> Result<Paths, PgError> {
        let var = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty()).map(PathBuf::from);
        let is_root = nix::unistd::geteuid().is_root();
        let home = || var("HOME").ok_or(PgError::NoHome);
        let cache_dir = match var("CAREVAULT_CACHE_DIR") {
            Some(dir) => dir,
            None if is_root => PathBuf::from("/var/cache/carevault"),
            None => match var("XDG_CACHE_HOME") {
                Some(dir) => dir.join("carevault"),
                None => home()?.join(".cache/carevault"),
            },
        };
        let data_dir = match var("CAREVAULT_DATA_DIR") {
            Some(dir) => dir,
            None if is_root => PathBuf::from("/var/lib/carevault"),
            None => match var("XDG_DATA_HOME") {
                Some(dir) => dir.join("carevault"),
                None => home()?.join(".local/share/carevault"),
            },
        };
        Ok(Paths { cache_dir, data_dir, pg_bin: var("CAREVAULT_PG_BIN") })
    }
}
