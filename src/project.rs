//! The project around a manifest: which of its programs a command line
//! names, its `.dblaunch/` directory (detached runs' logs, the pipe a
//! detached run reports on), and which of its programs run under any
//! dblaunch. Shared by the subcommands, so none of them depends on another.

use std::fs::File;
use std::os::fd::FromRawFd;
use std::path::{Path, PathBuf};

use crate::control::{self, Action, ProgramState};
use crate::error::Error;
use crate::manifest::{self, Manifest};
use crate::process::READY_FD_ENV;
use dblaunch_lock::backend;
use dblaunch_lock::{Database, LockError, Remote};

/// The manifest's programs that `targets` stand for, or a usage error that
/// names each unknown target with the closest known name.
pub fn targets(manifest: &Manifest, targets: &[String]) -> Result<Vec<usize>, Error> {
    targets_with(manifest, targets, true)
}

/// As [`targets`]; `with_after` pulls in what they run after.
pub fn targets_with(
    manifest: &Manifest,
    targets: &[String],
    with_after: bool,
) -> Result<Vec<usize>, Error> {
    manifest
        .expand_with(targets, with_after)
        .map_err(|unknown| {
            let list: Vec<String> = unknown
                .iter()
                .map(|(name, close)| match close {
                    Some(c) => format!("`{name}` (did you mean `{c}`?)"),
                    None => format!("`{name}`"),
                })
                .collect();
            let known: Vec<&str> = manifest
                .programs
                .iter()
                .map(|p| p.name.as_str())
                .chain(manifest.groups.iter().map(|(g, _)| g.as_str()))
                .collect();
            Error::Usage(format!(
                "{} {} neither a program nor a group of {}; it has: {}",
                list.join(", "),
                if unknown.len() == 1 { "is" } else { "are" },
                manifest.path.display(),
                if known.is_empty() {
                    "nothing".to_owned()
                } else {
                    known.join(", ")
                }
            ))
        })
}

pub fn logs_dir(manifest: &Manifest) -> PathBuf {
    manifest.dir.join(control::DIR).join("logs")
}

/// In the detached run: the pipe to `start`, from the descriptor it passed.
pub fn ready_pipe() -> Option<File> {
    let fd: i32 = std::env::var(READY_FD_ENV).ok()?.parse().ok()?;
    // SAFETY: fcntl(F_GETFD) only asks whether `fd` is open.
    if unsafe { libc::fcntl(fd, libc::F_GETFD) } < 0 {
        return None;
    }
    // Only a pipe; anything else is left alone.
    // SAFETY: `fd` is open (checked above) and stays open for this fstat.
    let meta = nix::sys::stat::fstat(unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) }).ok()?;
    if meta.st_mode & libc::S_IFMT != libc::S_IFIFO {
        return None;
    }
    // SAFETY: `start` opened this descriptor for us and nothing else in this
    // process owns it; it is a pipe (checked above).
    let file = unsafe { File::from_raw_fd(fd) };
    // Not for the programs: they must not keep `start` waiting.
    let _ = nix::fcntl::fcntl(
        &file,
        nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC),
    );
    Some(file)
}

/// Every program of the manifest that runs under some dblaunch, with the
/// pid of that dblaunch.
pub fn running(manifest: &Manifest) -> Vec<(ProgramState, i32)> {
    let mut found = Vec::new();
    for run in control::runs(&manifest.dir, |_, _| {}) {
        let _ = control::ask(&run, Action::Ps, &[], |line| {
            if let Ok(st) = serde_json::from_str::<ProgramState>(line) {
                found.push((st, run.pid));
            }
        });
    }
    found
}

/// The backend key of a database: the `key` the manifest gives it, else
/// its canonical path (right when every host mounts the share at the same
/// place). Only used when a backend is configured.
pub fn backend_key(manifest: Option<&Manifest>, db: &Database) -> String {
    if let Some(m) = manifest {
        for (path, key) in &m.keys {
            if Database::resolve(path, &m.dir).is_ok_and(|d| d == *db) {
                return key.clone();
            }
        }
    }
    db.path().to_string_lossy().into_owned()
}

/// The lock backend the environment (`DBLAUNCH_BACKEND`) or the manifest
/// (`[backend]`) names, opened; `None` to lock on this host only.
pub fn remote(manifest: Option<&Manifest>) -> Result<Option<Remote>, Error> {
    let config = backend::Config::resolve(manifest.and_then(|m| m.backend.as_ref()))
        .map_err(Error::Usage)?;
    let Some(config) = config else {
        return Ok(None);
    };
    Ok(Some(Remote::connect(&config).map_err(LockError::from)?))
}

/// The current directory, which relative paths and the manifest search
/// start from.
pub fn current_dir() -> Result<PathBuf, Error> {
    std::env::current_dir().map_err(|source| Error::Io {
        action: "read the current directory".to_owned(),
        source,
    })
}

/// Finds and loads the manifest, for every subcommand that needs one:
/// `file` (`-f`, `$DBLAUNCH_FILE`) if given, else the nearest
/// `dblaunch.toml` from the current directory up.
pub fn load_manifest(file: Option<&Path>) -> Result<Manifest, Error> {
    let path = manifest::locate(file, &current_dir()?)?;
    Ok(manifest::load(&path)?)
}

/// For `exec`: the project's manifest when it matters to locking, that is
/// when a backend may be in use (it gives the backend and the keys).
/// Cheap when it does not: a manifest whose text never says `backend` is
/// not parsed, so `exec` in a local-only project costs no manifest parse
/// (a start-up tweak: docs/design.md, "Start-up cost").
pub fn manifest_with_backend(file: Option<&Path>, cwd: &Path) -> Result<Option<Manifest>, Error> {
    let Ok(path) = manifest::locate(file, cwd) else {
        return Ok(None);
    };
    let from_env = std::env::var_os(backend::BACKEND_ENV).is_some_and(|v| !v.is_empty());
    if !from_env {
        let Ok(text) = std::fs::read_to_string(&path) else {
            return Ok(None);
        };
        if !text.contains("backend") {
            return Ok(None);
        }
    }
    Ok(Some(manifest::load(&path)?))
}
