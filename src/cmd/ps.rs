//! `dblaunch ps`: the programs of this manifest that run under any dblaunch
//! (foreground `run` or background `start`): state, pid, uptime, restarts,
//! and the databases they hold or wait for.

use std::path::Path;

use crate::cli::PsArgs;
use crate::control::DbUse;
use crate::error::Error;

pub fn execute(file: Option<&Path>, args: PsArgs) -> Result<u8, Error> {
    let manifest = super::check::load(file)?;
    let states = crate::project::running(&manifest);
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
        let doc = serde_json::json!({ "programs": programs });
        println!("{doc}");
        return Ok(0);
    }
    if states.is_empty() {
        println!("nothing of {} is running", manifest.path.display());
        return Ok(0);
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
    for (s, _run) in &states {
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
        println!(
            "{:<width$}  {:<24}  {:>7}  {:>9}  {:>8}  {dbs}",
            s.program,
            s.describe(),
            s.pid
                .map(|p| p.to_string())
                .unwrap_or_else(|| "-".to_owned()),
            uptime,
            s.restarts
        );
    }
    Ok(0)
}

fn list(uses: &[DbUse]) -> String {
    uses.iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}
