//! A queue's directory on disk: where its files are, how they are made
//! (never through a symbolic link; group-writable in a shared project,
//! whatever the umask), and which of them are tickets.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use super::name::{NESTED_SUFFIX, TicketId};
use crate::error::LockError;

/// Prefix of a file being made (a ticket, a gate), before it is renamed or
/// linked into place.
pub(super) const TMP_PREFIX: &str = ".new-";

/// Prefix of a spare ticket's name (see `spare.rs`).
pub(super) const SPARE_PREFIX: &str = ".spare-";

/// The directory that holds one queue: a database's lock directory, or a
/// nested queue inside it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct LockDir {
    path: PathBuf,
    /// The database the queue is for, to name in messages.
    database: PathBuf,
    /// The directory is group-writable (a shared project): files in it must
    /// be too, whatever the umask.
    group: bool,
}

impl LockDir {
    pub(super) fn new(path: PathBuf, database: &Path, group: bool) -> LockDir {
        LockDir {
            path,
            database: database.to_path_buf(),
            group,
        }
    }

    /// The directory at `path` if it exists (and is one), never made.
    pub(super) fn existing(path: PathBuf, database: &Path) -> Option<LockDir> {
        let meta = fs::symlink_metadata(&path).ok()?;
        meta.is_dir()
            .then(|| LockDir::new(path, database, meta.mode() & 0o020 != 0))
    }

    pub(super) fn path(&self) -> &Path {
        &self.path
    }

    /// The database the queue is for.
    pub(super) fn database(&self) -> &Path {
        &self.database
    }

    pub(super) fn join(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }

    pub(super) fn ticket_path(&self, id: TicketId) -> PathBuf {
        self.path.join(id.file_name())
    }

    /// Turns an I/O error on `path` into the lock's error; a file that is
    /// gone (but for an `open` of something that may not exist yet) means
    /// the directory was removed under us.
    pub(super) fn io_err(
        &self,
        action: &'static str,
        path: PathBuf,
    ) -> impl FnOnce(io::Error) -> LockError + use<> {
        let database = self.database.clone();
        move |source| {
            if source.kind() == io::ErrorKind::NotFound && action != "open" {
                return LockError::Removed { database };
            }
            LockError::Io {
                action,
                path,
                database,
                source,
            }
        }
    }

    /// The permissions of a file made here.
    pub(super) fn create_mode(&self) -> u32 {
        if self.group { 0o664 } else { 0o644 }
    }

    /// The umask may have taken the group's write bit; give it back.
    pub(super) fn share(&self, file: &File) {
        if self.group {
            let _ = file.set_permissions(fs::Permissions::from_mode(0o664));
        }
    }

    /// Creates a file nobody else has yet (a temporary ticket or gate), never
    /// through a symlink, with the directory's permissions.
    pub(super) fn create_new(&self, path: &Path) -> Result<File, LockError> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .mode(self.create_mode())
            .custom_flags(libc::O_NOFOLLOW)
            .open(path)
            .map_err(self.io_err("create", path.to_path_buf()))?;
        self.share(&file);
        Ok(file)
    }

    /// The ticket names in the directory, oldest first. Files with other
    /// names (a stray editor backup, anything not ours) are ignored.
    pub(super) fn list(&self) -> Result<Vec<TicketId>, LockError> {
        Ok(self.list_all()?.0)
    }

    /// Tickets, oldest first, and the names of what else may need clearing
    /// away: temporary tickets and nested queues whose ticket is gone (both
    /// leftovers of a crash), and spare tickets (see `spare.rs`).
    pub(super) fn list_all(&self) -> Result<(Vec<TicketId>, Vec<String>), LockError> {
        let mut ids = Vec::new();
        let mut temporaries = Vec::new();
        let mut nested = Vec::new();
        for entry in fs::read_dir(&self.path)
            .map_err(self.io_err("read", self.path.clone()))?
            .flatten()
        {
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            if let Some(id) = TicketId::parse(name) {
                ids.push(id);
            } else if name.starts_with(TMP_PREFIX) || name.starts_with(SPARE_PREFIX) {
                temporaries.push(name.to_owned());
            } else if let Some(id) = name.strip_suffix(NESTED_SUFFIX).and_then(TicketId::parse) {
                nested.push(id);
            }
        }
        ids.sort();
        for id in nested {
            if ids.binary_search(&id).is_err() {
                temporaries.push(format!("{}{NESTED_SUFFIX}", id.file_name()));
            }
        }
        Ok((ids, temporaries))
    }
}
