//! Secrets the embedded default generates once and keeps in its data directory (mode 0600): the
//! development HS256 secret (`dev-jwt-secret`, shared by `serve` and `token mint`) and the key of
//! the tenant context (`tenant-context-key`, when `TENANT_CONTEXT_KEY` is unset outside
//! production) and the audit chain's signing key (`audit-signing-key`, when `AUDIT_SIGNING_KEY`
//! is unset outside production). They are never printed or logged.

use std::fs::{self, OpenOptions};
use std::io::{ErrorKind, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

use anyhow::{Context, bail};
use carevault_db::audit_chain::AuditSigningKey;
use carevault_db::tenant_context::{KeyId, TenantContextKey};

/// The development JWT secret's file name under the data directory.
pub const FILE_NAME: &str = "dev-jwt-secret";
/// The tenant context key's file name under the data directory.
pub const CONTEXT_KEY_FILE_NAME: &str = "tenant-context-key";
/// The audit signing key's file name under the data directory.
pub const AUDIT_KEY_FILE_NAME: &str = "audit-signing-key";

/// Reads the development JWT secret under `data_dir`, generating it first when it does not exist.
pub fn load_or_create(data_dir: &Path) -> anyhow::Result<String> {
    load_or_create_file(data_dir, FILE_NAME, || {
        // Two v4 UUIDs: 244 bits from the operating system's generator, as 64 hex characters.
        Ok(format!("{}{}", uuid::Uuid::new_v4().simple(), uuid::Uuid::new_v4().simple()))
    })
}

/// Reads the tenant context key under `data_dir` (`local-<8 hex>:<64 hex>`), generating it first
/// when it does not exist.
pub fn load_or_create_context_key(data_dir: &Path) -> anyhow::Result<TenantContextKey> {
    let text = load_or_create_file(data_dir, CONTEXT_KEY_FILE_NAME, || {
        let kid = KeyId::parse(&format!("local-{}", &uuid::Uuid::new_v4().simple().to_string()[..8]))?;
        Ok(TenantContextKey::generate(kid)?.to_config_text())
    })?;
    let path = data_dir.join(CONTEXT_KEY_FILE_NAME);
    TenantContextKey::parse(&text)
        .with_context(|| format!("{} holds no usable key: delete it and a new one is generated", path.display()))
}

/// Reads the audit chain's signing key under `data_dir` (64 hex), generating it first when it does
/// not exist.
pub fn load_or_create_audit_signing_key(data_dir: &Path) -> anyhow::Result<AuditSigningKey> {
    let text =
        load_or_create_file(data_dir, AUDIT_KEY_FILE_NAME, || Ok(AuditSigningKey::generate()?.to_config_text()))?;
    let path = data_dir.join(AUDIT_KEY_FILE_NAME);
    AuditSigningKey::parse(&text)
        .with_context(|| format!("{} holds no usable key: delete it and a new one is generated", path.display()))
}

/// Reads the secret `file_name` under `data_dir`, writing `generate()` first when it does not
/// exist. Safe when several processes do this at once: the file appears complete or not at all
/// (written aside, then hard-linked into place, which fails rather than overwrites).
fn load_or_create_file(
    data_dir: &Path,
    file_name: &str,
    generate: impl FnOnce() -> anyhow::Result<String>,
) -> anyhow::Result<String> {
    let path = data_dir.join(file_name);
    if let Some(secret) = read(&path)? {
        return Ok(secret);
    }
    fs::create_dir_all(data_dir).with_context(|| format!("cannot create the data directory {}", data_dir.display()))?;
    let staging = data_dir.join(format!(".{file_name}.{}", std::process::id()));
    let result = write_new(&staging, &generate()?).and_then(|()| match fs::hard_link(&staging, &path) {
        Ok(()) => {
            tracing::info!(path = %path.display(), "generated a secret");
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

fn write_new(path: &Path, secret: &str) -> anyhow::Result<()> {
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
        tracing::warn!(path = %path.display(), "a secret was readable by others; restricting it to mode 0600");
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

    fn scratch() -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("carevault-dev-secret-{}", uuid::Uuid::new_v4().simple()));
        fs::create_dir_all(&dir).expect("scratch dir");
        dir
    }

    #[test]
    fn the_secret_is_generated_once_private_and_kept() {
        let dir = scratch();
        let first = load_or_create(&dir).expect("generated");
        assert_eq!(first.len(), 64);
        let mode = fs::metadata(dir.join(FILE_NAME)).expect("exists").permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(load_or_create(&dir).expect("read back"), first);
        let leftovers: Vec<_> =
            fs::read_dir(&dir).expect("list").filter_map(Result::ok).map(|e| e.file_name()).collect();
        assert_eq!(leftovers, [FILE_NAME], "no staging file is left behind");
        let key = load_or_create_context_key(&dir).expect("generated");
        assert_eq!(load_or_create_context_key(&dir).expect("read back"), key);
        assert_ne!(load_or_create(&dir).expect("read back"), key.to_config_text());
        let signing = load_or_create_audit_signing_key(&dir).expect("generated");
        assert_eq!(
            load_or_create_audit_signing_key(&dir).expect("read back").to_config_text(),
            signing.to_config_text()
        );
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_readable_secret_is_restricted_and_a_short_one_refused() {
        let dir = scratch();
        fs::write(dir.join(FILE_NAME), "x".repeat(40)).expect("write");
        fs::set_permissions(dir.join(FILE_NAME), fs::Permissions::from_mode(0o644)).expect("chmod");
        assert_eq!(load_or_create(&dir).expect("read"), "x".repeat(40));
        assert_eq!(fs::metadata(dir.join(FILE_NAME)).expect("exists").permissions().mode() & 0o777, 0o600);
        fs::write(dir.join(FILE_NAME), "short").expect("write");
        let message = load_or_create(&dir).expect_err("refused").to_string();
        assert!(message.contains("delete it"), "{message}");
        let _ = fs::remove_dir_all(&dir);
    }
}
