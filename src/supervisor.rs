//! The loop that orders everything that happens to a running program: child
//! exits, signals, lock hand-offs and deadlines arrive as [`Event`]s on one
//! channel and are handled in order, so no state is shared between threads.

use std::collections::VecDeque;
use std::io::{self, IsTerminal, Read, Write};
use std::os::fd::{AsFd, RawFd};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::sync::Arc;
use std::sync::mpsc::{self, Receiver, Sender};
use std::time::{Duration, Instant};

use nix::poll::{PollFd, PollFlags, PollTimeout, poll};

use nix::sys::signal::{SigHandler, Signal};
use signal_hook::consts::signal::{SIGCHLD, SIGINT, SIGKILL, SIGTERM};

use crate::lock::{Holder, Mode, Progress};
use crate::process::{ExitKind, Group, reap_exited};
use crate::signals::{self, Signals};

/// Everything the supervisor reacts to.
#[derive(Debug)]
pub enum Event {
    Signal(i32),
    Lock(Progress),
}

/// The supervisor's one source of events: signals (through the self-pipe of
/// [`Signals`]) and messages from helper threads (through a channel plus a
/// wake-up byte), read on the main thread with poll(2). Waiting here costs
/// no CPU: poll sleeps until a byte arrives or the deadline passes.
pub struct Events {
    signals: Signals,
    /// Made on first use: an uncontended launch never needs it.
    helpers: Option<Helpers>,
    queue: VecDeque<Event>,
}

struct Helpers {
    wake: UnixStream,
    notifier: Notifier,
    rx: Receiver<Progress>,
}

/// Sends [`Progress`] to the supervisor from another thread.
#[derive(Clone)]
pub struct Notifier {
    tx: Sender<Progress>,
    wake: Arc<UnixStream>,
}

impl Notifier {
    pub fn send(&self, p: Progress) {
        if self.tx.send(p).is_ok() {
            // A full pipe means a wake-up is pending already: fine to drop.
            let _ = (&*self.wake).write(&[1]);
        }
    }
}

impl Events {
    /// Starts catching signals.
    pub fn new() -> io::Result<Events> {
        Ok(Events {
            signals: Signals::catch()?,
            helpers: None,
            queue: VecDeque::new(),
        })
    }

    /// A handle for another thread to send [`Progress`] with.
    pub fn notifier(&mut self) -> io::Result<Notifier> {
        if self.helpers.is_none() {
            let (wake, wake_write) = UnixStream::pair()?;
            wake.set_nonblocking(true)?;
            wake_write.set_nonblocking(true)?;
            let (tx, rx) = mpsc::channel();
            self.helpers = Some(Helpers {
                wake,
                notifier: Notifier {
                    tx,
                    wake: Arc::new(wake_write),
                },
                rx,
            });
        }
        Ok(self.helpers.as_ref().expect("just made").notifier.clone())
    }

    /// The next event, or `None` once `deadline` has passed or `tick` has
    /// elapsed, whichever comes first; with neither, sleeps until an event.
    pub fn next(&mut self, deadline: Option<Instant>, tick: Option<Duration>) -> Option<Event> {
        let tick_end = tick.map(|t| Instant::now() + t);
        let end = match (deadline, tick_end) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        loop {
            if let Some(e) = self.queue.pop_front() {
                return Some(e);
            }
            self.collect();
            if !self.queue.is_empty() {
                continue;
            }
            let timeout = match end {
                None => PollTimeout::NONE,
                Some(end) => {
                    let left = end.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        return None;
                    }
                    // Round up, so as never to wake just before the deadline.
                    let ms = left.as_micros().div_ceil(1000).min(i32::MAX as u128) as i32;
                    PollTimeout::try_from(ms).unwrap_or(PollTimeout::MAX)
                }
            };
            let mut fds = vec![PollFd::new(self.signals.fd(), PollFlags::POLLIN)];
            if let Some(h) = &self.helpers {
                fds.push(PollFd::new(h.wake.as_fd(), PollFlags::POLLIN));
            }
            match poll(&mut fds, timeout) {
                Ok(_) | Err(nix::errno::Errno::EINTR) => {}
                Err(e) => {
                    tracing::error!("cannot wait for events: {e}");
                    std::thread::sleep(Duration::from_millis(10));
                }
            }
        }
    }

    fn collect(&mut self) {
        for s in self.signals.pending() {
            self.queue.push_back(Event::Signal(s));
        }
        if let Some(h) = &self.helpers {
            let mut buf = [0u8; 64];
            while matches!((&h.wake).read(&mut buf), Ok(n) if n > 0) {}
            while let Ok(p) = h.rx.try_recv() {
                self.queue.push_back(Event::Lock(p));
            }
        }
    }
}

/// How a supervised program ended, and whether dblaunch was told to stop.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Outcome {
    pub exit: Option<ExitKind>,
    /// The signal (SIGINT/SIGTERM) that stopped dblaunch, if one did.
    pub stopped_by: Option<i32>,
}

impl Outcome {
    /// SPEC.md §3: 128+N when dblaunch was stopped by signal N, else the
    /// program's code or 128 + the signal that killed it.
    pub fn status(&self) -> u8 {
        match (self.stopped_by, self.exit) {
            (Some(signal), _) => ExitKind::Signal(signal).status(),
            (None, Some(exit)) => exit.status(),
            (None, None) => crate::error::code::FAILURE,
        }
    }
}

