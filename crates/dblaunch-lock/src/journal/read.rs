//! Reading a database's journal back: both generations, oldest first, every
//! line that is an event; the others are counted and warned about.

use std::fs;
use std::io::{self, BufRead, BufReader};
use std::path::Path;

use super::line::Line;
use super::writer::files;

/// The events of one journal, and what could not be read.
#[derive(Debug, Default)]
pub struct Contents {
    /// The events, oldest first.
    pub lines: Vec<Line>,
    /// Lines that were not events (torn, edited, another format).
    pub skipped: usize,
}

/// Reads the journal in `lock_dir`. A missing journal is an empty one; a
/// line that is not an event is skipped with a warning naming the file and
/// line.
pub fn read(lock_dir: &Path) -> io::Result<Contents> {
    let mut out = Contents::default();
    for path in files(lock_dir) {
        let file = match fs::File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        for (n, line) in BufReader::new(file).split(b'\n').enumerate() {
            out.push(&line?, &path.display().to_string(), n);
        }
    }
    // Writers append in the order things happen, but a rotation can leave a
    // slow writer's last lines in the older file: order by time.
    out.lines.sort_by(|a, b| a.at.cmp(&b.at));
    Ok(out)
}

impl Contents {
    /// Adds line `n` (from 0) of `source` if it is an event; counts it and
    /// warns if it is not.
    pub fn push(&mut self, line: &[u8], source: &str, n: usize) {
        if line.iter().all(u8::is_ascii_whitespace) {
            return;
        }
        let why = match serde_json::from_slice::<Line>(line) {
            Ok(l) if l.time().is_some() => {
                self.lines.push(l);
                return;
            }
            Ok(_) => "its time `at` is not an RFC 3339 time".to_owned(),
            Err(e) => e.to_string(),
        };
        self.skipped += 1;
        tracing::warn!(
            "{source} line {}: not a journal event ({why}); skipped",
            n + 1
        );
    }
}
