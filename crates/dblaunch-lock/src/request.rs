//! One database to lock, and how: the unit every acquisition is made of.

use crate::database::Database;
use crate::mode::Mode;

/// One database and how it is used.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    /// The database.
    pub db: Database,
    /// Read (shared) or write (exclusive).
    pub mode: Mode,
    /// Its key in the lock backend, when one is configured: then it is
    /// locked there too, after the host's own lock.
    pub key: Option<String>,
}

impl Request {
    /// A database locked on this host only.
    pub fn local(db: Database, mode: Mode) -> Request {
        Request {
            db,
            mode,
            key: None,
        }
    }
}
