//! One program's life: Pending (for `after`) → Queued (for its locks) →
//! Foreign (for processes that lock its database outside dblaunch) →
//! Running → Backoff (before a restart, or after yielding) → Done. Each
//! transition is a function from the program's state to its next one; what
//! else it touches (the journal, the console, the verdict) it reaches
//! through the [`Context`] the loop lends it, by their own methods.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use signal_hook::consts::signal::{SIGKILL, SIGTERM};

use crate::error::Error;
use crate::events::Event;
use crate::process::{self, ExitKind, Group, Launch};
use crate::signals;
use dblaunch_lock::{Held, Holder, LockError, Mode, Progress, round};

use super::acquire;
use super::context::Context;
use super::readiness;
use super::recorder::Recorder;
use super::spec::{Options, STABLE_RUN, Spec, backoff};
use super::state::{End, Readiness, Running, State, Waiter};

/// A program's next state, and whether it moved on.
enum Next {
    Stay(State),
    Moved(State),
}

/// Moves every program as far as it can go without waiting.
pub(super) fn step_all(cx: &mut Context<'_, '_>) {
    // Each program as far as it goes before the next one (so that one
    // that can start does, before a later one queues behind it); then
    // again, since a program that ended may let another start.
    loop {
        let mut moved = false;
        for i in 0..cx.table.len() {
            while step(cx, i) {
                moved = true;
            }
        }
        if !moved {
            break;
        }
    }
}

/// One program; true if its state changed.
fn step(cx: &mut Context<'_, '_>, i: usize) -> bool {
    if cx.table.is_done(i) {
        return false;
    }
    let next = match cx.table.take(i) {
        // Behind a ticket of this run that its owner no longer holds
        // (released, or given up): move on without blocking.
        State::Queued {
            waiter: Waiter::Behind { pending, owner },
            since,
        } if !cx.verdict.stopping()
            && !pending
                .blocker()
                .is_some_and(|(dir, id)| cx.table.has_ticket(owner, dir, id)) =>
        {
            let next = acquire::try_again(cx, i, pending, since);
            Next::Moved(next.unwrap_or_else(|e| fail(cx, i, e)))
        }
        State::Pending => from_pending(cx, i),
        State::Queued { waiter, since } => from_queued(cx, i, waiter, since),
        State::Foreign {
            held,
            since,
            warned,
        } => from_foreign(cx, i, held, since, warned),
        State::Running(r) => from_running(cx, i, r),
        State::Backoff { until, last } => from_backoff(cx, i, until, last),
        done @ State::Done(_) => Next::Stay(done),
    };
    let (state, moved) = match next {
        Next::Stay(s) => (s, false),
        Next::Moved(s) => (s, true),
    };
    cx.table.put(i, state);
    moved
}

/// Waiting for its `after` programs: skipped if one failed, queued once
/// all have succeeded.
fn from_pending(cx: &mut Context<'_, '_>, i: usize) -> Next {
    if cx.verdict.stopping() {
        return Next::Moved(finish(cx, i, End::NotStarted));
    }
    let spec = cx.table.spec(i);
    if let Some(&d) = spec
        .after
        .iter()
        .find(|&&d| cx.table.ended_well(d) == Some(false))
    {
        tracing::warn!(
            "{}: not started, because {} did not succeed",
            spec.name,
            cx.table.spec(d).name
        );
        return Next::Moved(finish(cx, i, End::Skipped));
    }
    let needs = match readiness::needs_met(cx.table, i) {
        Ok(met) => met,
        Err((d, why)) => {
            let message = format!(
                "not started: it needs {}, which {why}",
                cx.table.spec(d).name
            );
            tracing::warn!("{}: {message}", spec.name);
            cx.table.set_note(i, Some(message));
            return Next::Moved(finish(cx, i, End::Skipped));
        }
    };
    if needs
        && spec
            .after
            .iter()
            .all(|&d| cx.table.ended_well(d) == Some(true))
    {
        return Next::Moved(queue(cx, i));
    }
    Next::Stay(State::Pending)
}

