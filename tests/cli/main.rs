//! Integration tests: the real binary, real processes, real kernel locks.
//!
//! Tests synchronise on events (a probe writes a line to a log, a ticket
//! appears in the queue), never on sleeps; every wait has a generous timeout
//! so that a broken build fails instead of hanging.

mod bad_input;
mod chaos;
mod crash;
mod demo;
mod detached;
mod devloop;
mod duckdb;
mod exclusion;
mod exec_names;
mod exit_codes;
mod fairness;
mod foreign;
mod fuzz;
mod history;
mod hostile;
mod leftovers;
mod manifest;
mod nested;
mod on_demand;
mod restart;
mod run;
mod several_hosts;
mod signals;
mod status_stop;
mod terminal;
mod yields;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_dblaunch");

/// Long enough for a loaded 2-core CI machine; only reached when broken.
pub const PATIENCE: Duration = Duration::from_secs(30);

/// A temporary project directory and helpers to run dblaunch in it.
pub struct Env {
    pub dir: tempfile::TempDir,
}

/// Whatever a test leaves running (a failed assertion skips its clean-up)
/// is killed with the test's directory: every process whose command line
/// names that directory.
impl Drop for Env {
    fn drop(&mut self) {
        for (pid, _) in processes_naming(&self.dir.path().display().to_string()) {
            kill(pid, libc::SIGKILL);
        }
    }
}

/// Live processes whose command line contains `needle`, with that line.
pub fn processes_naming(needle: &str) -> Vec<(i32, String)> {
    let mut found = Vec::new();
    for entry in fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<i32>().ok())
        else {
            continue;
        };
        let cmdline = fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        if cmdline.contains(needle) && alive(pid) {
            found.push((pid, cmdline));
        }
    }
    found
}

impl Default for Env {
    fn default() -> Env {
        Env::new()
    }
}

impl Env {
    pub fn new() -> Env {
        Env {
            dir: tempfile::tempdir().expect("temp dir"),
        }
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    pub fn log(&self) -> PathBuf {
        self.path("events.log")
    }

    /// `dblaunch ARGS` in the project directory, without the caller's logging
    /// settings.
    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(BIN);
        c.args(args)
            .current_dir(self.dir.path())
            .env_remove("RUST_LOG")
            .env_remove("DBLAUNCH_FILE")
            .stdin(Stdio::null());
        c
    }

    /// Runs to completion and returns the output.
    pub fn run(&self, args: &[&str]) -> Output {
        let child = self
            .cmd(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn dblaunch");
        wait_output(child)
    }

    /// Starts in the background, output to files in the project directory.
    pub fn spawn(&self, args: &[&str]) -> Child {
        self.cmd(args)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn dblaunch")
    }

    /// `dblaunch ARGS -- probe LABEL` holding until the file `go` exists,
    /// returned once the probe has started (so it holds its locks).
    pub fn holder(&self, args: &[&str], label: &str) -> Child {
        let go = self.path("go");
        let child = self.spawn(&with_cmd(
            args,
            &self.probe(label, &["--until", go.to_str().unwrap()]),
        ));
        self.wait_event(label, |e| e.label == label && e.what == "start");
        child
    }

    /// The args after `--` that run the probe fixture.
    pub fn probe(&self, label: &str, extra: &[&str]) -> Vec<String> {
        let mut v = vec![
            BIN.to_owned(),
            "__probe".to_owned(),
            "--label".to_owned(),
            label.to_owned(),
            "--log".to_owned(),
            self.log().display().to_string(),
        ];
        v.extend(extra.iter().map(|s| s.to_string()));
        v
    }

    /// Writes the project's `dblaunch.toml`.
    pub fn manifest(&self, text: impl AsRef<str>) {
        fs::write(self.path("dblaunch.toml"), text.as_ref()).expect("write the manifest");
    }

    /// The probe fixture labelled `label` as a TOML command array; `extra`
    /// is more TOML array items (`, "--hold", "10ms"`), or nothing.
    pub fn probe_toml(&self, label: &str, extra: &str) -> String {
        format!(
            "[\"{BIN}\", \"__probe\", \"--label\", \"{label}\", \"--log\", \"{}\"{extra}]",
            self.log().display()
        )
    }

    /// A `[programs.NAME]` table that runs the probe labelled NAME (with
    /// `extra` probe arguments, as for [`Env::probe_toml`]), then `body`
    /// (its locks, `after` …).
    pub fn probe_program(&self, name: &str, extra: &str, body: &str) -> String {
        format!(
            "[programs.{name}]\ncommand = {}\n{body}\n",
            self.probe_toml(name, extra)
        )
    }

    /// Number of tickets (waiters + holders) in a database's queue.
    pub fn tickets(&self, db: &str) -> usize {
        self.ticket_names(db).len()
    }

    /// The names of the tickets in a database's queue.
    pub fn ticket_names(&self, db: &str) -> Vec<String> {
        let path = self.path(db);
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let dir = path.parent().unwrap().join(format!(".{name}.dblaunch"));
        fs::read_dir(dir)
            .map(|d| {
                d.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .filter(|n| n.len() == 22)
                    .collect()
            })
            .unwrap_or_default()
    }

    pub fn events(&self) -> Vec<Event> {
        events(&self.log())
    }

    /// Waits for the first `what` line of `label` and returns its time.
    pub fn time_of(&self, label: &str, what: &str) -> u128 {
        let is = |e: &Event| e.label == label && e.what == what;
        self.wait_event(&format!("{label} {what}"), is);
        self.events().into_iter().find(is).unwrap().ns
    }

    /// Waits until the log holds a line for which `pred` is true.
    pub fn wait_event(&self, what: &str, pred: impl Fn(&Event) -> bool) {
        wait_until(what, || self.events().iter().any(&pred));
    }
}

/// `args` followed by `--` and the command.
pub fn with_cmd<'a>(args: &[&'a str], cmd: &'a [String]) -> Vec<&'a str> {
    let mut v: Vec<&str> = args.to_vec();
    v.push("--");
    v.extend(cmd.iter().map(String::as_str));
    v
}

