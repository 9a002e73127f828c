//! `dblaunch run TARGET...`: run programs and groups of the manifest in the
//! foreground. A program starts once its `after` programs have exited 0 and
//! all of its databases are locked; programs that do not conflict run side
//! by side, conflicting ones queue through the same cross-process lock as
//! every other dblaunch on the machine.

use std::path::Path;

use crate::cli::RunArgs;
use crate::error::Error;
use crate::manifest::{Hold, Manifest};
use crate::supervisor::{Options, Spec, Supervisor};
use dblaunch_lock::names::FILE_ENV;
use dblaunch_lock::{Database, Request};

pub fn execute(file: Option<&Path>, args: RunArgs) -> Result<u8, Error> {
    let manifest = crate::project::load_manifest(file)?;
    let chosen = crate::project::targets(&manifest, &args.targets)?;
    let mut specs = specs(&manifest, &chosen)?;
    // `.env` beside the manifest: for every program, under its own `env`.
    let dotenv = crate::manifest::dotenv::load(&manifest.dir)?;
    for spec in &mut specs {
        let mut env = dotenv.clone();
        env.append(&mut spec.env);
        spec.env = env;
    }
    for (i, &p) in chosen.iter().enumerate() {
        let pulled_in = !args
            .targets
            .iter()
            .any(|t| t == &manifest.programs[p].name || manifest.group(t).is_some());
        if pulled_in {
            let dependents: Vec<&str> = specs
                .iter()
                .filter(|s| s.after.contains(&i))
                .map(|s| s.name.as_str())
                .collect();
            tracing::info!(
                "also running {}: {} run{} after it",
                specs[i].name,
                dependents.join(", "),
                if dependents.len() == 1 { "s" } else { "" }
            );
        }
    }
    let (logs, ready) = if args.detached {
        (
            Some(crate::project::logs_dir(&manifest)),
            crate::project::ready_pipe(),
        )
    } else {
        (None, None)
    };
    let opts = Options {
        stop_timeout: args
            .wait
            .stop_timeout
            .unwrap_or(manifest.settings.stop_timeout),
        wait: args.wait.limit().or(manifest.settings.wait),
        announce: true,
        control: Some(manifest.dir.clone()),
        logs,
        ready,
        remote: crate::project::remote(Some(&manifest))?,
    };
    Ok(Supervisor::new(&specs, opts)?.run())
}

/// The supervisor's view of the chosen programs; `after` indices are
/// renumbered into the chosen list.
fn specs(manifest: &Manifest, chosen: &[usize]) -> Result<Vec<Spec>, Error> {
    // Programs usually share their databases: each is resolved (a few
    // system calls) once.
    let mut resolved: Vec<(&Path, Database, String)> = Vec::new();
    // Absolute: `dir` is canonical.
    let manifest_path = match manifest.path.file_name() {
        Some(name) => manifest.dir.join(name),
        None => manifest.path.clone(),
    };
    chosen
        .iter()
        .map(|&p| {
            let program = &manifest.programs[p];
            let locks = program
                .locks()
                .map(|(d, mode)| {
                    let (db, key) = match resolved.iter().find(|(path, ..)| *path == d.path) {
                        Some((_, db, key)) => (db.clone(), key.clone()),
                        None => {
                            let db = Database::resolve(&d.path, &manifest.dir)?;
                            let key = crate::project::backend_key(Some(manifest), &db);
                            resolved.push((&d.path, db.clone(), key.clone()));
                            (db, key)
                        }
                    };
                    Ok(Request {
                        db,
                        mode,
                        key: Some(key),
                    })
                })
                .collect::<Result<Vec<_>, dblaunch_lock::LockError>>()?;
            let mut env = program.env.clone();
            let (locks, locks_itself) = match program.hold {
                Hold::Running => (locks, None),
                // It takes its locks itself, with the manifest's names
                // wherever its working directory is: this manifest.
                Hold::OnDemand => {
                    env.push((FILE_ENV.to_owned(), manifest_path.display().to_string()));
                    (Vec::new(), Some(locks))
                }
            };
            Ok(Spec {
                name: program.name.clone(),
                argv: program.command.argv(),
                cwd: Some(program.cwd.clone()),
                env,
                locks,
                locks_itself,
                after: program
                    .after
                    .iter()
                    .filter_map(|a| chosen.iter().position(|c| c == a))
                    .collect(),
                stop_signal: program.stop_signal,
                restart: program.restart,
                max_restarts: program.max_restarts,
                yields: program.yields,
            })
        })
        .collect()
}
