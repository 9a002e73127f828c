//! `dblaunch history [DB]... [--since DUR|TIME] [--json] [--svg FILE]`: per
//! database, from its lock journal, who held it in which mode from when to
//! when, who waited how long behind whom, and a summary.

use std::io::Write;
use std::path::Path;
use std::time::SystemTime;

use crate::cli::HistoryArgs;
use crate::databases;
use crate::error::Error;
use crate::history::svg::human;
use crate::history::{self, History, MarkKind, WaitEnd};

pub fn execute(file: Option<&Path>, args: HistoryArgs) -> Result<u8, Error> {
    let (dbs, manifest) = databases::chosen(file, &args.databases, "history")?;
    let now = SystemTime::now();
    let histories = history::load(&dbs, manifest.as_ref(), args.since, now)?;
    if let Some(path) = &args.svg {
        std::fs::write(path, history::svg::render(&histories, now)).map_err(|source| {
            Error::Io {
                action: format!("write the picture to {}", path.display()),
                source,
            }
        })?;
    }
    let mut out = std::io::stdout().lock();
    // A closed stdout (`dblaunch history | head`) is not an error.
    let _ = if args.json {
        writeln!(
            out,
            "{}",
            serde_json::json!({ "version": 1, "databases": histories })
        )
    } else {
        write!(out, "{}", text(&histories))
    };
    Ok(0)
}

fn clock(t: SystemTime) -> String {
    // 2026-11-22T10:00:00.123Z → 2026-11-22 10:00:00.123
    humantime::format_rfc3339_millis(t)
        .to_string()
        .trim_end_matches('Z')
        .replacen('T', " ", 1)
}

fn text(histories: &[History]) -> String {
    let mut s = String::new();
    for h in histories {
        let title = match &h.name {
            Some(n) => format!("{n} ({})", h.database),
            None => h.database.clone(),
        };
        s += &format!(
            "{title}\n  from {} to {} (UTC)\n",
            clock(h.from),
            clock(h.to)
        );
        // One row per hold, wait and mark, in time order.
        let mut rows: Vec<(SystemTime, u8, String)> = Vec::new();
        let width = h
            .holds
            .iter()
            .map(|x| x.program.len())
            .chain(h.waits.iter().map(|w| w.program.len()))
            .max()
            .unwrap_or(0)
            .min(24);
        let hosts = h.holds.iter().any(|x| x.host != h.holds[0].host);
        let who = |program: &str, host: &str| {
            if hosts {
                format!("{program:width$} on {host}")
            } else {
                format!("{program:width$}")
            }
        };
        for x in &h.holds {
            let end = if x.lost {
                "then lost: its dblaunch vanished without releasing".to_owned()
            } else {
                match (&x.outcome, x.exit_code, &x.signal) {
                    (None, _, _) => "still holding".to_owned(),
                    (Some(o), c, sig) => {
                        let outcome = format!("{o:?}").to_lowercase();
                        match (c, sig) {
                            (Some(c), _) => format!("{outcome}, exit {c}"),
                            (_, Some(sig)) => format!("{outcome}, {sig}"),
                            _ => outcome,
                        }
                    }
                }
            };
            let held = x
                .held
                .map_or_else(String::new, |d| format!("held {}; ", human(d)));
            let nested = if x.nested { " (nested)" } else { "" };
            rows.push((
                x.from,
                1,
                format!(
                    "{}  {:5}  granted{nested}; {held}{end}",
                    who(&x.program, &x.host),
                    x.mode.to_string()
                ),
            ));
        }
        for w in &h.waits {
            let behind = w
                .behind
                .as_ref()
                .map(|b| {
                    let mode = b.mode.map(|m| format!(" ({m})")).unwrap_or_default();
                    let host = b
                        .host
                        .as_ref()
                        .map(|h| format!(" on {h}"))
                        .unwrap_or_default();
                    let outside = if b.foreign { ", outside dblaunch" } else { "" };
                    format!(" behind {}{mode}{host}{outside}", b.program)
                })
                .unwrap_or_default();
            let end = match w.end {
                WaitEnd::Granted => "",
                WaitEnd::GaveUp => ", gave up",
                WaitEnd::Waiting => ", still waiting",
                WaitEnd::Abandoned => ", left the queue",
            };
            rows.push((
                w.from,
                0,
                format!(
                    "{}  {:5}  waited {}{behind}{end}",
                    who(&w.program, &w.host),
                    w.mode.to_string(),
                    human(w.waited)
                ),
            ));
        }
        for m in &h.marks {
            let other = m
                .other
                .as_ref()
                .map(|o| format!(" {}", o.program))
                .unwrap_or_default();
            let what = match m.kind {
                MarkKind::Foreign => format!("blocked by a process outside dblaunch:{other}"),
                MarkKind::Yielded => format!("yielded to{other}"),
                // Shown on its wait and hold rows.
                MarkKind::GaveUp | MarkKind::Crashed | MarkKind::Lost => continue,
            };
            rows.push((
                m.at,
                2,
                format!("{}         {what}", who(&m.program, &m.host)),
            ));
        }
        rows.sort_by(|a, b| a.0.cmp(&b.0).then(a.1.cmp(&b.1)));
        if rows.is_empty() {
            s += "  nothing in this window\n";
        }
        for (at, _, row) in &rows {
            s += &format!("  {}  {row}\n", clock(*at));
        }
        let sm = &h.summary;
        let stats = |st: &history::Stats| match (st.p50, st.p95, st.max) {
            (Some(a), Some(b), Some(c)) => {
                format!("p50 {}, p95 {}, max {}", human(a), human(b), human(c))
            }
            _ => "none".to_owned(),
        };
        s += &format!(
            "  summary: {} grants; {} waits ({}); holds {}; {:.1} conflicts/hour; {} give-ups; {} foreign blocks; {} yields; {} crashes{}\n",
            sm.grants,
            sm.waits.count,
            stats(&sm.waits),
            stats(&sm.holds),
            sm.conflicts_per_hour,
            sm.give_ups,
            sm.foreign_blocks,
            sm.yields,
            sm.crashes,
            if sm.lost > 0 {
                format!("; {} lost", sm.lost)
            } else {
                String::new()
            }
        );
        for k in sm.kept_waiting.iter().take(5) {
            s += &format!(
                "  {} kept {} waiting {} in all ({} wait{}, longest {})\n",
                k.holder,
                k.waiter,
                human(k.total),
                k.waits,
                if k.waits == 1 { "" } else { "s" },
                human(k.longest)
            );
        }
        if h.skipped_lines > 0 {
            s += &format!(
                "  ({} journal line{} skipped: not events)\n",
                h.skipped_lines,
                if h.skipped_lines == 1 { "" } else { "s" }
            );
        }
        s.push('\n');
    }
    s
}
