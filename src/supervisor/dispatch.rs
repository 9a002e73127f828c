//! The loop itself: one `Supervisor` owns every program's state and
//! handles one event at a time on the main thread (child exits, signals,
//! lock hand-offs, control requests, deadlines), then lets each program
//! move as far as it can (see `lifecycle.rs`).

use std::os::fd::RawFd;
use std::sync::Arc;
use std::time::{Duration, Instant};

use signal_hook::consts::signal::{SIGCHLD, SIGINT, SIGKILL, SIGWINCH};

use crate::error::Error;
use crate::events::{Event, Events};
use crate::output::Output;
use crate::process::{ExitKind, Group, reap_exited};
use crate::signals;

use super::spec::{Options, Spec};
use super::state::{End, State};
use super::terminal::{WaitLine, foreground_terminal, ignore_terminal_stops, take_terminal_back};

pub struct Supervisor<'a> {
    pub(super) specs: &'a [Spec],
    pub(super) opts: Options,
    pub(super) states: Vec<State>,
    pub(super) events: Events,
    pub(super) output: Option<Arc<Output>>,
    pub(super) terminal: Option<RawFd>,
    pub(super) wait_line: WaitLine,
    pub(super) stopped_by: Option<i32>,
    /// Programs that ended in failure, in the order they did, with their
    /// status: the run exits with the first. A program started again by
    /// `dblaunch restart` leaves this list (its old failure no longer
    /// stands; how it ends this time counts instead).
    pub(super) failures: Vec<(usize, u8)>,
    /// Consecutive restarts of each program.
    pub(super) restarts: Vec<u32>,
    pub(super) _control: Option<crate::control::Listener>,
    pub(super) journal: dblaunch_lock::journal::Journal,
    /// Tickets that programs let go of since the loop last slept: waiters
    /// behind them move on without asking the kernel, and their names are
    /// cleared away after whoever could start has started.
    pub(super) released: dblaunch_lock::Released,
    /// Each program's current wait, stretch by stretch, for the journal.
    pub(super) blocked: Vec<Vec<super::journal::Blocked>>,
}

