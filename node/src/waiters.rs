//! The threads that waits run on: each wait has a thread of its own, never
//! one of libuv's pool (four threads by default, which every `fs`, `dns`
//! and `crypto` call shares: four long waits there would stall them all).
//! A thread that finished its wait stays a while for the next one, since
//! starting a thread is a good part of an uncontended lock's cost; one
//! thread never runs two waits at once.

use std::sync::Mutex;
use std::sync::mpsc::{self, RecvTimeoutError, SyncSender};
use std::thread;
use std::time::Duration;

type Job = Box<dyn FnOnce() + Send>;

/// How long a thread without a wait stays for the next one.
const LINGER: Duration = Duration::from_secs(10);
/// Enough for the lock's own calls; the default (2 MiB for Rust threads)
/// is address space that a thousand waiting promises would map.
const STACK: usize = 512 * 1024;

/// Threads waiting for a job: each one's number and the sender of its
/// channel.
static IDLE: Mutex<Vec<(u64, SyncSender<Job>)>> = Mutex::new(Vec::new());

fn idle() -> std::sync::MutexGuard<'static, Vec<(u64, SyncSender<Job>)>> {
    IDLE.lock().unwrap_or_else(|p| p.into_inner())
}

/// Runs `job` on a thread of its own: an idle one, else a new one.
pub fn run(job: Job) -> std::io::Result<()> {
    let mut job = job;
    loop {
        let Some((_, tx)) = idle().pop() else { break };
        match tx.send(job) {
            Ok(()) => return Ok(()),
            // That thread has just gone (it cannot have: a thread leaves
            // only after taking itself off the list; kept for safety).
            Err(mpsc::SendError(back)) => job = back,
        }
    }
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    let id = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    thread::Builder::new()
        .name("dblaunch-wait".to_owned())
        .stack_size(STACK)
        .spawn(move || serve(id, job))
        .map(drop)
}

fn serve(id: u64, first: Job) {
    block_signals();
    let (tx, rx) = mpsc::sync_channel::<Job>(1);
    let mut job = first;
    loop {
        job();
        idle().push((id, tx.clone()));
        job = match rx.recv_timeout(LINGER) {
            Ok(next) => next,
            Err(RecvTimeoutError::Timeout) => {
                let mut list = idle();
                if let Some(i) = list.iter().position(|(n, _)| *n == id) {
                    list.swap_remove(i);
                    return;
                }
                drop(list);
                // Taken off the list by `run` just now: its job is coming.
                match rx.recv() {
                    Ok(next) => next,
                    Err(_) => return,
                }
            }
            Err(RecvTimeoutError::Disconnected) => return,
        };
    }
}

/// Signals sent to the process go to Node's own threads, which handle them,
/// not to a thread asleep in a wait.
fn block_signals() {
    // SAFETY: a sigset on the stack, filled by sigfillset, and the calling
    // thread's own mask; no memory is shared.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&mut set);
        for sync in [
            libc::SIGSEGV,
            libc::SIGBUS,
            libc::SIGFPE,
            libc::SIGILL,
            libc::SIGABRT,
        ] {
            libc::sigdelset(&mut set, sync);
        }
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
    }
}
