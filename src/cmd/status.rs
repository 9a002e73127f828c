//! `dblaunch status [--json] [PATH]...`: for each database, who holds it,
//! who waits for it in queue order, and which processes use its files
//! without dblaunch. Every pid is validated against its recorded start time;
//! a dead ticket is cleared away (under the gate, where that is safe).

use std::io::Write;
use std::path::Path;

use crate::cli::StatusArgs;
use crate::databases;
use crate::error::Error;
use crate::manifest::Manifest;
use dblaunch_lock::Database;
use dblaunch_lock::backend::Entry;
use dblaunch_lock::occupancy::{self, Nested, Report};

pub fn execute(file: Option<&Path>, args: StatusArgs) -> Result<u8, Error> {
    let (dbs, manifest) = databases::chosen(file, &args.paths, "status")?;
    let report = occupancy::report(&dbs);
    let backend = remote(manifest.as_ref(), &dbs)?;
    let mut out = std::io::stdout().lock();
    // A closed stdout (`dblaunch status | head`) is not an error.
    let _ = if args.json {
        let mut value = serde_json::to_value(&report).expect("the report always serialises");
        if let Some(b) = &backend {
            value["backend"] = serde_json::to_value(b).expect("the backend report serialises");
        }
        writeln!(out, "{value}")
    } else {
        let mut text = table(&report);
        if let Some(b) = &backend {
            text.push_str(&backend_table(b));
        }
        write!(out, "{text}")
    };
    Ok(0)
}

/// Holders and waiters of every host, from the lock backend.
#[derive(serde::Serialize)]
struct BackendReport {
    server: String,
    /// Set when the backend could not be asked; the keys are then empty.
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
    keys: Vec<KeyReport>,
}

#[derive(serde::Serialize)]
struct KeyReport {
    key: String,
    database: String,
    holders: Vec<Entry>,
    waiters: Vec<Entry>,
}

fn remote(manifest: Option<&Manifest>, dbs: &[Database]) -> Result<Option<BackendReport>, Error> {
    let Some(remote) = crate::project::remote(manifest)? else {
        return Ok(None);
    };
    let keyed: Vec<(String, String)> = dbs
        .iter()
        .map(|d| {
            (
                crate::project::backend_key(manifest, d),
                d.path().display().to_string(),
            )
        })
        .collect();
    let keys: Vec<String> = keyed.iter().map(|(k, _)| k.clone()).collect();
    let server = remote.backend.server();
    Ok(Some(match remote.backend.entries(&keys) {
        Ok(entries) => BackendReport {
            server,
            error: None,
            keys: keyed
                .into_iter()
                .map(|(key, database)| {
                    let (holders, waiters) = entries
                        .iter()
                        .filter(|e| e.key == key)
                        .cloned()
                        .partition(|e| e.holding);
                    KeyReport {
                        key,
                        database,
                        holders,
                        waiters,
                    }
                })
                .collect(),
        },
        Err(e) => BackendReport {
            server,
            error: Some(e.to_string()),
            keys: Vec::new(),
        },
    }))
}

fn backend_table(b: &BackendReport) -> String {
    let mut s = format!("lock backend {} (every host):\n", b.server);
    if let Some(e) = &b.error {
        s.push_str(&format!("  cannot be asked: {e}\n"));
        return s;
    }
    for k in &b.keys {
        if k.holders.is_empty() && k.waiters.is_empty() {
            s.push_str(&format!("  {} ({}): free\n", k.key, k.database));
            continue;
        }
        s.push_str(&format!("  {} ({})\n", k.key, k.database));
        for (role, e) in k
            .holders
            .iter()
            .map(|e| ("holds", e))
            .chain(k.waiters.iter().map(|e| ("waits", e)))
        {
            let token = e.token.map(|t| format!("  token {t}")).unwrap_or_default();
            let lost = if e.lost {
                "  (lost the backend: waited out for a lease)"
            } else {
                ""
            };
            s.push_str(&format!(
                "    {role}  {}  pid {}  on {}  {}{token}  since {}{}{lost}\n",
                e.program,
                e.pid,
                e.host,
                e.mode,
                e.since,
                ago(&e.since)
            ));
        }
    }
    s
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
