//! Where checkpoints are kept outside the database: a directory, append-only by construction
//! (a checkpoint's file is created once, never overwritten).
//!
//! Layout: `<dir>/<tenant id>/<seq, 20 digits>.json`, one [`Checkpoint`] as JSON per file. Files
//! are written aside and hard-linked into place, which fails rather than replaces, so a reader sees
//! a whole file or none. Who can still rewrite the directory is in docs/THREAT_MODEL.md.

use std::fs;
use std::io::{ErrorKind, Write};
use std::path::{Path, PathBuf};

use super::checkpoint::Checkpoint;
use crate::domain::TenantId;

/// A failure of the sink.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    /// The file system refused.
    #[error("checkpoint sink {path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The sink already holds another checkpoint at this place: it is never overwritten.
    #[error("checkpoint sink {path} holds a different checkpoint: not overwritten")]
    Conflict {
        /// The file.
        path: PathBuf,
    },
    /// A file of the sink is not a checkpoint.
    #[error("checkpoint sink {path} is not a checkpoint: {reason}")]
    Malformed {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
}

/// A directory of checkpoints.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckpointSink {
    dir: PathBuf,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> SinkError + '_ {
    move |source| SinkError::Io { path: path.to_path_buf(), source }
}

impl CheckpointSink {
    /// The sink in `dir` (created on the first write).
    pub fn directory(dir: impl Into<PathBuf>) -> CheckpointSink {
        CheckpointSink { dir: dir.into() }
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn file(&self, checkpoint: &Checkpoint) -> PathBuf {
        self.dir.join(checkpoint.tenant_id.to_string()).join(format!("{:020}.json", checkpoint.seq))
    }

    /// Keeps `checkpoint`. Writing the same checkpoint again changes nothing; a different one at
    /// the same place is refused ([`SinkError::Conflict`]).
    pub fn write(&self, checkpoint: &Checkpoint) -> Result<(), SinkError> {
        let path = self.file(checkpoint);
        if path.exists() {
            return if self.read_file(&path)? == *checkpoint { Ok(()) } else { Err(SinkError::Conflict { path }) };
        }
        let tenant_dir = path.parent().unwrap_or(&self.dir);
        fs::create_dir_all(tenant_dir).map_err(io(tenant_dir))?;
        let text = serde_json::to_string(checkpoint)
            .map_err(|e| SinkError::Malformed { path: path.clone(), reason: e.to_string() })?;
        let staging = tenant_dir.join(format!(".{:020}.{}.tmp", checkpoint.seq, std::process::id()));
        // One left by a crash of a process with the same id (a container restarted) would block
        // this place for good.
        let _ = fs::remove_file(&staging);
        let written = (|| {
            let mut file = fs::OpenOptions::new().write(true).create_new(true).open(&staging)?;
            file.write_all(text.as_bytes())?;
            file.sync_all()
        })()
        .map_err(io(&staging));
        let linked = written.and_then(|()| match fs::hard_link(&staging, &path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == ErrorKind::AlreadyExists => match self.read_file(&path)? {
                existing if existing == *checkpoint => Ok(()),
                _ => Err(SinkError::Conflict { path: path.clone() }),
            },
            Err(e) => Err(io(&path)(e)),
        });
        let _ = fs::remove_file(&staging);
        linked?;
        // The new name is durable once its directory is.
        fs::File::open(tenant_dir).and_then(|dir| dir.sync_all()).map_err(io(tenant_dir))
    }

    fn read_file(&self, path: &Path) -> Result<Checkpoint, SinkError> {
        let text = fs::read_to_string(path).map_err(io(path))?;
        serde_json::from_str(&text)
            .map_err(|e| SinkError::Malformed { path: path.to_path_buf(), reason: e.to_string() })
    }

    /// The tenants with a checkpoint here (a directory named by a tenant id).
    pub fn tenants(&self) -> Result<Vec<TenantId>, SinkError> {
        let entries = match fs::read_dir(&self.dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io(&self.dir)(e)),
        };
        let mut tenants = Vec::new();
        for entry in entries {
            let name = entry.map_err(io(&self.dir))?.file_name();
            if let Some(tenant) = name.to_str().and_then(|n| TenantId::parse(n).ok()) {
                tenants.push(tenant);
            }
        }
        Ok(tenants)
    }

    /// Every checkpoint of `tenant`, by sequence number.
    pub fn read(&self, tenant: TenantId) -> Result<Vec<Checkpoint>, SinkError> {
        let dir = self.dir.join(tenant.to_string());
        let entries = match fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io(&dir)(e)),
        };
        let mut checkpoints = Vec::new();
        for entry in entries {
            let path = entry.map_err(io(&dir))?.path();
            if path.extension().is_some_and(|e| e == "json") {
                let checkpoint = self.read_file(&path)?;
                if checkpoint.tenant_id != tenant || self.file(&checkpoint) != path {
                    return Err(SinkError::Malformed { path, reason: "its content is not its name's".into() });
                }
                checkpoints.push(checkpoint);
            }
        }
        checkpoints.sort_by_key(|c| c.seq);
        Ok(checkpoints)
    }
}
