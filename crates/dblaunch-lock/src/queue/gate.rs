//! The gate of a queue: a file whose exclusive flock serialises edits of
//! the queue (held for microseconds, never while waiting or running). Its
//! first line is the last ticket number handed out; a second line,
//! `orphans PID:START:FD …`, exists only after the lock directory was
//! removed under a live holder.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use super::lock_dir::{LockDir, TMP_PREFIX};
use super::name::TicketId;
use super::record_file::open_ticket;
use crate::error::LockError;
use crate::holder::Holder;
use crate::kernel::{self, Kind};
use crate::mode::Mode;
use crate::procfs;
use crate::record::Record;

pub(super) const GATE: &str = "gate";

/// The gate, locked: the queue may be edited while this lives.
pub(super) struct Gate {
    file: File,
}

impl Gate {
    /// Takes the gate of the queue in `dir`, making it if it is missing
    /// (a new lock directory, or one removed and made again). `nested`:
    /// the queue is one among the processes under a holder (no removed
    /// directory's holders to look for).
    pub(super) fn take(dir: &LockDir, nested: bool) -> Result<Gate, LockError> {
        let path = dir.join(GATE);
        match Gate::open(dir, &path, false) {
            Err(LockError::Removed { .. }) => match Gate::create(dir, &path, nested)? {
                Some(gate) => Ok(gate),
                // Someone else made it first: use theirs.
                None => Gate::take(dir, nested),
            },
            other => other,
        }
    }

    /// Opens the gate at `path` (creating it in place with `create`) and
    /// waits for its lock.
    fn open(dir: &LockDir, path: &Path, create: bool) -> Result<Gate, LockError> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(create)
            .truncate(false)
            .mode(dir.create_mode())
            .custom_flags(libc::O_NOFOLLOW)
            .open(path)
            .map_err(dir.io_err("lock", path.to_path_buf()))?;
        if create {
            dir.share(&file);
        }
        kernel::lock(&file, Kind::Exclusive, true)
            .map_err(|e| dir.io_err("lock", path.to_path_buf())(e.into()))?;
        Ok(Gate { file })
    }

    /// Makes the gate of a new (or removed and made again) lock directory.
    /// It appears already locked (made under a temporary name, locked, then
    /// linked into place), so its maker is the first through it and looks,
    /// before anyone can queue, for holders of a removed lock directory of
    /// this database that still run: their tickets are gone with it, and
    /// without a look a newcomer would run beside them. It writes them into
    /// the gate, where every enqueue sees them. `None`: someone else's gate
    /// won.
    fn create(dir: &LockDir, path: &Path, nested: bool) -> Result<Option<Gate>, LockError> {
        static MADE: AtomicU64 = AtomicU64::new(0);
        let tmp = dir.join(&format!(
            "{TMP_PREFIX}gate.{}.{}",
            std::process::id(),
            MADE.fetch_add(1, Ordering::Relaxed)
        ));
        let file = dir.create_new(&tmp)?;
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
                return Gate::open(dir, path, true).map(Some);
            }
            Err(e) => return Err(dir.io_err("create", path.to_path_buf())(e)),
        }
        let gate = Gate { file };
        if !nested {
            let orphans =
                procfs::deleted_locked_files(dir.path(), |name| TicketId::parse(name).is_some());
            if !orphans.is_empty() {
                gate.set_orphans(&orphans);
            }
        }
        Ok(Some(gate))
    }

    /// Holders of a removed lock directory of this database that still run
    /// (see [`Gate::create`]), as recorded in the gate. Read without the
    /// gate's lock (for `status`).
    pub(super) fn recorded_orphans(dir: &LockDir) -> Vec<Holder> {
        let Ok(file) = open_ticket(&dir.join(GATE)) else {
            return Vec::new();
        };
        Gate { file }
            .contents()
            .1
            .into_iter()
            .filter(|o| o.is_live(dir.path()))
            .map(|o| o.holder())
            .collect()
    }

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
                // A short read of a regular file is its end: no second
                // read to find that out.
                Ok(n) if len + n < buf.len() => {
                    len += n;
                    break;
                }
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
    pub(super) fn counter_unless_orphaned(&self, dir: &LockDir) -> Result<Option<u64>, LockError> {
        let (counter, orphans) = self.contents();
        if orphans.is_empty() {
            return Ok(counter);
        }
        let live: Vec<Holder> = orphans
            .iter()
            .filter(|o| o.is_live(dir.path()))
            .map(|o| o.holder())
            .collect();
        if live.is_empty() {
            let _ = self.file.set_len(0);
            self.set_counter(counter.unwrap_or(0));
            return Ok(counter);
        }
        Err(LockError::Orphaned {
            database: dir.database().to_path_buf(),
            holders: live,
        })
    }

    pub(super) fn set_counter(&self, n: u64) {
        // Fixed width, so it always overwrites the last one exactly: no
        // ftruncate (an extra journalled metadata change) on every enqueue.
        let text = format!("{n:020}\n");
        let _ = self.file.write_all_at(text.as_bytes(), 0);
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
