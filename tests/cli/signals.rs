//! Signals: forwarded to the whole process group, stop escalation, second
//! Ctrl-C, leftovers of the group stopped, nothing left running.

use crate::*;

const SIGTERM: i32 = libc::SIGTERM;
const SIGINT: i32 = libc::SIGINT;

fn got(env: &Env, label: &str, sig: &str) -> bool {
    env.events()
        .iter()
        .any(|e| e.label == label && e.what == format!("got {sig}"))
}

#[test]
fn sigterm_reaches_every_process_of_the_group_and_escalates_to_sigkill() {
    let env = Env::new();
    let pidfile = env.path("pids");
    let term = SIGTERM.to_string();
    let mut exec = env.spawn(&with_cmd(
        &["exec", "--write", "app.db", "--stop-timeout", "300ms"],
        &env.probe(
            "p",
            &[
                "--grandchild",
                "--hold",
                "60s",
                "--ignore",
                &term,
                "--pidfile",
                pidfile.to_str().unwrap(),
            ],
        ),
    ));
    wait_until("both probes", || pids_in(&pidfile).len() == 2);
    kill(exec.id() as i32, SIGTERM);
    let status = wait_status(&mut exec);
    assert_eq!(status.code(), Some(143));
    assert!(got(&env, "p", "SIGTERM"));
    assert!(got(&env, "p-grandchild", "SIGTERM"));
    for pid in pids_in(&pidfile) {
        assert!(!alive(pid), "pid {pid} survived");
    }
    let err = stderr_of(&mut exec);
    assert!(err.contains("did not stop within 300ms"), "{err}");
    assert_eq!(
        code(&env.run(&["exec", "--no-wait", "--write", "app.db", "--", "true"])),
        0
    );
}

#[test]
fn other_signals_are_forwarded_and_the_command_goes_on() {
    let env = Env::new();
    let go = env.path("go");
    let usr1 = libc::SIGUSR1.to_string();
    let hup = libc::SIGHUP.to_string();
    let mut exec = env.spawn(&with_cmd(
        &["exec", "--write", "app.db"],
        &env.probe(
            "p",
            &[
                "--until",
                go.to_str().unwrap(),
                "--ignore",
                &usr1,
                "--ignore",
                &hup,
            ],
        ),
    ));
    env.wait_event("probe", |e| e.what == "start");
    kill(exec.id() as i32, libc::SIGUSR1);
    wait_until("SIGUSR1 to arrive", || got(&env, "p", "SIGUSR1"));
    kill(exec.id() as i32, libc::SIGHUP);
    wait_until("SIGHUP to arrive", || got(&env, "p", "SIGHUP"));
    touch(&go);
    assert_eq!(wait_status(&mut exec).code(), Some(0));
}

#[test]
fn a_second_sigint_kills_at_once() {
    let env = Env::new();
    let pidfile = env.path("pids");
    let int = SIGINT.to_string();
    let mut exec = env.spawn(&with_cmd(
        &["exec", "--write", "app.db", "--stop-timeout", "1h"],
        &env.probe(
            "p",
            &[
                "--hold",
                "1h",
                "--ignore",
                &int,
                "--pidfile",
                pidfile.to_str().unwrap(),
            ],
        ),
    ));
    wait_until("probe", || pids_in(&pidfile).len() == 1);
    kill(exec.id() as i32, SIGINT);
    wait_until("the first SIGINT to arrive", || got(&env, "p", "SIGINT"));
    kill(exec.id() as i32, SIGINT);
    // With a 1 h stop timeout, only the second SIGINT can end it in time.
    assert_eq!(wait_status(&mut exec).code(), Some(130));
    assert!(!alive(pids_in(&pidfile)[0]));
}

#[test]
fn what_is_left_of_the_group_after_the_command_exits_is_stopped() {
    let env = Env::new();
    let pidfile = env.path("pids");
    let probe = env
        .probe(
            "bg",
            &["--hold", "1h", "--pidfile", pidfile.to_str().unwrap()],
        )
        .join(" ");
    let script = format!(
        "{probe} & while [ ! -s {} ]; do sleep 0.01; done; exit 3",
        pidfile.display()
    );
    let o = env.run(&["exec", "--write", "app.db", "--", "sh", "-c", &script]);
    assert_eq!(code(&o), 3, "{}", text(&o.stderr));
    let bg = pids_in(&pidfile)[0];
    assert!(!alive(bg), "the background process of the command survived");
    assert!(got(&env, "bg", "SIGTERM"));
    assert_eq!(
        code(&env.run(&["exec", "--no-wait", "--write", "app.db", "--", "true"])),
        0
    );
}

#[test]
fn sigterm_while_queueing_exits_143_and_gives_up_the_place() {
    let env = Env::new();
    let go = env.path("go");
    let holder = env.holder(&["exec", "--write", "app.db"], "h");
    let mut waiter = env.spawn(&with_cmd(
        &["exec", "--write", "app.db"],
        &env.probe("never", &[]),
    ));
    wait_until("waiter queued", || env.tickets("app.db") == 2);
    kill(waiter.id() as i32, SIGTERM);
    assert_eq!(wait_status(&mut waiter).code(), Some(143));
    assert_eq!(env.tickets("app.db"), 1, "the waiter's ticket is gone");
    touch(&go);
    wait_output(holder);
    assert!(!env.events().iter().any(|e| e.label == "never"));
}

/// The program starts with nothing blocked and SIGPIPE at its default,
/// although dblaunch ignores SIGPIPE and blocks every signal while it
/// starts a program. (Signals ignored by whoever started dblaunch stay
/// ignored, as across any exec.)
#[test]
fn the_program_starts_with_sigpipe_default_and_no_signal_blocked() {
    let env = Env::new();
    let out = env.run(&[
        "exec",
        "--write",
        "app.db",
        "--",
        "cat",
        "/proc/self/status",
    ]);
    assert_eq!(code(&out), 0, "{}", text(&out.stderr));
    let status = text(&out.stdout);
    let mask = |field: &str| {
        let line = status
            .lines()
            .find(|l| l.starts_with(field))
            .unwrap_or_else(|| panic!("no {field} in {status}"));
        u64::from_str_radix(line[field.len() + 1..].trim(), 16).unwrap()
    };
    assert_eq!(mask("SigBlk:"), 0, "the program inherited blocked signals");
    let sigpipe = 1u64 << (libc::SIGPIPE - 1);
    assert_eq!(
        mask("SigIgn:") & sigpipe,
        0,
        "the program inherited SIGPIPE ignored"
    );
}

/// A bare command name is looked up in the PATH the program gets (the
/// manifest's `env`), as a shell would.
#[test]
fn a_bare_name_is_found_in_the_programs_own_path() {
    let env = Env::new();
    let bin = env.path("bin");
    std::fs::create_dir(&bin).unwrap();
    let tool = bin.join("only-here");
    std::fs::write(&tool, "#!/bin/sh\necho found-in-manifest-path\n").unwrap();
    std::fs::set_permissions(&tool, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    env.manifest(format!(
        "[programs.p]\ncommand = [\"only-here\"]\nwrites = [\"app.db\"]\nenv = {{ PATH = \"{}:/usr/bin:/bin\" }}\n",
        bin.display()
    ));
    let out = env.run(&["run", "p"]);
    assert_eq!(code(&out), 0, "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("found-in-manifest-path"));
}
