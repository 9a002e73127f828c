//! `dblaunch __probe`: a hidden test fixture (like just's `--request`). It
//! logs when it starts and ends (with a system-wide monotonic clock, so a
//! checker can order events of many processes), which signals it gets, and
//! can ignore signals, spawn a grandchild, hold until told to go, and lock
//! databases itself through the lock library, as a program with `hold =
//! "on-demand"` does.

use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use nix::time::{ClockId, clock_gettime};

use crate::cli::ProbeArgs;
use crate::error::Error;
use crate::signals;
use dblaunch_lock::{Lock, Mode};

pub fn execute(args: ProbeArgs) -> Result<u8, Error> {
    let (tx, rx) = mpsc::channel();
    let mut catch: Vec<i32> = signals::FORWARDED.to_vec();
    catch.retain(|s| *s != libc::SIGWINCH);
    let mut sigs = signal_hook::iterator::Signals::new(&catch).map_err(|source| Error::Io {
        action: "install signal handlers".into(),
        source,
    })?;
    std::thread::spawn(move || {
        for s in sigs.forever() {
            if tx.send(s).is_err() {
                break;
            }
        }
    });
    let pgid = nix::unistd::getpgrp().as_raw();
    let me = std::process::id();
    if args.grandchild {
        let exe = std::env::current_exe().map_err(|source| Error::Io {
            action: "find own executable".into(),
            source,
        })?;
        let mut cmd = std::process::Command::new(exe);
        cmd.arg("__probe")
            .arg("--label")
            .arg(format!("{}-grandchild", args.label));
        if let Some(l) = &args.log {
            cmd.arg("--log").arg(l);
        }
        if let Some(h) = args.hold {
            cmd.arg("--hold").arg(format!("{}ms", h.as_millis()));
        }
        if let Some(u) = &args.until {
            cmd.arg("--until").arg(u);
        }
        if let Some(p) = &args.pidfile {
            cmd.arg("--pidfile").arg(p);
        }
        for s in &args.ignore {
            cmd.arg("--ignore").arg(s.to_string());
        }
        cmd.spawn().map_err(|source| Error::Io {
            action: "start the grandchild".into(),
            source,
        })?;
    }
    let ppid = nix::unistd::getppid().as_raw();
    // The pid first: a test that has seen `start` may read it at once.
    if let Some(p) = &args.pidfile {
        append(p, &format!("{me}\n"));
    }
    log(&args, &format!("start {} {me} {pgid} {ppid}", now_ns()));
    let locking = lock_itself(&args);
    let deadline = args.hold.map(|h| Instant::now() + h);
    // Without --until or --hold, it ends at once, or once it has taken and
    // released the locks it was given.
    let mut let_go = locking.is_none();
    loop {
        match locking.as_ref().map(mpsc::Receiver::try_recv) {
            Some(Ok(Err(e))) => {
                log(&args, &format!("lock-failed {} {e}", now_ns()));
                log(&args, &format!("end {} {me} {pgid}", now_ns()));
                return Ok(1);
            }
            Some(Ok(Ok(()))) => let_go = true,
            _ => {}
        }
        if args.until.as_deref().is_some_and(Path::exists) {
            break;
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            break;
        }
        if args.until.is_none() && deadline.is_none() && let_go {
            break;
        }
        // Look for `--until` every 5 ms, but never sleep past the deadline:
        // a hold of 1 ms lasts 1 ms, not one polling period.
        let mut nap = Duration::from_millis(5);
        if let Some(d) = deadline {
            nap = nap.min(d.saturating_duration_since(Instant::now()));
        }
        if let Ok(s) = rx.recv_timeout(nap) {
            log(&args, &format!("got {} {}", signals::name(s), now_ns()));
            if !args.ignore.contains(&s) {
                if let Some(file) = &args.linger_until {
                    while !file.exists() {
                        std::thread::sleep(Duration::from_millis(5));
                    }
                }
                log(&args, &format!("end {} {me} {pgid}", now_ns()));
                return Ok((128 + s) as u8);
            }
        }
    }
    log(&args, &format!("end {} {me} {pgid}", now_ns()));
    Ok(args.exit as u8)
}

/// With `--lock-write`/`--lock-read`: a thread takes the locks through the
/// lock crate's `Lock` (`--lock-when` a file exists), logs `locked`, lets
/// go (`--unlock-when` a file exists) and logs `unlocked`; it says `Ok`
/// then, or the error. `None` without locks to take.
fn lock_itself(args: &ProbeArgs) -> Option<mpsc::Receiver<Result<(), String>>> {
    let mut targets = args
        .lock_write
        .iter()
        .map(|d| (d, Mode::Write))
        .chain(args.lock_read.iter().map(|d| (d, Mode::Read)));
    let (first, mode) = targets.next()?;
    let lock = targets.fold(Lock::new(first, mode), |l, (d, m)| l.and(d, m));
    let (lock_when, unlock_when) = (args.lock_when.clone(), args.unlock_when.clone());
    let (log_file, label) = (args.log.clone(), args.label.clone());
    let log = move |event: &str| log_to(log_file.as_deref(), &label, event);
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let wait_for = |file: &Option<PathBuf>| {
            while file.as_deref().is_some_and(|f| !f.exists()) {
                std::thread::sleep(Duration::from_millis(5));
            }
        };
        wait_for(&lock_when);
        let guard = match lock.acquire() {
            Ok(g) => g,
            Err(e) => {
                let _ = tx.send(Err(e.to_string()));
                return;
            }
        };
        log(&format!("locked {}", now_ns()));
        if unlock_when.is_none() {
            // Held until the probe ends.
            loop {
                std::thread::park();
            }
        }
        wait_for(&unlock_when);
        drop(guard);
        log(&format!("unlocked {}", now_ns()));
        let _ = tx.send(Ok(()));
    });
    Some(rx)
}

fn now_ns() -> u128 {
    let t = clock_gettime(ClockId::CLOCK_MONOTONIC).expect("the monotonic clock exists");
    t.tv_sec() as u128 * 1_000_000_000 + t.tv_nsec() as u128
}

fn log(args: &ProbeArgs, event: &str) {
    log_to(args.log.as_deref(), &args.label, event);
}

fn log_to(file: Option<&Path>, label: &str, event: &str) {
    if let Some(path) = file {
        append(path, &format!("{label} {event}\n"));
    }
}

/// One write(2) with O_APPEND: lines from many processes never interleave.
fn append(path: &Path, line: &str) {
    if let Ok(mut f) = OpenOptions::new().create(true).append(true).open(path) {
        let _ = f.write_all(line.as_bytes());
    }
}
