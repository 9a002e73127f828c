//! Output of several programs at once: each line prefixed with the program's
//! name (`ingest | …`), names padded to one width, a stable colour per
//! program on a terminal (none when not a terminal or with `NO_COLOR`).
//! Whole lines only: a line is written with one call under one lock shared by
//! stdout and stderr, so lines never interleave mid-line, and a pipe is read
//! to its end, so nothing a program printed before exiting is lost.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, BufReader, Read, Write};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, mpsc};
use std::thread::JoinHandle;
use std::time::Instant;

/// A line longer than this is passed on in pieces rather than held in memory.
const MAX_LINE: usize = 1 << 20;

const COLOURS: [anstyle::AnsiColor; 6] = [
    anstyle::AnsiColor::Cyan,
    anstyle::AnsiColor::Yellow,
    anstyle::AnsiColor::Green,
    anstyle::AnsiColor::Magenta,
    anstyle::AnsiColor::Blue,
    anstyle::AnsiColor::Red,
];

pub struct Output {
    width: usize,
    colour_out: bool,
    colour_err: bool,
    sink: Mutex<Sink>,
}

/// Where lines go.
enum Sink {
    /// dblaunch's stdout and stderr, prefixed.
    Terminal,
    /// A detached run: `DIR/NAME.log` per program, both streams, unprefixed
    /// (`dblaunch logs` adds the prefix), rotated at [`LOG_CAP`].
    Files {
        dir: PathBuf,
        open: HashMap<String, (File, u64)>,
    },
}

/// A log file larger than this is renamed to `NAME.log.1` (replacing the
/// previous one) and started afresh.
pub const LOG_CAP: u64 = 5 * 1024 * 1024;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

impl Output {
    pub fn new<'a>(names: impl Iterator<Item = &'a str>) -> Arc<Output> {
        // anstream's choice: a terminal, unless NO_COLOR (or TERM=dumb);
        // CLICOLOR_FORCE forces colour.
        let colour = |choice| choice != anstream::ColorChoice::Never;
        Arc::new(Output {
            width: names.map(|n| n.chars().count()).max().unwrap_or(0),
            colour_out: colour(anstream::AutoStream::choice(&io::stdout())),
            colour_err: colour(anstream::AutoStream::choice(&io::stderr())),
            sink: Mutex::new(Sink::Terminal),
        })
    }

    /// Output of a detached run: one log file per program in `dir`.
    pub fn to_files(dir: PathBuf) -> io::Result<Arc<Output>> {
        std::fs::create_dir_all(&dir)?;
        Ok(Arc::new(Output {
            width: 0,
            colour_out: false,
            colour_err: false,
            sink: Mutex::new(Sink::Files {
                dir,
                open: HashMap::new(),
            }),
        }))
    }

    fn prefix(&self, name: &str, index: usize, stream: Stream) -> Vec<u8> {
        if matches!(
            *self.sink.lock().unwrap_or_else(|p| p.into_inner()),
            Sink::Files { .. }
        ) {
            return Vec::new();
        }
        let colour = match stream {
            Stream::Stdout => self.colour_out,
            Stream::Stderr => self.colour_err,
        };
        let padded = format!("{name:<width$}", width = self.width);
        if colour {
            let style = COLOURS[index % COLOURS.len()].on_default();
            format!("{}{padded} |{} ", style.render(), style.render_reset()).into_bytes()
        } else {
            format!("{padded} | ").into_bytes()
        }
    }

    fn write_line(&self, name: &str, stream: Stream, line: &[u8]) {
        let mut sink = self.sink.lock().unwrap_or_else(|p| p.into_inner());
        if let Sink::Files { dir, open } = &mut *sink {
            let path = dir.join(format!("{name}.log"));
            if !open.contains_key(name) {
                let Ok(f) = OpenOptions::new().create(true).append(true).open(&path) else {
                    return;
                };
                let size = f.metadata().map(|m| m.len()).unwrap_or(0);
                open.insert(name.to_owned(), (f, size));
            }
            let Some((f, size)) = open.get_mut(name) else {
                return;
            };
            if *size + line.len() as u64 > LOG_CAP && *size > 0 {
                let _ = std::fs::rename(&path, dir.join(format!("{name}.log.1")));
                if let Ok(fresh) = OpenOptions::new().create(true).append(true).open(&path) {
                    *f = fresh;
                    *size = 0;
                }
            }
            if f.write_all(line).is_ok() {
                *size += line.len() as u64;
            }
            return;
        }
        // A closed stdout (`dblaunch run x | head`) must not stop the run.
        let _ = match stream {
            Stream::Stdout => {
                let mut out = io::stdout().lock();
                out.write_all(line).and_then(|_| out.flush())
            }
            Stream::Stderr => {
                let mut err = io::stderr().lock();
                err.write_all(line).and_then(|_| err.flush())
            }
        };
    }

    /// Copies `from` line by line, prefixed, until its end, in a thread.
    pub fn pump(
        self: &Arc<Self>,
        name: &str,
        index: usize,
        stream: Stream,
        from: impl Read + Send + 'static,
    ) -> io::Result<Pump> {
        let me = Arc::clone(self);
        let prefix = self.prefix(name, index, stream);
        let owned_name = name.to_owned();
        let (alive, done) = mpsc::channel::<()>();
        let handle = std::thread::Builder::new()
            .name(format!("dblaunch-out-{name}"))
            .spawn(move || {
                // Dropped when the thread ends: that is the "done" signal.
                let _alive = alive;
                let mut reader = BufReader::with_capacity(64 * 1024, from);
                let mut line = Vec::with_capacity(256);
                loop {
                    line.clear();
                    line.extend_from_slice(&prefix);
                    let start = line.len();
                    match read_line(&mut reader, &mut line) {
                        Ok(0) => break,
                        Ok(_) => {}
                        Err(_) => break,
                    }
                    if line.len() > start {
                        if line.last() != Some(&b'\n') {
                            line.push(b'\n');
                        }
                        me.write_line(&owned_name, stream, &line);
                    }
                }
            })?;
        Ok(Pump { done, handle })
    }
}

