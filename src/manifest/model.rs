//! The validated manifest: names resolved to indices, paths made absolute,
//! durations parsed. Everything here has been checked by `validate`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use dblaunch_lock::Mode;

#[derive(Clone, Debug)]
pub struct Manifest {
    /// The manifest file.
    pub path: PathBuf,
    /// Its directory: relative paths inside it are relative to this.
    pub dir: PathBuf,
    pub settings: Settings,
    /// `[databases]`: short names for paths, in document order.
    pub databases: Vec<(String, PathBuf)>,
    /// The backend key of each database that has one, by path. Without a
    /// `key`, a database's key is its canonical path.
    pub keys: Vec<(PathBuf, String)>,
    /// `[backend]`: the lock backend shared by several hosts.
    pub backend: Option<dblaunch_lock::backend::Config>,
    /// `[programs]`, in document order.
    pub programs: Vec<Program>,
    /// `[groups]`: name and members (program or group names).
    pub groups: Vec<(String, Vec<String>)>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Settings {
    /// Grace after the stop signal before SIGKILL.
    pub stop_timeout: Duration,
    /// How long a program may queue for a busy database; `None`: no limit.
    pub wait: Option<Duration>,
}

impl Default for Settings {
    fn default() -> Settings {
        Settings {
            stop_timeout: Duration::from_secs(10),
            wait: None,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    /// Run as is, no shell.
    Argv(Vec<String>),
    /// Run with `sh -c`. dblaunch signals the whole process group, so the
    /// shell does not swallow signals meant for the command.
    Shell(String),
}

impl Command {
    /// An empty string, or an argv whose program is empty.
    pub fn is_blank(&self) -> bool {
        match self {
            Command::Shell(s) => s.trim().is_empty(),
            Command::Argv(v) => v.first().is_none_or(|c| c.trim().is_empty()),
        }
    }

    /// The argv to start: the array, or `sh -c STRING`.
    pub fn argv(&self) -> Vec<String> {
        match self {
            Command::Argv(v) => v.clone(),
            Command::Shell(s) => vec!["sh".to_owned(), "-c".to_owned(), s.clone()],
        }
    }
}

/// A database a program uses: as written, and as an absolute path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DbRef {
    pub given: String,
    pub path: PathBuf,
}

#[derive(Clone, Debug)]
pub struct Program {
    pub name: String,
    pub command: Command,
    pub cwd: PathBuf,
    pub env: Vec<(String, String)>,
    pub reads: Vec<DbRef>,
    pub writes: Vec<DbRef>,
    /// Who takes its locks: dblaunch, for as long as it runs, or the
    /// program itself, per operation.
    pub hold: Hold,
    /// Indices of the programs that must have exited 0 first.
    pub after: Vec<usize>,
    pub stop_signal: i32,
    pub restart: Restart,
    /// Consecutive restarts (a run of 10 s or more resets the count)
    /// before dblaunch gives up.
    pub max_restarts: u32,
    /// Gives way to conflicting waiters (stopped, then queued again).
    pub yields: bool,
    /// Indices of the programs that must be running and ready first (and
    /// that are stopped only after it).
    pub needs: Vec<usize>,
    /// When it counts as up, for what needs it (boxed, as `watch`: most
    /// programs have neither, and every launch copies its programs).
    pub ready: Option<Box<Ready>>,
    /// What restarts it when it changes.
    pub watch: Option<Box<Watch>>,
}

/// `ready`: a check that says a running program is up.
#[derive(Clone, Debug)]
pub struct Ready {
    pub check: Check,
    /// Between two tries of the check.
    pub interval: Duration,
    /// Not ready this long after it started: it is stopped, and fails.
    pub timeout: Duration,
}

#[derive(Clone, Debug)]
pub enum Check {
    /// `HOST:PORT` accepts a connection.
    Tcp(String),
    /// A GET of `url` answers 2xx. `address` is `HOST:PORT` to connect to,
    /// `host` the Host header, `path` the request's target.
    Http {
        url: String,
        address: String,
        host: String,
        path: String,
    },
    /// The command exits 0.
    Exec(Command),
    /// The program prints a line that matches (stdout or stderr).
    Log(regex::Regex),
    /// The program sends READY=1 to `$NOTIFY_SOCKET`.
    Notify,
}

impl Check {
    /// What the check is, for messages: `tcp 127.0.0.1:5432`.
    pub fn describe(&self) -> String {
        match self {
            Check::Tcp(a) => format!("tcp {a}"),
            Check::Http { url, .. } => format!("http {url}"),
            Check::Exec(c) => match c {
                Command::Shell(s) => format!("exec `{s}`"),
                Command::Argv(v) => format!("exec `{}`", v.join(" ")),
            },
            Check::Log(r) => format!("log /{}/", r.as_str()),
            Check::Notify => "notify (READY=1)".to_owned(),
        }
    }
}

/// `watch`: paths whose changes restart the program.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Watch {
    /// Absolute; each exists (checked when the manifest was read).
    pub paths: Vec<PathBuf>,
    /// More patterns to ignore, as lines of a `.gitignore`.
    pub ignore: Vec<String>,
    pub debounce: Duration,
}

/// Who takes a program's locks (`hold`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Hold {
    /// dblaunch, before it starts it, and holds them while it runs.
    #[default]
    Running,
    /// The program itself, around each operation, through the lock
    /// library: dblaunch starts it at once and holds nothing for it.
    OnDemand,
}

