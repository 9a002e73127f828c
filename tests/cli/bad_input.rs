//! Bad input: a clear message, the spec's status, nothing left locked.

use std::fs;
use std::os::unix::fs::PermissionsExt;

use crate::*;

fn free(env: &Env, db: &str) -> bool {
    code(&env.run(&["exec", "--no-wait", "--write", db, "--", "true"])) == 0
}

#[test]
fn a_database_in_a_missing_directory_is_a_usage_error() {
    let env = Env::new();
    let o = env.run(&["exec", "--write", "nope/app.db", "--", "true"]);
    assert_eq!(code(&o), 2);
    let err = text(&o.stderr);
    assert!(
        err.contains("nope") && err.contains("does not exist"),
        "{err}"
    );
    assert!(!err.contains("panicked"));
}

#[test]
fn a_path_through_a_file_is_a_usage_error() {
    let env = Env::new();
    fs::write(env.path("file"), "").unwrap();
    let o = env.run(&["exec", "--write", "file/app.db", "--", "true"]);
    assert_eq!(code(&o), 2, "{}", text(&o.stderr));
    assert!(text(&o.stderr).contains("not a directory"));
}

#[test]
fn something_in_the_way_of_the_lock_directory_is_named() {
    let env = Env::new();
    fs::write(env.path(".app.db.dblaunch"), "").unwrap();
    let o = env.run(&["exec", "--write", "app.db", "--", "true"]);
    assert_eq!(code(&o), 1);
    assert!(
        text(&o.stderr).contains(".app.db.dblaunch is in the way"),
        "{}",
        text(&o.stderr)
    );
    // A symlink there is never followed.
    fs::remove_file(env.path(".app.db.dblaunch")).unwrap();
    fs::create_dir(env.path("elsewhere")).unwrap();
    std::os::unix::fs::symlink("elsewhere", env.path(".app.db.dblaunch")).unwrap();
    let o = env.run(&["exec", "--write", "app.db", "--", "true"]);
    assert_eq!(code(&o), 1);
    assert_eq!(fs::read_dir(env.path("elsewhere")).unwrap().count(), 0);
}

#[test]
fn an_unwritable_lock_location_is_a_clear_failure() {
    let env = Env::new();
    fs::create_dir(env.path("ro")).unwrap();
    fs::set_permissions(env.path("ro"), fs::Permissions::from_mode(0o555)).unwrap();
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    let o = if root {
        // Root ignores permissions; run as nobody instead.
        fs::set_permissions(env.dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
        let out = Command::new("setpriv")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups", BIN])
            .args(["exec", "--write", "ro/app.db", "--", "true"])
            .current_dir(env.dir.path())
            .output();
        match out {
            Ok(o) => o,
            Err(e) => {
                eprintln!("skipped: setpriv unavailable ({e})");
                return;
            }
        }
    } else {
        env.run(&["exec", "--write", "ro/app.db", "--", "true"])
    };
    assert_eq!(code(&o), 1, "{}", text(&o.stderr));
    let err = text(&o.stderr);
    assert!(
        err.contains("cannot create the lock directory") && err.contains("Permission denied"),
        "{err}"
    );
}

#[test]
fn a_read_only_filesystem_is_a_clear_failure() {
    let env = Env::new();
    fs::create_dir(env.path("rofs")).unwrap();
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "ro,size=64k", "tmpfs"])
        .arg(env.path("rofs"))
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !mounted {
        eprintln!("skipped: cannot mount a read-only tmpfs here (not root?)");
        return;
    }
    let o = env.run(&["exec", "--read", "rofs/app.db", "--", "true"]);
    let _ = Command::new("umount").arg(env.path("rofs")).status();
    assert_eq!(code(&o), 1);
    assert!(
        text(&o.stderr).contains("Read-only file system"),
        "{}",
        text(&o.stderr)
    );
}

#[test]
fn garbage_in_a_dead_ticket_is_cleared_away() {
    let env = Env::new();
    assert!(free(&env, "app.db"));
    let dir = env.path(".app.db.dblaunch");
    fs::write(dir.join("00000000000000000100.w"), b"\xff\xfe not json").unwrap();
    fs::write(dir.join("gate"), b"garbage counter").unwrap();
    fs::write(dir.join("README"), b"a stranger's file is ignored").unwrap();
    assert!(free(&env, "app.db"));
    assert!(!dir.join("00000000000000000100.w").exists());
    assert!(dir.join("README").exists());
}

#[test]
fn a_live_ticket_with_a_corrupt_record_still_blocks_and_is_reported() {
    let env = Env::new();
    assert!(free(&env, "app.db"));
    let ticket = env.path(".app.db.dblaunch/00000000000000000100.w");
    fs::write(&ticket, b"garbage").unwrap();
    // flock(1) holds the ticket's lock the way a (foreign) owner would.
    // -o: flock(1) itself holds the lock, not `sleep`, so killing it frees it.
    let mut holder = Command::new("flock")
        .arg("-o")
        .arg(&ticket)
        .args(["sleep", "30"])
        .spawn()
        .expect("flock(1)");
    wait_until("flock to take the ticket", || {
        fs::read_to_string("/proc/locks")
            .unwrap_or_default()
            .lines()
            .count()
            > 0
            && Command::new("flock")
                .args(["-n", "-s"])
                .arg(&ticket)
                .arg("true")
                .status()
                .is_ok_and(|s| !s.success())
    });
    let o = env.run(&["exec", "--no-wait", "--write", "app.db", "--", "true"]);
    assert_eq!(code(&o), 75);
    assert!(
        text(&o.stderr).contains("cannot be read"),
        "{}",
        text(&o.stderr)
    );
    holder.kill().unwrap();
    holder.wait().unwrap();
    assert!(free(&env, "app.db"));
}

/// Generated text to a closed pipe (`dblaunch completions bash | head`) is
/// not an error; to a full disk it is one, said in a sentence. Never a
/// panic.
#[test]
fn completions_and_the_man_page_to_a_closed_pipe_or_a_full_disk() {
    let env = Env::new();
    for args in [&["completions", "bash"][..], &["man"][..]] {
        // A pipe whose reading end is closed before dblaunch starts: its
        // first write fails with EPIPE, every time.
        let (read, write) = nix::unistd::pipe().unwrap();
        drop(read);
        let o = env
            .cmd(args)
            .stdout(std::process::Stdio::from(write))
            .stderr(std::process::Stdio::piped())
            .output()
            .unwrap();
        assert_eq!(code(&o), 0, "{args:?}: {}", text(&o.stderr));
        assert_eq!(text(&o.stderr), "", "{args:?}");
        let full = fs::OpenOptions::new()
            .write(true)
            .open("/dev/full")
            .unwrap();
        let o = env
            .cmd(args)
            .stdout(std::process::Stdio::from(full))
            .stderr(std::process::Stdio::piped())
            .output()
            .unwrap();
        let err = text(&o.stderr);
        assert_eq!(code(&o), 1, "{args:?}: {err}");
        assert!(err.contains("No space left on device"), "{err}");
        assert!(!err.contains("panicked"), "{err}");
    }
}
