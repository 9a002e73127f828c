//! The OpenMetrics text exposition of the journals (`dblaunch metrics`):
//! wait and hold histograms, counters of grants, waits, give-ups, foreign
//! blocks, yields and crashes, and gauges of the current holders and
//! waiters, each labelled with `database` and `program`.
//!
//! The counters count what the journal holds: a rotation drops its oldest
//! generation, which a scraper sees as a counter reset (Prometheus's
//! `increase()` and `rate()` allow for those).

use std::collections::BTreeMap;
use std::fmt::Write;

use super::model::{History, MarkKind, WaitEnd};

/// Histogram buckets, in seconds: a lock wait or hold runs from
/// microseconds (an uncontended grant) to hours (a nightly job).
const BUCKETS: [f64; 14] = [
    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 60.0, 600.0,
];

/// The two text formats: OpenMetrics 1.0, and the Prometheus text format
/// 0.0.4 that older scrapers and `promtool check metrics` read. They
/// differ in how a counter's family is named (`x` with samples `x_total`,
/// or `x_total`), in `# UNIT` lines and in the closing `# EOF`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    #[value(name = "openmetrics")]
    OpenMetrics,
    Prometheus,
}

impl Format {
    /// The media type of the format.
    pub fn content_type(self) -> &'static str {
        match self {
            Format::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
            Format::Prometheus => "text/plain; version=0.0.4; charset=utf-8",
        }
    }

    /// What a scraper's `Accept` header asks for.
    pub fn accepted(accept: &str) -> Format {
        if accept.contains("application/openmetrics-text") {
            Format::OpenMetrics
        } else {
            Format::Prometheus
        }
    }
}

/// Current holders and waiters of a database, per program.
#[derive(Default)]
pub struct Live {
    pub holders: BTreeMap<String, usize>,
    pub waiters: BTreeMap<String, usize>,
}

#[derive(Default)]
struct Series {
    waits: Vec<f64>,
    holds: Vec<f64>,
    grants: u64,
    conflicts: u64,
    give_ups: u64,
    foreign: u64,
    yields: u64,
    crashes: u64,
}

fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn number(v: f64) -> String {
    if v.is_infinite() {
        "+Inf".to_owned()
    } else {
        // Rust prints the shortest text that reads back the same.
        format!("{v}")
    }
}

/// Renders every database's series; `live[i]` goes with `histories[i]`.
pub fn render(histories: &[History], live: &[Live], format: Format) -> String {
    // (database, program) → series, in a stable order.
    let mut series: BTreeMap<(String, String), Series> = BTreeMap::new();
    for h in histories {
        fn at<'s>(
            series: &'s mut BTreeMap<(String, String), Series>,
            db: &str,
            program: &str,
        ) -> &'s mut Series {
            series
                .entry((db.to_owned(), program.to_owned()))
                .or_default()
        }
        for hold in &h.holds {
            let s = at(&mut series, &h.database, &hold.program);
            s.grants += 1;
            s.waits.push(hold.waited);
            if let Some(held) = hold.held {
                s.holds.push(held);
            }
        }
        for w in &h.waits {
            if matches!(w.end, WaitEnd::Granted | WaitEnd::GaveUp) {
                at(&mut series, &h.database, &w.program).conflicts += 1;
            }
        }
        for m in &h.marks {
            let s = at(&mut series, &h.database, &m.program);
            match m.kind {
                MarkKind::GaveUp => s.give_ups += 1,
                MarkKind::Foreign => s.foreign += 1,
                MarkKind::Yielded => s.yields += 1,
                MarkKind::Crashed => s.crashes += 1,
                MarkKind::Lost => {}
            }
        }
    }
    let labels = |(db, program): &(String, String)| {
        format!(
            "database=\"{}\",program=\"{}\"",
            escape(db),
            escape(program)
        )
    };
    let mut out = String::new();
    for (name, help, pick) in [
        (
            "dblaunch_lock_wait_seconds",
            "Time from queueing for a database lock to being granted it, one observation per grant.",
            (|s: &Series| &s.waits) as fn(&Series) -> &Vec<f64>,
        ),
        (
            "dblaunch_lock_hold_seconds",
            "Time a program held a database lock, one observation per finished hold.",
            |s: &Series| &s.holds,
        ),
    ] {
        let _ = writeln!(out, "# TYPE {name} histogram\n# HELP {name} {help}");
        if format == Format::OpenMetrics {
            let _ = writeln!(out, "# UNIT {name} seconds");
        }
        for (key, s) in &series {
            let values = pick(s);
            let l = labels(key);
            for le in BUCKETS.iter().copied().chain([f64::INFINITY]) {
                let n = values.iter().filter(|&&v| v <= le).count();
                let _ = writeln!(out, "{name}_bucket{{{l},le=\"{}\"}} {n}", number(le));
            }
            let _ = writeln!(out, "{name}_count{{{l}}} {}", values.len());
            let _ = writeln!(out, "{name}_sum{{{l}}} {}", number(values.iter().sum()));
        }
    }
    for (name, help, pick) in [
        (
            "dblaunch_lock_grants",
            "Database locks granted (programs started under them).",
            (|s: &Series| s.grants) as fn(&Series) -> u64,
        ),
        (
            "dblaunch_lock_waits",
            "Lock conflicts: acquisitions that found the lock taken and had to wait (granted later or given up).",
            |s: &Series| s.conflicts,
        ),
        (
            "dblaunch_lock_give_ups",
            "Acquisitions given up: the lock stayed busy past --wait (or at once with --no-wait).",
            |s: &Series| s.give_ups,
        ),
        (
            "dblaunch_lock_foreign_blocks",
            "Times a process outside dblaunch held the database file locked when a program was to start.",
            |s: &Series| s.foreign,
        ),
        (
            "dblaunch_lock_yields",
            "Times a yielding reader was stopped to let a waiting writer in.",
            |s: &Series| s.yields,
        ),
        (
            "dblaunch_lock_crashes",
            "Holds that ended with the program killed by a signal dblaunch did not send.",
            |s: &Series| s.crashes,
        ),
    ] {
        let family = match format {
            Format::OpenMetrics => name.to_owned(),
            Format::Prometheus => format!("{name}_total"),
        };
        let _ = writeln!(out, "# TYPE {family} counter\n# HELP {family} {help}");
        for (key, s) in &series {
            let _ = writeln!(out, "{name}_total{{{}}} {}", labels(key), pick(s));
        }
    }
    for (name, help, pick) in [
        (
            "dblaunch_lock_holders",
            "Programs holding the database lock now.",
            (|l: &Live| &l.holders) as fn(&Live) -> &BTreeMap<String, usize>,
        ),
        (
            "dblaunch_lock_waiters",
            "Programs waiting for the database lock now.",
            |l: &Live| &l.waiters,
        ),
    ] {
        let _ = writeln!(out, "# TYPE {name} gauge\n# HELP {name} {help}");
        for (h, live) in histories.iter().zip(live) {
            // Every program seen, so a gauge drops to 0 instead of vanishing.
            let mut programs: BTreeMap<&str, usize> = series
                .keys()
                .filter(|(db, _)| *db == h.database)
                .map(|(_, p)| (p.as_str(), 0))
                .collect();
            for (p, n) in pick(live) {
                programs.insert(p, *n);
            }
            for (program, n) in programs {
                let l = labels(&(h.database.clone(), program.to_owned()));
                let _ = writeln!(out, "{name}{{{l}}} {n}");
            }
        }
    }
    if format == Format::OpenMetrics {
        out.push_str("# EOF\n");
    }
    out
}
