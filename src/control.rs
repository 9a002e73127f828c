//! How `dblaunch stop` reaches a running `dblaunch run`: a Unix socket in the
//! project's `.dblaunch/` directory (beside the manifest, so two projects
//! never see each other's runs; no port, nothing shared in /tmp), named
//! `run-PID-STARTTIME.sock` after the run's process. `stop` believes a socket
//! only while that pid still has that start time, and it never signals
//! anything itself: the supervisor that started the programs stops them.
//!
//! Protocol: one JSON line `{"action": "stop", "programs": ["name", ...]}`
//! (the action `stop`, `restart` or `ps`; no programs: every program); the
//! run answers with one line per event (text; for `ps`, one JSON object per
//! program) and closes when done.

use std::fs;
use std::io::{self, BufRead, BufReader, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, Sender};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use dblaunch_lock::procfs;

/// The project's directory for dblaunch's own files.
pub const DIR: &str = ".dblaunch";

/// A call from `stop`, `restart` or `ps`, as the supervisor receives it.
#[derive(Debug)]
pub struct Call {
    pub action: Action,
    /// Program names; empty: all.
    pub programs: Vec<String>,
    /// Lines for the asking command; dropping every sender ends the reply.
    pub reply: Sender<String>,
}

impl Call {
    /// Whether the request concerns the program called `name`.
    pub fn wants(&self, name: &str) -> bool {
        self.programs.is_empty() || self.programs.iter().any(|p| p == name)
    }
}

/// What a control client asks of a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// Stop programs gracefully.
    Stop,
    /// Stop programs and start them again (queueing for their locks).
    Restart,
    /// One JSON line per program: see [`ProgramState`].
    Ps,
}

/// A program as `dblaunch ps` shows it: data, rendered by `cmd/ps.rs` (as a
/// table, or as it is with `ps --json`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProgramState {
    pub program: String,
    pub state: Phase,
    /// With `exited` and `failed`: the exit status.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u8>,
    /// Running, or on its way to run (queued, waiting to restart …).
    pub live: bool,
    pub pid: Option<i32>,
    pub uptime_ms: Option<u64>,
    pub restarts: u32,
    /// Restarts caused by a change of a watched path.
    #[serde(default)]
    pub change_restarts: u32,
    pub holds: Vec<DbUse>,
    pub awaits: Vec<DbUse>,
    /// Who takes its locks: `running`, its run, while it runs; `on-demand`,
    /// the program itself, per operation (its run holds nothing for it, and
    /// `ps` reads its `holds` and `awaits` from the queues).
    #[serde(default)]
    pub hold: crate::manifest::Hold,
    /// With `hold` `on-demand`: the databases it declares.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub declares: Vec<DbUse>,
}

/// Where a program is in its life (see `supervisor/lifecycle.rs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Phase {
    /// For its `after` programs.
    WaitingForAfter,
    /// For its locks.
    Queued,
    /// For a process that locks its database outside dblaunch.
    WaitingForForeign,
    Running,
    /// Running; its `ready` check has not succeeded yet.
    Starting,
    /// Running, and its `ready` check has succeeded.
    Ready,
    /// Stopping to let a waiter in; it queues again after.
    Yielding,
    Stopping,
    WaitingToRestart,
    Exited,
    /// It could not start or its locks could not be taken.
    Failed,
    /// A program it runs after failed.
    Skipped,
    NotStarted,
    Stopped,
}

impl ProgramState {
    /// The state as a person reads it: `running`, `exited 1`, `failed (75)` …
    pub fn describe(&self) -> String {
        let status = self.status.unwrap_or_default();
        match self.state {
            Phase::WaitingForAfter => "waiting for `after`".to_owned(),
            Phase::Queued => "queued".to_owned(),
            Phase::WaitingForForeign => "waiting for a process outside dblaunch".to_owned(),
            Phase::Running => "running".to_owned(),
            Phase::Starting => "starting".to_owned(),
            Phase::Ready => "ready".to_owned(),
            Phase::Yielding => "yielding".to_owned(),
            Phase::Stopping => "stopping".to_owned(),
            Phase::WaitingToRestart => "waiting to restart".to_owned(),
            Phase::Exited => format!("exited {status}"),
            Phase::Failed => format!("failed ({status})"),
            Phase::Skipped => "not started (an `after` program failed)".to_owned(),
            Phase::NotStarted => "not started".to_owned(),
            Phase::Stopped => "stopped".to_owned(),
        }
    }
}

impl std::fmt::Display for DbUse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.path.display(), self.mode)
    }
}

/// One database a program holds or waits for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DbUse {
    pub path: PathBuf,
    pub mode: dblaunch_lock::Mode,
}

#[derive(Debug, Serialize, Deserialize)]
struct Wire {
    action: Action,
    programs: Vec<String>,
}

/// A run found in the project directory, validated against /proc.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Run {
    pub pid: i32,
    pub socket: PathBuf,
}

fn socket_name(pid: i32, start_time: u64) -> String {
    format!("run-{pid}-{start_time}.sock")
}

fn parse_name(name: &str) -> Option<(i32, u64)> {
    let rest = name.strip_prefix("run-")?.strip_suffix(".sock")?;
    let (pid, start) = rest.split_once('-')?;
    Some((pid.parse().ok()?, start.parse().ok()?))
}

/// Socket paths are limited to 107 bytes; a deep project directory is not.
/// Going through an open descriptor of the directory keeps the path short.
fn short_path(dir: &fs::File, name: &str) -> PathBuf {
    PathBuf::from(format!("/proc/self/fd/{}/{name}", dir.as_raw_fd()))
}

