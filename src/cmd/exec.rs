//! `dblaunch exec`: one ad-hoc command under database locks (the flock(1) of
//! this tool, with a fair queue, messages that name the holder, and locks
//! that can never go stale). A run of one program, with no manifest.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::cli::ExecArgs;
use crate::error::Error;
use crate::lock::{Database, LockError, Mode, Request};
use crate::supervisor::{Options, Spec, Supervisor};

/// Default grace period between the stop signal and SIGKILL (SPEC.md §2).
pub const DEFAULT_STOP_TIMEOUT: Duration = Duration::from_secs(10);

pub fn execute(args: ExecArgs) -> Result<u8, Error> {
    if args.reads.is_empty() && args.writes.is_empty() {
        return Err(Error::Usage(
            "`dblaunch exec` needs at least one --read PATH or --write PATH naming the database \
             the command uses; without one there is nothing to lock (to run a command alone, \
             run it directly)"
                .to_owned(),
        ));
    }
    let cwd = std::env::current_dir().map_err(|source| Error::Io {
        action: "read the current directory".to_owned(),
        source,
    })?;
    let locks = requests(&args.reads, &args.writes, &cwd)?;
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
        after: Vec::new(),
        stop_signal: libc::SIGTERM,
        restart: crate::manifest::Restart::No,
        max_restarts: 0,
        yields: false,
    };
    let opts = Options {
        stop_timeout: args.wait.stop_timeout.unwrap_or(DEFAULT_STOP_TIMEOUT),
        wait: args.wait.limit(),
        announce: false,
        control: None,
        logs: None,
        ready: None,
    };
    let specs = [spec];
    Ok(Supervisor::new(&specs, opts)?.run())
}

fn requests(reads: &[PathBuf], writes: &[PathBuf], cwd: &Path) -> Result<Vec<Request>, LockError> {
    let reads = reads.iter().map(|p| (p, Mode::Read));
    let writes = writes.iter().map(|p| (p, Mode::Write));
    reads
        .chain(writes)
        .map(|(p, mode)| {
            Ok(Request {
                db: Database::resolve(p, cwd)?,
                mode,
            })
        })
        .collect()
}

fn basename(command: &str) -> String {
    Path::new(command)
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| command.to_owned())
}
