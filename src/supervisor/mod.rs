//! The one loop that runs programs: it starts each when its `after`
//! programs have succeeded and its locks are held, and orders everything
//! that happens then (child exits, signals, lock hand-offs, deadlines) as
//! events handled one at a time on the main thread. `exec` is a run of one
//! program; `run` is a run of many.
//!
//! | file | its one job |
//! | --- | --- |
//! | `dispatch.rs` | the loop: owns the parts below; events in, one at a time; signals; deadlines |
//! | `lifecycle.rs` | the transitions: each a function from a program's state to its next |
//! | `acquire.rs` | the transitions that get a program's locks: queue, wait, hand-off |
//! | `readiness.rs` | `ready` and `needs`: tries of a check, up or timed out; a start waits for what it needs, a stop for what needs it |
//! | `changes.rs` | `watch`: a change, its debounce, the restart |
//! | `requests.rs` | calls from `stop`, `restart`, `ps`; the report to `start` |
//! | `context.rs` | the parts the loop lends to whoever handles an event |
//! | `table.rs` | the run's programs: spec, state and restart count of each |
//! | `state.rs` | one program's states, as data |
//! | `recorder.rs` | what each database's lock journal (and the backend's) is told |
//! | `console.rs` | what the run shows, and where programs' output goes |
//! | `terminal.rs` | terminal hand-over and the waiting line |
//! | `verdict.rs` | how the run ends: the stop signal, the failures, the exit status |
//! | `spec.rs` | what to run and how (`Spec`, `Options`), back-off |
//!
//! Imports go one way: `dispatch` uses `requests` and `lifecycle`;
//! `requests` uses `lifecycle`, which uses `acquire` and `readiness`;
//! `dispatch` also uses `changes` and `readiness`; those reach the
//! parts (`table`, `recorder`, `console`, `verdict`) through `context`; the
//! parts use the data (`state`, `spec`, `terminal`). Nothing imports back
//! up.
//!
//! The locks are released only once the program's whole process group is
//! gone.

mod acquire;
mod changes;
mod console;
mod context;
mod dispatch;
mod lifecycle;
mod readiness;
mod recorder;
mod requests;
mod spec;
mod state;
mod table;
mod terminal;
mod verdict;

pub use dispatch::Supervisor;
pub use spec::{Dev, Options, Spec, backoff};
