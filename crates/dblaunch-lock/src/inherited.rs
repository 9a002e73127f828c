//! Locks this process inherited from an ancestor dblaunch: the proof that a
//! nested `dblaunch exec` or `run` already holds a database.
//!
//! A program that dblaunch starts inherits the descriptor of its ticket
//! (close-on-exec cleared for it alone), and so does everything it starts.
//! A descriptor counts as proof only if the open file description it refers
//! to really carries the ticket's flock (the `lock:` lines of
//! `/proc/self/fdinfo/FD` list the locks of that description). An
//! environment variable could outlive the lock or be copied to a stranger;
//! the lock cannot: it exists exactly while the ancestor's holding lives.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use crate::queue::{TicketId, nested_dir_of};
use crate::record::Record;

/// A ticket whose lock this process holds through an inherited descriptor.
#[derive(Clone, Debug)]
pub struct Inherited {
    /// The ticket's path: `<lock dir>/<ticket>`, or deeper for a ticket of a
    /// nested queue (`<lock dir>/<ticket>.nested/<ticket>`).
    pub path: PathBuf,
    pub id: TicketId,
    pub fd: i32,
}

impl Inherited {
    /// How deep in nested queues the ticket is: 0 for the database's own
    /// queue.
    fn depth(&self) -> usize {
        self.path.components().count()
    }

    /// The directory of the nested queue that programs under this ticket
    /// share: `<ticket>.nested` beside the ticket.
    pub fn nested_dir(&self) -> PathBuf {
        nested_dir_of(&self.path)
    }

    /// The record the ancestor wrote, read through the inherited descriptor
    /// (the ticket may have been unlinked: the descriptor still reads it).
    pub fn record(&self) -> Option<Record> {
        let path = format!("/proc/self/fd/{}", self.fd);
        let bytes = std::fs::read(path).ok()?;
        serde_json::from_slice(&bytes).ok()
    }

    /// The ancestor's program and its pid: the process of our own ancestry
    /// that the holding dblaunch started (its record may not say so yet in
    /// the instant after the spawn).
    pub fn holder(&self) -> (String, i32) {
        let Some(r) = self.record() else {
            return ("an ancestor dblaunch".to_owned(), 0);
        };
        let mut pid = std::process::id() as i32;
        for _ in 0..64 {
            match crate::procfs::ppid(pid) {
                Some(parent) if parent == r.supervisor_pid => return (r.program, pid),
                Some(parent) if parent > 1 => pid = parent,
                _ => break,
            }
        }
        (r.program, r.pid)
    }
}

/// Every inherited, locked ticket descriptor of this process; read once.
pub fn all() -> &'static [Inherited] {
    ALL.get_or_init(scan)
}

static ALL: OnceLock<Vec<Inherited>> = OnceLock::new();

/// Whether this process is known to hold no inherited ticket: its
/// descriptors were looked through already (a program locking for itself
/// does it once), and none was one.
pub fn none() -> bool {
    ALL.get().is_some_and(|all| all.is_empty())
}

/// The deepest inherited ticket of the database whose lock directory is
/// `lock_dir`, if this process holds one.
pub fn for_lock_dir(lock_dir: &Path) -> Option<&'static Inherited> {
    all()
        .iter()
        .filter(|t| t.path.starts_with(lock_dir) && t.path != lock_dir)
        .max_by_key(|t| t.depth())
}

fn scan() -> Vec<Inherited> {
    let mut found = Vec::new();
    for fd in crate::procfs::own_descriptors() {
        // dblaunch opens its own files close-on-exec: only a descriptor
        // without the flag can have come from an ancestor.
        // SAFETY: F_GETFD only reads the flags of a descriptor number; a
        // number that is not open (closed since it was listed) just fails.
        let flags = unsafe { libc::fcntl(fd, libc::F_GETFD) };
        if flags < 0 || flags & libc::FD_CLOEXEC != 0 {
            continue;
        }
        // A ticket is a regular file: ask the descriptor itself before
        // resolving its name through /proc (standard streams, pipes and
        // terminals are most of what a process inherits).
        if !is_regular(fd) {
            continue;
        }
        let Ok(target) = std::fs::read_link(format!("/proc/self/fd/{fd}")) else {
            continue;
        };
        let Some(id) = target
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(TicketId::parse)
        else {
            continue;
        };
        let in_lock_dir = target.ancestors().skip(1).any(|d| {
            d.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with('.') && n.ends_with(".dblaunch"))
        });
        if !in_lock_dir || !crate::procfs::holds_flock(std::process::id() as i32, fd) {
            continue;
        }
        found.push(Inherited {
            path: target,
            id,
            fd,
        });
    }
    found
}

fn is_regular(fd: i32) -> bool {
    // SAFETY: the descriptor is open (F_GETFD answered for it) and is only
    // borrowed for this one fstat.
    let fd = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
    nix::sys::stat::fstat(fd).is_ok_and(|st| st.st_mode & libc::S_IFMT == libc::S_IFREG)
}
