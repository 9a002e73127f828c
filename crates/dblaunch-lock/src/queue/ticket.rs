//! A ticket this process owns: a place in one database's queue, whose
//! exclusive flock is the database lock once every earlier conflicting
//! ticket is gone. Taking one, rewriting its record, giving it up unused,
//! and releasing it.

use std::fs::{self, File};
use std::io;
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::fs::FileExt;
use std::path::Path;

use super::handle::Queue;
use super::lock_dir::{LockDir, SPARE_PREFIX, TMP_PREFIX};
use super::name::{NESTED_SUFFIX, TicketId};
use super::spare;
use super::tidy::{Tidy, remove_if_unheld, take_if_unheld};
use crate::error::LockError;
use crate::fork::TicketFile;
use crate::holder::Holder;
use crate::kernel::{self, Kind};
use crate::mode::Mode;
use crate::procfs::{self, FileId, LockFamily};
use crate::record::{Record, RecordState};

/// A ticket this process owns. Its exclusive flock is the database lock once
/// every earlier conflicting ticket is gone.
#[derive(Debug)]
pub struct Ticket {
    queue: Queue,
    id: TicketId,
    file: TicketFile,
    /// Its record already says this process holds it (granted at once).
    holding: bool,
    /// Its file is also the process's spare for the queue, under this name
    /// (see `spare.rs`).
    spare: Option<String>,
}

/// The result of [`Ticket::take`].
#[expect(
    clippy::large_enum_variant,
    reason = "made once per acquisition and moved out at once; boxing would cost an allocation on every launch"
)]
pub enum Enqueued {
    /// In the queue; `blockers` are the earlier tickets to wait for, oldest
    /// first.
    Queued {
        /// Our place.
        ticket: Ticket,
        /// The earlier conflicting tickets, oldest first.
        blockers: Vec<TicketId>,
        /// Who the oldest blocker's record says it is, read under the gate
        /// at the moment of queueing (for the journal: whom it waited behind).
        front: Option<Holder>,
    },
    /// Only with `no_wait`: someone conflicting is there; no ticket was made.
    Busy(Vec<Holder>),
}

/// What `Ticket::release` found.
#[derive(Debug)]
pub enum Release {
    /// Nobody holds the lock any more. The ticket's name leaves the queue
    /// when the `Tidy` is dropped.
    Free(Tidy),
    /// Processes that inherited the lock outlived the program and still hold
    /// it, so the database stays locked (and queued) until they exit.
    HeldBy(Vec<i32>),
}

