//! The database lock of dblaunch.

pub mod backend;
mod database;
mod error;
mod inherited;
pub mod journal;
mod kernel;
pub mod occupancy;
pub mod procfs;
mod queue;
mod record;
mod set;
mod ticket;

pub use database::Database;
pub use error::{Holder, LockError, round};
pub use queue::{Queue, QueueEntry, Release, Role, TicketId};
pub use record::{Mode, Owner, Record, State};
pub use set::{
    Acquirer, Acquisition, Held, Progress, Released, Remote, Request, Step, database_files,
    foreign_holders,
};
