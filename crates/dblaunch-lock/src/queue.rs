//! One database's queue: the gate, the tickets, and the three operations on
//! them (enqueue, wait for one's turn, release).
//!
//! Invariants, which every function here keeps:
//! - a ticket is created, exclusively flocked and given its record while its
//!   creator holds the gate, so every ticket another process can list is
//!   either locked by a live owner or dead;
//! - a ticket is unlinked only by someone who got a shared lock on it (waiting
//!   for it, or trying without waiting): only its owner ever holds it
//!   exclusively, so that proves no process holds it any more;
//! - ticket numbers only grow, so a name that no longer exists is finished.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use crate::database::Database;
use crate::error::{Holder, LockError};
use crate::inherited::Inherited;
use crate::kernel::{self, Kind};
use crate::procfs::{self, FileId, LockFamily};
use crate::record::{Mode, Record, State};
pub use crate::ticket::TicketId;
use crate::ticket::{NESTED_SUFFIX, nested_dir_of};

const GATE: &str = "gate";
/// Prefix of a ticket being made, before it is renamed into the queue.
const TMP_PREFIX: &str = ".new-";
/// A record is a few hundred bytes; anything much larger is not ours.
const MAX_RECORD: u64 = 64 * 1024;

/// The queue of one database.
#[derive(Clone, Debug)]
pub struct Queue {
    db: Database,
    dir: PathBuf,
    /// A queue among the programs under one ticket of an ancestor dblaunch
    /// (nested dblaunch), not the database's own.
    nested: bool,
    /// The lock directory is group-writable (a shared project): files in it
    /// must be too, whatever the umask.
    group: bool,
}

/// A ticket this process owns. Its exclusive flock is the database lock once
/// every earlier conflicting ticket is gone.
#[derive(Debug)]
pub struct Ticket {
    queue: Queue,
    id: TicketId,
    file: File,
}

/// The result of [`Queue::enqueue`].
pub enum Enqueued {
    /// In the queue; `blockers` are the earlier tickets to wait for, oldest
    /// first.
    Queued {
        ticket: Ticket,
        blockers: Vec<TicketId>,
        /// Who the oldest blocker's record says it is, read under the gate
        /// at the moment of queueing (for the journal: whom it waited behind).
        front: Option<Holder>,
    },
    /// Only with `no_wait`: someone conflicting is there; no ticket was made.
    Busy(Vec<Holder>),
}

/// What [`Ticket::release`] found.
#[derive(Debug)]
pub enum Release {
    /// Nobody holds the lock any more. The ticket's name leaves the queue
    /// when the [`Tidy`] is dropped.
    Free(Tidy),
    /// Processes that inherited the lock outlived the program and still hold
    /// it, so the database stays locked (and queued) until they exit.
    HeldBy(Vec<i32>),
}

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
    pub id: TicketId,
    pub path: PathBuf,
    /// Someone holds its lock.
    pub live: bool,
    pub record: Result<Record, String>,
}

struct Gate {
    file: File,
}

impl Queue {
    /// Opens the queue of `db`, creating its lock directory if needed.
    pub fn open(db: &Database) -> Result<Queue, LockError> {
        let (dir, group) = db.ensure_lock_dir()?;
        Ok(Queue {
            db: db.clone(),
            dir,
            nested: false,
            group,
        })
    }

    /// The queue that processes under an inherited ticket share for `db`:
    /// the ancestor already holds the database, so they only need to
    /// exclude each other (two writers started by one script).
    pub fn nested(db: &Database, parent: &Inherited) -> Result<Queue, LockError> {
        let dir = parent.nested_dir();
        let group = dir
            .parent()
            .and_then(|p| fs::metadata(p).ok())
            .is_some_and(|m| m.mode() & 0o020 != 0);
        let (dir, group) = db.ensure_dir(dir, group)?;
        Ok(Queue {
            db: db.clone(),
            dir,
            nested: true,
            group,
        })
    }

    /// The nested queue under a holder's ticket, if it exists (for `status`).
    pub fn existing_nested(db: &Database, ticket: &Path) -> Option<Queue> {
        let dir = nested_dir_of(ticket);
        let meta = fs::symlink_metadata(&dir).ok()?;
        meta.is_dir().then(|| Queue {
            db: db.clone(),
            group: meta.mode() & 0o020 != 0,
            nested: true,
            dir,
        })
    }

    /// Whether this is a nested queue (see [`Queue::nested`]).
    pub fn is_nested(&self) -> bool {
        self.nested
    }

