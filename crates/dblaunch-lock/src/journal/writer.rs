//! Appending to a database's journal: one descriptor per lock directory,
//! lines written whole with `O_APPEND`, rotation past a size.

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Seek, SeekFrom, Write};
use std::os::fd::AsFd;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::line::Line;
use crate::backend::Backend;
use crate::remote::Remote;
use crate::request::Request;

/// The journal's file name in a lock directory.
pub const FILE: &str = "journal";
/// The previous generation, after a rotation.
pub const ROTATED: &str = "journal.1";
/// The size past which a journal is rotated: about 20,000 launches of
/// history per generation, two generations kept.
const DEFAULT_MAX_BYTES: u64 = 8 * 1024 * 1024;

/// `DBLAUNCH_JOURNAL=off` turns the journal off for this process (to
/// measure what it costs, or where no history is wanted).
pub fn enabled() -> bool {
    static ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ON.get_or_init(|| std::env::var_os("DBLAUNCH_JOURNAL").is_none_or(|v| v != "off"))
}

/// `DBLAUNCH_JOURNAL_MAX_BYTES` overrides the rotation size (tests, and
/// hosts that want more or less history).
fn max_bytes() -> u64 {
    static MAX: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *MAX.get_or_init(|| {
        std::env::var("DBLAUNCH_JOURNAL_MAX_BYTES")
            .ok()
            .and_then(|v| v.parse().ok())
            .filter(|&n| n > 0)
            .unwrap_or(DEFAULT_MAX_BYTES)
    })
}

/// The journal files of a lock directory, oldest first.
pub fn files(lock_dir: &Path) -> [PathBuf; 2] {
    [lock_dir.join(ROTATED), lock_dir.join(FILE)]
}

/// One process's appender: a descriptor per lock directory, opened on first
/// use and kept for the process's life.
#[derive(Default)]
pub struct Journal {
    open: HashMap<PathBuf, Option<File>>,
    /// Lines not yet written, each with its journal's lock directory, in
    /// the order they came.
    pending: Vec<(PathBuf, String)>,
    /// The lock backend, which keeps the lines of keyed databases too, so
    /// that history covers every host.
    backend: Option<Arc<dyn Backend>>,
}

/// Warned once per process that a journal cannot be written.
static WARNED: AtomicBool = AtomicBool::new(false);

impl Journal {
    /// `line` goes to the journal in `lock_dir` (at the next
    /// [`Journal::flush`]), and to the lock backend's at once when its
    /// database has a `key` there.
    pub fn append(&mut self, lock_dir: &Path, key: Option<&str>, line: &Line) {
        if !enabled() {
            return;
        }
        let Ok(text) = serde_json::to_string(line) else {
            return;
        };
        if let (Some(key), Some(backend)) = (key, &self.backend) {
            backend.record(key, &text);
        }
        self.pending.push((lock_dir.to_path_buf(), text));
    }

    /// Sends the lines of keyed databases to `backend` from now on.
    pub fn set_backend(&mut self, backend: Option<Arc<dyn Backend>>) {
        self.backend = backend;
    }

    /// Before the process exits: writes the lines here, and waits at most
    /// `within` for the backend to store those sent to it.
    pub fn finish(&mut self, within: Duration) {
        self.flush();
        if let Some(backend) = &self.backend {
            backend.flush(within);
        }
    }

    /// Writes the queued lines: those of one journal together, in the order
    /// they came. Failures are warned about once and otherwise ignored:
    /// history is never worth a program not running.
    pub fn flush(&mut self) {
        let mut pending = std::mem::take(&mut self.pending);
        while !pending.is_empty() {
            let dir = pending[0].0.clone();
            let mut text = String::new();
            pending.retain(|(d, line)| {
                if *d != dir {
                    return true;
                }
                text.push_str(line);
                text.push('\n');
                false
            });
            self.write(&dir, &text);
        }
    }

