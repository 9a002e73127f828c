//! How the run ends: the signal that stopped it, if one did, and the
//! programs that failed; from those, its exit status.

use crate::process::ExitKind;

use super::state::End;

#[derive(Default)]
pub(super) struct Verdict {
    stopped_by: Option<i32>,
    /// Programs that ended in failure, in the order they did, with their
    /// status: the run exits with the first. A program started again by
    /// `dblaunch restart` leaves this list (its old failure no longer
    /// stands; how it ends this time counts instead).
    failures: Vec<(usize, u8)>,
}

impl Verdict {
    /// The signal that stopped the run (no program starts after it).
    pub(super) fn stopped_by(&self) -> Option<i32> {
        self.stopped_by
    }

    pub(super) fn stopping(&self) -> bool {
        self.stopped_by.is_some()
    }

    pub(super) fn stop(&mut self, signal: i32) {
        self.stopped_by = Some(signal);
    }

    /// Program `i` ended as `end`: a failure if that has a status.
    pub(super) fn ended(&mut self, i: usize, end: &End) {
        if let Some(code) = end.status() {
            self.failures.push((i, code));
        }
    }

    /// Program `i` starts again: how it ended before no longer counts.
    pub(super) fn forget(&mut self, i: usize) {
        self.failures.retain(|&(p, _)| p != i);
    }

    /// The run's exit status: the stop signal's, else the first failure's.
    pub(super) fn status(&self) -> u8 {
        match (self.stopped_by, self.failures.first()) {
            (Some(sig), _) => ExitKind::Signal(sig).status(),
            (None, Some(&(_, code))) => code,
            (None, None) => 0,
        }
    }
}
