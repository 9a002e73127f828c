//! The states of one program (Pending → Queued → Foreign → Running →
//! Backoff → Done), as data; `lifecycle.rs` holds the transitions from one
//! to the next.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::output::Pump;
use crate::process::{ExitKind, Group};
use dblaunch_lock::{Acquirer, Acquisition, Held, Holder, Mode, TicketId};

/// How a program ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum End {
    Exited(ExitKind),
    /// It could not be started or its locks not taken; the code is the
    /// status the spec gives for why (75, 126, 127, 1).
    Failed(u8),
    /// An `after` program failed.
    Skipped,
    /// The run was stopped before it started.
    NotStarted,
    /// `dblaunch stop` stopped it (or kept it from starting): a success for
    /// the run's status, but not for what runs `after` it.
    Stopped,
}

impl End {
    pub(super) fn success(&self) -> bool {
        matches!(self, End::Exited(ExitKind::Code(0)))
    }

    pub(super) fn status(&self) -> Option<u8> {
        match self {
            End::Exited(ExitKind::Code(0)) | End::Skipped | End::NotStarted | End::Stopped => None,
            End::Exited(k) => Some(k.status()),
            End::Failed(code) => Some(*code),
        }
    }
}

pub(super) enum State {
    Pending,
    Queued {
        waiter: Waiter,
        since: Instant,
    },
    Foreign {
        held: Held,
        since: Instant,
        warned: bool,
    },
    Running(Box<Running>),
    /// Ended; starts again (queueing for its locks anew) at `until`.
    Backoff {
        until: Instant,
        last: ExitKind,
    },
    Done(End),
}

/// How a queued program waits for its locks.
pub(super) enum Waiter {
    /// Behind another process's ticket: a thread of its own sleeps in the
    /// kernel until that ticket goes, and tells the loop.
    Thread(Acquirer),
    /// Behind a ticket of program `owner` of this same run: no thread. Only
    /// the loop itself lets go of its own programs' tickets, so it tries
    /// again (without blocking) once that ticket is no longer `owner`'s. In a
    /// `run` of conflicting programs, each hand-off then happens on the
    /// loop's thread, the moment the previous program's locks are released.
    Behind {
        pending: Box<Acquisition>,
        owner: usize,
    },
}

impl Waiter {
    /// Gives up its place: every ticket taken so far leaves the queue.
    pub(super) fn cancel(self) {
        match self {
            Waiter::Thread(acquirer) => acquirer.cancel(),
            Waiter::Behind { pending, .. } => pending.abandon(),
        }
    }

    /// Who is ahead of it on the database it is blocked on.
    pub(super) fn holders_now(&self) -> Option<(PathBuf, Mode, Vec<Holder>)> {
        match self {
            Waiter::Thread(acquirer) => acquirer.holders_now(),
            Waiter::Behind { pending, .. } => pending.holders_now(),
        }
    }

    pub(super) fn has_ticket(&self, dir: &Path, id: TicketId) -> bool {
        match self {
            Waiter::Thread(acquirer) => acquirer.has_ticket(dir, id),
            Waiter::Behind { pending, .. } => pending.has_ticket(dir, id),
        }
    }
}

impl State {
    /// Whether ticket `id` of the queue in `dir` is one this program holds
    /// or waits with.
    pub(super) fn has_ticket(&self, dir: &Path, id: TicketId) -> bool {
        match self {
            State::Queued { waiter, .. } => waiter.has_ticket(dir, id),
            State::Foreign { held, .. } => held.has_ticket(dir, id),
            State::Running(r) => r.held.has_ticket(dir, id),
            State::Pending | State::Backoff { .. } | State::Done(_) => false,
        }
    }
}

pub(super) struct Running {
    pub(super) pid: i32,
    /// The pid's start time, checked before every signal to it.
    pub(super) start_time: u64,
    /// `dblaunch stop` asked for it; these wait for the answer.
    pub(super) stop_requested: bool,
    /// It is being stopped to let a waiter in; it queues again after.
    pub(super) yielding: bool,
    /// `dblaunch restart` asked for it: queue again once it has ended.
    pub(super) restart_requested: bool,
    pub(super) replies: Vec<std::sync::mpsc::Sender<String>>,
    pub(super) held: Held,
    pub(super) started: Instant,
    pub(super) exit: Option<ExitKind>,
    /// SIGKILL the group at this time (a stop or leftovers are under way).
    pub(super) kill_at: Option<Instant>,
    pub(super) killed_at: Option<Instant>,
    pub(super) pumps: Vec<Pump>,
    /// Whether it is up yet, for what needs it (`ready`).
    pub(super) readiness: Readiness,
    /// A stop signal held back until everything that needs it has exited.
    pub(super) stop_deferred: Option<i32>,
    /// A watched path changed: queue again once it has ended.
    pub(super) change_restart: bool,
    /// Nothing needs it any more (the run's other programs have ended).
    pub(super) ending: bool,
}

/// Whether a running program is up.
pub(super) enum Readiness {
    /// It has no `ready` check: up as soon as it runs.
    Up,
    /// Its check has not succeeded yet.
    Starting {
        /// The next try (when no try is under way).
        next: Instant,
        /// Not ready by then: it is stopped, and fails.
        deadline: Instant,
        /// What the last try saw.
        last: Option<String>,
        trying: Option<Try>,
    },
    Ready,
    /// Not ready by its deadline: being stopped, and it fails.
    TimedOut,
}

/// A try of a check that is under way.
pub(super) enum Try {
    /// tcp or http: a thread that reports with an event.
    Thread,
    /// exec: a process of dblaunch's, reaped by the loop.
    Process(Box<CheckProcess>),
}

pub(super) struct CheckProcess {
    pub(super) pid: i32,
    /// Killed (its group) if it runs past this.
    pub(super) until: Instant,
    pub(super) stdout: Option<std::process::ChildStdout>,
    pub(super) stderr: Option<std::process::ChildStderr>,
}

impl Readiness {
    /// Up for what needs it.
    pub(super) fn up(&self) -> bool {
        matches!(self, Readiness::Up | Readiness::Ready)
    }
}

impl Running {
    /// Sends `signal` to the program's group and schedules SIGKILL after
    /// `timeout`. The pid is our child until we reap it, so it cannot be
    /// another process's; it is checked against its start time all the same,
    /// as before any signal (after the exit, what is signalled is the group
    /// of its leftovers, which keeps the id reserved while it exists).
    pub(super) fn ask_to_stop(&mut self, signal: i32, timeout: Duration) {
        if self.exit.is_some()
            || dblaunch_lock::procfs::start_time(self.pid) == Some(self.start_time)
        {
            Group(self.pid).signal(signal);
        }
        let at = Instant::now() + timeout;
        self.kill_at = Some(self.kill_at.map_or(at, |k| k.min(at)));
    }
}