    fn write(&mut self, lock_dir: &Path, text: &str) {
        let slot =
            self.open
                .entry(lock_dir.to_path_buf())
                .or_insert_with(|| match open(lock_dir) {
                    Ok(f) => Some(f),
                    Err(e) => {
                        warn_once(lock_dir, &e);
                        None
                    }
                });
        let Some(file) = slot else {
            return;
        };
        // One write: O_APPEND places it whole at the end.
        match file.write(text.as_bytes()) {
            Ok(n) if n == text.len() => {}
            Ok(_) => warn_once(
                lock_dir,
                &io::Error::new(
                    io::ErrorKind::WriteZero,
                    "a short write (is the disk full?)",
                ),
            ),
            Err(e) => {
                warn_once(lock_dir, &e);
                *slot = None;
                return;
            }
        }
        // With O_APPEND the offset after a write is the end of the file.
        let full = file.stream_position().is_ok_and(|size| size > max_bytes());
        if full {
            rotate(lock_dir, file);
            // Later lines go to a new file, made now: readers (`history`,
            // `tail -F`) never find the journal missing between a rotation
            // and the next line.
            *slot = open(lock_dir).map_err(|e| warn_once(lock_dir, &e)).ok();
        }
    }
}

/// Writes `line` at once to the journal of `req`'s database, and to the
/// lock backend's when the database has a key there (so that history covers
/// every host): the journal of a program's own locks. (The launcher queues
/// its lines with [`Journal::append`] and writes them before it sleeps.)
pub fn record(req: &Request, remote: Option<&Remote>, line: &Line) {
    static OWN: Mutex<Option<Journal>> = Mutex::new(None);
    if !enabled() {
        return;
    }
    crate::fork::protect(&OWN);
    let mut own = OWN.lock().unwrap_or_else(|p| p.into_inner());
    let journal = own.get_or_insert_with(Journal::default);
    journal.set_backend(remote.map(|r| Arc::clone(&r.backend)));
    journal.append(&req.db.lock_dir(), req.key.as_deref(), line);
    journal.flush();
}

fn warn_once(lock_dir: &Path, e: &io::Error) {
    if !WARNED.swap(true, Ordering::Relaxed) {
        tracing::warn!(
            "cannot write the lock journal {}: {e}; programs run as usual, but `dblaunch history` and `metrics` will miss what this dblaunch does (make the directory writable for this user to keep history)",
            lock_dir.join(FILE).display()
        );
    }
}

fn open(lock_dir: &Path) -> io::Result<File> {
    let group = fs::metadata(lock_dir).is_ok_and(|m| m.mode() & 0o020 != 0);
    let file = OpenOptions::new()
        .append(true)
        .create(true)
        .mode(if group { 0o664 } else { 0o644 })
        .custom_flags(libc::O_CLOEXEC)
        .open(lock_dir.join(FILE))?;
    if group {
        // The umask may have taken the group's write bit: give it back (only
        // the file's owner can, and only it needs to).
        let stripped = file
            .metadata()
            .is_ok_and(|m| m.mode() & 0o020 == 0 && m.uid() == nix::unistd::geteuid().as_raw());
        if stripped {
            let _ = file.set_permissions(fs::Permissions::from_mode(0o664));
        }
    }
    Ok(file)
}

/// Renames the full journal to `journal.1`, unless someone already has.
/// The exclusive flock on the file and the check that the name still
/// leads to it make two writers that both noticed rotate once.
fn rotate(lock_dir: &Path, file: &mut File) {
    use nix::fcntl::{Flock, FlockArg};
    let Ok(dup) = file.as_fd().try_clone_to_owned() else {
        return;
    };
    let Ok(locked) = Flock::lock(File::from(dup), FlockArg::LockExclusive) else {
        return;
    };
    let path = lock_dir.join(FILE);
    let same = match (fs::metadata(&path), locked.metadata()) {
        (Ok(p), Ok(f)) => p.ino() == f.ino() && p.dev() == f.dev(),
        _ => false,
    };
    if same {
        if let Err(e) = fs::rename(&path, lock_dir.join(ROTATED)) {
            warn_once(lock_dir, &e);
        }
    }
    let _ = file.seek(SeekFrom::End(0));
}
