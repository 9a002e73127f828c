//! A database's lock history, rebuilt from its journal: holds (who held it
//! in which mode from when to when, and how it ended), waits (who waited how
//! long behind whom, and whether they got it), marks (give-ups, foreign
//! blocks, yields, crashes) and a summary. `cmd/history.rs` prints it,
//! `svg.rs` draws it, `metrics.rs` counts it.

pub mod metrics;
pub mod svg;

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, SystemTime};

use serde::Serialize;

use dblaunch_lock::Mode;
use dblaunch_lock::journal::{Kind, Line, Outcome, Party};

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

impl Stats {
    fn of(mut values: Vec<f64>) -> Stats {
        values.sort_by(f64::total_cmp);
        // Nearest rank: the smallest value with at least p of them at or below.
        let rank = |p: f64| {
            let n = values.len();
            (n > 0).then(|| values[((p * n as f64).ceil() as usize).clamp(1, n) - 1])
        };
        Stats {
            count: values.len(),
            p50: rank(0.5),
            p95: rank(0.95),
            max: values.last().copied(),
            total: values.iter().sum(),
        }
    }
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

fn time<S: serde::Serializer>(t: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(&humantime::format_rfc3339_micros(*t))
}

fn opt_time<S: serde::Serializer>(t: &Option<SystemTime>, s: S) -> Result<S::Ok, S::Error> {
    match t {
        Some(t) => time(t, s),
        None => s.serialize_none(),
    }
}

fn secs(f: f64) -> Duration {
    Duration::from_secs_f64(f.max(0.0))
}

/// Whether a dblaunch of this host is still running (a process of another
/// host is assumed alive: only its release tells).
fn alive(host: &str, pid: i32) -> bool {
    host != dblaunch_lock::host::name() || dblaunch_lock::procfs::start_time(pid).is_some()
}

/// A hold as a grant (or, for a release whose grant is not in the
/// journal, its release) describes it, not yet ended.
fn hold_of(l: &Line, from: SystemTime, waited: f64) -> Hold {
    Hold {
        program: l.program.clone(),
        host: l.host.clone(),
        pid: l.pid,
        child: l.child,
        mode: l.mode,
        from,
        to: None,
        held: None,
        waited,
        outcome: None,
        exit_code: None,
        signal: None,
        nested: l.nested,
        lost: false,
    }
}

/// A wait that ended at `at` after `waited` seconds.
fn wait_of(l: &Line, at: SystemTime, waited: f64, end: WaitEnd) -> Wait {
    Wait {
        program: l.program.clone(),
        host: l.host.clone(),
        pid: l.pid,
        mode: l.mode,
        from: at.checked_sub(secs(waited)).unwrap_or(at),
        to: Some(at),
        waited,
        behind: l.behind.first().cloned(),
        end,
    }
}

/// Rebuilds the history from journal lines (sorted by time); `since` cuts
/// the window; `now` ends it.
pub fn build(
    database: &str,
    lines: &[Line],
    since: Option<SystemTime>,
    now: SystemTime,
) -> History {
    build_with(database, lines, since, now, alive)
}

fn build_with(
    database: &str,
    lines: &[Line],
    since: Option<SystemTime>,
    now: SystemTime,
    alive: impl Fn(&str, i32) -> bool,
) -> History {
    let mut holds: Vec<Hold> = Vec::new();
    let mut waits: Vec<Wait> = Vec::new();
    let mut marks: Vec<Mark> = Vec::new();
    // Open holds by (host, pid, ticket, nested); open waits by (host, pid).
    let mut open: HashMap<(String, i32, Option<u64>, bool), usize> = HashMap::new();
    let mut queued: HashMap<(String, i32), &Line> = HashMap::new();
    let mut first: Option<SystemTime> = None;
    for l in lines {
        let Some(at) = l.time() else { continue };
        first.get_or_insert(at);
        let mark = |kind, other: Option<Party>| Mark {
            at,
            kind,
            program: l.program.clone(),
            host: l.host.clone(),
            pid: l.pid,
            other,
            signal: l.signal.clone(),
        };
        match l.event {
            Kind::Queued => {
                queued.insert((l.host.clone(), l.pid), l);
            }
            Kind::Granted => {
                queued.remove(&(l.host.clone(), l.pid));
                let waited = l.waited.unwrap_or(0.0);
                if waited > 0.0 {
                    waits.push(wait_of(l, at, waited, WaitEnd::Granted));
                }
                open.insert((l.host.clone(), l.pid, l.ticket, l.nested), holds.len());
                holds.push(hold_of(l, at, waited));
            }
            Kind::Released => {
                let held = l.held.unwrap_or(0.0);
                let key = (l.host.clone(), l.pid, l.ticket, l.nested);
                let i = match open.remove(&key) {
                    Some(i) => i,
                    None => {
                        // Its grant was rotated away (or is before the
                        // journal began): the release says when it began.
                        holds.push(hold_of(l, at.checked_sub(secs(held)).unwrap_or(at), 0.0));
                        holds.len() - 1
                    }
                };
                let h = &mut holds[i];
                h.to = Some(at);
                h.held = Some(held);
                h.outcome = l.outcome;
                h.exit_code = l.exit_code;
                h.signal = l.signal.clone();
                if l.outcome == Some(Outcome::Crashed) {
                    marks.push(mark(MarkKind::Crashed, None));
                }
            }
            Kind::GaveUp => {
                queued.remove(&(l.host.clone(), l.pid));
                waits.push(wait_of(l, at, l.waited.unwrap_or(0.0), WaitEnd::GaveUp));
                marks.push(mark(MarkKind::GaveUp, l.behind.first().cloned()));
            }
            Kind::Foreign => marks.push(mark(MarkKind::Foreign, l.behind.first().cloned())),
            Kind::Yielded => marks.push(mark(MarkKind::Yielded, l.behind.first().cloned())),
        }
    }
    let last = lines.last().and_then(Line::time).unwrap_or(now);
    // Holds without a release: still held, or lost with their dblaunch.
    let mut open: Vec<usize> = open.into_values().collect();
    open.sort_unstable();
    for i in open {
        let h = &holds[i];
        if alive(&h.host, h.pid) {
            continue;
        }
        // It ended at the latest when a conflicting hold began.
        let end = holds
            .iter()
            .filter(|o| o.from > h.from && (o.mode == Mode::Write || h.mode == Mode::Write))
            .map(|o| o.from)
            .min()
            .unwrap_or(last);
        let h = &mut holds[i];
        h.to = Some(end);
        h.lost = true;
        marks.push(Mark {
            at: end,
            kind: MarkKind::Lost,
            program: h.program.clone(),
            host: h.host.clone(),
            pid: h.pid,
            other: None,
            signal: None,
        });
    }
    for ((host, pid), l) in queued {
        let Some(at) = l.time() else { continue };
        let gone = !alive(&host, pid);
        waits.push(Wait {
            program: l.program.clone(),
            host,
            pid,
            mode: l.mode,
            from: at,
            to: gone.then_some(last),
            waited: (if gone { last } else { now })
                .duration_since(at)
                .unwrap_or_default()
                .as_secs_f64(),
            behind: l.behind.first().cloned(),
            end: if gone {
                WaitEnd::Abandoned
            } else {
                WaitEnd::Waiting
            },
        });
    }
    // The window.
    let from = since.or(first).unwrap_or(now);
    let ends_in = |to: Option<SystemTime>| to.is_none_or(|t| t >= from);
    holds.retain(|h| ends_in(h.to));
    waits.retain(|w| ends_in(w.to));
    marks.retain(|m| m.at >= from);
    holds.sort_by_key(|h| h.from);
    waits.sort_by_key(|w| w.from);
    marks.sort_by_key(|m| m.at);
    let summary = summarise(&holds, &waits, &marks, from, now);
    History {
        database: database.to_owned(),
        name: None,
        from,
        to: now,
        holds,
        waits,
        marks,
        summary,
        skipped_lines: 0,
    }
}

fn summarise(
    holds: &[Hold],
    waits: &[Wait],
    marks: &[Mark],
    from: SystemTime,
    now: SystemTime,
) -> Summary {
    let grants = holds.iter().filter(|h| h.from >= from).count();
    let done: Vec<&Wait> = waits
        .iter()
        .filter(|w| matches!(w.end, WaitEnd::Granted | WaitEnd::GaveUp))
        .collect();
    let hours = now
        .duration_since(from)
        .unwrap_or_default()
        .max(Duration::from_secs(3600))
        .as_secs_f64()
        / 3600.0;
    let mut kept: BTreeMap<(String, String), KeptWaiting> = BTreeMap::new();
    for w in &done {
        let Some(b) = &w.behind else { continue };
        let k = kept
            .entry((b.program.clone(), w.program.clone()))
            .or_insert_with(|| KeptWaiting {
                holder: b.program.clone(),
                waiter: w.program.clone(),
                waits: 0,
                total: 0.0,
                longest: 0.0,
            });
        k.waits += 1;
        k.total += w.waited;
        k.longest = k.longest.max(w.waited);
    }
    let mut kept: Vec<KeptWaiting> = kept.into_values().collect();
    kept.sort_by(|a, b| b.total.total_cmp(&a.total));
    let count = |kind| marks.iter().filter(|m| m.kind == kind).count();
    Summary {
        grants,
        waits: Stats::of(done.iter().map(|w| w.waited).collect()),
        holds: Stats::of(holds.iter().filter_map(|h| h.held).collect()),
        conflicts: done.len(),
        conflicts_per_hour: done.len() as f64 / hours,
        give_ups: count(MarkKind::GaveUp),
        foreign_blocks: count(MarkKind::Foreign),
        yields: count(MarkKind::Yielded),
        crashes: count(MarkKind::Crashed),
        lost: count(MarkKind::Lost),
        kept_waiting: kept,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(at: &str, event: Kind, program: &str, pid: i32, mode: Mode) -> Line {
        let mut l = Line::new(event, std::path::Path::new("/d/app.db"), program, mode);
        l.at = at.to_owned();
        l.pid = pid;
        l.host = "h".to_owned();
        l
    }

    fn t(s: &str) -> SystemTime {
        humantime::parse_rfc3339(s).unwrap()
    }

    #[test]
    fn a_wait_behind_a_holder_is_paired_and_summarised() {
        let mut g1 = line(
            "2026-01-01T00:00:00.000000Z",
            Kind::Granted,
            "web",
            1,
            Mode::Write,
        );
        g1.ticket = Some(1);
        g1.waited = Some(0.0);
        let mut q2 = line(
            "2026-01-01T00:00:00.500000Z",
            Kind::Queued,
            "etl",
            2,
            Mode::Write,
        );
        q2.behind = vec![
            Party::of(&dblaunch_lock::Holder::Foreign {
                pid: Some(1),
                command: "web".into(),
                write: true,
            })
            .unwrap(),
        ];
        let mut r1 = line(
            "2026-01-01T00:00:02.000000Z",
            Kind::Released,
            "web",
            1,
            Mode::Write,
        );
        r1.ticket = Some(1);
        r1.held = Some(2.0);
        r1.outcome = Some(Outcome::Exited);
        let mut g2 = line(
            "2026-01-01T00:00:02.001000Z",
            Kind::Granted,
            "etl",
            2,
            Mode::Write,
        );
        g2.ticket = Some(2);
        g2.waited = Some(1.501);
        g2.behind = q2.behind.clone();
        let lines = [g1, q2, r1, g2];
        let h = build_with(
            "/d/app.db",
            &lines,
            None,
            t("2026-01-01T00:00:03Z"),
            |_, pid| pid == 2,
        );
        assert_eq!(h.holds.len(), 2);
        assert_eq!(h.holds[0].held, Some(2.0));
        assert_eq!(h.holds[0].to, Some(t("2026-01-01T00:00:02Z")));
        assert!(h.holds[1].to.is_none(), "etl still holds");
        assert_eq!(h.waits.len(), 1);
        assert_eq!(h.waits[0].from, t("2026-01-01T00:00:00.5Z"));
        let s = &h.summary;
        assert_eq!((s.grants, s.conflicts, s.waits.count), (2, 1, 1));
        assert_eq!(s.waits.max, Some(1.501));
        assert_eq!(s.conflicts_per_hour, 1.0, "less than an hour counts as one");
        assert_eq!(s.kept_waiting[0].holder, "web");
        assert_eq!(s.kept_waiting[0].waiter, "etl");
    }

    #[test]
    fn a_hold_whose_dblaunch_vanished_is_lost_until_the_next_conflicting_grant() {
        let mut g1 = line("2026-01-01T00:00:00Z", Kind::Granted, "web", 1, Mode::Write);
        g1.ticket = Some(1);
        let mut g2 = line("2026-01-01T00:00:05Z", Kind::Granted, "etl", 2, Mode::Read);
        g2.ticket = Some(2);
        let h = build_with(
            "/d/app.db",
            &[g1, g2],
            None,
            t("2026-01-01T00:01:00Z"),
            |_, _| false,
        );
        assert!(h.holds[0].lost);
        assert_eq!(h.holds[0].to, Some(t("2026-01-01T00:00:05Z")));
        assert_eq!(h.summary.lost, 2, "etl's dblaunch is gone too");
    }

    #[test]
    fn percentiles_are_nearest_rank() {
        let s = Stats::of((1..=20).map(f64::from).collect());
        assert_eq!((s.p50, s.p95, s.max), (Some(10.0), Some(19.0), Some(20.0)));
        assert_eq!(Stats::of(Vec::new()).p50, None);
    }
}
