//! When a running program is up (`ready`), and what waits for that
//! (`needs`): each try of a check is started when its time comes (a
//! deadline of the loop), runs off the loop's thread (a thread for tcp and
//! http, a process for exec; log and notify need no try) and ends as an
//! event. A program that is not ready by its timeout is stopped and fails.
//! A program is stopped only once nothing that needs it runs.

use std::io::Read;
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use signal_hook::consts::signal::SIGKILL;

use crate::events::Event;
use crate::manifest::Check;
use crate::process::{self, ExitKind, Group, Launch, Stdio};
use crate::readiness::{Net, try_once};
use crate::signals;
use dblaunch_lock::round;

use super::context::Context;
use super::spec::Spec;
use super::state::{CheckProcess, End, Readiness, Running, State, Try};
use super::table::Table;

/// One try of a check runs at most this long.
const TRY_LIMIT: Duration = Duration::from_secs(10);

/// A program that has just started: up at once without a check.
pub(super) fn begin(spec: &Spec, now: Instant) -> Readiness {
    match &spec.dev.ready {
        None => Readiness::Up,
        Some(ready) => Readiness::Starting {
            next: now,
            deadline: now + ready.timeout,
            last: None,
            trying: None,
        },
    }
}

/// Program `i`, running: starts a try of its check when one is due, and
/// stops it when it was not ready in time.
pub(super) fn step(cx: &mut Context<'_, '_>, i: usize, r: &mut Running) {
    let spec = cx.table.spec(i);
    let Some(ready) = &spec.dev.ready else {
        return;
    };
    let now = Instant::now();
    let Readiness::Starting {
        next,
        deadline,
        last,
        trying,
    } = &mut r.readiness
    else {
        return;
    };
    if r.exit.is_some() || r.stop_requested || r.kill_at.is_some() || cx.verdict.stopping() {
        return;
    }
    if let Some(Try::Process(p)) = trying {
        if now >= p.until {
            Group(p.pid).signal(SIGKILL);
        }
    }
    if now >= *deadline {
        let saw = match (&ready.check, last.as_deref()) {
            (Check::Log(_), _) => "no line matched".to_owned(),
            (Check::Notify, _) => "no READY=1 came".to_owned(),
            (_, Some(l)) => format!("last try: {l}"),
            (_, None) => "no try finished".to_owned(),
        };
        let message = format!(
            "not ready after {}: {}: {saw}; stopping it ({})",
            humantime::format_duration(ready.timeout),
            ready.check.describe(),
            signals::name(spec.stop_signal)
        );
        if let Some(Try::Process(p)) = trying.take() {
            Group(p.pid).signal(SIGKILL);
        }
        tracing::error!("{}{message}", cx.table.prefix(i));
        cx.table.set_note(
            i,
            Some(format!(
                "was not ready within {} ({}: {saw})",
                humantime::format_duration(ready.timeout),
                ready.check.describe()
            )),
        );
        r.readiness = Readiness::TimedOut;
        r.ask_to_stop(spec.stop_signal, cx.opts.stop_timeout);
        return;
    }
    if trying.is_some() || now < *next {
        return;
    }
    let limit = deadline.saturating_duration_since(now).min(TRY_LIMIT);
    let started = match &ready.check {
        Check::Log(_) | Check::Notify => {
            // Nothing to try: the line or the message comes as an event.
            *next = *deadline;
            return;
        }
        Check::Tcp(address) => net(cx, i, r.pid, Net::Tcp(address), limit),
        Check::Http {
            address,
            host,
            path,
            ..
        } => net(
            cx,
            i,
            r.pid,
            Net::Http {
                address,
                host,
                path,
            },
            limit,
        ),
        Check::Exec(command) => {
            let argv = command.argv();
            let mut env = spec.env.clone();
            env.push(("DBLAUNCH_PROGRAM".to_owned(), spec.name.clone()));
            let launch = Launch {
                argv: &argv,
                cwd: spec.cwd.as_deref(),
                env: &env,
                inherit: &[],
                terminal: None,
                stdio: Stdio::Piped,
                hide: cx.opts.hidden_env(),
            };
            process::spawn(&launch)
                .map(|child| {
                    Try::Process(Box::new(CheckProcess {
                        pid: child.pid,
                        until: now + limit,
                        stdout: child.stdout,
                        stderr: child.stderr,
                    }))
                })
                .map_err(|e| e.to_string())
        }
    };
    match started {
        Ok(t) => *trying = Some(t),
        Err(e) => {
            *last = Some(e);
            *next = now + ready.interval;
        }
    }
}

