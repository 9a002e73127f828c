//! The lock journal (one JSON line per lock event, in each database's lock
//! directory), `history` and `metrics`: a scripted
//! scenario (writers and readers contending, a give-up, a crash, a yield)
//! must come back exactly, with the durations the programs' own logs give;
//! `metrics` must parse (a real parser: prometheus_client's and promtool)
//! and agree with `history`; a bad journal line is skipped, an unwritable
//! journal never stops a program.

use std::collections::HashMap;
use std::process::Command;

use serde_json::Value;

use crate::*;

/// Checks that need a tool (promtool, python's prometheus_client) skip,
/// saying so, where it is missing, unless DBLAUNCH_REQUIRE_TOOLS is set (CI
/// sets it, and installs them).
fn tool_available(what: &str, probe: &mut Command) -> bool {
    let ok = probe
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        assert!(
            std::env::var_os("DBLAUNCH_REQUIRE_TOOLS").is_none(),
            "{what} is missing (.ci/run installs it)"
        );
        eprintln!("skipped: {what} is not installed");
    }
    ok
}

fn history_json(env: &Env, args: &[&str]) -> Value {
    let mut all = vec!["history", "--json"];
    all.extend_from_slice(args);
    let o = env.run(&all);
    assert_eq!(code(&o), 0, "{}", text(&o.stderr));
    serde_json::from_slice(&o.stdout).expect("history --json is JSON")
}

fn holds_of<'a>(db: &'a Value, program: &str) -> Vec<&'a Value> {
    db["holds"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|h| h["program"] == program)
        .collect()
}

fn waits_of<'a>(db: &'a Value, program: &str) -> Vec<&'a Value> {
    db["waits"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|w| w["program"] == program)
        .collect()
}

/// Seconds between two RFC 3339 times of the JSON.
fn between(a: &Value, b: &Value) -> f64 {
    let t = |v: &Value| humantime::parse_rfc3339(v.as_str().unwrap()).unwrap();
    t(b).duration_since(t(a)).unwrap().as_secs_f64()
}

/// How far dblaunch's durations may be from the programs' own: the probe's
/// start-up (exec of a debug binary) and its reaping lie between them, a
/// few ms on a quiet machine (the test prints the worst), more when CI
/// runs every test at once on two cores. Holds and waits last 200 ms or
/// more, so a duration counted from the wrong event would still be caught.
const SLACK: f64 = 0.150;