/// One line of a probe log: `LABEL WHAT NS [PID PGID]`.
#[derive(Clone, Debug)]
pub struct Event {
    pub label: String,
    pub what: String,
    pub ns: u128,
    pub pid: Option<i32>,
    pub pgid: Option<i32>,
}

pub fn events(log: &Path) -> Vec<Event> {
    fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let (label, what, ns) = match f.as_slice() {
                [label, "got", sig, ns, ..] => (label.to_string(), format!("got {sig}"), ns),
                [label, what, ns, ..] => (label.to_string(), what.to_string(), ns),
                _ => return None,
            };
            Some(Event {
                label,
                what,
                ns: ns.parse().ok()?,
                pid: f
                    .get(3)
                    .and_then(|p| p.parse().ok())
                    .filter(|_| f[1] != "got"),
                pgid: f.get(4).and_then(|p| p.parse().ok()),
            })
        })
        .collect()
}

/// The (start, end) interval of each label that has both.
pub fn intervals(events: &[Event]) -> Vec<(String, u128, u128)> {
    let mut out = Vec::new();
    for s in events.iter().filter(|e| e.what == "start") {
        if let Some(e) = events
            .iter()
            .find(|e| e.what == "end" && e.label == s.label)
        {
            out.push((s.label.clone(), s.ns, e.ns));
        }
    }
    out
}

pub fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(start.elapsed() < PATIENCE, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

pub fn wait_status(child: &mut Child) -> ExitStatus {
    let start = Instant::now();
    loop {
        if let Some(s) = child.try_wait().expect("try_wait") {
            return s;
        }
        if start.elapsed() > PATIENCE {
            let _ = child.kill();
            panic!("dblaunch did not exit within {PATIENCE:?}");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

pub fn wait_output(mut child: Child) -> Output {
    use std::io::Read;
    // Drain both pipes while waiting: a child that prints more than a pipe
    // holds would otherwise block forever.
    let drain = |pipe: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            if let Some(mut p) = pipe {
                let _ = p.read_to_end(&mut buf);
            }
            buf
        })
    };
    let out = drain(
        child
            .stdout
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let err = drain(
        child
            .stderr
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let status = wait_status(&mut child);
    Output {
        status,
        stdout: out.join().unwrap(),
        stderr: err.join().unwrap(),
    }
}

pub fn stderr_of(child: &mut Child) -> String {
    let mut s = String::new();
    use std::io::Read;
    if let Some(mut e) = child.stderr.take() {
        let _ = e.read_to_string(&mut s);
    }
    s
}

/// `dblaunch check` of `manifest` in a fresh project that has the
/// directories `dirs`: its status, stdout and stderr (the project's
/// directory shown as `DIR`).
pub fn check_manifest(manifest: &str, dirs: &[&str]) -> (i32, String, String) {
    let env = Env::new();
    env.manifest(manifest);
    for d in dirs {
        fs::create_dir(env.path(d)).unwrap();
    }
    let o = env.run(&["check"]);
    let dir = fs::canonicalize(env.dir.path())
        .unwrap()
        .display()
        .to_string();
    (
        code(&o),
        text(&o.stdout),
        text(&o.stderr).replace(&dir, "DIR"),
    )
}

/// `check_manifest` fails with exit status 2 and a message that contains
/// `expected`.
pub fn assert_manifest_error(manifest: &str, dirs: &[&str], expected: &str) {
    let (status, _, err) = check_manifest(manifest, dirs);
    assert_eq!(status, 2, "{err}");
    assert!(err.contains(expected), "expected:\n{expected}\ngot:\n{err}");
}

/// CLOCK_MONOTONIC in nanoseconds: the clock the probe fixture stamps its
/// log with.
pub fn now_ns() -> u128 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes into the timespec we own.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u128 * 1_000_000_000 + ts.tv_nsec as u128
}

pub fn code(o: &Output) -> i32 {
    o.status.code().unwrap_or(-1)
}

pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// True while `pid` is a process that has not ended (zombies count as ended:
/// in a container nothing may ever reap them).
pub fn alive(pid: i32) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => {
            let state = stat
                .rsplit(')')
                .next()
                .unwrap_or("")
                .split_whitespace()
                .next();
            state != Some("Z") && state != Some("X")
        }
        Err(_) => false,
    }
}

pub fn kill(pid: i32, sig: i32) {
    // SAFETY: kill(2) only reads its arguments.
    unsafe {
        libc::kill(pid, sig);
    }
}

pub fn pids_in(file: &Path) -> Vec<i32> {
    fs::read_to_string(file)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect()
}

pub fn touch(p: &Path) {
    fs::write(p, "").unwrap();
}