fn open_dir(dir: &Path) -> io::Result<fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECTORY | libc::O_NOFOLLOW)
        .open(dir)
}

/// Listens for stop requests while the run lasts; the socket goes with it.
pub struct Listener {
    path: PathBuf,
    clients: Arc<Clients>,
}

/// Clients being answered: the run must not exit before its last answer
/// ("stopped X") is written, or `stop` would never see it.
#[derive(Default)]
struct Clients {
    count: Mutex<usize>,
    done: Condvar,
}

impl Drop for Listener {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.path);
        let count = self.clients.count.lock().unwrap_or_else(|p| p.into_inner());
        let _ = self
            .clients
            .done
            .wait_timeout_while(count, Duration::from_secs(2), |n| *n > 0);
    }
}

/// Opens the run's control socket in `project/.dblaunch/`.
pub fn listen(
    project: &Path,
    deliver: impl Fn(Call) + Clone + Send + 'static,
) -> io::Result<Listener> {
    let dir = project.join(DIR);
    let group = fs::metadata(project).is_ok_and(|m| m.mode() & 0o020 != 0);
    match fs::DirBuilder::new()
        .mode(if group { 0o2770 } else { 0o700 })
        .create(&dir)
    {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(e),
    }
    if !fs::symlink_metadata(&dir)?.is_dir() {
        return Err(io::Error::other(format!(
            "{} is not a directory",
            dir.display()
        )));
    }
    let me = std::process::id() as i32;
    let name = socket_name(me, procfs::start_time(me).unwrap_or_default());
    let handle = open_dir(&dir)?;
    let listener = UnixListener::bind(short_path(&handle, &name))?;
    let path = dir.join(&name);
    // The same user (and the group of a group-shared project) may stop
    // the run; nobody else.
    fs::set_permissions(
        &path,
        fs::Permissions::from_mode(if group { 0o660 } else { 0o600 }),
    )?;
    let clients = Arc::new(Clients::default());
    let counted = Arc::clone(&clients);
    std::thread::Builder::new()
        .name("dblaunch-control".into())
        .spawn(move || {
            for stream in listener.incoming().flatten() {
                let deliver = deliver.clone();
                let clients = Arc::clone(&counted);
                *clients.count.lock().unwrap_or_else(|p| p.into_inner()) += 1;
                // One thread per client, so a slow one holds up nobody.
                let spawned = std::thread::Builder::new()
                    .name("dblaunch-control-client".into())
                    .spawn({
                        let clients = Arc::clone(&clients);
                        move || {
                            serve(stream, &deliver);
                            clients.leave();
                        }
                    });
                if spawned.is_err() {
                    clients.leave();
                }
            }
        })?;
    Ok(Listener { path, clients })
}

impl Clients {
    fn leave(&self) {
        let mut n = self.count.lock().unwrap_or_else(|p| p.into_inner());
        *n = n.saturating_sub(1);
        self.done.notify_all();
    }
}

fn serve(stream: UnixStream, deliver: &impl Fn(Call)) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let mut line = String::new();
    if BufReader::new(&stream).read_line(&mut line).is_err() {
        return;
    }
    let mut out = &stream;
    let Ok(wire) = serde_json::from_str::<Wire>(&line) else {
        let _ = writeln!(out, "error: not a dblaunch control request");
        return;
    };
    let (reply, replies) = mpsc::channel();
    deliver(Call {
        action: wire.action,
        programs: wire.programs,
        reply,
    });
    for r in replies {
        if writeln!(out, "{r}").is_err() {
            break;
        }
    }
}

/// The runs of the project whose process is still the one that made the
/// socket. Stale sockets (a run that was SIGKILLed, or whose pid now belongs
/// to another process) are reported through `stale` and removed.
pub fn runs(project: &Path, mut stale: impl FnMut(&Path, String)) -> Vec<Run> {
    let dir = project.join(DIR);
    let Ok(entries) = fs::read_dir(&dir) else {
        return Vec::new();
    };
    let mut found = Vec::new();
    for e in entries.flatten() {
        let name = e.file_name();
        let Some((pid, start)) = name.to_str().and_then(parse_name) else {
            continue;
        };
        let socket = e.path();
        match procfs::start_time(pid) {
            Some(s) if s == start => found.push(Run { pid, socket }),
            Some(_) => {
                stale(
                    &socket,
                    format!(
                        "pid {pid} is now another process ({})",
                        procfs::describe(pid)
                    ),
                );
                let _ = fs::remove_file(&socket);
            }
            None => {
                stale(&socket, format!("pid {pid} is gone"));
                let _ = fs::remove_file(&socket);
            }
        }
    }
    found.sort_by_key(|r| r.pid);
    found
}

/// Asks `run` to do `action` to `programs` (all when empty); calls `line`
/// with each line of its answer until it is done.
pub fn ask(
    run: &Run,
    action: Action,
    programs: &[String],
    mut line: impl FnMut(&str),
) -> io::Result<()> {
    let dir = open_dir(run.socket.parent().unwrap_or(Path::new(".")))?;
    let name = run
        .socket
        .file_name()
        .unwrap_or_default()
        .to_string_lossy()
        .into_owned();
    let mut stream = UnixStream::connect(short_path(&dir, &name))?;
    let request = serde_json::to_string(&Wire {
        action,
        programs: programs.to_vec(),
    })
    .expect("a request always serialises");
    writeln!(stream, "{request}")?;
    for l in BufReader::new(&stream).lines() {
        line(&l?);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn socket_names_round_trip() {
        assert_eq!(parse_name(&socket_name(42, 123456)), Some((42, 123456)));
        assert_eq!(parse_name("run-x-1.sock"), None);
        assert_eq!(parse_name("other"), None);
    }
}
