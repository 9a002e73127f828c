//! The database lock of dblaunch.

mod acquire;
pub mod backend;
mod database;
mod error;
mod foreign;
mod held;
mod holder;
pub mod host;
mod inherited;
pub mod journal;
mod kernel;
mod mode;
pub mod occupancy;
pub mod procfs;
mod queue;
mod record;
mod remote;
mod request;

pub use acquire::{Acquirer, Acquisition, Progress, Step};
pub use database::Database;
pub use error::LockError;
pub use foreign::{database_files, foreign_holders};
pub use held::{Held, Released};
pub use holder::{Holder, round};
pub use mode::Mode;
pub use queue::{Queue, QueueEntry, Release, Role, TicketId};
pub use record::{Owner, Record, State};
pub use remote::Remote;
pub use request::Request;
