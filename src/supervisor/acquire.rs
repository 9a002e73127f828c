//! Getting a program's locks: joining the queue, waiting (on the loop's
//! thread behind this run's own programs, in a thread of its own behind
//! anyone else), moving on when the ticket ahead is released. Each function
//! gives the program's next state, or the error it fails with (which
//! `lifecycle.rs` turns into its end).

use std::time::{Duration, Instant};

use crate::error::Error;
use crate::events::Event;
use dblaunch_lock::{Acquisition, Held, Owner, Progress, Step, round};

use super::context::Context;
use super::state::{State, Waiter};

/// Joins the queue for every lock of program `i`.
pub(super) fn queue(cx: &mut Context<'_, '_>, i: usize) -> Result<State, Error> {
    let spec = cx.table.spec(i);
    let owner = Owner {
        program: spec.name.clone(),
        command: spec.argv.clone(),
    };
    let since = Instant::now();
    cx.recorder.queueing(i);
    let wait = cx.opts.wait;
    let result = Acquisition::new(spec.locks.clone(), owner, cx.opts.remote.as_ref()).and_then(
        |mut pending| {
            if wait == Some(Duration::ZERO) {
                return pending.try_now().map(Ok);
            }
            // The uncontended path stays on this thread: no waiting, no
            // thread (a start-up tweak: docs/design.md, "Start-up cost").
            Ok(match pending.advance(false, |_| {})? {
                Step::Done => Ok(pending.into_held()),
                Step::Blocked => Err(pending),
            })
        },
    );
    match result? {
        Ok(held) => Ok(State::Foreign {
            held,
            since,
            warned: false,
        }),
        Err(pending) => wait_for(cx, i, pending, since),
    }
}

/// Program `i` is blocked. Behind a ticket of one of this run's own
/// programs it waits on the loop's thread; behind anyone else's, in a
/// thread of its own.
fn wait_for(
    cx: &mut Context<'_, '_>,
    i: usize,
    pending: Acquisition,
    since: Instant,
) -> Result<State, Error> {
    let spec = cx.table.spec(i);
    if let Some((req, holders)) = pending.blocked_on() {
        cx.recorder
            .waiting(i, spec, req.db.path(), req.mode, &holders, since);
    }
    let owner = pending
        .blocker()
        .and_then(|(dir, id)| cx.table.owner_of(i, dir, id));
    if let Some(owner) = owner {
        let progress = pending.waiting();
        let queued = State::Queued {
            waiter: Waiter::Behind {
                pending: Box::new(pending),
                owner,
            },
            since,
        };
        return match progress {
            Some(p) => advanced(cx, i, queued, p),
            None => Ok(queued),
        };
    }
    match cx.events.notifier() {
        Ok(notifier) => {
            let acquirer = pending.in_background(move |p| notifier.send(Event::Lock(i, p)));
            Ok(State::Queued {
                waiter: Waiter::Thread(acquirer),
                since,
            })
        }
        Err(source) => {
            pending.abandon();
            Err(Error::Io {
                action: "create a wake-up channel".to_owned(),
                source,
            })
        }
    }
}

/// The ticket that program `i` waited behind on this thread is no longer
/// held by this run: move on without blocking.
pub(super) fn try_again(
    cx: &mut Context<'_, '_>,
    i: usize,
    mut pending: Box<Acquisition>,
    since: Instant,
) -> Result<State, Error> {
    pending.pass_released(cx.released);
    match pending.advance(false, |_| {}) {
        Ok(Step::Done) => Ok(got_locks(cx, i, pending.into_held(), since)),
        Ok(Step::Blocked) => wait_for(cx, i, *pending, since),
        Err(e) => {
            pending.abandon();
            cx.console.clear();
            Err(e.into())
        }
    }
}

fn got_locks(cx: &mut Context<'_, '_>, i: usize, held: Held, since: Instant) -> State {
    cx.console.clear();
    cx.console.announce(format_args!(
        "{}got its locks after waiting {}",
        cx.table.prefix(i),
        round(since.elapsed())
    ));
    State::Foreign {
        held,
        since,
        warned: false,
    }
}

/// Program `i`, in `state`, hears `p` of its wait.
pub(super) fn advanced(
    cx: &mut Context<'_, '_>,
    i: usize,
    state: State,
    p: Progress,
) -> Result<State, Error> {
    match p {
        Progress::Waiting {
            database,
            mode,
            holders,
            more,
        } => {
            if matches!(state, State::Queued { .. }) {
                let spec = cx.table.spec(i);
                cx.recorder
                    .waiting(i, spec, &database, mode, &holders, Instant::now());
            }
            let prefix = cx.table.prefix(i);
            tracing::debug!(
                "{prefix}queued for the {mode} lock on {}",
                database.display()
            );
            cx.console.waiting(&prefix, &database, mode, &holders, more);
            Ok(state)
        }
        Progress::Acquired(held) => {
            if let State::Queued { since, .. } = state {
                Ok(got_locks(cx, i, held, since))
            } else {
                // Cancelled meanwhile (a stop): give them back.
                held.release();
                Ok(state)
            }
        }
        Progress::Failed(e) => {
            if matches!(state, State::Queued { .. }) {
                cx.console.clear();
                Err(e.into())
            } else {
                Ok(state)
            }
        }
    }
}
