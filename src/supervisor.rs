//! The one loop that runs programs: it starts each when its `after`
//! programs have succeeded and its locks are held, and orders everything
//! that happens then (child exits, signals, lock hand-offs, deadlines) as
//! events handled one at a time on the main thread. `exec` is a run of one
//! program; `run` is a run of many.
//!
//! Per program: Pending (for `after`) → Queued (for locks) → Foreign (for
//! processes that lock the database outside dblaunch) → Running → Done. The
//! locks are released only once the program's whole process group is gone.

use std::io::{IsTerminal, Write};
use std::os::fd::{AsFd, AsRawFd, RawFd};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use nix::sys::signal::{SigHandler, Signal};
use signal_hook::consts::signal::{SIGCHLD, SIGINT, SIGKILL, SIGTERM, SIGWINCH};

use crate::error::Error;
use crate::events::{Event, Events};
use crate::lock::{
    Acquirer, Held, Holder, LockError, Mode, Owner, Pending, Progress, Request, Step, round,
};
use crate::output::{Output, Pump, Stream};
use crate::process::{self, ExitKind, Group, Launch, Stdio, reap_exited};
use crate::signals;

/// One program to run.
#[derive(Clone, Debug)]
pub struct Spec {
    pub name: String,
    pub argv: Vec<String>,
    pub cwd: Option<PathBuf>,
    pub env: Vec<(String, String)>,
    pub locks: Vec<Request>,
    /// Indices (into the run's specs) of programs that must exit 0 first.
    pub after: Vec<usize>,
    pub stop_signal: i32,
    pub restart: crate::manifest::Restart,
    pub max_restarts: u32,
    /// Give way to anyone who queues for its databases in a conflicting
    /// mode: stop gracefully, queue again behind them, come back.
    pub yields: bool,
}

/// A run at least this long resets the count of consecutive restarts.
const STABLE_RUN: Duration = Duration::from_secs(10);

/// The delay before the `n`th consecutive restart: 100 ms, doubling, at
/// most 30 s.
pub fn backoff(n: u32) -> Duration {
    let ms = 100u64.saturating_mul(1 << n.saturating_sub(1).min(20));
    Duration::from_millis(ms.min(30_000))
}

/// How a run behaves.
pub struct Options {
    pub stop_timeout: Duration,
    /// Queueing limit per program; `None` waits as long as it takes.
    pub wait: Option<Duration>,
    /// Lifecycle lines (started, exited) at info level; otherwise debug.
    pub announce: bool,
    /// The project directory: listen there for `dblaunch stop`.
    pub control: Option<PathBuf>,
    /// A detached run: program output goes to `NAME.log` files here.
    pub logs: Option<PathBuf>,
    /// A detached run: tell `dblaunch start` here how each program started,
    /// then close it.
    pub ready: Option<std::fs::File>,
}

/// How a program ended.
#[derive(Clone, Debug, PartialEq, Eq)]
enum End {
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
    fn success(&self) -> bool {
        matches!(self, End::Exited(ExitKind::Code(0)))
    }

    fn status(&self) -> Option<u8> {
        match self {
            End::Exited(ExitKind::Code(0)) | End::Skipped | End::NotStarted | End::Stopped => None,
            End::Exited(k) => Some(k.status()),
            End::Failed(code) => Some(*code),
        }
    }
}

