//! One program's life: Pending (for `after`) → Queued (for its locks) →
//! Foreign (for processes that lock its database outside dblaunch) →
//! Running → Backoff (before a restart, or after yielding) → Done. The
//! types of each state, and the transitions the loop asks for.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use signal_hook::consts::signal::{SIGKILL, SIGTERM};

use crate::error::Error;
use crate::events::Event;
use crate::output::Stream;
use crate::process::{self, ExitKind, Group, Launch, Stdio};
use crate::signals;
use dblaunch_lock::{Acquisition, Held, Holder, LockError, Mode, Owner, Progress, Step, round};

use super::dispatch::Supervisor;
use super::spec::{STABLE_RUN, backoff};
use super::state::{End, Running, State, Wait};

impl Supervisor<'_> {
    /// One program; true if its state changed.
    pub(super) fn step(&mut self, i: usize) -> bool {
        if self.stopped_by.is_none() && self.may_try_again(i) {
            return self.try_again(i);
        }
        let now = Instant::now();
        match &mut self.states[i] {
            State::Pending => {
                if self.stopped_by.is_some() {
                    self.finish(i, End::NotStarted);
                    return true;
                }
                let spec = &self.specs[i];
                if let Some(&d) = spec
                    .after
                    .iter()
                    .find(|&&d| matches!(&self.states[d], State::Done(e) if !e.success()))
                {
                    tracing::warn!(
                        "{}: not started, because {} did not succeed",
                        spec.name,
                        self.specs[d].name
                    );
                    self.finish(i, End::Skipped);
                    return true;
                }
                let ready = spec
                    .after
                    .iter()
                    .all(|&d| matches!(&self.states[d], State::Done(e) if e.success()));
                if ready {
                    self.queue(i);
                    return true;
                }
                false
            }
            State::Queued { since, .. } => {
                let since = *since;
                if self.stopped_by.is_some() {
                    self.give_up_place(i);
                    self.finish(i, End::NotStarted);
                    return true;
                }
                if self.opts.wait.is_some_and(|w| now >= since + w) {
                    let State::Queued { wait, .. } =
                        std::mem::replace(&mut self.states[i], State::Pending)
                    else {
                        unreachable!()
                    };
                    let report = wait.holders_now();
                    wait.cancel();
                    let (database, mode, holders) =
                        report.unwrap_or_else(|| (PathBuf::new(), Mode::Write, Vec::new()));
                    self.fail(
                        i,
                        busy(database, mode, holders, since, self.opts.wait).into(),
                    );
                    return true;
                }
                false
            }
            State::Foreign {
                held,
                since,
                warned,
            } => {
                let since = *since;
                if self.stopped_by.is_some() {
                    self.give_up_place(i);
                    self.finish(i, End::NotStarted);
                    return true;
                }
                let Some((database, mode, holders)) = held.foreign_holders().into_iter().next()
                else {
                    let State::Foreign { held, .. } =
                        std::mem::replace(&mut self.states[i], State::Pending)
                    else {
                        unreachable!()
                    };
                    self.spawn(i, held);
                    return true;
                };
                if self.opts.wait.is_some_and(|w| now >= since + w) {
                    let State::Foreign { held, .. } =
                        std::mem::replace(&mut self.states[i], State::Pending)
                    else {
                        unreachable!()
                    };
                    held.release();
                    self.fail(
                        i,
                        busy(database, mode, holders, since, self.opts.wait).into(),
                    );
                    return true;
                }
                if !*warned {
                    *warned = true;
                    let list: Vec<String> = holders.iter().map(ToString::to_string).collect();
                    tracing::warn!(
                        "{}: {} is in use outside dblaunch: {}; waiting for it to let go",
                        self.specs[i].name,
                        database.display(),
                        list.join(", ")
                    );
                    self.journal_foreign(i, &database, mode, &holders);
                }
                false
            }
            State::Running(r) => {
                let group = Group(r.pid);
                if r.exit.is_some() {
                    let gone = !group.exists();
                    // SIGKILL cannot be ignored: a group that outlives it this
                    // long holds only zombies of a parent outside it.
                    let hopeless = r
                        .killed_at
                        .is_some_and(|k| k.elapsed() > Duration::from_secs(5));
                    if gone || hopeless {
                        if hopeless {
                            tracing::warn!(
                                "{}: processes remain in its group after SIGKILL",
                                self.specs[i].name
                            );
                        }
                        let State::Running(r) =
                            std::mem::replace(&mut self.states[i], State::Pending)
                        else {
                            unreachable!()
                        };
                        self.ended(i, *r);
                        return true;
                    }
                    if r.kill_at.is_none() {
                        tracing::info!(
                            "{}: exited, but left processes in its group; stopping them (SIGTERM, SIGKILL after {})",
                            self.specs[i].name,
                            humantime::format_duration(self.opts.stop_timeout)
                        );
                        group.signal(SIGTERM);
                        r.kill_at = Some(now + self.opts.stop_timeout);
                    }
                }
                if r.killed_at.is_none() && r.kill_at.is_some_and(|k| now >= k) {
                    tracing::warn!(
                        "{}: did not stop within {}; killing it (SIGKILL)",
                        self.specs[i].name,
                        humantime::format_duration(self.opts.stop_timeout)
                    );
                    group.signal(SIGKILL);
                    r.killed_at = Some(now);
                }
                false
            }
            State::Backoff { until, last } => {
                let (until, last) = (*until, *last);
                if self.stopped_by.is_some() {
                    self.finish(i, End::Exited(last));
                    return true;
                }
                if now >= until {
                    self.announce(format_args!("{}restarting", self.prefix(i)));
                    self.queue(i);
                    return true;
                }
                false
            }
            State::Done(_) => false,
        }
    }

    /// Leaves the queue (or lets go of locks taken but not yet used) for a
    /// program that will not start now; its state is Pending until the
    /// caller says how it ended.
    pub(super) fn give_up_place(&mut self, i: usize) {
        match std::mem::replace(&mut self.states[i], State::Pending) {
            State::Queued { wait, .. } => wait.cancel(),
            State::Foreign { held, .. } => {
                held.release();
            }
            _ => {}
        }
    }

    /// Joins the queue for every lock of program `i`.
    pub(super) fn queue(&mut self, i: usize) {
        let spec = &self.specs[i];
        let owner = Owner {
            program: spec.name.clone(),
            command: spec.argv.clone(),
        };
        let since = Instant::now();
        self.blocked[i].clear();
        let result = Acquisition::new(spec.locks.clone(), owner, self.opts.remote.as_ref())
            .and_then(|mut pending| {
                if self.opts.wait == Some(Duration::ZERO) {
                    return pending.try_now().map(Ok);
                }
                // The uncontended path stays on this thread: no waiting, no thread.
                Ok(match pending.advance(false, |_| {})? {
                    Step::Done => Ok(pending.into_held()),
                    Step::Blocked => Err(pending),
                })
            });
        match result {
            Ok(Ok(held)) => {
                self.states[i] = State::Foreign {
                    held,
                    since,
                    warned: false,
                }
            }
            Ok(Err(pending)) => self.wait(i, pending, since),
            Err(e) => self.fail(i, e.into()),
        }
    }

    /// Program `i` is blocked. Behind a ticket of one of this run's own
    /// programs it waits on the loop's thread; behind anyone else's, in a
    /// thread of its own.
    fn wait(&mut self, i: usize, pending: Acquisition, since: Instant) {
        if let Some((req, holders)) = pending.blocked_on() {
            let database = req.db.path().to_path_buf();
            self.journal_waiting(i, &database, req.mode, &holders, since);
        }
        let owner = pending.blocker().and_then(|(dir, id)| {
            (0..self.states.len()).find(|&j| j != i && self.states[j].has_ticket(dir, id))
        });
        if let Some(owner) = owner {
            let progress = pending.waiting();
            self.states[i] = State::Queued {
                wait: Wait::Behind {
                    pending: Box::new(pending),
                    owner,
                },
                since,
            };
            if let Some(p) = progress {
                self.lock_progress(i, p);
            }
            return;
        }
        match self.events.notifier() {
            Ok(notifier) => {
                let acquirer = pending.in_background(move |p| notifier.send(Event::Lock(i, p)));
                self.states[i] = State::Queued {
                    wait: Wait::Thread(acquirer),
                    since,
                };
            }
            Err(source) => {
                pending.abandon();
                self.fail(
                    i,
                    Error::Io {
                        action: "create a wake-up channel".to_owned(),
                        source,
                    },
                );
            }
        }
    }

    /// Whether program `i` waits on the loop's thread behind a ticket that
    /// its owner no longer holds (released, or given up).
    fn may_try_again(&self, i: usize) -> bool {
        match &self.states[i] {
            State::Queued {
                wait: Wait::Behind { pending, owner },
                ..
            } => !pending
                .blocker()
                .is_some_and(|(dir, id)| self.states[*owner].has_ticket(dir, id)),
            _ => false,
        }
    }

    /// The ticket that program `i` waited behind on this thread is no
    /// longer held by this run: move on without blocking.
    fn try_again(&mut self, i: usize) -> bool {
        let State::Queued {
            wait: Wait::Behind { mut pending, .. },
            since,
        } = std::mem::replace(&mut self.states[i], State::Pending)
        else {
            unreachable!("only a program waiting behind its own run tries again")
        };
        pending.pass_released(&self.released);
        match pending.advance(false, |_| {}) {
            Ok(Step::Done) => self.got_locks(i, pending.into_held(), since),
            Ok(Step::Blocked) => self.wait(i, *pending, since),
            Err(e) => {
                pending.abandon();
                self.wait_line.clear();
                self.fail(i, e.into());
            }
        }
        true
    }

    fn got_locks(&mut self, i: usize, held: Held, since: Instant) {
        self.wait_line.clear();
        self.announce(format_args!(
            "{}got its locks after waiting {}",
            self.prefix(i),
            round(since.elapsed())
        ));
        self.states[i] = State::Foreign {
            held,
            since,
            warned: false,
        };
    }

    pub(super) fn lock_progress(&mut self, i: usize, p: Progress) {
        match p {
            Progress::Waiting {
                database,
                mode,
                holders,
                more,
            } => {
                if matches!(self.states[i], State::Queued { .. }) {
                    self.journal_waiting(i, &database, mode, &holders, Instant::now());
                }
                let prefix = self.prefix(i);
                tracing::debug!(
                    "{prefix}queued for the {mode} lock on {}",
                    database.display()
                );
                self.wait_line
                    .waiting(&prefix, &database, mode, &holders, more);
            }
            Progress::Acquired(held) => {
                if let State::Queued { since, .. } = self.states[i] {
                    self.got_locks(i, held, since);
                } else {
                    // Cancelled meanwhile (a stop): give them back.
                    held.release();
                }
            }
            Progress::Failed(e) => {
                if matches!(self.states[i], State::Queued { .. }) {
                    self.wait_line.clear();
                    self.fail(i, e.into());
                }
            }
        }
    }

    pub(super) fn spawn(&mut self, i: usize, mut held: Held) {
        if let Err(e) = held.check_still_queued() {
            held.release();
            self.fail(i, e.into());
            return;
        }
        let spec = &self.specs[i];
        let fds = held.fds();
        let mut env = spec.env.clone();
        env.push(("DBLAUNCH_PROGRAM".to_owned(), spec.name.clone()));
        env.extend(held.fencing_env());
        let launch = Launch {
            argv: &spec.argv,
            cwd: spec.cwd.as_deref(),
            env: &env,
            inherit: &fds,
            terminal: self.terminal,
            stdio: if self.output.is_some() {
                Stdio::Piped
            } else {
                Stdio::Inherit
            },
        };
        let child = match process::spawn(&launch) {
            Ok(c) => c,
            Err(e) => {
                held.release();
                self.fail(i, e.into());
                return;
            }
        };
        // Known once: for the records, and to check before every signal.
        let start_time = child
            .start_time
            .or_else(|| dblaunch_lock::procfs::start_time(child.pid))
            .unwrap_or_default();
        held.mark_holding(child.pid, start_time);
        self.journal_granted(i, &held, child.pid);
        if spec.yields && self.opts.remote.is_some() {
            // Waiters of other hosts are not in the local queue's directory
            // (which the loop watches): the lease looks for them.
            if let Ok(notifier) = self.events.notifier() {
                let notifier = std::sync::Mutex::new(notifier);
                held.watch_remote_waiters(Box::new(move || {
                    notifier
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .send(Event::QueueChanged);
                }));
            }
        }
        let mut pumps = Vec::new();
        if let Some(out) = &self.output {
            if let Some(o) = child.stdout {
                pumps.extend(out.pump(&spec.name, i, Stream::Stdout, o).ok());
            }
            if let Some(e) = child.stderr {
                pumps.extend(out.pump(&spec.name, i, Stream::Stderr, e).ok());
            }
        }
        self.announce(format_args!(
            "{}started (pid {})",
            self.prefix(i),
            child.pid
        ));
        self.states[i] = State::Running(Box::new(Running {
            pid: child.pid,
            start_time,
            stop_requested: false,
            yielding: false,
            restart_requested: false,
            replies: Vec::new(),
            held,
            started: Instant::now(),
            exit: None,
            kill_at: None,
            killed_at: None,
            pumps,
        }));
        // A stop that came before the spawn reaches it too.
        if let Some(s) = self.stopped_by {
            self.stop_one(i, s);
        }
        // So does a waiter that queued while it was starting.
        self.yield_if_waited_for(i);
    }

    /// The program's group is empty: its output is drained, its locks go.
    pub(super) fn ended(&mut self, i: usize, mut r: Running) {
        // Pipes end when the last writer is gone; a process that escaped
        // the group may hold one forever, so do not wait for long.
        let until = Instant::now() + Duration::from_secs(2);
        for p in std::mem::take(&mut r.pumps) {
            p.finish(until);
        }
        let name = self.specs[i].name.clone();
        let after = round(r.started.elapsed());
        let exit = r.exit.unwrap_or(ExitKind::Signal(SIGKILL));
        let journal = self.journal_released(i, &r, exit);
        for req in r.held.requests() {
            tracing::debug!(
                "{}held the {} lock on {} for {after}",
                self.prefix(i),
                req.mode,
                req.db.path().display(),
            );
        }
        let mut released = r.held.release();
        for (database, pids) in std::mem::take(&mut released.kept) {
            tracing::warn!(
                "{}: {} stays locked: process{} {} escaped its process group and still hold{} the lock; it is released when {} exit",
                name,
                database.display(),
                if pids.len() == 1 { "" } else { "es" },
                pids.iter()
                    .map(|p| p.to_string())
                    .collect::<Vec<_>>()
                    .join(", "),
                if pids.len() == 1 { "s" } else { "" },
                if pids.len() == 1 { "it" } else { "they" },
            );
        }
        // Cleared away once the next program has started (see `run`).
        self.released.extend(released);
        self.journal_write_all(journal);
        let how = match exit {
            ExitKind::Code(c) => format!("exited {c}"),
            ExitKind::Signal(s) => format!("killed by {}", signals::name(s)),
        };
        if r.stop_requested {
            tracing::info!(
                "{}stopped by `dblaunch stop`: {how} after {after}",
                self.prefix(i)
            );
            for reply in &r.replies {
                let _ = reply.send(format!(
                    "stopped {name} (pid {}): {how} after {after}",
                    r.pid
                ));
            }
            self.finish(i, End::Stopped);
            return;
        }
        if r.restart_requested && self.stopped_by.is_none() {
            tracing::info!("{}{how} after {after}; starting it again", self.prefix(i));
            for reply in &r.replies {
                let _ = reply.send(format!(
                    "{name} (pid {}) {how} after {after}; starting it again",
                    r.pid
                ));
            }
            self.restarts[i] = 0;
            self.states[i] = State::Backoff {
                until: Instant::now(),
                last: exit,
            };
            return;
        }
        if r.yielding && self.stopped_by.is_none() {
            tracing::info!(
                "{}yielded ({how} after {after}); queueing again behind the waiters",
                self.prefix(i)
            );
            self.states[i] = State::Backoff {
                until: Instant::now(),
                last: exit,
            };
            return;
        }
        let spec = &self.specs[i];
        let success = exit == ExitKind::Code(0);
        if self.stopped_by.is_none() && spec.restart.wants(success) {
            if r.started.elapsed() >= STABLE_RUN {
                self.restarts[i] = 0;
            }
            if self.restarts[i] < spec.max_restarts {
                self.restarts[i] += 1;
                let n = self.restarts[i];
                let delay = backoff(n);
                tracing::info!(
                    "{}{how} after {after}; restarting in {} (restart {n} of at most {} in a row)",
                    self.prefix(i),
                    humantime::format_duration(delay),
                    spec.max_restarts
                );
                self.states[i] = State::Backoff {
                    until: Instant::now() + delay,
                    last: exit,
                };
                return;
            }
            tracing::warn!(
                "{}{how} after {after}; giving up after {} restarts in a row",
                self.prefix(i),
                spec.max_restarts
            );
        } else {
            self.announce(format_args!("{}{how} after {after}", self.prefix(i)));
        }
        self.finish(i, End::Exited(exit));
    }

    /// A yielding program that someone now waits for (a conflicting ticket
    /// behind its own) is stopped gracefully and will queue again.
    pub(super) fn yield_if_waited_for(&mut self, i: usize) {
        if !self.specs[i].yields || self.stopped_by.is_some() {
            return;
        }
        let signal = self.specs[i].stop_signal;
        let timeout = self.opts.stop_timeout;
        let prefix = self.prefix(i);
        let State::Running(r) = &mut self.states[i] else {
            return;
        };
        if r.yielding || r.stop_requested || r.exit.is_some() {
            return;
        }
        let behind = r.held.waiting_behind();
        let Some((database, who)) = behind.first() else {
            return;
        };
        r.ask_to_stop(signal, timeout);
        r.yielding = true;
        let (database, holder) = (database.clone(), who.clone());
        let who = match who {
            Holder::Program {
                program, pid, mode, ..
            } => format!("{program} (pid {pid}), which waits to {mode}"),
            other => other.to_string(),
        };
        tracing::info!(
            "{prefix}yielding {} to {who}: stopping it ({}), back when it is done",
            database.display(),
            signals::name(signal)
        );
        self.journal_yielded(i, &database, &holder);
    }
}

pub(super) fn busy(
    database: PathBuf,
    mode: Mode,
    holders: Vec<Holder>,
    since: Instant,
    limit: Option<Duration>,
) -> LockError {
    LockError::Busy {
        database,
        mode,
        holders,
        waited: since.elapsed(),
        limit: limit.unwrap_or_default(),
    }
}
