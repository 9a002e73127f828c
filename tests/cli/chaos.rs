//! The chaos test: 8 loops of `dblaunch exec` and a looping `dblaunch run`
//! contend for three databases in mixed modes while a killer sends SIGKILL,
//! SIGTERM and SIGINT at random moments to random dblaunch processes and to
//! random commands. A recorder (the probes' log) says who held what when.
//! Afterwards: no illegal overlap, no lock left held, no process left, every
//! dblaunch that was not killed exited as the spec says, nothing stale.
//!
//! Seeded and reproducible. CI runs a short one; a long one:
//!
//!     DBLAUNCH_CHAOS_SECS=300 DBLAUNCH_CHAOS_SEED=$RANDOM \
//!         cargo test --release --test cli chaos -- --nocapture

use std::collections::HashMap;
use std::fs;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use crate::*;

const DBS: [&str; 3] = ["a.db", "b.db", "c.db"];

/// Databases (index, write?) of one program.
type Locks = Vec<(usize, bool)>;

/// One dblaunch started by the test.
#[derive(Debug, Clone)]
struct Launch {
    pid: i32,
    what: String,
    /// Probe labels it runs, with their databases and modes.
    labels: Vec<(String, Vec<(usize, bool)>)>,
    status: Option<std::process::ExitStatus>,
    /// What it said on stderr (for the report of a violation).
    stderr: String,
    /// Its lifetime on the monotonic clock (pids are reused in long runs,
    /// so a signal belongs to it only if sent within).
    born: u128,
    reaped: u128,
}

impl Launch {
    fn got(&self, k: &Kill) -> bool {
        k.pid == self.pid && k.ns >= self.born && k.ns <= self.reaped
    }
}

#[derive(Debug, Clone, Copy)]
struct Kill {
    ns: u128,
    pid: i32,
    signal: i32,
}

#[derive(Default)]
struct World {
    launches: Mutex<Vec<Launch>>,
    kills: Mutex<Vec<Kill>>,
}

impl World {
    fn add(&self, l: Launch) -> usize {
        let mut v = self.launches.lock().unwrap();
        v.push(l);
        v.len() - 1
    }

    fn finish(&self, i: usize, o: std::process::Output) {
        let mut v = self.launches.lock().unwrap();
        v[i].status = Some(o.status);
        v[i].reaped = now_ns();
        v[i].stderr = String::from_utf8_lossy(&o.stderr).into_owned();
    }
}

fn lock_args(locks: &[(usize, bool)]) -> Vec<String> {
    locks
        .iter()
        .flat_map(|&(db, write)| {
            [
                if write { "--write" } else { "--read" }.to_owned(),
                DBS[db].to_owned(),
            ]
        })
        .collect()
}

