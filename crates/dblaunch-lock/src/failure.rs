//! Why a program's own lock was not granted, each with what to do about it.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use crate::error::LockError;
use crate::holder::{Holder, HolderList, round};
use crate::mode::Mode;
use crate::names::NameError;

/// Why [`Lock::acquire`](crate::Lock::acquire) gave no lock. Nothing is
/// left queued or held after any of these.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The database stayed busy past the timeout (at once, for a timeout
    /// of zero).
    #[error(
        "database {database} is busy: {holders}; {waited}. Try again later, wait longer (a larger timeout, or none to queue for as long as it takes), or stop the holder (`dblaunch status` shows every holder)",
        database = .database.display(),
        holders = HolderList(.holders),
        waited = WaitedFor(.waited, .timeout),
    )]
    Busy {
        /// The database that was busy.
        database: PathBuf,
        /// The mode asked for.
        mode: Mode,
        /// Who was in the way, the holder first.
        holders: Vec<Holder>,
        /// How long it waited.
        waited: Duration,
        /// The timeout.
        timeout: Duration,
    },

    /// The owner holds the database for reading and asked to write: it would
    /// wait for itself forever (or the program runs under a `dblaunch exec`
    /// or `run` that holds it for reading and waits for it to end).
    #[error(
        "cannot take the write lock on {database}: {holder} holds it for reading and keeps it while this waits, so it could never be granted; take the write lock first (write covers read), or release the read lock before asking to write",
        database = .database.display()
    )]
    WouldDeadlock {
        /// The database.
        database: PathBuf,
        /// Who holds it for reading: this owner, or the dblaunch program
        /// this process runs under.
        holder: String,
    },

    /// The arguments name nothing lockable: an unknown name (with a
    /// did-you-mean), a device or FIFO, a directory that does not exist, a
    /// database both read and written, a mode other than read or write.
    #[error("{0}")]
    Usage(String),

    /// The wait was cancelled.
    #[error("the wait for the lock was cancelled")]
    Cancelled,

    /// The lock could not be taken: its directory cannot be written, the
    /// lock backend cannot be reached, … (the message says what and where).
    #[error(transparent)]
    Failed(LockError),
}

impl From<LockError> for Error {
    fn from(e: LockError) -> Error {
        match e {
            LockError::MissingDirectory { .. }
            | LockError::BadPath { .. }
            | LockError::NotADatabase { .. }
            | LockError::ReadAndWrite { .. } => Error::Usage(e.to_string()),
            LockError::NestedUpgrade {
                database,
                program,
                pid,
            } => Error::WouldDeadlock {
                database,
                holder: format!("{program} (pid {pid}), which this program runs under,"),
            },
            LockError::Busy {
                database,
                mode,
                holders,
                waited,
                limit,
            } => Error::Busy {
                database,
                mode,
                holders,
                waited,
                timeout: limit,
            },
            other => Error::Failed(other),
        }
    }
}

impl From<NameError> for Error {
    fn from(e: NameError) -> Error {
        match e {
            NameError::Lock(e) => e.into(),
            other => Error::Usage(other.to_string()),
        }
    }
}

struct WaitedFor<'a>(&'a Duration, &'a Duration);

impl fmt::Display for WaitedFor<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.1.is_zero() {
            f.write_str("gave up at once (a timeout of zero)")
        } else {
            write!(
                f,
                "gave up after waiting {} (the timeout is {})",
                round(*self.0),
                humantime::format_duration(*self.1)
            )
        }
    }
}