fn net(
    cx: &mut Context<'_, '_>,
    i: usize,
    pid: i32,
    check: Net<'_>,
    limit: Duration,
) -> Result<Try, String> {
    let notifier = cx.events.notifier().map_err(|e| e.to_string())?;
    try_once(check, limit, move |outcome| {
        notifier.send(Event::Checked {
            program: i,
            pid,
            outcome,
        })
    })
    .map(|()| Try::Thread)
    .map_err(|e| format!("cannot start a check: {e}"))
}

/// A try of program `i`'s check ended (for its run of pid `pid`; 0: the
/// current one).
pub(super) fn checked(cx: &mut Context<'_, '_>, i: usize, pid: i32, outcome: Result<(), String>) {
    let spec = cx.table.spec(i);
    let interval = spec
        .dev
        .ready
        .as_ref()
        .map_or(Duration::ZERO, |r| r.interval);
    let prefix = cx.table.prefix(i);
    let State::Running(r) = cx.table.state_mut(i) else {
        return;
    };
    if pid != 0 && r.pid != pid {
        return;
    }
    let Readiness::Starting {
        next, last, trying, ..
    } = &mut r.readiness
    else {
        return;
    };
    *trying = None;
    match outcome {
        Ok(()) => {
            let after = round(r.started.elapsed());
            r.readiness = Readiness::Ready;
            cx.recorder.ready(spec, r);
            cx.console
                .announce(format_args!("{prefix}ready after {after}"));
        }
        Err(saw) => {
            tracing::debug!("{prefix}not ready yet: {saw}");
            *last = Some(saw);
            *next = Instant::now() + interval;
        }
    }
}

/// A process ended: if it was a try of an `exec` check, its outcome.
/// False if it was not one.
pub(super) fn reaped(cx: &mut Context<'_, '_>, pid: i32, kind: ExitKind) -> bool {
    for i in 0..cx.table.len() {
        let State::Running(r) = cx.table.state_mut(i) else {
            continue;
        };
        let Readiness::Starting {
            trying: Some(Try::Process(p)),
            ..
        } = &mut r.readiness
        else {
            continue;
        };
        if p.pid != pid {
            continue;
        }
        // The check's process group may outlive it (a daemon it forked).
        Group(pid).signal(SIGKILL);
        let run = r.pid;
        let outcome = match kind {
            ExitKind::Code(0) => Ok(()),
            ExitKind::Code(c) => Err(with_output(format!("exit status {c}"), p)),
            ExitKind::Signal(SIGKILL) if Instant::now() >= p.until => Err(format!(
                "it ran past {} and was killed",
                humantime::format_duration(TRY_LIMIT)
            )),
            ExitKind::Signal(s) => Err(with_output(format!("killed by {}", signals::name(s)), p)),
        };
        checked(cx, i, run, outcome);
        return true;
    }
    false
}

