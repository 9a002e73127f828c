//! The loop itself: one `Supervisor` owns the parts of a run (its programs,
//! its journal recorder, its console, its verdict) and handles one event at
//! a time on the main thread (child exits, signals, lock hand-offs, control
//! calls, deadlines), then lets each program move as far as it can (see
//! `lifecycle.rs`).

use std::time::{Duration, Instant};

use signal_hook::consts::signal::{SIGCHLD, SIGINT, SIGKILL, SIGWINCH};

use crate::control::Listener;
use crate::error::Error;
use crate::events::{Event, Events};
use crate::process::{Group, reap_exited};
use crate::sdnotify::{ProgramSocket, Systemd};
use crate::signals;
use crate::watch::Watcher;
use dblaunch_lock::Released;

use super::changes;
use super::console::Console;
use super::context::Context;
use super::lifecycle;
use super::readiness;
use super::recorder::Recorder;
use super::requests;
use super::spec::{Options, Spec};
use super::state::State;
use super::table::Table;
use super::verdict::Verdict;

pub struct Supervisor<'a> {
    opts: Options,
    recorder: Recorder,
    table: Table<'a>,
    events: Events,
    console: Console,
    verdict: Verdict,
    _control: Option<Listener>,
    /// systemd's socket, when started as a `Type=notify` service.
    systemd: Option<Systemd>,
    /// READY=1 (then STOPPING=1) went to systemd.
    told_ready: bool,
    told_stopping: bool,
    /// The run waits for changes: said once.
    said_waiting: bool,
    /// Some program needs another, has a `ready` check or watches paths,
    /// or systemd listens.
    dev_loop: bool,
    /// Tickets that programs let go of since the loop last slept (see
    /// [`Context::released`]).
    released: Released,
}

