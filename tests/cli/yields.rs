//! `yields = true`: a long-running reader gives way to a writer that queues
//! behind it (from another terminal), and comes back after it.

use crate::*;

fn manifest(env: &Env, yields: bool) {
    env.manifest(format!(
            "[settings]\nstop_timeout = \"2s\"\n[programs.web]\ncommand = [\"{BIN}\", \"__probe\", \"--label\", \"web\", \"--log\", \"{}\", \"--hold\", \"1h\"]\nreads = [\"app.db\"]\nyields = {yields}\n",
            env.log().display()
        ));
}

fn times(env: &Env, label: &str, what: &str) -> Vec<u128> {
    env.events()
        .iter()
        .filter(|e| e.label == label && e.what == what)
        .map(|e| e.ns)
        .collect()
}

#[test]
fn a_yielding_reader_lets_a_writer_in_and_comes_back() {
    let env = Env::new();
    manifest(&env, true);
    let run = env.spawn(&["run", "web"]);
    env.wait_event("web", |e| e.label == "web" && e.what == "start");
    for round in 0..2 {
        let label = format!("writer{round}");
        let o = wait_output(env.spawn(&with_cmd(
            &["exec", "--write", "app.db"],
            &env.probe(&label, &["--hold", "50ms"]),
        )));
        assert!(o.status.success(), "{}", text(&o.stderr));
        let w_start = times(&env, &label, "start")[0];
        let w_end = times(&env, &label, "end")[0];
        // web was stopped before the writer started, and came back after.
        assert!(times(&env, "web", "end")[round] < w_start);
        env.wait_event("web to come back", |e| {
            e.label == "web" && e.what == "start" && e.ns > w_end
        });
    }
    assert_eq!(
        times(&env, "web", "got SIGTERM").len(),
        2,
        "stopped gracefully each time"
    );
    let o = env.run(&["stop"]);
    assert!(
        text(&o.stdout).contains("stopped web"),
        "{}",
        text(&o.stdout)
    );
    let o = wait_output(run);
    assert_eq!(
        code(&o),
        0,
        "yielding is not a failure: {}",
        text(&o.stderr)
    );
    let err = text(&o.stderr);
    assert!(
        err.contains("yielding") && err.contains("which waits to write"),
        "{err}"
    );
}

#[test]
fn without_yields_the_writer_waits_and_its_wait_names_the_reader() {
    let env = Env::new();
    manifest(&env, false);
    let run = env.spawn(&["run", "web"]);
    env.wait_event("web", |e| e.label == "web" && e.what == "start");
    let o = env.run(&["exec", "--wait", "300ms", "--write", "app.db", "--", "true"]);
    assert_eq!(code(&o), 75);
    assert!(text(&o.stderr).contains("web (pid"), "{}", text(&o.stderr));
    assert_eq!(times(&env, "web", "end").len(), 0, "web was not disturbed");
    env.run(&["stop"]);
    assert_eq!(code(&wait_output(run)), 0);
}
