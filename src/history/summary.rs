//! A history's summary, computed: grants, waits and holds counted with
//! their percentiles, the marks counted, and who kept whom waiting.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use super::model::{Hold, KeptWaiting, Mark, MarkKind, Stats, Summary, Wait, WaitEnd};

/// Count, p50, p95 and max of `values`.
fn stats(mut values: Vec<f64>) -> Stats {
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

pub(super) fn summarise(
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
        waits: stats(done.iter().map(|w| w.waited).collect()),
        holds: stats(holds.iter().filter_map(|h| h.held).collect()),
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

    #[test]
    fn percentiles_are_nearest_rank() {
        let s = stats((1..=20).map(f64::from).collect());
        assert_eq!((s.p50, s.p95, s.max), (Some(10.0), Some(19.0), Some(20.0)));
        assert_eq!(stats(Vec::new()).p50, None);
    }
}