#[test]
fn a_scripted_scenario_comes_back_exactly_from_history_and_metrics() {
    let env = Env::new();
    // web, stopped to yield, ends only once `web-go` exists: the test lets it
    // go when w3's wait is in the journal (otherwise w3 could find web gone
    // before it even looked, and never wait).
    let web_go = env.path("web-go");
    env.manifest(format!(
        "[settings]\nstop_timeout = \"10s\"\n{}",
        env.probe_program(
            "web",
            &format!(
                ", \"--hold\", \"1h\", \"--linger-until\", \"{}\"",
                web_go.display()
            ),
            "reads = [\"app.db\"]\nyields = true"
        )
    ));
    let exec = |name: &str, mode: &str, extra: &[&str]| {
        let probe = env.probe(name, extra);
        let mut args = vec!["exec", "--name", name, mode, "app.db", "--"];
        args.extend(probe.iter().map(String::as_str));
        env.spawn(&args)
    };
    // 1. A writer holds; two readers and a writer queue behind it, in order;
    //    a fourth gives up after 100ms.
    let go = env.path("go");
    let mut holder = exec("holder", "--write", &["--until", go.to_str().unwrap()]);
    env.wait_event("holder", |e| e.label == "holder" && e.what == "start");
    let mut queued = Vec::new();
    for (k, (name, mode)) in [("r1", "--read"), ("r2", "--read"), ("w2", "--write")]
        .into_iter()
        .enumerate()
    {
        queued.push(exec(name, mode, &["--hold", "200ms"]));
        wait_until(&format!("{name} to queue"), || {
            env.tickets("app.db") == k + 2
        });
    }
    let o = env.run(&[
        "exec", "--name", "quitter", "--wait", "200ms", "--write", "app.db", "--", "true",
    ]);
    assert_eq!(code(&o), 75, "{}", text(&o.stderr));
    touch(&go);
    assert_eq!(wait_status(&mut holder).code(), Some(0));
    for mut c in queued {
        assert_eq!(wait_status(&mut c).code(), Some(0), "{}", stderr_of(&mut c));
    }
    // 2. A program that crashes (SIGSEGV) under its lock.
    let probe = env.probe("crasher", &["--hold", "200ms"]).join(" ");
    let o = env.run(&[
        "exec",
        "--name",
        "crasher",
        "--write",
        "app.db",
        "--",
        "sh",
        "-c",
        &format!("{probe}; kill -SEGV $$"),
    ]);
    assert_eq!(code(&o), 128 + 11, "{}", text(&o.stderr));
    // 3. A yielding reader gives way to a writer and comes back.
    let run = env.spawn(&["run", "web"]);
    env.wait_event("web", |e| e.label == "web" && e.what == "start");
    // w3 holds until web, having yielded, has queued again behind it (so
    // that wait happens however slow the machine), then 200ms more.
    let go3 = env.path("go3");
    let w3 = exec("w3", "--write", &["--until", go3.to_str().unwrap()]);
    let journal = env.path(".app.db.dblaunch/journal");
    wait_until("w3's wait in the journal", || {
        fs::read_to_string(&journal).is_ok_and(|j| {
            j.lines()
                .any(|l| l.contains("\"queued\"") && l.contains("\"w3\""))
        })
    });
    touch(&web_go);
    env.time_of("w3", "start");
    wait_until("web to queue again", || env.tickets("app.db") == 2);
    std::thread::sleep(Duration::from_millis(200));
    touch(&go3);
    let o = wait_output(w3);
    assert_eq!(code(&o), 0, "{}", text(&o.stderr));
    let w3_end = env.time_of("w3", "end");
    env.wait_event("web to come back", |e| {
        e.label == "web" && e.what == "start" && e.ns > w3_end
    });
    env.run(&["stop"]);
    assert_eq!(code(&wait_output(run)), 0);

    let all = history_json(&env, &["app.db"]);
    assert_eq!(all["version"], 1);
    let db = &all["databases"][0];
    assert_eq!(db["database"], env.path("app.db").display().to_string());
    assert_eq!(db["skipped_lines"], 0);
    // Every hold, with the outcome and the duration the program saw.
    let events = env.events();
    let runs = intervals(&events);
    let times = |what: &str| -> Vec<u128> {
        events
            .iter()
            .filter(|e| e.label == "web" && e.what == what)
            .map(|e| e.ns)
            .collect()
    };
    let mut web_runs = times("start").into_iter().zip(times("end"));
    let mut worst: f64 = 0.0;
    for (program, outcome, count) in [
        ("holder", "exited", 1),
        ("r1", "exited", 1),
        ("r2", "exited", 1),
        ("w2", "exited", 1),
        ("crasher", "crashed", 1),
        ("w3", "exited", 1),
    ] {
        let holds = holds_of(db, program);
        assert_eq!(holds.len(), count, "{program}: {holds:?}");
        let h = holds[0];
        assert_eq!(h["outcome"], outcome, "{program}: {h}");
        if program == "crasher" {
            assert_eq!(h["signal"], "SIGSEGV", "{h}");
            continue; // its shell outlives the probe
        }
        let (_, start, end) = runs.iter().find(|r| r.0 == program).unwrap();
        let own = (end - start) as f64 / 1e9;
        let held = h["held"].as_f64().unwrap();
        worst = worst.max((held - own).abs());
        assert!(
            (held - own).abs() < SLACK,
            "{program} held {held}s by history, ran {own}s by its own log"
        );
    }
    let web = holds_of(db, "web");
    assert_eq!(web.len(), 2, "{web:?}");
    assert_eq!(web[0]["outcome"], "yielded");
    assert_eq!(web[1]["outcome"], "stopped");
    for h in &web {
        let (start, end) = web_runs.next().unwrap();
        let own = (end - start) as f64 / 1e9;
        let held = h["held"].as_f64().unwrap();
        worst = worst.max((held - own).abs());
        assert!((held - own).abs() < SLACK, "web held {held}s, ran {own}s");
    }
    // Every wait: behind whom, how it ended; its end is the grant the
    // program's own start follows.
    for (program, behind, end) in [
        ("r1", "holder", "granted"),
        ("r2", "holder", "granted"),
        ("w2", "holder", "granted"),
        ("quitter", "holder", "gave_up"),
        ("w3", "web", "granted"),
        // The yielded reader queues again, behind the writer it let in.
        ("web", "w3", "granted"),
    ] {
        let waits = waits_of(db, program);
        assert_eq!(waits.len(), 1, "{program}: {waits:?}");
        assert_eq!(waits[0]["behind"]["program"], behind, "{program}");
        assert_eq!(waits[0]["end"], end, "{program}");
    }
    let quit = waits_of(db, "quitter")[0]["waited"].as_f64().unwrap();
    assert!((0.2..0.2 + SLACK).contains(&quit), "quitter waited {quit}s");
    // The waits behind the holder ended when it let go; r1 and r2 (readers)
    // were granted together, w2 after both had ended.
    let holder_end = &holds_of(db, "holder")[0]["to"];
    for p in ["r1", "r2"] {
        let gap = between(holder_end, &waits_of(db, p)[0]["to"]);
        assert!(
            (0.0..SLACK).contains(&gap),
            "{p} granted {gap}s after the holder let go"
        );
    }
    let r_end = holds_of(db, "r1")[0]["to"]
        .clone()
        .max_time(&holds_of(db, "r2")[0]["to"]);
    let gap = between(&r_end, &waits_of(db, "w2")[0]["to"]);
    assert!(
        (0.0..SLACK).contains(&gap),
        "w2 granted {gap}s after the readers"
    );
    // The summary.
    let s = &db["summary"];
    assert_eq!(s["grants"], 8, "{s}");
    assert_eq!(s["conflicts"], 6, "{s}");
    assert_eq!(s["waits"]["count"], 6, "{s}");
    assert_eq!(s["give_ups"], 1, "{s}");
    assert_eq!(s["crashes"], 1, "{s}");
    assert_eq!(s["yields"], 1, "{s}");
    assert_eq!(s["foreign_blocks"], 0, "{s}");
    assert_eq!(s["holds"]["count"], 8, "{s}");
    let kept = &s["kept_waiting"][0];
    assert_eq!(kept["holder"], "holder", "{s}");
    eprintln!(
        "history: worst hold difference from the programs' own logs {:.1} ms",
        worst * 1e3
    );

    // The text shows the same, and the picture draws it.
    let o = env.run(&["history", "app.db", "--svg", "timeline.svg"]);
    assert_eq!(code(&o), 0, "{}", text(&o.stderr));
    let out = text(&o.stdout);
    for needle in [
        "8 grants; 6 waits",
        "1 give-ups",
        "1 crashes",
        "1 yields",
        "crashed, SIGSEGV",
        "waited",
        "behind holder (write), gave up",
        "yielded to w3",
        "holder kept",
    ] {
        assert!(out.contains(needle), "`{needle}` missing from:\n{out}");
    }
    let svg = fs::read_to_string(env.path("timeline.svg")).unwrap();
    let parsed = Command::new("python3")
        .args([
            "-c",
            "import sys, xml.etree.ElementTree as E; E.parse(sys.argv[1])",
        ])
        .arg(env.path("timeline.svg"))
        .status()
        .unwrap();
    assert!(parsed.success(), "the SVG is not well-formed XML");
    for needle in [
        ">holder<",
        ">quitter<",
        ">web<",
        "gave up waiting",
        "crashed (SIGSEGV)",
        "yielded (w3)",
        "url(#wait)",
        "holds to write",
    ] {
        assert!(svg.contains(needle), "`{needle}` missing from the SVG");
    }

    // metrics agrees with history, and parses.
    let o = env.run(&["metrics", "app.db"]);
    assert_eq!(code(&o), 0, "{}", text(&o.stderr));
    let om = text(&o.stdout);
    let totals = |name: &str| -> u64 {
        om.lines()
            .filter(|l| l.starts_with(&format!("{name}{{")))
            .map(|l| l.rsplit(' ').next().unwrap().parse::<u64>().unwrap())
            .sum()
    };
    assert_eq!(totals("dblaunch_lock_grants_total"), 8, "{om}");
    assert_eq!(totals("dblaunch_lock_waits_total"), 6, "{om}");
    assert_eq!(totals("dblaunch_lock_give_ups_total"), 1, "{om}");
    assert_eq!(totals("dblaunch_lock_crashes_total"), 1, "{om}");
    assert_eq!(totals("dblaunch_lock_yields_total"), 1, "{om}");
    assert_eq!(totals("dblaunch_lock_wait_seconds_count"), 8, "{om}");
    assert_eq!(totals("dblaunch_lock_hold_seconds_count"), 8, "{om}");
    assert!(om.ends_with("# EOF\n"));
    if tool_available(
        "python3's prometheus_client",
        Command::new("python3").args(["-c", "import prometheus_client"]),
    ) {
        let check = r#"
import sys
from prometheus_client.openmetrics.parser import text_string_to_metric_families
fams = {f.name: f for f in text_string_to_metric_families(sys.stdin.read())}
grants = sum(s.value for s in fams["dblaunch_lock_grants"].samples)
assert grants == 8, grants
assert fams["dblaunch_lock_wait_seconds"].type == "histogram"
assert fams["dblaunch_lock_holders"].type == "gauge"
labels = {tuple(sorted(s.labels)) for f in fams.values() for s in f.samples}
assert all({"database", "program"} <= set(l) for l in labels), labels
print("ok")
"#;
        let mut p = Command::new("python3")
            .args(["-c", check])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        use std::io::Write as _;
        p.stdin.take().unwrap().write_all(om.as_bytes()).unwrap();
        let out = p.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "prometheus_client: {}",
            text(&out.stderr)
        );
    }
    if tool_available("promtool", Command::new("promtool").arg("--version")) {
        let o = env.run(&["metrics", "--format", "prometheus", "app.db"]);
        let mut p = Command::new("promtool")
            .args(["check", "metrics"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        use std::io::Write as _;
        p.stdin.take().unwrap().write_all(&o.stdout).unwrap();
        let out = p.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "promtool check metrics: {}{}",
            text(&out.stdout),
            text(&out.stderr)
        );
    }
}

