//! What can go wrong while locking a database, each with what to do about it.

use std::fmt;
use std::io;
use std::path::PathBuf;
use std::time::Duration;

use crate::backend::BackendError;
use crate::holder::{Holder, HolderList, round};
use crate::mode::Mode;

#[derive(Debug, thiserror::Error)]
/// Why a database could not be locked.
pub enum LockError {
    #[error(
        "the directory {directory} of database {database} does not exist: create it first, or correct the path",
        directory = .directory.display(), database = .database.display()
    )]
    /// The database's directory does not exist.
    MissingDirectory {
        /// The database as given.
        database: PathBuf,
        /// Its directory, which does not exist.
        directory: PathBuf,
    },

    #[error("{database} cannot be a database: {reason}", database = .database.display())]
    /// The path cannot be a database.
    BadPath {
        /// The database as given.
        database: PathBuf,
        /// Why not.
        reason: &'static str,
    },

    #[error(
        "{database} is {kind}, not a database file: dblaunch locks files and directories that a database engine keeps its data in; give the path of the database itself",
        database = .database.display()
    )]
    /// A device, FIFO or socket.
    NotADatabase {
        /// The database as given.
        database: PathBuf,
        /// What it is.
        kind: &'static str,
    },

    #[error(
        "cannot take the write lock on {database}: this command runs under {program} (pid {pid}), which holds that database for reading and keeps it until this command ends, so the write lock could never be granted; declare the write where {program} is started (`writes` in the manifest, or --write for its exec) instead",
        database = .database.display()
    )]
    /// A write asked for under an ancestor dblaunch that holds the database for reading.
    NestedUpgrade {
        /// The database.
        database: PathBuf,
        /// The ancestor's program.
        program: String,
        /// Its pid.
        pid: i32,
    },

    #[error(
        "database {database} is busy: {holders} still holds it, but its lock directory was removed while it ran, so there is no queue to wait in behind it; dblaunch starts nothing beside it. Run again once it has ended (`dblaunch status` shows it), and do not remove lock directories (.NAME.dblaunch) while programs run",
        database = .database.display(),
        holders = HolderList(.holders),
    )]
    /// Holders of a removed lock directory still run.
    Orphaned {
        /// The database.
        database: PathBuf,
        /// Who holds it.
        holders: Vec<Holder>,
    },

    #[error(
        "cannot resolve database path {database}: {source}; check that every directory on the way exists and that you may enter it",
        database = .database.display()
    )]
    /// The path cannot be resolved.
    Inaccessible {
        /// The database as given.
        database: PathBuf,
        /// Why.
        source: io::Error,
    },

    #[error(
        "database {database} is both read and written by one command: a write lock already allows reading, so keep only --write",
        database = .database.display()
    )]
    /// One database both read and written.
    ReadAndWrite {
        /// The database.
        database: PathBuf,
    },

    #[error(
        "cannot create the lock directory {lock_dir} for database {database}: {source}; dblaunch keeps each database's lock beside it, so the database's directory must be writable by you (fix its permissions, or move the database to a writable place)",
        lock_dir = .lock_dir.display(), database = .database.display()
    )]
    /// The lock directory cannot be made.
    LockDirectory {
        /// The database.
        database: PathBuf,
        /// Its lock directory.
        lock_dir: PathBuf,
        /// Why.
        source: io::Error,
    },

    #[error(
        "{lock_dir} is in the way of the lock for database {database}: it exists but is not a directory (a file, or a symbolic link, which dblaunch never follows); remove or rename it",
        lock_dir = .lock_dir.display(), database = .database.display()
    )]
    /// Something that is not a directory is where the lock directory goes.
    LockDirectoryOccupied {
        /// The database.
        database: PathBuf,
        /// Its lock directory.
        lock_dir: PathBuf,
    },

    #[error(
        "cannot {action} {path}: {source}; the lock for database {database} lives there, so check that the directory is still there, writable and not on a full or read-only filesystem",
        path = .path.display(), database = .database.display()
    )]
    /// A file of the lock cannot be read or written.
    Io {
        /// What was being done.
        action: &'static str,
        /// The file.
        path: PathBuf,
        /// The database.
        database: PathBuf,
        /// Why.
        source: io::Error,
    },

    #[error(
        "the lock directory of database {database} was removed while dblaunch waited for it, so its place in the queue is gone; run the command again",
        database = .database.display()
    )]
    /// The lock directory was removed while waiting.
    Removed {
        /// The database.
        database: PathBuf,
    },

    #[error(transparent)]
    /// The lock backend cannot be used.
    Backend(#[from] BackendError),

    #[error(
        "database {database} is busy: {holders}; {waited}. Try again later, wait longer (--wait DUR, or no --wait to queue for as long as it takes), or stop the holder (`dblaunch status` shows every holder)",
        database = .database.display(),
        holders = HolderList(.holders),
        waited = WaitedFor(.waited, .limit),
    )]
    /// The database stayed busy past the wait.
    Busy {
        /// The database.
        database: PathBuf,
        /// The mode asked for.
        mode: Mode,
        /// Who is in the way, the holder first.
        holders: Vec<Holder>,
        /// How long it waited.
        waited: Duration,
        /// The limit (zero: no wait).
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
