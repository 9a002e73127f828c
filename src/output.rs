//! Output of several programs at once: each line prefixed with the program's
//! name (`ingest | …`), names padded to one width, a stable colour per
//! program on a terminal (none when not a terminal or with `NO_COLOR`).
//! Whole lines only: a line is written with one call under one lock shared by
//! stdout and stderr, so lines never interleave mid-line, and a pipe is read
//! to its end, so nothing a program printed before exiting is lost.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, mpsc};
use std::time::Instant;

use nix::fcntl::OFlag;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::signal::{SigSet, SigmaskHow, pthread_sigmask};

/// Looks at each line a program prints (without the prefix) until it
/// returns true: how a `ready = { log = … }` check sees the line it waits
/// for. Shared by the program's two streams; called on the copying thread.
pub type LineHook = Arc<dyn Fn(&[u8]) -> bool + Send + Sync>;

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
    /// The thread that copies the programs' pipes, once one is piped.
    copier: Mutex<Option<Copier>>,
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
            copier: Mutex::new(None),
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
            copier: Mutex::new(None),
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

    /// Copies `from` line by line, prefixed, until its end. One thread
    /// copies every pipe of the run (started with the first), so starting a
    /// program costs a message, not two threads.
    pub fn pump(
        self: &Arc<Self>,
        name: &str,
        index: usize,
        stream: Stream,
        from: impl Into<OwnedFd>,
        hook: Option<LineHook>,
    ) -> io::Result<Pump> {
        let (alive, done) = mpsc::channel::<()>();
        let source = Source {
            pipe: File::from(from.into()),
            name: name.to_owned(),
            stream,
            prefix: self.prefix(name, index, stream),
            partial: Vec::new(),
            hook,
            _alive: alive,
        };
        let mut copier = self.copier.lock().unwrap_or_else(|p| p.into_inner());
        if copier.is_none() {
            *copier = Some(self.start_copier()?);
        }
        let Some(c) = copier.as_ref() else {
            unreachable!("started above")
        };
        c.tx.send(source)
            .map_err(|_| io::Error::other("the output thread has ended"))?;
        // A full pipe means a wake-up is pending already: fine to drop.
        let _ = (&c.wake).write(&[1]);
        Ok(Pump { done })
    }

    fn start_copier(self: &Arc<Self>) -> io::Result<Copier> {
        let (wake_rx, wake_tx) = nix::unistd::pipe2(OFlag::O_CLOEXEC | OFlag::O_NONBLOCK)?;
        let (tx, rx) = mpsc::channel();
        let me = Arc::clone(self);
        std::thread::Builder::new()
            .name("dblaunch-output".to_owned())
            .spawn(move || me.copy(File::from(wake_rx), &rx))?;
        Ok(Copier {
            tx,
            wake: File::from(wake_tx),
        })
    }

    /// The copying thread: waits in poll(2) for any pipe to have data (or
    /// end), and for new pipes.
    fn copy(&self, mut wake: File, rx: &mpsc::Receiver<Source>) {
        // Signals are the supervisor's: their handlers run on its thread.
        let _ = pthread_sigmask(SigmaskHow::SIG_BLOCK, Some(&SigSet::all()), None);
        let mut sources: Vec<Source> = Vec::new();
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let ready: Vec<bool> = {
                let mut fds = Vec::with_capacity(sources.len() + 1);
                fds.push(PollFd::new(wake.as_fd(), PollFlags::POLLIN));
                fds.extend(
                    sources
                        .iter()
                        .map(|s| PollFd::new(s.pipe.as_fd(), PollFlags::POLLIN)),
                );
                match poll(&mut fds, PollTimeout::NONE) {
                    Ok(_) => {}
                    Err(nix::errno::Errno::EINTR) => continue,
                    // Only with a bad descriptor, which we never make: give
                    // up copying rather than spin.
                    Err(_) => return,
                }
                fds.iter()
                    .map(|f| f.revents().is_some_and(|r| !r.is_empty()))
                    .collect()
            };
            // Readable means one read(2) does not block, so the pipes stay in
            // blocking mode; one read per pipe per round keeps them fair.
            let mut ready = ready.into_iter();
            let woken = ready.next().unwrap_or(false);
            sources.retain_mut(|s| !ready.next().unwrap_or(false) || self.copy_some(s, &mut buf));
            if woken {
                while wake.read(&mut buf).is_ok_and(|n| n > 0) {}
                loop {
                    match rx.try_recv() {
                        Ok(s) => sources.push(s),
                        Err(mpsc::TryRecvError::Empty) => break,
                        Err(mpsc::TryRecvError::Disconnected) if sources.is_empty() => return,
                        Err(mpsc::TryRecvError::Disconnected) => break,
                    }
                }
            }
        }
    }

    /// One read from a ready pipe; its whole lines are written. False once
    /// the pipe has ended (what is left of a last line is written too).
    fn copy_some(&self, s: &mut Source, buf: &mut [u8]) -> bool {
        let open = match s.pipe.read(buf) {
            Ok(0) => false,
            Ok(n) => {
                s.partial.extend_from_slice(&buf[..n]);
                true
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => true,
            Err(_) => false,
        };
        let mut from = 0;
        let mut partial = std::mem::take(&mut s.partial);
        while let Some(end) = next_line(&partial[from..], !open) {
            self.write_piece(s, &partial[from..from + end]);
            from += end;
        }
        partial.drain(..from);
        s.partial = partial;
        open
    }

    /// A line (or a piece of one past [`MAX_LINE`]), prefixed, newline-ended.
    fn write_piece(&self, s: &mut Source, piece: &[u8]) {
        if let Some(hook) = &s.hook {
            let bare = piece.strip_suffix(b"\n").unwrap_or(piece);
            if hook(bare.strip_suffix(b"\r").unwrap_or(bare)) {
                s.hook = None;
            }
        }
        let mut line = Vec::with_capacity(s.prefix.len() + piece.len() + 1);
        line.extend_from_slice(&s.prefix);
        line.extend_from_slice(piece);
        if line.last() != Some(&b'\n') {
            line.push(b'\n');
        }
        self.write_line(&s.name, s.stream, &line);
    }
}

