//! One journal line: an event of one database's lock. The format is
//! documented in `docs/history.md`; fields are only ever added.

use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

use crate::holder::Holder;
use crate::mode::Mode;

/// What happened.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// It had to wait: the lock was taken or others were queued first.
    Queued,
    /// The lock was granted and the program started.
    Granted,
    /// The program ended and the lock was let go.
    Released,
    /// It stopped waiting: busy past `--wait` (or at once, `--no-wait`).
    GaveUp,
    /// A process outside dblaunch locked the database file itself.
    Foreign,
    /// A `yields = true` reader was stopped to let a waiting writer in.
    Yielded,
    /// The program's readiness check (`ready` in the manifest) succeeded:
    /// it is up for the programs that need it.
    Ready,
}

/// How a hold ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Exit status 0.
    Exited,
    /// A non-zero exit status.
    Failed,
    /// Killed by a signal nobody in dblaunch sent.
    Crashed,
    /// Stopped by `dblaunch stop`, Ctrl-C or a signal to dblaunch.
    Stopped,
    /// Stopped to let a writer in (`yields = true`).
    Yielded,
    /// Stopped by `dblaunch restart`.
    Restarted,
    /// Let go by the program that took the lock for itself (it goes on
    /// running).
    Released,
}

/// Another party of an event: whom it waited behind, whom it yielded to.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Party {
    /// Its program name.
    pub program: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    /// Its process, when known.
    pub pid: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    /// Its mode, when known.
    pub mode: Option<Mode>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    /// Its host, when it is another host.
    pub host: Option<String>,
    /// A process outside dblaunch.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub foreign: bool,
}

impl Party {
    /// Who a lock holder or waiter is, for the journal; `None` for a ticket
    /// that could not be read.
    pub fn of(holder: &Holder) -> Option<Party> {
        let party = |program: &str, pid: Option<i32>, mode: Option<Mode>| Party {
            program: program.to_owned(),
            pid,
            mode,
            host: None,
            foreign: false,
        };
        Some(match holder {
            Holder::Program {
                program, pid, mode, ..
            } => party(program, Some(*pid), Some(*mode)),
            Holder::Leftover {
                program,
                pids,
                mode,
            } => party(program, pids.first().map(|p| p.0), Some(*mode)),
            Holder::Orphan {
                program,
                pid,
                command,
                mode,
                ..
            } => party(
                program.as_deref().unwrap_or(command),
                Some(*pid),
                Some(*mode),
            ),
            Holder::Remote(e) => Party {
                host: Some(e.host.clone()),
                ..party(&e.program, Some(e.pid), Some(e.mode))
            },
            Holder::Foreign {
                pid,
                command,
                write,
            } => Party {
                foreign: true,
                ..party(
                    command,
                    *pid,
                    Some(if *write { Mode::Write } else { Mode::Read }),
                )
            },
            Holder::Unknown { .. } | Holder::BackendSilent { .. } => return None,
        })
    }
}

/// One line of the journal.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Line {
    /// Wall-clock time of the event, RFC 3339 in UTC with microseconds.
    pub at: String,
    /// What happened.
    pub event: Kind,
    /// The database's canonical path.
    pub database: String,
    /// The program's name (the manifest's, `--name`, or the command's).
    pub program: String,
    /// The dblaunch process that waits or holds (the program's parent).
    pub pid: i32,
    /// The host it happened on.
    pub host: String,
    /// The mode of the lock.
    pub mode: Mode,
    /// The lock-queue ticket: with `host` and `pid`, it pairs a grant with
    /// its release (ticket numbers only grow in a queue).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ticket: Option<u64>,
    /// Granted within an ancestor dblaunch's hold (nested dblaunch).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub nested: bool,
    /// The program's process, once started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub child: Option<i32>,
    /// Seconds it waited in this database's queue (granted, gave_up).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub waited: Option<f64>,
    /// Seconds it held the lock (released).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub held: Option<f64>,
    /// Whom it waited behind (queued, granted, gave_up, foreign), or whom
    /// it yielded to (yielded); the first is the one in front.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub behind: Vec<Party>,
    /// How the program ended (released).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcome: Option<Outcome>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    /// The program's exit status, when it exited (released).
    pub exit_code: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    /// The signal that ended the program, when one did (released).
    pub signal: Option<String>,
}

impl Line {
    /// An event of now, with nothing but who and where.
    pub fn new(event: Kind, database: &std::path::Path, program: &str, mode: Mode) -> Line {
        Line {
            at: humantime::format_rfc3339_micros(SystemTime::now()).to_string(),
            event,
            database: database.to_string_lossy().into_owned(),
            program: program.to_owned(),
            pid: crate::fork::pid() as i32,
            host: crate::host::name().to_owned(),
            mode,
            ticket: None,
            nested: false,
            child: None,
            waited: None,
            held: None,
            behind: Vec::new(),
            outcome: None,
            exit_code: None,
            signal: None,
        }
    }

    /// The event's time.
    pub fn time(&self) -> Option<SystemTime> {
        humantime::parse_rfc3339(&self.at).ok()
    }
}

/// A duration as the journal writes it: seconds, to the microsecond.
pub fn seconds(d: Duration) -> f64 {
    (d.as_micros() as f64) / 1e6
}