enum State {
    Pending,
    Queued {
        acquirer: Acquirer,
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

struct Running {
    pid: i32,
    /// The pid's start time, checked before every signal to it.
    start_time: u64,
    /// `dblaunch stop` asked for it; these wait for the answer.
    stop_requested: bool,
    /// It is being stopped to let a waiter in; it queues again after.
    yielding: bool,
    /// `dblaunch restart` asked for it: queue again once it has ended.
    restart_requested: bool,
    replies: Vec<std::sync::mpsc::Sender<String>>,
    held: Held,
    started: Instant,
    exit: Option<ExitKind>,
    /// SIGKILL the group at this time (a stop or leftovers are under way).
    kill_at: Option<Instant>,
    killed_at: Option<Instant>,
    pumps: Vec<Pump>,
}

impl Running {
    /// Sends `signal` to the program's group and schedules SIGKILL after
    /// `timeout`. The pid is our child until we reap it, so it cannot be
    /// another process's; it is checked against its start time all the same,
    /// as before any signal (after the exit, what is signalled is the group
    /// of its leftovers, which keeps the id reserved while it exists).
    fn ask_to_stop(&mut self, signal: i32, timeout: Duration) {
        if self.exit.is_some() || crate::procfs::start_time(self.pid) == Some(self.start_time) {
            Group(self.pid).signal(signal);
        }
        let at = Instant::now() + timeout;
        self.kill_at = Some(self.kill_at.map_or(at, |k| k.min(at)));
    }
}

pub struct Supervisor<'a> {
    specs: &'a [Spec],
    opts: Options,
    states: Vec<State>,
    events: Events,
    output: Option<Arc<Output>>,
    terminal: Option<RawFd>,
    wait_line: WaitLine,
    stopped_by: Option<i32>,
    /// Programs that ended in failure, in the order they did, with their
    /// status: the run exits with the first. A program started again by
    /// `dblaunch restart` leaves this list (its old failure no longer
    /// stands; how it ends this time counts instead).
    failures: Vec<(usize, u8)>,
    /// Consecutive restarts of each program.
    restarts: Vec<u32>,
    _control: Option<crate::control::Listener>,
}

impl<'a> Supervisor<'a> {
    pub fn new(specs: &'a [Spec], opts: Options) -> Result<Supervisor<'a>, Error> {
        let mut events = Events::new().map_err(|source| Error::Io {
            action: "install signal handlers".to_owned(),
            source,
        })?;
        // Orphaned grandchildren are reparented to us, so we can reap them
        // and see when a program's group is empty.
        let _ = nix::sys::prctl::set_child_subreaper(true);
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
                let watched = crate::lock::Queue::open(&req.db)
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
        })
    }

