//! `dblaunch run`: scheduling by `after` and by locks, exit statuses, output,
//! signals, all through real manifests and real processes.

use std::fs;

use crate::*;

fn start(ev: &[Event], label: &str) -> u128 {
    ev.iter()
        .find(|e| e.label == label && e.what == "start")
        .unwrap_or_else(|| panic!("{label} never started"))
        .ns
}

fn end(ev: &[Event], label: &str) -> u128 {
    ev.iter()
        .find(|e| e.label == label && e.what == "end")
        .unwrap_or_else(|| panic!("{label} never ended"))
        .ns
}

/// Once `released`'s release of app.db is in the journal, the run has dealt
/// with its end and with `waiter`'s turn: `waiter` must still be queued.
fn assert_queued_after_release(env: &Env, released: &str, waiter: &str) {
    let journal = env.path(".app.db.dblaunch/journal");
    let name = format!("\"{released}\"");
    wait_until(&format!("{released}'s release in the journal"), || {
        fs::read_to_string(&journal).is_ok_and(|j| {
            j.lines()
                .any(|l| l.contains("\"released\"") && l.contains(&name))
        })
    });
    // `ps` is answered by the run's loop, after that.
    let o = env.run(&["ps", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let program = v["programs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["program"] == waiter)
        .cloned()
        .unwrap_or_else(|| panic!("no {waiter} in {v}"));
    assert_eq!(program["state"], "queued", "{program}");
}

#[test]
fn readers_run_together_and_writers_alone() {
    let env = Env::new();
    let go = env.path("go");
    let go = go.display();
    let mut toml = String::from("[databases]\napp = \"app.db\"\n\n");
    // r1 and r2 each hold until both have started: only possible side by side.
    toml += &env.probe_program(
        "r1",
        &format!(", \"--until\", \"{go}\""),
        "reads = [\"app\"]",
    );
    toml += &env.probe_program(
        "r2",
        &format!(", \"--until\", \"{go}\""),
        "reads = [\"app\"]",
    );
    toml += &env.probe_program("w1", ", \"--hold\", \"50ms\"", "writes = [\"app\"]");
    toml += &env.probe_program("w2", ", \"--hold\", \"50ms\"", "writes = [\"app.db\"]");
    toml += &env.probe_program("r3", ", \"--hold\", \"50ms\"", "reads = [\"./app.db\"]");
    env.manifest(&toml);
    let child = env.spawn(&["run", "r1", "r2", "w1", "w2", "r3"]);
    env.wait_event("r1", |e| e.label == "r1" && e.what == "start");
    env.wait_event("r2 beside r1", |e| e.label == "r2" && e.what == "start");
    touch(&env.path("go"));
    let o = wait_output(child);
    assert_eq!(code(&o), 0, "{}", text(&o.stderr));
    let ev = env.events();
    let iv = intervals(&ev);
    assert_eq!(iv.len(), 5);
    for (a, sa, ea) in &iv {
        for (b, sb, eb) in &iv {
            if a < b && sa < eb && sb < ea {
                assert!(
                    a.starts_with('r') && b.starts_with('r'),
                    "{a} overlapped {b}"
                );
            }
        }
    }
    assert_eq!(env.tickets("app.db"), 0);
}

#[test]
fn after_orders_programs_and_a_failure_stops_its_dependents() {
    let env = Env::new();
    let mut toml = env.probe_program("first", ", \"--hold\", \"100ms\"", "");
    toml += &env.probe_program("second", "", "after = [\"first\"]");
    toml += &env.probe_program("bad", ", \"--exit\", \"3\"", "after = [\"second\"]");
    toml += &env.probe_program("never", "", "after = [\"bad\"]");
    toml += &env.probe_program("never2", "", "after = [\"never\"]");
    toml += &env.probe_program("free", ", \"--hold\", \"200ms\"", "");
    toml += "[groups]\nall = [\"first\", \"second\", \"bad\", \"never\", \"never2\", \"free\"]\n";
    env.manifest(&toml);
    let o = env.run(&["run", "all"]);
    assert_eq!(code(&o), 3, "the first failure's code: {}", text(&o.stderr));
    let err = text(&o.stderr);
    assert!(
        err.contains("never: not started, because bad did not succeed"),
        "{err}"
    );
    assert!(
        err.contains("never2: not started, because never did not succeed"),
        "{err}"
    );
    let ev = env.events();
    assert!(start(&ev, "second") > end(&ev, "first"));
    assert!(start(&ev, "bad") > end(&ev, "second"));
    assert!(!ev.iter().any(|e| e.label.starts_with("never")));
    // `free` depends on nothing and ran to its end despite the failure.
    end(&ev, "free");
}

#[test]
fn a_target_pulls_in_what_it_runs_after() {
    let env = Env::new();
    let mut toml = env.probe_program("ingest", "", "");
    toml += &env.probe_program("report", "", "after = [\"ingest\"]");
    toml += &env.probe_program("other", "", "");
    env.manifest(&toml);
    let o = env.run(&["run", "report"]);
    assert_eq!(code(&o), 0);
    assert!(text(&o.stderr).contains("also running ingest: report runs after it"));
    let ev = env.events();
    assert!(start(&ev, "report") > end(&ev, "ingest"));
    assert!(!ev.iter().any(|e| e.label == "other"));
}

#[test]
fn unknown_targets_are_usage_errors_with_a_suggestion() {
    let env = Env::new();
    env.manifest(env.probe_program("ingest", "", ""));
    let o = env.run(&["run", "ingset"]);
    assert_eq!(code(&o), 2);
    assert!(
        text(&o.stderr)
            .contains("`ingset` (did you mean `ingest`?) is neither a program nor a group")
    );
}

#[test]
fn the_manifest_is_found_in_a_parent_directory_or_named() {
    let env = Env::new();
    env.manifest(env.probe_program("p", "", ""));
    fs::create_dir_all(env.path("a/b")).unwrap();
    let o = Command::new(BIN)
        .args(["run", "p"])
        .current_dir(env.path("a/b"))
        .env_remove("DBLAUNCH_FILE")
        .output()
        .unwrap();
    assert_eq!(code(&o), 0, "{}", text(&o.stderr));
    fs::rename(env.path("dblaunch.toml"), env.path("other.toml")).unwrap();
    let o = Command::new(BIN)
        .args(["run", "p"])
        .current_dir(env.path("a/b"))
        .env_remove("DBLAUNCH_FILE")
        .output()
        .unwrap();
    assert_eq!(code(&o), 2);
    assert!(text(&o.stderr).contains("no dblaunch.toml in"));
    let o = Command::new(BIN)
        .args(["run", "p"])
        .current_dir(env.path("a/b"))
        .env("DBLAUNCH_FILE", env.path("other.toml"))
        .output()
        .unwrap();
    assert_eq!(code(&o), 0, "{}", text(&o.stderr));
    let o = env.run(&["-f", "other.toml", "run", "p"]);
    assert_eq!(code(&o), 0);
}

#[test]
fn heavy_output_of_several_programs_keeps_every_line_whole() {
    let env = Env::new();
    // Each program prints 3000 long lines as fast as it can, half of them
    // to stderr, the last one without a newline.
    let mut toml = String::new();
    for p in ["alpha", "beta", "gamma"] {
        toml += &format!(
            "[programs.{p}]\ncommand = \"i=0; while [ $i -lt 3000 ]; do echo {p}-$i-{pad}; echo {p}-err-$i >&2; i=$((i+1)); done; printf {p}-last\"\n",
            pad = "x".repeat(200)
        );
    }
    env.manifest(&toml);
    let o = env.run(&["-q", "run", "alpha", "beta", "gamma"]);
    assert_eq!(code(&o), 0);
    let out = text(&o.stdout);
    let err = text(&o.stderr);
    for p in ["alpha", "beta", "gamma"] {
        let prefix = format!("{p:<5} | ");
        let lines: Vec<&str> = out.lines().filter(|l| l.starts_with(&prefix)).collect();
        assert_eq!(lines.len(), 3001, "{p}: every stdout line, none lost");
        for (i, l) in lines.iter().take(3000).enumerate() {
            assert_eq!(
                *l,
                format!("{prefix}{p}-{i}-{}", "x".repeat(200)),
                "a line was cut or interleaved"
            );
        }
        assert_eq!(lines[3000], format!("{prefix}{p}-last"));
        let elines = err.lines().filter(|l| l.starts_with(&prefix)).count();
        assert_eq!(elines, 3000, "{p}: every stderr line");
    }
    assert_eq!(out.lines().count(), 3 * 3001, "no stray or mixed lines");
}

#[test]
fn one_program_keeps_its_output_untouched() {
    let env = Env::new();
    env.manifest("[programs.p]\ncommand = \"printf 'raw\\nout'\"\n");
    let o = env.run(&["-q", "run", "p"]);
    assert_eq!(text(&o.stdout), "raw\nout");
}

#[test]
fn programs_get_their_cwd_env_and_name() {
    let env = Env::new();
    fs::create_dir(env.path("sub")).unwrap();
    env.manifest("[programs.p]\ncommand = \"echo $PWD $GREETING $DBLAUNCH_PROGRAM\"\ncwd = \"sub\"\nenv = { GREETING = \"hi\" }\n",
    );
    let o = env.run(&["-q", "run", "p"]);
    let sub = fs::canonicalize(env.path("sub")).unwrap();
    assert_eq!(text(&o.stdout), format!("{} hi p\n", sub.display()));
}

#[test]
fn sigterm_during_queueing_and_running_leaves_no_lock_and_no_process() {
    let env = Env::new();
    let pidfile = env.path("pids");
    let term = libc::SIGTERM.to_string();
    let mut toml = String::from("[settings]\nstop_timeout = \"300ms\"\n");
    toml += &env.probe_program(
        "holder",
        &format!(
            ", \"--hold\", \"1h\", \"--grandchild\", \"--ignore\", \"{term}\", \"--pidfile\", \"{}\"",
            pidfile.display()
        ),
        "writes = [\"app.db\"]",
    );
    toml += &env.probe_program("queued", "", "writes = [\"app.db\"]");
    toml += &env.probe_program("later", "", "after = [\"queued\"]");
    env.manifest(&toml);
    let mut run = env.spawn(&["run", "holder", "queued", "later"]);
    wait_until("holder and its grandchild", || pids_in(&pidfile).len() == 2);
    wait_until("queued to queue", || env.tickets("app.db") == 2);
    kill(run.id() as i32, libc::SIGTERM);
    assert_eq!(wait_status(&mut run).code(), Some(143));
    for pid in pids_in(&pidfile) {
        assert!(!alive(pid), "{pid} survived");
    }
    let ev = env.events();
    assert!(!ev.iter().any(|e| e.label == "queued" || e.label == "later"));
    assert_eq!(env.tickets("app.db"), 0, "no ticket left");
    assert_eq!(
        code(&env.run(&["exec", "--no-wait", "--write", "app.db", "--", "true"])),
        0
    );
}

#[test]
fn a_second_dblaunch_waits_its_turn_behind_a_run() {
    let env = Env::new();
    let go = env.path("go");
    env.manifest(env.probe_program(
        "writer",
        &format!(", \"--until\", \"{}\"", go.display()),
        "writes = [\"app.db\"]",
    ));
    let run = env.spawn(&["run", "writer"]);
    env.wait_event("writer", |e| e.label == "writer" && e.what == "start");
    let o = env.run(&["exec", "--no-wait", "--read", "app.db", "--", "true"]);
    assert_eq!(code(&o), 75);
    assert!(
        text(&o.stderr).contains("writer (pid"),
        "{}",
        text(&o.stderr)
    );
    touch(&go);
    assert_eq!(code(&wait_output(run)), 0);
}

#[test]
fn a_busy_database_past_the_manifests_wait_fails_that_program_with_75() {
    let env = Env::new();
    let go = env.path("go");
    let mut toml = String::from("[settings]\nwait = \"200ms\"\n");
    toml += &env.probe_program(
        "slow",
        &format!(", \"--until\", \"{}\"", go.display()),
        "writes = [\"app.db\"]",
    );
    toml += &env.probe_program("impatient", "", "writes = [\"app.db\"]");
    env.manifest(&toml);
    let run = env.spawn(&["run", "slow", "impatient"]);
    env.wait_event("slow", |e| e.label == "slow" && e.what == "start");
    std::thread::sleep(Duration::from_millis(400));
    touch(&go);
    let o = wait_output(run);
    assert_eq!(code(&o), 75);
    assert!(
        text(&o.stderr).contains("impatient: database"),
        "{}",
        text(&o.stderr)
    );
}

#[test]
fn a_dotenv_file_reaches_every_program_under_its_own_env() {
    let env = Env::new();
    env.manifest(
        "[programs.p]\ncommand = \"echo $GREETING $OTHER\"\nenv = { GREETING = \"hi\" }\n",
    );
    fs::write(
        env.path(".env"),
        "# shared\nGREETING=from-dotenv\nexport OTHER='x y'\n",
    )
    .unwrap();
    let o = env.run(&["-q", "run", "p"]);
    assert_eq!(text(&o.stdout), "hi x y\n", "{}", text(&o.stderr));
    fs::write(env.path(".env"), "GOOD=1\nthis is not a pair\n").unwrap();
    let o = env.run(&["run", "p"]);
    assert_eq!(code(&o), 2);
    assert!(text(&o.stderr).contains(".env:2:1"), "{}", text(&o.stderr));
    assert!(text(&o.stdout).is_empty(), "nothing started");
}

/// A program queued behind a program of its own run waits on the run's own
/// thread; that program may leave a process behind (escaped from its group
/// with setsid) that keeps the lock: the waiter must then go on waiting, for
/// that process, and start only once it is gone.
#[test]
fn a_program_queued_behind_its_runs_own_program_waits_for_that_programs_leftover() {
    let env = Env::new();
    let go = env.path("go");
    let ready = env.path("leftover.pid");
    let leftover = env.probe(
        "leftover",
        &[
            "--until",
            go.to_str().unwrap(),
            "--pidfile",
            ready.to_str().unwrap(),
        ],
    );
    // first ends once the leftover has left its group (it writes its pid
    // file after setsid), so the leftover is not stopped with the group.
    let mut toml = format!(
        "[programs.first]\ncommand = [\"sh\", \"-c\", \"setsid {} & while ! test -s {}; do sleep 0.01; done\"]\nwrites = [\"app.db\"]\n",
        leftover.join(" "),
        ready.display()
    );
    toml += &env.probe_program("second", "", "writes = [\"app.db\"]");
    env.manifest(&toml);
    let run = env.spawn(&["run", "first", "second"]);
    env.wait_event("leftover", |e| e.label == "leftover" && e.what == "start");
    assert_queued_after_release(&env, "first", "second");
    assert!(!env.events().iter().any(|e| e.label == "second"));
    touch(&go);
    let o = wait_output(run);
    assert_eq!(code(&o), 0, "{}", text(&o.stderr));
    let ev = env.events();
    assert!(start(&ev, "second") > end(&ev, "leftover"));
    assert_eq!(env.tickets("app.db"), 0);
}

/// Programs of one run queue behind each other and behind another
/// dblaunch, in the order they queued: the first waits (in a thread) for
/// the outside holder, the second (on the loop's thread) for the first.
#[test]
fn programs_of_a_run_queued_behind_each_other_and_an_outside_holder_go_in_order() {
    let env = Env::new();
    let holder = env.holder(&["exec", "--write", "app.db"], "outside");
    let mut toml = String::new();
    for name in ["p1", "p2", "p3"] {
        toml += &env.probe_program(name, ", \"--hold\", \"20ms\"", "writes = [\"app.db\"]");
    }
    env.manifest(&toml);
    let run = env.spawn(&["run", "p1", "p2", "p3"]);
    wait_until("the run's programs to queue", || env.tickets("app.db") == 4);
    touch(&env.path("go"));
    assert!(wait_output(holder).status.success());
    let o = wait_output(run);
    assert_eq!(code(&o), 0, "{}", text(&o.stderr));
    let ev = env.events();
    let order = ["outside", "p1", "p2", "p3"];
    for w in order.windows(2) {
        assert!(
            start(&ev, w[1]) > end(&ev, w[0]),
            "{} started before {} ended",
            w[1],
            w[0]
        );
    }
    assert_eq!(env.tickets("app.db"), 0);
}

/// When a program of the run lets go of a lock, the program queued behind
/// it on the loop's thread moves on without asking the kernel again. Behind
/// a reader that is only half the answer: a reader that queued earlier, from
/// outside, may hold still, and the writer must go on waiting for it.
#[test]
fn a_writer_behind_its_runs_reader_still_waits_for_an_earlier_outside_reader() {
    let env = Env::new();
    let outside = env.holder(&["exec", "--read", "app.db"], "outside");
    let mut toml = env.probe_program("reader", ", \"--hold\", \"10ms\"", "reads = [\"app.db\"]");
    toml += &env.probe_program("writer", "", "writes = [\"app.db\"]");
    env.manifest(&toml);
    let run = env.spawn(&["run", "reader", "writer"]);
    assert_queued_after_release(&env, "reader", "writer");
    assert!(!env.events().iter().any(|e| e.label == "writer"));
    touch(&env.path("go"));
    assert!(wait_output(outside).status.success());
    let o = wait_output(run);
    assert_eq!(code(&o), 0, "{}", text(&o.stderr));
    let ev = env.events();
    assert!(start(&ev, "reader") < end(&ev, "outside"));
    assert!(start(&ev, "writer") > end(&ev, "outside"));
    assert_eq!(env.tickets("app.db"), 0);
}
