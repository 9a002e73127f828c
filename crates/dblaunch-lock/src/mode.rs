//! How a program uses a database: read (shared) or write (exclusive). A
//! leaf: the queue, the records and the lock backend all use it.

use std::fmt;

use serde::{Deserialize, Serialize};

/// How a program uses a database.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Shared with other readers.
    Read,
    /// Exclusive.
    Write,
}

impl Mode {
    /// Whether two uses of one database cannot run at the same time.
    pub fn conflicts_with(self, other: Mode) -> bool {
        self == Mode::Write || other == Mode::Write
    }

    pub(crate) fn letter(self) -> char {
        match self {
            Mode::Read => 'r',
            Mode::Write => 'w',
        }
    }

    pub(crate) fn from_letter(c: &str) -> Option<Mode> {
        match c {
            "r" => Some(Mode::Read),
            "w" => Some(Mode::Write),
            _ => None,
        }
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Mode::Read => "read",
            Mode::Write => "write",
        })
    }
}
