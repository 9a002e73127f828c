//! A forked child never keeps its parent's lock.
//!
//! A flock belongs to the open file description, which a forked child
//! shares: if the child kept its copy of a ticket's descriptor, the lock
//! would outlive the parent's release (or its death) for as long as the
//! child lives, and a ticket the parent gave up would still block the
//! waiters behind it. So every ticket a program takes for itself (not the
//! ones `dblaunch exec` and `run` take for the programs they start, which
//! must be inherited) is tracked here, and a `pthread_atfork` child handler
//! closes them all in the child, whatever forks: Python's `os.fork`,
//! `multiprocessing`, C code. Closing the child's copy never releases the
//! parent's lock. The descriptors are also close-on-exec, so a program the
//! process executes does not inherit them either.
//!
//! The table is a fixed array of atomics, which the child handler reads
//! without a lock. The library's few process-wide mutexes (who holds what,
//! the journal appender, the manifest and backend caches) are taken before
//! the fork and let go after it on both sides, as glibc does for malloc, so
//! that a child forked while another thread held one can still lock.

use std::any::Any;
use std::cell::RefCell;
use std::fs::File;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicI32, AtomicU32, Ordering};
use std::sync::{Mutex, Once};

/// How many tickets a process can hold or wait with at once and still be
/// fork-safe; more are still locked, with a warning.
const SLOTS: usize = 1024;
const FREE: i32 = -1;

/// This process's pid, cached: glibc no longer caches getpid(2), and a
/// lock and release asked for it a dozen times. The fork child handler
/// clears it, so a forked child reads its own.
static PID: AtomicU32 = AtomicU32::new(0);

/// This process's pid (the cached one, right in a forked child too).
pub(crate) fn pid() -> u32 {
    let cached = PID.load(Ordering::Relaxed);
    if cached != 0 {
        return cached;
    }
    REGISTER.call_once(register);
    let me = std::process::id();
    PID.store(me, Ordering::Relaxed);
    me
}

static TABLE: [AtomicI32; SLOTS] = [const { AtomicI32::new(FREE) }; SLOTS];
static REGISTER: Once = Once::new();

/// A ticket's descriptor. When tracked, it is closed in a forked child at
/// the fork, and never closed again there (its number may have been reused
/// by then).
#[derive(Debug)]
pub(crate) struct TicketFile {
    file: Option<File>,
    /// The process that opened it, when tracked.
    owner: Option<u32>,
}

impl TicketFile {
    /// A descriptor that is inherited as it is (the launcher's).
    pub(crate) fn inherited(file: File) -> TicketFile {
        TicketFile {
            file: Some(file),
            owner: None,
        }
    }

    /// A descriptor of the process's own lock: closed in forked children.
    pub(crate) fn own(file: File) -> TicketFile {
        REGISTER.call_once(register);
        let fd = file.as_raw_fd();
        let tracked = TABLE.iter().any(|slot| {
            slot.compare_exchange(FREE, fd, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
        });
        if !tracked {
            tracing::warn!(
                "more than {SLOTS} database locks are held or awaited at once by this process: a process it forks now may keep one alive"
            );
        }
        TicketFile {
            file: Some(file),
            owner: Some(pid()),
        }
    }

    /// Whether it is the process's own lock (not one for a program it
    /// starts, which inherits it).
    pub(crate) fn is_own(&self) -> bool {
        self.owner.is_some()
    }

    pub(crate) fn get(&self) -> &File {
        self.file.as_ref().expect("present until dropped")
    }
}

impl Drop for TicketFile {
    fn drop(&mut self) {
        let Some(file) = self.file.take() else {
            return;
        };
        let Some(owner) = self.owner else {
            return; // closed as usual
        };
        if owner != pid() {
            // A forked child: the handler closed it at the fork, and the
            // number may name another file by now.
            std::mem::forget(file);
            return;
        }
        let fd = file.as_raw_fd();
        for slot in &TABLE {
            if slot
                .compare_exchange(fd, FREE, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
            {
                break;
            }
        }
        drop(file);
    }
}

/// A process-wide mutex that the fork handlers take and give back.
pub(crate) trait ForkLocked: Sync {
    /// Locks it; the lock lasts as long as the returned box.
    fn hold(&'static self) -> Box<dyn Any>;
}

impl<T: Send + 'static> ForkLocked for Mutex<T> {
    fn hold(&'static self) -> Box<dyn Any> {
        Box::new(self.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

static PROTECTED: Mutex<Vec<&'static dyn ForkLocked>> = Mutex::new(Vec::new());

thread_local! {
    /// The locks taken before a fork, in the thread that forks (the fork
    /// handlers all run in it, and the child's one thread is it).
    static TAKEN: RefCell<Vec<Box<dyn Any>>> = const { RefCell::new(Vec::new()) };
}

/// Makes `lock` safe to fork under: taken before a fork, let go after it.
/// Such a mutex must never be held while another of them is taken.
pub(crate) fn protect(lock: &'static dyn ForkLocked) {
    REGISTER.call_once(register);
    let mut protected = PROTECTED.lock().unwrap_or_else(|p| p.into_inner());
    let addr = |l: &&'static dyn ForkLocked| (*l as *const dyn ForkLocked).cast::<()>();
    if !protected.iter().any(|p| addr(p) == addr(&lock)) {
        protected.push(lock);
    }
}

extern "C" fn before_fork() {
    let protected = PROTECTED.lock().unwrap_or_else(|p| p.into_inner());
    let taken: Vec<Box<dyn Any>> = protected.iter().map(|l| l.hold()).collect();
    TAKEN.with(|t| {
        let mut t = t.borrow_mut();
        t.extend(taken);
        t.push(Box::new(protected));
    });
}

extern "C" fn after_fork_in_parent() {
    TAKEN.with(|t| t.borrow_mut().clear());
}

fn register() {
    // SAFETY: registers handlers that only lock and unlock the library's
    // own mutexes (the child's one thread is the one that took them) and
    // close descriptors.
    let rc = unsafe {
        libc::pthread_atfork(
            Some(before_fork),
            Some(after_fork_in_parent),
            Some(in_child),
        )
    };
    if rc != 0 {
        tracing::warn!(
            "cannot register a fork handler (error {rc}): a process forked while a database lock is held may keep it alive"
        );
    }
}

extern "C" fn in_child() {
    PID.store(0, Ordering::Relaxed);
    TAKEN.with(|t| t.borrow_mut().clear());
    for slot in &TABLE {
        let fd = slot.swap(FREE, Ordering::AcqRel);
        if fd != FREE {
            // SAFETY: the descriptor was the parent's ticket, copied into
            // this child by the fork; closing the copy drops the child's
            // reference to the description and never the parent's lock.
            unsafe {
                libc::close(fd);
            }
        }
    }
}
