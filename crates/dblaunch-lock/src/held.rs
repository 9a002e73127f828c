//! Locks that are held, and letting go of them: every database of one
//! program (or one library acquisition), with its ticket, its record and
//! the backend's lease.

use std::os::fd::{AsRawFd, RawFd};
use std::path::{Path, PathBuf};

use crate::backend::{Fence, Lease};
use crate::error::LockError;
use crate::foreign::foreign_holders;
use crate::holder::Holder;
use crate::mode::Mode;
use crate::queue::{Release, Ticket, TicketId, Tidy};
use crate::record::Record;
use crate::request::Request;

/// Locks that are held: every database of one program.
pub struct Held {
    entries: Vec<(Request, Ticket, Record)>,
    /// The backend's grant of the keyed databases.
    lease: Option<Box<dyn Lease>>,
    program: String,
}

impl std::fmt::Debug for Held {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(
                self.entries
                    .iter()
                    .map(|(r, t, _)| (r.db.path(), r.mode, t.id())),
            )
            .finish()
    }
}

impl Held {
    pub(crate) fn new(
        entries: Vec<(Request, Ticket, Record)>,
        lease: Option<Box<dyn Lease>>,
        program: String,
    ) -> Held {
        Held {
            entries,
            lease,
            program,
        }
    }

    /// The databases held, with how each is used.
    pub fn requests(&self) -> impl Iterator<Item = &Request> {
        self.entries.iter().map(|(r, _, _)| r)
    }

    /// Each database with its ticket number, and whether it is held within
    /// an ancestor dblaunch's hold (nested).
    /// Whether `id` in the queue directory `dir` is one of these tickets.
    pub fn has_ticket(&self, dir: &Path, id: TicketId) -> bool {
        self.entries.iter().any(|(_, t, _)| t.is(dir, id))
    }

    /// Each database with its ticket number, and whether it is held within an
    /// ancestor dblaunch's hold (nested).
    pub fn tickets(&self) -> impl Iterator<Item = (&Request, u64, bool)> {
        self.entries
            .iter()
            .map(|(r, t, _)| (r, t.id().number, t.queue().is_nested()))
    }

    /// The locked descriptors, for the program to inherit.
    pub fn fds(&self) -> Vec<RawFd> {
        self.entries
            .iter()
            .map(|(_, t, _)| t.fd().as_raw_fd())
            .collect()
    }

    /// Fails if a lock directory was removed or replaced while we waited: the
    /// queue we hold our place in is no longer the one newcomers join.
    pub fn check_still_queued(&self) -> Result<(), LockError> {
        match self.entries.iter().find(|(_, t, _)| !t.still_queued()) {
            Some((req, _, _)) => Err(LockError::Removed {
                database: req.db.path().to_path_buf(),
            }),
            None => Ok(()),
        }
    }

    /// Conflicting locks taken on the database files outside dblaunch.
    /// Not asked for a database an ancestor dblaunch holds: its own program
    /// (which waits for us) may well have the file locked, and waiting for
    /// it would be a deadlock.
    pub fn foreign_holders(&self) -> Vec<(PathBuf, Mode, Vec<Holder>)> {
        self.entries
            .iter()
            .filter(|(_, t, _)| !t.queue().is_nested())
            .map(|(req, _, _)| (req.db.path().to_path_buf(), req.mode, foreign_holders(req)))
            .filter(|(_, _, h)| !h.is_empty())
            .collect()
    }

    /// Live tickets queued after ours, in a mode that conflicts with ours:
    /// who waits for us to let go.
    pub fn waiting_behind(&self) -> Vec<(PathBuf, Holder)> {
        let mut behind = Vec::new();
        for (req, ticket, _) in &self.entries {
            let mine = ticket.id();
            let later: Vec<TicketId> = ticket
                .queue()
                .entries()
                .into_iter()
                .map(|e| e.id)
                .filter(|id| id.number > mine.number && mine.mode.conflicts_with(id.mode))
                .collect();
            for h in ticket.queue().holders_among(&later) {
                behind.push((req.db.path().to_path_buf(), h));
            }
        }
        // And on other hosts, as the backend last showed them.
        if let Some(lease) = &self.lease {
            for e in lease.waiters() {
                let database = self
                    .entries
                    .iter()
                    .find(|(r, _, _)| r.key.as_deref() == Some(e.key.as_str()))
                    .map(|(r, _, _)| r.db.path().to_path_buf())
                    .unwrap_or_default();
                behind.push((database, Holder::Remote(e)));
            }
        }
        behind
    }

