//! Nested dblaunch: a process that inherited the lock of a
//! database from an ancestor dblaunch already holds it. Covered requests run
//! at once; a request that could never be granted fails at once with exit 2;
//! processes under one holder still exclude each other; strangers still wait.

use std::fs;

use serde_json::Value;

use crate::*;

/// `dblaunch exec ARGS -- CMD`, as a command line for a shell.
fn exec_line(args: &str, cmd: &str) -> String {
    format!("{BIN} exec {args} -- {cmd}")
}

/// The probe, as a command line for a shell.
fn probe_line(env: &Env, label: &str, extra: &str) -> String {
    format!(
        "{BIN} __probe --label {label} --log {} {extra}",
        env.log().display()
    )
}

fn ended(env: &Env, label: &str) -> bool {
    env.events()
        .iter()
        .any(|e| e.label == label && e.what == "end")
}

#[test]
fn an_exec_inside_an_exec_of_the_same_database_runs_at_once() {
    let env = Env::new();
    let inner = exec_line("--write app.db", &probe_line(&env, "inner", ""));
    let o = env.run(&["exec", "--write", "app.db", "--", "sh", "-c", &inner]);
    assert_eq!(code(&o), 0, "{}", text(&o.stderr));
    assert!(ended(&env, "inner"));
    // A write held covers a read, and levels nest.
    let deep = exec_line(
        "--read app.db",
        &exec_line("--read app.db", &probe_line(&env, "deep", "")),
    );
    let o = env.run(&["exec", "--write", "app.db", "--", "sh", "-c", &deep]);
    assert_eq!(code(&o), 0, "{}", text(&o.stderr));
    assert!(ended(&env, "deep"));
    // Readers under a reader too.
    let o = env.run(&[
        "exec",
        "--read",
        "app.db",
        "--",
        "sh",
        "-c",
        &exec_line("--read app.db", &probe_line(&env, "rr", "")),
    ]);
    assert_eq!(code(&o), 0, "{}", text(&o.stderr));
    assert!(ended(&env, "rr"));
    assert_eq!(env.tickets("app.db"), 0);
    let lock_dir = env.path(".app.db.dblaunch");
    let left: Vec<_> = fs::read_dir(&lock_dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .filter(|n| n != "gate" && n != "journal")
        .collect();
    assert!(left.is_empty(), "left behind: {left:?}");
    // The journal tells the nested grants from the others.
    let journal = fs::read_to_string(lock_dir.join("journal")).unwrap();
    let nested = journal
        .lines()
        .filter(|l| l.contains("\"granted\"") && l.contains("\"nested\":true"))
        .count();
    assert_eq!(nested, 4, "{journal}");
}

#[test]
fn a_write_under_a_read_fails_at_once_naming_the_ancestor() {
    let env = Env::new();
    let marker = env.path("ran");
    let inner = exec_line("--write app.db", &format!("touch {}", marker.display()));
    let o = env.run(&[
        "exec", "--name", "reader", "--read", "app.db", "--", "sh", "-c", &inner,
    ]);
    let err = text(&o.stderr);
    assert_eq!(code(&o), 2, "{err}");
    assert!(err.contains("runs under reader (pid "), "{err}");
    assert!(err.contains("holds that database for reading"), "{err}");
    assert!(!marker.exists());
    // The pid named is the reader's program: the shell, child of the exec.
    let pid: i32 = err
        .split("runs under reader (pid ")
        .nth(1)
        .and_then(|s| s.split(')').next())
        .and_then(|s| s.parse().ok())
        .expect("a pid in the message");
    assert!(pid > 1, "{err}");
}

#[test]
fn exec_inside_run_and_run_inside_exec() {
    let env = Env::new();
    let inner = exec_line("--write app.db", &probe_line(&env, "in-run", ""));
    env.manifest(format!(
            "[databases]\napp = \"app.db\"\n[programs.job]\ncommand = {}\nwrites = [\"app\"]\n[programs.task]\ncommand = {}\nwrites = [\"app\"]\n",
            toml_str(&inner),
            toml_str(&probe_line(&env, "task", ""))
        ));
    let o = env.run(&["run", "job"]);
    assert_eq!(code(&o), 0, "{}", text(&o.stderr));
    assert!(ended(&env, "in-run"));
    let o = env.run(&["exec", "--write", "app", "--", BIN, "run", "task"]);
    assert_eq!(code(&o), 0, "{}", text(&o.stderr));
    assert!(ended(&env, "task"));
}

fn toml_str(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

#[test]
fn processes_under_one_holder_still_exclude_each_other_and_strangers_wait() {
    let env = Env::new();
    let go = env.path("go");
    // Two writers and a reader started side by side by one script that
    // holds the database: they take turns among themselves.
    let until = format!("--until {}", go.display());
    let script = format!(
        "{} & {} & {} & wait",
        exec_line("--write app.db", &probe_line(&env, "a", &until)),
        exec_line("--write app.db", &probe_line(&env, "b", &until)),
        exec_line("--read app.db", &probe_line(&env, "c", &until)),
    );
    let outer = env.spawn(&[
        "exec", "--name", "script", "--write", "app.db", "--", "sh", "-c", &script,
    ]);
    wait_until("the script to hold", || env.tickets("app.db") == 1);
    let ticket = env.ticket_names("app.db").pop().unwrap();
    let nested_dir = env.path(&format!(".app.db.dblaunch/{ticket}.nested"));
    wait_until("all three to queue under the script", || {
        fs::read_dir(&nested_dir)
            .map(|d| d.flatten().filter(|e| e.file_name().len() == 22).count() == 3)
            .unwrap_or(false)
    });
    env.wait_event("a nested program", |e| e.what == "start");
    // Someone outside the script still waits for the script's lock.
    let o = env.run(&["exec", "--no-wait", "--read", "app.db", "--", "true"]);
    let err = text(&o.stderr);
    assert_eq!(code(&o), 75, "{err}");
    assert!(err.contains("script"), "{err}");
    // status shows the script as the holder with the nested one in it.
    let o = env.run(&["status", "--json", "app.db"]);
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    let holder = &v["databases"][0]["holders"][0];
    assert_eq!(holder["program"], "script", "{v}");
    let nested = &holder["nested"];
    assert_eq!(nested["holders"].as_array().map(Vec::len), Some(1), "{v}");
    assert_eq!(nested["waiters"].as_array().map(Vec::len), Some(2), "{v}");
    let table = text(&env.run(&["status", "app.db"]).stdout);
    assert!(table.contains("holds (nested)"), "{table}");
    touch(&go);
    assert!(wait_output(outer).status.success());
    let iv = intervals(&env.events());
    assert_eq!(iv.len(), 3, "{iv:?}");
    for (i, (la, sa, ea)) in iv.iter().enumerate() {
        for (lb, sb, eb) in &iv[i + 1..] {
            assert!(!(sa < eb && sb < ea), "{la} and {lb} overlapped");
        }
    }
}

#[test]
fn several_databases_some_held_by_the_ancestor_queue_for_the_rest() {
    let env = Env::new();
    let go = env.path("go");
    // b.db is held by an unrelated program until `go` exists.
    let other = env.holder(&["exec", "--name", "other", "--write", "b.db"], "other");
    let inner = exec_line("--write a.db --write b.db", &probe_line(&env, "inner", ""));
    let outer = env.spawn(&["exec", "--write", "a.db", "--", "sh", "-c", &inner]);
    // The inner one queues for b.db (and only b.db) behind `other`.
    wait_until("the inner exec to queue for b.db", || {
        env.tickets("b.db") == 2
    });
    assert_eq!(env.tickets("a.db"), 1, "a.db is the outer's alone");
    assert!(!env.events().iter().any(|e| e.label == "inner"));
    touch(&go);
    assert!(wait_output(other).status.success());
    let o = wait_output(outer);
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert!(ended(&env, "inner"));
}

#[test]
fn an_open_ticket_without_its_lock_proves_nothing() {
    let env = Env::new();
    let holder = env.holder(&["exec", "--write", "app.db"], "h");
    let ticket = env.ticket_names("app.db").pop().unwrap();
    let path = env.path(&format!(".app.db.dblaunch/{ticket}"));
    // A stranger opens the holder's ticket (no lock, not inherited) and
    // runs a nested-looking exec with it open: it must still wait.
    let script = format!(
        "import os, subprocess, sys\nfd = os.open({path:?}, os.O_RDONLY)\nos.set_inheritable(fd, True)\nsys.exit(subprocess.run([{BIN:?}, 'exec', '--no-wait', '--write', 'app.db', '--', 'true'], close_fds=False).returncode)\n",
        path = path.display().to_string()
    );
    let o = Command::new("python3")
        .args(["-c", &script])
        .current_dir(env.dir.path())
        .output()
        .unwrap();
    assert_eq!(code(&o), 75, "{}", text(&o.stderr));
    touch(&env.path("go"));
    assert!(wait_output(holder).status.success());
}
