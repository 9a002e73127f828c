//! Readers share, writers exclude: checked with many real processes and a
//! recorder whose log would show any illegal overlap.

use std::fs;

use crate::*;

/// Fails if a writer's interval overlaps any other interval.
fn assert_no_illegal_overlap(events: &[Event], mode_of: impl Fn(&str) -> &'static str) {
    let iv = intervals(events);
    for (i, (la, sa, ea)) in iv.iter().enumerate() {
        for (lb, sb, eb) in iv.iter().skip(i + 1) {
            let overlap = sa < eb && sb < ea;
            let legal = mode_of(la) == "read" && mode_of(lb) == "read";
            assert!(
                !overlap || legal,
                "{la} [{sa},{ea}] overlaps {lb} [{sb},{eb}]"
            );
        }
    }
}

#[test]
fn two_readers_run_at_the_same_time() {
    let env = Env::new();
    let go = env.path("go");
    let a = env.spawn(&with_cmd(
        &["exec", "--read", "app.db"],
        &env.probe("a", &["--until", go.to_str().unwrap()]),
    ));
    env.wait_event("reader a", |e| e.label == "a" && e.what == "start");
    // b can only start while a still holds its read lock (a waits for `go`).
    let b = env.spawn(&with_cmd(
        &["exec", "--read", "app.db"],
        &env.probe("b", &["--until", go.to_str().unwrap()]),
    ));
    env.wait_event("reader b while a holds", |e| {
        e.label == "b" && e.what == "start"
    });
    // A writer must wait for both.
    let o = env.run(&["exec", "--no-wait", "--write", "app.db", "--", "true"]);
    assert_eq!(code(&o), 75);
    touch(&go);
    assert!(wait_output(a).status.success());
    assert!(wait_output(b).status.success());
}

#[test]
fn writers_never_overlap_anyone_under_contention() {
    let env = Env::new();
    const WORKERS: usize = 6;
    const JOBS: usize = 12;
    let threads: Vec<_> = (0..WORKERS)
        .map(|w| {
            let dir = env.dir.path().to_path_buf();
            let log = env.log();
            std::thread::spawn(move || {
                for j in 0..JOBS {
                    let mode = if (w + j) % 3 == 0 {
                        "--write"
                    } else {
                        "--read"
                    };
                    let label = format!("{}{w}-{j}", &mode[2..3]);
                    let status = Command::new(BIN)
                        .current_dir(&dir)
                        .args([
                            "exec", mode, "app.db", "--", BIN, "__probe", "--hold", "3ms",
                        ])
                        .args(["--label", &label, "--log"])
                        .arg(&log)
                        .stderr(Stdio::null())
                        .status()
                        .unwrap();
                    assert!(status.success(), "{label}: {status}");
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let events = env.events();
    assert_eq!(intervals(&events).len(), WORKERS * JOBS);
    assert_no_illegal_overlap(
        &events,
        |l| if l.starts_with('w') { "write" } else { "read" },
    );
    assert_eq!(env.tickets("app.db"), 0, "no ticket is left behind");
}

#[test]
fn every_spelling_of_a_database_is_one_lock() {
    let env = Env::new();
    fs::create_dir(env.path("data")).unwrap();
    std::os::unix::fs::symlink("data", env.path("link")).unwrap();
    std::os::unix::fs::symlink("app.db", env.path("data/alias.db")).unwrap();
    let go = env.path("go");
    let holder = env.spawn(&with_cmd(
        &["exec", "--write", "data/app.db"],
        &env.probe("h", &["--until", go.to_str().unwrap()]),
    ));
    env.wait_event("holder", |e| e.what == "start");
    for spelling in ["./data/../data/app.db", "link/app.db", "data/alias.db"] {
        let o = env.run(&["exec", "--no-wait", "--read", spelling, "--", "true"]);
        assert_eq!(code(&o), 75, "{spelling}: {}", text(&o.stderr));
    }
    // From another directory, with an absolute path.
    let abs = env.path("data/app.db");
    let o = Command::new(BIN)
        .current_dir("/")
        .args(["exec", "--no-wait", "--read"])
        .arg(&abs)
        .args(["--", "true"])
        .output()
        .unwrap();
    assert_eq!(code(&o), 75);
    touch(&go);
    wait_output(holder);
}

#[test]
fn a_directory_database_is_locked_beside_not_inside() {
    let env = Env::new();
    fs::create_dir_all(env.path("data/db")).unwrap();
    let o = env.run(&["exec", "--write", "data/db", "--", "true"]);
    assert_eq!(code(&o), 0, "{}", text(&o.stderr));
    assert_eq!(fs::read_dir(env.path("data/db")).unwrap().count(), 0);
    assert!(env.path("data/.db.dblaunch").is_dir());
}

#[test]
fn opposite_orders_of_several_databases_never_deadlock() {
    let env = Env::new();
    let run = |first: &'static str, second: &'static str, tag: &'static str| {
        let dir = env.dir.path().to_path_buf();
        let log = env.log();
        std::thread::spawn(move || {
            for i in 0..15 {
                let status = Command::new(BIN)
                    .current_dir(&dir)
                    .args(["exec", "--write", first, "--write", second, "--"])
                    .args([BIN, "__probe", "--hold", "2ms", "--label"])
                    .arg(format!("{tag}{i}"))
                    .arg("--log")
                    .arg(&log)
                    .stderr(Stdio::null())
                    .status()
                    .unwrap();
                assert!(status.success());
            }
        })
    };
    let a = run("a.db", "b.db", "x");
    let b = run("b.db", "a.db", "y");
    let c = run("a.db", "b.db", "z");
    a.join().unwrap();
    b.join().unwrap();
    c.join().unwrap();
    let events = env.events();
    assert_eq!(intervals(&events).len(), 45);
    assert_no_illegal_overlap(&events, |_| "write");
}

/// 256 contenders at once (30% readers): every one runs exactly once, no
/// writer overlaps anyone, and nothing is left in the queue. The queue's
/// length must change nothing but the waiting.
#[test]
fn two_hundred_fifty_six_contenders_at_once() {
    let env = Env::new();
    const N: usize = 256;
    let mode = |i: usize| if i % 10 < 3 { "--read" } else { "--write" };
    let children: Vec<Child> = (0..N)
        .map(|i| {
            env.cmd(&with_cmd(
                &["-q", "exec", mode(i), "app.db"],
                &env.probe(&format!("c{i}"), &[]),
            ))
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn dblaunch")
        })
        .collect();
    for (i, c) in children.into_iter().enumerate() {
        let o = wait_output(c);
        assert!(o.status.success(), "c{i}: {}", text(&o.stderr));
    }
    let ev = env.events();
    for i in 0..N {
        let label = format!("c{i}");
        let runs = ev
            .iter()
            .filter(|e| e.label == label && e.what == "start")
            .count();
        assert_eq!(runs, 1, "{label} ran {runs} times");
    }
    assert_no_illegal_overlap(&ev, |l| {
        let i: usize = l[1..].parse().unwrap();
        if mode(i) == "--read" { "read" } else { "write" }
    });
    assert_eq!(env.tickets("app.db"), 0);
}
