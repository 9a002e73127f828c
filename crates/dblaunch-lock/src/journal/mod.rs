//! The lock journal: what happens to each database's lock, as JSON lines
//! in a file of its lock directory, appended by every dblaunch (and every
//! program that locks for itself) that uses it; `dblaunch history` and
//! `metrics` read it back.
//!
//! - Lines are held in memory until [`Journal::flush`], then written with
//!   one `write(2)` per journal on a descriptor opened with `O_APPEND`: the
//!   kernel appends them whole, so lines of many writers never interleave or
//!   tear (on a local filesystem; NFS does not make O_APPEND atomic). The
//!   supervisor flushes before it next sleeps, so the start of the next
//!   program never waits for the history of the last one.
//! - Size-bounded: past 8 MiB (or `DBLAUNCH_JOURNAL_MAX_BYTES`) the file
//!   is renamed to `journal.1` (replacing the previous one) under an
//!   exclusive flock of the file being rotated, by whoever first notices, who makes the new file at
//!   once; writers that still hold the old file finish their lines there.
//! - Group-writable when the lock directory is, whatever the umask.
//! - Never in the way: a journal that cannot be opened or written is warned
//!   about once per process, and the program runs all the same.
//!
//! Reading (`history`, `metrics`) skips, with a warning, any line that is
//! not an event (a torn last line after a full disk, a stray edit).

mod line;
mod read;
mod writer;

pub use line::{Kind, Line, Outcome, Party, seconds};
pub use read::{Contents, read};
pub use writer::{FILE, Journal, ROTATED, enabled, files, record};
