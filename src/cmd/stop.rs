//! `dblaunch stop [TARGET]...`: gracefully stop programs of this manifest
//! that run under any `dblaunch run` (the stop signal, then SIGKILL after
//! `stop_timeout`), and report what was stopped. `stop` signals nothing
//! itself: it asks, through the control socket, the dblaunch that started
//! the programs, so a process dblaunch did not start is never signalled.

use std::path::Path;

use crate::cli::{RestartArgs, StopArgs};
use crate::control;
use crate::error::Error;

pub fn execute(file: Option<&Path>, args: StopArgs) -> Result<u8, Error> {
    ask(file, control::Action::Stop, &args.targets)
}

/// `dblaunch restart TARGET...`: the same way, but they start again.
pub fn restart(file: Option<&Path>, args: RestartArgs) -> Result<u8, Error> {
    ask(file, control::Action::Restart, &args.targets)
}

fn ask(file: Option<&Path>, action: control::Action, targets: &[String]) -> Result<u8, Error> {
    let manifest = crate::project::load_manifest(file)?;
    let programs: Vec<String> = if targets.is_empty() {
        Vec::new()
    } else {
        crate::project::targets_with(&manifest, targets, false)?
            .into_iter()
            .map(|i| manifest.programs[i].name.clone())
            .collect()
    };
    let runs = control::runs(&manifest.dir, |socket, why| {
        tracing::info!("ignoring the stale run record {}: {why}", socket.display());
    });
    let mut said = false;
    for run in &runs {
        let outcome = control::ask(run, action, &programs, |line| {
            said = true;
            println!("{line}");
        });
        if let Err(e) = outcome {
            tracing::warn!(
                "cannot reach the run of pid {} through {}: {e}",
                run.pid,
                run.socket.display()
            );
        }
    }
    if runs.is_empty() {
        println!("nothing of {} is running", manifest.path.display());
    } else if !said {
        println!(
            "nothing to {}",
            if action == control::Action::Stop {
                "stop"
            } else {
                "restart"
            }
        );
    }
    Ok(0)
}
