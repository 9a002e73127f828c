//! The lock inside a program, through its public API: threads exclude each
//! other as processes do, a timeout names the holder, a cancelled wait
//! leaves the queue, an owner re-enters, bad input is refused before
//! anything is queued, a program locking again reuses its spare ticket.
//! (Processes, `dblaunch exec` beside it, fork and
//! crashes are tested through the Python and Node packages and the
//! command line's suite.)

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Barrier, mpsc};
use std::time::{Duration, Instant};

use dblaunch_lock::{Cancel, Database, Error, Holder, Lock, Mode, OwnerId, occupancy};

fn db(tmp: &tempfile::TempDir) -> PathBuf {
    tmp.path().join("app.db")
}

/// Who holds and waits for `path`, as `status --json` reports it.
fn occupancy_of(path: &Path) -> (usize, usize) {
    let db = Database::resolve(path, Path::new("/")).unwrap();
    let report = occupancy::report(&[db]);
    let d = &report.databases[0];
    (d.holders.len(), d.waiters.len())
}

#[test]
fn threads_exclude_each_other_and_readers_share() {
    let tmp = tempfile::tempdir().unwrap();
    let path = Arc::new(db(&tmp));
    let inside = Arc::new(AtomicUsize::new(0));
    let readers_together = Arc::new(AtomicUsize::new(0));
    let threads: Vec<_> = (0..8)
        .map(|i| {
            let (path, inside, together) = (path.clone(), inside.clone(), readers_together.clone());
            std::thread::spawn(move || {
                for _ in 0..40 {
                    let mode = if i % 2 == 0 { Mode::Write } else { Mode::Read };
                    let guard = Lock::new(&*path, mode).acquire().unwrap();
                    let now = inside.fetch_add(1, Ordering::SeqCst) + 1;
                    if mode == Mode::Write {
                        assert_eq!(now, 1, "a writer shared the database");
                    } else if now > 1 {
                        together.fetch_add(1, Ordering::SeqCst);
                    }
                    std::thread::yield_now();
                    inside.fetch_sub(1, Ordering::SeqCst);
                    drop(guard);
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(occupancy_of(&path), (0, 0), "nothing left in the queue");
}

#[test]
fn a_timeout_names_the_holder_and_leaves_no_ticket() {
    let tmp = tempfile::tempdir().unwrap();
    let path = db(&tmp);
    let _held = Lock::write(&path).name("holder-of-app").acquire().unwrap();
    let (tx, rx) = mpsc::channel();
    let p = path.clone();
    std::thread::spawn(move || {
        let started = Instant::now();
        let r = Lock::write(&p)
            .timeout(Duration::from_millis(300))
            .acquire();
        tx.send((r, started.elapsed())).unwrap();
    });
    let (result, waited) = rx.recv().unwrap();
    let err = result.unwrap_err();
    assert!(waited >= Duration::from_millis(300), "{waited:?}");
    match &err {
        Error::Busy { holders, .. } => assert!(
            holders.iter().any(
                |h| matches!(h, Holder::Program { program, .. } if program == "holder-of-app")
            ),
            "{holders:?}"
        ),
        other => panic!("not busy: {other}"),
    }
    assert!(err.to_string().contains("holder-of-app"), "{err}");
    // A timeout of zero answers at once and queues nothing (another owner:
    // this thread holds the database, and would re-enter).
    let started = Instant::now();
    let err = Lock::read(&path)
        .owner(OwnerId(6))
        .timeout(Duration::ZERO)
        .acquire()
        .unwrap_err();
    assert!(matches!(err, Error::Busy { .. }), "{err}");
    assert!(started.elapsed() < Duration::from_secs(1));
    assert_eq!(occupancy_of(&path), (1, 0), "only the holder is left");
}

#[test]
fn a_cancelled_wait_leaves_the_queue_and_is_never_granted() {
    let tmp = tempfile::tempdir().unwrap();
    let path = db(&tmp);
    let held = Lock::write(&path).acquire().unwrap();
    let cancel = Arc::new(Cancel::new().unwrap());
    let (tx, rx) = mpsc::channel();
    let (p, c) = (path.clone(), cancel.clone());
    let waiter = std::thread::spawn(move || {
        let r = Lock::write(&p).cancel_on(c).acquire();
        tx.send(()).unwrap();
        r
    });
    // Queued: the holder and one waiter.
    let deadline = Instant::now() + Duration::from_secs(30);
    while occupancy_of(&path) != (1, 1) {
        assert!(Instant::now() < deadline, "the waiter never queued");
        std::thread::sleep(Duration::from_millis(5));
    }
    let cancelled_at = Instant::now();
    cancel.cancel();
    rx.recv_timeout(Duration::from_secs(5))
        .expect("the wait ended at the cancel");
    assert!(cancelled_at.elapsed() < Duration::from_secs(1));
    assert!(matches!(waiter.join().unwrap(), Err(Error::Cancelled)));
    assert_eq!(occupancy_of(&path), (1, 0), "the waiter left the queue");
    drop(held);
    assert_eq!(
        occupancy_of(&path),
        (0, 0),
        "nobody was granted after the cancel"
    );
}

#[test]
fn an_owner_re_enters_and_never_waits_for_itself() {
    let tmp = tempfile::tempdir().unwrap();
    let path = db(&tmp);
    let outer = Lock::write(&path).acquire().unwrap();
    let inner = Lock::write(&path)
        .timeout(Duration::ZERO)
        .acquire()
        .unwrap();
    let read = Lock::read(&path).timeout(Duration::ZERO).acquire().unwrap();
    drop(inner);
    drop(read);
    assert_eq!(occupancy_of(&path), (1, 0));
    // Another owner (a task of an async runtime, say) queues.
    let other = Lock::write(&path)
        .owner(OwnerId(2))
        .timeout(Duration::ZERO)
        .acquire();
    assert!(matches!(other, Err(Error::Busy { .. })));
    drop(outer);
    assert_eq!(occupancy_of(&path), (0, 0));

    let reading = Lock::read(&path).acquire().unwrap();
    let err = Lock::write(&path).acquire().unwrap_err();
    assert!(matches!(err, Error::WouldDeadlock { .. }), "{err}");
    drop(reading);
    let _now = Lock::write(&path)
        .timeout(Duration::ZERO)
        .acquire()
        .unwrap();
}

#[test]
fn several_databases_are_all_or_none() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = (tmp.path().join("a.db"), tmp.path().join("b.db"));
    let _b = Lock::write(&b).owner(OwnerId(4)).acquire().unwrap();
    let err = Lock::write(&a)
        .and_write(&b)
        .timeout(Duration::from_millis(100))
        .acquire()
        .unwrap_err();
    assert!(
        matches!(err, Error::Busy { ref database, .. } if database.ends_with("b.db")),
        "{err}"
    );
    assert_eq!(occupancy_of(&a), (0, 0), "a is not kept while b is busy");
    // Many threads taking both in opposite orders never deadlock.
    let barrier = Arc::new(Barrier::new(6));
    let threads: Vec<_> = (0..6)
        .map(|i| {
            let (a, b, barrier) = (a.clone(), tmp.path().join("c.db"), barrier.clone());
            std::thread::spawn(move || {
                barrier.wait();
                for _ in 0..30 {
                    let lock = if i % 2 == 0 {
                        Lock::write(&a).and_write(&b)
                    } else {
                        Lock::write(&b).and_write(&a)
                    };
                    drop(lock.acquire().unwrap());
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
}

#[test]
fn bad_input_is_refused_before_anything_is_queued() {
    let tmp = tempfile::tempdir().unwrap();
    let manifest = tmp.path().join("dblaunch.toml");
    std::fs::write(&manifest, "[databases]\nletters = \"letters.duckdb\"\n").unwrap();
    let usage = |lock: Lock| match lock.acquire() {
        Err(Error::Usage(msg)) => msg,
        other => panic!("not a usage error: {other:?}"),
    };
    let msg = usage(Lock::write("leters").manifest(&manifest));
    assert!(msg.contains("did you mean `letters`?"), "{msg}");
    let by_name = Lock::write("letters")
        .manifest(&manifest)
        .acquire()
        .unwrap();
    assert_eq!(
        by_name.databases()[0].0,
        tmp.path().canonicalize().unwrap().join("letters.duckdb")
    );
    drop(by_name);
    let msg = usage(Lock::write("/dev/null"));
    assert!(msg.contains("character device"), "{msg}");
    let msg = usage(Lock::write(tmp.path().join("no/such/dir/app.db")));
    assert!(msg.contains("does not exist"), "{msg}");
    let msg = usage(Lock::read(db(&tmp)).and_write(db(&tmp)));
    assert!(msg.contains("both read and written"), "{msg}");
    assert_eq!("exclusive".parse::<Mode>(), Ok(Mode::Write));
    assert!("append".parse::<Mode>().is_err());
    assert!(!tmp.path().join("no").exists());
}

// A program that locks the same database again and again reuses the file
// of its last ticket (its spare) instead of making one per lock: the reuse
// happens, a waiter behind a reused ticket is woken at its release, and a
// spare left by a process that is gone is cleared away.

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
