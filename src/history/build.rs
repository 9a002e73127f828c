//! Rebuilding a history from journal lines: each grant paired with its
//! release, each wait with how it ended, holds whose dblaunch vanished
//! marked lost, all cut to the window asked for.

use std::collections::HashMap;
use std::time::{Duration, SystemTime};

use dblaunch_lock::Mode;
use dblaunch_lock::journal::{Kind, Line, Outcome, Party};

use super::model::{History, Hold, Mark, MarkKind, Wait, WaitEnd};
use super::summary::summarise;

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
            // Readiness is the program's, not the lock's: no mark.
            Kind::Ready => {}
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
}
