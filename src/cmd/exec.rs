//! `dblaunch exec`: one ad-hoc command under database locks (the flock(1) of
//! this tool, with a fair queue, messages that name the holder, and locks
//! that can never go stale). A run of one program, with no manifest.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::cli::ExecArgs;
use crate::error::Error;
use crate::manifest::{Manifest, ManifestError, closest, is_path};
use crate::supervisor::{Options, Spec, Supervisor};
use dblaunch_lock::{Database, LockError, Mode, Request};

/// Default grace period between the stop signal and SIGKILL, unless
/// `--stop-timeout` gives one.
pub const DEFAULT_STOP_TIMEOUT: Duration = Duration::from_secs(10);

pub fn execute(file: Option<&Path>, args: ExecArgs) -> Result<u8, Error> {
    if args.reads.is_empty() && args.writes.is_empty() {
        return Err(Error::Usage(
            "`dblaunch exec` needs at least one --read PATH or --write PATH naming the database \
             the command uses; without one there is nothing to lock (to run a command alone, \
             run it directly)"
                .to_owned(),
        ));
    }
    let cwd = crate::project::current_dir()?;
    let (locks, remote) = requests(file, &args.reads, &args.writes, &cwd)?;
    if let Some(w) = locks.iter().find(|w| {
        w.mode == Mode::Write && locks.iter().any(|r| r.mode == Mode::Read && r.db == w.db)
    }) {
        return Err(LockError::ReadAndWrite {
            database: w.db.path().to_path_buf(),
        }
        .into());
    }
    let spec = Spec {
        name: args
            .name
            .clone()
            .unwrap_or_else(|| basename(&args.command[0])),
        argv: args.command.clone(),
        cwd: None,
        env: Vec::new(),
        locks,
        locks_itself: None,
        after: Vec::new(),
        stop_signal: libc::SIGTERM,
        restart: crate::manifest::Restart::No,
        max_restarts: 0,
        yields: false,
        dev: Default::default(),
    };
    let opts = Options {
        stop_timeout: args.wait.stop_timeout.unwrap_or(DEFAULT_STOP_TIMEOUT),
        wait: args.wait.limit(),
        announce: false,
        control: None,
        logs: None,
        ready: None,
        remote,
        systemd: false,
    };
    let specs = [spec];
    Ok(Supervisor::new(&specs, opts)?.run())
}

/// Resolves each `--read`/`--write`: a path (it has a `/` or a `.`) relative
/// to the current directory, or a name from the manifest's `[databases]`, as
/// in the manifest itself. The manifest is read only when a name needs it,
/// or when it configures a lock backend, so a plain `exec` with paths in a
/// project without one costs no manifest parse. With a backend, every
/// database gets its key (the manifest's, or its canonical path), so an
/// ad-hoc command on one host cannot slip past the programs of another.
fn requests(
    file: Option<&Path>,
    reads: &[PathBuf],
    writes: &[PathBuf],
    cwd: &Path,
) -> Result<(Vec<Request>, Option<dblaunch_lock::Remote>), Error> {
    let reads = reads.iter().map(|p| (p, Mode::Read));
    let writes = writes.iter().map(|p| (p, Mode::Write));
    let mut manifest: Option<Manifest> = crate::project::manifest_with_backend(file, cwd)?;
    let mut out = Vec::new();
    for (given, mode) in reads.chain(writes) {
        let text = given.to_string_lossy();
        let db = if is_path(&text) {
            Database::resolve(given, cwd)?
        } else {
            if manifest.is_none() {
                manifest = Some(manifest_for_name(file, &text)?);
            }
            let m = manifest.as_ref().expect("just loaded");
            let Some((_, path)) = m.databases.iter().find(|(n, _)| *n == text) else {
                return Err(unknown_name(m, &text));
            };
            Database::resolve(path, &m.dir)?
        };
        out.push(Request::local(db, mode));
    }
    let remote = crate::project::remote(manifest.as_ref())?;
    if remote.is_some() {
        for r in &mut out {
            r.key = Some(crate::project::backend_key(manifest.as_ref(), &r.db));
        }
    }
    Ok((out, remote))
}

/// The manifest that a database name refers to. Without one, a bare word
/// is an error: locking a stray file named after it would protect nothing.
fn manifest_for_name(file: Option<&Path>, name: &str) -> Result<Manifest, Error> {
    crate::project::load_manifest(file).map_err(|e| match e {
        Error::Manifest(ManifestError::NotFound { what }) => Error::Usage(format!(
            "`{name}` is not a path (it has no `/` or `.`), so it must name a database of the \
             manifest's [databases], but {what}. To lock a file of that name, write `./{name}`"
        )),
        other => other,
    })
}

fn unknown_name(m: &Manifest, name: &str) -> Error {
    let names = || m.databases.iter().map(|(n, _)| n.as_str());
    let hint = match closest(name, names()) {
        Some(c) => format!("did you mean `{c}`?"),
        None if m.databases.is_empty() => "it names no databases".to_owned(),
        None => format!(
            "its databases are: {}",
            names().collect::<Vec<_>>().join(", ")
        ),
    };
    Error::Usage(format!(
        "`{name}` is not a database of {} ({hint}); a bare word names an entry of \
         [databases], so a typo cannot lock a stray file. To lock a file of that name, \
         write `./{name}`",
        m.path.display()
    ))
}

fn basename(command: &str) -> String {
    Path::new(command)
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| command.to_owned())
}
