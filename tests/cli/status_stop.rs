//! `status` (who holds, who waits, who uses the files outside dblaunch) and
//! `stop` (through the run that started the programs, never a stray pid).

use std::fs;

use serde_json::Value;

use crate::*;

/// A holder's record names its program by pid and start time; dblaunch
/// knows the start time at spawn from the boot clock read around the clone,
/// without reading /proc. It must be exactly the one /proc reports, or the
/// record would not be believed (`status` would call the holder unknown).
#[test]
fn a_holders_record_has_the_start_time_proc_reports_for_its_program() {
    let env = Env::new();
    let lock_dir = env.path(".app.db.dblaunch");
    for i in 0..12 {
        let label = format!("h{i}");
        let mut child = env.holder(&["exec", "--write", "app.db"], &label);
        let record = || -> Option<Value> {
            let name = env.ticket_names("app.db").pop()?;
            serde_json::from_slice(&fs::read(lock_dir.join(name)).ok()?).ok()
        };
        // The record is rewritten for the program just after the spawn.
        wait_until("the record to name the program", || {
            record().is_some_and(|r| r["pid"] != r["supervisor_pid"])
        });
        let r = record().unwrap();
        let pid = r["pid"].as_i64().unwrap();
        let stat = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
        let proc_start: u64 = stat[stat.rfind(')').unwrap() + 2..]
            .split_whitespace()
            .nth(19)
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!(r["start_time"].as_u64(), Some(proc_start), "{r}");
        touch(&env.path("go"));
        assert!(wait_status(&mut child).success());
        fs::remove_file(env.path("go")).unwrap();
    }
}

fn json_status(env: &Env, args: &[&str]) -> Value {
    let mut a = vec!["status", "--json"];
    a.extend(args);
    let o = env.run(&a);
    assert_eq!(code(&o), 0, "{}", text(&o.stderr));
    serde_json::from_slice(&o.stdout).expect("status --json prints one JSON object")
}

fn keys(v: &Value) -> Vec<&str> {
    let mut k: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
    k.sort();
    k
}

#[test]
fn status_shows_a_run_holder_an_exec_waiter_and_a_foreign_locker() {
    let env = Env::new();
    let go = env.path("go");
    env.manifest(format!(
            "[databases]\napp = \"app.db\"\n[programs.ingest]\ncommand = [\"{BIN}\", \"__probe\", \"--label\", \"ingest\", \"--log\", \"{}\", \"--until\", \"{}\"]\nwrites = [\"app\"]\n",
            env.log().display(),
            go.display()
        ));
    fs::write(env.path("app.db"), "").unwrap();
    let run = env.spawn(&["run", "ingest"]);
    env.wait_event("ingest", |e| e.label == "ingest" && e.what == "start");
    let ingest_pid = env.events()[0].pid.unwrap();
    let waiter = env.spawn(&["exec", "--name", "report", "--read", "app.db", "--", "true"]);
    wait_until("the exec to queue", || env.tickets("app.db") == 2);
    // A process that takes a POSIX lock on the database file itself.
    let mut foreign = Command::new("python3")
        .args([
            "-c",
            "import fcntl, os, time\nf = open('app.db', 'r')\nfcntl.lockf(f, fcntl.LOCK_SH)\nopen('locked', 'w').close()\nwhile not os.path.exists('go'): time.sleep(0.01)\n",
        ])
        .current_dir(env.dir.path())
        .spawn()
        .unwrap();
    wait_until("python to lock", || env.path("locked").exists());

    let v = json_status(&env, &[]);
    assert_eq!(keys(&v), ["databases"]);
    let dbs = v["databases"].as_array().unwrap();
    assert_eq!(dbs.len(), 1);
    let db = &dbs[0];
    assert_eq!(keys(db), ["foreign", "holders", "path", "waiters"]);
    let canonical = fs::canonicalize(env.path("app.db")).unwrap();
    assert_eq!(db["path"], canonical.display().to_string());
    let holders = db["holders"].as_array().unwrap();
    assert_eq!(holders.len(), 1, "{db}");
    assert_eq!(
        keys(&holders[0]),
        ["command", "mode", "pid", "program", "since"]
    );
    assert_eq!(holders[0]["program"], "ingest");
    assert_eq!(
        holders[0]["pid"], ingest_pid,
        "the program's own pid, not dblaunch's"
    );
    assert_eq!(holders[0]["mode"], "write");
    assert!(humantime::parse_rfc3339(holders[0]["since"].as_str().unwrap()).is_ok());
    assert_eq!(holders[0]["command"][1], "__probe");
    let waiters = db["waiters"].as_array().unwrap();
    assert_eq!(waiters.len(), 1);
    assert_eq!(waiters[0]["program"], "report");
    assert_eq!(waiters[0]["mode"], "read");
    assert_eq!(
        waiters[0]["pid"],
        waiter.id(),
        "a waiter's pid is the waiting dblaunch"
    );
    let foreign_list = db["foreign"].as_array().unwrap();
    assert_eq!(foreign_list.len(), 1, "{db}");
    assert_eq!(keys(&foreign_list[0]), ["command", "pid"]);
    assert_eq!(foreign_list[0]["pid"], foreign.id());
    // The same, for people, from a path given on the command line.
    let o = env.run(&["status", "app.db"]);
    let table = text(&o.stdout);
    assert!(table.contains("holds  ingest"), "{table}");
    assert!(table.contains("waits  report"), "{table}");
    assert!(table.contains("outside dblaunch"), "{table}");
    touch(&go);
    foreign.wait().unwrap();
    assert_eq!(code(&wait_output(run)), 0);
    assert_eq!(code(&wait_output(waiter)), 0);
    let v = json_status(&env, &["app.db"]);
    assert_eq!(v["databases"][0]["holders"].as_array().unwrap().len(), 0);
}

