//! Signals as events. The handlers (signal-hook's) only write a byte to a
//! self-pipe; the supervisor's loop polls that pipe together with its other
//! wake-ups and handles each signal in order on the main thread.
//!
//! Why no signal thread (as just and signal-hook's iterator have): every
//! event would then cost a thread hop, and a launch of `exec` spends most of
//! its overhead over flock(1) in such hops and in starting the thread. The
//! handler side is the same design; only the reader moved. (A start-up
//! tweak: docs/design.md, "Start-up cost".)

use std::io;
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::net::UnixStream;

use signal_hook::consts::signal::{
    SIGCHLD, SIGHUP, SIGINT, SIGQUIT, SIGTERM, SIGUSR1, SIGUSR2, SIGWINCH,
};
use signal_hook::iterator::backend::SignalDelivery;
use signal_hook::iterator::exfiltrator::SignalOnly;

/// Signals passed on to the running programs' process groups.
pub const FORWARDED: [i32; 7] = [SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2, SIGWINCH];

/// Signals after which dblaunch starts no further program and stops the
/// running ones.
pub fn is_stop(signal: i32) -> bool {
    signal == SIGINT || signal == SIGTERM
}

/// Signals that end dblaunch while it only queues (nothing to forward them to).
pub fn ends_queueing(signal: i32) -> bool {
    matches!(signal, SIGINT | SIGTERM | SIGHUP | SIGQUIT)
}

/// The forwarded signals and SIGCHLD, caught from creation on.
pub struct Signals {
    delivery: SignalDelivery<UnixStream, SignalOnly>,
}

impl Signals {
    pub fn catch() -> io::Result<Signals> {
        let (read, write) = UnixStream::pair()?;
        read.set_nonblocking(true)?;
        write.set_nonblocking(true)?;
        let mut wanted = FORWARDED.to_vec();
        wanted.push(SIGCHLD);
        let delivery = SignalDelivery::with_pipe(read, write, SignalOnly, wanted)?;
        Ok(Signals { delivery })
    }

    /// Readable when a signal has arrived.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.delivery.get_read().as_fd()
    }

    /// The signals that arrived since the last call (each at most once).
    pub fn pending(&mut self) -> Vec<i32> {
        self.delivery.pending().collect()
    }
}

impl Drop for Signals {
    fn drop(&mut self) {
        self.delivery.handle().close();
    }
}

/// The name of a signal for messages: `SIGTERM`, or the number.
pub fn name(signal: i32) -> String {
    nix::sys::signal::Signal::try_from(signal)
        .map(|s| s.as_str().to_owned())
        .unwrap_or_else(|_| format!("signal {signal}"))
}
