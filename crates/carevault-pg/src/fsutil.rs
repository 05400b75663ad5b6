//! Small file-system helpers: locks, private directories, reachability for another user.

use std::fs::{self, File};
use std::io::{Read, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
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
///
/// The checks and the mode change act on one open file descriptor (`O_DIRECTORY | O_NOFOLLOW`,
/// then `fstat` and `fchmod`), never on the path again: as root, a path checked and then changed
/// could meanwhile have been swapped for a symlink by whoever can write to its parent.
pub(crate) fn create_private_dir(dir: &Path, owner: &RunAs) -> Result<(), PgError> {
    match fs::DirBuilder::new().mode(0o700).create(dir) {
        Ok(()) => owner.chown(dir)?,
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(PgError::io("creating directory", dir)(e)),
    }
    let handle = open_owned_dir(dir, owner)?;
    handle.set_permissions(fs::Permissions::from_mode(0o700)).map_err(PgError::io("setting mode of", dir))
}

/// Checks, without changing anything, that `dir` is a directory owned by `owner` that nobody else
/// may enter (mode 0700): for the socket directory of a server that another process started, read
/// from its `postmaster.pid` (a directory under /tmp whose name anyone can list, and which another
/// user could re-create if it were removed).
pub(crate) fn check_private_dir(dir: &Path, owner: &RunAs) -> Result<(), PgError> {
    let handle = open_owned_dir(dir, owner)?;
    let meta = handle.metadata().map_err(PgError::io("reading", dir))?;
    if meta.mode() & 0o077 != 0 {
        return Err(PgError::NotOurs { path: dir.to_path_buf(), owner: meta.uid(), expected: owner.uid() });
    }
    Ok(())
}

/// `dir` opened without following a symlink, after checking it is a directory owned by `owner`.
fn open_owned_dir(dir: &Path, owner: &RunAs) -> Result<File, PgError> {
    let handle = File::options()
        .read(true)
        .custom_flags(nix::libc::O_DIRECTORY | nix::libc::O_NOFOLLOW)
        .open(dir)
        .map_err(PgError::io("opening directory", dir))?;
    let meta = handle.metadata().map_err(PgError::io("reading", dir))?;
    if !meta.is_dir() || meta.uid() != owner.uid() {
        return Err(PgError::NotOurs { path: dir.to_path_buf(), owner: meta.uid(), expected: owner.uid() });
    }
    Ok(handle)
}

/// Opens (creating) a lock file. O_NOFOLLOW: as root, a symlink planted at the lock's path must
/// not make us create or open a file elsewhere.
pub(crate) fn lock_file(path: &Path) -> Result<File, PgError> {
    File::options()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .custom_flags(nix::libc::O_NOFOLLOW)
        .open(path)
        .map_err(PgError::io("opening lock file", path))
}

/// Reads a file inside a directory owned by `owner` (the data directory), refusing symlinks and
/// anything not a regular file owned by `owner`. As root we read files that the unprivileged
/// system user controls: a symlink to /etc/shadow must not be followed.
pub(crate) fn read_owned_file(path: &Path, owner: &RunAs) -> Result<String, PgError> {
    let mut file = File::options()
        .read(true)
        .custom_flags(nix::libc::O_NOFOLLOW)
        .open(path)
        .map_err(PgError::io("opening", path))?;
    let meta = file.metadata().map_err(PgError::io("reading", path))?;
    if !meta.is_file() || meta.uid() != owner.uid() {
        return Err(PgError::NotOurs { path: path.to_path_buf(), owner: meta.uid(), expected: owner.uid() });
    }
    let mut text = String::new();
    file.read_to_string(&mut text).map_err(PgError::io("reading", path))?;
    Ok(text)
}

/// Replaces a file inside a directory owned by `owner` with `contents`, owned by `owner`.
///
/// Removes whatever is at `path` (a symlink is removed, not followed), then creates a new file with
/// O_EXCL, which never follows a symlink: if one is planted in between, this fails instead of
/// writing through it. The owner is set on the open file (fchown), not by path.
pub(crate) fn replace_owned_file(path: &Path, contents: &str, owner: &RunAs) -> Result<(), PgError> {
    match fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(PgError::io("removing", path)(e)),
    }
    let mut file =
        File::options().write(true).create_new(true).mode(0o600).open(path).map_err(PgError::io("creating", path))?;
    file.write_all(contents.as_bytes()).map_err(PgError::io("writing", path))?;
    owner.fchown(&file, path)
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
    // Open without following a symlink, then fchmod the open file: checking with lstat and
    // chmod-ing by path would follow a symlink swapped in between.
    let file = match File::options().read(true).custom_flags(nix::libc::O_NOFOLLOW).open(path) {
        Ok(file) => file,
        Err(e) if e.raw_os_error() == Some(nix::libc::ELOOP) => return Ok(()), // a symlink: skip
        Err(e) => return Err(PgError::io("opening", path)(e)),
    };
    let meta = file.metadata().map_err(PgError::io("reading", path))?;
    let mode = meta.mode();
    let wanted = if meta.is_dir() || mode & 0o100 != 0 { mode | 0o555 } else { mode | 0o444 };
    if wanted != mode {
        file.set_permissions(fs::Permissions::from_mode(wanted & 0o7777))
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
