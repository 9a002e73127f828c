//! What the run tells each database's lock journal: one line per event, to
//! the journal of the database it concerns, and to the lock backend's when
//! the database has a key there (so that history covers every host). An
//! uncontended program costs two lines (granted, released) on a descriptor
//! opened once; the other events only happen on paths that wait anyway.
//! Lines are written when the loop is about to sleep (see
//! [`Journal::flush`]). The line format belongs to the lock crate's journal;
//! this file decides what is said and when.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use dblaunch_lock::journal::{Journal, Kind, Line, Outcome, Party, seconds};
use dblaunch_lock::{Held, Holder, LockError, Mode, Remote};

use crate::process::ExitKind;
use crate::signals;

use super::spec::Spec;
use super::state::{Readiness, Running};

pub(super) struct Recorder {
    journal: Journal,
    /// Each program's current wait, stretch by stretch (program `i` at `i`).
    blocked: Vec<Vec<Blocked>>,
}

/// One stretch of a program's wait, on one database.
struct Blocked {
    database: PathBuf,
    since: Instant,
    behind: Vec<Party>,
}

/// Lines made before a release (which consumes the hold), written after it.
pub(super) type Unwritten = Vec<(PathBuf, Option<String>, Line)>;

fn parties(holders: &[Holder]) -> Vec<Party> {
    holders.iter().filter_map(Party::of).collect()
}

fn line(spec: &Spec, event: Kind, database: &Path, mode: Mode) -> Line {
    Line::new(event, database, &spec.name, mode)
}

impl Recorder {
    pub(super) fn new(programs: usize, remote: Option<&Remote>) -> Recorder {
        let mut journal = Journal::default();
        journal.set_backend(remote.map(|r| Arc::clone(&r.backend)));
        Recorder {
            journal,
            blocked: (0..programs).map(|_| Vec::new()).collect(),
        }
    }

    /// To the journal of `line`'s database, one of `spec`'s.
    fn write(&mut self, spec: &Spec, line: &Line) {
        let database = Path::new(&line.database);
        if let Some(req) = spec.locks.iter().find(|r| r.db.path() == database) {
            self.emit(&req.db.lock_dir(), req.key.as_deref(), line);
        }
    }

    /// To the database's journal, and to the backend's when it has a key
    /// there.
    fn emit(&mut self, dir: &Path, key: Option<&str>, line: &Line) {
        self.journal.append(dir, key, line);
    }

    /// Before the loop sleeps: the lines so far are written.
    pub(super) fn flush(&mut self) {
        self.journal.flush();
    }

    /// Before dblaunch exits: local lines are written, and lines sent to
    /// the backend stored (as long as the backend answers within a second).
    pub(super) fn flush_before_exit(&mut self) {
        self.journal.finish(Duration::from_secs(1));
    }

    /// Program `i` queues anew: its earlier wait is over.
    pub(super) fn queueing(&mut self, i: usize) {
        self.blocked[i].clear();
    }

    /// Program `i` waits on `database` behind `holders` since `since`: a
    /// new stretch of its wait, if it is a database it was not already
    /// waiting on.
    pub(super) fn waiting(
        &mut self,
        i: usize,
        spec: &Spec,
        database: &Path,
        mode: Mode,
        holders: &[Holder],
        since: Instant,
    ) {
        if let Some(last) = self.blocked[i].last_mut() {
            if last.database == database {
                // Who is in front may only be known later (the backend).
                if last.behind.is_empty() {
                    last.behind = parties(holders);
                }
                return;
            }
        }
        let line = line(spec, Kind::Queued, database, mode);
        self.stretch(i, spec, line, database, holders, since);
    }

    /// A process outside dblaunch holds `database`: program `i` waits for it.
    pub(super) fn foreign(
        &mut self,
        i: usize,
        spec: &Spec,
        database: &Path,
        mode: Mode,
        holders: &[Holder],
    ) {
        let line = line(spec, Kind::Foreign, database, mode);
        self.stretch(i, spec, line, database, holders, Instant::now());
    }

    /// Says why program `i` waits (`line`, behind `holders`), and starts a
    /// stretch of its wait on `database`.
    fn stretch(
        &mut self,
        i: usize,
        spec: &Spec,
        mut line: Line,
        database: &Path,
        holders: &[Holder],
        since: Instant,
    ) {
        let behind = parties(holders);
        line.behind = behind.clone();
        self.write(spec, &line);
        self.blocked[i].push(Blocked {
            database: database.to_path_buf(),
            since,
            behind,
        });
    }

