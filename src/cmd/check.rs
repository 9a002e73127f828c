//! `dblaunch check`: validate the manifest and show each program's locks
//! and which programs conflict (and so will run one after another, or, with
//! a program that locks for itself, take turns per operation).

use std::io::Write;
use std::path::Path;

use crate::error::Error;
use crate::manifest::{self, Hold, Manifest};

pub fn execute(file: Option<&Path>) -> Result<u8, Error> {
    let manifest = crate::project::load_manifest(file)?;
    let mut out = std::io::stdout().lock();
    // A closed stdout (`dblaunch check | head`) is not an error.
    let _ = write!(out, "{}", report(&manifest));
    Ok(0)
}

fn shown(manifest: &Manifest, d: &manifest::DbRef) -> String {
    let rel = d
        .path
        .strip_prefix(&manifest.dir)
        .map(|p| p.display().to_string())
        .unwrap_or_else(|_| d.path.display().to_string());
    if manifest::is_path(&d.given) {
        rel
    } else {
        format!("{} ({rel})", d.given)
    }
}

pub fn report(m: &Manifest) -> String {
    let mut s = String::new();
    let n = m.programs.len();
    s.push_str(&format!(
        "{}: ok, {n} program{}, {} group{}, {} named database{}\n",
        m.path.display(),
        if n == 1 { "" } else { "s" },
        m.groups.len(),
        if m.groups.len() == 1 { "" } else { "s" },
        m.databases.len(),
        if m.databases.len() == 1 { "" } else { "s" },
    ));
    let width = m.programs.iter().map(|p| p.name.len()).max().unwrap_or(0);
    if !m.programs.is_empty() {
        s.push_str("\nprograms:\n");
    }
    for p in &m.programs {
        let mut parts = Vec::new();
        if !p.reads.is_empty() {
            parts.push(format!(
                "reads {}",
                p.reads
                    .iter()
                    .map(|d| shown(m, d))
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        if !p.writes.is_empty() {
            parts.push(format!(
                "writes {}",
                p.writes
                    .iter()
                    .map(|d| shown(m, d))
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        if parts.is_empty() {
            parts.push("no database".to_owned());
        }
        if p.hold == Hold::OnDemand {
            parts.push("locks for itself, per operation".to_owned());
        }
        if !p.after.is_empty() {
            parts.push(format!(
                "after {}",
                p.after
                    .iter()
                    .map(|&i| m.programs[i].name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        if !p.needs.is_empty() {
            parts.push(format!(
                "needs {}",
                p.needs
                    .iter()
                    .map(|&i| m.programs[i].name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        if let Some(r) = &p.ready {
            parts.push(format!("ready: {}", r.check.describe()));
        }
        if let Some(w) = &p.watch {
            parts.push(format!(
                "watches {}",
                w.paths
                    .iter()
                    .map(|p| p.strip_prefix(&m.dir).unwrap_or(p).display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        s.push_str(&format!("  {:width$}  {}\n", p.name, parts.join("; ")));
    }
    let mut conflicts = Vec::new();
    for (i, a) in m.programs.iter().enumerate() {
        for b in &m.programs[i + 1..] {
            for (da, ma) in a.locks() {
                for (db, mb) in b.locks() {
                    if ma.conflicts_with(mb) && manifest_same(&da.path, &db.path) {
                        let how = match (a.hold, b.hold) {
                            (Hold::Running, Hold::Running) => "one at a time".to_owned(),
                            (Hold::OnDemand, Hold::OnDemand) => {
                                "per operation (both lock for themselves)".to_owned()
                            }
                            (Hold::OnDemand, _) => {
                                format!("per operation ({} locks for itself)", a.name)
                            }
                            (_, Hold::OnDemand) => {
                                format!("per operation ({} locks for itself)", b.name)
                            }
                        };
                        conflicts.push(format!(
                            "  {} ({ma}) and {} ({mb}) on {}: {how}\n",
                            a.name,
                            b.name,
                            shown(m, da)
                        ));
                    }
                }
            }
        }
    }
    if conflicts.is_empty() {
        s.push_str("\nconflicts: none, every program can run alongside every other\n");
    } else {
        s.push_str("\nconflicts:\n");
        for c in conflicts {
            s.push_str(&c);
        }
    }
    if !m.groups.is_empty() {
        s.push_str("\ngroups:\n");
        for (g, members) in &m.groups {
            s.push_str(&format!("  {g} = {}\n", members.join(", ")));
        }
    }
    s
}

fn manifest_same(a: &Path, b: &Path) -> bool {
    crate::manifest::same_database(a, b)
}