#[test]
fn a_record_of_a_recycled_pid_is_not_believed() {
    let env = Env::new();
    assert_eq!(
        code(&env.run(&["exec", "--write", "app.db", "--", "true"])),
        0
    );
    // A live process that dblaunch did not start, named in a forged record
    // with the wrong start time.
    let bystander = Group::spawn(Command::new("sleep").arg("60"));
    let record = format!(
        "{{\"pid\":{pid},\"start_time\":1,\"boot_id\":\"{boot}\",\"host\":\"{host}\",\"supervisor_pid\":{pid},\"supervisor_start_time\":1,\"program\":\"forged\",\"mode\":\"write\",\"state\":\"holding\",\"since\":\"2026-01-01T00:00:00Z\",\"command\":[\"sleep\"]}}\n",
        pid = bystander.id(),
        boot = fs::read_to_string("/proc/sys/kernel/random/boot_id")
            .unwrap()
            .trim(),
        host = String::from_utf8(Command::new("hostname").output().unwrap().stdout)
            .unwrap()
            .trim(),
    );
    let ticket = env.path(".app.db.dblaunch/00000000000000000999.w");
    fs::write(&ticket, &record).unwrap();
    // Unlocked: a dead ticket. Not shown, and cleared away.
    let v = json_status(&env, &["app.db"]);
    assert_eq!(
        v["databases"][0]["holders"].as_array().unwrap().len(),
        0,
        "{v}"
    );
    assert!(!ticket.exists());
    // Locked by someone else (flock(1) holds it): the real holder is shown,
    // never the forged pid.
    fs::write(&ticket, &record).unwrap();
    // flock(1) runs `sleep` as a child of its own: both go with the group.
    let holder = Group::spawn(
        Command::new("flock")
            .arg("-o")
            .arg(&ticket)
            .args(["sleep", "60"]),
    );
    wait_until("flock(1) to hold the ticket", || {
        Command::new("flock")
            .args(["-n"])
            .arg(&ticket)
            .arg("true")
            .status()
            .is_ok_and(|s| !s.success())
    });
    let v = json_status(&env, &["app.db"]);
    let holders = v["databases"][0]["holders"].as_array().unwrap();
    assert!(holders.iter().all(|h| h["pid"] != bystander.id()), "{v}");
    assert!(holders.iter().any(|h| h["pid"] == holder.id()), "{v}");
    // stop never signals it either: a forged control record naming the
    // bystander is ignored as stale.
    env.manifest("[programs.p]\ncommand = \"true\"\n");
    fs::create_dir_all(env.path(".dblaunch")).unwrap();
    fs::write(
        env.path(&format!(".dblaunch/run-{}-1.sock", bystander.id())),
        "",
    )
    .unwrap();
    let o = env.run(&["stop"]);
    assert_eq!(code(&o), 0);
    assert!(
        text(&o.stdout).contains("nothing of"),
        "{}",
        text(&o.stdout)
    );
    assert!(
        text(&o.stderr).contains("is now another process"),
        "{}",
        text(&o.stderr)
    );
    assert!(
        alive(bystander.id() as i32),
        "stop signalled a process dblaunch did not start"
    );
}

/// A child in a process group of its own, killed with everything it
/// started when dropped, however the test ends (a failed assertion too).
struct Group(Child);