    /// Calls `wake` when someone on another host queues behind these locks
    /// in a conflicting mode (for `yields`); nothing without a backend.
    pub fn watch_remote_waiters(&self, wake: Box<dyn Fn() + Send>) {
        if let Some(lease) = &self.lease {
            lease.watch_waiters(wake);
        }
    }

    /// The fencing tokens for the program's environment (the several-hosts contract):
    /// `DBLAUNCH_FENCING_TOKEN` when it holds one key,
    /// `DBLAUNCH_FENCING_TOKENS` (`key=token,…`) always.
    pub fn fencing_env(&self) -> Vec<(String, String)> {
        let Some(lease) = &self.lease else {
            return Vec::new();
        };
        let tokens = lease.tokens();
        let mut env = vec![(
            "DBLAUNCH_FENCING_TOKENS".to_owned(),
            tokens
                .iter()
                .map(|(k, t)| format!("{k}={t}"))
                .collect::<Vec<_>>()
                .join(","),
        )];
        if let [(_, token)] = tokens.as_slice() {
            env.push(("DBLAUNCH_FENCING_TOKEN".to_owned(), token.to_string()));
        }
        env
    }

    /// Records that the program running as `pid` (its process group) now
    /// holds the locks.
    pub fn mark_holding(&mut self, pid: i32, start_time: u64) {
        self.mark(Fence::Group(pid), pid, start_time);
    }

    /// Records that this process holds the locks itself (a program locking
    /// for itself): its records name it, and a lease that cannot be renewed
    /// kills it alone.
    pub fn mark_holding_here(&mut self) {
        let (me, start) = crate::record::own_identity();
        self.mark(Fence::Process(me), me, start);
    }

    /// The fencing token of each backend key held: strictly increasing over
    /// the grants of a key. Empty without a backend.
    pub fn tokens(&self) -> Vec<(String, i64)> {
        self.lease.as_ref().map(|l| l.tokens()).unwrap_or_default()
    }

    fn mark(&mut self, fence: Fence, pid: i32, start_time: u64) {
        if let Some(lease) = &self.lease {
            lease.started(fence, &self.program);
        }
        for (req, ticket, record) in &mut self.entries {
            *record = record.holding_since(pid, start_time);
            if ticket.holding() && pid == crate::fork::pid() as i32 {
                continue; // written so when it was taken
            }
            if let Err(e) = ticket.update(record) {
                tracing::warn!(
                    "cannot update the lock record of {}: {e}; status will show this dblaunch instead of the program",
                    req.db.path().display()
                );
            }
        }
    }

    /// Lets go of every lock: each database is free for the next holder on
    /// return, unless processes that escaped the program's process group
    /// still hold it (see [`Released::kept`]).
    pub fn release(self) -> Released {
        // In the reverse of the order taken: the backend, then the host.
        if let Some(lease) = self.lease {
            lease.release();
        }
        let mut released = Released::default();
        for (req, ticket, _) in self.entries.into_iter().rev() {
            let (dir, id) = (ticket.queue().dir().to_path_buf(), ticket.id());
            match ticket.release() {
                Release::Free(tidy) => released.freed.push((dir, id, tidy)),
                Release::HeldBy(pids) => released.kept.push((req.db.path().to_path_buf(), pids)),
            }
        }
        released
    }
}

/// What [`Held::release`] let go. The freed tickets' names stay in their
/// queues, dead, until this is dropped: a caller that has a program to
/// start next starts it first.
#[derive(Debug, Default)]
pub struct Released {
    /// Databases that stay locked, each with the processes that escaped the
    /// program's group and hold it still; their tickets stay queued.
    pub kept: Vec<(PathBuf, Vec<i32>)>,
    /// Tickets that nobody holds any more: queue directory, id, and what is
    /// left to clear away.
    freed: Vec<(PathBuf, TicketId, Tidy)>,
}

impl Released {
    /// Whether ticket `id` of the queue in `dir` was let go, and found free.
    pub fn freed(&self, dir: &Path, id: TicketId) -> bool {
        self.freed.iter().any(|(d, i, _)| *i == id && d == dir)
    }

    /// Takes over what `other` let go, to be cleared away with this.
    pub fn extend(&mut self, other: Released) {
        self.kept.extend(other.kept);
        self.freed.extend(other.freed);
    }
}