impl Ticket {
    /// Takes a place in `queue`, with the record `record(granted)` gives
    /// (`granted`: nobody is ahead, so the place is the lock at once). With
    /// `no_wait`, takes it only if no live conflicting ticket is ahead, and
    /// otherwise reports who is in the way.
    /// `own`: the lock is this process's own (a program locking for
    /// itself), not one for a program it starts: a forked child does not
    /// keep it (see `fork.rs`).
    pub fn take(
        queue: &Queue,
        mode: Mode,
        record: &dyn Fn(bool) -> Record,
        no_wait: bool,
        own: bool,
    ) -> Result<Enqueued, LockError> {
        let dir = queue.lock_dir();
        let gate = queue.gate()?;
        let counter = gate.counter_unless_orphaned(dir)?;
        let (existing, temporaries) = dir.list_all()?;
        remove_dead_temporaries(dir, &temporaries);
        let mut blockers: Vec<TicketId> = existing
            .iter()
            .copied()
            .filter(|t| mode.conflicts_with(t.mode))
            .collect();
        if no_wait {
            // Under the gate, a ticket whose lock we can take is dead for
            // good: clear it away, and keep only the live ones.
            blockers.retain(|&id| !queue.remove_if_dead(id));
            if !blockers.is_empty() {
                let holders = queue.holders_among(&blockers);
                return Ok(Enqueued::Busy(holders));
            }
        }
        // Whom we queue behind, read now: a holder that is about to be asked
        // to let go (a yielding reader) may be gone by the time we wait.
        let front = blockers.first().and_then(|&oldest| queue.recorded(oldest));
        let number = existing.last().map(|t| t.number).max(counter).unwrap_or(0) + 1;
        // (An `orphans` line stays after the counter: the write below
        // overwrites only the counter's fixed-width first line.)
        let id = TicketId { number, mode };
        let path = dir.ticket_path(id);
        let record = record(blockers.is_empty());
        // A program locking for itself again, alone in the queue: its spare
        // from last time, still locked (see `spare.rs`), given the record
        // and linked into place.
        let reused = (own && existing.is_empty())
            .then(|| spare::reuse(dir))
            .flatten()
            .and_then(|(name, file)| {
                let linked = write_record(file.get(), &record)
                    .and_then(|()| fs::hard_link(dir.join(&name), &path));
                match linked {
                    Ok(()) => Some((file, name)),
                    Err(_) => {
                        spare::unused(dir, &name, file);
                        None
                    }
                }
            });
        let (file, spare) = match reused {
            Some((file, name)) => (file, Some(name)),
            None => {
                // The ticket is made under a name no one lists, locked and
                // given its record, and only then renamed into place (the
                // inode, and so the lock, stays): a reader that lists the
                // queue without the gate (status, the names of holders in
                // messages) can never catch it unlocked or empty, nor take
                // the probe lock that would make ours fail.
                let tmp = dir.join(&format!("{TMP_PREFIX}{number:020}.{}", crate::fork::pid()));
                let file = dir.create_new(&tmp)?;
                let file = if own {
                    TicketFile::own(file)
                } else {
                    TicketFile::inherited(file)
                };
                let made = match kernel::lock(file.get(), Kind::Exclusive, false) {
                    Ok(true) => place(&file, &record, &tmp, &path),
                    Ok(false) => Err(io::Error::from_raw_os_error(libc::EWOULDBLOCK)),
                    Err(e) => Err(io::Error::from(e)),
                };
                if let Err(e) = made {
                    let _ = fs::remove_file(&tmp);
                    return Err(dir.io_err("create", path)(e));
                }
                (file, None)
            }
        };
        let ticket = Ticket {
            queue: queue.clone(),
            id,
            file,
            holding: record.state == RecordState::Holding,
            spare,
        };
        gate.set_counter(number);
        drop(gate);
        Ok(Enqueued::Queued {
            ticket,
            blockers,
            front,
        })
    }

    /// Whether its record already says this process holds it.
    pub(crate) fn holding(&self) -> bool {
        self.holding
    }

    /// This ticket's name: its place and mode.
    pub fn id(&self) -> TicketId {
        self.id
    }

    /// Whether this is ticket `id` of the queue in `dir`.
    pub fn is(&self, dir: &Path, id: TicketId) -> bool {
        self.id == id && self.queue.dir() == dir
    }

    /// The queue it is in.
    pub fn queue(&self) -> &Queue {
        &self.queue
    }

