//! The supervisor's one source of events: signals (through the self-pipe of
//! [`Signals`]) and messages from helper threads (a channel plus a wake-up
//! byte), read on the main thread with poll(2), in order. Waiting here costs
//! no CPU: poll sleeps until a byte arrives or the deadline passes.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::AsFd;
use std::sync::Arc;
use std::sync::mpsc::{self, Receiver, Sender};
use std::time::{Duration, Instant};

use nix::poll::{PollFd, PollFlags, PollTimeout, poll};

use crate::platform::QueueWatcher;
use crate::sdnotify::ProgramSocket;
use crate::watch::Watcher;
use dblaunch_lock::Progress;

use crate::signals::Signals;

/// Everything the supervisor reacts to.
#[derive(Debug)]
pub enum Event {
    Signal(i32),
    /// Progress of program `.0`'s lock acquisition.
    Lock(usize, Progress),
    /// A call from `dblaunch stop`, `restart` or `ps` (through the control
    /// socket).
    Control(crate::control::Call),
    /// A ticket appeared in a watched lock directory (someone queued).
    QueueChanged,
    /// A try of program `program`'s readiness check (for its run of pid
    /// `pid`; 0: whichever run is current) ended: `Ok` when it is ready,
    /// else what the try saw.
    Checked {
        program: usize,
        pid: i32,
        outcome: Result<(), String>,
    },
    /// A path that program `.0` watches changed (`.1`, the first seen).
    Changed(usize, std::path::PathBuf),
}

/// See the module documentation.
pub struct Events {
    signals: Signals,
    /// inotify on the lock directories of programs that yield: a waiter
    /// announces itself by its ticket appearing, so noticing it costs no
    /// polling.
    watcher: Option<QueueWatcher>,
    /// Made on first use: an uncontended launch never needs it (a start-up
    /// tweak: docs/design.md, "Start-up cost").
    helpers: Option<Helpers>,
    /// The paths programs watch (`watch`), when any does.
    files: Option<Watcher>,
    /// Sockets for programs' READY=1 (`ready = { notify = true }`), by
    /// program.
    notify: Vec<(usize, ProgramSocket)>,
    queue: VecDeque<Event>,
}

struct Helpers {
    /// The read end of a pipe (cheaper to make than a socket pair).
    wake: File,
    notifier: Notifier,
    rx: Receiver<Event>,
}

/// Sends events to the supervisor from another thread.
#[derive(Clone)]
pub struct Notifier {
    tx: Sender<Event>,
    wake: Arc<File>,
}

impl Notifier {
    pub fn send(&self, event: Event) {
        if self.tx.send(event).is_ok() {
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
            watcher: None,
            helpers: None,
            files: None,
            notify: Vec::new(),
            queue: VecDeque::new(),
        })
    }

    /// Reports [`Event::QueueChanged`] when a ticket appears in `dir`.
    pub fn watch_queue(&mut self, dir: &std::path::Path) -> io::Result<()> {
        if self.watcher.is_none() {
            self.watcher = Some(QueueWatcher::new()?);
        }
        self.watcher.as_ref().expect("just made").watch(dir)
    }

    /// Reports [`Event::Changed`] for the changes `watcher` sees.
    pub fn watch_files(&mut self, watcher: Watcher) {
        self.files = Some(watcher);
    }

    /// Reports [`Event::Checked`] for program `program` when READY=1
    /// arrives on `socket`.
    pub fn listen_for_ready(&mut self, program: usize, socket: ProgramSocket) {
        self.notify.push((program, socket));
    }

    /// A handle for another thread to send [`Progress`] with.
    pub fn notifier(&mut self) -> io::Result<Notifier> {
        if self.helpers.is_none() {
            let (wake, wake_write) =
                nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC | nix::fcntl::OFlag::O_NONBLOCK)?;
            let (tx, rx) = mpsc::channel();
            self.helpers = Some(Helpers {
                wake: File::from(wake),
                notifier: Notifier {
                    tx,
                    wake: Arc::new(File::from(wake_write)),
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
            if let Some(w) = &self.watcher {
                fds.push(PollFd::new(w.as_fd(), PollFlags::POLLIN));
            }
            if let Some(h) = &self.helpers {
                fds.push(PollFd::new(h.wake.as_fd(), PollFlags::POLLIN));
            }
            if let Some(f) = &self.files {
                fds.push(PollFd::new(f.as_fd(), PollFlags::POLLIN));
            }
            for (_, s) in &self.notify {
                fds.push(PollFd::new(s.as_fd(), PollFlags::POLLIN));
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
        if let Some(w) = &self.watcher {
            if w.changed() {
                self.queue.push_back(Event::QueueChanged);
            }
        }
        if let Some(h) = &self.helpers {
            let mut buf = [0u8; 64];
            while matches!((&h.wake).read(&mut buf), Ok(n) if n > 0) {}
            while let Ok(e) = h.rx.try_recv() {
                self.queue.push_back(e);
            }
        }
        if let Some(f) = &mut self.files {
            for (program, path) in f.changes() {
                self.queue.push_back(Event::Changed(program, path));
            }
        }
        for (program, s) in &self.notify {
            if s.ready_said() {
                self.queue.push_back(Event::Checked {
                    program: *program,
                    pid: 0,
                    outcome: Ok(()),
                });
            }
        }
    }
}
