//! Re-entry. Every acquisition is its own place in the queue: two threads
//! of one process exclude each other as two processes do. But an *owner*
//! (a thread in synchronous code, an asyncio task, a Node async context)
//! that already holds a database in a covering mode (write covers read and
//! write; read covers read) gets it again at once, and one that holds it
//! for reading and asks to write would wait for itself forever: it fails
//! at once instead.

use std::cell::Cell;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::database::Database;
use crate::mode::Mode;

/// Who re-enters: an owner of locks within this process. Two acquisitions
/// with the same owner re-enter; with different owners they queue.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct OwnerId(pub u64);

impl OwnerId {
    /// The calling thread (the default owner).
    pub fn current_thread() -> OwnerId {
        static NEXT: AtomicU64 = AtomicU64::new(1);
        thread_local! {
            static ME: Cell<u64> = const { Cell::new(0) };
        }
        ME.with(|me| {
            if me.get() == 0 {
                // Odd numbers: apart from the even ones a binding may give
                // its own owners (tasks, async contexts).
                me.set(NEXT.fetch_add(2, Ordering::Relaxed));
            }
            OwnerId(me.get())
        })
    }
}

/// What an owner holds of one database: the mode it was granted, and how
/// many acquisitions (the first and its re-entries) hold it.
struct Hold {
    /// The process that holds it: a forked child inherits this table but
    /// none of the locks (see `fork.rs`), so it must not believe it.
    pid: u32,
    owner: OwnerId,
    db: Database,
    mode: Mode,
    count: usize,
}

static HOLDS: Mutex<Vec<Hold>> = Mutex::new(Vec::new());

fn holds() -> std::sync::MutexGuard<'static, Vec<Hold>> {
    crate::fork::protect(&HOLDS);
    HOLDS.lock().unwrap_or_else(|p| p.into_inner())
}

/// What `owner` already holds of `db`, if anything.
pub(crate) fn held(owner: OwnerId, db: &Database) -> Option<Mode> {
    let me = crate::fork::pid();
    holds()
        .iter()
        .find(|h| h.pid == me && h.owner == owner && h.db == *db)
        .map(|h| h.mode)
}

/// `owner` now holds `db` in `mode` (a first grant or a re-entry).
pub(crate) fn enter(owner: OwnerId, db: &Database, mode: Mode) {
    let me = crate::fork::pid();
    let mut holds = holds();
    holds.retain(|h| h.pid == me);
    match holds.iter_mut().find(|h| h.owner == owner && h.db == *db) {
        Some(h) => h.count += 1,
        None => holds.push(Hold {
            pid: me,
            owner,
            db: db.clone(),
            mode,
            count: 1,
        }),
    }
}

/// One acquisition of `db` by `owner` ended.
pub(crate) fn leave(owner: OwnerId, db: &Database) {
    let me = crate::fork::pid();
    let mut holds = holds();
    if let Some(i) = holds
        .iter()
        .position(|h| h.pid == me && h.owner == owner && h.db == *db)
    {
        holds[i].count -= 1;
        if holds[i].count == 0 {
            holds.swap_remove(i);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holds_count_per_owner_and_database() {
        let tmp = tempfile::tempdir().unwrap();
        let db = Database::resolve(std::path::Path::new("a.db"), tmp.path()).unwrap();
        let me = OwnerId::current_thread();
        let other = std::thread::spawn(OwnerId::current_thread).join().unwrap();
        assert_ne!(me, other);
        assert_eq!(held(me, &db), None);
        enter(me, &db, Mode::Write);
        enter(me, &db, Mode::Write);
        assert_eq!(held(me, &db), Some(Mode::Write));
        assert_eq!(held(other, &db), None);
        leave(me, &db);
        assert_eq!(held(me, &db), Some(Mode::Write));
        leave(me, &db);
        assert_eq!(held(me, &db), None);
    }
}
