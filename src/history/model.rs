//! What a history is made of: holds, waits and marks on a timeline, and
//! their summary, each as `history --json` shows it.

use std::time::SystemTime;

use serde::Serialize;

use dblaunch_lock::Mode;
use dblaunch_lock::journal::{Outcome, Party};

/// One program's hold of the lock.
#[derive(Clone, Debug, Serialize)]
pub struct Hold {
    pub program: String,
    pub host: String,
    /// The dblaunch that held it.
    pub pid: i32,
    /// The program's process.
    pub child: Option<i32>,
    pub mode: Mode,
    #[serde(serialize_with = "time")]
    pub from: SystemTime,
    /// When it let go; `None` while it still holds.
    #[serde(serialize_with = "opt_time")]
    pub to: Option<SystemTime>,
    /// Seconds held (absent while it holds, or for a lost hold).
    pub held: Option<f64>,
    /// Seconds it waited before this hold.
    pub waited: f64,
    pub outcome: Option<Outcome>,
    pub exit_code: Option<i32>,
    pub signal: Option<String>,
    pub nested: bool,
    /// Its dblaunch vanished without a release line (killed, or the host
    /// died): `to` is the latest it can have ended, the next conflicting
    /// grant or the last event seen.
    pub lost: bool,
}

/// How a wait ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum WaitEnd {
    Granted,
    GaveUp,
    /// Still waiting (its dblaunch lives).
    Waiting,
    /// Its dblaunch ended without either (stopped or killed while queued).
    Abandoned,
}

/// One program's wait for the lock.
#[derive(Clone, Debug, Serialize)]
pub struct Wait {
    pub program: String,
    pub host: String,
    pub pid: i32,
    pub mode: Mode,
    #[serde(serialize_with = "time")]
    pub from: SystemTime,
    #[serde(serialize_with = "opt_time")]
    pub to: Option<SystemTime>,
    pub waited: f64,
    /// Who was in front (the holder, usually).
    pub behind: Option<Party>,
    pub end: WaitEnd,
}

/// A moment worth marking on the timeline.
#[derive(Clone, Debug, Serialize)]
pub struct Mark {
    #[serde(serialize_with = "time")]
    pub at: SystemTime,
    pub kind: MarkKind,
    pub program: String,
    pub host: String,
    pub pid: i32,
    /// Who it concerns: the foreign process, whom it yielded to, whom it
    /// gave up behind.
    pub other: Option<Party>,
    /// The signal of a crash.
    pub signal: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MarkKind {
    GaveUp,
    Crashed,
    Foreign,
    Yielded,
    Lost,
}

/// Count, p50, p95 and max of a set of durations, in seconds.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Stats {
    pub count: usize,
    pub p50: Option<f64>,
    pub p95: Option<f64>,
    pub max: Option<f64>,
    pub total: f64,
}

/// Who kept whom waiting, summed over the window.
#[derive(Clone, Debug, Serialize)]
pub struct KeptWaiting {
    pub holder: String,
    pub waiter: String,
    pub waits: usize,
    /// Seconds, all waits together.
    pub total: f64,
    pub longest: f64,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct Summary {
    pub grants: usize,
    /// Acquisitions that found the lock taken (granted later or given up):
    /// the conflicts.
    pub waits: Stats,
    /// Finished holds.
    pub holds: Stats,
    pub conflicts: usize,
    /// Conflicts per hour of the window (a window shorter than an hour
    /// counts as an hour: a minute's conflicts are not extrapolated).
    pub conflicts_per_hour: f64,
    pub give_ups: usize,
    pub foreign_blocks: usize,
    pub yields: usize,
    pub crashes: usize,
    pub lost: usize,
    /// Longest total first.
    pub kept_waiting: Vec<KeptWaiting>,
}

/// Everything known about one database's lock in a window.
#[derive(Clone, Debug, Serialize)]
pub struct History {
    pub database: String,
    /// Its name in the manifest, if it has one.
    pub name: Option<String>,
    #[serde(serialize_with = "time")]
    pub from: SystemTime,
    #[serde(serialize_with = "time")]
    pub to: SystemTime,
    pub holds: Vec<Hold>,
    pub waits: Vec<Wait>,
    pub marks: Vec<Mark>,
    pub summary: Summary,
    /// Journal lines that were not events, skipped.
    pub skipped_lines: usize,
}

pub(super) fn time<S: serde::Serializer>(t: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(&humantime::format_rfc3339_micros(*t))
}

pub(super) fn opt_time<S: serde::Serializer>(
    t: &Option<SystemTime>,
    s: S,
) -> Result<S::Ok, S::Error> {
    match t {
        Some(t) => time(t, s),
        None => s.serialize_none(),
    }
}
