//! Requests from `dblaunch stop`, `restart` and `ps` (through the control
//! socket), and the report a detached run gives `dblaunch start`. The
//! supervisor answers `ps` with data; `cmd/ps.rs` renders it.

use std::io::Write;
use std::time::Instant;

use crate::control::{DbUse, Phase, ProgramState};
use crate::process::ExitKind;
use crate::signals;
use dblaunch_lock::Request;

use super::dispatch::Supervisor;
use super::state::{End, State};

impl Supervisor<'_> {
    /// A request from `dblaunch stop`, `restart` or `ps`.
    pub(super) fn control(&mut self, request: crate::control::Request) {
        use crate::control::Action;
        match request.action {
            Action::Ps => self.ps(&request.reply),
            Action::Restart => self.restart(request),
            Action::Stop => self.stop_request(request),
        }
    }

    /// One JSON line per program for `dblaunch ps`.
    pub(super) fn ps(&self, reply: &std::sync::mpsc::Sender<String>) {
        for (i, state) in self.states.iter().enumerate() {
            let spec = &self.specs[i];
            let uses = |reqs: &mut dyn Iterator<Item = &Request>| -> Vec<DbUse> {
                reqs.map(|r| DbUse {
                    path: r.db.path().to_path_buf(),
                    mode: r.mode,
                })
                .collect()
            };
            let mut line = ProgramState {
                program: spec.name.clone(),
                state: Phase::Running,
                status: None,
                live: !matches!(state, State::Done(_)),
                pid: None,
                uptime_ms: None,
                restarts: self.restarts[i],
                holds: Vec::new(),
                awaits: Vec::new(),
            };
            match state {
                State::Pending => line.state = Phase::WaitingForAfter,
                State::Queued { .. } => {
                    line.state = Phase::Queued;
                    line.awaits = uses(&mut spec.locks.iter());
                }
                State::Foreign { held, .. } => {
                    line.state = Phase::WaitingForForeign;
                    line.holds = uses(&mut held.requests());
                }
                State::Running(r) => {
                    line.state = if r.yielding {
                        Phase::Yielding
                    } else if r.stop_requested || r.restart_requested || r.kill_at.is_some() {
                        Phase::Stopping
                    } else {
                        Phase::Running
                    };
                    line.pid = Some(r.pid);
                    line.uptime_ms = Some(r.started.elapsed().as_millis() as u64);
                    line.holds = uses(&mut r.held.requests());
                }
                State::Backoff { .. } => line.state = Phase::WaitingToRestart,
                State::Done(e) => {
                    (line.state, line.status) = match e {
                        End::Exited(k) => (Phase::Exited, Some(k.status())),
                        End::Failed(c) => (Phase::Failed, Some(*c)),
                        End::Skipped => (Phase::Skipped, None),
                        End::NotStarted => (Phase::NotStarted, None),
                        End::Stopped => (Phase::Stopped, None),
                    }
                }
            }
            let _ = reply.send(serde_json::to_string(&line).expect("a state always serialises"));
        }
    }

    /// `dblaunch restart NAME`: stop it gracefully and start it again.
    pub(super) fn restart(&mut self, request: crate::control::Request) {
        let reply = &request.reply;
        let timeout = self.opts.stop_timeout;
        for i in 0..self.states.len() {
            let name = self.specs[i].name.clone();
            if !request.wants(&name) {
                continue;
            }
            let signal = self.specs[i].stop_signal;
            match &mut self.states[i] {
                State::Running(r) if r.exit.is_none() => {
                    r.ask_to_stop(signal, timeout);
                    r.restart_requested = true;
                    r.replies.push(reply.clone());
                    tracing::info!("{name}: restarting on request ({})", signals::name(signal));
                    let _ = reply.send(format!("stopping {name} (pid {}) to restart it", r.pid));
                }
                State::Done(_) if self.stopped_by.is_none() => {
                    self.failures.retain(|&(p, _)| p != i);
                    tracing::info!("{name}: started again on request");
                    let _ = reply.send(format!("{name} had ended; starting it again"));
                    self.states[i] = State::Backoff {
                        until: Instant::now(),
                        last: ExitKind::Code(0),
                    };
                }
                _ => {
                    let _ = reply.send(format!("{name} is not running yet; nothing to restart"));
                }
            }
        }
    }

    pub(super) fn stop_request(&mut self, request: crate::control::Request) {
        let reply = &request.reply;
        let mut matched = false;
        for i in 0..self.states.len() {
            let name = self.specs[i].name.clone();
            if !request.wants(&name) {
                continue;
            }
            matched = true;
            let signal = self.specs[i].stop_signal;
            let timeout = self.opts.stop_timeout;
            match &mut self.states[i] {
                State::Running(r) => {
                    if !r.stop_requested {
                        r.stop_requested = true;
                        r.ask_to_stop(signal, timeout);
                        tracing::info!("{}: stopping on request ({})", name, signals::name(signal));
                        let _ = reply.send(format!(
                            "stopping {name} (pid {}) with {}; SIGKILL after {}",
                            r.pid,
                            signals::name(signal),
                            humantime::format_duration(timeout)
                        ));
                    }
                    r.replies.push(reply.clone());
                }
                State::Pending
                | State::Queued { .. }
                | State::Foreign { .. }
                | State::Backoff { .. } => {
                    let restarting = matches!(self.states[i], State::Backoff { .. });
                    self.give_up_place(i);
                    self.wait_line.clear();
                    tracing::info!("{name}: stopped on request before it started");
                    let _ = reply.send(if restarting {
                        format!("{name} was waiting to restart; it will not start again")
                    } else {
                        format!("{name} had not started; it will not start now")
                    });
                    self.finish(i, End::Stopped);
                }
                State::Done(_) => {
                    if !request.programs.is_empty() {
                        let _ = reply.send(format!("{name} is not running any more"));
                    }
                }
            }
        }
        if !matched {
            let _ = reply.send(format!(
                "this run (pid {}) has none of: {}",
                std::process::id(),
                request.programs.join(", ")
            ));
        }
    }

    /// For `dblaunch start`: once every program has started or failed to,
    /// say how each did and close the pipe.
    pub(super) fn report_ready(&mut self) {
        if self.opts.ready.is_none() {
            return;
        }
        let settled = self.states.iter().all(|s| {
            matches!(
                s,
                State::Running(_) | State::Done(_) | State::Backoff { .. }
            )
        });
        if !settled {
            return;
        }
        let mut lines = String::new();
        for (i, s) in self.states.iter().enumerate() {
            let name = &self.specs[i].name;
            lines += &match s {
                State::Running(r) => format!("started {name} (pid {})\n", r.pid),
                State::Backoff { last, .. } => format!(
                    "started {name}; it exited ({}) and will restart\n",
                    last.status()
                ),
                State::Done(End::Exited(k)) => {
                    format!("started {name}; it has already exited {}\n", k.status())
                }
                State::Done(End::Failed(c)) => format!(
                    "failed {name}: it could not start (status {c}); see .dblaunch/dblaunch.log\n"
                ),
                State::Done(End::Skipped) => {
                    format!("failed {name}: not started, a program it runs after failed\n")
                }
                State::Done(End::NotStarted | End::Stopped) => {
                    format!("failed {name}: stopped before it started\n")
                }
                _ => String::new(),
            };
        }
        if let Some(mut f) = self.opts.ready.take() {
            let _ = f.write_all(lines.as_bytes());
        }
    }
}
