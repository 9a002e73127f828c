//! What the loop lends the code that handles an event (`lifecycle.rs`,
//! `acquire.rs`, `requests.rs`): each part of the run, borrowed for the
//! time of one event. Each part keeps its fields to itself; the handlers
//! go through its methods.

use dblaunch_lock::Released;

use crate::events::Events;

use super::console::Console;
use super::recorder::Recorder;
use super::spec::Options;
use super::table::Table;
use super::verdict::Verdict;

/// What the loop lends the code that handles an event: each part of the
/// run, borrowed for the time of one event.
pub(super) struct Context<'s, 'a> {
    pub(super) table: &'s mut Table<'a>,
    pub(super) recorder: &'s mut Recorder,
    pub(super) console: &'s mut Console,
    pub(super) verdict: &'s mut Verdict,
    pub(super) events: &'s mut Events,
    /// Tickets that programs let go of since the loop last slept: waiters
    /// behind them move on without asking the kernel, and their names are
    /// cleared away after whoever could start has started.
    pub(super) released: &'s mut Released,
    pub(super) opts: &'s Options,
}
