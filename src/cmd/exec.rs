//! `dblaunch exec`: one ad-hoc command under database locks (the flock(1) of
//! this tool, with a fair queue, messages that name the holder, and locks
//! that can never go stale).

use std::io::IsTerminal;
use std::os::fd::{AsFd, AsRawFd, RawFd};
use std::path::Path;
use std::time::{Duration, Instant};

use crate::cli::ExecArgs;
use crate::error::Error;
use crate::lock::{Database, Held, LockError, Mode, Owner, Pending, Progress, Request, Step};
use crate::process::{self, ExitKind, Launch, Stdio};
use crate::signals;
use crate::supervisor::{self, Event, Events, WaitLine};

/// Default grace period between the stop signal and SIGKILL (SPEC.md §2).
pub const DEFAULT_STOP_TIMEOUT: Duration = Duration::from_secs(10);

pub fn execute(args: ExecArgs) -> Result<u8, Error> {
    if args.reads.is_empty() && args.writes.is_empty() {
        return Err(Error::Usage(
            "`dblaunch exec` needs at least one --read PATH or --write PATH naming the database \
             the command uses; without one there is nothing to lock (to run a command alone, \
             run it directly)"
                .to_owned(),
        ));
    }
    let cwd = std::env::current_dir().map_err(|source| Error::Io {
        action: "read the current directory".to_owned(),
        source,
    })?;
    let requests = requests(&args.reads, &args.writes, &cwd)?;
    let owner = Owner {
        program: args
            .name
            .clone()
            .unwrap_or_else(|| basename(&args.command[0])),
        command: args.command.clone(),
    };
    let pending = Pending::new(requests, owner)?;
    let stop_timeout = args.wait.stop_timeout.unwrap_or(DEFAULT_STOP_TIMEOUT);

    let mut events = Events::new().map_err(|source| Error::Io {
        action: "install signal handlers".to_owned(),
        source,
    })?;
    // Orphaned grandchildren are reparented to us, so we can reap them and
    // see when the program's group is empty.
    let _ = nix::sys::prctl::set_child_subreaper(true);

    let started = Instant::now();
    let held = match acquire(pending, args.wait.limit(), started, &mut events)? {
        Acquired::Held(held) => held,
        Acquired::Interrupted(signal) => return Ok(interrupted(signal)),
    };
    let held = match wait_out_foreign(held, args.wait.limit(), started, &mut events)? {
        Acquired::Held(held) => held,
        Acquired::Interrupted(signal) => return Ok(interrupted(signal)),
    };
    if let Err(e) = held.check_still_queued() {
        held.release();
        return Err(e.into());
    }
    tracing::debug!("locks taken after {:?}", started.elapsed());
    run_command(&args.command, held, stop_timeout, &mut events)
}

fn requests(
    reads: &[std::path::PathBuf],
    writes: &[std::path::PathBuf],
    cwd: &Path,
) -> Result<Vec<Request>, LockError> {
    let reads = reads.iter().map(|p| (p, Mode::Read));
    let writes = writes.iter().map(|p| (p, Mode::Write));
    reads
        .chain(writes)
        .map(|(p, mode)| {
            Ok(Request {
                db: Database::resolve(p, cwd)?,
                mode,
            })
        })
        .collect()
}

fn basename(command: &str) -> String {
    Path::new(command)
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| command.to_owned())
}

fn interrupted(signal: i32) -> u8 {
    tracing::info!(
        "stopped by {} while queueing; no lock is held",
        signals::name(signal)
    );
    ExitKind::Signal(signal).status()
}

enum Acquired {
    Held(Held),
    Interrupted(i32),
}

