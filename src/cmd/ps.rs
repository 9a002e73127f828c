//! `dblaunch ps`: the programs of this manifest that run under any dblaunch
//! (foreground `run` or background `start`): state, pid, uptime, restarts,
//! and the databases they hold or wait for.

use std::path::Path;

use crate::cli::PsArgs;
use crate::control::{DbUse, ProgramState};
use crate::databases;
use crate::error::Error;
use crate::manifest::{Hold, Manifest};
use dblaunch_lock::backend::Entry;
use dblaunch_lock::{Database, Queue, Role, procfs};

pub fn execute(file: Option<&Path>, args: PsArgs) -> Result<u8, Error> {
    let manifest = crate::project::load_manifest(file)?;
    let mut states = crate::project::running(&manifest);
    for (s, _) in &mut states {
        own_tickets(s);
    }
    let remote = other_hosts(file, &manifest);
    if args.json {
        // One JSON object: {"programs": [{program, state, status?, live,
        // pid, uptime_ms, restarts, holds, awaits, run_pid}]}.
        let programs: Vec<serde_json::Value> = states
            .iter()
            .map(|(s, run)| {
                let mut v = serde_json::to_value(s).expect("a state always serialises");
                v["run_pid"] = (*run).into();
                v
            })
            .collect();
        let mut doc = serde_json::json!({ "programs": programs });
        if let Some(entries) = &remote {
            doc["other_hosts"] = serde_json::to_value(entries).expect("entries serialise");
        }
        println!("{doc}");
        return Ok(0);
    }
    print_local(&manifest, &states);
    if let Some(entries) = remote {
        print_remote(&entries);
    }
    Ok(0)
}

/// With a lock backend: the holders and waiters of the manifest's
/// databases on the other hosts (this host's are the runs above). `None`
/// without a backend; a backend that cannot be asked is warned about.
fn other_hosts(file: Option<&Path>, manifest: &Manifest) -> Option<Vec<Entry>> {
    manifest.backend.as_ref()?;
    let remote = match crate::project::remote(Some(manifest)) {
        Ok(r) => r?,
        Err(e) => {
            tracing::warn!("{e}; showing this host only");
            return None;
        }
    };
    let (dbs, _) = databases::chosen(file, &[], "ps").ok()?;
    let keys: Vec<String> = dbs
        .iter()
        .map(|d| crate::project::backend_key(Some(manifest), d))
        .collect();
    match remote.backend.entries(&keys) {
        Ok(entries) => Some(
            entries
                .into_iter()
                .filter(|e| e.host != remote.host)
                .collect(),
        ),
        Err(e) => {
            tracing::warn!("{e}; showing this host only");
            None
        }
    }
}

fn print_remote(entries: &[Entry]) {
    if entries.is_empty() {
        println!("\nno other host holds or waits for these databases");
        return;
    }
    println!("\non other hosts (from the lock backend):");
    for e in entries {
        let role = match (e.holding, e.lost) {
            (true, true) => "lost",
            (true, false) => "holds",
            (false, _) => "waits",
        };
        let token = e.token.map(|t| format!("  token {t}")).unwrap_or_default();
        println!(
            "  {:<16}  on {:<12}  pid {:>7}  {role} {} {}  since {}{token}",
            e.program, e.host, e.pid, e.mode, e.key, e.since
        );
    }
}

fn print_local(manifest: &Manifest, states: &[(crate::control::ProgramState, i32)]) {
    if states.is_empty() {
        println!("nothing of {} is running", manifest.path.display());
        return;
    }
    let width = states
        .iter()
        .map(|(s, _)| s.program.len())
        .max()
        .unwrap_or(7)
        .max(7);
    println!(
        "{:<width$}  {:<24}  {:>7}  {:>9}  {:>8}  DATABASES",
        "PROGRAM", "STATE", "PID", "UPTIME", "RESTARTS"
    );
    for (s, _run) in states {
        let uptime = s
            .uptime_ms
            .map(|ms| {
                humantime::format_duration(std::time::Duration::from_secs(ms / 1000)).to_string()
            })
            .unwrap_or_else(|| "-".to_owned());
        let dbs = if s.hold == Hold::OnDemand {
            locking_itself(s)
        } else if !s.holds.is_empty() {
            format!("holds {}", list(&s.holds))
        } else if !s.awaits.is_empty() {
            format!("awaits {}", list(&s.awaits))
        } else {
            String::new()
        };
        // Restarts on change (`watch`) after a `+`: `0+3`.
        let restarts = if s.change_restarts > 0 {
            format!("{}+{}", s.restarts, s.change_restarts)
        } else {
            s.restarts.to_string()
        };
        println!(
            "{:<width$}  {:<24}  {:>7}  {:>9}  {:>8}  {dbs}",
            s.program,
            s.describe(),
            s.pid
                .map(|p| p.to_string())
                .unwrap_or_else(|| "-".to_owned()),
            uptime,
            restarts
        );
    }
}

/// A program that locks for itself holds nothing through its run: what it
/// holds or waits for now are the tickets of its own processes in the
/// queues of the databases it declares. A ticket is its own when the
/// process its record names, or the dblaunch that supervises that process
/// (a nested `dblaunch exec`), is in the program's process group: the lock
/// library records the calling process, as its own supervisor.
fn own_tickets(s: &mut ProgramState) {
    let Some(group) = s.pid.filter(|_| s.hold == Hold::OnDemand) else {
        return;
    };
    let member = |pid: i32| pid == group || procfs::pgid(pid) == Some(group);
    for declared in &s.declares {
        let Ok(db) = Database::resolve(&declared.path, Path::new("/")) else {
            continue;
        };
        let Some(queue) = Queue::existing(&db) else {
            continue;
        };
        for entry in queue.entries().into_iter().filter(|e| e.live) {
            let (list, record) = match entry.role() {
                Role::Holds(r) => (&mut s.holds, r),
                Role::Waits(r) => (&mut s.awaits, r),
                Role::Leftover(_) => continue,
            };
            let ours = member(record.pid)
                || (record.supervisor_is_alive() && member(record.supervisor_pid));
            let found = DbUse {
                path: db.path().to_path_buf(),
                mode: record.mode,
            };
            if ours && !list.contains(&found) {
                list.push(found);
            }
        }
    }
}

/// The DATABASES column of a program that locks for itself.
fn locking_itself(s: &ProgramState) -> String {
    let mut text = format!("locks for itself: {}", list(&s.declares));
    if !s.holds.is_empty() {
        text += &format!("; holds {}", list(&s.holds));
    }
    if !s.awaits.is_empty() {
        text += &format!("; awaits {}", list(&s.awaits));
    }
    if s.pid.is_some() && s.holds.is_empty() && s.awaits.is_empty() {
        text += "; holds none now";
    }
    text
}

fn list(uses: &[DbUse]) -> String {
    uses.iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}
