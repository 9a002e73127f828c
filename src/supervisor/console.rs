//! What the run shows, and where its programs' output goes: one program
//! keeps dblaunch's stdio (and the terminal, handed over while it runs);
//! several get prefixed pipes; a detached run writes each program's output
//! to a file. Also the waiting line, and the lifecycle lines (`started`,
//! `exited`) at the level the run asks for.

use std::os::fd::RawFd;
use std::path::Path;
use std::process::{ChildStderr, ChildStdout};
use std::sync::Arc;
use std::time::Instant;

use dblaunch_lock::{Holder, Mode};

use crate::error::Error;
use crate::output::{LineHook, Output, Pump, Stream};
use crate::process::Stdio;

use super::spec::Spec;
use super::terminal::{WaitLine, foreground_terminal, ignore_terminal_stops, take_terminal_back};

pub(super) struct Console {
    output: Option<Arc<Output>>,
    /// The terminal handed to the one program, when dblaunch runs in its
    /// foreground.
    terminal: Option<RawFd>,
    wait_line: WaitLine,
    /// Lifecycle lines at info level; otherwise debug.
    announce: bool,
}

fn reads_lines(spec: &Spec) -> bool {
    matches!(
        spec.dev.ready.as_ref().map(|r| &r.check),
        Some(crate::manifest::Check::Log(_))
    )
}

impl Console {
    /// `logs`: a detached run's directory for the programs' output.
    pub(super) fn new(
        specs: &[Spec],
        logs: Option<&Path>,
        announce: bool,
    ) -> Result<Console, Error> {
        let (output, terminal) = match logs {
            Some(dir) => (
                Some(
                    Output::to_files(dir.to_path_buf()).map_err(|source| Error::Io {
                        action: format!("create the log directory {}", dir.display()),
                        source,
                    })?,
                ),
                None,
            ),
            // A `ready = { log = … }` check reads the program's lines.
            None if specs.len() == 1 && !reads_lines(&specs[0]) => (None, foreground_terminal()),
            None => (
                Some(Output::new(specs.iter().map(|s| s.name.as_str()))),
                None,
            ),
        };
        if terminal.is_some() {
            ignore_terminal_stops();
        }
        Ok(Console {
            output,
            terminal,
            wait_line: WaitLine::new(Instant::now(), specs.len() == 1),
            announce,
        })
    }

    /// A lifecycle line (`started`, `exited`, `restarting` …).
    pub(super) fn announce(&self, message: std::fmt::Arguments<'_>) {
        if self.announce {
            tracing::info!("{message}");
        } else {
            tracing::debug!("{message}");
        }
    }

    /// The terminal a program gets as its foreground, if any.
    pub(super) fn terminal(&self) -> Option<RawFd> {
        self.terminal
    }

    /// What a program's stdout and stderr are.
    pub(super) fn stdio(&self) -> Stdio {
        if self.output.is_some() {
            Stdio::Piped
        } else {
            Stdio::Inherit
        }
    }

    /// Starts copying program `i`'s pipes, if it has any.
    pub(super) fn pump(
        &self,
        name: &str,
        i: usize,
        stdout: Option<ChildStdout>,
        stderr: Option<ChildStderr>,
        hook: Option<LineHook>,
    ) -> Vec<Pump> {
        let mut pumps = Vec::new();
        if let Some(out) = &self.output {
            if let Some(o) = stdout {
                pumps.extend(out.pump(name, i, Stream::Stdout, o, hook.clone()).ok());
            }
            if let Some(e) = stderr {
                pumps.extend(out.pump(name, i, Stream::Stderr, e, hook).ok());
            }
        }
        pumps
    }

    /// A queued program now waits for `database` behind `holders`.
    pub(super) fn waiting(
        &mut self,
        prefix: &str,
        database: &Path,
        mode: Mode,
        holders: &[Holder],
        more: usize,
    ) {
        self.wait_line
            .waiting(prefix, database, mode, holders, more);
    }

    /// Nobody waits any more (or a message follows): the waiting line goes.
    pub(super) fn clear(&mut self) {
        self.wait_line.clear();
    }

    /// Whether the waiting line wants redrawing every second.
    pub(super) fn ticking(&self) -> bool {
        self.wait_line.active()
    }

    /// Redraws the waiting line with the time waited so far.
    pub(super) fn tick(&self) {
        if self.wait_line.active() {
            self.wait_line.redraw();
        }
    }

    /// Makes dblaunch's process group the terminal's foreground again, if
    /// it gave the terminal away.
    pub(super) fn take_terminal_back(&self) {
        if let Some(tty) = self.terminal {
            take_terminal_back(tty);
        }
    }
}