    /// The queue of `db` if its lock directory exists; never creates it.
    pub fn existing(db: &Database) -> Option<Queue> {
        let dir = db.lock_dir();
        let meta = fs::symlink_metadata(&dir).ok()?;
        meta.is_dir().then(|| Queue {
            db: db.clone(),
            group: meta.mode() & 0o020 != 0,
            nested: false,
            dir,
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn io_err(&self, action: &'static str, path: PathBuf) -> impl FnOnce(io::Error) -> LockError {
        let database = self.db.path().to_path_buf();
        move |source| {
            if source.kind() == io::ErrorKind::NotFound && action != "open" {
                return LockError::Removed { database };
            }
            LockError::Io {
                action,
                path,
                database,
                source,
            }
        }
    }

    fn create_mode(&self) -> u32 {
        if self.group { 0o664 } else { 0o644 }
    }

    /// The umask may have taken the group's write bit; give it back.
    fn share(&self, file: &File) {
        if self.group {
            let _ = file.set_permissions(fs::Permissions::from_mode(0o664));
        }
    }

    fn gate(&self) -> Result<Gate, LockError> {
        let path = self.dir.join(GATE);
        match self.open_gate(&path, false) {
            Err(LockError::Removed { .. }) => match self.create_gate(&path)? {
                Some(gate) => Ok(gate),
                // Someone else made it first: use theirs.
                None => self.gate(),
            },
            other => other,
        }
    }

    /// Opens the gate at `path` (creating it in place with `create`) and
    /// waits for its lock.
    fn open_gate(&self, path: &Path, create: bool) -> Result<Gate, LockError> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(create)
            .truncate(false)
            .mode(self.create_mode())
            .custom_flags(libc::O_NOFOLLOW)
            .open(path)
            .map_err(self.io_err("lock", path.to_path_buf()))?;
        if create {
            self.share(&file);
        }
        kernel::lock(&file, Kind::Exclusive, true)
            .map_err(|e| self.io_err("lock", path.to_path_buf())(e.into()))?;
        Ok(Gate { file })
    }

    /// Creates a file nobody else has yet (a temporary ticket or gate), never
    /// through a symlink, with the directory's permissions.
    fn create_new(&self, path: &Path) -> Result<File, LockError> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .mode(self.create_mode())
            .custom_flags(libc::O_NOFOLLOW)
            .open(path)
            .map_err(self.io_err("create", path.to_path_buf()))?;
        self.share(&file);
        Ok(file)
    }

    /// Makes the gate of a new (or removed and made again) lock directory.
    /// It appears already locked (made under a temporary name, locked, then
    /// linked into place), so its maker is the first through it and looks,
    /// before anyone can queue, for holders of a removed lock directory of
    /// this database that still run: their tickets are gone with it, and
    /// without a look a newcomer would run beside them. It writes them into
    /// the gate, where every enqueue sees them. `None`: someone else's gate
    /// won.
    fn create_gate(&self, path: &Path) -> Result<Option<Gate>, LockError> {
        static MADE: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let tmp = self.dir.join(format!(
            "{TMP_PREFIX}gate.{}.{}",
            std::process::id(),
            MADE.fetch_add(1, Ordering::Relaxed)
        ));
        let file = self.create_new(&tmp)?;
        // Nobody else knows this file yet, unless a gate-holder is clearing
        // it away as an abandoned temporary: then start over.
        if !kernel::lock(&file, Kind::Exclusive, false).unwrap_or(false) {
            let _ = fs::remove_file(&tmp);
            return Ok(None);
        }
        let linked = fs::hard_link(&tmp, path);
        let _ = fs::remove_file(&tmp);
        match linked {
            Ok(()) => {}
            // Gone from under us (a gate-holder cleared it away as an
            // abandoned temporary before we locked it): start over; if the
            // whole directory is gone, that finds it out.
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::AlreadyExists | io::ErrorKind::NotFound
                ) =>
            {
                return Ok(None);
            }
            // A filesystem without hard links: make the gate in place, as
            // before this check existed (no look for a removed directory's
            // holders there).
            Err(e) if matches!(e.raw_os_error(), Some(libc::EPERM | libc::EOPNOTSUPP)) => {
                return self.open_gate(path, true).map(Some);
            }
            Err(e) => return Err(self.io_err("create", path.to_path_buf())(e)),
        }
        let gate = Gate { file };
        if !self.nested {
            let orphans =
                procfs::deleted_locked_files(&self.dir, |name| TicketId::parse(name).is_some());
            if !orphans.is_empty() {
                gate.set_orphans(&orphans);
            }
        }
        Ok(Some(gate))
    }

    /// Holders of a removed lock directory of this database that still run
    /// (see [`Queue::create_gate`]), as recorded in the gate. Read without
    /// the gate's lock (for `status`).
    pub fn orphans(&self) -> Vec<Holder> {
        let Ok(file) = open_ticket(&self.dir.join(GATE)) else {
            return Vec::new();
        };
        Gate { file }
            .contents()
            .1
            .into_iter()
            .filter(|o| o.is_live(&self.dir))
            .map(|o| o.holder())
            .collect()
    }

