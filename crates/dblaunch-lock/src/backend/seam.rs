//! The seam between dblaunch and a coordination engine shared by several
//! hosts: what an engine must do ([`Backend`], [`Lease`]) and the data that
//! crosses it.

use std::fmt;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use super::error::BackendError;
use crate::mode::Mode;

/// One database's claim in the backend.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Claim {
    /// The database's key: hosts that name the same key share one queue.
    pub key: String,
    /// Read or write.
    pub mode: Mode,
}

/// Who a claim belongs to, as other hosts see it.
#[derive(Clone, Debug)]
pub struct Claimant {
    /// Its host's name.
    pub host: String,
    /// Its process on that host.
    pub pid: i32,
    /// Its program name.
    pub program: String,
}

/// A holder or waiter of a key, on any host.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Entry {
    /// The key.
    pub key: String,
    /// Its host's name.
    pub host: String,
    /// Its process on that host.
    pub pid: i32,
    /// Its program name.
    pub program: String,
    /// Read or write.
    pub mode: Mode,
    /// It holds the key (else it waits).
    pub holding: bool,
    /// The fencing token of a grant.
    pub token: Option<i64>,
    /// When it queued or was granted, as the server's clock has it.
    pub since: String,
    /// Its session is gone but its row stays: a holder that did not release
    /// cleanly (crash, partition); it is waited out by the next holder.
    pub lost: bool,
}

/// Asks an acquisition to stop; shared with the thread that acquires.
#[derive(Default)]
pub struct Interrupt {
    /// Set once the acquisition is cancelled.
    pub cancelled: AtomicBool,
    /// How to interrupt a wait in progress (the engine's own cancel).
    pub interrupt: std::sync::Mutex<Option<Box<dyn Fn() + Send>>>,
}

impl Interrupt {
    /// Whether [`Interrupt::cancel`] was called.
    pub fn is_cancelled(&self) -> bool {
        self.cancelled.load(std::sync::atomic::Ordering::Acquire)
    }

    /// Cancels: sets the flag and interrupts a wait in progress.
    pub fn cancel(&self) {
        self.cancelled
            .store(true, std::sync::atomic::Ordering::Release);
        let guard = self.interrupt.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(f) = guard.as_ref() {
            f();
        }
    }
}

/// A coordination engine shared by several hosts.
pub trait Backend: Send + Sync {
    /// The server, for messages (never with a password).
    fn server(&self) -> String;
    /// Takes every claim (sorted by key), waiting behind earlier claimants
    /// of every host until `deadline` (none: as long as it takes) or a
    /// cancel. `on_wait` hears who is ahead each time it starts waiting.
    fn acquire(
        &self,
        claims: &[Claim],
        who: &Claimant,
        deadline: Option<Instant>,
        cancel: &Interrupt,
        on_wait: &mut dyn FnMut(&Claim, Vec<Entry>),
    ) -> Result<Acquired, BackendError>;
    /// Holders and waiters of these keys on every host, holders first.
    fn entries(&self, keys: &[String]) -> Result<Vec<Entry>, BackendError>;
    /// Sends a journal line of `key`, without waiting for it.
    fn record(&self, key: &str, line: &str);
    /// Waits, at most `within`, until the lines recorded so far are stored.
    fn flush(&self, within: Duration);
    /// Every host's journal lines of these keys, oldest first, as
    /// (key, line).
    fn journal(&self, keys: &[String]) -> Result<Vec<(String, String)>, BackendError>;
}

/// The outcome of [`Backend::acquire`].
pub enum Acquired {
    /// Every claim is held.
    Granted(Box<dyn Lease>),
    /// The deadline passed (or a cancel came) while `entries` were ahead.
    Busy {
        /// The claim that was in the way.
        claim: Claim,
        /// Who was ahead.
        ahead: Vec<Entry>,
    },
}

/// Claims granted by a backend, kept alive (renewed) while held.
pub trait Lease: Send {
    /// The fencing token of each key: strictly increasing over the grants of
    /// a key, for storage that checks them.
    fn tokens(&self) -> Vec<(String, i64)>;
    /// The program that now uses the claims, which is killed (its process
    /// group, or the one process, as `fence` says) if the lease cannot be
    /// renewed in time.
    fn started(&self, fence: Fence, program: &str);
    /// Lets go (the program has ended).
    fn release(self: Box<Self>);
    /// From now on, calls `wake` whenever the claimants queued behind this
    /// lease in a conflicting mode (on any host) change and some remain,
    /// within about a quarter of a second (for `yields`).
    fn watch_waiters(&self, wake: Box<dyn Fn() + Send>);
    /// Who waits behind this lease in a conflicting mode, as last seen.
    fn waiters(&self) -> Vec<Entry>;
}

/// What a lease that can no longer be renewed kills, before another host
/// may be granted the lock: two holders must never overlap.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fence {
    /// A program's process group: what the launcher starts.
    Group(i32),
    /// One process: a program that locks for itself.
    Process(i32),
}

impl fmt::Display for Entry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let verb = match (self.holding, self.lost) {
            (true, true) => "held it and lost the backend (its lease is waited out)",
            (true, false) => "holds it",
            (false, _) => "is queued ahead",
        };
        write!(
            f,
            "{} (pid {}) on host {} {verb} for {} since {}",
            self.program, self.pid, self.host, self.mode, self.since
        )
    }
}