impl<'a> Supervisor<'a> {
    pub fn new(specs: &'a [Spec], opts: Options) -> Result<Supervisor<'a>, Error> {
        let mut events = Events::new().map_err(|source| Error::Io {
            action: "install signal handlers".to_owned(),
            source,
        })?;
        // Orphaned grandchildren are reparented to us, so we can reap them
        // and see when a program's group is empty.
        crate::platform::become_subreaper();
        // One program keeps dblaunch's stdio (and the terminal); several
        // get prefixed pipes.
        let (output, terminal) = match &opts.logs {
            Some(dir) => (
                Some(Output::to_files(dir.clone()).map_err(|source| Error::Io {
                    action: format!("create the log directory {}", dir.display()),
                    source,
                })?),
                None,
            ),
            None if specs.len() == 1 => (None, foreground_terminal()),
            None => (
                Some(Output::new(specs.iter().map(|s| s.name.as_str()))),
                None,
            ),
        };
        if terminal.is_some() {
            ignore_terminal_stops();
        }
        let started = Instant::now();
        for spec in specs.iter().filter(|s| s.yields) {
            for req in &spec.locks {
                let watched = dblaunch_lock::Queue::open(&req.db)
                    .map_err(|e| e.to_string())
                    .and_then(|q| events.watch_queue(q.dir()).map_err(|e| e.to_string()));
                if let Err(e) = watched {
                    tracing::warn!(
                        "{}: will not notice waiters for {}: {e}",
                        spec.name,
                        req.db.path().display()
                    );
                }
            }
        }
        let control = match &opts.control {
            Some(dir) => {
                let listening = events
                    .notifier()
                    .and_then(|n| crate::control::listen(dir, move |r| n.send(Event::Control(r))));
                match listening {
                    Ok(l) => Some(l),
                    Err(e) => {
                        tracing::warn!(
                            "`dblaunch stop` will not reach this run: cannot listen in {}: {e}",
                            dir.join(crate::control::DIR).display()
                        );
                        None
                    }
                }
            }
            None => None,
        };
        Ok(Supervisor {
            _control: control,
            states: specs.iter().map(|_| State::Pending).collect(),
            specs,
            opts,
            events,
            output,
            terminal,
            wait_line: WaitLine::new(started, specs.len() == 1),
            stopped_by: None,
            failures: Vec::new(),
            restarts: vec![0; specs.len()],
            journal: dblaunch_lock::journal::Journal::default(),
            released: dblaunch_lock::Released::default(),
            blocked: specs.iter().map(|_| Vec::new()).collect(),
        })
    }
}

impl Supervisor<'_> {
    /// Runs every program to its end; returns the run's exit status.
    pub fn run(mut self) -> u8 {
        loop {
            self.step_all();
            self.report_ready();
            if self.states.iter().all(|s| matches!(s, State::Done(_))) {
                break;
            }
            // Tidying and history wait until whatever could start has started.
            self.released = dblaunch_lock::Released::default();
            self.journal.flush();
            let (deadline, tick) = self.next_wake();
            match self.events.next(deadline, tick) {
                Some(Event::Signal(SIGCHLD)) => self.reap(),
                Some(Event::Signal(s)) if signals::is_stop(s) => self.stop(s),
                Some(Event::Signal(s)) => self.forward(s),
                Some(Event::Lock(i, p)) => self.lock_progress(i, p),
                Some(Event::Control(r)) => self.control(r),
                Some(Event::QueueChanged) => {
                    for i in 0..self.states.len() {
                        self.yield_if_waited_for(i);
                    }
                }
                None => {
                    if self.wait_line.active() {
                        self.wait_line.redraw();
                    }
                }
            }
        }
        self.wait_line.clear();
        self.journal_flush();
        if let Some(tty) = self.terminal {
            take_terminal_back(tty);
        }
        reap_exited();
        let status = match (self.stopped_by, self.failures.first()) {
            (Some(sig), _) => ExitKind::Signal(sig).status(),
            (None, Some(&(_, code))) => code,
            (None, None) => 0,
        };
        // dblaunch exits next: taking the signal handlers down one by one
        // (signal-hook copies its registry for each) would be work for
        // nothing. A signal that comes now is caught and read by no one.
        std::mem::forget(self.events);
        status
    }

    pub(super) fn announce(&self, message: std::fmt::Arguments<'_>) {
        if self.opts.announce {
            tracing::info!("{message}");
        } else {
            tracing::debug!("{message}");
        }
    }

    pub(super) fn finish(&mut self, i: usize, end: End) {
        if let Some(code) = end.status() {
            self.failures.push((i, code));
        }
        self.states[i] = State::Done(end);
    }

    /// Moves every program as far as it can go without waiting.
    pub(super) fn step_all(&mut self) {
        // Each program as far as it goes before the next one (so that one
        // that can start does, before a later one queues behind it); then
        // again, since a program that ended may let another start.
        loop {
            let mut moved = false;
            for i in 0..self.states.len() {
                while self.step(i) {
                    moved = true;
                }
            }
            if !moved {
                break;
            }
        }
    }

    pub(super) fn fail(&mut self, i: usize, e: Error) {
        if let Error::Lock(lock) = &e {
            self.journal_gave_up(i, lock);
        }
        tracing::error!("{}{e}", self.prefix(i));
        self.finish(i, End::Failed(e.exit_code()));
    }

    /// `name: ` when several programs run, nothing for one.
    pub(super) fn prefix(&self, i: usize) -> String {
        if self.specs.len() > 1 {
            format!("{}: ", self.specs[i].name)
        } else {
            String::new()
        }
    }

