//! Waiting for a ticket to be let go without blocking in flock(2): the wait
//! a program's own lock needs, which must end at a deadline or at a cancel
//! from another thread, leaving no thread blocked in the kernel behind.
//!
//! The ticket ahead is watched with inotify: its holder's lock goes when the
//! last descriptor of its open file description is closed, and that close
//! is an inotify event. Between events the waiter sleeps in poll(2) on the
//! inotify descriptor and a [`Cancel`] descriptor, with the deadline as the
//! timeout: no CPU, no wake-ups. The kernel sends the close event a moment
//! before it drops the lock (`__fput` calls `fsnotify_close` before
//! `locks_remove_file`), so after an event the lock is tried again a few
//! times with short pauses; an event after which it stays held is another
//! descriptor's close (a leftover process of the holder keeping its copy),
//! and the wait goes on.

use std::fs::File;
use std::io;
use std::os::fd::AsFd;
use std::path::Path;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::eventfd::{EfdFlags, EventFd};
use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify, WatchDescriptor};

use super::record_file::{is_planted_link, open_ticket, same_file};
use crate::kernel::{self, Kind};

/// Pauses between tries of the lock after an inotify event: the close is
/// reported a moment before the lock is dropped.
const RETRIES: [Duration; 5] = [
    Duration::ZERO,
    Duration::from_micros(20),
    Duration::from_micros(100),
    Duration::from_micros(500),
    Duration::from_millis(2),
];

/// Ends waits early, from any thread: a flag and an eventfd that a wait
/// sleeps on beside its inotify descriptor. Once cancelled, it stays so.
pub struct Cancel {
    fd: EventFd,
    cancelled: AtomicBool,
    /// Called once at the cancel: what else must stop (a wait in the lock
    /// backend).
    hooks: Mutex<Vec<Box<dyn FnOnce() + Send>>>,
}

impl std::fmt::Debug for Cancel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cancel")
            .field("cancelled", &self.is_cancelled())
            .finish()
    }
}

impl Cancel {
    /// A cancel that has not fired.
    pub fn new() -> io::Result<Cancel> {
        Ok(Cancel {
            fd: EventFd::from_flags(EfdFlags::EFD_CLOEXEC | EfdFlags::EFD_NONBLOCK)?,
            cancelled: AtomicBool::new(false),
            hooks: Mutex::new(Vec::new()),
        })
    }

    /// Ends every wait on this cancel, now and later.
    pub fn cancel(&self) {
        if self.cancelled.swap(true, Ordering::AcqRel) {
            return;
        }
        let _ = self.fd.write(1);
        let hooks = std::mem::take(&mut *self.hooks.lock().unwrap_or_else(|p| p.into_inner()));
        for hook in hooks {
            hook();
        }
    }

    /// Whether [`Cancel::cancel`] was called.
    pub fn is_cancelled(&self) -> bool {
        self.cancelled.load(Ordering::Acquire)
    }

    /// Runs `hook` at the cancel (at once if it has happened).
    pub(crate) fn on_cancel(&self, hook: Box<dyn FnOnce() + Send>) {
        let mut hooks = self.hooks.lock().unwrap_or_else(|p| p.into_inner());
        if self.is_cancelled() {
            drop(hooks);
            hook();
        } else {
            hooks.push(hook);
        }
    }
}

/// How [`wait_free`] ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Watched {
    /// Nobody holds the ticket any more (or it is gone).
    Free,
    /// The cancel fired.
    Cancelled,
    /// The deadline passed.
    TimedOut,
    /// A signal interrupted the sleep (the caller may want to run its
    /// handlers, then wait again).
    Interrupted,
}

/// Waits until nobody holds the ticket at `path`, `cancel` fires or
/// `deadline` passes (`None`: no deadline), sleeping in poll(2).
pub fn wait_free(path: &Path, cancel: &Cancel, deadline: Option<Instant>) -> io::Result<Watched> {
    let mut watcher = Watcher::take()?;
    let outcome = watcher.wait(path, cancel, deadline);
    watcher.give_back();
    outcome
}

/// An inotify instance of the process's pool. Closing one costs the closing
/// thread several milliseconds (the kernel waits for a grace period before
/// it frees the instance), so instances are kept and reused, one watch at a
/// time. A forked child starts a pool of its own: an instance it shared
/// with its parent would have its events read by both.
struct Watcher {
    inotify: Inotify,
    watch: Option<WatchDescriptor>,
}

static POOL: Mutex<(u32, Vec<Inotify>)> = Mutex::new((0, Vec::new()));

impl Watcher {
    fn take() -> io::Result<Watcher> {
        crate::fork::protect(&POOL);
        let me = crate::fork::pid();
        let pooled = {
            let mut pool = POOL.lock().unwrap_or_else(|p| p.into_inner());
            if pool.0 != me {
                // The parent's instances: never read here, never closed.
                for inherited in std::mem::take(&mut pool.1) {
                    std::mem::forget(inherited);
                }
                pool.0 = me;
            }
            pool.1.pop()
        };
        let inotify = match pooled {
            Some(i) => i,
            None => Inotify::init(InitFlags::IN_CLOEXEC | InitFlags::IN_NONBLOCK)?,
        };
        Ok(Watcher {
            inotify,
            watch: None,
        })
    }