/// Queues for every lock, up to `limit`.
fn acquire(
    mut pending: Pending,
    limit: Option<Duration>,
    started: Instant,
    events: &mut Events,
) -> Result<Acquired, Error> {
    if limit == Some(Duration::ZERO) {
        return Ok(Acquired::Held(pending.try_now()?));
    }
    // The uncontended path stays on this thread: no waiting, no thread.
    if pending.advance(false, |_| {})? == Step::Done {
        return Ok(Acquired::Held(pending.into_held()));
    }
    let notifier = events.notifier().map_err(|source| Error::Io {
        action: "create a wake-up channel".to_owned(),
        source,
    })?;
    let acquirer = pending.in_background(move |p| notifier.send(p));
    let deadline = limit.map(|l| started + l);
    let mut line = WaitLine::new(started);
    loop {
        let event = match events.next(deadline, line.tick()) {
            Some(event) => event,
            None => {
                if deadline.is_some_and(|d| Instant::now() >= d) {
                    line.clear();
                    let report = acquirer.holders_now();
                    acquirer.cancel();
                    let (database, mode, holders) =
                        report.unwrap_or_else(|| (Default::default(), Mode::Write, Vec::new()));
                    return Err(LockError::Busy {
                        database,
                        mode,
                        holders,
                        waited: started.elapsed(),
                        limit: limit.unwrap_or_default(),
                    }
                    .into());
                }
                line.redraw();
                continue;
            }
        };
        match event {
            Event::Signal(s) if signals::ends_queueing(s) => {
                line.clear();
                acquirer.cancel();
                return Ok(Acquired::Interrupted(s));
            }
            Event::Signal(_) => {}
            Event::Lock(Progress::Waiting {
                database,
                mode,
                holders,
            }) => line.waiting(&database, mode, &holders),
            Event::Lock(Progress::Acquired) => {
                line.clear();
                let waited = started.elapsed();
                let held = acquirer
                    .finish()
                    .expect("the acquiring thread reported success");
                tracing::info!("got the locks after waiting {}", crate::lock::round(waited));
                return Ok(Acquired::Held(held));
            }
            Event::Lock(Progress::Failed(e)) => {
                line.clear();
                return Err(e.into());
            }
        }
    }
}

/// With our tickets held, waits for processes that lock the database files
/// themselves outside dblaunch. They are not in the queue, so there is no
/// kernel wake-up to wait for: this is the one place that polls (every
/// 100 ms), and only while such a process is there.
fn wait_out_foreign(
    held: Held,
    limit: Option<Duration>,
    started: Instant,
    events: &mut Events,
) -> Result<Acquired, Error> {
    let deadline = limit.map(|l| started + l);
    let mut warned = false;
    loop {
        let Some((database, mode, holders)) = held.foreign_holders().into_iter().next() else {
            return Ok(Acquired::Held(held));
        };
        if deadline.is_some_and(|d| Instant::now() >= d) {
            held.release();
            return Err(LockError::Busy {
                database,
                mode,
                holders,
                waited: started.elapsed(),
                limit: limit.unwrap_or_default(),
            }
            .into());
        }
        if !warned {
            let list: Vec<String> = holders.iter().map(ToString::to_string).collect();
            tracing::warn!(
                "{} is in use outside dblaunch: {}; waiting for it to let go",
                database.display(),
                list.join(", ")
            );
            warned = true;
        }
        let poll = Some(Instant::now() + Duration::from_millis(100));
        let until = match (deadline, poll) {
            (Some(d), Some(p)) => Some(d.min(p)),
            (d, p) => d.or(p),
        };
        if let Some(Event::Signal(s)) = events.next(until, None) {
            if signals::ends_queueing(s) {
                held.release();
                return Ok(Acquired::Interrupted(s));
            }
        }
    }
}

/// The terminal to hand to the command: stdin's, if dblaunch runs in the
/// foreground of it (as a shell job would).
fn foreground_terminal() -> Option<RawFd> {
    let stdin = std::io::stdin();
    if !stdin.is_terminal() {
        return None;
    }
    let fg = nix::unistd::tcgetpgrp(stdin.as_fd()).ok()?;
    (fg == nix::unistd::getpgrp()).then(|| stdin.as_raw_fd())
}

fn run_command(
    argv: &[String],
    mut held: Held,
    stop_timeout: Duration,
    events: &mut Events,
) -> Result<u8, Error> {
    let terminal = foreground_terminal();
    if terminal.is_some() {
        supervisor::ignore_terminal_stops();
    }
    let fds = held.fds();
    let launch = Launch {
        argv,
        cwd: None,
        env: &[],
        inherit: &fds,
        terminal,
        stdio: Stdio::Inherit,
    };
    let child = match process::spawn(&launch) {
        Ok(child) => child,
        Err(e) => {
            held.release();
            return Err(e.into());
        }
    };
    held.mark_holding(child.pid);
    let program = held_program_name(argv);
    tracing::debug!("started {program} as pid {}", child.pid);
    let outcome = supervisor::supervise_one(child.pid, &program, stop_timeout, events);
    if let Some(tty) = terminal {
        supervisor::take_terminal_back(tty);
    }
    for (database, pids) in held.release() {
        tracing::warn!(
            "{} stays locked: process{} {} of `{program}` escaped its process group and still hold{} the lock; it is released when {} exit",
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
    Ok(outcome.status())
}

fn held_program_name(argv: &[String]) -> String {
    basename(&argv[0])
}
