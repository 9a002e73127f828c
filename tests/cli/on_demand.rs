//! `hold = "on-demand"`: a program that takes its locks itself, per
//! operation, through the lock library (the probe's `--lock-write`, which
//! calls the lock crate's `Lock`). dblaunch starts it at once, holding
//! nothing for it, with the manifest in `DBLAUNCH_FILE`; the run's other
//! programs wait for it only while it holds; `ps` and `status` show what it
//! holds and awaits.

use std::fs;

use serde_json::Value;

use crate::*;

/// A TOML string of `path`.
fn toml_str(path: &std::path::Path) -> String {
    format!("\"{}\"", path.display())
}

/// The `webapp` program: the probe, run from `cwd` (outside the project, so
/// that only `DBLAUNCH_FILE` can say what `letters` is), locking `letters`
/// for writing once `lock` exists and letting go once `unlock` exists; it
/// ends once `go` exists. `shell` runs it under `sh -c`, as a member of
/// the program's process group rather than its leader.
fn webapp(env: &Env, cwd: &Env, shell: bool) -> String {
    let files = [env.path("lock"), env.path("unlock"), env.path("webapp-go")];
    let [lock, unlock, go] = files.each_ref().map(|f| f.to_str().unwrap());
    let args = [
        "--lock-write",
        "letters",
        "--lock-when",
        lock,
        "--unlock-when",
        unlock,
        "--until",
        go,
    ];
    let command = if shell {
        // `; true`: the shell cannot exec the probe in its place.
        format!("\"{}; true\"", env.probe("webapp", &args).join(" "))
    } else {
        toml_array(&env.probe("webapp", &args))
    };
    format!(
        "[programs.webapp]\ncommand = {command}\ncwd = {}\nwrites = [\"letters\"]\nhold = \"on-demand\"\n",
        toml_str(cwd.dir.path())
    )
}

/// `argv` as a TOML array of strings.
fn toml_array(argv: &[String]) -> String {
    let items: Vec<String> = argv.iter().map(|a| format!("\"{a}\"")).collect();
    format!("[{}]", items.join(", "))
}

