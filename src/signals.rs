//! Signals as events: the handlers only write to signal-hook's self-pipe; a
//! named thread turns each signal into a value on the supervisor's channel,
//! so the one loop there orders signals, child exits and lock hand-offs.

use std::io;
use std::sync::mpsc::Sender;

use signal_hook::consts::signal::{
    SIGCHLD, SIGHUP, SIGINT, SIGQUIT, SIGTERM, SIGUSR1, SIGUSR2, SIGWINCH,
};
use signal_hook::iterator::{Handle, Signals};

/// Signals passed on to the running programs (SPEC.md §5).
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

/// Catches the forwarded signals and SIGCHLD from now on and sends each to
/// `tx` wrapped by `wrap`. Dropping the guard stops the thread.
pub fn listen<E: Send + 'static>(tx: Sender<E>, wrap: fn(i32) -> E) -> io::Result<Listener> {
    let mut wanted = FORWARDED.to_vec();
    wanted.push(SIGCHLD);
    let mut signals = Signals::new(&wanted)?;
    let handle = signals.handle();
    std::thread::Builder::new()
        .name("dblaunch-signals".into())
        .spawn(move || {
            for signal in signals.forever() {
                if tx.send(wrap(signal)).is_err() {
                    break;
                }
            }
        })?;
    Ok(Listener { handle })
}

/// Keeps the signal thread alive; closing it restores nothing but stops the
/// forwarding.
pub struct Listener {
    handle: Handle,
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.handle.close();
    }
}

/// The name of a signal for messages: `SIGTERM`, or the number.
pub fn name(signal: i32) -> String {
    nix::sys::signal::Signal::try_from(signal)
        .map(|s| s.as_str().to_owned())
        .unwrap_or_else(|_| format!("signal {signal}"))
}
