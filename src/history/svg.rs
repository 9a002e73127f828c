//! `history --svg`: the timeline as a picture. One lane per program (per
//! program and host when several hosts appear), holds as solid bars
//! coloured by mode, waits as hatched bars in the same lane (so a long wait
//! behind a long reader shows as a hatched stretch beside the reader's bar),
//! marks for give-ups, crashes, yields, foreign blocks and lost holds, a
//! time axis with round ticks, a legend, and a tooltip on everything.
//! Databases are stacked one panel each.

use std::fmt::Write;
use std::time::{Duration, SystemTime};

use super::model::{History, MarkKind, WaitEnd};
use dblaunch_lock::Mode;

const WIDTH: f64 = 1200.0;
const LABEL: f64 = 190.0;
const RIGHT: f64 = 30.0;
const READ: &str = "#2b6cb0";
const WRITE: &str = "#c53030";
const WAIT: &str = "#d69e2e";

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn secs(t: SystemTime, from: SystemTime) -> f64 {
    t.duration_since(from)
        .map(|d| d.as_secs_f64())
        .unwrap_or_else(|e| -e.duration().as_secs_f64())
}

/// A duration for people: 850µs, 12.3ms, 4.21s, 3m05s, 2h14m.
pub fn human(s: f64) -> String {
    if s < 0.001 {
        format!("{:.0}µs", s * 1e6)
    } else if s < 1.0 {
        format!("{:.1}ms", s * 1e3)
    } else if s < 60.0 {
        format!("{s:.2}s")
    } else if s < 3600.0 {
        format!("{}m{:02}s", (s / 60.0) as u64, (s % 60.0) as u64)
    } else {
        format!(
            "{}h{:02}m",
            (s / 3600.0) as u64,
            ((s % 3600.0) / 60.0) as u64
        )
    }
}

/// Clock time in UTC, to the precision the axis step needs.
fn clock(t: SystemTime, step: f64, span: f64) -> String {
    let text = humantime::format_rfc3339_millis(t).to_string(); // 2026-11-22T10:00:00.123Z
    let date = &text[5..10];
    let hm = &text[11..16];
    let hms = &text[11..19];
    let ms = &text[11..23];
    if span >= 86_400.0 || (span >= 6.0 * 3600.0 && hm == "00:00") {
        format!("{date} {hm}")
    } else if step >= 60.0 {
        hm.to_owned()
    } else if step >= 1.0 {
        hms.to_owned()
    } else {
        ms.to_owned()
    }
}

/// A round tick step giving about `n` ticks over `span` seconds.
fn step_for(span: f64, n: f64) -> f64 {
    const STEPS: [f64; 27] = [
        0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 15.0, 30.0,
        60.0, 120.0, 300.0, 600.0, 900.0, 1800.0, 3600.0, 7200.0, 10800.0, 21600.0, 43200.0,
        86400.0,
    ];
    STEPS
        .iter()
        .copied()
        .find(|&s| span / s <= n)
        .unwrap_or(86400.0 * (span / 86400.0 / n).ceil())
}

struct Panel {
    lanes: Vec<String>,
    start: SystemTime,
    span: f64,
}

impl Panel {
    fn x(&self, t: SystemTime) -> f64 {
        LABEL + (secs(t, self.start) / self.span).clamp(0.0, 1.0) * (WIDTH - LABEL - RIGHT)
    }

    fn lane(&self, program: &str, host: &str, hosts: bool) -> usize {
        let name = lane_name(program, host, hosts);
        self.lanes.iter().position(|l| *l == name).unwrap_or(0)
    }
}

fn lane_name(program: &str, host: &str, hosts: bool) -> String {
    if hosts {
        format!("{program} @{host}")
    } else {
        program.to_owned()
    }
}

/// The picture of every history, stacked.
pub fn render(histories: &[History], now: SystemTime) -> String {
    let mut body = String::new();
    let mut y = 10.0;
    for h in histories {
        y = panel(&mut body, h, now, y);
        y += 24.0;
    }
    y = legend(&mut body, y);
    let height = y + 10.0;
    format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{WIDTH}\" height=\"{height}\" viewBox=\"0 0 {WIDTH} {height}\" font-family=\"DejaVu Sans, Helvetica, Arial, sans-serif\" font-size=\"12\">\n\
         <defs><pattern id=\"wait\" width=\"6\" height=\"6\" patternUnits=\"userSpaceOnUse\" patternTransform=\"rotate(45)\">\
         <rect width=\"6\" height=\"6\" fill=\"#fdf3dc\"/><line x1=\"0\" y1=\"0\" x2=\"0\" y2=\"6\" stroke=\"{WAIT}\" stroke-width=\"3\"/></pattern></defs>\n\
         <rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n{body}</svg>\n"
    )
}

