//! The error type of the whole tool, and the one place exit statuses are
//! chosen (75 busy, 126/127 cannot run the command, 2 usage, 1 any other
//! failure of dblaunch itself).

use std::io;
use std::path::PathBuf;

use crate::manifest::ManifestError;
use dblaunch_lock::LockError;

/// Exit statuses that are not a program's own.
pub mod code {
    /// A database stayed busy past `--wait` (EX_TEMPFAIL).
    pub const BUSY: u8 = 75;
    pub const NOT_EXECUTABLE: u8 = 126;
    pub const NOT_FOUND: u8 = 127;
    pub const USAGE: u8 = 2;
    pub const FAILURE: u8 = 1;
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Lock(#[from] LockError),

    #[error(transparent)]
    Spawn(#[from] SpawnError),

    #[error(transparent)]
    Manifest(#[from] ManifestError),

    #[error("{0}")]
    Usage(String),

    #[error("cannot {action}: {source}")]
    Io { action: String, source: io::Error },
}

/// Starting a program failed.
#[derive(Debug, thiserror::Error)]
pub enum SpawnError {
    #[error(
        "command `{command}` not found{where_}: check the spelling, install it, or give its full path",
        where_ = if command.contains('/') { "" } else { " in PATH" }
    )]
    NotFound { command: String },

    #[error(
        "command `{command}` cannot be executed: {source}; make it executable (chmod +x) or run it through its interpreter"
    )]
    NotExecutable { command: String, source: io::Error },

    #[error("the working directory {cwd} of `{command}` does not exist: create it or correct `cwd`", cwd = .cwd.display())]
    MissingCwd { command: String, cwd: PathBuf },

    #[error("cannot start `{command}`: {source}")]
    Other { command: String, source: io::Error },
}

impl Error {
    /// The exit status for this error; the only place they are chosen.
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::Lock(e) => match e {
                LockError::Busy { .. } | LockError::Orphaned { .. } => code::BUSY,
                LockError::MissingDirectory { .. }
                | LockError::BadPath { .. }
                | LockError::NotADatabase { .. }
                | LockError::NestedUpgrade { .. }
                | LockError::ReadAndWrite { .. } => code::USAGE,
                LockError::Inaccessible { .. }
                | LockError::LockDirectory { .. }
                | LockError::LockDirectoryOccupied { .. }
                | LockError::Io { .. }
                | LockError::Removed { .. }
                | LockError::Backend(_) => code::FAILURE,
            },
            Error::Spawn(e) => match e {
                SpawnError::NotFound { .. } => code::NOT_FOUND,
                SpawnError::NotExecutable { .. } => code::NOT_EXECUTABLE,
                SpawnError::MissingCwd { .. } => code::USAGE,
                SpawnError::Other { .. } => code::FAILURE,
            },
            Error::Usage(_) | Error::Manifest(_) => code::USAGE,
            Error::Io { .. } => code::FAILURE,
        }
    }
}
