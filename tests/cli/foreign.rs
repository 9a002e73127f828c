//! Processes that lock the database file itself, outside dblaunch (as DuckDB,
//! RocksDB and SQLite writers do with POSIX locks), are named, not crashed into.

use crate::*;

/// A python3 process holding a POSIX write lock on `file` until `go` exists.
/// Its command line names the test's directory (`go` is absolute), so a
/// failed test's clean-up finds and ends it.
fn python_locker(env: &Env, file: &str, go: &str) -> Child {
    let go = env.path(go).display().to_string();
    let script = format!(
        "import fcntl, os, time\n\
         f = open({file:?}, 'a+')\n\
         fcntl.lockf(f, fcntl.LOCK_EX)\n\
         open('locked', 'w').close()\n\
         while not os.path.exists({go:?}): time.sleep(0.01)\n"
    );
    Command::new("python3")
        .args(["-c", &script])
        .current_dir(env.dir.path())
        .spawn()
        .expect("python3")
}

#[test]
fn a_foreign_posix_lock_is_named_with_pid_and_command() {
    let env = Env::new();
    let mut py = python_locker(&env, "app.db", "go");
    wait_until("python to lock", || env.path("locked").exists());
    let o = env.run(&["exec", "--no-wait", "--write", "app.db", "--", "true"]);
    assert_eq!(code(&o), 75);
    let err = text(&o.stderr);
    assert!(err.contains(&format!("pid {}", py.id())), "{err}");
    assert!(
        err.contains("python3") && err.contains("outside dblaunch"),
        "{err}"
    );
    // A bounded wait gives up the same way and leaves no ticket.
    let o = env.run(&["exec", "--wait", "300ms", "--write", "app.db", "--", "true"]);
    assert_eq!(code(&o), 75);
    assert!(text(&o.stderr).contains("in use outside dblaunch"));
    assert_eq!(env.tickets("app.db"), 0);
    // Without a limit, dblaunch waits for it to let go, then runs.
    let waiter = env.spawn(&["exec", "--write", "app.db", "--", "touch", "ran"]);
    std::thread::sleep(Duration::from_millis(300));
    assert!(!env.path("ran").exists());
    touch(&env.path("go"));
    py.wait().unwrap();
    assert!(wait_output(waiter).status.success());
    assert!(env.path("ran").exists());
}

#[test]
fn a_lock_inside_a_directory_database_counts_too() {
    let env = Env::new();
    std::fs::create_dir(env.path("db")).unwrap();
    let mut py = python_locker(&env, "db/LOCK", "go");
    wait_until("python to lock", || env.path("locked").exists());
    // `./db`: a bare `db` would be a name from the manifest's [databases].
    let o = env.run(&["exec", "--no-wait", "--read", "./db", "--", "true"]);
    assert_eq!(code(&o), 75, "{}", text(&o.stderr));
    touch(&env.path("go"));
    py.wait().unwrap();
}