    /// The locked descriptor, for the program to inherit.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.file.get().as_fd()
    }

    /// Rewrites the record in place. Done while holding the ticket's lock;
    /// a reader may see a torn record for an instant and retries.
    pub fn update(&self, record: &Record) -> io::Result<()> {
        write_record(self.file.get(), record)
    }

    /// Whether this ticket's file is still the one in the queue directory
    /// (the directory was not removed or replaced while we waited).
    pub fn still_queued(&self) -> bool {
        let Ok(ours) = self.file.get().metadata() else {
            return false;
        };
        let theirs = fs::symlink_metadata(self.queue.lock_dir().ticket_path(self.id));
        theirs.is_ok_and(|m| FileId::of(&m) == FileId::of(&ours))
    }

    /// Gives up a place in the queue that was never used.
    pub fn abandon(self) {
        let dir = self.queue.lock_dir();
        let path = dir.ticket_path(self.id);
        if let Some(name) = &self.spare {
            // Ours alone: it leaves the queue and is the spare again.
            if let Err(file) = spare::keep(dir, &path, Some(name), self.file) {
                drop(file);
            }
            return;
        }
        if let Ok(_gate) = self.queue.gate() {
            let _ = fs::remove_file(&path);
        }
        drop(self.file);
    }

    /// Lets go of the lock after the program is gone: closes our descriptor,
    /// then removes the ticket unless some process still holds the lock
    /// through an inherited descriptor.
    pub fn release(self) -> Release {
        let path = self.queue.lock_dir().ticket_path(self.id);
        // A process's own ticket is never inherited, so no nested queue can
        // be under it, and nobody else can hold it: it leaves the queue at
        // once, kept as the process's spare for its next lock.
        let nested = !self.file.is_own();
        let file = if nested {
            self.file
        } else {
            match spare::keep(
                self.queue.lock_dir(),
                &path,
                self.spare.as_deref(),
                self.file,
            ) {
                Ok(()) => return Release::Free(Tidy::nothing(path)),
                Err(file) => file,
            }
        };
        drop(file);
        // No gate needed: a shared lock on a released ticket proves that
        // nobody holds it exclusively (only its owner's description ever
        // does), and nobody ever takes a meaningful lock on it again, so
        // unlinking it races with nothing. A shared lock, not an exclusive
        // one: the next waiter takes its own shared lock the instant ours is
        // gone, and must not make us wait (on the hand-off path of `run`,
        // that wait held up the start of the next program).
        //
        // Only if it is still held exclusively (our description living on in
        // a leftover of the program) try again for a couple of milliseconds
        // before going through /proc/locks, which is machine-wide and slow to
        // read.
        for attempt in 0..20 {
            if attempt > 0 {
                std::thread::sleep(std::time::Duration::from_micros(100));
            }
            if let Some(tidy) = take_if_unheld(&path, nested) {
                return Release::Free(tidy);
            }
        }
        // Someone holds it exclusively: that can only be our own
        // description, living on in a leftover process of the program, which
        // keeps the database locked. /proc/locks confirms it and names the
        // holders.
        // (Its name still leads to it: only a shared lock, which nobody
        // can have while it is held, lets anyone unlink it.)
        let Some(ino) = FileId::of_path(&path) else {
            return Release::Free(Tidy::nested_only(path));
        };
        // flock entries name the process that took the lock: for ours that
        // is this process, whoever inherited the description since.
        let me = std::process::id() as i32;
        let still_held = procfs::locks().iter().any(|l| {
            l.family == LockFamily::Flock && l.write && l.file == ino && l.pid == Some(me)
        });
        if !still_held {
            return Release::Free(Tidy::nested_only(path));
        }
        let pids = procfs::openers(&[ino])
            .into_iter()
            .filter(|o| o.write_lock)
            .map(|o| o.pid)
            .collect();
        Release::HeldBy(pids)
    }
}

/// Gives a new, locked ticket file, under the name `from`, its record, and
/// renames it to `to`: its place in the queue.
fn place(file: &TicketFile, record: &Record, from: &Path, to: &Path) -> io::Result<()> {
    write_record(file.get(), record)?;
    fs::rename(from, to)
}

/// Writes `record` over what the ticket file held. A shorter record is
/// padded with spaces (JSON ignores them) rather than the file truncated:
/// saves a metadata change per launch.
fn write_record(file: &File, record: &Record) -> io::Result<()> {
    let mut bytes = record.to_bytes();
    let old = file.metadata()?.len() as usize;
    if bytes.len() < old {
        bytes.truncate(bytes.len() - 1);
        bytes.resize(old - 1, b' ');
        bytes.push(b'\n');
    }
    file.write_all_at(&bytes, 0)
}

/// Under the gate: removes temporary tickets that a crash left behind
/// between their creation and their rename (their lock is free), spare
/// tickets of processes that are gone, and nested queues whose ticket is
/// gone (nobody can be under it any more:
/// whoever was held the ticket's lock, which is free).
fn remove_dead_temporaries(dir: &LockDir, names: &[String]) {
    for name in names {
        if name.starts_with(SPARE_PREFIX) {
            if !spare::is_ours(name) {
                spare::remove_if_dead(&dir.join(name));
            }
        } else if name.ends_with(NESTED_SUFFIX) {
            let _ = fs::remove_dir_all(dir.join(name));
        } else {
            remove_if_unheld(&dir.join(name));
        }
    }
}