#[test]
fn chaos() {
    let seed: u64 = std::env::var("DBLAUNCH_CHAOS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20261122);
    let secs: u64 = std::env::var("DBLAUNCH_CHAOS_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10);
    eprintln!(
        "chaos: seed {seed}, {secs} s (DBLAUNCH_CHAOS_SEED={seed} DBLAUNCH_CHAOS_SECS={secs} to repeat)"
    );
    let env = Env::new();
    let dir = env.dir.path().to_path_buf();
    let log = env.log();
    let world = Arc::new(World::default());
    let stop = Arc::new(AtomicBool::new(false));
    let deadline = Instant::now() + Duration::from_secs(secs);
    let mut threads = Vec::new();

    // 8 loops of exec.
    for w in 0..8u64 {
        let (dir, log, world, stop) = (dir.clone(), log.clone(), world.clone(), stop.clone());
        threads.push(std::thread::spawn(move || {
            let mut rng = fastrand::Rng::with_seed(seed.wrapping_mul(31).wrapping_add(w));
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) {
                n += 1;
                let first = rng.usize(0..3);
                let mut locks = vec![(first, rng.bool())];
                if rng.u8(0..4) == 0 {
                    let second = (first + 1 + rng.usize(0..2)) % 3;
                    locks.push((second, rng.bool()));
                }
                let label = format!("e{w}-{n}");
                let hold = format!("{}ms", rng.u32(1..15));
                let mut args = vec![
                    "exec".to_owned(),
                    "--stop-timeout".to_owned(),
                    "300ms".to_owned(),
                ];
                args.extend(lock_args(&locks));
                args.extend(
                    [
                        "--", BIN, "__probe", "--label", &label, "--hold", &hold, "--log",
                    ]
                    .map(String::from),
                );
                args.push(log.display().to_string());
                let born = now_ns();
                let child = Command::new(BIN)
                    .args(&args)
                    .current_dir(&dir)
                    .stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .stderr(Stdio::piped())
                    .spawn()
                    .unwrap();
                let i = world.add(Launch {
                    pid: child.id() as i32,
                    what: args.join(" "),
                    labels: vec![(label, locks)],
                    status: None,
                    stderr: String::new(),
                    born,
                    reaped: u128::MAX,
                });
                world.finish(i, wait_output(child));
            }
        }));
    }

    // A run of conflicting programs, again and again.
    {
        let (dir, log, world, stop) = (dir.clone(), log.clone(), world.clone(), stop.clone());
        threads.push(std::thread::spawn(move || {
            // (name, locks, after)
            let programs: [(&str, Locks, &str); 5] = [
                ("p1", vec![(0, true)], ""),
                ("p2", vec![(0, false), (1, true)], ""),
                ("p3", vec![(1, false)], ""),
                ("p4", vec![(2, true)], "p1"),
                ("p5", vec![(2, false), (0, false)], ""),
            ];
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) {
                n += 1;
                let mut toml = String::from("[settings]\nstop_timeout = \"300ms\"\n");
                let mut labels = Vec::new();
                for (name, locks, after) in &programs {
                    let label = format!("r{n}-{name}");
                    let reads: Vec<String> = locks.iter().filter(|l| !l.1).map(|l| format!("\"{}\"", DBS[l.0])).collect();
                    let writes: Vec<String> = locks.iter().filter(|l| l.1).map(|l| format!("\"{}\"", DBS[l.0])).collect();
                    toml += &format!(
                        "[programs.{name}]\ncommand = [\"{BIN}\", \"__probe\", \"--label\", \"{label}\", \"--hold\", \"10ms\", \"--log\", \"{}\"]\nreads = [{}]\nwrites = [{}]\n",
                        log.display(),
                        reads.join(", "),
                        writes.join(", ")
                    );
                    if !after.is_empty() {
                        toml += &format!("after = [\"{after}\"]\n");
                    }
                    labels.push((label, locks.clone()));
                }
                toml += "[groups]\nall = [\"p1\", \"p2\", \"p3\", \"p4\", \"p5\"]\n";
                fs::write(dir.join("dblaunch.toml"), toml).unwrap();
                let born = now_ns();
                let child = Command::new(BIN)
                    .args(["run", "all"])
                    .current_dir(&dir)
                    .stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .stderr(Stdio::piped())
                    .spawn()
                    .unwrap();
                let i = world.add(Launch {
                    pid: child.id() as i32,
                    what: "run all".to_owned(),
                    labels,
                    status: None,
                    stderr: String::new(),
                    born,
                    reaped: u128::MAX,
                });
                world.finish(i, wait_output(child));
            }
        }));
    }

    // The killer.
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut kills = 0;
    while Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(rng.u64(5..60)));
        // Targets: live dblaunch processes and live probes.
        let launches: Vec<i32> = world
            .launches
            .lock()
            .unwrap()
            .iter()
            .filter(|l| l.status.is_none())
            .map(|l| l.pid)
            .collect();
        let ev = events(&log);
        let ended: std::collections::HashSet<&str> = ev
            .iter()
            .filter(|e| e.what == "end")
            .map(|e| e.label.as_str())
            .collect();
        // Only probes that are still the process that logged the start: a
        // pid that died unlogged (SIGKILL) may since belong to anything.
        let probes: Vec<i32> = ev
            .iter()
            .filter(|e| e.what == "start" && !ended.contains(e.label.as_str()))
            .filter(|e| {
                e.pid.is_some_and(|p| {
                    let argv = fs::read(format!("/proc/{p}/cmdline")).unwrap_or_default();
                    argv.split(|b| *b == 0).any(|a| a == e.label.as_bytes())
                })
            })
            .filter_map(|e| e.pid)
            .collect();
        let pool = if rng.bool() && !probes.is_empty() {
            probes
        } else {
            launches
        };
        if pool.is_empty() {
            continue;
        }
        let pid = pool[rng.usize(0..pool.len())];
        let signal = [libc::SIGKILL, libc::SIGTERM, libc::SIGINT][rng.usize(0..3)];
        let ns = now_ns();
        // SAFETY: kill(2) only reads its arguments.
        if unsafe { libc::kill(pid, signal) } == 0 {
            world.kills.lock().unwrap().push(Kill { ns, pid, signal });
            kills += 1;
        }
    }
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        t.join().unwrap();
    }
    let launches = world.launches.lock().unwrap().clone();
    let kill_list = world.kills.lock().unwrap().clone();
    let ev = events(&log);
    eprintln!(
        "chaos: {} dblaunch processes, {} commands started, {kills} signals sent",
        launches.len(),
        ev.iter().filter(|e| e.what == "start").count()
    );
    let failures = check(&env, &launches, &kill_list, &ev);
    assert!(
        failures.is_empty(),
        "chaos seed {seed} found {} violations:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// Every rule; returns what broke.
fn check(env: &Env, launches: &[Launch], kills: &[Kill], ev: &[Event]) -> Vec<String> {
    let mut bad = Vec::new();
    // A signal to a command counts from its start on (before that, the pid
    // was its dblaunch's fork on its way to exec, or another process).
    let killed_after = |pid: i32, from: u128| -> Option<u128> {
        kills
            .iter()
            .filter(|k| k.pid == pid && k.signal == libc::SIGKILL && k.ns >= from)
            .map(|k| k.ns)
            .min()
    };
    // label -> (start, end, pid, ppid)
    let mut spans: HashMap<&str, (u128, Option<u128>, i32, i32)> = HashMap::new();
    let raw = fs::read_to_string(env.log()).unwrap_or_default();
    for line in raw.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() >= 6 && f[1] == "start" {
            spans.insert(
                f[0],
                (
                    f[2].parse().unwrap(),
                    None,
                    f[3].parse().unwrap(),
                    f[5].parse().unwrap(),
                ),
            );
        }
    }
    for e in ev.iter().filter(|e| e.what == "end") {
        if let Some(s) = spans.get_mut(e.label.as_str()) {
            s.1 = Some(e.ns);
        }
    }
    // Intervals with their locks.
    let mut locks_of: HashMap<String, Vec<(usize, bool)>> = HashMap::new();
    for l in launches {
        for (label, locks) in &l.labels {
            locks_of.insert(label.clone(), locks.clone());
        }
    }
    let mut intervals = Vec::new();
    for (label, (start, end, pid, ppid)) in &spans {
        // A command killed with SIGKILL (itself, or through PDEATHSIG when
        // its dblaunch was) logs no end: it ended no later than... its
        // death, which follows the kill; the kill time is a lower bound, so
        // overlaps found with it are real.
        //
        // dblaunch's own SIGKILLs count too: after a stop signal it kills the
        // group once the stop timeout (300 ms here) has passed, or at once on
        // a second SIGINT; death comes no earlier than those moments.
        let launch = launches
            .iter()
            .find(|l| l.pid == *ppid && l.born <= *start && *start <= l.reaped);
        let mine = |k: &&Kill| launch.is_some_and(|l| l.got(k));
        let stops: Vec<&Kill> = kills
            .iter()
            .filter(mine)
            .filter(|k| k.signal != libc::SIGKILL && k.ns > *start)
            .collect();
        let escalation = stops.iter().map(|k| k.ns + 300_000_000).min();
        let second_int = stops
            .iter()
            .filter(|k| k.signal == libc::SIGINT)
            .map(|k| k.ns)
            .nth(1);
        // SIGKILL to its dblaunch, even sent just before the command logged
        // its start (a process dies some time after kill(2) returns): the
        // command died through PR_SET_PDEATHSIG, no earlier than its start.
        let parent_killed = kills
            .iter()
            .filter(mine)
            .filter(|k| k.signal == libc::SIGKILL)
            .map(|k| k.ns.max(*start))
            .min();
        let end = end.or_else(|| {
            [
                killed_after(*pid, *start),
                parent_killed,
                escalation,
                second_int,
            ]
            .into_iter()
            .flatten()
            .min()
        });
        match end {
            Some(end) => intervals.push((label.to_string(), *start, end)),
            None => {
                let signals: Vec<String> = kills
                    .iter()
                    .filter(|k| k.pid == *pid || k.pid == *ppid)
                    .map(|k| format!("{} to {} at {}", k.signal, k.pid, k.ns))
                    .collect();
                let status = launch.map(|l| format!("{:?}", l.status));
                bad.push(format!(
                    "{label} (pid {pid}, dblaunch {ppid}, started {start}) never logged its end and was never SIGKILLed; signals: {signals:?}; dblaunch status {status:?}"
                ))
            }
        }
    }
    for (i, (la, sa, ea)) in intervals.iter().enumerate() {
        for (lb, sb, eb) in &intervals[i + 1..] {
            if !(sa < eb && sb < ea) {
                continue;
            }
            let (Some(a), Some(b)) = (locks_of.get(la), locks_of.get(lb)) else {
                continue;
            };
            for &(da, wa) in a {
                for &(db, wb) in b {
                    if da == db && (wa || wb) {
                        bad.push(format!(
                            "{la} [{sa}, {ea}] and {lb} [{sb}, {eb}] overlapped on {} ({} / {})",
                            DBS[da],
                            if wa { "write" } else { "read" },
                            if wb { "write" } else { "read" }
                        ));
                    }
                }
            }
        }
    }
    // Exit statuses of the dblaunch processes that were not SIGKILLed.
    for l in launches {
        let Some(status) = l.status else {
            bad.push(format!("dblaunch pid {} ({}) never exited", l.pid, l.what));
            continue;
        };
        if kills.iter().any(|k| l.got(k) && k.signal == libc::SIGKILL) {
            continue;
        }
        // Killed by signal N before its handlers were installed (its first
        // milliseconds, holding nothing yet): a shell sees 128+N as well.
        use std::os::unix::process::ExitStatusExt;
        let code = status
            .code()
            .or(status.signal().map(|s| 128 + s))
            .unwrap_or(-1);
        let mut allowed = vec![0];
        for k in kills.iter().filter(|k| l.got(k)) {
            allowed.push(128 + k.signal);
        }
        // A signal to one of its commands counts while that command lived:
        // from its logged start until its dblaunch reaped it, which is
        // after its logged end. A probe that has written `end` is still
        // alive until it exits, so a SIGKILL chosen while the killer saw
        // no `end` yet can land after the line (this, counted only up to
        // `end`, was the chaos test's one-in-three failure under a loaded
        // suite: the killer's own SIGKILL, proven by the kernel's
        // signal_generate trace naming the test thread as the sender).
        for (label, _) in &l.labels {
            if let Some((start, _, pid, _)) = spans.get(label.as_str()) {
                for k in kills
                    .iter()
                    .filter(|k| k.pid == *pid && k.ns >= *start && k.ns <= l.reaped)
                {
                    allowed.push(128 + k.signal);
                }
            }
        }
        // A run's programs may also fail because a program they run after
        // was killed: that gives the killed one's status, covered above.
        if !allowed.contains(&code) {
            bad.push(format!(
                "dblaunch pid {} ({}) exited {code}; the spec allows {allowed:?} for what happened to it; it said: {}",
                l.pid,
                l.what,
                l.stderr.trim()
            ));
        }
        // Unambiguous cases: a stop signal that reached dblaunch while its
        // command was still running must give 128+N.
        if l.what != "run all" {
            let first_stop = kills
                .iter()
                .filter(|k| l.got(k) && k.signal != libc::SIGKILL)
                .min_by_key(|k| k.ns);
            if let (Some(k), Some((label, _))) = (first_stop, l.labels.first()) {
                if let Some((start, Some(end), _, _)) = spans.get(label.as_str()) {
                    if k.ns > *start && k.ns + 5_000_000 < *end && code != 128 + k.signal {
                        bad.push(format!(
                            "dblaunch pid {} got signal {} while its command ran, but exited {code}",
                            l.pid, k.signal
                        ));
                    }
                }
            }
        }
    }
    // No process of the test left running.
    std::thread::sleep(Duration::from_millis(200));
    for (pid, cmdline) in processes_naming(&env.dir.path().display().to_string()) {
        bad.push(format!("pid {pid} is still running: {cmdline}"));
    }
    // No lock left held, nothing stale.
    for db in DBS {
        let o = env.run(&["exec", "--no-wait", "--write", db, "--", "true"]);
        if code(&o) != 0 {
            bad.push(format!("{db} is still locked: {}", text(&o.stderr)));
        }
        if env.tickets(db) != 0 {
            bad.push(format!("{db} has {} tickets left", env.tickets(db)));
        }
    }
    let o = env.run(&["status", "--json", "a.db", "b.db", "c.db"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap_or_default();
    for db in v["databases"].as_array().cloned().unwrap_or_default() {
        if !db["holders"].as_array().is_some_and(|a| a.is_empty())
            || !db["waiters"].as_array().is_some_and(|a| a.is_empty())
        {
            bad.push(format!("status shows something stale: {db}"));
        }
    }
    bad
}
