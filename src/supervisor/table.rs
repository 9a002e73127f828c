//! The run's programs: what each one is ([`Spec`]), where it is in its life
//! ([`State`]), and how many times in a row it has restarted. Program `i`
//! is index `i` of all three.

use std::path::{Path, PathBuf};
use std::time::Instant;

use dblaunch_lock::TicketId;

use super::spec::Spec;
use super::state::State;

pub(super) struct Table<'a> {
    specs: &'a [Spec],
    states: Vec<State>,
    /// Consecutive restarts of each program.
    restarts: Vec<u32>,
    /// Each program's part in the dev loop (one allocation for all three:
    /// a launch pays for every allocation).
    dev: Vec<DevState>,
}

#[derive(Default)]
struct DevState {
    /// Restarts caused by a change of a watched path.
    change_restarts: u32,
    /// A change of a watched path waits out its debounce until then; the
    /// first path that changed.
    change: Option<(Instant, PathBuf)>,
    /// Why the program, which ended, is not up, for what needs it.
    note: Option<String>,
}

impl<'a> Table<'a> {
    /// Every program Pending (waiting for its `after` programs).
    pub(super) fn new(specs: &'a [Spec]) -> Table<'a> {
        Table {
            specs,
            states: specs.iter().map(|_| State::Pending).collect(),
            restarts: vec![0; specs.len()],
            dev: specs.iter().map(|_| DevState::default()).collect(),
        }
    }

    pub(super) fn len(&self) -> usize {
        self.states.len()
    }

    pub(super) fn spec(&self, i: usize) -> &'a Spec {
        &self.specs[i]
    }

    pub(super) fn state_mut(&mut self, i: usize) -> &mut State {
        &mut self.states[i]
    }

    pub(super) fn states(&self) -> &[State] {
        &self.states
    }

    pub(super) fn states_mut(&mut self) -> &mut [State] {
        &mut self.states
    }

    /// Takes program `i`'s state out, for a transition to make the next one
    /// from; the slot reads Pending until [`Table::put`] fills it again.
    pub(super) fn take(&mut self, i: usize) -> State {
        std::mem::replace(&mut self.states[i], State::Pending)
    }

    pub(super) fn put(&mut self, i: usize, state: State) {
        let placeholder = std::mem::replace(&mut self.states[i], state);
        // What `take` left: a Pending, which owns nothing to drop.
        debug_assert!(matches!(placeholder, State::Pending));
        std::mem::forget(placeholder);
    }

    pub(super) fn restarts(&self, i: usize) -> u32 {
        self.restarts[i]
    }

    pub(super) fn restarts_mut(&mut self, i: usize) -> &mut u32 {
        &mut self.restarts[i]
    }

    pub(super) fn change_restarts(&self, i: usize) -> u32 {
        self.dev[i].change_restarts
    }

    pub(super) fn count_change_restart(&mut self, i: usize) {
        self.dev[i].change_restarts += 1;
    }

    /// The pending change of program `i`'s watched paths, if any.
    pub(super) fn change(&self, i: usize) -> Option<&(Instant, PathBuf)> {
        self.dev[i].change.as_ref()
    }

    pub(super) fn set_change(&mut self, i: usize, change: Option<(Instant, PathBuf)>) {
        self.dev[i].change = change;
    }

    /// Why program `i`, which ended, is not up.
    pub(super) fn note(&self, i: usize) -> Option<&str> {
        self.dev[i].note.as_deref()
    }

    pub(super) fn set_note(&mut self, i: usize, note: Option<String>) {
        self.dev[i].note = note;
    }

    /// Whether a program that needs program `i` is running.
    pub(super) fn needed_by_running(&self, i: usize) -> bool {
        (0..self.states.len()).any(|j| {
            self.specs[j].dev.needs.contains(&i) && matches!(self.states[j], State::Running(_))
        })
    }

    /// Whether any program watches paths.
    pub(super) fn watching(&self) -> bool {
        self.specs.iter().any(|s| s.dev.watch.is_some())
    }

    /// Whether program `i` has ended.
    pub(super) fn is_done(&self, i: usize) -> bool {
        matches!(self.states[i], State::Done(_))
    }

    /// Whether every program has ended.
    pub(super) fn all_done(&self) -> bool {
        self.states.iter().all(|s| matches!(s, State::Done(_)))
    }

    /// The programs whose process group is (or was until just now) running.
    pub(super) fn running(&self) -> impl Iterator<Item = usize> + '_ {
        (0..self.states.len()).filter(|&i| matches!(self.states[i], State::Running(_)))
    }

    /// Whether program `j` holds or waits with ticket `id` of the queue in
    /// `dir`.
    pub(super) fn has_ticket(&self, j: usize, dir: &Path, id: TicketId) -> bool {
        self.states[j].has_ticket(dir, id)
    }

    /// The program, other than `i`, that holds or waits with ticket `id` of
    /// the queue in `dir`.
    pub(super) fn owner_of(&self, i: usize, dir: &Path, id: TicketId) -> Option<usize> {
        (0..self.states.len()).find(|&j| j != i && self.states[j].has_ticket(dir, id))
    }

    /// Whether program `j` has ended, and how: `Some(true)` for a success.
    pub(super) fn ended_well(&self, j: usize) -> Option<bool> {
        match &self.states[j] {
            State::Done(e) => Some(e.success()),
            _ => None,
        }
    }

    /// `name: ` when several programs run, nothing for one.
    pub(super) fn prefix(&self, i: usize) -> String {
        if self.specs.len() > 1 {
            format!("{}: ", self.specs[i].name)
        } else {
            String::new()
        }
    }
}
