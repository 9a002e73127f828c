//! A database as the lock sees it: its canonical path, and the directory
//! beside it that holds its queue.

use std::fs;
use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::error::LockError;

/// Symlink hops followed before giving up, as the kernel does (ELOOP).
const MAX_SYMLINKS: usize = 40;

/// A database path resolved so that every dblaunch on the machine agrees on
/// it, whatever its working directory or the spelling it was given.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Database {
    /// Canonical: absolute, no symlinks, no `.` or `..`. It need not exist
    /// yet (SQLite creates its file on first use), but its directory must.
    path: PathBuf,
}

impl Database {
    /// Resolves `given` (relative to `base` when relative).
    pub fn resolve(given: &Path, base: &Path) -> Result<Database, LockError> {
        let shown = given.to_path_buf();
        if given.as_os_str().is_empty() {
            return Err(LockError::BadPath {
                database: shown,
                reason: "the path is empty",
            });
        }
        let mut path = base.join(given);
        // Follow a symlink at the last component by hand: canonicalize() fails
        // on a dangling one, yet the database it points to is what must be
        // locked (SQLite will create the target).
        for _ in 0..MAX_SYMLINKS {
            match fs::symlink_metadata(&path) {
                Ok(meta) if meta.file_type().is_symlink() => {
                    let target =
                        fs::read_link(&path).map_err(|source| LockError::Inaccessible {
                            database: shown.clone(),
                            source,
                        })?;
                    let parent = path.parent().unwrap_or(Path::new("/")).to_path_buf();
                    path = parent.join(target);
                }
                Ok(meta) => {
                    if let Some(kind) = special_kind(&meta.file_type()) {
                        return Err(LockError::NotADatabase {
                            database: shown,
                            kind,
                        });
                    }
                    let path =
                        fs::canonicalize(&path).map_err(|source| LockError::Inaccessible {
                            database: shown.clone(),
                            source,
                        })?;
                    return Database::from_canonical(path, shown);
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    return Database::not_yet_created(&path, shown);
                }
                Err(e) if e.raw_os_error() == Some(libc::ENOTDIR) => {
                    return Err(LockError::BadPath {
                        database: shown,
                        reason: "a component of the path is a file, not a directory",
                    });
                }
                Err(source) => {
                    return Err(LockError::Inaccessible {
                        database: shown,
                        source,
                    });
                }
            }
        }
        Err(LockError::BadPath {
            database: shown,
            reason: "it is a chain of more than 40 symbolic links (a loop?)",
        })
    }

    fn not_yet_created(path: &Path, shown: PathBuf) -> Result<Database, LockError> {
        let (Some(parent), Some(name)) = (path.parent(), path.file_name()) else {
            return Err(LockError::BadPath {
                database: shown,
                reason: "it names no file",
            });
        };
        match fs::canonicalize(parent) {
            Ok(dir) if dir.is_dir() => Database::from_canonical(dir.join(name), shown),
            Ok(_) => Err(LockError::BadPath {
                database: shown,
                reason: "a component of the path is a file, not a directory",
            }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Err(LockError::MissingDirectory {
                database: shown,
                directory: parent.to_path_buf(),
            }),
            Err(e) if e.raw_os_error() == Some(libc::ENOTDIR) => Err(LockError::BadPath {
                database: shown,
                reason: "a component of the path is a file, not a directory",
            }),
            Err(source) => Err(LockError::Inaccessible {
                database: shown,
                source,
            }),
        }
    }

    fn from_canonical(path: PathBuf, shown: PathBuf) -> Result<Database, LockError> {
        match path.file_name().and_then(|n| n.to_str()) {
            None if path.file_name().is_none() => Err(LockError::BadPath {
                database: shown,
                reason: "the root directory cannot be a database",
            }),
            // A lock directory is never itself a database.
            Some(name) if name.starts_with('.') && name.ends_with(LOCK_DIR_SUFFIX) => {
                Err(LockError::BadPath {
                    database: shown,
                    reason: "it is one of dblaunch's own lock directories",
                })
            }
            _ => Ok(Database { path }),
        }
    }

    /// The canonical path: the lock's key.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The directory that holds this database's queue: `.NAME.dblaunch`
    /// beside the database, never inside it and never the database file.
    pub fn lock_dir(&self) -> PathBuf {
        let name = self.path.file_name().unwrap_or_default().to_string_lossy();
        self.path
            .parent()
            .unwrap_or(Path::new("/"))
            .join(format!(".{name}{LOCK_DIR_SUFFIX}"))
    }

    /// Creates the lock directory if needed and checks that it is a real
    /// directory (not a symlink someone planted to redirect our writes).
    /// Returns it, and whether it is group-writable (a shared project).
    pub(crate) fn ensure_lock_dir(&self) -> Result<(PathBuf, bool), LockError> {
        let dir = self.lock_dir();
        // Usually it is there already: one lstat(2) instead of three calls.
        if let Ok(meta) = fs::symlink_metadata(&dir) {
            if meta.file_type().is_dir() {
                return Ok((dir, meta.mode() & 0o020 != 0));
            }
        }
        let parent_meta = self.path.parent().and_then(|p| fs::metadata(p).ok());
        // Same user always; the group too where the database's directory is
        // group-writable (a shared project directory); never others.
        let group_shared = parent_meta.is_some_and(|m| m.mode() & 0o020 != 0);
        self.ensure_dir(dir, group_shared)
    }

    /// Makes `dir` (this database's lock directory, or a nested queue inside
    /// it) unless it exists, and checks that it is a real directory. Returns
    /// it, and whether it is group-writable.
    pub(crate) fn ensure_dir(
        &self,
        dir: PathBuf,
        group_shared: bool,
    ) -> Result<(PathBuf, bool), LockError> {
        if let Err(source) = make_lock_dir(&dir, group_shared) {
            return Err(LockError::LockDirectory {
                database: self.path.clone(),
                lock_dir: dir,
                source,
            });
        }
        match fs::symlink_metadata(&dir) {
            Ok(meta) if meta.file_type().is_dir() => Ok((dir, meta.mode() & 0o020 != 0)),
            Ok(_) => Err(LockError::LockDirectoryOccupied {
                database: self.path.clone(),
                lock_dir: dir,
            }),
            Err(source) => Err(LockError::LockDirectory {
                database: self.path.clone(),
                lock_dir: dir,
                source,
            }),
        }
    }
}

const LOCK_DIR_SUFFIX: &str = ".dblaunch";

/// Makes a lock directory (or a nested queue's) unless it exists: the same
/// user always; the group too in a group-shared place (setgid, so files in
/// it keep the group); never others.
fn make_lock_dir(dir: &Path, group_shared: bool) -> io::Result<()> {
    let mode = if group_shared { 0o2775 } else { 0o755 };
    match fs::DirBuilder::new().mode(mode).create(dir) {
        Ok(()) => {
            // The umask may have removed the group bits we want.
            let _ = fs::set_permissions(dir, fs::Permissions::from_mode(mode));
            Ok(())
        }
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e),
    }
}