    pub(super) fn reap(&mut self) {
        for (pid, kind) in reap_exited() {
            for s in &mut self.states {
                if let State::Running(r) = s {
                    if r.pid == pid {
                        r.exit = Some(kind);
                    }
                }
            }
        }
    }

    pub(super) fn running(&self) -> impl Iterator<Item = usize> + '_ {
        (0..self.states.len()).filter(|&i| matches!(self.states[i], State::Running(_)))
    }

    pub(super) fn forward(&mut self, signal: i32) {
        // SIGWINCH only concerns the program that owns the terminal.
        if signal == SIGWINCH && self.terminal.is_none() {
            return;
        }
        if self.running().next().is_none() && signals::ends_queueing(signal) {
            // Nothing runs: a hang-up or quit ends the run like a stop.
            self.stop(signal);
            return;
        }
        for i in self.running().collect::<Vec<_>>() {
            if let State::Running(r) = &self.states[i] {
                Group(r.pid).signal(signal);
            }
        }
    }

    pub(super) fn stop(&mut self, signal: i32) {
        match self.stopped_by {
            None => {
                self.stopped_by = Some(signal);
                self.wait_line.clear();
                let running: Vec<usize> = self.running().collect();
                if running.is_empty() {
                    tracing::info!(
                        "stopped by {}; no program was running",
                        signals::name(signal)
                    );
                } else {
                    tracing::info!(
                        "stopping ({}); SIGKILL in {}{}",
                        signals::name(signal),
                        humantime::format_duration(self.opts.stop_timeout),
                        if signal == SIGINT {
                            ", or at once on a second Ctrl-C"
                        } else {
                            ""
                        }
                    );
                }
                for i in running {
                    self.stop_one(i, signal);
                }
            }
            Some(_) if signal == SIGINT => {
                tracing::info!("second interrupt: killing every program");
                let now = Instant::now();
                for s in &mut self.states {
                    if let State::Running(r) = s {
                        if r.killed_at.is_none() {
                            Group(r.pid).signal(SIGKILL);
                            r.killed_at = Some(now);
                        }
                    }
                }
            }
            Some(_) => self.forward(signal),
        }
    }

    pub(super) fn stop_one(&mut self, i: usize, signal: i32) {
        let timeout = self.opts.stop_timeout;
        if let State::Running(r) = &mut self.states[i] {
            r.ask_to_stop(signal, timeout);
        }
    }

    /// When to look again without an event: the earliest deadline.
    pub(super) fn next_wake(&self) -> (Option<Instant>, Option<Duration>) {
        let mut deadline: Option<Instant> = None;
        let mut tick: Option<Duration> = None;
        let mut earliest = |t: Instant| deadline = Some(deadline.map_or(t, |d| d.min(t)));
        for s in &self.states {
            match s {
                State::Queued { since, .. } => {
                    if let Some(w) = self.opts.wait {
                        earliest(*since + w);
                    }
                }
                State::Foreign { since, .. } => {
                    if let Some(w) = self.opts.wait {
                        earliest(*since + w);
                    }
                    // Processes outside dblaunch send no wake-up: look every
                    // 100 ms while one is in the way (and only then).
                    shortest(&mut tick, Duration::from_millis(100));
                }
                State::Running(r) => {
                    if let (Some(k), None) = (r.kill_at, r.killed_at) {
                        earliest(k);
                    }
                    if r.exit.is_some() {
                        // Not every member's death is reported to us.
                        shortest(&mut tick, Duration::from_millis(50));
                    }
                }
                State::Backoff { until, .. } => earliest(*until),
                State::Pending | State::Done(_) => {}
            }
        }
        if self.wait_line.active() {
            shortest(&mut tick, Duration::from_secs(1));
        }
        (deadline, tick)
    }
}

/// Keeps the shorter of two ticks.
pub(super) fn shortest(tick: &mut Option<Duration>, t: Duration) {
    *tick = Some(tick.map_or(t, |old| old.min(t)));
}
