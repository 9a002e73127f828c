//! `dblaunch status [--json] [PATH]...`: for each database, who holds it,
//! who waits for it in queue order, and which processes use its files
//! without dblaunch. Every pid is validated against its recorded start time;
//! a dead ticket is cleared away (under the gate, where that is safe).

use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::cli::StatusArgs;
use crate::error::Error;
use crate::lock::Database;
use crate::lock::occupancy::{self, Nested, Report};

pub fn execute(file: Option<&Path>, args: StatusArgs) -> Result<u8, Error> {
    let dbs = databases(file, &args.paths)?;
    let report = occupancy::report(&dbs);
    let mut out = std::io::stdout().lock();
    // A closed stdout (`dblaunch status | head`) is not an error.
    let _ = if args.json {
        writeln!(
            out,
            "{}",
            serde_json::to_string(&report).expect("the report always serialises")
        )
    } else {
        write!(out, "{}", table(&report))
    };
    Ok(0)
}

/// The databases to show: the given paths, else the manifest's.
fn databases(file: Option<&Path>, paths: &[PathBuf]) -> Result<Vec<Database>, Error> {
    let cwd = std::env::current_dir().map_err(|source| Error::Io {
        action: "read the current directory".to_owned(),
        source,
    })?;
    let mut dbs = BTreeSet::new();
    if paths.is_empty() {
        let manifest = super::check::load(file).map_err(|e| match e {
            Error::Manifest(crate::manifest::ManifestError::NotFound { what }) => Error::Usage(
                format!("{what}; or name the databases: dblaunch status PATH..."),
            ),
            other => other,
        })?;
        let mut all: Vec<PathBuf> = manifest.databases.iter().map(|(_, p)| p.clone()).collect();
        for p in &manifest.programs {
            all.extend(p.locks().map(|(d, _)| d.path.clone()));
        }
        for p in all {
            dbs.insert(Database::resolve(&p, &manifest.dir)?);
        }
    } else {
        for p in paths {
            dbs.insert(Database::resolve(p, &cwd)?);
        }
    }
    Ok(dbs.into_iter().collect())
}

fn ago(since: &str) -> String {
    humantime::parse_rfc3339(since)
        .ok()
        .and_then(|t| std::time::SystemTime::now().duration_since(t).ok())
        .map(|d| {
            format!(
                " ({} ago)",
                humantime::format_duration(std::time::Duration::from_secs(d.as_secs()))
            )
        })
        .unwrap_or_default()
}

/// A command line on one line, whatever newlines its arguments hold.
fn one_line(argv: &[String]) -> String {
    argv.join(" ")
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

/// Nested holders and waiters under a holder, indented one step per level.
fn nested_lines(s: &mut String, n: &Nested, depth: usize) {
    let indent = "  ".repeat(depth + 1);
    for (role, p) in n
        .holders
        .iter()
        .map(|p| ("holds (nested)", p))
        .chain(n.waiters.iter().map(|p| ("waits (nested)", p)))
    {
        s.push_str(&format!(
            "{indent}{role}  {}  pid {}  {}  since {}{}  {}\n",
            p.program,
            p.pid,
            p.mode,
            p.since,
            ago(&p.since),
            one_line(&p.command)
        ));
        if let Some(inner) = &p.nested {
            nested_lines(s, inner, depth + 1);
        }
    }
}

/// The human-readable form.
pub fn table(r: &Report) -> String {
    let mut s = String::new();
    for db in &r.databases {
        if db.holders.is_empty() && db.waiters.is_empty() && db.foreign.is_empty() {
            s.push_str(&format!("{}: free\n", db.path));
            continue;
        }
        s.push_str(&format!("{}\n", db.path));
        let width = db
            .holders
            .iter()
            .chain(&db.waiters)
            .map(|p| p.program.len())
            .max()
            .unwrap_or(0)
            .max(7);
        for (role, p) in db
            .holders
            .iter()
            .map(|p| ("holds", p))
            .chain(db.waiters.iter().map(|p| ("waits", p)))
        {
            let program = match p.note {
                Some(note) => format!("{} ({note})", p.program),
                None => p.program.clone(),
            };
            s.push_str(&format!(
                "  {role}  {program:<width$}  pid {:<7}  {:<5}  since {}{}  {}\n",
                p.pid,
                p.mode.to_string(),
                p.since,
                ago(&p.since),
                one_line(&p.command),
                width = width + p.note.map_or(0, |n| n.len() + 3),
            ));
            if let Some(n) = &p.nested {
                nested_lines(&mut s, n, 1);
            }
        }
        for f in &db.foreign {
            let how = match (f.lock, f.open) {
                (Some(true), _) => "write lock",
                (Some(false), _) => "read lock",
                (None, _) => "open",
            };
            s.push_str(&format!(
                "  used   {:<width$}  pid {:<7}  {how:<10}  {}\n",
                "outside dblaunch",
                f.pid,
                one_line(&f.command),
                width = width.max(16)
            ));
        }
    }
    s
}