fn panel(out: &mut String, h: &History, now: SystemTime, top: f64) -> f64 {
    let hosts = {
        let mut all: Vec<&str> = h.holds.iter().map(|x| x.host.as_str()).collect();
        all.extend(h.waits.iter().map(|w| w.host.as_str()));
        all.sort_unstable();
        all.dedup();
        all.len() > 1
    };
    // Lanes in order of first appearance.
    let mut firsts: Vec<(SystemTime, String)> = Vec::new();
    let mut see = |t: SystemTime, name: String| match firsts.iter_mut().find(|f| f.1 == name) {
        Some(f) => f.0 = f.0.min(t),
        None => firsts.push((t, name)),
    };
    for x in &h.holds {
        see(x.from, lane_name(&x.program, &x.host, hosts));
    }
    for w in &h.waits {
        see(w.from, lane_name(&w.program, &w.host, hosts));
    }
    for m in &h.marks {
        see(m.at, lane_name(&m.program, &m.host, hosts));
    }
    firsts.sort();
    let lanes: Vec<String> = firsts.into_iter().map(|f| f.1).collect();
    // The time range: the window's start to the end of what happened in it.
    let start = h.from;
    let ends = h.holds.iter().map(|x| x.to.unwrap_or(now));
    let ends = ends.chain(h.waits.iter().map(|w| w.to.unwrap_or(now)));
    let end = ends
        .chain(h.marks.iter().map(|m| m.at))
        .fold(start, SystemTime::max);
    let span = secs(end, start).max(0.001) * 1.02;
    let p = Panel { lanes, start, span };
    let lane_h = if p.lanes.len() > 20 { 16.0 } else { 24.0 };
    let title = match &h.name {
        Some(n) => format!("{n} ({})", h.database),
        None => h.database.clone(),
    };
    let s = &h.summary;
    let _ = writeln!(
        out,
        "<text x=\"10\" y=\"{}\" font-size=\"15\" font-weight=\"bold\">{}</text>",
        top + 14.0,
        esc(&title)
    );
    let _ = writeln!(
        out,
        "<text x=\"10\" y=\"{}\" fill=\"#444\">{} grants · {} waits (p50 {}, p95 {}, max {}) · holds p50 {}, max {} · {:.1} conflicts/hour · {} give-ups · {} crashes · {} yields · {} foreign blocks</text>",
        top + 32.0,
        s.grants,
        s.waits.count,
        s.waits.p50.map_or("-".into(), human),
        s.waits.p95.map_or("-".into(), human),
        s.waits.max.map_or("-".into(), human),
        s.holds.p50.map_or("-".into(), human),
        s.holds.max.map_or("-".into(), human),
        s.conflicts_per_hour,
        s.give_ups,
        s.crashes,
        s.yields,
        s.foreign_blocks,
    );
    let lanes_top = top + 44.0;
    let plot_w = WIDTH - LABEL - RIGHT;
    // Lane backgrounds and names.
    for (k, name) in p.lanes.iter().enumerate() {
        let y = lanes_top + k as f64 * lane_h;
        if k % 2 == 0 {
            let _ = writeln!(
                out,
                "<rect x=\"0\" y=\"{y}\" width=\"{WIDTH}\" height=\"{lane_h}\" fill=\"#f4f5f7\"/>"
            );
        }
        let short: String = if name.chars().count() > 26 {
            name.chars().take(25).chain(['…']).collect()
        } else {
            name.clone()
        };
        let _ = writeln!(
            out,
            "<text x=\"{}\" y=\"{}\" text-anchor=\"end\" font-size=\"{}\"><title>{}</title>{}</text>",
            LABEL - 8.0,
            y + lane_h * 0.7,
            if lane_h < 20.0 { 11 } else { 12 },
            esc(name),
            esc(&short)
        );
    }
    let lanes_bottom = lanes_top + p.lanes.len().max(1) as f64 * lane_h;
    // Grid and axis.
    let step = step_for(span, 10.0);
    let first = (secs(start, SystemTime::UNIX_EPOCH) / step).ceil() * step;
    let mut t = first;
    let end_s = secs(start, SystemTime::UNIX_EPOCH) + span;
    while t <= end_s {
        let at = SystemTime::UNIX_EPOCH + Duration::from_secs_f64(t);
        let x = p.x(at);
        let _ = writeln!(
            out,
            "<line x1=\"{x:.1}\" y1=\"{lanes_top}\" x2=\"{x:.1}\" y2=\"{}\" stroke=\"#d0d4da\" stroke-width=\"1\"/>\n<text x=\"{x:.1}\" y=\"{}\" text-anchor=\"middle\" font-size=\"11\" fill=\"#333\">{}</text>",
            lanes_bottom + 4.0,
            lanes_bottom + 17.0,
            clock(at, step, span)
        );
        t += step;
    }
    let _ = writeln!(
        out,
        "<line x1=\"{LABEL}\" y1=\"{lanes_bottom}\" x2=\"{}\" y2=\"{lanes_bottom}\" stroke=\"#333\"/>\n<text x=\"{}\" y=\"{}\" text-anchor=\"end\" font-size=\"11\" fill=\"#666\">UTC · span {}</text>",
        LABEL + plot_w,
        LABEL + plot_w,
        lanes_bottom + 31.0,
        human(secs(end, start))
    );
    // Waits under holds, then holds, then marks on top.
    for w in &h.waits {
        let k = p.lane(&w.program, &w.host, hosts);
        let y = lanes_top + k as f64 * lane_h + lane_h * 0.3;
        let x0 = p.x(w.from);
        let x1 = p.x(w.to.unwrap_or(now)).max(x0 + 1.5);
        let behind = w
            .behind
            .as_ref()
            .map(|b| format!(" behind {}", b.program))
            .unwrap_or_default();
        let how = match w.end {
            WaitEnd::Granted => "then granted",
            WaitEnd::GaveUp => "then gave up",
            WaitEnd::Waiting => "still waiting",
            WaitEnd::Abandoned => "then left the queue",
        };
        let _ = writeln!(
            out,
            "<rect x=\"{x0:.1}\" y=\"{y:.1}\" width=\"{:.1}\" height=\"{:.1}\" fill=\"url(#wait)\" stroke=\"{WAIT}\" stroke-dasharray=\"3,2\"><title>{} waited {} to {}{}, {how}</title></rect>",
            x1 - x0,
            lane_h * 0.4,
            esc(&w.program),
            human(w.waited),
            w.mode,
            esc(&behind)
        );
    }
    for x in &h.holds {
        let k = p.lane(&x.program, &x.host, hosts);
        let y = lanes_top + k as f64 * lane_h + lane_h * 0.15;
        let x0 = p.x(x.from);
        let x1 = p.x(x.to.unwrap_or(now)).max(x0 + 1.5);
        let colour = if x.mode == Mode::Write { WRITE } else { READ };
        let how = match (&x.outcome, x.exit_code, &x.signal, x.lost) {
            (_, _, _, true) => "lost (its dblaunch vanished)".to_owned(),
            (None, _, _, _) => "still holding".to_owned(),
            (Some(o), Some(c), _, _) => format!("{o:?} (exit {c})").to_lowercase(),
            (Some(o), _, Some(s), _) => format!("{} ({s})", format!("{o:?}").to_lowercase()),
            (Some(o), _, _, _) => format!("{o:?}").to_lowercase(),
        };
        let _ = writeln!(
            out,
            "<rect x=\"{x0:.1}\" y=\"{y:.1}\" width=\"{:.1}\" height=\"{:.1}\" fill=\"{colour}\" fill-opacity=\"{}\" rx=\"2\"><title>{} {} from {} for {}: {how}</title></rect>",
            x1 - x0,
            lane_h * 0.7,
            if x.lost { 0.35 } else { 0.9 },
            esc(&x.program),
            x.mode,
            humantime::format_rfc3339_millis(x.from),
            x.held.map_or("?".into(), human),
        );
    }
    for m in &h.marks {
        let k = p.lane(&m.program, &m.host, hosts);
        let cy = lanes_top + k as f64 * lane_h + lane_h * 0.5;
        let cx = p.x(m.at);
        let r = lane_h * 0.3;
        let other = m
            .other
            .as_ref()
            .map(|o| format!(" ({})", o.program))
            .unwrap_or_default();
        let (shape, what) = match m.kind {
            MarkKind::GaveUp => (
                format!(
                    "<path d=\"M{} {} L{} {} M{} {} L{} {}\" stroke=\"black\" stroke-width=\"2.5\"/>",
                    cx - r,
                    cy - r,
                    cx + r,
                    cy + r,
                    cx - r,
                    cy + r,
                    cx + r,
                    cy - r
                ),
                format!("gave up waiting{other}"),
            ),
            MarkKind::Crashed => (
                format!(
                    "<path d=\"M{cx} {} L{} {} L{} {} Z\" fill=\"black\" stroke=\"white\" stroke-width=\"1\"/>",
                    cy - r * 1.2,
                    cx + r * 1.1,
                    cy + r,
                    cx - r * 1.1,
                    cy + r
                ),
                format!("crashed ({})", m.signal.as_deref().unwrap_or("signal")),
            ),
            MarkKind::Yielded => (
                format!(
                    "<path d=\"M{} {} L{} {} L{cx} {} Z\" fill=\"#dd6b20\" stroke=\"white\" stroke-width=\"1\"/>",
                    cx - r,
                    cy - r,
                    cx + r,
                    cy - r,
                    cy + r
                ),
                format!("yielded{other}"),
            ),
            MarkKind::Foreign => (
                format!(
                    "<path d=\"M{cx} {} L{} {cy} L{cx} {} L{} {cy} Z\" fill=\"#6b46c1\" stroke=\"white\" stroke-width=\"1\"/>",
                    cy - r,
                    cx + r,
                    cy + r,
                    cx - r
                ),
                format!("blocked by a process outside dblaunch{other}"),
            ),
            MarkKind::Lost => (
                format!(
                    "<circle cx=\"{cx}\" cy=\"{cy}\" r=\"{r}\" fill=\"white\" stroke=\"black\" stroke-width=\"1.5\"/>"
                ),
                "lost: its dblaunch vanished without releasing".to_owned(),
            ),
        };
        let _ = writeln!(
            out,
            "<g><title>{} {what} at {}</title>{shape}</g>",
            esc(&m.program),
            humantime::format_rfc3339_millis(m.at)
        );
    }
    if p.lanes.is_empty() {
        let _ = writeln!(
            out,
            "<text x=\"{}\" y=\"{}\" fill=\"#666\">nothing in this window</text>",
            LABEL + 10.0,
            lanes_top + 16.0
        );
    }
    lanes_bottom + 36.0
}