    /// Ends the watch and returns the instance to the pool. (Events still
    /// queued name this watch; the next user drops them.)
    fn give_back(mut self) {
        if let Some(wd) = self.watch.take() {
            let _ = self.inotify.rm_watch(wd);
        }
        let mut pool = POOL.lock().unwrap_or_else(|p| p.into_inner());
        if pool.0 == crate::fork::pid() {
            pool.1.push(self.inotify);
        } else {
            std::mem::forget(self.inotify);
        }
    }

    /// Reads every queued event; true if one says the watched ticket was
    /// deleted, or renamed out of the queue by its owner as its spare
    /// (`spare.rs`; nothing else renames a ticket). Events of earlier
    /// watches are dropped.
    fn drain(&self) -> bool {
        let mut deleted = false;
        while let Ok(events) = self.inotify.read_events() {
            if events.is_empty() {
                break;
            }
            deleted |= events.iter().any(|e| {
                Some(e.wd) == self.watch
                    && e.mask
                        .intersects(AddWatchFlags::IN_DELETE_SELF | AddWatchFlags::IN_MOVE_SELF)
            });
        }
        deleted
    }

    fn wait(
        &mut self,
        path: &Path,
        cancel: &Cancel,
        deadline: Option<Instant>,
    ) -> io::Result<Watched> {
        // Left over from the instance's last watch.
        self.drain();
        // Watched before the ticket is opened and tried: a close after the
        // try is always seen. Only a close of a descriptor opened for
        // writing: a ticket's owner opens it read-write, and the programs
        // it starts inherit that one description; everyone else who opens
        // a ticket (other waiters probing it, `status` reading its record)
        // opens it read-only, and their closes would be wake-ups for
        // nothing.
        let watched = self.inotify.add_watch(
            path,
            AddWatchFlags::IN_CLOSE_WRITE
                | AddWatchFlags::IN_DELETE_SELF
                | AddWatchFlags::IN_MOVE_SELF
                | AddWatchFlags::IN_ATTRIB
                | AddWatchFlags::IN_DONT_FOLLOW,
        );
        match watched {
            Ok(wd) => self.watch = Some(wd),
            Err(Errno::ENOENT) => return Ok(Watched::Free),
            Err(e) => return Err(e.into()),
        }
        let file = match open_ticket(path) {
            Ok(f) => f,
            // Gone (finished), or not a ticket (nobody's lock).
            Err(e) if e.kind() == io::ErrorKind::NotFound || is_planted_link(&e) => {
                return Ok(Watched::Free);
            }
            Err(e) => return Err(e),
        };
        if unheld(&file)? {
            return Ok(Watched::Free);
        }
        loop {
            if cancel.is_cancelled() {
                return Ok(Watched::Cancelled);
            }
            let timeout = match deadline {
                None => PollTimeout::NONE,
                Some(d) => {
                    let left = d.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        return Ok(Watched::TimedOut);
                    }
                    // Rounded up, so the wait never ends before the deadline.
                    let ms = left.as_micros().div_ceil(1000).min(i32::MAX as u128);
                    PollTimeout::try_from(ms as i32).unwrap_or(PollTimeout::MAX)
                }
            };
            let mut fds = [
                PollFd::new(self.inotify.as_fd(), PollFlags::POLLIN),
                PollFd::new(cancel.fd.as_fd(), PollFlags::POLLIN),
            ];
            match poll(&mut fds, timeout) {
                Ok(0) => continue, // the deadline: checked above
                Ok(_) => {}
                Err(Errno::EINTR) => return Ok(Watched::Interrupted),
                Err(e) => return Err(e.into()),
            }
            if fds[1].any().unwrap_or(false) || cancel.is_cancelled() {
                return Ok(Watched::Cancelled);
            }
            // One close or many: the answer is the lock's. But a ticket
            // that left the queue is done, whatever its lock: its owner
            // unlinks it (one of its names, so the event is IN_ATTRIB) or
            // renames it away before it lets go, keeping the file as its
            // spare (`spare.rs`).
            if self.drain() || !same_file(&file, path) {
                return Ok(Watched::Free);
            }
            for pause in RETRIES {
                if !pause.is_zero() {
                    std::thread::sleep(pause);
                }
                if unheld(&file)? {
                    return Ok(Watched::Free);
                }
            }
        }
    }
}

/// Whether nobody holds `file`'s lock: a shared lock can be had at once.
/// It is a probe, not a claim: it goes when the caller closes `file`.
fn unheld(file: &File) -> io::Result<bool> {
    kernel::lock(file, Kind::Shared, false).map_err(io::Error::from)
}