impl Group {
    fn spawn(command: &mut Command) -> Group {
        use std::os::unix::process::CommandExt;
        Group(
            command
                .process_group(0)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap(),
        )
    }

    fn id(&self) -> u32 {
        self.0.id()
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        kill(-(self.0.id() as i32), libc::SIGKILL);
        let _ = self.0.wait();
    }
}

fn stop_manifest(env: &Env) {
    let term = libc::SIGTERM;
    env.manifest(format!(
            "[settings]\nstop_timeout = \"500ms\"\n\
             [programs.web]\ncommand = [\"{BIN}\", \"__probe\", \"--label\", \"web\", \"--log\", \"{log}\", \"--hold\", \"1h\"]\nreads = [\"app.db\"]\n\
             [programs.stubborn]\ncommand = [\"{BIN}\", \"__probe\", \"--label\", \"stubborn\", \"--log\", \"{log}\", \"--hold\", \"1h\", \"--ignore\", \"{term}\"]\n\
             [programs.worker]\ncommand = [\"{BIN}\", \"__probe\", \"--label\", \"worker\", \"--log\", \"{log}\", \"--until\", \"{go}\"]\n\
             [programs.after_web]\ncommand = \"true\"\nafter = [\"web\"]\n",
            log = env.log().display(),
            go = env.path("go").display()
        ));
}

#[test]
fn stop_one_program_frees_its_database_and_the_run_goes_on() {
    let env = Env::new();
    stop_manifest(&env);
    let run = env.spawn(&["run", "web", "worker"]);
    env.wait_event("web", |e| e.label == "web" && e.what == "start");
    env.wait_event("worker", |e| e.label == "worker" && e.what == "start");
    assert_eq!(
        code(&env.run(&["exec", "--no-wait", "--write", "app.db", "--", "true"])),
        75
    );
    let o = env.run(&["stop", "web"]);
    assert_eq!(code(&o), 0);
    let out = text(&o.stdout);
    assert!(
        out.contains("stopping web (pid") && out.contains("stopped web (pid"),
        "{out}"
    );
    // web's database is free again while the run goes on with worker.
    assert_eq!(
        code(&env.run(&["exec", "--no-wait", "--write", "app.db", "--", "true"])),
        0
    );
    touch(&env.path("go"));
    let o = wait_output(run);
    assert_eq!(
        code(&o),
        0,
        "a program stopped by `stop` counts as a success: {}",
        text(&o.stderr)
    );
    assert!(
        env.events()
            .iter()
            .any(|e| e.label == "worker" && e.what == "end")
    );
}

#[test]
fn stop_escalates_to_sigkill_after_the_stop_timeout_and_a_fully_stopped_run_exits_0() {
    let env = Env::new();
    stop_manifest(&env);
    let run = env.spawn(&["run", "stubborn", "web", "after_web"]);
    env.wait_event("stubborn", |e| e.label == "stubborn" && e.what == "start");
    env.wait_event("web", |e| e.label == "web" && e.what == "start");
    let pids: Vec<i32> = env
        .events()
        .iter()
        .filter(|e| e.what == "start")
        .filter_map(|e| e.pid)
        .collect();
    let o = env.run(&["stop"]);
    let out = text(&o.stdout);
    assert!(
        out.contains("stopped stubborn (pid") && out.contains("killed by SIGKILL"),
        "{out}"
    );
    assert!(out.contains("stopped web (pid"), "{out}");
    assert!(
        out.contains("after_web had not started; it will not start now"),
        "{out}"
    );
    assert!(
        env.events()
            .iter()
            .any(|e| e.label == "stubborn" && e.what == "got SIGTERM")
    );
    let o = wait_output(run);
    assert_eq!(code(&o), 0, "{}", text(&o.stderr));
    for pid in pids {
        assert!(!alive(pid));
    }
    let o = env.run(&["stop"]);
    assert_eq!(code(&o), 0);
    assert!(
        text(&o.stdout).contains("nothing of"),
        "{}",
        text(&o.stdout)
    );
}

#[test]
fn two_projects_do_not_see_each_others_runs() {
    let a = Env::new();
    let b = Env::new();
    stop_manifest(&a);
    stop_manifest(&b);
    let run = a.spawn(&["run", "web"]);
    a.wait_event("web", |e| e.label == "web" && e.what == "start");
    let o = b.run(&["stop"]);
    assert!(
        text(&o.stdout).contains("nothing of"),
        "{}",
        text(&o.stdout)
    );
    assert!(a.events().iter().all(|e| e.what != "got SIGTERM"));
    assert_eq!(code(&a.run(&["stop"])), 0);
    assert_eq!(code(&wait_output(run)), 0);
}
