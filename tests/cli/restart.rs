//! Restart policies: a crashing program comes back after growing delays and
//! is given up after `max_restarts`; while it is down its locks are free, so
//! a writer queued behind a crash loop gets in.

use std::fs;

use crate::*;

fn starts_and_ends(env: &Env, label: &str) -> (Vec<u128>, Vec<u128>) {
    let ev = env.events();
    let pick = |what: &str| {
        ev.iter()
            .filter(|e| e.label == label && e.what == what)
            .map(|e| e.ns)
            .collect()
    };
    (pick("start"), pick("end"))
}

#[test]
fn a_crashing_program_is_restarted_with_growing_delays_then_given_up() {
    let env = Env::new();
    env.manifest(
        env.probe_program(
            "crash",
            r#", "--exit", "3""#,
            "restart = \"on-failure\"\nmax_restarts = 3\nwrites = [\"app.db\"]",
        ) + &env.probe_program("fine", "", "restart = \"on-failure\""),
    );
    let o = env.run(&["run", "crash", "fine"]);
    assert_eq!(
        code(&o),
        3,
        "the program's code once given up: {}",
        text(&o.stderr)
    );
    let err = text(&o.stderr);
    assert!(
        err.contains("restarting in 100ms (restart 1 of at most 3 in a row)"),
        "{err}"
    );
    assert!(err.contains("restarting in 200ms (restart 2"), "{err}");
    assert!(err.contains("restarting in 400ms (restart 3"), "{err}");
    assert!(err.contains("giving up after 3 restarts in a row"), "{err}");
    let (starts, ends) = starts_and_ends(&env, "crash");
    assert_eq!(starts.len(), 4, "the first run and 3 restarts");
    for (n, min_ms) in [(0, 100u128), (1, 200), (2, 400)] {
        let gap = (starts[n + 1] - ends[n]) / 1_000_000;
        assert!(
            gap >= min_ms,
            "restart {} came after {gap} ms, before its {min_ms} ms delay",
            n + 1
        );
    }
    // on-failure does not restart a program that succeeded.
    assert_eq!(starts_and_ends(&env, "fine").0.len(), 1);
    assert_eq!(env.tickets("app.db"), 0);
}

#[test]
fn a_writer_queued_behind_a_crash_loop_gets_in() {
    let env = Env::new();
    env.manifest(
        "[settings]\nstop_timeout = \"1s\"\n".to_owned()
            + &env.probe_program(
                "loop",
                r#", "--hold", "300ms", "--exit", "1""#,
                "restart = \"always\"\nmax_restarts = 100\nwrites = [\"app.db\"]",
            ),
    );
    let run = env.spawn(&["run", "loop"]);
    env.wait_event("the loop's first run", |e| {
        e.label == "loop" && e.what == "start"
    });
    let writer = env.spawn(&with_cmd(
        &["exec", "--write", "app.db"],
        &env.probe("writer", &["--hold", "50ms"]),
    ));
    assert!(wait_output(writer).status.success());
    let (starts, _) = starts_and_ends(&env, "loop");
    let ev = env.events();
    let w = ev
        .iter()
        .find(|e| e.label == "writer" && e.what == "end")
        .unwrap()
        .ns;
    // The writer ran in a gap of the loop, not after it gave up.
    env.wait_event("the loop to come back after the writer", |e| {
        e.label == "loop" && e.what == "start" && e.ns > w
    });
    assert!(
        starts.len() <= 3,
        "the writer waited through {} runs of the loop",
        starts.len()
    );
    let o = env.run(&["stop"]);
    assert!(text(&o.stdout).contains("loop"), "{}", text(&o.stdout));
    assert_eq!(code(&wait_output(run)), 0);
}

#[test]
fn a_failed_program_restarted_on_request_that_then_succeeds_leaves_the_run_successful() {
    let env = Env::new();
    let ok = env.path("ok");
    let go = env.path("go");
    env.manifest(
        format!(
            "[programs.flaky]\ncommand = \"echo try >> tries; test -e {}\"\nwrites = [\"app.db\"]\n",
            ok.display()
        ) + &env.probe_program("keeper", &format!(r#", "--until", "{}""#, go.display()), ""),
    );
    let run = env.spawn(&["run", "flaky", "keeper"]);
    env.wait_event("keeper", |e| e.label == "keeper" && e.what == "start");
    let ended = |state: &str| {
        let o = env.run(&["ps"]);
        text(&o.stdout)
            .lines()
            .any(|l| l.starts_with("flaky") && l.contains(state))
    };
    wait_until("flaky to fail", || ended("exited 1"));
    touch(&ok);
    let o = env.run(&["restart", "flaky"]);
    assert_eq!(code(&o), 0, "{}", text(&o.stderr));
    wait_until("flaky to succeed", || ended("exited 0"));
    assert_eq!(
        fs::read_to_string(env.path("tries"))
            .unwrap()
            .lines()
            .count(),
        2
    );
    touch(&go);
    let o = wait_output(run);
    assert_eq!(
        code(&o),
        0,
        "the restarted program succeeded, so the run did: {}",
        text(&o.stderr)
    );
}