    /// The ticket names in the directory, oldest first. Files with other names
    /// (a stray editor backup, anything not ours) are ignored.
    fn list(&self) -> Result<Vec<TicketId>, LockError> {
        Ok(self.list_all()?.0)
    }

    /// Tickets, oldest first, and the names of temporary tickets and of
    /// nested queues whose ticket is gone (both leftovers of a crash).
    fn list_all(&self) -> Result<(Vec<TicketId>, Vec<String>), LockError> {
        let mut ids = Vec::new();
        let mut temporaries = Vec::new();
        let mut nested = Vec::new();
        for entry in fs::read_dir(&self.dir)
            .map_err(self.io_err("read", self.dir.clone()))?
            .flatten()
        {
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            if let Some(id) = TicketId::parse(name) {
                ids.push(id);
            } else if name.starts_with(TMP_PREFIX) {
                temporaries.push(name.to_owned());
            } else if let Some(id) = name.strip_suffix(NESTED_SUFFIX).and_then(TicketId::parse) {
                nested.push(id);
            }
        }
        ids.sort();
        for id in nested {
            if ids.binary_search(&id).is_err() {
                temporaries.push(format!("{}{NESTED_SUFFIX}", id.file_name()));
            }
        }
        Ok((ids, temporaries))
    }

    fn ticket_path(&self, id: TicketId) -> PathBuf {
        self.dir.join(id.file_name())
    }

    /// Takes a place in the queue. With `no_wait`, takes it only if no live
    /// conflicting ticket is ahead, and otherwise reports who is in the way.
    pub fn enqueue(
        &self,
        mode: Mode,
        record: &Record,
        no_wait: bool,
    ) -> Result<Enqueued, LockError> {
        let gate = self.gate()?;
        let counter = gate.counter_unless_orphaned(&self.dir, self.db.path())?;
        let (existing, temporaries) = self.list_all()?;
        self.remove_dead_temporaries(&temporaries);
        let mut blockers: Vec<TicketId> = existing
            .iter()
            .copied()
            .filter(|t| mode.conflicts_with(t.mode))
            .collect();
        if no_wait {
            // Under the gate, a ticket whose lock we can take is dead for
            // good: clear it away, and keep only the live ones.
            blockers.retain(|&id| !self.remove_if_dead(id));
            if !blockers.is_empty() {
                let holders = self.holders_among(&blockers);
                return Ok(Enqueued::Busy(holders));
            }
        }
        // Whom we queue behind, read now: a holder that is about to be asked
        // to let go (a yielding reader) may be gone by the time we wait.
        let front = blockers.first().and_then(|&oldest| self.recorded(oldest));
        let number = existing.last().map(|t| t.number).max(counter).unwrap_or(0) + 1;
        // (An `orphans` line stays after the counter: the write below
        // overwrites only the counter's fixed-width first line.)
        let id = TicketId { number, mode };
        let path = self.ticket_path(id);
        // The ticket is made under a name no one lists, locked and given its
        // record, and only then renamed into place (the inode, and so the
        // lock, stays): a reader that lists the queue without the gate
        // (status, the names of holders in messages) can never catch it
        // unlocked or empty, nor take the probe lock that would make ours
        // fail.
        let tmp = self
            .dir
            .join(format!("{TMP_PREFIX}{number:020}.{}", std::process::id()));
        let file = self.create_new(&tmp)?;
        let ticket = Ticket {
            queue: self.clone(),
            id,
            file,
        };
        let made = kernel::lock(&ticket.file, Kind::Exclusive, false)
            .map_err(io::Error::from)
            .and_then(|locked| {
                if locked {
                    Ok(())
                } else {
                    Err(io::Error::from_raw_os_error(libc::EWOULDBLOCK))
                }
            })
            .and_then(|()| ticket.update(record))
            .and_then(|()| fs::rename(&tmp, &path));
        if let Err(e) = made {
            let _ = fs::remove_file(&tmp);
            return Err(self.io_err("create", path)(e));
        }
        gate.set_counter(number);
        drop(gate);
        Ok(Enqueued::Queued {
            ticket,
            blockers,
            front,
        })
    }

    /// Under the gate: removes temporary tickets that a crash left behind
    /// between their creation and their rename (their lock is free), and
    /// nested queues whose ticket is gone (nobody can be under it any more:
    /// whoever was held the ticket's lock, which is free).
    fn remove_dead_temporaries(&self, names: &[String]) {
        for name in names {
            if name.ends_with(NESTED_SUFFIX) {
                let _ = fs::remove_dir_all(self.dir.join(name));
            } else {
                remove_if_unheld(&self.dir.join(name));
            }
        }
    }

