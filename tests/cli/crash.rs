//! Crash safety: the kernel releases a lock exactly when the last process
//! that may touch the database is gone, never earlier, never later.

use crate::*;

fn free(env: &Env) -> std::process::Output {
    env.run(&["exec", "--no-wait", "--write", "app.db", "--", "true"])
}

#[test]
fn sigkill_of_the_command_releases_the_lock_at_once() {
    let env = Env::new();
    let pidfile = env.path("pids");
    let mut exec = env.spawn(&with_cmd(
        &["exec", "--write", "app.db"],
        &env.probe(
            "p",
            &["--hold", "60s", "--pidfile", pidfile.to_str().unwrap()],
        ),
    ));
    wait_until("the command's pid", || !pids_in(&pidfile).is_empty());
    assert_eq!(code(&free(&env)), 75);
    kill(pids_in(&pidfile)[0], libc::SIGKILL);
    assert_eq!(wait_status(&mut exec).code(), Some(137));
    let o = free(&env);
    assert_eq!(code(&o), 0, "{}", text(&o.stderr));
}

#[test]
fn sigkill_of_dblaunch_never_frees_a_database_while_its_command_lives() {
    let env = Env::new();
    let pidfile = env.path("pids");
    let go = env.path("go");
    let mut exec = env.spawn(&with_cmd(
        &["exec", "--name", "keeper", "--write", "app.db"],
        &env.probe(
            "p",
            &[
                "--grandchild",
                "--until",
                go.to_str().unwrap(),
                "--pidfile",
                pidfile.to_str().unwrap(),
            ],
        ),
    ));
    wait_until("command and grandchild", || {
        let events = env.events();
        ["p", "p-grandchild"]
            .iter()
            .all(|l| events.iter().any(|e| e.label == *l && e.what == "start"))
    });
    let pid_of = |label: &str| {
        env.events()
            .iter()
            .find(|e| e.label == label && e.what == "start")
            .and_then(|e| e.pid)
            .unwrap()
    };
    let (child, grandchild) = (pid_of("p"), pid_of("p-grandchild"));
    kill(exec.id() as i32, libc::SIGKILL);
    exec.wait().unwrap();
    // PR_SET_PDEATHSIG takes the command with dblaunch ...
    wait_until("the command to die with dblaunch", || !alive(child));
    // ... but the grandchild still has the inherited lock, so the database
    // stays locked, and the message names it.
    assert!(alive(grandchild));
    let o = free(&env);
    assert_eq!(code(&o), 75);
    let err = text(&o.stderr);
    assert!(err.contains("leftover process of keeper"), "{err}");
    assert!(err.contains(&format!("pid {grandchild}")), "{err}");
    touch(&go);
    wait_until("the grandchild to finish", || !alive(grandchild));
    // The kernel drops the lock when the grandchild's last thread has closed
    // its files, which may come a moment after its main thread shows as a
    // zombie (the probe has a signal thread); until it is reaped there is no
    // earlier sign. So the database must become free, not be free at once.
    wait_until("the database to be free after the grandchild", || {
        let o = free(&env);
        match code(&o) {
            0 => true,
            75 => false,
            other => panic!("exit status {other}: {}", text(&o.stderr)),
        }
    });
}

#[test]
fn a_dblaunch_killed_while_queueing_leaves_nothing_behind() {
    let env = Env::new();
    let go = env.path("go");
    let holder = env.holder(&["exec", "--write", "app.db"], "h");
    let mut waiter = env.spawn(&["exec", "--write", "app.db", "--", "true"]);
    wait_until("the waiter to queue", || env.tickets("app.db") == 2);
    waiter.kill().unwrap();
    waiter.wait().unwrap();
    touch(&go);
    assert!(wait_output(holder).status.success());
    assert_eq!(code(&free(&env)), 0);
    assert_eq!(env.tickets("app.db"), 0);
}