fn legend(out: &mut String, top: f64) -> f64 {
    let y = top + 6.0;
    let items: [(&str, String); 7] = [
        (
            "holds to write",
            format!("<rect x=\"0\" y=\"0\" width=\"26\" height=\"12\" fill=\"{WRITE}\" rx=\"2\"/>"),
        ),
        (
            "holds to read",
            format!("<rect x=\"0\" y=\"0\" width=\"26\" height=\"12\" fill=\"{READ}\" rx=\"2\"/>"),
        ),
        (
            "waits",
            format!(
                "<rect x=\"0\" y=\"2\" width=\"26\" height=\"9\" fill=\"url(#wait)\" stroke=\"{WAIT}\" stroke-dasharray=\"3,2\"/>"
            ),
        ),
        (
            "gave up",
            "<path d=\"M8 1 L18 11 M8 11 L18 1\" stroke=\"black\" stroke-width=\"2.5\"/>"
                .to_owned(),
        ),
        (
            "crashed",
            "<path d=\"M13 -1 L20 11 L6 11 Z\" fill=\"black\"/>".to_owned(),
        ),
        (
            "yielded",
            "<path d=\"M7 1 L19 1 L13 11 Z\" fill=\"#dd6b20\"/>".to_owned(),
        ),
        (
            "foreign lock",
            "<path d=\"M13 0 L19 6 L13 12 L7 6 Z\" fill=\"#6b46c1\"/>".to_owned(),
        ),
    ];
    let mut x = LABEL;
    for (label, swatch) in items {
        let _ = writeln!(
            out,
            "<g transform=\"translate({x},{y})\">{swatch}<text x=\"32\" y=\"11\">{label}</text></g>"
        );
        x += 40.0 + label.len() as f64 * 7.0;
    }
    y + 20.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_are_round_and_few() {
        assert_eq!(step_for(60.0, 8.0), 10.0);
        assert_eq!(step_for(86_400.0, 8.0), 10_800.0);
        assert_eq!(step_for(0.05, 8.0), 0.01);
    }

    #[test]
    fn durations_read_naturally() {
        assert_eq!(human(0.0005), "500µs");
        assert_eq!(human(0.25), "250.0ms");
        assert_eq!(human(4.2), "4.20s");
        assert_eq!(human(185.0), "3m05s");
        assert_eq!(human(8040.0), "2h14m");
    }
}
