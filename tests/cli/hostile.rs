//! A hostile filesystem and environment: each case gives a clear error or
//! the right behaviour, loses nothing, and leaves nothing locked.

use std::fs;
use std::os::unix::fs::PermissionsExt;

use crate::*;

fn free(env: &Env, db: &str) -> bool {
    code(&env.run(&["exec", "--no-wait", "--write", db, "--", "true"])) == 0
}

/// Removes a lock directory as `rm -rf` would, again until it is gone: a
/// dblaunch may still be appending a line to the lock journal there just
/// after its ticket appears (or its command starts), and a file made during
/// the removal fails it with ENOTEMPTY (seen once in a loaded suite).
fn remove_lock_dir(env: &Env, name: &str) {
    wait_until(
        "the lock directory to be removed",
        || match fs::remove_dir_all(env.path(name)) {
            Ok(()) => true,
            Err(e) if e.kind() == std::io::ErrorKind::DirectoryNotEmpty => false,
            Err(e) => panic!("cannot remove {name}: {e}"),
        },
    );
}

#[test]
fn the_lock_directory_removed_while_waiting() {
    let env = Env::new();
    let go = env.path("go");
    let holder = env.holder(&["exec", "--write", "app.db"], "h");
    let mut waiter = env.spawn(&with_cmd(
        &["exec", "--write", "app.db"],
        &env.probe("w", &[]),
    ));
    wait_until("the waiter to queue", || env.tickets("app.db") == 2);
    remove_lock_dir(&env, ".app.db.dblaunch");
    touch(&go);
    assert!(wait_output(holder).status.success());
    // Its place in the queue is gone with the directory: newcomers could
    // not see it, so it must not run.
    assert_eq!(wait_status(&mut waiter).code(), Some(1));
    let err = stderr_of(&mut waiter);
    assert!(err.contains("was removed while dblaunch waited"), "{err}");
    assert!(!env.events().iter().any(|e| e.label == "w"));
    assert!(free(&env, "app.db"));
}

#[test]
fn the_lock_directory_removed_while_a_command_runs_lets_nobody_in_beside_it() {
    let env = Env::new();
    let go = env.path("go");
    let holder = env.holder(&["exec", "--name", "keeper", "--write", "app.db"], "h");
    remove_lock_dir(&env, ".app.db.dblaunch");
    // Newcomers make the directory again and must not run beside keeper:
    // they fail as busy (waiting or not), naming it.
    for args in [
        vec!["exec", "--no-wait", "--read", "app.db"],
        vec!["exec", "--write", "app.db"],
        vec!["exec", "--wait", "10m", "--write", "app.db"],
    ] {
        let o = env.run(&with_cmd(&args, &env.probe("beside", &[])));
        let err = text(&o.stderr);
        assert_eq!(code(&o), 75, "{err}");
        assert!(
            err.contains("keeper") && err.contains("was removed"),
            "{err}"
        );
    }
    assert!(!env.events().iter().any(|e| e.label == "beside"));
    let table = text(&env.run(&["status", "app.db"]).stdout);
    assert!(table.contains("keeper (lock directory removed)"), "{table}");
    touch(&go);
    assert!(wait_output(holder).status.success());
    // Once it has ended, the database is free again.
    let o = env.run(&["exec", "--no-wait", "--write", "app.db", "--", "true"]);
    assert_eq!(code(&o), 0, "{}", text(&o.stderr));
    let gate = fs::read_to_string(env.path(".app.db.dblaunch/gate")).unwrap();
    assert!(!gate.contains("orphans"), "{gate}");
}

