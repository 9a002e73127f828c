//! Calls from `dblaunch stop`, `restart` and `ps` (through the control
//! socket), and the report a detached run gives `dblaunch start`. The
//! supervisor answers `ps` with data; `cmd/ps.rs` renders it.

use std::fs::File;
use std::io::Write;
use std::sync::mpsc::Sender;
use std::time::Instant;

use crate::control::{Action, Call, DbUse, Phase, ProgramState};
use crate::manifest::Hold;
use crate::process::ExitKind;
use crate::signals;
use dblaunch_lock::Request;

use super::context::Context;
use super::lifecycle::{finish, give_up};
use super::readiness::stop_in_order;
use super::state::{End, Readiness, State};
use super::table::Table;

/// A call from `dblaunch stop`, `restart` or `ps`.
pub(super) fn answer(cx: &mut Context<'_, '_>, call: Call) {
    match call.action {
        Action::Ps => ps(cx.table, &call.reply),
        Action::Restart => restart(cx, call),
        Action::Stop => stop(cx, call),
    }
}

/// One JSON line per program for `dblaunch ps`.
fn ps(table: &Table<'_>, reply: &Sender<String>) {
    for (i, state) in table.states().iter().enumerate() {
        let spec = table.spec(i);
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
            restarts: table.restarts(i),
            change_restarts: table.change_restarts(i),
            holds: Vec::new(),
            awaits: Vec::new(),
            hold: Hold::Running,
            declares: Vec::new(),
        };
        if let Some(declared) = &spec.locks_itself {
            // What it holds now is in the queues: `ps` reads them.
            line.hold = Hold::OnDemand;
            line.declares = uses(&mut declared.iter());
        }
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
                } else if r.stop_requested
                    || r.restart_requested
                    || r.kill_at.is_some()
                    || r.stop_deferred.is_some()
                {
                    Phase::Stopping
                } else {
                    match r.readiness {
                        Readiness::Up => Phase::Running,
                        Readiness::Ready => Phase::Ready,
                        Readiness::Starting { .. } | Readiness::TimedOut => Phase::Starting,
                    }
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
fn restart(cx: &mut Context<'_, '_>, call: Call) {
    let reply = &call.reply;
    let timeout = cx.opts.stop_timeout;
    for i in 0..cx.table.len() {
        let spec = cx.table.spec(i);
        let name = &spec.name;
        if !call.wants(name) {
            continue;
        }
        let signal = spec.stop_signal;
        let state = cx.table.state_mut(i);
        match state {
            State::Running(r) if r.exit.is_none() => {
                r.ask_to_stop(signal, timeout);
                r.restart_requested = true;
                r.replies.push(reply.clone());
                tracing::info!("{name}: restarting on request ({})", signals::name(signal));
                let _ = reply.send(format!("stopping {name} (pid {}) to restart it", r.pid));
            }
            State::Done(_) if !cx.verdict.stopping() => {
                cx.verdict.forget(i);
                tracing::info!("{name}: started again on request");
                let _ = reply.send(format!("{name} had ended; starting it again"));
                *state = State::Backoff {
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

/// `dblaunch stop [NAME]...`: stop them gracefully, or keep them from
/// starting.
fn stop(cx: &mut Context<'_, '_>, call: Call) {
    let reply = &call.reply;
    let mut matched = false;
    // What needs a program that stops is stopped too, before it.
    let n = cx.table.len();
    let mut chosen: Vec<bool> = (0..n).map(|i| call.wants(&cx.table.spec(i).name)).collect();
    loop {
        let more: Vec<usize> = (0..n)
            .filter(|&j| !chosen[j] && !cx.table.is_done(j))
            .filter(|&j| cx.table.spec(j).dev.needs.iter().any(|&d| chosen[d]))
            .collect();
        if more.is_empty() {
            break;
        }
        for j in more {
            chosen[j] = true;
            let _ = reply.send(format!(
                "stopping {} too: it needs a program being stopped",
                cx.table.spec(j).name
            ));
        }
    }
    for (i, _) in chosen.iter().enumerate().filter(|(_, c)| **c) {
        let spec = cx.table.spec(i);
        let name = &spec.name;
        matched = true;
        let signal = spec.stop_signal;
        let timeout = cx.opts.stop_timeout;
        match cx.table.state_mut(i) {
            State::Running(r) => {
                let first = !std::mem::replace(&mut r.stop_requested, true);
                r.replies.push(reply.clone());
                let pid = r.pid;
                if first {
                    stop_in_order(cx, i, signal);
                    tracing::info!("{}: stopping on request ({})", name, signals::name(signal));
                    let _ = reply.send(format!(
                        "stopping {name} (pid {pid}) with {}; SIGKILL after {}",
                        signals::name(signal),
                        humantime::format_duration(timeout)
                    ));
                }
            }
            State::Pending
            | State::Queued { .. }
            | State::Foreign { .. }
            | State::Backoff { .. } => {
                let state = cx.table.take(i);
                let restarting = matches!(state, State::Backoff { .. });
                give_up(state);
                cx.console.clear();
                tracing::info!("{name}: stopped on request before it started");
                let _ = reply.send(if restarting {
                    format!("{name} was waiting to restart; it will not start again")
                } else {
                    format!("{name} had not started; it will not start now")
                });
                let done = finish(cx, i, End::Stopped);
                cx.table.put(i, done);
            }
            State::Done(_) => {
                if !call.programs.is_empty() {
                    let _ = reply.send(format!("{name} is not running any more"));
                }
            }
        }
    }
    if !matched {
        let _ = reply.send(format!(
            "this run (pid {}) has none of: {}",
            std::process::id(),
            call.programs.join(", ")
        ));
    }
}

/// For `dblaunch start`: once every program has started or failed to,
/// say how each did and close the pipe (`ready`).
pub(super) fn report_ready(table: &Table<'_>, ready: &mut Option<File>) {
    if ready.is_none() {
        return;
    }
    let settled = table.states().iter().all(|s| {
        matches!(
            s,
            State::Running(_) | State::Done(_) | State::Backoff { .. }
        )
    });
    if !settled {
        return;
    }
    let mut lines = String::new();
    for (i, s) in table.states().iter().enumerate() {
        let name = &table.spec(i).name;
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
    if let Some(mut f) = ready.take() {
        let _ = f.write_all(lines.as_bytes());
    }
}
