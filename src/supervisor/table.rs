//! The run's programs: what each one is ([`Spec`]), where it is in its life
//! ([`State`]), and how many times in a row it has restarted. Program `i`
//! is index `i` of all three.

use std::path::Path;

use dblaunch_lock::TicketId;

use super::spec::Spec;
use super::state::State;

pub(super) struct Table<'a> {
    specs: &'a [Spec],
    states: Vec<State>,
    /// Consecutive restarts of each program.
    restarts: Vec<u32>,
}

impl<'a> Table<'a> {
    /// Every program Pending (waiting for its `after` programs).
    pub(super) fn new(specs: &'a [Spec]) -> Table<'a> {
        Table {
            specs,
            states: specs.iter().map(|_| State::Pending).collect(),
            restarts: vec![0; specs.len()],
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
