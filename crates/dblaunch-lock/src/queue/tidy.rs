//! Clearing away what nobody holds any more: a released ticket's name and
//! the nested queue under it, a dead ticket found in passing. The proof is
//! always a shared flock taken without waiting (see [`take_if_unheld`]).

use std::fs::{self, File};
use std::path::{Path, PathBuf};

use super::name::nested_dir_of;
use super::record_file::{is_planted_link, open_ticket, same_file};
use crate::kernel::{self, Kind};

/// A released ticket whose lock nobody holds: what is left to clear away
/// when it is dropped (its name in the queue, if it still names the file we
/// found free, and any nested queue under it). Left for later so that the
/// next program can start first: until then the name is a dead ticket,
/// which every waiter and newcomer passes (or clears away) by taking its
/// lock shared.
#[derive(Debug)]
pub struct Tidy {
    path: PathBuf,
    /// The ticket, locked shared: proof that nobody holds it.
    file: Option<File>,
    /// Whether a nested queue may be under it (a released ticket's).
    nested: bool,
}

impl Tidy {
    /// Nothing is left to clear away: the ticket left the queue already.
    pub(super) fn nothing(path: PathBuf) -> Tidy {
        Tidy {
            path,
            file: None,
            nested: false,
        }
    }

    /// Only the nested queue is ours to remove; the name is left for
    /// whoever finds it unheld.
    pub(super) fn nested_only(path: PathBuf) -> Tidy {
        Tidy {
            path,
            file: None,
            nested: true,
        }
    }
}

impl Drop for Tidy {
    fn drop(&mut self) {
        // Someone passing it may have unlinked it already; names are never
        // reused, but never unlink a name that is not this file's.
        if let Some(file) = self.file.take() {
            if same_file(&file, &self.path) {
                let _ = fs::remove_file(&self.path);
            }
        }
        if self.nested {
            remove_nested_queue(&self.path);
        }
    }
}

/// The ticket at `path`, if nobody holds its lock (or it is gone already),
/// ready to be cleared away; `nested`: with the nested queue under it. A
/// shared lock is the proof: every live ticket is held exclusively by its
/// owner, and those who merely pass a dead one (waiters, `status`) hold
/// shared locks, which must not make it look alive (a releasing holder
/// would otherwise wait for the next waiter to move on). A planted symlink
/// is not a ticket: it is removed (unlink never touches its target).
pub(super) fn take_if_unheld(path: &Path, nested: bool) -> Option<Tidy> {
    let file = match open_ticket(path) {
        Ok(f) => Some(f),
        Err(e) => {
            if is_planted_link(&e) {
                let _ = fs::remove_file(path);
            }
            None
        }
    };
    if let Some(f) = &file {
        if !matches!(kernel::lock(f, Kind::Shared, false), Ok(true)) {
            return None;
        }
    }
    Some(Tidy {
        path: path.to_path_buf(),
        file,
        nested,
    })
}

/// Unlinks the ticket at `path` now if nobody holds it. True if it is gone
/// now, or was never a ticket.
pub(super) fn remove_if_unheld(path: &Path) -> bool {
    take_if_unheld(path, false).is_some()
}

/// Removes the nested queue under a released ticket, if programs under it
/// made one. Its tickets are all dead: their owners inherited the released
/// lock, which nobody holds any more.
fn remove_nested_queue(ticket: &Path) {
    let _ = fs::remove_dir_all(nested_dir_of(ticket));
}