    /// Runs every program to its end; returns the run's exit status.
    pub fn run(mut self) -> u8 {
        loop {
            self.step_all();
            self.report_ready();
            if self.states.iter().all(|s| matches!(s, State::Done(_))) {
                break;
            }
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
        if let Some(tty) = self.terminal {
            take_terminal_back(tty);
        }
        reap_exited();
        match (self.stopped_by, self.failures.first()) {
            (Some(sig), _) => ExitKind::Signal(sig).status(),
            (None, Some(&(_, code))) => code,
            (None, None) => 0,
        }
    }

    fn announce(&self, message: std::fmt::Arguments<'_>) {
        if self.opts.announce {
            tracing::info!("{message}");
        } else {
            tracing::debug!("{message}");
        }
    }

    fn finish(&mut self, i: usize, end: End) {
        if let Some(code) = end.status() {
            self.failures.push((i, code));
        }
        self.states[i] = State::Done(end);
    }

    /// Moves every program as far as it can go without waiting.
    fn step_all(&mut self) {
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

    /// One program; true if its state changed.
    fn step(&mut self, i: usize) -> bool {
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
                    let State::Queued { acquirer, .. } =
                        std::mem::replace(&mut self.states[i], State::Pending)
                    else {
                        unreachable!()
                    };
                    let report = acquirer.holders_now();
                    acquirer.cancel();
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
    fn give_up_place(&mut self, i: usize) {
        match std::mem::replace(&mut self.states[i], State::Pending) {
            State::Queued { acquirer, .. } => acquirer.cancel(),
            State::Foreign { held, .. } => {
                held.release();
            }
            _ => {}
        }
    }

    fn fail(&mut self, i: usize, e: Error) {
        tracing::error!("{}{e}", self.prefix(i));
        self.finish(i, End::Failed(e.exit_code()));
    }

    /// `name: ` when several programs run, nothing for one.
    fn prefix(&self, i: usize) -> String {
        if self.specs.len() > 1 {
            format!("{}: ", self.specs[i].name)
        } else {
            String::new()
        }
    }

    /// Joins the queue for every lock of program `i`.
    fn queue(&mut self, i: usize) {
        let spec = &self.specs[i];
        let owner = Owner {
            program: spec.name.clone(),
            command: spec.argv.clone(),
        };
        let since = Instant::now();
        let result = Pending::new(spec.locks.clone(), owner).and_then(|mut pending| {
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
            Ok(Err(pending)) => match self.events.notifier() {
                Ok(notifier) => {
                    let acquirer = pending.in_background(move |p| notifier.send(Event::Lock(i, p)));
                    self.states[i] = State::Queued { acquirer, since };
                }
                Err(source) => self.fail(
                    i,
                    Error::Io {
                        action: "create a wake-up channel".to_owned(),
                        source,
                    },
                ),
            },
            Err(e) => self.fail(i, e.into()),
        }
    }

    fn lock_progress(&mut self, i: usize, p: Progress) {
        match p {
            Progress::Waiting {
                database,
                mode,
                holders,
            } => {
                let prefix = self.prefix(i);
                tracing::debug!(
                    "{prefix}queued for the {mode} lock on {}",
                    database.display()
                );
                self.wait_line.waiting(&prefix, &database, mode, &holders);
            }
            Progress::Acquired(held) => {
                if let State::Queued { since, .. } = self.states[i] {
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

    fn spawn(&mut self, i: usize, mut held: Held) {
        if let Err(e) = held.check_still_queued() {
            held.release();
            self.fail(i, e.into());
            return;
        }
        let spec = &self.specs[i];
        let fds = held.fds();
        let mut env = spec.env.clone();
        env.push(("DBLAUNCH_PROGRAM".to_owned(), spec.name.clone()));
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
        held.mark_holding(child.pid);
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
            start_time: crate::procfs::start_time(child.pid).unwrap_or_default(),
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
    fn ended(&mut self, i: usize, r: Running) {
        // Pipes end when the last writer is gone; a process that escaped
        // the group may hold one forever, so do not wait for long.
        let until = Instant::now() + Duration::from_secs(2);
        for p in r.pumps {
            p.finish(until);
        }
        let name = self.specs[i].name.clone();
        let after = round(r.started.elapsed());
        for req in r.held.requests() {
            tracing::debug!(
                "{}held the {} lock on {} for {after}",
                self.prefix(i),
                req.mode,
                req.db.path().display(),
            );
        }
        for (database, pids) in r.held.release() {
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
        let exit = r.exit.unwrap_or(ExitKind::Signal(SIGKILL));
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

    /// For `dblaunch start`: once every program has started or failed to,
    /// say how each did and close the pipe.
    fn report_ready(&mut self) {
        if self.opts.ready.is_none() {
            return;
        }
        let settled = self.states.iter().all(|s| {
            matches!(
                s,
                State::Running(_) | State::Done(_) | State::Backoff { .. }
            )
        });
        if !settled {
            return;
        }
        let mut lines = String::new();
        for (i, s) in self.states.iter().enumerate() {
            let name = &self.specs[i].name;
            lines += &match s {
                State::Running(r) => format!("started {name} (pid {})\n", r.pid),
                State::Backoff { last, .. } => format!(
                    "started {name}; it exited ({}) and will restart\n",
                    last.status()
                ),
                State::Done(End::Exited(k)) => {
                    format!("started {name}; it has already exited {}\n", k.status())
                }
                State::Done(End::Failed(c)) => format!(
                    "failed {name}: it could not start (status {c}); see .dblaunch/dblaunch.log\n"
                ),
                State::Done(End::Skipped) => {
                    format!("failed {name}: not started, a program it runs after failed\n")
                }
                State::Done(End::NotStarted | End::Stopped) => {
                    format!("failed {name}: stopped before it started\n")
                }
                _ => String::new(),
            };
        }
        if let Some(mut f) = self.opts.ready.take() {
            let _ = f.write_all(lines.as_bytes());
        }
    }

    /// A yielding program that someone now waits for (a conflicting ticket
    /// behind its own) is stopped gracefully and will queue again.
    fn yield_if_waited_for(&mut self, i: usize) {
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
    }

    /// A request from `dblaunch stop`, `restart` or `ps`.
    fn control(&mut self, request: crate::control::Request) {
        use crate::control::Action;
        match request.action {
            Action::Ps => self.ps(&request.reply),
            Action::Restart => self.restart(request),
            Action::Stop => self.stop_request(request),
        }
    }

    /// One JSON line per program for `dblaunch ps`.
    fn ps(&self, reply: &std::sync::mpsc::Sender<String>) {
        for (i, state) in self.states.iter().enumerate() {
            let spec = &self.specs[i];
            let paths = |reqs: &mut dyn Iterator<Item = &Request>| -> Vec<String> {
                reqs.map(|r| format!("{} ({})", r.db.path().display(), r.mode))
                    .collect()
            };
            let (state, pid, uptime, holds, awaits) = match state {
                State::Pending => ("waiting for `after`".to_owned(), None, None, vec![], vec![]),
                State::Queued { .. } => (
                    "queued".to_owned(),
                    None,
                    None,
                    vec![],
                    paths(&mut spec.locks.iter()),
                ),
                State::Foreign { held, .. } => (
                    "waiting for a process outside dblaunch".to_owned(),
                    None,
                    None,
                    paths(&mut held.requests()),
                    vec![],
                ),
                State::Running(r) => (
                    if r.yielding {
                        "yielding".to_owned()
                    } else if r.stop_requested || r.restart_requested || r.kill_at.is_some() {
                        "stopping".to_owned()
                    } else {
                        "running".to_owned()
                    },
                    Some(r.pid),
                    Some(r.started.elapsed().as_millis() as u64),
                    paths(&mut r.held.requests()),
                    vec![],
                ),
                State::Backoff { .. } => {
                    ("waiting to restart".to_owned(), None, None, vec![], vec![])
                }
                State::Done(e) => (
                    match e {
                        End::Exited(k) => format!("exited {}", k.status()),
                        End::Failed(c) => format!("failed ({c})"),
                        End::Skipped => "not started (an `after` program failed)".to_owned(),
                        End::NotStarted => "not started".to_owned(),
                        End::Stopped => "stopped".to_owned(),
                    },
                    None,
                    None,
                    vec![],
                    vec![],
                ),
            };
            let line = crate::control::ProgramState {
                program: spec.name.clone(),
                state,
                live: !matches!(self.states[i], State::Done(_)),
                pid,
                uptime_ms: uptime,
                restarts: self.restarts[i],
                holds,
                awaits,
            };
            let _ = reply.send(serde_json::to_string(&line).expect("a state always serialises"));
        }
    }

    /// `dblaunch restart NAME`: stop it gracefully and start it again.
    fn restart(&mut self, request: crate::control::Request) {
        let reply = &request.reply;
        let timeout = self.opts.stop_timeout;
        for i in 0..self.states.len() {
            let name = self.specs[i].name.clone();
            if !request.wants(&name) {
                continue;
            }
            let signal = self.specs[i].stop_signal;
            match &mut self.states[i] {
                State::Running(r) if r.exit.is_none() => {
                    r.ask_to_stop(signal, timeout);
                    r.restart_requested = true;
                    r.replies.push(reply.clone());
                    tracing::info!("{name}: restarting on request ({})", signals::name(signal));
                    let _ = reply.send(format!("stopping {name} (pid {}) to restart it", r.pid));
                }
                State::Done(_) if self.stopped_by.is_none() => {
                    self.failures.retain(|&(p, _)| p != i);
                    tracing::info!("{name}: started again on request");
                    let _ = reply.send(format!("{name} had ended; starting it again"));
                    self.states[i] = State::Backoff {
                        until: Instant::now(),
                        last: ExitKind::Code(0),
                    };
                }
                _ => {
                    let _ = reply.send(format!("{name} is not running yet; nothing to restart"));
                }
            }
        }
    }

    fn stop_request(&mut self, request: crate::control::Request) {
        let reply = &request.reply;
        let mut matched = false;
        for i in 0..self.states.len() {
            let name = self.specs[i].name.clone();
            if !request.wants(&name) {
                continue;
            }
            matched = true;
            let signal = self.specs[i].stop_signal;
            let timeout = self.opts.stop_timeout;
            match &mut self.states[i] {
                State::Running(r) => {
                    if !r.stop_requested {
                        r.stop_requested = true;
                        r.ask_to_stop(signal, timeout);
                        tracing::info!("{}: stopping on request ({})", name, signals::name(signal));
                        let _ = reply.send(format!(
                            "stopping {name} (pid {}) with {}; SIGKILL after {}",
                            r.pid,
                            signals::name(signal),
                            humantime::format_duration(timeout)
                        ));
                    }
                    r.replies.push(reply.clone());
                }
                State::Pending
                | State::Queued { .. }
                | State::Foreign { .. }
                | State::Backoff { .. } => {
                    let restarting = matches!(self.states[i], State::Backoff { .. });
                    self.give_up_place(i);
                    self.wait_line.clear();
                    tracing::info!("{name}: stopped on request before it started");
                    let _ = reply.send(if restarting {
                        format!("{name} was waiting to restart; it will not start again")
                    } else {
                        format!("{name} had not started; it will not start now")
                    });
                    self.finish(i, End::Stopped);
                }
                State::Done(_) => {
                    if !request.programs.is_empty() {
                        let _ = reply.send(format!("{name} is not running any more"));
                    }
                }
            }
        }
        if !matched {
            let _ = reply.send(format!(
                "this run (pid {}) has none of: {}",
                std::process::id(),
                request.programs.join(", ")
            ));
        }
    }

    fn reap(&mut self) {
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

    fn running(&self) -> impl Iterator<Item = usize> + '_ {
        (0..self.states.len()).filter(|&i| matches!(self.states[i], State::Running(_)))
    }

    fn forward(&mut self, signal: i32) {
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

    fn stop(&mut self, signal: i32) {
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

    fn stop_one(&mut self, i: usize, signal: i32) {
        let timeout = self.opts.stop_timeout;
        if let State::Running(r) = &mut self.states[i] {
            r.ask_to_stop(signal, timeout);
        }
    }

    /// When to look again without an event: the earliest deadline.
    fn next_wake(&self) -> (Option<Instant>, Option<Duration>) {
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
fn shortest(tick: &mut Option<Duration>, t: Duration) {
    *tick = Some(tick.map_or(t, |old| old.min(t)));
}

fn busy(
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

/// The terminal to hand to the program: stdin's, if dblaunch runs in the
/// foreground of it (as a shell job would).
fn foreground_terminal() -> Option<RawFd> {
    let stdin = std::io::stdin();
    if !stdin.is_terminal() {
        return None;
    }
    let fg = nix::unistd::tcgetpgrp(stdin.as_fd()).ok()?;
    (fg == nix::unistd::getpgrp()).then(|| stdin.as_raw_fd())
}

/// A job that owns the terminal may stop us with SIGTTOU when we take it
/// back; ignore both terminal stop signals, as shells do.
fn ignore_terminal_stops() {
    // SAFETY: SIG_IGN installs no handler code; nothing else in dblaunch
    // relies on these signals.
    unsafe {
        let _ = nix::sys::signal::signal(Signal::SIGTTOU, SigHandler::SigIgn);
        let _ = nix::sys::signal::signal(Signal::SIGTTIN, SigHandler::SigIgn);
    }
}

/// Makes dblaunch's process group the terminal's foreground again.
fn take_terminal_back(tty: RawFd) {
    // SAFETY: tcsetpgrp only reads its arguments.
    unsafe {
        libc::tcsetpgrp(tty, libc::getpgrp());
    }
}

/// The one line that says what a queued program waits for and behind whom:
/// redrawn in place with the elapsed time on a terminal (single program
/// only: with several, program output would garble it), logged once per new
/// blocker otherwise.
struct WaitLine {
    started: Instant,
    tty: bool,
    text: Option<String>,
}

impl WaitLine {
    fn new(started: Instant, single: bool) -> WaitLine {
        WaitLine {
            started,
            tty: single
                && std::io::stderr().is_terminal()
                && tracing::enabled!(tracing::Level::INFO),
            text: None,
        }
    }

    /// Redrawn every second on a terminal; never otherwise (a queued
    /// dblaunch without a terminal makes no wake-ups at all).
    fn active(&self) -> bool {
        self.tty && self.text.is_some()
    }

    fn waiting(&mut self, prefix: &str, database: &Path, mode: Mode, holders: &[Holder]) {
        let behind = match holders {
            [] => "a process that could not be identified".to_owned(),
            [one] => one.to_string(),
            [first, rest @ ..] => format!("{first} (and {} more)", rest.len()),
        };
        let text = format!(
            "{prefix}waiting for the {mode} lock on {}: {behind}",
            database.display()
        );
        if self.text.as_deref() == Some(&text) {
            return;
        }
        if !self.tty {
            tracing::info!("{text}");
        }
        self.text = Some(text);
        self.redraw();
    }

    fn redraw(&self) {
        if let (true, Some(text)) = (self.tty, &self.text) {
            let elapsed = Duration::from_secs(self.started.elapsed().as_secs());
            let mut err = std::io::stderr().lock();
            let _ = write!(
                err,
                "\r\x1b[Kdblaunch: {text} [{}]",
                humantime::format_duration(elapsed)
            );
            let _ = err.flush();
        }
    }

    fn clear(&mut self) {
        if self.tty && self.text.take().is_some() {
            let _ = write!(std::io::stderr(), "\r\x1b[K");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_from_100ms_up_to_30s() {
        assert_eq!(backoff(1), Duration::from_millis(100));
        assert_eq!(backoff(2), Duration::from_millis(200));
        assert_eq!(backoff(4), Duration::from_millis(800));
        assert_eq!(backoff(9), Duration::from_millis(25_600));
        assert_eq!(backoff(10), Duration::from_secs(30));
        assert_eq!(backoff(1000), Duration::from_secs(30));
    }
}
