//! `dblaunch ps`: the programs of this manifest that run under any dblaunch
//! (foreground `run` or background `start`): state, pid, uptime, restarts,
//! and the databases they hold or wait for.

use std::path::Path;

use crate::error::Error;

pub fn execute(file: Option<&Path>) -> Result<u8, Error> {
    let manifest = super::check::load(file)?;
    let states = crate::project::running(&manifest);
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
            format!("holds {}", s.holds.join(", "))
        } else if !s.awaits.is_empty() {
            format!("awaits {}", s.awaits.join(", "))
        } else {
            String::new()
        };
        println!(
            "{:<width$}  {:<24}  {:>7}  {:>9}  {:>8}  {dbs}",
            s.program,
            s.state,
            s.pid
                .map(|p| p.to_string())
                .unwrap_or_else(|| "-".to_owned()),
            uptime,
            s.restarts
        );
    }
    Ok(0)
}
