//! A handle on one database's queue, and what anyone may read from it
//! without taking a place: its tickets with their records, who is in the
//! way, and holders of a removed lock directory. A place is taken with
//! [`Ticket::take`](super::Ticket::take).

use std::path::{Path, PathBuf};

use super::entry::QueueEntry;
use super::gate::Gate;
use super::lock_dir::LockDir;
use super::name::{TicketId, nested_dir_of};
use super::record_file::{open_ticket, read_record};
use super::tidy::remove_if_unheld;
use crate::database::Database;
use crate::error::LockError;
use crate::holder::Holder;
use crate::kernel::{self, Kind};
use crate::record::RecordState;

/// The queue of one database (or a nested queue among the processes under
/// one holder).
#[derive(Clone, Debug)]
pub struct Queue {
    dir: LockDir,
    /// A queue among the programs under one ticket of an ancestor dblaunch
    /// (nested dblaunch), not the database's own.
    nested: bool,
}

impl Queue {
    /// Opens the queue of `db`, creating its lock directory if needed.
    pub fn open(db: &Database) -> Result<Queue, LockError> {
        let (dir, group) = db.ensure_lock_dir()?;
        Ok(Queue {
            dir: LockDir::new(dir, db.path(), group),
            nested: false,
        })
    }

    /// The queue that processes under an inherited ticket share for `db`,
    /// in `dir` (beside that ticket): the ancestor already holds the
    /// database, so they only need to exclude each other (two writers
    /// started by one script).
    pub fn nested(db: &Database, dir: PathBuf) -> Result<Queue, LockError> {
        let group = dir
            .parent()
            .and_then(|p| std::fs::metadata(p).ok())
            .is_some_and(|m| std::os::unix::fs::MetadataExt::mode(&m) & 0o020 != 0);
        let (dir, group) = db.ensure_dir(dir, group)?;
        Ok(Queue {
            dir: LockDir::new(dir, db.path(), group),
            nested: true,
        })
    }

    /// The nested queue under a holder's ticket, if it exists (for `status`).
    pub fn existing_nested(db: &Database, ticket: &Path) -> Option<Queue> {
        Some(Queue {
            dir: LockDir::existing(nested_dir_of(ticket), db.path())?,
            nested: true,
        })
    }

    /// The queue of `db` if its lock directory exists; never creates it.
    pub fn existing(db: &Database) -> Option<Queue> {
        Some(Queue {
            dir: LockDir::existing(db.lock_dir(), db.path())?,
            nested: false,
        })
    }

    /// Whether this is a nested queue (see [`Queue::nested`]).
    pub fn is_nested(&self) -> bool {
        self.nested
    }

    /// The queue's directory.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub(super) fn lock_dir(&self) -> &LockDir {
        &self.dir
    }

    /// Takes the gate: the queue may be edited while it lives.
    pub(super) fn gate(&self) -> Result<Gate, LockError> {
        Gate::take(&self.dir, self.nested)
    }

    /// Holders of a removed lock directory of this database that still run,
    /// as recorded in the gate. Read without the gate's lock (for `status`).
    pub fn orphans(&self) -> Vec<Holder> {
        Gate::recorded_orphans(&self.dir)
    }

    /// Clears away tickets whose owners are gone (for `status`): under the
    /// gate, and only those nobody holds. Best effort: without write
    /// access, nothing happens.
    pub fn remove_dead(&self, ids: &[TicketId]) {
        if let Ok(_gate) = self.gate() {
            for &id in ids {
                self.remove_if_dead(id);
            }
        }
    }

    /// Under the gate: unlinks `id` if nobody holds it. True if it was dead.
    pub(super) fn remove_if_dead(&self, id: TicketId) -> bool {
        remove_if_unheld(&self.dir.ticket_path(id))
    }

    /// Every ticket, oldest first, with whether it is live and its record.
    /// Reads only: takes no gate and removes nothing.
    pub fn entries(&self) -> Vec<QueueEntry> {
        let Ok(ids) = self.dir.list() else {
            return Vec::new();
        };
        ids.into_iter().filter_map(|id| self.entry(id)).collect()
    }

    fn entry(&self, id: TicketId) -> Option<QueueEntry> {
        let path = self.dir.ticket_path(id);
        let file = open_ticket(&path).ok()?;
        // A shared lock we can take means nobody holds the ticket. Let go at
        // once: it is a probe, not a claim. The probe lock goes with `file`
        // when it is closed below.
        let live = !kernel::lock(&file, Kind::Shared, false).unwrap_or(false);
        let record = read_record(&file);
        Some(QueueEntry {
            id,
            path,
            live,
            record,
        })
    }

    /// Who a ticket's record says its owner is, unvalidated: one open and
    /// one read, whatever the number of processes (for the journal, which
    /// must not cost the launch path a scan of /proc).
    pub fn recorded(&self, id: TicketId) -> Option<Holder> {
        let file = open_ticket(&self.dir.ticket_path(id)).ok()?;
        let r = read_record(&file).ok()?;
        Some(Holder::Program {
            program: r.program,
            pid: r.pid,
            mode: r.mode,
            holding: r.state == RecordState::Holding,
            since: r.since,
        })
    }

    /// Who is in the way among these (live, conflicting) tickets.
    pub fn holders_among(&self, ids: &[TicketId]) -> Vec<Holder> {
        ids.iter()
            .filter_map(|&id| self.entry(id))
            .filter(|e| e.live)
            .map(|e| e.holder())
            .collect()
    }
}