/// Queued for its locks: gives up past `--wait`, or when the run stops.
fn from_queued(cx: &mut Context<'_, '_>, i: usize, waiter: Waiter, since: Instant) -> Next {
    let now = Instant::now();
    if cx.verdict.stopping() {
        give_up(State::Queued { waiter, since });
        return Next::Moved(finish(cx, i, End::NotStarted));
    }
    if cx.opts.wait.is_some_and(|w| now >= since + w) {
        let report = waiter.holders_now();
        waiter.cancel();
        let (database, mode, holders) =
            report.unwrap_or_else(|| (PathBuf::new(), Mode::Write, Vec::new()));
        let error = busy(database, mode, holders, since, cx.opts.wait);
        return Next::Moved(fail(cx, i, error.into()));
    }
    Next::Stay(State::Queued { waiter, since })
}

/// Its locks are held: it starts once no process outside dblaunch locks
/// its databases.
fn from_foreign(
    cx: &mut Context<'_, '_>,
    i: usize,
    held: Held,
    since: Instant,
    mut warned: bool,
) -> Next {
    let now = Instant::now();
    if cx.verdict.stopping() {
        give_up(State::Foreign {
            held,
            since,
            warned,
        });
        return Next::Moved(finish(cx, i, End::NotStarted));
    }
    let Some((database, mode, holders)) = held.foreign_holders().into_iter().next() else {
        return Next::Moved(spawn(cx, i, held));
    };
    if cx.opts.wait.is_some_and(|w| now >= since + w) {
        held.release();
        let error = busy(database, mode, holders, since, cx.opts.wait);
        return Next::Moved(fail(cx, i, error.into()));
    }
    if !warned {
        warned = true;
        let spec = cx.table.spec(i);
        let list: Vec<String> = holders.iter().map(ToString::to_string).collect();
        tracing::warn!(
            "{}: {} is in use outside dblaunch: {}; waiting for it to let go",
            spec.name,
            database.display(),
            list.join(", ")
        );
        cx.recorder.foreign(i, spec, &database, mode, &holders);
    }
    Next::Stay(State::Foreign {
        held,
        since,
        warned,
    })
}

/// Running: once it has exited and its whole process group is gone, it
/// has ended; leftovers in its group are stopped, and killed on time.
fn from_running(cx: &mut Context<'_, '_>, i: usize, mut r: Box<Running>) -> Next {
    if r.stop_deferred.is_some() {
        readiness::stop_when_free(cx, i, &mut r);
    }
    if matches!(r.readiness, Readiness::Starting { .. }) {
        readiness::step(cx, i, &mut r);
    }
    let now = Instant::now();
    let group = Group(r.pid);
    let name = &cx.table.spec(i).name;
    let stop_timeout = cx.opts.stop_timeout;
    if r.exit.is_some() {
        let gone = !group.exists();
        // SIGKILL cannot be ignored: a group that outlives it this
        // long holds only zombies of a parent outside it.
        let hopeless = r
            .killed_at
            .is_some_and(|k| k.elapsed() > Duration::from_secs(5));
        if gone || hopeless {
            if hopeless {
                tracing::warn!("{name}: processes remain in its group after SIGKILL");
            }
            return Next::Moved(ended(cx, i, *r));
        }
        if r.kill_at.is_none() {
            tracing::info!(
                "{name}: exited, but left processes in its group; stopping them (SIGTERM, SIGKILL after {})",
                humantime::format_duration(stop_timeout)
            );
            group.signal(SIGTERM);
            r.kill_at = Some(now + stop_timeout);
        }
    }
    if r.killed_at.is_none() && r.kill_at.is_some_and(|k| now >= k) {
        tracing::warn!(
            "{name}: did not stop within {}; killing it (SIGKILL)",
            humantime::format_duration(stop_timeout)
        );
        group.signal(SIGKILL);
        r.killed_at = Some(now);
    }
    Next::Stay(State::Running(r))
}

/// Between two runs of a program: it queues again at `until`.
fn from_backoff(cx: &mut Context<'_, '_>, i: usize, until: Instant, last: ExitKind) -> Next {
    let now = Instant::now();
    if cx.verdict.stopping() {
        return Next::Moved(finish(cx, i, End::Exited(last)));
    }
    if now >= until {
        cx.console
            .announce(format_args!("{}restarting", cx.table.prefix(i)));
        return Next::Moved(queue(cx, i));
    }
    Next::Stay(State::Backoff { until, last })
}

