//! What can go wrong while locking a database, each with what to do about it.

use std::fmt;
use std::io;
use std::path::PathBuf;
use std::time::Duration;

use crate::backend::BackendError;
use crate::holder::{Holder, HolderList, round};
use crate::mode::Mode;

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error(
        "the directory {directory} of database {database} does not exist: create it first, or correct the path",
        directory = .directory.display(), database = .database.display()
    )]
    MissingDirectory {
        database: PathBuf,
        directory: PathBuf,
    },

    #[error("{database} cannot be a database: {reason}", database = .database.display())]
    BadPath {
        database: PathBuf,
        reason: &'static str,
    },

    #[error(
        "{database} is {kind}, not a database file: dblaunch locks files and directories that a database engine keeps its data in; give the path of the database itself",
        database = .database.display()
    )]
    NotADatabase {
        database: PathBuf,
        kind: &'static str,
    },

    #[error(
        "cannot take the write lock on {database}: this command runs under {program} (pid {pid}), which holds that database for reading and keeps it until this command ends, so the write lock could never be granted; declare the write where {program} is started (`writes` in the manifest, or --write for its exec) instead",
        database = .database.display()
    )]
    NestedUpgrade {
        database: PathBuf,
        program: String,
        pid: i32,
    },

    #[error(
        "database {database} is busy: {holders} still holds it, but its lock directory was removed while it ran, so there is no queue to wait in behind it; dblaunch starts nothing beside it. Run again once it has ended (`dblaunch status` shows it), and do not remove lock directories (.NAME.dblaunch) while programs run",
        database = .database.display(),
        holders = HolderList(.holders),
    )]
    Orphaned {
        database: PathBuf,
        holders: Vec<Holder>,
    },

    #[error(
        "cannot resolve database path {database}: {source}; check that every directory on the way exists and that you may enter it",
        database = .database.display()
    )]
    Inaccessible {
        database: PathBuf,
        source: io::Error,
    },

    #[error(
        "database {database} is both read and written by one command: a write lock already allows reading, so keep only --write",
        database = .database.display()
    )]
    ReadAndWrite { database: PathBuf },

    #[error(
        "cannot create the lock directory {lock_dir} for database {database}: {source}; dblaunch keeps each database's lock beside it, so the database's directory must be writable by you (fix its permissions, or move the database to a writable place)",
        lock_dir = .lock_dir.display(), database = .database.display()
    )]
    LockDirectory {
        database: PathBuf,
        lock_dir: PathBuf,
        source: io::Error,
    },

    #[error(
        "{lock_dir} is in the way of the lock for database {database}: it exists but is not a directory (a file, or a symbolic link, which dblaunch never follows); remove or rename it",
        lock_dir = .lock_dir.display(), database = .database.display()
    )]
    LockDirectoryOccupied {
        database: PathBuf,
        lock_dir: PathBuf,
    },

    #[error(
        "cannot {action} {path}: {source}; the lock for database {database} lives there, so check that the directory is still there, writable and not on a full or read-only filesystem",
        path = .path.display(), database = .database.display()
    )]
    Io {
        action: &'static str,
        path: PathBuf,
        database: PathBuf,
        source: io::Error,
    },

    #[error(
        "the lock directory of database {database} was removed while dblaunch waited for it, so its place in the queue is gone; run the command again",
        database = .database.display()
    )]
    Removed { database: PathBuf },

    #[error(transparent)]
    Backend(#[from] BackendError),

    #[error(
        "database {database} is busy: {holders}; {waited}. Try again later, wait longer (--wait DUR, or no --wait to queue for as long as it takes), or stop the holder (`dblaunch status` shows every holder)",
        database = .database.display(),
        holders = HolderList(.holders),
        waited = WaitedFor(.waited, .limit),
    )]
    Busy {
        database: PathBuf,
        mode: Mode,
        holders: Vec<Holder>,
        waited: Duration,
        limit: Duration,
    },
}

struct WaitedFor<'a>(&'a Duration, &'a Duration);

impl fmt::Display for WaitedFor<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.1.is_zero() {
            f.write_str("gave up at once (--no-wait)")
        } else {
            write!(
                f,
                "gave up after waiting {} (the limit is {})",
                round(*self.0),
                humantime::format_duration(*self.1)
            )
        }
    }
}