/// What a path is when it is something no database engine stores data in:
/// a device, a FIFO or a socket. Such a path is refused before anything is
/// created beside it (`/dev/null` would otherwise get `/dev/.null.dblaunch/`).
fn special_kind(t: &fs::FileType) -> Option<&'static str> {
    use std::os::unix::fs::FileTypeExt;
    if t.is_char_device() {
        Some("a character device")
    } else if t.is_block_device() {
        Some("a block device")
    } else if t.is_fifo() {
        Some("a FIFO (named pipe)")
    } else if t.is_socket() {
        Some("a socket")
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spellings_of_one_database_agree() {
        let tmp = tempfile::tempdir().unwrap();
        let base = tmp.path();
        fs::create_dir(base.join("data")).unwrap();
        fs::write(base.join("data/app.db"), "").unwrap();
        std::os::unix::fs::symlink("data", base.join("link")).unwrap();
        std::os::unix::fs::symlink("app.db", base.join("data/alias.db")).unwrap();
        let a = Database::resolve(Path::new("data/app.db"), base).unwrap();
        let b = Database::resolve(Path::new("./data/../data/app.db"), base).unwrap();
        let c = Database::resolve(Path::new("link/app.db"), base).unwrap();
        let d = Database::resolve(Path::new("data/alias.db"), base).unwrap();
        assert_eq!(a, b);
        assert_eq!(a, c);
        assert_eq!(a, d);
        assert!(a.path().is_absolute());
    }

    #[test]
    fn a_database_not_created_yet_and_a_dangling_symlink_resolve() {
        let tmp = tempfile::tempdir().unwrap();
        let base = tmp.path();
        let a = Database::resolve(Path::new("new.db"), base).unwrap();
        std::os::unix::fs::symlink("new.db", base.join("dangling.db")).unwrap();
        let b = Database::resolve(Path::new("dangling.db"), base).unwrap();
        assert_eq!(a, b);
        assert_eq!(
            a.lock_dir(),
            fs::canonicalize(base).unwrap().join(".new.db.dblaunch")
        );
    }

    #[test]
    fn a_missing_directory_is_named() {
        let tmp = tempfile::tempdir().unwrap();
        let err = Database::resolve(Path::new("nope/app.db"), tmp.path()).unwrap_err();
        assert!(matches!(err, LockError::MissingDirectory { .. }), "{err}");
    }

    #[test]
    fn devices_fifos_and_sockets_are_refused() {
        let tmp = tempfile::tempdir().unwrap();
        for dev in ["/dev/null", "/dev/zero"] {
            let err = Database::resolve(Path::new(dev), tmp.path()).unwrap_err();
            assert!(matches!(err, LockError::NotADatabase { .. }), "{err}");
        }
        let sock = tmp.path().join("s.db");
        let _listener = std::os::unix::net::UnixListener::bind(&sock).unwrap();
        let err = Database::resolve(&sock, tmp.path()).unwrap_err();
        assert!(err.to_string().contains("a socket"), "{err}");
        // Through a symlink too.
        std::os::unix::fs::symlink("/dev/null", tmp.path().join("null.db")).unwrap();
        let err = Database::resolve(Path::new("null.db"), tmp.path()).unwrap_err();
        assert!(err.to_string().contains("character device"), "{err}");
    }

    #[test]
    fn a_symlink_loop_is_an_error_not_a_hang() {
        let tmp = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink("b", tmp.path().join("a")).unwrap();
        std::os::unix::fs::symlink("a", tmp.path().join("b")).unwrap();
        let err = Database::resolve(Path::new("a"), tmp.path()).unwrap_err();
        assert!(matches!(err, LockError::BadPath { .. }), "{err}");
    }
}
