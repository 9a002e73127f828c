//! What the supervisor tells each database's journal (SPEC.md §9): one line
//! per event, to the journal of the database it concerns. An uncontended
//! program costs two lines (granted, released) on a descriptor opened once;
//! the other events only happen on paths that wait anyway. Lines are written
//! when the loop is about to sleep (see [`dblaunch_lock::journal::Journal::flush`]).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::process::ExitKind;
use crate::signals;
use dblaunch_lock::journal::{Kind, Line, Outcome, Party, seconds};
use dblaunch_lock::{Held, Holder, LockError, Mode};

use super::dispatch::Supervisor;
use super::state::Running;

/// One stretch of a program's wait, on one database.
pub(super) struct Blocked {
    database: PathBuf,
    since: Instant,
    behind: Vec<Party>,
}

fn parties(holders: &[Holder]) -> Vec<Party> {
    holders.iter().filter_map(Party::of).collect()
}

impl Supervisor<'_> {
    fn write(&mut self, i: usize, line: &Line) {
        let database = Path::new(&line.database);
        if let Some(req) = self.specs[i].locks.iter().find(|r| r.db.path() == database) {
            let (dir, key) = (req.db.lock_dir(), req.key.clone());
            self.emit(&dir, key.as_deref(), line);
        }
    }

    /// To the database's journal, and to the backend's when it has a key
    /// there (so that history covers every host).
    fn emit(&mut self, dir: &Path, key: Option<&str>, line: &Line) {
        if !dblaunch_lock::journal::enabled() {
            return;
        }
        let Ok(text) = serde_json::to_string(line) else {
            return;
        };
        if let (Some(key), Some(remote)) = (key, &self.opts.remote) {
            remote.backend.record(key, &text);
        }
        self.journal.append(dir, text);
    }

    /// Before dblaunch exits: local lines are written, and lines sent to
    /// the backend stored (as long as the backend answers within a second).
    pub(super) fn journal_flush(&mut self) {
        self.journal.flush();
        if let Some(remote) = &self.opts.remote {
            remote.backend.flush(Duration::from_secs(1));
        }
    }

    fn line(&self, i: usize, event: Kind, database: &Path, mode: Mode) -> Line {
        Line::new(event, database, &self.specs[i].name, mode)
    }

    /// Program `i` waits on `database` behind `holders` since `since`: a
    /// new stretch of its wait, if it is a database it was not already
    /// waiting on.
    pub(super) fn journal_waiting(
        &mut self,
        i: usize,
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
        self.stretch(i, Kind::Queued, database, mode, holders, since);
    }

    /// A process outside dblaunch holds `database`: program `i` waits for it.
    pub(super) fn journal_foreign(
        &mut self,
        i: usize,
        database: &Path,
        mode: Mode,
        holders: &[Holder],
    ) {
        self.stretch(i, Kind::Foreign, database, mode, holders, Instant::now());
    }

    /// Says why program `i` waits (`event`), and starts a stretch of its wait.
    fn stretch(
        &mut self,
        i: usize,
        event: Kind,
        database: &Path,
        mode: Mode,
        holders: &[Holder],
        since: Instant,
    ) {
        let behind = parties(holders);
        let mut line = self.line(i, event, database, mode);
        line.behind = behind.clone();
        self.write(i, &line);
        self.blocked[i].push(Blocked {
            database: database.to_path_buf(),
            since,
            behind,
        });
    }

    /// Program `i` started as `child` with `held`: a grant per database,
    /// with how long it waited on that database and behind whom.
    pub(super) fn journal_granted(&mut self, i: usize, held: &Held, child: i32) {
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
            let mut line = self.line(i, Kind::Granted, database, req.mode);
            line.ticket = Some(ticket);
            line.nested = nested;
            line.child = Some(child);
            line.waited = Some(seconds(waited));
            line.behind = behind;
            let (dir, key) = (req.db.lock_dir(), req.key.clone());
            self.emit(&dir, key.as_deref(), &line);
        }
    }

    /// Program `i` gave up waiting: busy past `--wait` (or at once).
    pub(super) fn journal_gave_up(&mut self, i: usize, error: &LockError) {
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
        let mut line = self.line(i, Kind::GaveUp, database, *mode);
        line.waited = Some(seconds(*waited));
        line.behind = parties(holders);
        self.write(i, &line);
    }

    /// Program `i` is stopped so that `who` can have `database`.
    pub(super) fn journal_yielded(&mut self, i: usize, database: &Path, who: &Holder) {
        let mode = self.specs[i]
            .locks
            .iter()
            .find(|r| r.db.path() == database)
            .map_or(Mode::Read, |r| r.mode);
        let mut line = self.line(i, Kind::Yielded, database, mode);
        line.behind = parties(std::slice::from_ref(who));
        self.write(i, &line);
    }

    /// What to write when program `i`'s locks go: one line per database,
    /// made before the release (which consumes the hold) and queued after
    /// it.
    pub(super) fn journal_released(
        &self,
        i: usize,
        r: &Running,
        exit: ExitKind,
    ) -> Vec<(PathBuf, Option<String>, Line)> {
        let outcome = if r.stop_requested || (self.stopped_by.is_some() && !r.yielding) {
            Outcome::Stopped
        } else if r.restart_requested {
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
                let mut line = self.line(i, Kind::Released, req.db.path(), req.mode);
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

    pub(super) fn journal_write_all(&mut self, lines: Vec<(PathBuf, Option<String>, Line)>) {
        for (dir, key, line) in lines {
            self.emit(&dir, key.as_deref(), &line);
        }
    }
}
