//! `dblaunch ps`: the programs of this manifest that run under any dblaunch
//! (foreground `run` or background `start`): state, pid, uptime, restarts,
//! and the databases they hold or wait for.

use std::path::Path;

use crate::cli::PsArgs;
use crate::control::DbUse;
use crate::databases;
use crate::error::Error;
use crate::manifest::Manifest;
use dblaunch_lock::backend::Entry;

pub fn execute(file: Option<&Path>, args: PsArgs) -> Result<u8, Error> {
    let manifest = crate::project::load_manifest(file)?;
    let states = crate::project::running(&manifest);
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
        let dbs = if !s.holds.is_empty() {
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

fn list(uses: &[DbUse]) -> String {
    uses.iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}
