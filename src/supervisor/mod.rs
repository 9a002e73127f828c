//! The one loop that runs programs: it starts each when its `after`
//! programs have succeeded and its locks are held, and orders everything
//! that happens then (child exits, signals, lock hand-offs, deadlines) as
//! events handled one at a time on the main thread. `exec` is a run of one
//! program; `run` is a run of many.
//!
//! | file | its one job |
//! | --- | --- |
//! | `dispatch.rs` | the loop: events in, one at a time; signals; deadlines |
//! | `state.rs` | one program's states, as data |
//! | `lifecycle.rs` | the transitions between them |
//! | `requests.rs` | `stop`, `restart`, `ps` requests; the report to `start` |
//! | `terminal.rs` | terminal hand-over and the waiting line |
//! | `spec.rs` | what to run and how (`Spec`, `Options`), back-off |
//! | `journal.rs` | what each database's lock journal is told |
//!
//! The locks are released only once the program's whole process group is
//! gone.

mod dispatch;
mod journal;
mod lifecycle;
mod requests;
mod spec;
mod state;
mod terminal;

pub use dispatch::Supervisor;
pub use spec::{Options, Spec, backoff};
