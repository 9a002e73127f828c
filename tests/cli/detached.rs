//! Detached runs: `start` returns once the programs are up, the run lives
//! in its own session (a closing terminal cannot reach it), `ps`, `logs`,
//! `logs -f` and `restart` work on it, and `stop` ends it leaving nothing.

use std::fs;

use crate::*;

fn manifest(env: &Env) {
    env.manifest("[settings]\nstop_timeout = \"1s\"\n\
         [programs.web]\ncommand = \"i=0; while true; do echo tick $i; i=$((i+1)); sleep 0.1; done\"\nreads = [\"app.db\"]\n\
         [programs.worker]\ncommand = \"echo working; exec sleep 60\"\n\
         [programs.broken]\ncommand = [\"no-such-command-xyz\"]\n");
}

/// `ps` rows: (program, state, pid).
fn ps(env: &Env) -> Vec<(String, String, Option<i32>)> {
    let o = env.run(&["ps"]);
    assert_eq!(code(&o), 0);
    text(&o.stdout)
        .lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.len() >= 3).then(|| (f[0].to_owned(), f[1].to_owned(), f[2].parse().ok()))
        })
        .collect()
}

fn pid_of(env: &Env, program: &str) -> i32 {
    ps(env)
        .into_iter()
        .find(|r| r.0 == program)
        .and_then(|r| r.2)
        .unwrap()
}

fn session_of(pid: i32) -> i32 {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    stat.rsplit(')')
        .next()
        .unwrap()
        .split_whitespace()
        .nth(3)
        .unwrap()
        .parse()
        .unwrap()
}

#[test]
fn start_ps_logs_restart_and_stop() {
    let env = Env::new();
    manifest(&env);
    let o = env.run(&["start", "web", "worker"]);
    assert_eq!(code(&o), 0, "{}", text(&o.stderr));
    let out = text(&o.stdout);
    assert!(
        out.contains("started web (pid") && out.contains("started worker (pid"),
        "{out}"
    );
    let run_pid: i32 = out
        .split("in the background as pid ")
        .nth(1)
        .and_then(|s| s.split(':').next())
        .and_then(|s| s.trim().parse().ok())
        .unwrap();
    // Its own session: the terminal's hang-up cannot reach it.
    assert_eq!(session_of(run_pid), run_pid);
    let rows = ps(&env);
    assert!(
        rows.iter().any(|r| r.0 == "web" && r.1 == "running"),
        "{rows:?}"
    );
    let web = pid_of(&env, "web");
    assert!(alive(web));
    // The same as data.
    let o = env.run(&["ps", "--json"]);
    assert_eq!(code(&o), 0, "{}", text(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let programs = v["programs"].as_array().unwrap();
    let w = programs.iter().find(|p| p["program"] == "web").unwrap();
    assert_eq!(w["state"], "running", "{w}");
    assert_eq!(w["pid"], web, "{w}");
    assert_eq!(w["run_pid"], run_pid, "{w}");
    assert_eq!(w["holds"][0]["mode"], "read", "{w}");
    assert!(
        w["holds"][0]["path"].as_str().unwrap().ends_with("/app.db"),
        "{w}"
    );

    // A second start changes nothing.
    let o = env.run(&["start", "web"]);
    assert!(
        text(&o.stdout).contains("already running, nothing started"),
        "{}",
        text(&o.stdout)
    );
    assert_eq!(pid_of(&env, "web"), web);

    // logs, and logs -f following new lines.
    wait_until("a few ticks", || {
        fs::read_to_string(env.path(".dblaunch/logs/web.log"))
            .unwrap_or_default()
            .lines()
            .count()
            >= 3
    });
    let o = env.run(&["logs", "-n", "2", "web"]);
    let lines: Vec<String> = text(&o.stdout).lines().map(str::to_owned).collect();
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert!(
        lines.iter().all(|l| l.starts_with("web | tick ")),
        "{lines:?}"
    );
    let mut follow = env
        .cmd(&["logs", "-f", "-n", "0", "web", "worker"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let seen = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let reader = {
        let seen = seen.clone();
        let mut out = follow.stdout.take().unwrap();
        std::thread::spawn(move || {
            use std::io::Read;
            let mut buf = [0u8; 4096];
            while let Ok(n) = out.read(&mut buf) {
                if n == 0 {
                    break;
                }
                seen.lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        })
    };
    wait_until("logs -f to print new ticks", || {
        seen.lock().unwrap().matches("web    | tick").count() >= 3
    });
    follow.kill().unwrap();
    follow.wait().unwrap();

    // restart: a new process.
    let worker = pid_of(&env, "worker");
    let o = env.run(&["restart", "worker"]);
    assert!(
        text(&o.stdout).contains("starting it again"),
        "{}",
        text(&o.stdout)
    );
    wait_until("worker to be back", || {
        ps(&env)
            .iter()
            .any(|r| r.0 == "worker" && r.1 == "running" && r.2 != Some(worker))
    });
    assert!(!alive(worker));

    // stop: nothing left.
    let o = env.run(&["stop"]);
    assert!(
        text(&o.stdout).contains("stopped web"),
        "{}",
        text(&o.stdout)
    );
    wait_until("the run to end", || !alive(run_pid));
    assert!(!alive(web));
    assert!(text(&env.run(&["ps"]).stdout).contains("nothing of"));
    assert_eq!(
        code(&env.run(&["exec", "--no-wait", "--write", "app.db", "--", "true"])),
        0
    );
    reader.join().unwrap();
}

#[test]
fn start_says_which_program_failed_to_start() {
    let env = Env::new();
    manifest(&env);
    let o = env.run(&["start", "worker", "broken"]);
    assert_eq!(code(&o), 1);
    let out = text(&o.stdout);
    assert!(out.contains("started worker (pid"), "{out}");
    assert!(
        out.contains("failed broken: it could not start (status 127)"),
        "{out}"
    );
    let log = fs::read_to_string(env.path(".dblaunch/dblaunch.log")).unwrap();
    assert!(log.contains("`no-such-command-xyz` not found"), "{log}");
    assert_eq!(code(&env.run(&["stop"])), 0);
}