impl<'a> Supervisor<'a> {
    pub fn new(specs: &'a [Spec], mut opts: Options) -> Result<Supervisor<'a>, Error> {
        // Nothing to hide from the programs, nobody to tell.
        opts.systemd = opts.systemd && std::env::var_os(crate::sdnotify::NOTIFY_SOCKET).is_some();
        let mut events = Events::new().map_err(|source| Error::Io {
            action: "install signal handlers".to_owned(),
            source,
        })?;
        // Orphaned grandchildren are reparented to us, so we can reap them
        // and see when a program's group is empty.
        crate::platform::become_subreaper();
        let console = Console::new(specs, opts.logs.as_deref(), opts.announce)?;
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
        if specs.iter().any(|s| s.dev.watch.is_some()) {
            let project = opts.control.clone().unwrap_or_default();
            let databases: Vec<std::path::PathBuf> = specs
                .iter()
                .flat_map(|s| s.locks.iter().map(|r| r.db.path().to_path_buf()))
                .collect();
            let mut watcher = Watcher::new(&project, &databases).map_err(|source| Error::Io {
                action: "watch files".to_owned(),
                source,
            })?;
            for (i, spec) in specs.iter().enumerate() {
                if let Some(w) = &spec.dev.watch {
                    watcher
                        .add(i, &w.paths, &w.ignore)
                        .map_err(|source| Error::Io {
                            action: format!("watch the paths of {}", spec.name),
                            source,
                        })?;
                }
            }
            events.watch_files(watcher);
        }
        for (i, spec) in specs.iter().enumerate() {
            if let Some(crate::manifest::Check::Notify) = spec.dev.ready.as_ref().map(|r| &r.check)
            {
                let socket = ProgramSocket::bind(&spec.name, i).map_err(|source| Error::Io {
                    action: format!("make the notify socket of {}", spec.name),
                    source,
                })?;
                events.listen_for_ready(i, socket);
            }
        }
        let control = match &opts.control {
            Some(dir) => {
                let listening = events
                    .notifier()
                    .and_then(|n| crate::control::listen(dir, move |c| n.send(Event::Control(c))));
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
        let opts_systemd = opts.systemd;
        Ok(Supervisor {
            recorder: Recorder::new(specs.len(), opts.remote.as_ref()),
            table: Table::new(specs),
            opts,
            events,
            console,
            verdict: Verdict::default(),
            _control: control,
            systemd: if opts_systemd {
                Systemd::from_env()
            } else {
                None
            },
            told_ready: false,
            told_stopping: false,
            said_waiting: false,
            dev_loop: opts_systemd
                || specs.iter().any(|s| {
                    !s.dev.needs.is_empty()
                        || s.dev.ready.is_some()
                        || s.dev.watch.is_some()
                        || s.dev.needed_only
                }),
            released: Released::default(),
        })
    }

    /// The parts, lent to the code that handles one event.
    fn context(&mut self) -> Context<'_, 'a> {
        Context {
            table: &mut self.table,
            recorder: &mut self.recorder,
            console: &mut self.console,
            verdict: &mut self.verdict,
            events: &mut self.events,
            released: &mut self.released,
            opts: &self.opts,
        }
    }

    /// Runs every program to its end; returns the run's exit status.
    pub fn run(mut self) -> u8 {
        loop {
            // The dev loop's work, for runs that use it: a run without it
            // hands its locks on as fast as before.
            if self.dev_loop {
                changes::due(&mut self.context());
            }
            lifecycle::step_all(&mut self.context());
            if self.dev_loop && lifecycle::release_needed(&mut self.context()) {
                lifecycle::step_all(&mut self.context());
            }
            requests::report_ready(&self.table, &mut self.opts.ready);
            if self.dev_loop {
                self.tell_systemd();
            }
            if self.table.all_done() {
                if !self.table.watching() || self.verdict.stopping() {
                    break;
                }
                if !std::mem::replace(&mut self.said_waiting, true) {
                    tracing::info!(
                        "every program has ended; waiting for a change of a watched path (Ctrl-C to end)"
                    );
                }
            } else {
                self.said_waiting = false;
            }
            // Tidying and history wait until whatever could start has started.
            self.released = Released::default();
            self.recorder.flush();
            let (deadline, tick) = self.next_wake();
            match self.events.next(deadline, tick) {
                Some(Event::Signal(SIGCHLD)) => self.reap(),
                Some(Event::Signal(s)) if signals::is_stop(s) => self.stop(s),
                Some(Event::Signal(s)) => self.forward(s),
                Some(Event::Lock(i, p)) => lifecycle::progress(&mut self.context(), i, p),
                Some(Event::Control(c)) => requests::answer(&mut self.context(), c),
                Some(Event::QueueChanged) => {
                    let mut cx = self.context();
                    for i in 0..cx.table.len() {
                        lifecycle::yield_if_waited_for(&mut cx, i);
                    }
                }
                Some(Event::Checked {
                    program,
                    pid,
                    outcome,
                }) => readiness::checked(&mut self.context(), program, pid, outcome),
                Some(Event::Changed(program, path)) => {
                    changes::changed(&mut self.context(), program, path)
                }
                None => self.console.tick(),
            }
        }
        self.console.clear();
        if let Some(sd) = &self.systemd {
            if !self.told_stopping {
                sd.send("STOPPING=1");
            }
        }
        self.recorder.flush_before_exit();
        self.console.take_terminal_back();
        reap_exited();
        let status = self.verdict.status();
        // dblaunch exits next: taking the signal handlers down one by one
        // (signal-hook copies its registry for each) would be work for
        // nothing. A signal that comes now is caught and read by no one.
        // (A start-up tweak: docs/design.md, "Start-up cost".)
        std::mem::forget(self.events);
        status
    }

    fn reap(&mut self) {
        for (pid, kind) in reap_exited() {
            let mut found = false;
            for s in self.table.states_mut() {
                if let State::Running(r) = s {
                    if r.pid == pid {
                        r.exit = Some(kind);
                        found = true;
                    }
                }
            }
            if !found {
                readiness::reaped(&mut self.context(), pid, kind);
            }
        }
    }

    /// systemd (a `Type=notify` service): READY=1 once every program is
    /// running and ready, or has exited 0; STOPPING=1 when the run stops.
    fn tell_systemd(&mut self) {
        let Some(sd) = &self.systemd else {
            return;
        };
        if !self.told_ready && !self.verdict.stopping() {
            let up = self.table.states().iter().all(|s| match s {
                State::Running(r) => r.readiness.up() && r.exit.is_none(),
                State::Done(e) => e.success(),
                _ => false,
            });
            if up {
                self.told_ready = true;
                sd.send(&format!(
                    "READY=1\nSTATUS={} program{} up",
                    self.table.len(),
                    if self.table.len() == 1 { "" } else { "s" }
                ));
            }
        }
        if !self.told_stopping && self.verdict.stopping() {
            self.told_stopping = true;
            sd.send("STOPPING=1");
        }
    }

    fn forward(&mut self, signal: i32) {
        // SIGWINCH only concerns the program that owns the terminal.
        if signal == SIGWINCH && self.console.terminal().is_none() {
            return;
        }
        if self.table.running().next().is_none() && signals::ends_queueing(signal) {
            // Nothing runs: a hang-up or quit ends the run like a stop.
            self.stop(signal);
            return;
        }
        for s in self.table.states() {
            if let State::Running(r) = s {
                Group(r.pid).signal(signal);
            }
        }
    }

    fn stop(&mut self, signal: i32) {
        match self.verdict.stopped_by() {
            None => {
                self.verdict.stop(signal);
                self.console.clear();
                let running: Vec<usize> = self.table.running().collect();
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
                // What needs a program is stopped first: each gets the
                // signal once nothing that needs it runs.
                let mut cx = self.context();
                for i in running {
                    readiness::stop_in_order(&mut cx, i, signal);
                }
            }
            Some(_) if signal == SIGINT => {
                tracing::info!("second interrupt: killing every program");
                let now = Instant::now();
                for s in self.table.states_mut() {
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

    /// When to look again without an event: the earliest deadline.
    fn next_wake(&self) -> (Option<Instant>, Option<Duration>) {
        let mut deadline: Option<Instant> = None;
        let mut tick: Option<Duration> = None;
        let mut earliest = |t: Instant| deadline = Some(deadline.map_or(t, |d| d.min(t)));
        for s in self.table.states() {
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
                    if let Some(t) = readiness::deadline(r) {
                        earliest(t);
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
        if let Some(t) = (0..self.table.len())
            .filter(|_| self.dev_loop)
            .filter_map(|i| self.table.change(i).map(|(at, _)| *at))
            .min()
        {
            earliest(t);
        }
        if self.console.ticking() {
            shortest(&mut tick, Duration::from_secs(1));
        }
        (deadline, tick)
    }
}

/// Keeps the shorter of two ticks.
fn shortest(tick: &mut Option<Duration>, t: Duration) {
    *tick = Some(tick.map_or(t, |old| old.min(t)));
}
