//! Cycles in the manifest: `after` and `needs` between programs, and groups
//! that contain themselves; each reported once, as a path, at its place.

use std::collections::BTreeMap;

use toml::Spanned;

use super::error::Diagnostic;
use super::model::Program;
use super::raw::Raw;

/// `after` and `needs` must not loop: print each cycle once, as a path.
pub(super) fn after_cycles(raw: &Raw, programs: &[Program], diags: &mut Vec<Diagnostic>) {
    #[derive(Clone, Copy, PartialEq)]
    enum Colour {
        New,
        Active,
        Done,
    }
    /// A cycle: the programs, each with whether it reaches the next one by
    /// `needs` (rather than `after`).
    type Cycle = Vec<(usize, bool)>;
    fn visit(
        i: usize,
        programs: &[Program],
        colours: &mut [Colour],
        stack: &mut Vec<(usize, bool)>,
        cycles: &mut Vec<Cycle>,
    ) {
        colours[i] = Colour::Active;
        let edges = programs[i]
            .after
            .iter()
            .map(|&d| (d, false))
            .chain(programs[i].needs.iter().map(|&d| (d, true)));
        for (d, by_needs) in edges {
            stack.push((i, by_needs));
            match colours[d] {
                Colour::New => visit(d, programs, colours, stack, cycles),
                Colour::Active => {
                    let from = stack.iter().position(|&(s, _)| s == d).unwrap_or(0);
                    cycles.push(stack[from..].to_vec());
                }
                Colour::Done => {}
            }
            stack.pop();
        }
        colours[i] = Colour::Done;
    }
    let mut colours = vec![Colour::New; programs.len()];
    let mut cycles = Vec::new();
    for i in 0..programs.len() {
        if colours[i] == Colour::New {
            visit(i, programs, &mut colours, &mut Vec::new(), &mut cycles);
        }
    }
    for cycle in cycles {
        let (first, first_by_needs) = cycle[0];
        let with_needs = cycle.iter().any(|&(_, n)| n);
        let mut names: Vec<&str> = cycle
            .iter()
            .map(|&(i, _)| programs[i].name.as_str())
            .collect();
        names.push(&programs[first].name);
        // `names` runs "a after b after c": show it in running order.
        names.reverse();
        let rp = &raw.programs[first].1;
        let next = &programs[cycle.get(1).map_or(first, |&(n, _)| n)].name;
        let list = if first_by_needs { &rp.needs } else { &rp.after };
        let entry = list.iter().find(|a| a.get_ref() == next).or(list.first());
        let span = entry
            .map(|a| a.span())
            .or(Some(raw.programs[first].0.span()));
        let (what, help) = if with_needs {
            (
                "`needs` and `after` go round in a circle",
                "no program in a circle can ever start; remove one of these `needs` or `after` entries",
            )
        } else {
            (
                "`after` goes round in a circle",
                "no program in a circle can ever start; remove one of these `after` entries",
            )
        };
        diags.push(Diagnostic::new(format!("{what}: {}", names.join(" → ")), span).help(help));
    }
}

pub(super) fn group_cycles(raw: &Raw, diags: &mut Vec<Diagnostic>) {
    let groups: BTreeMap<&str, &Vec<Spanned<String>>> = raw
        .groups
        .iter()
        .map(|(n, m)| (n.get_ref().as_str(), m))
        .collect();
    for (name, _) in &raw.groups {
        // Depth-first from each group; a path back to it is a cycle.
        let mut stack = vec![(name.get_ref().as_str(), vec![name.get_ref().as_str()])];
        let mut found = None;
        while let Some((g, path)) = stack.pop() {
            if path.len() > groups.len() + 1 {
                continue;
            }
            for m in groups.get(g).map(|v| v.as_slice()).unwrap_or(&[]) {
                let m = m.get_ref().as_str();
                if m == name.get_ref() {
                    let mut p = path.clone();
                    p.push(m);
                    found = Some(p);
                    break;
                }
                if groups.contains_key(m) && !path.contains(&m) {
                    let mut p = path.clone();
                    p.push(m);
                    stack.push((m, p));
                }
            }
            if found.is_some() {
                break;
            }
        }
        if let Some(path) = found {
            diags.push(
                Diagnostic::new(
                    format!(
                        "group `{}` contains itself: {}",
                        name.get_ref(),
                        path.join(" → ")
                    ),
                    Some(name.span()),
                )
                .help("remove one of the nested group names"),
            );
        }
    }
}