/// Once every program has ended but those that run only because another
/// needs them (and no program watches paths, which keeps a run going),
/// those are stopped, what needs them before them. True if it stopped any.
pub(super) fn release_needed(cx: &mut Context<'_, '_>) -> bool {
    if cx.verdict.stopping() || cx.table.watching() {
        return false;
    }
    let n = cx.table.len();
    let needed_only = |cx: &Context<'_, '_>, i: usize| cx.table.spec(i).dev.needed_only;
    if !(0..n).all(|i| needed_only(cx, i) || cx.table.is_done(i)) {
        return false;
    }
    let mut any = false;
    for i in 0..n {
        if !needed_only(cx, i) || cx.table.is_done(i) {
            continue;
        }
        let signal = cx.table.spec(i).stop_signal;
        match cx.table.state_mut(i) {
            State::Running(r) => {
                if !r.ending {
                    r.ending = true;
                    any = true;
                    readiness::stop_in_order(cx, i, signal);
                }
            }
            _ => {
                let state = cx.table.take(i);
                give_up(state);
                let done = finish(cx, i, End::NotStarted);
                cx.table.put(i, done);
                any = true;
            }
        }
    }
    any
}

/// Leaves the queue (or lets go of locks taken but not yet used) for a
/// program that will not start now; the caller says how it ended.
pub(super) fn give_up(state: State) {
    match state {
        State::Queued { waiter, .. } => waiter.cancel(),
        State::Foreign { held, .. } => {
            held.release();
        }
        _ => {}
    }
}

/// Program `i` has ended as `end`.
pub(super) fn finish(cx: &mut Context<'_, '_>, i: usize, end: End) -> State {
    cx.verdict.ended(i, &end);
    State::Done(end)
}

/// Joins the queue for every lock of program `i`.
fn queue(cx: &mut Context<'_, '_>, i: usize) -> State {
    acquire::queue(cx, i).unwrap_or_else(|e| fail(cx, i, e))
}

/// Progress of program `i`'s wait for its locks, as its waiting thread
/// reports it.
pub(super) fn progress(cx: &mut Context<'_, '_>, i: usize, p: Progress) {
    let state = cx.table.take(i);
    let next = acquire::advanced(cx, i, state, p).unwrap_or_else(|e| fail(cx, i, e));
    cx.table.put(i, next);
}

/// Program `i` could not start, or its locks could not be taken.
fn fail(cx: &mut Context<'_, '_>, i: usize, e: Error) -> State {
    if let Error::Lock(lock) = &e {
        cx.recorder.gave_up(i, cx.table.spec(i), lock);
    }
    tracing::error!("{}{e}", cx.table.prefix(i));
    finish(cx, i, End::Failed(e.exit_code()))
}