/// When a program that ended is started again.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Restart {
    #[default]
    No,
    OnFailure,
    Always,
}

impl Restart {
    /// Whether a program that ended with `success` is started again.
    pub fn wants(self, success: bool) -> bool {
        match self {
            Restart::No => false,
            Restart::OnFailure => !success,
            Restart::Always => true,
        }
    }
}

/// Consecutive restarts allowed when the manifest does not say.
pub const DEFAULT_MAX_RESTARTS: u32 = 10;

impl Program {
    /// Every database with its mode.
    pub fn locks(&self) -> impl Iterator<Item = (&DbRef, Mode)> {
        self.reads
            .iter()
            .map(|d| (d, Mode::Read))
            .chain(self.writes.iter().map(|d| (d, Mode::Write)))
    }
}

impl Manifest {
    pub fn program(&self, name: &str) -> Option<usize> {
        self.programs.iter().position(|p| p.name == name)
    }

    pub fn group(&self, name: &str) -> Option<&[String]> {
        self.groups
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, m)| m.as_slice())
    }

    /// The programs that `targets` (program and group names) stand for,
    /// with the programs they run `after`, in manifest order. Unknown names
    /// are returned as the error, each with the closest known name.
    pub fn expand(&self, targets: &[String]) -> Result<Vec<usize>, Vec<(String, Option<String>)>> {
        self.expand_with(targets, true)
    }

    /// As [`Manifest::expand`]; `with_after` says whether to pull in what
    /// the chosen programs run after or need (`run` does, `stop` does not).
    pub fn expand_with(
        &self,
        targets: &[String],
        with_after: bool,
    ) -> Result<Vec<usize>, Vec<(String, Option<String>)>> {
        let mut chosen = vec![false; self.programs.len()];
        let mut unknown = Vec::new();
        for t in targets {
            if !self.mark(t, &mut chosen, 0) {
                let names = self
                    .programs
                    .iter()
                    .map(|p| p.name.as_str())
                    .chain(self.groups.iter().map(|(n, _)| n.as_str()));
                unknown.push((
                    t.clone(),
                    super::suggest::closest(t, names).map(str::to_owned),
                ));
            }
        }
        if !unknown.is_empty() {
            return Err(unknown);
        }
        // Pull in what the chosen programs run after or need (validated
        // acyclic).
        let mut stack: Vec<usize> = if with_after {
            (0..chosen.len()).filter(|&i| chosen[i]).collect()
        } else {
            Vec::new()
        };
        while let Some(i) = stack.pop() {
            let program = &self.programs[i];
            for &d in program.after.iter().chain(&program.needs) {
                if !chosen[d] {
                    chosen[d] = true;
                    stack.push(d);
                }
            }
        }
        Ok((0..chosen.len()).filter(|&i| chosen[i]).collect())
    }

    fn mark(&self, name: &str, chosen: &mut [bool], depth: usize) -> bool {
        if let Some(i) = self.program(name) {
            chosen[i] = true;
            return true;
        }
        // Groups are validated acyclic; the depth bound is a second guard.
        match self.group(name) {
            Some(members) if depth < 64 => {
                for m in members {
                    self.mark(m, chosen, depth + 1);
                }
                true
            }
            _ => false,
        }
    }
}

/// Whether a database reference is a path (it contains `/` or `.`) rather
/// than a name from `[databases]`: the one rule for the manifest and `exec`.
/// `./main` is the file `main`; a bare `main` must be a name.
pub fn is_path(given: &str) -> bool {
    given.contains('/') || given.contains('.')
}

/// `base`/`p` with `.` and `..` removed, without touching the filesystem.
pub fn normalize(base: &Path, p: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in base.join(p).components() {
        match c {
            std::path::Component::ParentDir => {
                out.pop();
            }
            std::path::Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}
