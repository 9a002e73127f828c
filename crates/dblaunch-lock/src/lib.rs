//! The database lock of dblaunch: one fair, crash-safe, PID-validated
//! queue per database, shared by every process on the machine (and, with
//! a PostgreSQL backend, by every host), for embedded databases that allow
//! one writer at a time (DuckDB, SQLite, RocksDB, PGlite, …).
//!
//! A program takes it for itself with [`Lock`]: it joins the same queue as
//! every `dblaunch exec`, `dblaunch run` and other program, and holds the
//! database until the [`Guard`] is dropped (or the process dies, whatever
//! the death: the lock is a kernel lock on one of its descriptors).
//!
//! ```no_run
//! use std::time::Duration;
//! use dblaunch_lock::{Error, Lock};
//!
//! match Lock::write("data/app.db").timeout(Duration::from_secs(30)).acquire() {
//!     Ok(guard) => {
//!         // … open the database, write, close it …
//!         drop(guard); // released
//!     }
//!     Err(Error::Busy { holders, .. }) => eprintln!("busy: {holders:?}"),
//!     Err(e) => eprintln!("{e}"),
//! }
//! ```
//!
//! - **One queue.** First come, first served across processes; a waiting
//!   writer is not overtaken by later readers; adjacent readers share;
//!   several databases are taken all or none, in one global order.
//! - **No CPU while waiting**: a waiter sleeps in poll(2) until the ticket
//!   ahead of it is closed (inotify), and can be cancelled from any thread
//!   ([`Cancel`], [`Lock::cancel_on`]).
//! - **Visible**: `dblaunch status` names each holder and waiter with its
//!   pid and name; every grant, release and give-up goes to the database's
//!   journal ([`journal`]), which `dblaunch history` and `metrics` read.
//! - **Re-entry** per [`OwnerId`] (a thread by default); a read held and a
//!   write asked by the same owner fails at once ([`Error::WouldDeadlock`]).
//! - **fork**: a forked child never keeps the lock; an executed program
//!   does not inherit it.
//!
//! The pieces underneath ([`Acquisition`], [`Held`], [`Queue`]) are what
//! the `dblaunch` command line drives to hold databases for the programs
//! it starts; `docs/design.md` in the repository describes the protocol
//! and its invariants. The PostgreSQL backend is behind the `postgres`
//! feature (on by default).
#![deny(missing_docs)]

mod acquire;
pub mod backend;
mod database;
mod error;
mod failure;
mod foreign;
mod fork;
mod held;
mod holder;
pub mod host;
pub mod identity;
mod inherited;
pub mod journal;
mod kernel;
mod lock;
mod mode;
pub mod names;
pub mod occupancy;
mod owners;
pub mod procfs;
mod queue;
mod record;
mod remote;
mod request;

pub use acquire::{Acquirer, Acquisition, Progress, Step, Waited};
pub use database::Database;
pub use error::LockError;
pub use failure::Error;
pub use foreign::{database_files, foreign_holders};
pub use held::{Held, Released};
pub use holder::{Holder, round};
pub use lock::{Guard, Lock};
pub use mode::Mode;
pub use owners::OwnerId;
pub use queue::{Cancel, Queue, QueueEntry, Release, Role, TicketId};
pub use record::{Owner, Record, RecordState};
pub use remote::Remote;
pub use request::Request;
