//! Waiting for one's turn: until none of the earlier conflicting tickets
//! is held any more, each proven gone by a shared flock on it.

use std::collections::HashSet;
use std::fs;
use std::io;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

use super::name::TicketId;
use super::record_file::{is_planted_link, open_ticket, same_file};
use crate::kernel::{self, Kind};

/// Waits until none of `blockers` (in the lock directory `dir`) is held.
/// Each one is opened only while it is waited for, so a waiter holds one
/// extra descriptor however long the queue.
///
/// The newest blocker is waited for first: it is usually the last to finish,
/// so each waiter wakes once, when its predecessor is done, and then finds
/// the older ones gone. Waiting oldest first would wake every waiter of a
/// long queue at each hand-off (a thundering herd: n² wake-ups per drain).
///
/// `on_blocked` is told before each wait that will really block, with the
/// blockers that remain (oldest first; the last is the one waited for). Returns
/// false if `cancel` was set.
pub fn wait_turn(
    dir: &Path,
    blockers: &mut Vec<TicketId>,
    block: bool,
    cancel: &AtomicBool,
    mut on_blocked: impl FnMut(&[TicketId]),
) -> io::Result<WaitOutcome> {
    while let Some(&id) = blockers.last() {
        if cancel.load(Ordering::Acquire) {
            return Ok(WaitOutcome::Cancelled);
        }
        let path = dir.join(id.file_name());
        let file = match open_ticket(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                blockers.pop();
                drop_departed(dir, blockers);
                continue;
            }
            Err(e) if is_planted_link(&e) => {
                // Not a ticket: nobody's lock. Never followed; the link
                // itself goes (unlink does not touch its target).
                let _ = fs::remove_file(&path);
                blockers.pop();
                continue;
            }
            Err(e) => return Err(e),
        };
        if !kernel::lock(&file, Kind::Shared, false)? {
            if !block {
                return Ok(WaitOutcome::Blocked(id));
            }
            on_blocked(blockers);
            kernel::lock(&file, Kind::Shared, true)?;
        }
        // We hold a shared lock: nobody holds the ticket, and nobody ever will
        // again. Clear it away for everyone (if the name is still that
        // ticket's: names are never reused, and this keeps it so should
        // anything ever break that).
        if same_file(&file, &path) {
            let _ = fs::remove_file(&path);
        }
        blockers.pop();
        drop(file);
        drop_departed(dir, blockers);
    }
    Ok(WaitOutcome::Done)
}

/// The tickets in the queue directory `dir`, in directory order.
fn ticket_ids(dir: &Path) -> io::Result<impl Iterator<Item = TicketId>> {
    Ok(fs::read_dir(dir)?
        .flatten()
        .filter_map(|e| e.file_name().to_str().and_then(TicketId::parse)))
}

/// Whether the queue in `dir` has any ticket (false when there is no such
/// directory yet).
pub fn has_tickets(dir: &Path) -> bool {
    ticket_ids(dir).is_ok_and(|mut ids| ids.next().is_some())
}

/// Once the newest blocker is gone, the older ones usually are too: one
/// look at the directory drops them all, instead of one open(2) each on
/// the hand-off path (names are never reused, so absent means done). Without
/// it, the n-th waiter of a queue that finds its predecessor already gone
/// would try n names in turn.
fn drop_departed(dir: &Path, blockers: &mut Vec<TicketId>) {
    if blockers.len() > 1 {
        if let Ok(ids) = ticket_ids(dir) {
            let present: HashSet<TicketId> = ids.collect();
            blockers.retain(|b| present.contains(b));
        }
    }
}

/// How [`wait_turn`] ended.
#[derive(Debug, PartialEq, Eq)]
pub enum WaitOutcome {
    Done,
    Blocked(TicketId),
    Cancelled,
}
