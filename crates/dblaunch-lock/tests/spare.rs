//! A program that locks the same database again and again reuses the file
//! of its last ticket (its spare) instead of making one per lock. These
//! tests check that the reuse happens, that a waiter behind a reused ticket
//! is woken at its release, and that a spare left by a process that is gone
//! is cleared away.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use dblaunch_lock::{Database, Lock, OwnerId, occupancy};

/// The spares in the lock directory of `db`: (name, inode).
fn spares(db: &Path) -> Vec<(String, u64)> {
    let name = db.file_name().unwrap().to_str().unwrap();
    let dir = db.with_file_name(format!(".{name}.dblaunch"));
    let mut found: Vec<(String, u64)> = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            name.starts_with(".spare-")
                .then(|| (name, e.metadata().unwrap().ino()))
        })
        .collect();
    found.sort();
    found
}

fn occupancy_of(path: &Path) -> (usize, usize) {
    let db = Database::resolve(path, Path::new("/")).unwrap();
    let report = occupancy::report(&[db]);
    let d = &report.databases[0];
    (d.holders.len(), d.waiters.len())
}

#[test]
fn a_program_locking_again_reuses_one_spare() {
    let tmp = tempfile::tempdir().unwrap();
    let db = tmp.path().join("app.db");
    drop(Lock::write(&db).acquire().unwrap());
    let first = spares(&db);
    assert_eq!(
        first.len(),
        1,
        "one spare after the first release: {first:?}"
    );
    for _ in 0..50 {
        let guard = Lock::write(&db).acquire().unwrap();
        assert_eq!(occupancy_of(&db), (1, 0));
        drop(guard);
    }
    assert_eq!(spares(&db), first, "the same file was used every time");
    assert_eq!(occupancy_of(&db), (0, 0), "nothing left in the queue");
}

#[test]
fn a_waiter_behind_a_reused_ticket_is_woken_at_its_release() {
    let tmp = tempfile::tempdir().unwrap();
    let db = tmp.path().join("app.db");
    drop(Lock::write(&db).acquire().unwrap());
    for round in 0..20 {
        // Alone in the queue: the spare becomes the ticket.
        let held = Lock::write(&db).acquire().unwrap();
        let (tx, rx) = mpsc::channel();
        let p = db.clone();
        let waiter = std::thread::spawn(move || {
            let r = Lock::write(&p)
                .owner(OwnerId(1000 + round))
                .timeout(Duration::from_secs(60))
                .acquire();
            tx.send(Instant::now()).unwrap();
            r.map(drop)
        });
        let deadline = Instant::now() + Duration::from_secs(30);
        while occupancy_of(&db) != (1, 1) {
            assert!(Instant::now() < deadline, "the waiter never queued");
            std::thread::sleep(Duration::from_millis(2));
        }
        let released = Instant::now();
        drop(held);
        let granted = rx
            .recv_timeout(Duration::from_secs(20))
            .expect("the waiter was granted after the release");
        waiter.join().unwrap().unwrap();
        assert!(
            granted.duration_since(released) < Duration::from_secs(5),
            "round {round}: the waiter woke only {:?} after the release",
            granted.duration_since(released)
        );
    }
    assert_eq!(occupancy_of(&db), (0, 0));
}

/// Run as a child process by the next test: locks and releases its
/// database (`SPARE_CHILD_DB`), leaving a spare, and exits.
#[test]
#[ignore = "a child of a_spare_of_a_process_that_is_gone_is_cleared_away"]
fn child_locks_and_exits() {
    let db = PathBuf::from(std::env::var_os("SPARE_CHILD_DB").expect("run by the parent test"));
    drop(Lock::write(&db).acquire().unwrap());
}

#[test]
fn a_spare_of_a_process_that_is_gone_is_cleared_away() {
    let tmp = tempfile::tempdir().unwrap();
    let db = tmp.path().join("app.db");
    let status = Command::new(std::env::current_exe().unwrap())
        .args(["--ignored", "--exact", "child_locks_and_exits", "--quiet"])
        .env("SPARE_CHILD_DB", &db)
        .stdout(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
    let left = spares(&db);
    assert_eq!(left.len(), 1, "the child left its spare: {left:?}");
    // Our own lock clears the dead one away, and keeps a spare of its own.
    drop(Lock::write(&db).acquire().unwrap());
    let now = spares(&db);
    assert_eq!(now.len(), 1, "{now:?}");
    assert_ne!(now[0].0, left[0].0, "the dead process's spare is gone");
}
