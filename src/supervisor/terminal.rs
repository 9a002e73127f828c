//! The terminal: handing it to a single interactive program and taking it
//! back, and the one line that says what a queued program waits for.

use std::io::{IsTerminal, Write};
use std::os::fd::{AsFd, AsRawFd, RawFd};
use std::path::Path;
use std::time::{Duration, Instant};

use nix::sys::signal::{SigHandler, Signal};

use dblaunch_lock::{Holder, Mode};

/// The terminal to hand to the program: stdin's, if dblaunch runs in the
/// foreground of it (as a shell job would).
pub(super) fn foreground_terminal() -> Option<RawFd> {
    let stdin = std::io::stdin();
    if !stdin.is_terminal() {
        return None;
    }
    let fg = nix::unistd::tcgetpgrp(stdin.as_fd()).ok()?;
    (fg == nix::unistd::getpgrp()).then(|| stdin.as_raw_fd())
}

/// A job that owns the terminal may stop us with SIGTTOU when we take it
/// back; ignore both terminal stop signals, as shells do.
pub(super) fn ignore_terminal_stops() {
    // SAFETY: SIG_IGN installs no handler code; nothing else in dblaunch
    // relies on these signals.
    unsafe {
        let _ = nix::sys::signal::signal(Signal::SIGTTOU, SigHandler::SigIgn);
        let _ = nix::sys::signal::signal(Signal::SIGTTIN, SigHandler::SigIgn);
    }
}

/// Makes dblaunch's process group the terminal's foreground again.
pub(super) fn take_terminal_back(tty: RawFd) {
    // SAFETY: tcsetpgrp only reads its arguments.
    unsafe {
        libc::tcsetpgrp(tty, libc::getpgrp());
    }
}

/// The one line that says what a queued program waits for and behind whom:
/// redrawn in place with the elapsed time on a terminal (single program
/// only: with several, program output would garble it), logged once per new
/// blocker otherwise.
pub(super) struct WaitLine {
    started: Instant,
    tty: bool,
    text: Option<String>,
}

impl WaitLine {
    pub(super) fn new(started: Instant, single: bool) -> WaitLine {
        WaitLine {
            started,
            tty: single
                && std::io::stderr().is_terminal()
                && tracing::enabled!(tracing::Level::INFO),
            text: None,
        }
    }

    /// Redrawn every second on a terminal; never otherwise (a queued
    /// dblaunch without a terminal makes no wake-ups at all).
    pub(super) fn active(&self) -> bool {
        self.tty && self.text.is_some()
    }

    pub(super) fn waiting(
        &mut self,
        prefix: &str,
        database: &Path,
        mode: Mode,
        holders: &[Holder],
        more: usize,
    ) {
        let more = more + holders.len().saturating_sub(1);
        let behind = match holders.first() {
            None => "a process that could not be identified".to_owned(),
            Some(one) if more == 0 => one.to_string(),
            Some(first) => format!("{first} (and {more} more)"),
        };
        let text = format!(
            "{prefix}waiting for the {mode} lock on {}: {behind}",
            database.display()
        );
        if self.text.as_deref() == Some(&text) {
            return;
        }
        if !self.tty {
            tracing::info!("{text}");
        }
        self.text = Some(text);
        self.redraw();
    }

    pub(super) fn redraw(&self) {
        if let (true, Some(text)) = (self.tty, &self.text) {
            let elapsed = Duration::from_secs(self.started.elapsed().as_secs());
            let mut err = std::io::stderr().lock();
            let _ = write!(
                err,
                "\r\x1b[Kdblaunch: {text} [{}]",
                humantime::format_duration(elapsed)
            );
            let _ = err.flush();
        }
    }

    pub(super) fn clear(&mut self) {
        if self.tty && self.text.take().is_some() {
            let _ = write!(std::io::stderr(), "\r\x1b[K");
        }
    }
}