trait MaxTime {
    fn max_time(self, other: &Value) -> Value;
}

impl MaxTime for Value {
    fn max_time(self, other: &Value) -> Value {
        if self.as_str() >= other.as_str() {
            self
        } else {
            other.clone()
        }
    }
}

/// Many dblaunch processes append at once: every line whole, one grant
/// and one release per program, nothing interleaved.
#[test]
fn many_writers_at_once_never_tear_a_line() {
    let env = Env::new();
    let children: Vec<Child> = (0..32)
        .map(|k| {
            let name = format!("p{k}");
            let mode = if k % 4 == 0 { "--write" } else { "--read" };
            env.spawn(&["exec", "--name", &name, mode, "app.db", "--", "true"])
        })
        .collect();
    for mut c in children {
        assert_eq!(wait_status(&mut c).code(), Some(0), "{}", stderr_of(&mut c));
    }
    let journal = fs::read_to_string(env.path(".app.db.dblaunch/journal")).unwrap();
    let mut per: HashMap<(String, String), usize> = HashMap::new();
    for line in journal.lines() {
        let v: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        *per.entry((
            v["program"].as_str().unwrap().to_owned(),
            v["event"].as_str().unwrap().to_owned(),
        ))
        .or_default() += 1;
    }
    for k in 0..32 {
        for event in ["granted", "released"] {
            assert_eq!(
                per.get(&(format!("p{k}"), event.to_owned())),
                Some(&1),
                "p{k} {event}"
            );
        }
    }
    let all = history_json(&env, &["app.db"]);
    assert_eq!(all["databases"][0]["summary"]["grants"], 32);
}