/// `ps --json`'s entry for `program`.
fn ps_entry(env: &Env, program: &str) -> Value {
    let o = env.run(&["ps", "--json"]);
    assert_eq!(code(&o), 0, "{}", text(&o.stderr));
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    v["programs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["program"] == program)
        .cloned()
        .unwrap_or_else(|| panic!("no {program} in {v}"))
}

/// `ps`'s row for `program`.
fn ps_row(env: &Env, program: &str) -> String {
    let o = env.run(&["ps"]);
    assert_eq!(code(&o), 0, "{}", text(&o.stderr));
    text(&o.stdout)
        .lines()
        .find(|l| l.starts_with(&format!("{program} ")))
        .unwrap_or_else(|| panic!("no {program} in {}", text(&o.stdout)))
        .to_owned()
}

fn uses(v: &Value) -> Vec<(String, String)> {
    v.as_array()
        .unwrap_or_else(|| panic!("not a list: {v}"))
        .iter()
        .map(|u| {
            (
                u["path"].as_str().unwrap().to_owned(),
                u["mode"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

#[test]
fn it_starts_at_once_while_its_database_is_held_with_its_manifest_and_name() {
    let env = Env::new();
    let elsewhere = Env::new();
    let seen = env.path("seen");
    env.manifest(format!(
        "[databases]\nletters = \"letters.db\"\n\
         [programs.webapp]\ncommand = 'printf \"%s\\n%s\\n\" \"$DBLAUNCH_FILE\" \"$DBLAUNCH_PROGRAM\" > {}; exec {} __probe --label webapp --log {} --until {}'\n\
         cwd = {}\nwrites = [\"letters\"]\nhold = \"on-demand\"\n",
        seen.display(),
        BIN,
        env.log().display(),
        env.path("webapp-go").display(),
        toml_str(elsewhere.dir.path())
    ));
    let mut holder = env.holder(&["exec", "--write", "letters.db"], "holder");
    // The manifest named relatively: the program gets it absolute.
    let run = env.spawn(&["-f", "dblaunch.toml", "run", "webapp"]);
    env.wait_event("webapp to start", |e| {
        e.label == "webapp" && e.what == "start"
    });
    assert!(
        !env.events()
            .iter()
            .any(|e| e.label == "holder" && e.what == "end"),
        "the holder still holds"
    );
    assert_eq!(
        env.ticket_names("letters.db").len(),
        1,
        "dblaunch queued for nothing on its behalf"
    );
    wait_until("the program's environment", || {
        fs::read_to_string(&seen).is_ok_and(|s| s.lines().count() == 2)
    });
    let seen = fs::read_to_string(&seen).unwrap();
    let lines: Vec<&str> = seen.lines().collect();
    let manifest = fs::canonicalize(env.path("dblaunch.toml")).unwrap();
    assert_eq!(lines, [manifest.to_str().unwrap(), "webapp"]);
    touch(&env.path("webapp-go"));
    let o = wait_output(run);
    assert_eq!(code(&o), 0, "{}", text(&o.stderr));
    touch(&env.path("go"));
    assert!(wait_status(&mut holder).success());
}

#[test]
fn a_writer_of_the_run_waits_for_it_only_while_it_holds() {
    let env = Env::new();
    let elsewhere = Env::new();
    let mut toml = String::from("[databases]\nletters = \"letters.db\"\n\n");
    toml += &webapp(&env, &elsewhere, false);
    toml += &env.probe_program("ingest", "", "writes = [\"letters\"]");
    let trigger = toml_str(&env.path("trigger"));
    toml += &env.probe_program("gate", &format!(", \"--until\", {trigger}"), "");
    toml += &env.probe_program("report", "", "writes = [\"letters\"]\nafter = [\"gate\"]");
    env.manifest(&toml);
    let run = env.spawn(&["run", "webapp", "ingest", "report"]);
    // ingest conflicts with webapp, which holds nothing yet: it runs now.
    env.wait_event("ingest to run while webapp runs", |e| {
        e.label == "ingest" && e.what == "end"
    });
    let ev = env.events();
    assert!(
        ev.iter().any(|e| e.label == "webapp" && e.what == "start")
            && !ev.iter().any(|e| e.label == "webapp" && e.what == "end"),
        "{ev:?}"
    );
    // webapp takes letters itself; report, queued then, waits for it.
    touch(&env.path("lock"));
    env.wait_event("webapp to lock", |e| {
        e.label == "webapp" && e.what == "locked"
    });
    touch(&env.path("trigger"));
    wait_until("report to queue behind webapp", || {
        env.tickets("letters.db") == 2
    });
    assert_eq!(ps_entry(&env, "report")["state"], "queued");
    touch(&env.path("unlock"));
    let unlocked = env.time_of("webapp", "unlocked");
    assert!(env.time_of("report", "start") > unlocked);
    env.wait_event("report to end", |e| e.label == "report" && e.what == "end");
    touch(&env.path("webapp-go"));
    let o = wait_output(run);
    assert_eq!(code(&o), 0, "{}", text(&o.stderr));
    assert_eq!(env.tickets("letters.db"), 0);
}

#[test]
fn ps_and_status_show_what_it_holds_and_awaits() {
    let env = Env::new();
    let elsewhere = Env::new();
    env.manifest(format!(
        "[databases]\nletters = \"letters.db\"\n\n{}",
        webapp(&env, &elsewhere, true)
    ));
    fs::write(env.path("letters.db"), "").unwrap();
    let letters = fs::canonicalize(env.path("letters.db"))
        .unwrap()
        .display()
        .to_string();
    let write = vec![(letters.clone(), "write".to_owned())];
    let mut holder = env.holder(&["exec", "--write", "letters.db"], "holder");
    let run = env.spawn(&["run", "webapp"]);
    env.wait_event("webapp to start", |e| {
        e.label == "webapp" && e.what == "start"
    });
    let probe = env
        .events()
        .into_iter()
        .find(|e| e.label == "webapp" && e.what == "start")
        .unwrap();
    let (probe_pid, group) = (probe.pid.unwrap(), probe.pgid.unwrap());

    // Running, holding nothing.
    let w = ps_entry(&env, "webapp");
    assert_eq!(w["state"], "running", "{w}");
    assert_eq!(w["hold"], "on-demand", "{w}");
    assert_eq!(w["pid"], group, "the program is the shell: {w}");
    assert_ne!(group, probe_pid, "the probe is a member of its group");
    assert_eq!(uses(&w["declares"]), write, "{w}");
    assert_eq!(uses(&w["holds"]), [], "{w}");
    assert_eq!(uses(&w["awaits"]), [], "{w}");
    assert!(
        ps_row(&env, "webapp").ends_with(&format!(
            "locks for itself: {letters} (write); holds none now"
        )),
        "{}",
        ps_row(&env, "webapp")
    );

    // Waiting for the holder.
    touch(&env.path("lock"));
    wait_until("webapp to queue", || env.tickets("letters.db") == 2);
    let w = ps_entry(&env, "webapp");
    assert_eq!(uses(&w["awaits"]), write, "{w}");
    assert_eq!(uses(&w["holds"]), [], "{w}");
    assert!(
        ps_row(&env, "webapp").ends_with(&format!("; awaits {letters} (write)")),
        "{}",
        ps_row(&env, "webapp")
    );

    // Holding, once the holder has gone.
    touch(&env.path("go"));
    assert!(wait_status(&mut holder).success());
    env.wait_event("webapp to lock", |e| {
        e.label == "webapp" && e.what == "locked"
    });
    let w = ps_entry(&env, "webapp");
    assert_eq!(uses(&w["holds"]), write, "{w}");
    assert_eq!(uses(&w["awaits"]), [], "{w}");
    assert!(
        ps_row(&env, "webapp").ends_with(&format!(
            "locks for itself: {letters} (write); holds {letters} (write)"
        )),
        "{}",
        ps_row(&env, "webapp")
    );
    // status: the process that locked, under the program's name.
    let o = env.run(&["status", "--json", "letters"]);
    assert_eq!(code(&o), 0, "{}", text(&o.stderr));
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    let db = &v["databases"][0];
    assert_eq!(db["path"], letters.as_str());
    let holders = db["holders"].as_array().unwrap();
    assert_eq!(holders.len(), 1, "{db}");
    assert_eq!(holders[0]["program"], "webapp", "{db}");
    assert_eq!(holders[0]["pid"], probe_pid, "{db}");
    assert_eq!(holders[0]["mode"], "write", "{db}");
    assert_eq!(holders[0]["command"][1], "__probe", "{db}");
    assert_eq!(db["waiters"].as_array().unwrap().len(), 0, "{db}");
    let table = text(&env.run(&["status", "letters"]).stdout);
    assert!(
        table.contains(&format!("holds  webapp   pid {probe_pid:<7}  write")),
        "{table}"
    );

    // Let go: it runs on, holding nothing.
    touch(&env.path("unlock"));
    env.wait_event("webapp to let go", |e| {
        e.label == "webapp" && e.what == "unlocked"
    });
    let w = ps_entry(&env, "webapp");
    assert_eq!(w["state"], "running", "{w}");
    assert_eq!(uses(&w["holds"]), [], "{w}");
    touch(&env.path("webapp-go"));
    let o = wait_output(run);
    assert_eq!(code(&o), 0, "{}", text(&o.stderr));
    assert_eq!(env.tickets("letters.db"), 0);
}