#[test]
fn a_fifo_a_device_or_a_socket_is_refused_and_nothing_is_created() {
    let env = Env::new();
    assert!(
        Command::new("mkfifo")
            .arg(env.path("pipe.db"))
            .status()
            .unwrap()
            .success()
    );
    let _sock = std::os::unix::net::UnixListener::bind(env.path("sock.db")).unwrap();
    std::os::unix::fs::symlink("/dev/null", env.path("null.db")).unwrap();
    let marker = env.path("ran");
    let cmd = ["--", "touch", marker.to_str().unwrap()];
    for (db, kind) in [
        ("pipe.db", "a FIFO"),
        ("sock.db", "a socket"),
        ("null.db", "a character device"),
        ("/dev/null", "a character device"),
    ] {
        for mode in ["--write", "--read"] {
            let mut args = vec!["exec", mode, db];
            args.extend(cmd);
            let o = env.run(&args);
            let err = text(&o.stderr);
            assert_eq!(code(&o), 2, "{db}: {err}");
            assert!(
                err.contains(kind) && err.contains("not a database file"),
                "{err}"
            );
        }
    }
    assert!(!marker.exists(), "the command ran");
    for lock_dir in [
        ".pipe.db.dblaunch",
        ".sock.db.dblaunch",
        ".null.db.dblaunch",
    ] {
        assert!(!env.path(lock_dir).exists(), "{lock_dir} was created");
    }
    assert!(!Path::new("/dev/.null.dblaunch").exists());
}

#[test]
fn a_dangling_symlink_as_the_database() {
    let env = Env::new();
    std::os::unix::fs::symlink("target.db", env.path("link.db")).unwrap();
    let holder = env.spawn(&with_cmd(
        &["exec", "--write", "link.db"],
        &env.probe("h", &["--until", env.path("go").to_str().unwrap()]),
    ));
    env.wait_event("holder", |e| e.what == "start");
    // The link and its (not yet created) target are one database.
    let o = env.run(&["exec", "--no-wait", "--read", "target.db", "--", "true"]);
    assert_eq!(code(&o), 75, "{}", text(&o.stderr));
    touch(&env.path("go"));
    wait_output(holder);
}

#[test]
fn a_symlink_planted_as_a_ticket_or_gate_is_never_followed() {
    let env = Env::new();
    assert!(free(&env, "app.db"));
    let victim = env.path("victim.txt");
    fs::write(&victim, "precious").unwrap();
    let dir = env.path(".app.db.dblaunch");
    std::os::unix::fs::symlink(&victim, dir.join("00000000000000000050.w")).unwrap();
    // Waiting past it, and with --no-wait.
    assert!(free(&env, "app.db"));
    std::os::unix::fs::symlink(&victim, dir.join("00000000000000000051.r")).unwrap();
    assert_eq!(
        code(&env.run(&["exec", "--write", "app.db", "--", "true"])),
        0
    );
    assert!(!dir.join("00000000000000000050.w").exists());
    assert!(fs::symlink_metadata(dir.join("00000000000000000051.r")).is_err());
    // A gate replaced by a link: refused, with a message, nothing written.
    fs::remove_file(dir.join("gate")).unwrap();
    std::os::unix::fs::symlink(&victim, dir.join("gate")).unwrap();
    let o = env.run(&["exec", "--write", "app.db", "--", "true"]);
    assert_eq!(code(&o), 1);
    assert!(text(&o.stderr).contains("gate"), "{}", text(&o.stderr));
    assert_eq!(fs::read_to_string(&victim).unwrap(), "precious");
    assert!(fs::symlink_metadata(&victim).unwrap().file_type().is_file());
}

#[test]
fn a_directory_that_may_not_be_entered() {
    let env = Env::new();
    fs::create_dir(env.path("closed")).unwrap();
    fs::set_permissions(env.path("closed"), fs::Permissions::from_mode(0o700)).unwrap();
    fs::set_permissions(env.dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipped: needs root to run as another user");
        return;
    }
    let o = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", BIN])
        .args(["exec", "--write", "closed/app.db", "--", "true"])
        .current_dir(env.dir.path())
        .output()
        .unwrap();
    assert_eq!(code(&o), 1, "{}", text(&o.stderr));
    assert!(
        text(&o.stderr).contains("Permission denied"),
        "{}",
        text(&o.stderr)
    );
}

