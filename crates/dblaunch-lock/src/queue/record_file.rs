//! The files of a queue as others see them: opening a ticket (never
//! through a symbolic link), reading the record in it, and telling whether
//! a name still leads to a file we have open.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::Path;

use crate::procfs::FileId;
use crate::record::Record;

/// A record is a few hundred bytes; anything much larger is not ours.
pub(super) const MAX_RECORD: u64 = 64 * 1024;

/// Whether `path` still names the file open as `file`.
pub(super) fn same_file(file: &File, path: &Path) -> bool {
    match (file.metadata(), fs::symlink_metadata(path)) {
        (Ok(a), Ok(b)) => FileId::of(&a) == FileId::of(&b),
        _ => false,
    }
}

/// O_NOFOLLOW met a symbolic link where a ticket should be: dblaunch never
/// makes one, so someone planted it.
pub(super) fn is_planted_link(e: &io::Error) -> bool {
    e.raw_os_error() == Some(libc::ELOOP)
}

/// Opens a ticket (or the gate) for reading, never through a symbolic link.
pub(super) fn open_ticket(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
}

/// The record in a ticket, or why it cannot be believed to be one.
pub(super) fn read_record(file: &File) -> Result<Record, String> {
    // A record is rewritten in place when its owner starts holding; retry a
    // torn read a few times before calling it corrupt.
    let mut last = String::new();
    for attempt in 0..3 {
        if attempt > 0 {
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
        // A record is a few hundred bytes: start small and grow up to the
        // limit (a zeroed 64 KiB buffer per read was a fifth of the
        // instructions of a `run` of 30 queued programs).
        let mut buf = vec![0u8; 1024];
        let mut len = 0;
        loop {
            if len == buf.len() {
                if len as u64 >= MAX_RECORD {
                    return Err("it is larger than any dblaunch record".to_owned());
                }
                buf.resize((len * 2).min(MAX_RECORD as usize), 0);
            }
            match file.read_at(&mut buf[len..], len as u64) {
                Ok(0) => break,
                Ok(n) => len += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(format!("cannot read it: {e}")),
            }
        }
        if len == 0 {
            last = "it is empty".to_owned();
            continue;
        }
        match serde_json::from_slice::<Record>(&buf[..len]) {
            Ok(r) => return Ok(r),
            Err(e) => last = format!("it is not a dblaunch record: {e}"),
        }
    }
    Err(last)
}
