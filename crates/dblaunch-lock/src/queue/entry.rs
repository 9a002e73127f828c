//! A ticket as `status` and error messages see it, and what its owner is
//! doing: the one classification of a ticket.

use std::path::PathBuf;

use super::name::TicketId;
use crate::holder::Holder;
use crate::procfs::{self, FileId};
use crate::record::{Record, RecordState};

/// What a live ticket's owner is doing (see [`QueueEntry::role`]).
#[derive(Clone, Copy, Debug)]
pub enum Role<'a> {
    /// Its program runs (the record's pid is the program's, and alive).
    Holds(&'a Record),
    /// Its dblaunch waits in the queue (and is alive).
    Waits(&'a Record),
    /// The lock is held, but not by the process the record names (a leftover
    /// of the program kept it), or the record cannot be read.
    Leftover(Option<&'a Record>),
}

/// A ticket as `status` and error messages see it.
#[derive(Clone, Debug)]
pub struct QueueEntry {
    /// The ticket's name: its place and mode.
    pub id: TicketId,
    /// The ticket's path.
    pub path: PathBuf,
    /// Someone holds its lock.
    pub live: bool,
    /// Its record, or why it cannot be read.
    pub record: Result<Record, String>,
}

impl QueueEntry {
    /// What this live ticket's owner is doing, its record validated against
    /// /proc: the one classification of a ticket, for `status`, the busy
    /// messages and the waiting line alike.
    pub fn role(&self) -> Role<'_> {
        match &self.record {
            Ok(r) if r.state == RecordState::Holding && r.is_alive() => Role::Holds(r),
            Ok(r) if r.state == RecordState::Waiting && r.supervisor_is_alive() => Role::Waits(r),
            // The recorded process is gone but the lock is held: processes
            // it left behind kept the inherited descriptor.
            Ok(r) => Role::Leftover(Some(r)),
            Err(_) => Role::Leftover(None),
        }
    }

    /// This live entry as a [`Holder`] for a message.
    pub fn holder(&self) -> Holder {
        match (self.role(), &self.record) {
            (Role::Holds(r) | Role::Waits(r), _) => Holder::Program {
                program: r.program.clone(),
                pid: r.pid,
                mode: r.mode,
                holding: r.state == RecordState::Holding,
                since: r.since.clone(),
            },
            (Role::Leftover(Some(r)), _) => Holder::Leftover {
                program: r.program.clone(),
                pids: self
                    .lock_holders()
                    .into_iter()
                    .map(|pid| (pid, procfs::describe(pid)))
                    .collect(),
                mode: r.mode,
            },
            (Role::Leftover(None), Err(why)) => Holder::Unknown {
                ticket: self.path.display().to_string(),
                why: why.clone(),
            },
            (Role::Leftover(None), Ok(_)) => unreachable!("a readable record has a role"),
        }
    }

    /// The processes whose descriptors hold this ticket's lock.
    pub fn lock_holders(&self) -> Vec<i32> {
        let Some(id) = FileId::of_path(&self.path) else {
            return Vec::new();
        };
        procfs::openers(&[id])
            .into_iter()
            .filter(|o| o.write_lock)
            .map(|o| o.pid)
            .collect()
    }
}