    /// Program `i` started as `child` with `held`: a grant per database,
    /// with how long it waited on that database and behind whom.
    pub(super) fn granted(&mut self, i: usize, spec: &Spec, held: &Held, child: i32) {
        let blocked = std::mem::take(&mut self.blocked[i]);
        let now = Instant::now();
        for (req, ticket, nested) in held.tickets() {
            let database = req.db.path();
            let mut waited = Duration::ZERO;
            let mut behind = Vec::new();
            for (k, b) in blocked.iter().enumerate() {
                if b.database == database {
                    let until = blocked.get(k + 1).map_or(now, |n| n.since);
                    waited += until.saturating_duration_since(b.since);
                    if behind.is_empty() {
                        behind = b.behind.clone();
                    }
                }
            }
            let mut line = line(spec, Kind::Granted, database, req.mode);
            line.ticket = Some(ticket);
            line.nested = nested;
            line.child = Some(child);
            line.waited = Some(seconds(waited));
            line.behind = behind;
            self.emit(&req.db.lock_dir(), req.key.as_deref(), &line);
        }
    }

    /// Program `i` gave up waiting: busy past `--wait` (or at once).
    pub(super) fn gave_up(&mut self, i: usize, spec: &Spec, error: &LockError) {
        let LockError::Busy {
            database,
            mode,
            holders,
            waited,
            ..
        } = error
        else {
            return;
        };
        self.blocked[i].clear();
        let mut line = line(spec, Kind::GaveUp, database, *mode);
        line.waited = Some(seconds(*waited));
        line.behind = parties(holders);
        self.write(spec, &line);
    }

    /// The program is stopped so that `who` can have `database`.
    pub(super) fn yielded(&mut self, spec: &Spec, database: &Path, who: &Holder) {
        let mode = spec
            .locks
            .iter()
            .find(|r| r.db.path() == database)
            .map_or(Mode::Read, |r| r.mode);
        let mut line = line(spec, Kind::Yielded, database, mode);
        line.behind = parties(std::slice::from_ref(who));
        self.write(spec, &line);
    }

    /// Program `spec`, running as `r`, passed its readiness check.
    pub(super) fn ready(&mut self, spec: &Spec, r: &Running) {
        for (req, ticket, nested) in r.held.tickets() {
            let mut line = line(spec, Kind::Ready, req.db.path(), req.mode);
            line.ticket = Some(ticket);
            line.nested = nested;
            line.child = Some(r.pid);
            self.emit(&req.db.lock_dir(), req.key.as_deref(), &line);
        }
    }

    /// What to write when a program's locks go: one line per database,
    /// made before the release (which consumes the hold) and written with
    /// [`Recorder::write_all`] after it. `stopping`: the run is being
    /// stopped.
    pub(super) fn released(spec: &Spec, r: &Running, exit: ExitKind, stopping: bool) -> Unwritten {
        let outcome = if r.stop_requested || r.ending || (stopping && !r.yielding) {
            Outcome::Stopped
        } else if matches!(r.readiness, Readiness::TimedOut) {
            Outcome::Failed
        } else if r.restart_requested || r.change_restart {
            Outcome::Restarted
        } else if r.yielding {
            Outcome::Yielded
        } else {
            match exit {
                ExitKind::Code(0) => Outcome::Exited,
                ExitKind::Code(_) => Outcome::Failed,
                ExitKind::Signal(_) => Outcome::Crashed,
            }
        };
        let held = seconds(r.started.elapsed());
        r.held
            .tickets()
            .map(|(req, ticket, nested)| {
                let mut line = line(spec, Kind::Released, req.db.path(), req.mode);
                line.ticket = Some(ticket);
                line.nested = nested;
                line.child = Some(r.pid);
                line.held = Some(held);
                line.outcome = Some(outcome);
                match exit {
                    ExitKind::Code(c) => line.exit_code = Some(c),
                    ExitKind::Signal(s) => line.signal = Some(signals::name(s)),
                }
                (req.db.lock_dir(), req.key.clone(), line)
            })
            .collect()
    }

    pub(super) fn write_all(&mut self, lines: Unwritten) {
        for (dir, key, line) in lines {
            self.emit(&dir, key.as_deref(), &line);
        }
    }
}