/// A running copy of one pipe.
pub struct Pump {
    done: mpsc::Receiver<()>,
    handle: JoinHandle<()>,
}

impl Pump {
    /// Waits (without polling) until the pipe is drained or `until`; true
    /// if it was drained.
    pub fn finish(self, until: Instant) -> bool {
        let left = until.saturating_duration_since(Instant::now());
        match self.done.recv_timeout(left) {
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                let _ = self.handle.join();
                true
            }
            _ => false,
        }
    }
}

/// Reads up to and including the next newline, or at most [`MAX_LINE`] bytes.
fn read_line(reader: &mut impl BufRead, line: &mut Vec<u8>) -> io::Result<usize> {
    let mut total = 0;
    loop {
        let (done, used) = {
            let buf = match reader.fill_buf() {
                Ok(b) => b,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            if buf.is_empty() {
                return Ok(total);
            }
            let room = MAX_LINE - total;
            match memchr(b'\n', &buf[..buf.len().min(room)]) {
                Some(i) => {
                    line.extend_from_slice(&buf[..=i]);
                    (true, i + 1)
                }
                None => {
                    let n = buf.len().min(room);
                    line.extend_from_slice(&buf[..n]);
                    (total + n >= MAX_LINE, n)
                }
            }
        };
        reader.consume(used);
        total += used;
        if done {
            return Ok(total);
        }
    }
}

fn memchr(needle: u8, haystack: &[u8]) -> Option<usize> {
    haystack.iter().position(|&b| b == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_split_at_newlines_and_capped() {
        let data = b"one\ntwo\nthree".to_vec();
        let mut r = BufReader::with_capacity(4, &data[..]);
        let mut out = Vec::new();
        let mut lines = Vec::new();
        loop {
            out.clear();
            if read_line(&mut r, &mut out).unwrap() == 0 {
                break;
            }
            lines.push(String::from_utf8(out.clone()).unwrap());
        }
        assert_eq!(lines, ["one\n", "two\n", "three"]);
    }
}
