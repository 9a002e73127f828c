//! FIFO order across processes, no writer starvation, dead waiters skipped,
//! and a queued waiter that costs nothing.

use std::fs;

use crate::*;

/// Starts `dblaunch exec MODE app.db -- probe` and waits until its ticket is
/// in the queue, so arrival order is known.
fn enqueue(env: &Env, mode: &str, label: &str, probe: &[&str]) -> Child {
    // A ticket that was not there before is this one's (the caller starts
    // nothing else meanwhile). Counting tickets would not do: earlier ones
    // may leave as it arrives, and the count need never rise.
    let before = env.ticket_names("app.db");
    let child = env.spawn(&with_cmd(
        &["exec", mode, "app.db"],
        &env.probe(label, probe),
    ));
    wait_until(&format!("{label} to queue"), || {
        env.ticket_names("app.db")
            .iter()
            .any(|t| !before.contains(t))
            || env.events().iter().any(|e| e.label == label)
    });
    child
}

fn start_of(events: &[Event], label: &str) -> u128 {
    events
        .iter()
        .find(|e| e.label == label && e.what == "start")
        .unwrap()
        .ns
}

fn end_of(events: &[Event], label: &str) -> u128 {
    events
        .iter()
        .find(|e| e.label == label && e.what == "end")
        .unwrap()
        .ns
}

#[test]
fn waiters_are_served_in_arrival_order_and_adjacent_readers_together() {
    let env = Env::new();
    let go = env.path("go");
    let readers_go = env.path("readers-go");
    let holder = enqueue(&env, "--write", "h", &["--until", go.to_str().unwrap()]);
    env.wait_event("holder", |e| e.label == "h" && e.what == "start");
    let rg = readers_go.to_str().unwrap();
    let queue = [
        ("--write", "w1", vec!["--hold", "20ms"]),
        ("--read", "r2", vec!["--until", rg]),
        ("--read", "r3", vec!["--until", rg]),
        ("--write", "w4", vec!["--hold", "20ms"]),
        ("--read", "r5", vec!["--hold", "20ms"]),
        ("--write", "w6", vec!["--hold", "20ms"]),
        ("--write", "w7", vec!["--hold", "20ms"]),
        ("--read", "r8", vec!["--hold", "20ms"]),
    ];
    let children: Vec<Child> = queue
        .iter()
        .map(|(mode, label, probe)| enqueue(&env, mode, label, probe))
        .collect();
    touch(&go);
    // r2 and r3 hold until both have started: they must run together.
    env.wait_event("r2", |e| e.label == "r2" && e.what == "start");
    env.wait_event("r3 alongside r2", |e| e.label == "r3" && e.what == "start");
    touch(&readers_go);
    for c in children {
        assert!(wait_output(c).status.success());
    }
    wait_output(holder);
    let ev = env.events();
    // Every writer starts after everything that arrived before it ended, and
    // everything that arrived after it starts after it ended.
    let labels: Vec<&str> = std::iter::once("h")
        .chain(queue.iter().map(|q| q.1))
        .collect();
    for (i, l) in labels.iter().enumerate() {
        let is_writer = l.starts_with('w') || *l == "h";
        for earlier in &labels[..i] {
            if is_writer || earlier.starts_with('w') || *earlier == "h" {
                assert!(
                    start_of(&ev, l) > end_of(&ev, earlier),
                    "{l} started before {earlier} ended"
                );
            }
        }
    }
    assert_eq!(env.tickets("app.db"), 0);
}

#[test]
fn a_stream_of_overlapping_readers_does_not_starve_a_writer() {
    let env = Env::new();
    let mut readers = Vec::new();
    let spawn_reader = |i: usize, readers: &mut Vec<Child>| {
        readers.push(env.spawn(&with_cmd(
            &["exec", "--read", "app.db"],
            &env.probe(&format!("r{i}"), &["--hold", "150ms"]),
        )));
    };
    // A continuous stream: a new reader every 50 ms, each holding 150 ms, so
    // at any moment some reader holds the database.
    for i in 0..6 {
        spawn_reader(i, &mut readers);
        let label = format!("r{i}");
        env.wait_event(&label, |e| e.label == label && e.what == "start");
        std::thread::sleep(Duration::from_millis(50));
    }
    let writer = enqueue(&env, "--write", "w", &["--hold", "10ms"]);
    let later_from = 6;
    for i in later_from..later_from + 12 {
        spawn_reader(i, &mut readers);
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(wait_output(writer).status.success());
    for r in readers {
        assert!(wait_output(r).status.success());
    }
    let ev = env.events();
    let w_end = end_of(&ev, "w");
    let w_start = start_of(&ev, "w");
    for i in later_from..later_from + 12 {
        let s = start_of(&ev, &format!("r{i}"));
        assert!(
            s > w_end,
            "reader r{i}, which arrived after the writer, overtook it"
        );
    }
    for i in 0..later_from {
        assert!(
            end_of(&ev, &format!("r{i}")) < w_start,
            "writer overlapped earlier reader r{i}"
        );
    }
}

#[test]
fn a_waiter_killed_in_the_queue_does_not_block_the_ones_behind_it() {
    let env = Env::new();
    let go = env.path("go");
    let holder = enqueue(&env, "--write", "h", &["--until", go.to_str().unwrap()]);
    let mut dead = enqueue(&env, "--write", "dead", &[]);
    let next = enqueue(&env, "--write", "next", &[]);
    dead.kill().unwrap(); // SIGKILL: no chance to clean up its ticket
    dead.wait().unwrap();
    touch(&go);
    assert!(wait_output(holder).status.success());
    assert!(wait_output(next).status.success());
    let ev = env.events();
    assert!(ev.iter().any(|e| e.label == "next" && e.what == "end"));
    assert!(!ev.iter().any(|e| e.label == "dead"));
    assert_eq!(
        env.tickets("app.db"),
        0,
        "the dead waiter's ticket is cleared away"
    );
}

fn context_switches(pid: u32) -> u64 {
    let mut total = 0;
    for task in fs::read_dir(format!("/proc/{pid}/task")).unwrap().flatten() {
        let status = fs::read_to_string(task.path().join("status")).unwrap_or_default();
        for line in status.lines() {
            if line.starts_with("voluntary_ctxt_switches")
                || line.starts_with("nonvoluntary_ctxt_switches")
            {
                total += line
                    .split_whitespace()
                    .nth(1)
                    .unwrap()
                    .parse::<u64>()
                    .unwrap();
            }
        }
    }
    total
}

#[test]
fn a_queued_waiter_makes_no_wake_ups() {
    let env = Env::new();
    let go = env.path("go");
    let holder = enqueue(&env, "--write", "h", &["--until", go.to_str().unwrap()]);
    let waiter = enqueue(&env, "--write", "w", &[]);
    // Let it settle into its blocking calls.
    std::thread::sleep(Duration::from_millis(200));
    let before = context_switches(waiter.id());
    std::thread::sleep(Duration::from_millis(1000));
    let after = context_switches(waiter.id());
    touch(&go);
    assert!(wait_output(holder).status.success());
    assert!(wait_output(waiter).status.success());
    assert_eq!(
        after - before,
        0,
        "a queued dblaunch woke up {} times in 1 s",
        after - before
    );
}
