//! The development HS256 secret of the embedded default: generated once, kept in
//! `<data_dir>/dev-jwt-secret` (mode 0600), shared by `serve` and `token mint`. It is never
//! printed or logged; only the tokens signed with it are.

use std::fs::{self, OpenOptions};
use std::io::{ErrorKind, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};

/// The file name under the data directory.
pub const FILE_NAME: &str = "dev-jwt-secret";

/// The secret's path under `data_dir`.
pub fn path(data_dir: &Path) -> PathBuf {
    data_dir.join(FILE_NAME)
}

/// Reads the secret under `data_dir`, generating it first when it does not exist. Safe when
/// several processes do this at once: the file appears complete or not at all (written aside,
/// then hard-linked into place, which fails rather than overwrites).
pub fn load_or_create(data_dir: &Path) -> anyhow::Result<String> {
    let path = path(data_dir);
    if let Some(secret) = read(&path)? {
        return Ok(secret);
    }
    fs::create_dir_all(data_dir).with_context(|| format!("cannot create the data directory {}", data_dir.display()))?;
    let staging = data_dir.join(format!(".{FILE_NAME}.{}", std::process::id()));
    let result = write_new(&staging).and_then(|()| match fs::hard_link(&staging, &path) {
        Ok(()) => {
            tracing::info!(path = %path.display(), "generated a development JWT secret");
            Ok(())
        }
        // Another process won the race: use its secret.
        Err(e) if e.kind() == ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e).with_context(|| format!("cannot create {}", path.display())),
    });
    let _ = fs::remove_file(&staging);
    result?;
    read(&path)?.with_context(|| format!("{} vanished while it was being created", path.display()))
}

fn write_new(path: &Path) -> anyhow::Result<()> {
    // Two v4 UUIDs: 244 bits from the operating system's generator, as 64 hex characters.
    let secret = format!("{}{}", uuid::Uuid::new_v4().simple(), uuid::Uuid::new_v4().simple());
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    file.write_all(secret.as_bytes())
        .and_then(|()| file.sync_all())
        .with_context(|| format!("cannot write {}", path.display()))
}

fn read(path: &Path) -> anyhow::Result<Option<String>> {
    let text = match fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    };
    let mode = fs::metadata(path).with_context(|| format!("cannot inspect {}", path.display()))?.permissions().mode();
    if mode & 0o077 != 0 {
        tracing::warn!(path = %path.display(), "the development JWT secret was readable by others; restricting it to mode 0600");
        fs::set_permissions(path, fs::Permissions::from_mode(0o600))
            .with_context(|| format!("cannot restrict the permissions of {}", path.display()))?;
    }
    let secret = text.trim().to_owned();
    if secret.len() < 32 {
        bail!("{} holds no usable secret (fewer than 32 bytes): delete it and a new one is generated", path.display());
    }
    Ok(Some(secret))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch() -> PathBuf {
        let dir = std::env::temp_dir().join(format!("carevault-dev-secret-{}", uuid::Uuid::new_v4().simple()));
        fs::create_dir_all(&dir).expect("scratch dir");
        dir
    }

    #[test]
    fn the_secret_is_generated_once_private_and_kept() {
        let dir = scratch();
        let first = load_or_create(&dir).expect("generated");
        assert_eq!(first.len(), 64);
        let mode = fs::metadata(path(&dir)).expect("exists").permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(load_or_create(&dir).expect("read back"), first);
        let leftovers: Vec<_> =
            fs::read_dir(&dir).expect("list").filter_map(Result::ok).map(|e| e.file_name()).collect();
        assert_eq!(leftovers, [FILE_NAME], "no staging file is left behind");
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_readable_secret_is_restricted_and_a_short_one_refused() {
        let dir = scratch();
        fs::write(path(&dir), "x".repeat(40)).expect("write");
        fs::set_permissions(path(&dir), fs::Permissions::from_mode(0o644)).expect("chmod");
        assert_eq!(load_or_create(&dir).expect("read"), "x".repeat(40));
        assert_eq!(fs::metadata(path(&dir)).expect("exists").permissions().mode() & 0o777, 0o600);
        fs::write(path(&dir), "short").expect("write");
        let message = load_or_create(&dir).expect_err("refused").to_string();
        assert!(message.contains("delete it"), "{message}");
        let _ = fs::remove_dir_all(&dir);
    }
}
