//! The database lock: a kernel lock per database, a PID-validated record of
//! who holds or waits for it, and a fair cross-process queue. It knows nothing
//! of programs or manifests; `exec` and `run` drive it.
//!
//! `docs/design.md` describes the protocol, its invariants and its limits;
//! the short version: per database a directory beside it holds a *gate* file (its flock
//! serialises queue edits) and one *ticket* file per waiter or holder. A
//! ticket's own exclusive flock is held by its owner for as long as the owner
//! (and the program it spawns, which inherits the descriptor) lives; a waiter
//! blocks on shared flocks of the earlier tickets it conflicts with, so the
//! kernel wakes it the instant they are gone.

mod database;
mod error;
mod inherited;
mod kernel;
pub mod occupancy;
mod queue;
mod record;
mod set;
mod ticket;

pub use database::Database;
pub use error::{Holder, LockError, round};
pub use queue::{Queue, QueueEntry, Release, Role, TicketId};
pub use record::{Mode, Owner, Record, State};
pub use set::{
    Acquirer, Held, Pending, Progress, Released, Remote, Request, Step, database_files,
    foreign_holders,
};