#[test]
fn a_full_filesystem() {
    let env = Env::new();
    fs::create_dir(env.path("full")).unwrap();
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=16k", "tmpfs"])
        .arg(env.path("full"))
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !mounted {
        eprintln!("skipped: cannot mount a small tmpfs here (not root?)");
        return;
    }
    // Fill it up.
    let _ = Command::new("dd")
        .args(["if=/dev/zero", "bs=1k", "count=64"])
        .arg(format!("of={}", env.path("full/filler").display()))
        .stderr(Stdio::null())
        .status();
    let o = env.run(&["exec", "--write", "full/app.db", "--", "true"]);
    let err = text(&o.stderr);
    let _ = Command::new("umount").arg(env.path("full")).status();
    assert_eq!(code(&o), 1, "{err}");
    assert!(err.contains("No space left on device"), "{err}");
}

#[test]
fn no_home_no_runtime_dir_and_thousands_of_inherited_descriptors() {
    let env = Env::new();
    let o = Command::new(BIN)
        .args(["exec", "--write", "app.db", "--", "true"])
        .current_dir(env.dir.path())
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap())
        .output()
        .unwrap();
    assert_eq!(code(&o), 0, "{}", text(&o.stderr));
    // 3000 inheritable descriptors (fd numbers far above select()'s 1024).
    let script = format!(
        "import os, resource, sys\n\
         resource.setrlimit(resource.RLIMIT_NOFILE, (8192, 8192))\n\
         fds = [os.open('/dev/null', os.O_RDONLY) for _ in range(3000)]\n\
         [os.set_inheritable(f, True) for f in fds]\n\
         os.execv({BIN:?}, [{BIN:?}, 'exec', '--write', 'app.db', '--', 'sh', '-c', 'ls /proc/self/fd | wc -l'])\n"
    );
    let o = Command::new("python3")
        .args(["-c", &script])
        .current_dir(env.dir.path())
        .output()
        .unwrap();
    assert_eq!(code(&o), 0, "{}", text(&o.stderr));
    let n: usize = text(&o.stdout).trim().parse().unwrap();
    assert!(n > 3000, "the command inherits them untouched: {n}");
    assert!(free(&env, "app.db"));
}

#[test]
fn lock_files_are_never_world_writable_and_group_shared_where_the_directory_is() {
    let env = Env::new();
    fs::create_dir(env.path("private")).unwrap();
    fs::create_dir(env.path("shared")).unwrap();
    fs::set_permissions(env.path("shared"), fs::Permissions::from_mode(0o2775)).unwrap();
    let go = env.path("go");
    let a = env.spawn(&with_cmd(
        &["exec", "--write", "private/a.db"],
        &env.probe("a", &["--until", go.to_str().unwrap()]),
    ));
    let b = env.spawn(&with_cmd(
        &["exec", "--write", "shared/b.db"],
        &env.probe("b", &["--until", go.to_str().unwrap()]),
    ));
    env.wait_event("a", |e| e.label == "a" && e.what == "start");
    env.wait_event("b", |e| e.label == "b" && e.what == "start");
    let mode = |p: &std::path::Path| fs::metadata(p).unwrap().permissions().mode() & 0o7777;
    for entry in fs::read_dir(env.path("private/.a.db.dblaunch"))
        .unwrap()
        .flatten()
    {
        assert_eq!(mode(&entry.path()) & 0o022, 0, "{}", entry.path().display());
    }
    assert_eq!(mode(&env.path("private/.a.db.dblaunch")), 0o755);
    assert_eq!(mode(&env.path("shared/.b.db.dblaunch")), 0o2775);
    for entry in fs::read_dir(env.path("shared/.b.db.dblaunch"))
        .unwrap()
        .flatten()
    {
        let m = mode(&entry.path());
        assert_eq!(
            m & 0o002,
            0,
            "never world-writable: {}",
            entry.path().display()
        );
        assert_eq!(
            m & 0o060,
            0o060,
            "group may coordinate: {}",
            entry.path().display()
        );
    }
    touch(&go);
    wait_output(a);
    wait_output(b);
}
