//! Processes that use a database's own files without dblaunch ("foreign"):
//! the engines' POSIX record locks on the database file (or the files of a
//! directory database), asked of the kernel one file at a time.

use std::fs;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use crate::holder::Holder;
use crate::kernel;
use crate::mode::Mode;
use crate::procfs::{self, FileId};
use crate::request::Request;

/// Processes that lock the database's own files (the file, or the files
/// directly inside a directory database such as RocksDB's `LOCK`) without
/// dblaunch, in a mode that conflicts with `req`. The kernel is asked about
/// each file alone (F_OFD_GETLK): no pass over the machine's locks, and no
/// chance of missing one that `/proc/locks` skipped while others changed.
/// Only an OFD lock, which the kernel reports without a pid, is looked up
/// among the open descriptors to name its owner.
pub fn foreign_holders(req: &Request) -> Vec<Holder> {
    let mut holders = Vec::new();
    for path in lockable_files(req.db.path()) {
        // Read-only, non-blocking, never our controlling terminal. dblaunch
        // holds no record locks of its own, so closing this descriptor
        // (which drops the caller's POSIX locks on the file) loses nothing.
        let Ok(file) = fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY | libc::O_NOFOLLOW)
            .open(&path)
        else {
            continue;
        };
        let Ok(Some((pid, write))) =
            kernel::conflicting_record_lock(&file, req.mode == Mode::Write)
        else {
            continue;
        };
        match pid.filter(|&p| procfs::start_time(p).is_some()) {
            Some(pid) => holders.push(Holder::Foreign {
                pid: Some(pid),
                command: procfs::describe(pid),
                write,
            }),
            None => {
                let id = file.metadata().ok().map(|m| FileId::of(&m));
                let owners: Vec<Holder> = procfs::openers(&id.into_iter().collect::<Vec<_>>())
                    .into_iter()
                    .filter(|o| o.locked)
                    .map(|o| Holder::Foreign {
                        pid: Some(o.pid),
                        command: procfs::describe(o.pid),
                        write: o.write_lock,
                    })
                    .collect();
                if owners.is_empty() {
                    holders.push(Holder::Foreign {
                        pid: None,
                        command: String::new(),
                        write,
                    });
                }
                holders.extend(owners);
            }
        }
    }
    holders.sort_by_key(|h| match h {
        Holder::Foreign { pid, .. } => *pid,
        _ => None,
    });
    holders.dedup();
    holders
}

/// The regular files a database engine may lock: the database file, or the
/// files directly inside a directory database (RocksDB's `LOCK`).
fn lockable_files(path: &Path) -> Vec<PathBuf> {
    let Ok(meta) = fs::metadata(path) else {
        return Vec::new();
    };
    if meta.is_file() {
        return vec![path.to_path_buf()];
    }
    if !meta.is_dir() {
        return Vec::new();
    }
    fs::read_dir(path)
        .map(|entries| {
            entries
                .flatten()
                .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
                .map(|e| e.path())
                .collect()
        })
        .unwrap_or_default()
}

/// The files whose locks belong to the database itself: the file, or the
/// directory and the files directly in it (RocksDB's `LOCK`).
pub fn database_files(path: &Path) -> Vec<FileId> {
    let Ok(meta) = fs::metadata(path) else {
        return Vec::new();
    };
    let mut ids = vec![FileId::of(&meta)];
    if meta.is_dir() {
        if let Ok(entries) = fs::read_dir(path) {
            ids.extend(
                entries
                    .flatten()
                    .filter_map(|e| e.metadata().ok())
                    .filter(|m| m.is_file())
                    .map(|m| FileId::of(&m)),
            );
        }
    }
    ids
}