/// Starts program `i`, which holds its locks.
fn spawn(cx: &mut Context<'_, '_>, i: usize, mut held: Held) -> State {
    if let Err(e) = held.check_still_queued() {
        held.release();
        return fail(cx, i, e.into());
    }
    let spec = cx.table.spec(i);
    let fds = held.fds();
    let mut env = spec.env.clone();
    env.push(("DBLAUNCH_PROGRAM".to_owned(), spec.name.clone()));
    env.extend(held.fencing_env());
    if matches!(
        spec.dev.ready.as_ref().map(|r| &r.check),
        Some(crate::manifest::Check::Notify)
    ) {
        env.push((
            crate::sdnotify::NOTIFY_SOCKET.to_owned(),
            crate::sdnotify::ProgramSocket::name_for(&spec.name, i),
        ));
    }
    let launch = Launch {
        argv: &spec.argv,
        cwd: spec.cwd.as_deref(),
        env: &env,
        inherit: &fds,
        terminal: cx.console.terminal(),
        stdio: cx.console.stdio(),
        hide: cx.opts.hidden_env(),
    };
    let child = match process::spawn(&launch) {
        Ok(c) => c,
        Err(e) => {
            held.release();
            return fail(cx, i, e.into());
        }
    };
    // Known once: for the records, and to check before every signal.
    let start_time = child
        .start_time
        .or_else(|| dblaunch_lock::procfs::start_time(child.pid))
        .unwrap_or_default();
    held.mark_holding(child.pid, start_time);
    cx.recorder.granted(i, spec, &held, child.pid);
    if spec.yields && cx.opts.remote.is_some() {
        // Waiters of other hosts are not in the local queue's directory
        // (which the loop watches): the lease looks for them.
        if let Ok(notifier) = cx.events.notifier() {
            let notifier = std::sync::Mutex::new(notifier);
            held.watch_remote_waiters(Box::new(move || {
                notifier
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .send(Event::QueueChanged);
            }));
        }
    }
    let hook = log_hook(cx, i, child.pid);
    let pumps = cx
        .console
        .pump(&spec.name, i, child.stdout, child.stderr, hook);
    cx.console.announce(format_args!(
        "{}started (pid {})",
        cx.table.prefix(i),
        child.pid
    ));
    let mut r = Box::new(Running {
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
        readiness: readiness::begin(spec, Instant::now()),
        stop_deferred: None,
        change_restart: false,
        ending: false,
    });
    match cx.verdict.stopped_by() {
        // A stop that came before the spawn reaches it too.
        Some(s) => r.ask_to_stop(s, cx.opts.stop_timeout),
        // So does a waiter that queued while it was starting.
        None if spec.yields => {
            let prefix = cx.table.prefix(i);
            yield_to_waiter(cx.recorder, spec, &prefix, cx.opts, &mut r);
        }
        None => {}
    }
    State::Running(r)
}

/// For a `ready = { log = … }` check: looks at program `i`'s lines (of
/// its run of pid `pid`) until one matches, and says so with an event.
fn log_hook(cx: &mut Context<'_, '_>, i: usize, pid: i32) -> Option<crate::output::LineHook> {
    let Some(crate::manifest::Check::Log(regex)) =
        cx.table.spec(i).dev.ready.as_ref().map(|r| &r.check)
    else {
        return None;
    };
    let notifier = cx.events.notifier().ok()?;
    let regex = regex.clone();
    let found = std::sync::atomic::AtomicBool::new(false);
    Some(std::sync::Arc::new(move |line: &[u8]| {
        if found.load(std::sync::atomic::Ordering::Relaxed)
            || !regex.is_match(&String::from_utf8_lossy(line))
        {
            return false;
        }
        if !found.swap(true, std::sync::atomic::Ordering::Relaxed) {
            notifier.send(Event::Checked {
                program: i,
                pid,
                outcome: Ok(()),
            });
        }
        true
    }))
}

