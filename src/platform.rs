//! Everything the command line needs from the operating system beyond
//! POSIX, in one place: this is Linux. `docs/design.md` lists what a macOS
//! port would put here instead (the lock crate keeps its own: flock(2),
//! which is portable, and its /proc reading).

pub use dblaunch_lock::procfs;

use std::io;
use std::os::fd::{AsFd, BorrowedFd};
use std::path::Path;

use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify};

/// In a forked child, before exec: die (SIGKILL) when dblaunch dies, so no
/// program runs unsupervised. Fails if dblaunch, whose pid is `parent`, is
/// already gone (it could have died between the fork and this call, and no
/// signal would come): the caller must then end the child.
///
/// # Safety
///
/// Async-signal-safe: only prctl(2) and getppid(2), no allocation.
pub unsafe fn die_with_parent(parent: i32) -> io::Result<()> {
    // SAFETY: prctl and getppid only read their integer arguments.
    unsafe {
        if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) != 0 {
            return Err(io::Error::last_os_error());
        }
        if libc::getppid() != parent {
            return Err(io::Error::from_raw_os_error(libc::ESRCH));
        }
    }
    Ok(())
}

/// Orphaned grandchildren are re-parented to this process, so it can reap
/// them and see when a program's process group is empty.
pub fn become_subreaper() {
    let _ = nix::sys::prctl::set_child_subreaper(true);
}

/// Tells when a ticket appears in a queue directory (someone queued), with no
/// polling: for programs that yield.
pub struct QueueWatcher {
    inotify: Inotify,
}

impl QueueWatcher {
    pub fn new() -> io::Result<QueueWatcher> {
        Ok(QueueWatcher {
            inotify: Inotify::init(InitFlags::IN_NONBLOCK | InitFlags::IN_CLOEXEC)?,
        })
    }

    pub fn watch(&self, dir: &Path) -> io::Result<()> {
        // Tickets are renamed into place, fully written and locked.
        self.inotify.add_watch(dir, AddWatchFlags::IN_MOVED_TO)?;
        Ok(())
    }

    /// Whether a ticket appeared since the last call; never blocks.
    pub fn changed(&self) -> bool {
        self.inotify.read_events().is_ok_and(|e| !e.is_empty())
    }
}

impl AsFd for QueueWatcher {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.inotify.as_fd()
    }
}
