//! Small file-system helpers: locks, private directories, reachability for another user.

use std::fs::{self, File};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use crate::{PgError, RunAs, SYSTEM_USER};

/// Creates `dir` and its parents, world-traversable (0755), so the system user can reach what is
/// inside.
pub(crate) fn create_shared_dir(dir: &Path) -> Result<(), PgError> {
    fs::create_dir_all(dir).map_err(PgError::io("creating directory", dir))?;
    Ok(())
}

/// Creates `dir` (mode 0700, owned by `owner`), or checks that an existing one is owned by
/// `owner` and tightens its mode. Used for the data and socket directories: a directory under a
/// world-writable parent such as /tmp could have been pre-created by another local user.
pub(crate) fn create_private_dir(dir: &Path, owner: &RunAs) -> Result<(), PgError> {
    match fs::create_dir(dir) {
        Ok(()) => owner.chown(dir)?,
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(PgError::io("creating directory", dir)(e)),
    }
    let meta = fs::symlink_metadata(dir).map_err(PgError::io("reading", dir))?;
    if !meta.is_dir() || meta.uid() != owner.uid() {
        return Err(PgError::NotOurs { path: dir.to_path_buf(), owner: meta.uid(), expected: owner.uid() });
    }
    fs::set_permissions(dir, fs::Permissions::from_mode(0o700)).map_err(PgError::io("setting mode of", dir))
}

/// Opens (creating) a lock file.
pub(crate) fn lock_file(path: &Path) -> Result<File, PgError> {
    File::options()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .map_err(PgError::io("opening lock file", path))
}

/// Fails when the system user cannot traverse every parent of `path` (root only).
pub(crate) fn check_reachable(path: &Path, run_as: &RunAs) -> Result<(), PgError> {
    if *run_as == RunAs::CurrentUser {
        return Ok(());
    }
    for ancestor in path.ancestors().skip(1) {
        if let Ok(meta) = fs::metadata(ancestor)
            && meta.uid() != run_as.uid()
            && meta.mode() & 0o001 == 0
        {
            return Err(PgError::Unreachable { path: path.to_path_buf(), user: SYSTEM_USER });
        }
    }
    Ok(())
}

/// Makes a tree readable (and directories traversable) by everybody, like `chmod -R a+rX`, so the
/// system user can run binaries that pip installed under a restrictive umask.
pub(crate) fn make_world_readable(path: &Path) -> Result<(), PgError> {
    let meta = fs::symlink_metadata(path).map_err(PgError::io("reading", path))?;
    if meta.file_type().is_symlink() {
        return Ok(());
    }
    let mode = meta.mode();
    let wanted = if meta.is_dir() || mode & 0o100 != 0 { mode | 0o555 } else { mode | 0o444 };
    if wanted != mode {
        fs::set_permissions(path, fs::Permissions::from_mode(wanted & 0o7777))
            .map_err(PgError::io("setting mode of", path))?;
    }
    if meta.is_dir() {
        for entry in fs::read_dir(path).map_err(PgError::io("listing", path))? {
            let entry = entry.map_err(PgError::io("listing", path))?;
            make_world_readable(&entry.path())?;
        }
    }
    Ok(())
}
