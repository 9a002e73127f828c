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

    /// Whether holding `self` already allows `wanted`: write covers read and
    /// write, read covers read.
    pub fn covers(self, wanted: Mode) -> bool {
        self == Mode::Write || wanted == Mode::Read
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

impl std::str::FromStr for Mode {
    type Err = String;

    /// `read` or `write`, as `status` shows them (and `r`/`w`,
    /// `shared`/`exclusive`).
    fn from_str(s: &str) -> Result<Mode, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "read" | "r" | "shared" => Ok(Mode::Read),
            "write" | "w" | "exclusive" => Ok(Mode::Write),
            other => Err(format!(
                "mode {other:?} is neither \"read\" (shared with other readers) nor \"write\" (exclusive)"
            )),
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