/// Supervises the program whose main process (and process group) is `pid`
/// until its whole process group is gone.
///
/// - forwarded signals go to the whole group;
/// - SIGINT/SIGTERM start a stop: forwarded, then SIGKILL after
///   `stop_timeout`; a second SIGINT kills at once;
/// - when the main process exits, what is left of its group gets SIGTERM,
///   then SIGKILL after `stop_timeout`.
pub fn supervise_one(
    pid: i32,
    program: &str,
    stop_timeout: Duration,
    events: &mut Events,
) -> Outcome {
    let group = Group(pid);
    let mut outcome = Outcome {
        exit: None,
        stopped_by: None,
    };
    let mut kill_at: Option<Instant> = None;
    let mut killed_at: Option<Instant> = None;
    loop {
        if outcome.exit.is_some() {
            if !group.exists() {
                break;
            }
            if kill_at.is_none() {
                tracing::info!(
                    "`{program}` exited but left processes in its group; stopping them (SIGTERM, SIGKILL after {})",
                    humantime::format_duration(stop_timeout)
                );
                group.signal(SIGTERM);
                kill_at = Some(Instant::now() + stop_timeout);
            }
        }
        if let Some(k) = killed_at {
            // SIGKILL cannot be ignored; a group that outlives it by this much
            // holds only zombies of a parent outside it. Nothing more to do.
            if k.elapsed() > Duration::from_secs(5) {
                tracing::warn!(
                    "processes of `{program}` remain after SIGKILL (zombies of another parent?)"
                );
                break;
            }
        }
        // While the group drains after the main process, look every 50 ms:
        // not every member's death is reported to us.
        let tick = outcome.exit.map(|_| Duration::from_millis(50));
        let deadline = kill_at.filter(|_| killed_at.is_none());
        match events.next(deadline, tick) {
            Some(Event::Signal(SIGCHLD)) => {
                for (p, kind) in reap_exited() {
                    if p == pid {
                        outcome.exit = Some(kind);
                    }
                }
            }
            Some(Event::Signal(s)) if signals::is_stop(s) => match outcome.stopped_by {
                None => {
                    outcome.stopped_by = Some(s);
                    tracing::info!(
                        "stopping `{program}` ({}); SIGKILL in {}{}",
                        signals::name(s),
                        humantime::format_duration(stop_timeout),
                        if s == SIGINT {
                            ", or at once on a second Ctrl-C"
                        } else {
                            ""
                        }
                    );
                    group.signal(s);
                    kill_at = Some(Instant::now() + stop_timeout);
                }
                Some(_) if s == SIGINT && killed_at.is_none() => {
                    tracing::info!("second interrupt: killing `{program}`");
                    group.signal(SIGKILL);
                    killed_at = Some(Instant::now());
                }
                Some(_) => {
                    group.signal(s);
                }
            },
            Some(Event::Signal(s)) => {
                group.signal(s);
            }
            Some(Event::Lock(_)) => {}
            None => {
                if killed_at.is_none() && kill_at.is_some_and(|k| Instant::now() >= k) {
                    tracing::warn!(
                        "`{program}` did not stop within {}; killing it (SIGKILL)",
                        humantime::format_duration(stop_timeout)
                    );
                    group.signal(SIGKILL);
                    killed_at = Some(Instant::now());
                }
            }
        }
    }
    reap_exited();
    outcome
}

/// A job that owns the terminal may stop us with SIGTTOU when we take it
/// back; ignore both terminal stop signals, as shells do.
pub fn ignore_terminal_stops() {
    // SAFETY: SIG_IGN installs no handler code; nothing else in dblaunch
    // relies on these signals.
    unsafe {
        let _ = nix::sys::signal::signal(Signal::SIGTTOU, SigHandler::SigIgn);
        let _ = nix::sys::signal::signal(Signal::SIGTTIN, SigHandler::SigIgn);
    }
}

/// Makes dblaunch's process group the terminal's foreground again.
pub fn take_terminal_back(tty: RawFd) {
    // SAFETY: tcsetpgrp only reads its arguments.
    unsafe {
        libc::tcsetpgrp(tty, libc::getpgrp());
    }
}

/// The one line that says what a queued program waits for and behind whom:
/// redrawn in place with the elapsed time on a terminal, logged once per new
/// blocker otherwise.
pub struct WaitLine {
    started: Instant,
    tty: bool,
    text: Option<String>,
}

impl WaitLine {
    pub fn new(started: Instant) -> WaitLine {
        WaitLine {
            started,
            tty: std::io::stderr().is_terminal() && tracing::enabled!(tracing::Level::INFO),
            text: None,
        }
    }

    /// How often to redraw: every second on a terminal, never otherwise (a
    /// queued dblaunch without a terminal makes no wake-ups at all).
    pub fn tick(&self) -> Option<Duration> {
        (self.tty && self.text.is_some()).then_some(Duration::from_secs(1))
    }

    pub fn waiting(&mut self, database: &Path, mode: Mode, holders: &[Holder]) {
        let behind = match holders {
            [] => "a process that could not be identified".to_owned(),
            [one] => one.to_string(),
            [first, rest @ ..] => format!("{first} (and {} more)", rest.len()),
        };
        let text = format!(
            "waiting for the {mode} lock on {}: {behind}",
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

    pub fn redraw(&self) {
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

    pub fn clear(&mut self) {
        if self.tty && self.text.take().is_some() {
            let _ = write!(std::io::stderr(), "\r\x1b[K");
        }
    }
}