/// Hands pipes to the copying thread.
struct Copier {
    tx: mpsc::Sender<Source>,
    /// The write end of a pipe that the thread polls beside the programs'.
    wake: File,
}

/// One pipe being copied.
struct Source {
    pipe: File,
    name: String,
    stream: Stream,
    prefix: Vec<u8>,
    /// What was read past the last whole line.
    partial: Vec<u8>,
    /// Sees each line until it has found what it looks for.
    hook: Option<LineHook>,
    /// Dropped with the source, once the pipe is drained: what
    /// [`Pump::finish`] waits for.
    _alive: mpsc::Sender<()>,
}

/// A pipe being copied.
pub struct Pump {
    done: mpsc::Receiver<()>,
}

impl Pump {
    /// Waits (without polling) until the pipe is drained or `until`; true
    /// if it was drained.
    pub fn finish(self, until: Instant) -> bool {
        let left = until.saturating_duration_since(Instant::now());
        matches!(
            self.done.recv_timeout(left),
            Err(mpsc::RecvTimeoutError::Disconnected)
        )
    }
}

/// The length of the first line in `data` (through its newline), or of a
/// piece of [`MAX_LINE`] bytes of a longer one; at the end of the pipe
/// (`ended`), of whatever is left.
fn next_line(data: &[u8], ended: bool) -> Option<usize> {
    let window = &data[..data.len().min(MAX_LINE)];
    match window.iter().position(|&b| b == b'\n') {
        Some(i) => Some(i + 1),
        None if window.len() == MAX_LINE => Some(MAX_LINE),
        None if ended && !data.is_empty() => Some(data.len()),
        None => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_split_at_newlines_and_capped() {
        let mut data = b"one\ntwo\nthree".to_vec();
        let mut lines = Vec::new();
        let mut from = 0;
        while let Some(n) = next_line(&data[from..], false) {
            lines.push(String::from_utf8(data[from..from + n].to_vec()).unwrap());
            from += n;
        }
        assert_eq!(lines, ["one\n", "two\n"]);
        assert_eq!(next_line(&data[from..], true), Some(5));
        assert_eq!(next_line(&[], true), None);
        data = vec![b'x'; MAX_LINE + 3];
        assert_eq!(next_line(&data, false), Some(MAX_LINE));
        assert_eq!(next_line(&data[MAX_LINE..], false), None);
        assert_eq!(next_line(&data[MAX_LINE..], true), Some(3));
    }
}