/// `what`, and the last line the check printed, if any.
fn with_output(what: String, p: &mut CheckProcess) -> String {
    let mut text = Vec::new();
    for pipe in [
        p.stderr.as_ref().map(|s| s.as_raw_fd()),
        p.stdout.as_ref().map(|s| s.as_raw_fd()),
    ]
    .into_iter()
    .flatten()
    {
        // It has exited: what it wrote is in the pipe; a process it left
        // may hold the pipe open, so do not wait for its end.
        // SAFETY: fcntl(F_SETFL) only changes the flags of a descriptor
        // this process owns (the pipe is open as long as `p` is).
        unsafe {
            libc::fcntl(pipe, libc::F_SETFL, libc::O_NONBLOCK);
        }
    }
    if let Some(e) = p.stderr.as_mut() {
        let _ = e.read_to_end(&mut text);
    }
    if text.iter().all(u8::is_ascii_whitespace) {
        if let Some(o) = p.stdout.as_mut() {
            let _ = o.read_to_end(&mut text);
        }
    }
    let text = String::from_utf8_lossy(&text);
    match text.lines().rev().find(|l| !l.trim().is_empty()) {
        Some(l) => format!("{what}: {}", l.trim()),
        None => what,
    }
}

/// When program `r` wants the loop to look again.
pub(super) fn deadline(r: &Running) -> Option<Instant> {
    match &r.readiness {
        Readiness::Starting {
            next,
            deadline,
            trying,
            ..
        } if r.exit.is_none() && r.kill_at.is_none() => Some(match trying {
            None => (*next).min(*deadline),
            Some(Try::Process(p)) => p.until.min(*deadline),
            Some(Try::Thread) => *deadline,
        }),
        _ => None,
    }
}

/// A program ends: a try under way goes with it.
pub(super) fn end(r: &mut Running) {
    if let Readiness::Starting {
        trying: Some(Try::Process(p)),
        ..
    } = &r.readiness
    {
        Group(p.pid).signal(SIGKILL);
    }
}

/// Whether everything program `i` needs is up: `Ok(true)` to start,
/// `Ok(false)` to wait, `Err` (the program and why) if it never will be.
pub(super) fn needs_met(table: &Table<'_>, i: usize) -> Result<bool, (usize, String)> {
    let mut met = true;
    for &d in &table.spec(i).dev.needs {
        match &table.states()[d] {
            State::Running(r) => match &r.readiness {
                Readiness::TimedOut => {
                    let why = table.note(d).unwrap_or("was not ready in time").to_owned();
                    return Err((d, why));
                }
                ready if ready.up() && r.exit.is_none() => {}
                _ => met = false,
            },
            State::Done(end) => {
                let why = match (table.note(d), end) {
                    (Some(n), _) => n.to_owned(),
                    (None, End::Exited(k)) => format!("ended ({})", describe(*k)),
                    (None, End::Failed(c)) => format!("could not start (status {c})"),
                    (None, End::Skipped) => "was not started".to_owned(),
                    (None, End::NotStarted | End::Stopped) => "was stopped".to_owned(),
                };
                return Err((d, why));
            }
            _ => met = false,
        }
    }
    Ok(met)
}

/// Stops program `i` with `signal` once nothing that needs it runs (now,
/// if nothing does).
pub(super) fn stop_in_order(cx: &mut Context<'_, '_>, i: usize, signal: i32) {
    let waits = cx.table.needed_by_running(i);
    let timeout = cx.opts.stop_timeout;
    if let State::Running(r) = cx.table.state_mut(i) {
        if r.kill_at.is_some() || r.exit.is_some() {
            return;
        }
        if waits {
            r.stop_deferred = Some(signal);
        } else {
            r.ask_to_stop(signal, timeout);
        }
    }
}

/// A stop held back for program `i`'s dependents goes out once none runs.
pub(super) fn stop_when_free(cx: &mut Context<'_, '_>, i: usize, r: &mut Running) {
    let Some(signal) = r.stop_deferred else {
        return;
    };
    if cx.table.needed_by_running(i) {
        return;
    }
    r.stop_deferred = None;
    tracing::debug!(
        "{}nothing that needs it runs any more: stopping it ({})",
        cx.table.prefix(i),
        signals::name(signal)
    );
    r.ask_to_stop(signal, cx.opts.stop_timeout);
}

pub(super) fn describe(k: ExitKind) -> String {
    match k {
        ExitKind::Code(c) => format!("exited {c}"),
        ExitKind::Signal(s) => format!("killed by {}", signals::name(s)),
    }
}