/// The program's group is empty: its output is drained, its locks go.
fn ended(cx: &mut Context<'_, '_>, i: usize, mut r: Running) -> State {
    // Pipes end when the last writer is gone; a process that escaped
    // the group may hold one forever, so do not wait for long.
    let until = Instant::now() + Duration::from_secs(2);
    for p in std::mem::take(&mut r.pumps) {
        p.finish(until);
    }
    readiness::end(&mut r);
    let spec = cx.table.spec(i);
    let name = spec.name.clone();
    let prefix = cx.table.prefix(i);
    let stopping = cx.verdict.stopping();
    let after = round(r.started.elapsed());
    let exit = r.exit.unwrap_or(ExitKind::Signal(SIGKILL));
    let lines = Recorder::released(spec, &r, exit, stopping);
    for req in r.held.requests() {
        tracing::debug!(
            "{prefix}held the {} lock on {} for {after}",
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
    cx.released.extend(released);
    cx.recorder.write_all(lines);
    let how = match exit {
        ExitKind::Code(c) => format!("exited {c}"),
        ExitKind::Signal(s) => format!("killed by {}", signals::name(s)),
    };
    if r.stop_requested {
        tracing::info!("{prefix}stopped by `dblaunch stop`: {how} after {after}");
        for reply in &r.replies {
            let _ = reply.send(format!(
                "stopped {name} (pid {}): {how} after {after}",
                r.pid
            ));
        }
        return finish(cx, i, End::Stopped);
    }
    if r.change_restart && !stopping {
        cx.console.announce(format_args!(
            "{prefix}{how} after {after}; starting it again (a watched path changed)"
        ));
        cx.table.count_change_restart(i);
        cx.table.set_note(i, None);
        *cx.table.restarts_mut(i) = 0;
        return State::Backoff {
            until: Instant::now(),
            last: exit,
        };
    }
    if let Readiness::TimedOut = r.readiness {
        cx.console
            .announce(format_args!("{prefix}{how} after {after}"));
        return finish(cx, i, End::Failed(crate::error::code::FAILURE));
    }
    if r.ending {
        cx.console.announce(format_args!(
            "{prefix}stopped, as nothing needs it any more: {how} after {after}"
        ));
        return finish(cx, i, End::Stopped);
    }
    if matches!(r.readiness, Readiness::Starting { .. }) {
        cx.table
            .set_note(i, Some(format!("{how} before it was ready")));
    }
    if r.restart_requested && !stopping {
        tracing::info!("{prefix}{how} after {after}; starting it again");
        for reply in &r.replies {
            let _ = reply.send(format!(
                "{name} (pid {}) {how} after {after}; starting it again",
                r.pid
            ));
        }
        *cx.table.restarts_mut(i) = 0;
        return State::Backoff {
            until: Instant::now(),
            last: exit,
        };
    }
    if r.yielding && !stopping {
        tracing::info!("{prefix}yielded ({how} after {after}); queueing again behind the waiters");
        return State::Backoff {
            until: Instant::now(),
            last: exit,
        };
    }
    let success = exit == ExitKind::Code(0);
    if !stopping && spec.restart.wants(success) {
        let restarts = cx.table.restarts_mut(i);
        if r.started.elapsed() >= STABLE_RUN {
            *restarts = 0;
        }
        if *restarts < spec.max_restarts {
            *restarts += 1;
            let n = *restarts;
            let delay = backoff(n);
            tracing::info!(
                "{prefix}{how} after {after}; restarting in {} (restart {n} of at most {} in a row)",
                humantime::format_duration(delay),
                spec.max_restarts
            );
            return State::Backoff {
                until: Instant::now() + delay,
                last: exit,
            };
        }
        tracing::warn!(
            "{prefix}{how} after {after}; giving up after {} restarts in a row",
            spec.max_restarts
        );
    } else {
        cx.console
            .announce(format_args!("{prefix}{how} after {after}"));
    }
    finish(cx, i, End::Exited(exit))
}

/// A yielding program that someone now waits for (a conflicting ticket
/// behind its own) is stopped gracefully and will queue again.
pub(super) fn yield_if_waited_for(cx: &mut Context<'_, '_>, i: usize) {
    let spec = cx.table.spec(i);
    if !spec.yields || cx.verdict.stopping() {
        return;
    }
    let prefix = cx.table.prefix(i);
    if let State::Running(r) = cx.table.state_mut(i) {
        yield_to_waiter(cx.recorder, spec, &prefix, cx.opts, r);
    }
}

/// Stops running program `r` (of `spec`, which yields) for the first
/// waiter behind its tickets, if there is one.
fn yield_to_waiter(
    recorder: &mut Recorder,
    spec: &Spec,
    prefix: &str,
    opts: &Options,
    r: &mut Running,
) {
    if r.yielding || r.stop_requested || r.exit.is_some() {
        return;
    }
    let behind = r.held.waiting_behind();
    let Some((database, who)) = behind.first() else {
        return;
    };
    let signal = spec.stop_signal;
    r.ask_to_stop(signal, opts.stop_timeout);
    r.yielding = true;
    let named = match who {
        Holder::Program {
            program, pid, mode, ..
        } => format!("{program} (pid {pid}), which waits to {mode}"),
        other => other.to_string(),
    };
    tracing::info!(
        "{prefix}yielding {} to {named}: stopping it ({}), back when it is done",
        database.display(),
        signals::name(signal)
    );
    recorder.yielded(spec, database, who);
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
