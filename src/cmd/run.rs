//! `dblaunch run TARGET...`: run programs and groups of the manifest in the
//! foreground. A program starts once its `after` programs have exited 0 and
//! all of its databases are locked; programs that do not conflict run side
//! by side, conflicting ones queue through the same cross-process lock as
//! every other dblaunch on the machine.

use std::path::Path;

use crate::cli::RunArgs;
use crate::error::Error;
use crate::manifest::{Hold, Manifest};
use crate::supervisor::{Dev, Options, Spec, Supervisor};
use dblaunch_lock::names::FILE_ENV;
use dblaunch_lock::{Database, Request};

pub fn execute(file: Option<&Path>, args: RunArgs) -> Result<u8, Error> {
    let manifest = crate::project::load_manifest(file)?;
    let chosen = crate::project::targets(&manifest, &args.targets)?;
    let mut specs = specs(&manifest, &chosen, !args.no_watch)?;
    for i in needed_only(&manifest, &args.targets, &chosen) {
        specs[i].dev.needed_only = true;
    }
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
            let after: Vec<&str> = specs
                .iter()
                .filter(|s| s.after.contains(&i))
                .map(|s| s.name.as_str())
                .collect();
            let needs: Vec<&str> = specs
                .iter()
                .filter(|s| s.dev.needs.contains(&i))
                .map(|s| s.name.as_str())
                .collect();
            let plural = |v: &[&str], one: &'static str, many: &'static str| {
                if v.len() == 1 { one } else { many }
            };
            let mut why = Vec::new();
            if !after.is_empty() {
                why.push(format!(
                    "{} {} after it",
                    after.join(", "),
                    plural(&after, "runs", "run")
                ));
            }
            if !needs.is_empty() {
                why.push(format!(
                    "{} {} it",
                    needs.join(", "),
                    plural(&needs, "needs", "need")
                ));
            }
            tracing::info!("also running {}: {}", specs[i].name, why.join("; "));
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
        systemd: true,
    };
    Ok(Supervisor::new(&specs, opts)?.run())
}

/// The programs (indices into `chosen`) that run only because a program
/// needs them: neither named in `targets` (or their groups) nor run
/// `after` by one that is. They are stopped once the others have ended.
fn needed_only(manifest: &Manifest, targets: &[String], chosen: &[usize]) -> Vec<usize> {
    let Ok(named) = manifest.expand_with(targets, false) else {
        return Vec::new();
    };
    let mut wanted = vec![false; manifest.programs.len()];
    let mut stack = named;
    while let Some(p) = stack.pop() {
        if !std::mem::replace(&mut wanted[p], true) {
            stack.extend(manifest.programs[p].after.iter().copied());
        }
    }
    (0..chosen.len()).filter(|&i| !wanted[chosen[i]]).collect()
}

/// The supervisor's view of the chosen programs; `after` and `needs`
/// indices are renumbered into the chosen list. `watch`: whether watched
/// paths restart their programs (not with `run --no-watch`).
fn specs(manifest: &Manifest, chosen: &[usize], watch: bool) -> Result<Vec<Spec>, Error> {
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
                dev: Dev {
                    needs: program
                        .needs
                        .iter()
                        .filter_map(|a| chosen.iter().position(|c| c == a))
                        .collect(),
                    ready: program.ready.clone(),
                    watch: program.watch.clone().filter(|_| watch),
                    needed_only: false,
                },
            })
        })
        .collect()
}
