//! Spare tickets: the file of a released ticket of the process's own lock,
//! kept for its next lock of the same database.
//!
//! Why: a ticket is a new file, and on ext4 making a file soon after others
//! were unlinked is slow: the inode allocator skips every recently freed
//! inode of the group (`recently_deleted` in `perf record`), and a program
//! that locks and releases in a loop frees one per round. Measured on the
//! development machine (2 cores, ext4): 106 µs per uncontended lock and
//! release from Python, 70% of it in that search; 62 µs with a spare, with
//! no file made or freed on that path.
//!
//! How it stays correct:
//! - The spare has a name of its own in the queue directory,
//!   `.spare-<pid>-<n>`, which nobody lists as a ticket. Its owner holds a
//!   shared lock on it while it waits for use, which tells others that it
//!   is alive (see [`remove_if_dead`]).
//! - It is used again only when its queue has no ticket at all, with the
//!   gate held: then no waiter can be blocked on its lock, so turning it
//!   back into an exclusive lock (without waiting: a reader that still has
//!   it open makes that fail, and a new file is made instead) and linking
//!   it into the queue under a new number is, to others, a new ticket.
//! - Releasing unlinks the ticket's name while still holding it
//!   exclusively, then turns that lock into a shared one (one atomic
//!   flock(2) conversion). To everyone else the ticket is gone: its name
//!   leads nowhere, and waiters blocked on its lock get theirs.
//! - A forked child never uses its parent's spares (they are the parent's
//!   own lock's descriptors, closed in the child at the fork; see
//!   `fork.rs`); a spare whose process is gone has no lock left and is
//!   cleared away by whoever next takes a ticket in its queue.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};

use super::lock_dir::{LockDir, SPARE_PREFIX};
use super::record_file::{open_ticket, same_file};
use crate::fork::TicketFile;
use crate::kernel::{self, Kind};

/// How many queues a process keeps a spare for (the most recently used):
/// a program rarely locks more databases than this in turn.
const KEPT: usize = 8;

struct Spare {
    /// The queue directory it is in.
    dir: PathBuf,
    /// Its name there.
    name: String,
    /// Its descriptor, locked shared; `None` while it is a ticket.
    file: Option<TicketFile>,
}

/// The process's spares, most recently kept last, and the process they
/// belong to (a forked child finds its parent's here and forgets them).
static SPARES: Mutex<(u32, Vec<Spare>)> = Mutex::new((0, Vec::new()));

static NEXT: AtomicU64 = AtomicU64::new(0);

fn spares() -> MutexGuard<'static, (u32, Vec<Spare>)> {
    crate::fork::protect(&SPARES);
    let mut spares = SPARES.lock().unwrap_or_else(|p| p.into_inner());
    let me = crate::fork::pid();
    if spares.0 != me {
        // The parent's (TicketFile never closes a descriptor it did not
        // open: the fork handler closed the child's copies).
        spares.1.clear();
        spares.0 = me;
    }
    spares
}

/// Under the gate of the queue in `dir`, which has no ticket: this
/// process's spare for it, locked exclusively again, with its name.
pub(super) fn reuse(dir: &LockDir) -> Option<(String, TicketFile)> {
    let mut spares = spares();
    let at = spares
        .1
        .iter()
        .position(|s| s.dir == dir.path() && s.file.is_some())?;
    let file = spares.1[at].file.take()?;
    // Someone who opened it as a ticket may hold a shared lock a moment
    // longer: then it is no use, and a new file is made.
    if matches!(kernel::lock(file.get(), Kind::Exclusive, false), Ok(true)) {
        return Some((spares.1[at].name.clone(), file));
    }
    let spare = spares.1.remove(at);
    drop(spares);
    discard(&spare.dir, &spare.name, file);
    None
}

/// The spare `name` in `dir` was not used after all: it is no ticket, and
/// goes.
pub(super) fn unused(dir: &LockDir, name: &str, file: TicketFile) {
    let mut spares = spares();
    spares
        .1
        .retain(|s| !(s.dir == dir.path() && s.name == name));
    drop(spares);
    discard(dir.path(), name, file);
}

/// Lets go of the released own ticket `file`, named `ticket` in `dir` (and
/// `spare`, if it is the process's spare already), keeping it as the
/// process's spare for that queue. Gives the file back if it cannot (a
/// spare is kept for that queue already, or the directory changed): the
/// caller releases it as usual.
pub(super) fn keep(
    dir: &LockDir,
    ticket: &Path,
    spare: Option<&str>,
    file: TicketFile,
) -> Result<(), TicketFile> {
    let mut spares = spares();
    let entry = match spare {
        Some(name) => {
            let Some(at) = spares
                .1
                .iter()
                .position(|s| s.dir == dir.path() && s.name == name && s.file.is_none())
            else {
                return Err(file);
            };
            let spare = spares.1.remove(at);
            if fs::remove_file(ticket).is_err() {
                return Err(file);
            }
            // The most recently used last: the first to go is the oldest.
            spares.1.push(spare);
            spares.1.len() - 1
        }
        None => {
            if spares.1.iter().any(|s| s.dir == dir.path()) {
                return Err(file);
            }
            let name = format!(
                "{SPARE_PREFIX}{}-{}",
                crate::fork::pid(),
                NEXT.fetch_add(1, Ordering::Relaxed)
            );
            if fs::rename(ticket, dir.join(&name)).is_err() {
                return Err(file);
            }
            if spares.1.len() == KEPT {
                if let Some(at) = spares.1.iter().position(|s| s.file.is_some()) {
                    let oldest = spares.1.remove(at);
                    if let Some(f) = oldest.file {
                        discard(&oldest.dir, &oldest.name, f);
                    }
                }
            }
            spares.1.push(Spare {
                dir: dir.path().to_path_buf(),
                name,
                file: None,
            });
            spares.1.len() - 1
        }
    };
    // Out of the queue; now let the waiters blocked on its lock go. The
    // conversion never waits: nobody else has any lock on it.
    if matches!(kernel::lock(file.get(), Kind::Shared, false), Ok(true)) {
        spares.1[entry].file = Some(file);
    } else {
        let spare = spares.1.remove(entry);
        drop(spares);
        discard(&spare.dir, &spare.name, file);
    }
    Ok(())
}

/// Whether `name` is one of this process's spares.
pub(super) fn is_ours(name: &str) -> bool {
    spares().1.iter().any(|s| s.name == name)
}

/// Removes the spare at `path` if it belongs to no live process: nobody
/// holds a lock on it. Its owner holds a shared lock (or, while it is a
/// ticket, an exclusive one), so an exclusive lock taken without waiting
/// proves it dead; it is held while the name is checked and unlinked.
pub(super) fn remove_if_dead(path: &Path) {
    if let Ok(file) = open_ticket(path) {
        if matches!(kernel::lock(&file, Kind::Exclusive, false), Ok(true)) && same_file(&file, path)
        {
            let _ = fs::remove_file(path);
        }
    }
}

/// Removes a spare this process no longer wants.
fn discard(dir: &Path, name: &str, file: TicketFile) {
    let path = dir.join(name);
    if same_file(file.get(), &path) {
        let _ = fs::remove_file(&path);
    }
}