    /// Clears away tickets whose owners are gone (for `status`): under the
    /// gate, and only those nobody holds. Best effort:
    /// without write access, nothing happens.
    pub fn remove_dead(&self, ids: &[TicketId]) {
        if let Ok(_gate) = self.gate() {
            for &id in ids {
                self.remove_if_dead(id);
            }
        }
    }

    /// Under the gate: unlinks `id` if nobody holds it. True if it was dead.
    fn remove_if_dead(&self, id: TicketId) -> bool {
        remove_if_unheld(&self.ticket_path(id))
    }

    /// Every ticket, oldest first, with whether it is live and its record.
    /// Reads only: takes no gate and removes nothing.
    pub fn entries(&self) -> Vec<QueueEntry> {
        let Ok(ids) = self.list() else {
            return Vec::new();
        };
        ids.into_iter().filter_map(|id| self.entry(id)).collect()
    }

    fn entry(&self, id: TicketId) -> Option<QueueEntry> {
        let path = self.ticket_path(id);
        let file = open_ticket(&path).ok()?;
        // A shared lock we can take means nobody holds the ticket. Let go at
        // once: it is a probe, not a claim.
        // The probe lock goes with `file` when it is closed below.
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
        let file = open_ticket(&self.ticket_path(id)).ok()?;
        let r = read_record(&file).ok()?;
        Some(Holder::Program {
            program: r.program,
            pid: r.pid,
            mode: r.mode,
            holding: r.state == State::Holding,
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

impl QueueEntry {
    /// What this live ticket's owner is doing, its record validated against
    /// /proc: the one classification of a ticket, for `status`, the busy
    /// messages and the waiting line alike.
    pub fn role(&self) -> Role<'_> {
        match &self.record {
            Ok(r) if r.state == State::Holding && r.is_alive() => Role::Holds(r),
            Ok(r) if r.state == State::Waiting && r.supervisor_is_alive() => Role::Waits(r),
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
                holding: r.state == State::Holding,
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

/// A process that holds a ticket of a removed lock directory: its pid, the
/// start time that pid had, and the descriptor the ticket is open on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Orphan {
    pid: i32,
    start_time: u64,
    fd: i32,
}

impl Orphan {
    /// Still the same process, still holding a locked ticket of a removed
    /// directory of this database on that descriptor.
    fn is_live(&self, dir: &Path) -> bool {
        procfs::start_time(self.pid) == Some(self.start_time)
            && procfs::deleted_locked_fd(self.pid, self.fd, dir)
    }

    /// Who it is, from the ticket's record read through its descriptor.
    fn holder(&self) -> Holder {
        let record = fs::read(format!("/proc/{}/fd/{}", self.pid, self.fd))
            .ok()
            .and_then(|b| serde_json::from_slice::<Record>(&b).ok());
        let (mode, since) = record
            .as_ref()
            .map_or((Mode::Write, String::new()), |r| (r.mode, r.since.clone()));
        Holder::Orphan {
            program: record.map(|r| r.program),
            pid: self.pid,
            command: procfs::describe(self.pid),
            mode,
            since,
        }
    }
}

impl Gate {
    /// The gate's text: the ticket counter, then an `orphans` line when a
    /// removed lock directory left live holders behind.
    /// Always from the start of the file (pread): the file position must
    /// not carry one read over to the next, or the counter would read as
    /// empty and ticket numbers restart once the queue empties.
    fn text(&self) -> String {
        let mut buf = [0u8; 4096];
        let mut len = 0;
        while len < buf.len() {
            match self.file.read_at(&mut buf[len..], len as u64) {
                Ok(0) => break,
                Ok(n) => len += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => break,
            }
        }
        String::from_utf8_lossy(&buf[..len]).into_owned()
    }

    /// The counter (a garbled one is harmless: the tickets on disk also say
    /// where the numbering stands) and the orphans, from one read.
    fn contents(&self) -> (Option<u64>, Vec<Orphan>) {
        let text = self.text();
        let counter = text.lines().next().and_then(|l| l.trim().parse().ok());
        let orphans = text
            .lines()
            .find_map(|l| l.strip_prefix("orphans "))
            .map(|line| {
                line.split_whitespace()
                    .filter_map(|o| {
                        let mut f = o.split(':');
                        Some(Orphan {
                            pid: f.next()?.parse().ok()?,
                            start_time: f.next()?.parse().ok()?,
                            fd: f.next()?.parse().ok()?,
                        })
                    })
                    .collect()
            })
            .unwrap_or_default();
        (counter, orphans)
    }

    fn set_orphans(&self, found: &[(i32, i32)]) {
        let list: Vec<String> = found
            .iter()
            .filter_map(|&(pid, fd)| Some(format!("{pid}:{}:{fd}", procfs::start_time(pid)?)))
            .collect();
        let text = format!("{:020}\norphans {}\n", 0, list.join(" "));
        let _ = self.file.set_len(0);
        let _ = self.file.write_all_at(text.as_bytes(), 0);
    }

    /// Under the gate: the ticket counter; but fails while a holder of a
    /// removed lock directory still runs (nobody may be granted beside it,
    /// and it is in no queue to wait behind), and forgets them once they are
    /// all gone. One read of the gate, which the counter needs anyway.
    fn counter_unless_orphaned(
        &self,
        dir: &Path,
        database: &Path,
    ) -> Result<Option<u64>, LockError> {
        let (counter, orphans) = self.contents();
        if orphans.is_empty() {
            return Ok(counter);
        }
        let live: Vec<Holder> = orphans
            .iter()
            .filter(|o| o.is_live(dir))
            .map(|o| o.holder())
            .collect();
        if live.is_empty() {
            let _ = self.file.set_len(0);
            self.set_counter(counter.unwrap_or(0));
            return Ok(counter);
        }
        Err(LockError::Orphaned {
            database: database.to_path_buf(),
            holders: live,
        })
    }

    fn set_counter(&self, n: u64) {
        // Fixed width, so it always overwrites the last one exactly: no
        // ftruncate (an extra journalled metadata change) on every enqueue.
        let text = format!("{n:020}\n");
        let _ = self.file.write_all_at(text.as_bytes(), 0);
    }
}

impl Ticket {
    pub fn id(&self) -> TicketId {
        self.id
    }

    /// Whether this is ticket `id` of the queue in `dir`.
    pub fn is(&self, dir: &Path, id: TicketId) -> bool {
        self.id == id && self.queue.dir() == dir
    }

    pub fn queue(&self) -> &Queue {
        &self.queue
    }

    /// The locked descriptor, for the program to inherit.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.file.as_fd()
    }

    /// Rewrites the record in place. Done while holding the ticket's lock;
    /// a reader may see a torn record for an instant and retries.
    pub fn update(&self, record: &Record) -> io::Result<()> {
        let mut bytes = record.to_bytes();
        // Pad a shorter record with spaces (JSON ignores them) rather than
        // truncating the file: saves a metadata change per launch.
        let old = self.file.metadata()?.len() as usize;
        if bytes.len() < old {
            bytes.truncate(bytes.len() - 1);
            bytes.resize(old - 1, b' ');
            bytes.push(b'\n');
        }
        self.file.write_all_at(&bytes, 0)
    }

    /// Whether this ticket's file is still the one in the queue directory
    /// (the directory was not removed or replaced while we waited).
    pub fn still_queued(&self) -> bool {
        let Ok(ours) = self.file.metadata() else {
            return false;
        };
        let theirs = fs::symlink_metadata(self.queue.ticket_path(self.id));
        theirs.is_ok_and(|m| FileId::of(&m) == FileId::of(&ours))
    }

    /// Gives up a place in the queue that was never used.
    pub fn abandon(self) {
        if let Ok(_gate) = self.queue.gate() {
            let _ = fs::remove_file(self.queue.ticket_path(self.id));
        }
        drop(self.file);
    }

    /// Lets go of the lock after the program is gone: closes our descriptor,
    /// then removes the ticket unless some process still holds the lock
    /// through an inherited descriptor.
    pub fn release(self) -> Release {
        let path = self.queue.ticket_path(self.id);
        let ino = self.file.metadata().ok().map(|m| FileId::of(&m));
        drop(self.file);
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
            if let Some(tidy) = take_if_unheld(&path, true) {
                return Release::Free(tidy);
            }
        }
        // Someone holds it exclusively: that can only be our own
        // description, living on in a leftover process of the program, which
        // keeps the database locked. /proc/locks confirms it and names the
        // holders.
        let Some(ino) = ino else {
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

/// Waits until none of `blockers` (in the lock directory `dir`) is held.
/// Each one is opened only while it is waited for, so a waiter holds one
/// extra descriptor however long the queue.
///
/// The newest blocker is waited for first: it is usually the last to finish,
/// so each waiter wakes once, when its predecessor is done, and then finds
/// the older ones gone. Waiting oldest first would wake every waiter of a
/// long queue at each hand-off (a thundering herd: n² wake-ups per drain).
///
/// `on_blocked` is told before each wait that will really block, with the
/// blockers that remain (oldest first; the last is the one waited for). Returns
/// false if `cancel` was set.
pub fn wait_turn(
    dir: &Path,
    blockers: &mut Vec<TicketId>,
    block: bool,
    cancel: &AtomicBool,
    mut on_blocked: impl FnMut(&[TicketId]),
) -> io::Result<WaitOutcome> {
    while let Some(&id) = blockers.last() {
        if cancel.load(Ordering::Acquire) {
            return Ok(WaitOutcome::Cancelled);
        }
        let path = dir.join(id.file_name());
        let file = match open_ticket(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                blockers.pop();
                drop_departed(dir, blockers);
                continue;
            }
            Err(e) if is_planted_link(&e) => {
                // Not a ticket: nobody's lock. Never followed; the link
                // itself goes (unlink does not touch its target).
                let _ = fs::remove_file(&path);
                blockers.pop();
                continue;
            }
            Err(e) => return Err(e),
        };
        if !kernel::lock(&file, Kind::Shared, false)? {
            if !block {
                return Ok(WaitOutcome::Blocked(id));
            }
            on_blocked(blockers);
            kernel::lock(&file, Kind::Shared, true)?;
        }
        // We hold a shared lock: nobody holds the ticket, and nobody ever will
        // again. Clear it away for everyone (if the name is still that
        // ticket's: names are never reused, and this keeps it so should
        // anything ever break that).
        if same_file(&file, &path) {
            let _ = fs::remove_file(&path);
        }
        blockers.pop();
        drop(file);
        drop_departed(dir, blockers);
    }
    Ok(WaitOutcome::Done)
}

/// The tickets in the queue directory `dir`, in directory order.
fn ticket_ids(dir: &Path) -> io::Result<impl Iterator<Item = TicketId>> {
    Ok(fs::read_dir(dir)?
        .flatten()
        .filter_map(|e| e.file_name().to_str().and_then(TicketId::parse)))
}

/// Whether the queue in `dir` has any ticket (false when there is no such
/// directory yet).
pub fn has_tickets(dir: &Path) -> bool {
    ticket_ids(dir).is_ok_and(|mut ids| ids.next().is_some())
}

/// Once the newest blocker is gone, the older ones usually are too: one
/// look at the directory drops them all, instead of one open(2) each on
/// the hand-off path (names are never reused, so absent means done). Without
/// it, the n-th waiter of a queue that finds its predecessor already gone
/// would try n names in turn.
fn drop_departed(dir: &Path, blockers: &mut Vec<TicketId>) {
    if blockers.len() > 1 {
        if let Ok(ids) = ticket_ids(dir) {
            let present: std::collections::HashSet<TicketId> = ids.collect();
            blockers.retain(|b| present.contains(b));
        }
    }
}

#[derive(Debug, PartialEq, Eq)]
pub enum WaitOutcome {
    Done,
    Blocked(TicketId),
    Cancelled,
}

/// Whether `path` still names the file open as `file`.
fn same_file(file: &File, path: &Path) -> bool {
    match (file.metadata(), fs::symlink_metadata(path)) {
        (Ok(a), Ok(b)) => FileId::of(&a) == FileId::of(&b),
        _ => false,
    }
}

/// O_NOFOLLOW met a symbolic link where a ticket should be: dblaunch never
/// makes one, so someone planted it.
fn is_planted_link(e: &io::Error) -> bool {
    e.raw_os_error() == Some(libc::ELOOP)
}

/// A released ticket whose lock nobody holds: what is left to clear away
/// when it is dropped (its name in the queue, if it still names the file we
/// found free, and any nested queue under it). Left for later so that the
/// next program can start first: until then the name is a dead ticket,
/// which every waiter and newcomer passes (or clears away) by taking its
/// lock shared.
#[derive(Debug)]
pub struct Tidy {
    path: PathBuf,
    /// The ticket, locked shared: proof that nobody holds it.
    file: Option<File>,
    /// Whether a nested queue may be under it (a released ticket's).
    nested: bool,
}

impl Tidy {
    /// Only the nested queue is ours to remove; the name is left for
    /// whoever finds it unheld.
    fn nested_only(path: PathBuf) -> Tidy {
        Tidy {
            path,
            file: None,
            nested: true,
        }
    }
}

impl Drop for Tidy {
    fn drop(&mut self) {
        // Someone passing it may have unlinked it already; names are never
        // reused, but never unlink a name that is not this file's.
        if let Some(file) = self.file.take() {
            if same_file(&file, &self.path) {
                let _ = fs::remove_file(&self.path);
            }
        }
        if self.nested {
            remove_nested_queue(&self.path);
        }
    }
}

/// The ticket at `path`, if nobody holds its lock (or it is gone already),
/// ready to be cleared away; `nested`: with the nested queue under it. A
/// shared lock is the proof: every live ticket is held exclusively by its
/// owner, and those who merely pass a dead one (waiters, `status`) hold
/// shared locks, which must not make it look alive (a releasing holder
/// would otherwise wait for the next waiter to move on). A planted symlink
/// is not a ticket: it is removed (unlink never touches its target).
fn take_if_unheld(path: &Path, nested: bool) -> Option<Tidy> {
    let file = match open_ticket(path) {
        Ok(f) => Some(f),
        Err(e) => {
            if is_planted_link(&e) {
                let _ = fs::remove_file(path);
            }
            None
        }
    };
    if let Some(f) = &file {
        if !matches!(kernel::lock(f, Kind::Shared, false), Ok(true)) {
            return None;
        }
    }
    Some(Tidy {
        path: path.to_path_buf(),
        file,
        nested,
    })
}

/// Unlinks the ticket at `path` now if nobody holds it. True if it is gone
/// now, or was never a ticket.
fn remove_if_unheld(path: &Path) -> bool {
    take_if_unheld(path, false).is_some()
}

/// Removes the nested queue under a released ticket, if programs under it
/// made one. Its tickets are all dead: their owners inherited the released
/// lock, which nobody holds any more.
fn remove_nested_queue(ticket: &Path) {
    let _ = fs::remove_dir_all(nested_dir_of(ticket));
}

fn open_ticket(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
}

fn read_record(file: &File) -> Result<Record, String> {
    // A record is rewritten in place when its owner starts holding; retry a
    // torn read a few times before calling it corrupt.
    let mut last = String::new();
    for attempt in 0..3 {
        if attempt > 0 {
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
        // A record is a few hundred bytes: start small and grow up to the
        // limit (a zeroed 64 KiB buffer per read was a fifth of the
        // instructions of a `run` of 30 queued programs).
        let mut buf = vec![0u8; 1024];
        let mut len = 0;
        loop {
            if len == buf.len() {
                if len as u64 >= MAX_RECORD {
                    return Err("it is larger than any dblaunch record".to_owned());
                }
                buf.resize((len * 2).min(MAX_RECORD as usize), 0);
            }
            match file.read_at(&mut buf[len..], len as u64) {
                Ok(0) => break,
                Ok(n) => len += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(format!("cannot read it: {e}")),
            }
        }
        if len == 0 {
            last = "it is empty".to_owned();
            continue;
        }
        match serde_json::from_slice::<Record>(&buf[..len]) {
            Ok(r) => return Ok(r),
            Err(e) => last = format!("it is not a dblaunch record: {e}"),
        }
    }
    Err(last)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::Owner;

    fn owner() -> Owner {
        Owner {
            program: "t".into(),
            command: vec!["t".into()],
        }
    }

    fn queue() -> (tempfile::TempDir, Queue) {
        let tmp = tempfile::tempdir().unwrap();
        let db = Database::resolve(Path::new("app.db"), tmp.path()).unwrap();
        let q = Queue::open(&db).unwrap();
        (tmp, q)
    }

    #[test]
    fn records_of_any_size_up_to_the_limit_are_read_whole() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("record");
        for name_len in [1, 700, 1024, 5000, 40_000] {
            let owner = Owner {
                program: "p".repeat(name_len),
                command: vec!["p".into()],
            };
            let record = Record::waiting(&owner, Mode::Read);
            fs::write(&path, serde_json::to_vec(&record).unwrap()).unwrap();
            let read = read_record(&File::open(&path).unwrap()).unwrap();
            assert_eq!(read.program.len(), name_len);
            assert_eq!(read.pid, record.pid);
        }
        fs::write(&path, vec![b' '; MAX_RECORD as usize]).unwrap();
        let too_big = read_record(&File::open(&path).unwrap()).unwrap_err();
        assert!(too_big.contains("larger than any"), "{too_big}");
    }

    #[test]
    fn a_queue_has_tickets_only_while_a_ticket_is_in_it() {
        let (tmp, q) = queue();
        assert!(!has_tickets(&tmp.path().join("no such directory")));
        // The gate (and a journal) are not tickets.
        fs::write(q.dir().join("journal"), "").unwrap();
        assert!(!has_tickets(q.dir()));
        let (ticket, _) = enqueue(&q, Mode::Write);
        assert!(has_tickets(q.dir()));
        assert!(matches!(ticket.release(), Release::Free(_)));
        assert!(!has_tickets(q.dir()));
    }

    fn enqueue(q: &Queue, mode: Mode) -> (Ticket, Vec<TicketId>) {
        match q
            .enqueue(mode, &Record::waiting(&owner(), mode), false)
            .unwrap()
        {
            Enqueued::Queued {
                ticket, blockers, ..
            } => (ticket, blockers),
            Enqueued::Busy(_) => unreachable!("waiting enqueue is never busy"),
        }
    }

    #[test]
    fn ticket_names_round_trip_and_strangers_are_ignored() {
        let id = TicketId {
            number: 42,
            mode: Mode::Write,
        };
        assert_eq!(id.file_name(), "00000000000000000042.w");
        assert_eq!(TicketId::parse(&id.file_name()), Some(id));
        assert_eq!(TicketId::parse("gate"), None);
        assert_eq!(TicketId::parse("42.w"), None);
        assert_eq!(TicketId::parse("0000000000000000004x.w"), None);
        assert_eq!(TicketId::parse("00000000000000000042.x"), None);
    }

    #[test]
    fn writers_wait_for_all_and_readers_only_for_writers() {
        let (_tmp, q) = queue();
        let (r1, b) = enqueue(&q, Mode::Read);
        assert!(b.is_empty());
        let (w2, b) = enqueue(&q, Mode::Write);
        assert_eq!(b, vec![r1.id()]);
        let (_r3, b) = enqueue(&q, Mode::Read);
        assert_eq!(
            b,
            vec![w2.id()],
            "a later reader waits for the waiting writer"
        );
        let (_w4, b) = enqueue(&q, Mode::Write);
        assert_eq!(b.len(), 3);
    }

    #[test]
    fn a_held_ticket_blocks_and_a_released_one_does_not() {
        let (_tmp, q) = queue();
        let (w1, _) = enqueue(&q, Mode::Write);
        let (_w2, mut blockers) = enqueue(&q, Mode::Write);
        let cancel = AtomicBool::new(false);
        let out = wait_turn(q.dir(), &mut blockers.clone(), false, &cancel, |_| {}).unwrap();
        assert_eq!(out, WaitOutcome::Blocked(w1.id()));
        assert!(matches!(w1.release(), Release::Free(_)));
        let out = wait_turn(q.dir(), &mut blockers, false, &cancel, |_| {}).unwrap();
        assert_eq!(out, WaitOutcome::Done);
    }

    #[test]
    fn no_wait_reports_the_holder_and_leaves_no_ticket() {
        let (_tmp, q) = queue();
        let (w1, _) = enqueue(&q, Mode::Write);
        w1.update(&Record::waiting(&owner(), Mode::Write).holding(std::process::id() as i32))
            .unwrap();
        let before = q.entries().len();
        let r = Record::waiting(&owner(), Mode::Read);
        match q.enqueue(Mode::Read, &r, true).unwrap() {
            Enqueued::Busy(holders) => {
                assert_eq!(holders.len(), 1);
                assert!(matches!(holders[0], Holder::Program { holding: true, .. }));
            }
            Enqueued::Queued { .. } => panic!("should be busy"),
        }
        assert_eq!(q.entries().len(), before);
    }

    #[test]
    fn a_dead_ticket_with_garbage_does_not_block() {
        let (_tmp, q) = queue();
        fs::write(q.dir().join("00000000000000000007.w"), b"\x00garbage").unwrap();
        let (_t, mut blockers) = enqueue(&q, Mode::Write);
        assert_eq!(blockers.len(), 1);
        let cancel = AtomicBool::new(false);
        let out = wait_turn(q.dir(), &mut blockers, false, &cancel, |_| {}).unwrap();
        assert_eq!(out, WaitOutcome::Done);
        assert!(!q.dir().join("00000000000000000007.w").exists());
    }

    #[test]
    fn readers_of_the_queue_never_disturb_an_enqueue() {
        // status and the holder names in messages list the queue without
        // the gate and probe each ticket with a shared lock; an enqueue
        // racing with them must still always get its own lock.
        let (_tmp, q) = queue();
        let stop = std::sync::Arc::new(AtomicBool::new(false));
        let prober = {
            let (q, stop) = (q.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut seen = 0usize;
                while !stop.load(Ordering::Relaxed) {
                    for e in q.entries() {
                        // Every listed ticket is locked and has its record.
                        if e.live {
                            assert!(e.record.is_ok(), "{:?}", e.record);
                        }
                        seen += 1;
                    }
                }
                seen
            })
        };
        for _ in 0..2000 {
            let (t, _) = enqueue(&q, Mode::Write);
            assert!(matches!(t.release(), Release::Free(_)));
        }
        stop.store(true, Ordering::Relaxed);
        prober.join().unwrap();
    }

    #[test]
    fn numbers_never_restart_when_the_queue_empties() {
        let (_tmp, q) = queue();
        let mut last = 0;
        for _ in 0..5 {
            let (t, _) = enqueue(&q, Mode::Write);
            assert!(t.id().number > last, "{} after {last}", t.id().number);
            last = t.id().number;
            assert!(matches!(t.release(), Release::Free(_)));
            assert!(q.entries().is_empty());
        }
    }

    #[test]
    fn numbers_keep_growing_past_a_garbled_counter() {
        let (_tmp, q) = queue();
        let (a, _) = enqueue(&q, Mode::Read);
        fs::write(q.dir().join(GATE), "not a number").unwrap();
        let (b, _) = enqueue(&q, Mode::Read);
        assert!(b.id().number > a.id().number);
    }
}