/// Past its size bound the journal is rotated to journal.1: two files,
/// each about the bound, every line whole.
#[test]
fn the_journal_is_rotated_and_stays_bounded() {
    let env = Env::new();
    let max = 4096;
    for round in 0..4 {
        let children: Vec<Child> = (0..8)
            .map(|k| {
                let name = format!("p{round}-{k}");
                env.cmd(&["exec", "--name", &name, "--write", "app.db", "--", "true"])
                    .env("DBLAUNCH_JOURNAL_MAX_BYTES", max.to_string())
                    .stdout(Stdio::null())
                    .stderr(Stdio::piped())
                    .spawn()
                    .unwrap()
            })
            .collect();
        for mut c in children {
            assert_eq!(wait_status(&mut c).code(), Some(0), "{}", stderr_of(&mut c));
        }
    }
    let dir = env.path(".app.db.dblaunch");
    let mut lines = 0;
    for name in ["journal", "journal.1"] {
        let text = fs::read_to_string(dir.join(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
        // The bound, plus what writers that still had the old file open
        // appended after the rotation (a line each at most, here).
        assert!(text.len() < max + 8 * 600, "{name} is {} bytes", text.len());
        for line in text.lines() {
            serde_json::from_str::<Value>(line).unwrap_or_else(|e| panic!("{e}: {line}"));
            lines += 1;
        }
    }
    assert!(lines >= 8, "history was kept: {lines} lines");
}

/// A program that locks for itself (the lock crate's `Lock`, as the Python
/// and Node packages do) is in the history like any holder: its own pid,
/// its name, and a release that says it let go (it runs on; no exit).
#[test]
fn a_program_s_own_lock_is_in_the_history() {
    let env = Env::new();
    let db = env.path("app.db");
    let guard = dblaunch_lock::Lock::write(&db)
        .name("webapp")
        .acquire()
        .expect("the lock");
    drop(guard);
    let json = history_json(&env, &["app.db"]);
    let db = &json["databases"][0];
    let holds = holds_of(db, "webapp");
    assert_eq!(holds.len(), 1, "{json}");
    assert_eq!(holds[0]["outcome"], "released", "{json}");
    assert_eq!(holds[0]["pid"], std::process::id(), "{json}");
    let out = env.run(&["history", "app.db"]);
    let table = text(&out.stdout);
    assert_eq!(code(&out), 0, "{}", text(&out.stderr));
    let row = table
        .lines()
        .find(|l| l.contains("webapp"))
        .unwrap_or_else(|| panic!("{table}"));
    assert!(row.contains("released"), "{row}");
    assert!(!row.contains("released,"), "{row}");
}

/// `--since` takes a duration, an RFC 3339 time, or a time as people write
/// it, without seconds; anything else is a usage error (exit 2).
#[test]
fn since_takes_durations_and_times() {
    let env = Env::new();
    let o = env.run(&["exec", "--write", "app.db", "--", "true"]);
    assert_eq!(code(&o), 0, "{}", text(&o.stderr));
    for since in [
        "1h",
        "2026-11-22T10:00:00Z",
        "2026-11-22 10:00:00",
        "2026-11-22 10:00",
    ] {
        let o = env.run(&["history", "--since", since, "app.db"]);
        assert_eq!(code(&o), 0, "{since}: {}", text(&o.stderr));
        assert!(
            text(&o.stdout).contains("granted"),
            "{since}: {}",
            text(&o.stdout)
        );
    }
    let o = env.run(&["history", "--since", "yesterday-ish", "app.db"]);
    assert_eq!(code(&o), 2, "{}", text(&o.stderr));
    assert!(
        text(&o.stderr).contains("neither a duration nor a time"),
        "{}",
        text(&o.stderr)
    );
}

/// A rotation makes the new journal at once: with a bound of one byte every
/// line rotates the file, the last one included, and the journal is still
/// there afterwards (empty), beside the line in `journal.1`.
#[test]
fn a_journal_rotated_by_the_last_line_is_made_again_at_once() {
    let env = Env::new();
    let o = env
        .cmd(&["exec", "--write", "app.db", "--", "true"])
        .env("DBLAUNCH_JOURNAL_MAX_BYTES", "1")
        .output()
        .unwrap();
    assert_eq!(code(&o), 0, "{}", text(&o.stderr));
    let dir = env.path(".app.db.dblaunch");
    let current = fs::read_to_string(dir.join("journal")).expect("the journal after a rotation");
    assert_eq!(current, "");
    let rotated = fs::read_to_string(dir.join("journal.1")).unwrap();
    assert_eq!(rotated.lines().count(), 1, "{rotated}");
    assert!(rotated.contains("\"released\""), "{rotated}");
}

/// A line that is not an event (torn by a full disk, edited by hand) is
/// skipped with a warning naming it; the rest is read.
#[test]
fn a_corrupt_journal_line_is_skipped_with_a_warning() {
    let env = Env::new();
    let o = env.run(&["exec", "--write", "app.db", "--", "true"]);
    assert_eq!(code(&o), 0);
    let journal = env.path(".app.db.dblaunch/journal");
    let good = fs::read_to_string(&journal).unwrap();
    let torn = &good[..good.len() / 3];
    fs::write(
        &journal,
        format!("{torn}\nnot json at all\n{good}{{\"at\":\"yesterday\",\"event\":\"granted\"}}\n"),
    )
    .unwrap();
    let o = env.run(&["history", "--json", "app.db"]);
    assert_eq!(code(&o), 0, "{}", text(&o.stderr));
    let err = text(&o.stderr);
    assert!(err.contains("journal line 1: not a journal event"), "{err}");
    assert!(err.contains("line 2"), "{err}");
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    let db = &v["databases"][0];
    assert!(db["skipped_lines"].as_u64().unwrap() >= 3, "{db}");
    assert_eq!(db["summary"]["grants"], 1, "{db}");
    let o = env.run(&["metrics", "app.db"]);
    assert_eq!(code(&o), 0, "{}", text(&o.stderr));
}

/// A journal that cannot be written costs a warning, once, and nothing
/// else: the program runs and the lock works.
#[test]
fn an_unwritable_journal_never_stops_a_program() {
    let env = Env::new();
    let o = env.run(&["exec", "--write", "app.db", "--", "true"]);
    assert_eq!(code(&o), 0);
    // A directory where the file should be: unwritable even for root.
    let journal = env.path(".app.db.dblaunch/journal");
    fs::remove_file(&journal).unwrap();
    fs::create_dir(&journal).unwrap();
    let marker = env.path("ran");
    let o = env.run(&[
        "exec",
        "--write",
        "app.db",
        "--",
        "touch",
        marker.to_str().unwrap(),
    ]);
    assert_eq!(code(&o), 0, "{}", text(&o.stderr));
    assert!(marker.exists(), "the program did not run");
    let err = text(&o.stderr);
    assert_eq!(
        err.matches("cannot write the lock journal").count(),
        1,
        "{err}"
    );
    assert_eq!(env.tickets("app.db"), 0);
}

/// In a shared project (a group-writable lock directory), the journal is
/// group-writable too, whatever the umask.
#[test]
fn the_journal_is_group_writable_in_a_shared_project() {
    use std::os::unix::fs::PermissionsExt;
    let env = Env::new();
    let o = env.run(&["exec", "--write", "app.db", "--", "true"]);
    assert_eq!(code(&o), 0);
    let dir = env.path(".app.db.dblaunch");
    fs::set_permissions(&dir, fs::Permissions::from_mode(0o2775)).unwrap();
    fs::remove_file(dir.join("journal")).unwrap();
    let o = env
        .cmd(&["exec", "--write", "app.db", "--", "true"])
        .env("UMASK_TEST", "1")
        .output_with_umask(0o022);
    assert_eq!(code(&o), 0, "{}", text(&o.stderr));
    let mode = fs::metadata(dir.join("journal"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o664, "{mode:o}");
}

trait WithUmask {
    fn output_with_umask(&mut self, mask: libc::mode_t) -> Output;
}

impl WithUmask for Command {
    fn output_with_umask(&mut self, mask: libc::mode_t) -> Output {
        use std::os::unix::process::CommandExt;
        // SAFETY: umask(2) is async-signal-safe and touches nothing else.
        unsafe {
            self.pre_exec(move || {
                libc::umask(mask);
                Ok(())
            });
        }
        self.output().unwrap()
    }
}

/// `--since` keeps what happened after; a manifest name works as DB.
#[test]
fn since_cuts_the_window_and_names_work() {
    let env = Env::new();
    env.manifest("[databases]\nletters = \"letters.db\"\n");
    let o = env.run(&[
        "exec",
        "--name",
        "early",
        "--write",
        "letters.db",
        "--",
        "true",
    ]);
    assert_eq!(code(&o), 0);
    let journal = env.path(".letters.db.dblaunch/journal");
    // Move the early program's events a day back.
    let moved: String = fs::read_to_string(&journal)
        .unwrap()
        .lines()
        .map(|l| {
            let mut v: Value = serde_json::from_str(l).unwrap();
            let t = humantime::parse_rfc3339(v["at"].as_str().unwrap()).unwrap()
                - Duration::from_secs(86_400);
            v["at"] = humantime::format_rfc3339_micros(t).to_string().into();
            format!("{v}\n")
        })
        .collect();
    fs::write(&journal, moved).unwrap();
    let o = env.run(&[
        "exec",
        "--name",
        "late",
        "--write",
        "letters.db",
        "--",
        "true",
    ]);
    assert_eq!(code(&o), 0);
    let all = history_json(&env, &["letters"]);
    let db = &all["databases"][0];
    assert_eq!(db["name"], "letters");
    assert_eq!(db["summary"]["grants"], 2);
    let recent = history_json(&env, &["--since", "1h", "letters"]);
    let db = &recent["databases"][0];
    assert_eq!(db["summary"]["grants"], 1, "{db}");
    assert_eq!(db["holds"][0]["program"], "late");
    let o = env.run(&["history", "--since", "yesterday-ish"]);
    assert_eq!(code(&o), 2, "{}", text(&o.stderr));
    assert!(text(&o.stderr).contains("neither a duration nor a time"));
}

/// `metrics --listen` serves the same text at /metrics, in the format the
/// scraper asks for.
#[test]
fn metrics_are_served_at_slash_metrics() {
    use std::io::{BufRead, BufReader, Read, Write};
    let env = Env::new();
    let o = env.run(&["exec", "--write", "app.db", "--", "true"]);
    assert_eq!(code(&o), 0);
    let mut server = env.spawn(&["metrics", "--listen", "127.0.0.1:0", "app.db"]);
    let mut err = BufReader::new(server.stderr.take().unwrap());
    let mut line = String::new();
    err.read_line(&mut line).unwrap();
    let addr = line
        .split("http://")
        .nth(1)
        .and_then(|s| s.split('/').next())
        .unwrap_or_else(|| panic!("no address in: {line}"))
        .to_owned();
    let get = |path: &str, accept: &str| {
        let mut s = std::net::TcpStream::connect(&addr).unwrap();
        write!(
            s,
            "GET {path} HTTP/1.1\r\nHost: x\r\nAccept: {accept}\r\n\r\n"
        )
        .unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        out
    };
    let om = get(
        "/metrics",
        "application/openmetrics-text;version=1.0.0,text/plain;q=0.5",
    );
    assert!(om.starts_with("HTTP/1.1 200 OK"), "{om}");
    assert!(om.contains("application/openmetrics-text"), "{om}");
    assert!(om.contains("dblaunch_lock_grants_total{database="), "{om}");
    assert!(om.ends_with("# EOF\n"), "{om}");
    let plain = get("/metrics", "text/plain");
    assert!(
        plain.contains("# TYPE dblaunch_lock_grants_total counter"),
        "{plain}"
    );
    assert!(get("/other", "*/*").starts_with("HTTP/1.1 404"));
    let _ = server.kill();
    let _ = server.wait();
}
