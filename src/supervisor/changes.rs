//! Restarts on change (`watch`): a change waits out the program's debounce
//! (a deadline of the loop; each further change moves it), then the program
//! is stopped (its stop signal, to its whole group) and, once its group is
//! gone and its locks released, queues again like any program. One that had
//! ended (a failed build) starts again.

use std::path::PathBuf;
use std::time::Instant;

use crate::process::ExitKind;
use crate::signals;

use super::context::Context;
use super::state::{End, State};

/// A path that program `i` watches changed.
pub(super) fn changed(cx: &mut Context<'_, '_>, i: usize, path: PathBuf) {
    let Some(watch) = &cx.table.spec(i).dev.watch else {
        return;
    };
    if cx.verdict.stopping() {
        return;
    }
    let at = Instant::now() + watch.debounce;
    let first = cx.table.change(i).map_or(path, |(_, p)| p.clone());
    tracing::debug!("{}{} changed", cx.table.prefix(i), first.display());
    cx.table.set_change(i, Some((at, first)));
}

/// Restarts the programs whose debounce has run out.
pub(super) fn due(cx: &mut Context<'_, '_>) {
    let now = Instant::now();
    for i in 0..cx.table.len() {
        let Some((at, path)) = cx.table.change(i).cloned() else {
            continue;
        };
        if at > now {
            continue;
        }
        cx.table.set_change(i, None);
        if !cx.verdict.stopping() {
            restart(cx, i, path);
        }
    }
}

fn restart(cx: &mut Context<'_, '_>, i: usize, path: PathBuf) {
    let spec = cx.table.spec(i);
    let prefix = cx.table.prefix(i);
    let shown = cx
        .opts
        .control
        .as_ref()
        .and_then(|dir| path.strip_prefix(dir).ok())
        .unwrap_or(&path)
        .display()
        .to_string();
    let timeout = cx.opts.stop_timeout;
    match cx.table.state_mut(i) {
        State::Running(r) => {
            if r.stop_requested || r.ending || r.change_restart {
                return;
            }
            r.change_restart = true;
            if r.exit.is_none() && r.kill_at.is_none() {
                tracing::info!(
                    "{prefix}{shown} changed: restarting it ({})",
                    signals::name(spec.stop_signal)
                );
                r.ask_to_stop(spec.stop_signal, timeout);
            }
        }
        State::Done(_) | State::Backoff { .. } => {
            tracing::info!("{prefix}{shown} changed: starting it again");
            cx.verdict.forget(i);
            cx.table.set_note(i, None);
            cx.table.count_change_restart(i);
            *cx.table.restarts_mut(i) = 0;
            *cx.table.state_mut(i) = State::Backoff {
                until: Instant::now(),
                last: ExitKind::Code(0),
            };
            // What was not started because this program failed gets its
            // chance again: it waits for it as before.
            for j in 0..cx.table.len() {
                let skipped = matches!(cx.table.states()[j], State::Done(End::Skipped));
                if skipped && cx.table.spec(j).dev.needs.contains(&i) {
                    cx.verdict.forget(j);
                    cx.table.set_note(j, None);
                    *cx.table.state_mut(j) = State::Pending;
                }
            }
        }
        // Not started yet: it will start with what is there now.
        State::Pending | State::Queued { .. } | State::Foreign { .. } => {}
    }
}
