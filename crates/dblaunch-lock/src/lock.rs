//! The lock inside a program: [`Lock`] says which databases, how and how
//! long to wait; [`Lock::acquire`] joins each database's queue beside every
//! `dblaunch exec`, `dblaunch run` and other program on the machine, and
//! returns a [`Guard`] that releases on drop.
//!
//! ```no_run
//! use std::time::Duration;
//! use dblaunch_lock::Lock;
//!
//! let guard = Lock::write("data/app.db")
//!     .timeout(Duration::from_secs(30))
//!     .acquire()?;
//! // … open the database, work, close it …
//! drop(guard);
//! # Ok::<(), dblaunch_lock::Error>(())
//! ```

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::acquire::{Acquisition, Progress, Waited};
use crate::backend::Config;
use crate::database::Database;
use crate::failure::Error;
use crate::held::{Held, Released};
use crate::identity;
use crate::journal::{self, Kind, Line, Outcome, Party, seconds};
use crate::mode::Mode;
use crate::names::{self, Project};
use crate::owners::{self, OwnerId};
use crate::queue::Cancel;
use crate::record::Owner;
use crate::remote::Remote;
use crate::request::Request;

/// Which databases a program locks for itself, and how. Built with
/// [`Lock::read`] or [`Lock::write`] (more with [`Lock::and_read`],
/// [`Lock::and_write`]), then [`Lock::acquire`]d.
///
/// A database is a path (it has a `/` or a `.`; relative to the current
/// directory; it need not exist yet) or the name of an entry of the project
/// manifest's `[databases]` (`$DBLAUNCH_FILE`, else the first
/// `dblaunch.toml` in the current directory or a parent), as for
/// `dblaunch exec`.
#[derive(Clone, Debug)]
#[must_use = "a Lock does nothing until it is acquired"]
pub struct Lock {
    targets: Vec<(String, Mode)>,
    timeout: Option<Duration>,
    name: Option<String>,
    owner: Option<OwnerId>,
    cancel: Option<Arc<Cancel>>,
    manifest: Option<PathBuf>,
}

impl Lock {
    /// Reads `db`: shared with other readers.
    pub fn read(db: impl AsRef<Path>) -> Lock {
        Lock::new(db, Mode::Read)
    }

    /// Writes `db`: exclusive.
    pub fn write(db: impl AsRef<Path>) -> Lock {
        Lock::new(db, Mode::Write)
    }

    /// Uses `db` in `mode`.
    pub fn new(db: impl AsRef<Path>, mode: Mode) -> Lock {
        Lock {
            targets: vec![(db.as_ref().to_string_lossy().into_owned(), mode)],
            timeout: None,
            name: None,
            owner: None,
            cancel: None,
            manifest: None,
        }
    }

    /// Also reads `db`: every database is taken, or none.
    pub fn and_read(self, db: impl AsRef<Path>) -> Lock {
        self.and(db, Mode::Read)
    }

    /// Also writes `db`: every database is taken, or none.
    pub fn and_write(self, db: impl AsRef<Path>) -> Lock {
        self.and(db, Mode::Write)
    }

    /// Also uses `db` in `mode`.
    pub fn and(mut self, db: impl AsRef<Path>, mode: Mode) -> Lock {
        self.targets
            .push((db.as_ref().to_string_lossy().into_owned(), mode));
        self
    }

    /// Waits at most `timeout` (default: as long as it takes); zero tries
    /// once and leaves nothing queued when a database is busy.
    pub fn timeout(mut self, timeout: Duration) -> Lock {
        self.timeout = Some(timeout);
        self
    }

    /// The name `status`, `history` and busy messages show (default: the
    /// program's name, see [`crate::identity`]).
    pub fn name(mut self, name: impl Into<String>) -> Lock {
        self.name = Some(name.into());
        self
    }

    /// Who re-enters (default: the calling thread): see [`OwnerId`].
    pub fn owner(mut self, owner: OwnerId) -> Lock {
        self.owner = Some(owner);
        self
    }

    /// Ends the wait when `cancel` fires (from any thread): the queue is
    /// left at once and nothing is granted later.
    pub fn cancel_on(mut self, cancel: Arc<Cancel>) -> Lock {
        self.cancel = Some(cancel);
        self
    }

    /// The manifest whose `[databases]` names resolve (default:
    /// `$DBLAUNCH_FILE`, else the first `dblaunch.toml` in the current
    /// directory or a parent).
    pub fn manifest(mut self, path: impl Into<PathBuf>) -> Lock {
        self.manifest = Some(path.into());
        self
    }

    /// Waits for every database and returns the guard that holds them.
    pub fn acquire(self) -> Result<Guard, Error> {
        self.acquire_interruptible(|| true)
    }

    /// As [`Lock::acquire`]; when a signal interrupts the wait, `on_signal`
    /// runs (a language runtime runs its handlers there) and says whether
    /// to go on waiting (`false` ends it as a cancel).
    pub fn acquire_interruptible(self, on_signal: impl FnMut() -> bool) -> Result<Guard, Error> {
        let plan = self.plan()?;
        plan.acquire(on_signal)
    }

    /// Resolves the databases, checks re-entry, and connects the backend:
    /// everything that can fail before anything is queued.
    fn plan(self) -> Result<Plan, Error> {
        if self.targets.iter().any(|(t, _)| t.is_empty()) {
            return Err(Error::Usage(
                "a database path or name is empty: give the path of the database file (or directory), or a name of the manifest's [databases]".to_owned(),
            ));
        }
        let cwd = std::env::current_dir().map_err(|e| {
            Error::Usage(format!(
                "cannot read the current directory ({e}), which relative database paths are relative to: give an absolute path"
            ))
        })?;
        let project = Project::find(self.manifest.as_deref(), &cwd)?;
        let config = Project::backend(project.as_deref()).map_err(Error::Usage)?;
        let owner = self.owner.unwrap_or_else(OwnerId::current_thread);
        let mut requests = Vec::new();
        let mut again = Vec::new();
        for (given, mode) in &self.targets {
            let db = names::resolve(given, project.as_deref(), &cwd)?;
            if again.iter().any(|(d, _): &(Database, Mode)| *d == db)
                || requests
                    .iter()
                    .any(|r: &Request| r.db == db && r.mode == *mode)
            {
                continue;
            }
            match owners::held(owner, &db) {
                Some(held) if held.covers(*mode) => again.push((db, *mode)),
                Some(_) => {
                    return Err(Error::WouldDeadlock {
                        database: db.path().to_path_buf(),
                        holder: "this owner (the same thread, task or async context)".to_owned(),
                    });
                }
                None => {
                    let mut request = Request::local(db, *mode);
                    if config.is_some() {
                        request.key = Some(match &project {
                            Some(p) => p.key(&request.db),
                            None => request.db.path().to_string_lossy().into_owned(),
                        });
                    }
                    requests.push(request);
                }
            }
        }
        if let Some(w) = requests
            .iter()
            .find(|w| requests.iter().any(|r| r.db == w.db && r.mode != w.mode))
        {
            return Err(Error::Usage(format!(
                "database {} is both read and written by one lock: a write lock already allows reading, so ask only for write",
                w.db.path().display()
            )));
        }
        let remote = match (&config, requests.is_empty()) {
            (Some(config), false) => Some(connect(config)?),
            _ => None,
        };
        let program = self.name.unwrap_or_else(|| identity::program().to_owned());
        Ok(Plan {
            requests,
            again,
            owner,
            program,
            timeout: self.timeout,
            cancel: self.cancel,
            remote,
        })
    }
}

/// The lock backend for `config`, connected once per process and shared by
/// every lock taken with it.
fn connect(config: &Config) -> Result<Remote, Error> {
    static REMOTE: Mutex<Option<(Config, Remote)>> = Mutex::new(None);
    crate::fork::protect(&REMOTE);
    let mut cached = REMOTE.lock().unwrap_or_else(|p| p.into_inner());
    if let Some((c, remote)) = cached.as_ref() {
        if c == config {
            return Ok(remote.clone());
        }
    }
    let remote = Remote::connect(config).map_err(|e| Error::Failed(e.into()))?;
    *cached = Some((config.clone(), remote.clone()));
    Ok(remote)
}

/// A lock resolved and checked, ready to queue.
struct Plan {
    /// What to queue for.
    requests: Vec<Request>,
    /// What the owner holds already in a covering mode.
    again: Vec<(Database, Mode)>,
    owner: OwnerId,
    program: String,
    timeout: Option<Duration>,
    cancel: Option<Arc<Cancel>>,
    remote: Option<Remote>,
}

impl Plan {
    fn acquire(self, on_signal: impl FnMut() -> bool) -> Result<Guard, Error> {
        let started = Instant::now();
        let held = if self.requests.is_empty() {
            None
        } else {
            Some(self.queue(started, on_signal)?)
        };
        for (db, mode) in &self.again {
            owners::enter(self.owner, db, *mode);
        }
        let mut held = held;
        if let Some(held) = &mut held {
            held.mark_holding_here();
            for req in held.requests() {
                owners::enter(self.owner, &req.db, req.mode);
            }
        }
        Ok(Guard {
            held,
            again: self.again,
            owner: self.owner,
            pid: crate::fork::pid(),
            program: self.program,
            since: Instant::now(),
            remote: self.remote,
        })
    }

    /// Joins the queues and waits for every database.
    fn queue(&self, started: Instant, on_signal: impl FnMut() -> bool) -> Result<Held, Error> {
        let owner = Owner {
            program: self.program.clone(),
            command: identity::command().to_vec(),
        };
        // Which tickets this process inherited from a `dblaunch exec` or
        // `run` it runs under: looked for once per process.
        crate::inherited::all();
        let acquisition =
            Acquisition::new(self.requests.clone(), owner, self.remote.as_ref())?.own();
        if self.timeout == Some(Duration::ZERO) {
            return match acquisition.try_now() {
                Ok(held) => {
                    self.journal_granted(&held, Duration::ZERO, &[]);
                    Ok(held)
                }
                Err(e) => {
                    let e = Error::from(e);
                    self.journal_gave_up(&e);
                    Err(e)
                }
            };
        }
        let deadline = self.timeout.map(|t| started + t);
        let mut behind: Vec<(PathBuf, Vec<Party>)> = Vec::new();
        let waited = acquisition.wait(
            self.cancel.as_deref(),
            deadline,
            |progress| {
                if let Progress::Waiting {
                    database,
                    mode,
                    holders,
                    ..
                } = progress
                {
                    let parties: Vec<Party> = holders.iter().filter_map(Party::of).collect();
                    self.journal_queued(&database, mode, &parties);
                    behind.push((database, parties));
                }
            },
            on_signal,
        )?;
        match waited {
            Waited::Held(held) => {
                self.journal_granted(&held, started.elapsed(), &behind);
                Ok(held)
            }
            Waited::Cancelled => Err(Error::Cancelled),
            Waited::TimedOut(ahead) => {
                let (database, mode, holders) = ahead.unwrap_or_else(|| {
                    (
                        self.requests[0].db.path().to_path_buf(),
                        self.requests[0].mode,
                        Vec::new(),
                    )
                });
                let e = Error::Busy {
                    database,
                    mode,
                    holders,
                    waited: started.elapsed(),
                    timeout: self.timeout.unwrap_or_default(),
                };
                self.journal_gave_up(&e);
                Err(e)
            }
        }
    }

    fn request_of(&self, database: &Path) -> Option<&Request> {
        self.requests.iter().find(|r| r.db.path() == database)
    }

    fn journal_queued(&self, database: &Path, mode: Mode, behind: &[Party]) {
        let Some(req) = self.request_of(database) else {
            return;
        };
        let mut line = Line::new(Kind::Queued, database, &self.program, mode);
        line.behind = behind.to_vec();
        journal::record(req, self.remote.as_ref(), &line);
    }

    fn journal_granted(&self, held: &Held, waited: Duration, behind: &[(PathBuf, Vec<Party>)]) {
        for (req, ticket, nested) in held.tickets() {
            let mut line = Line::new(Kind::Granted, req.db.path(), &self.program, req.mode);
            line.ticket = Some(ticket);
            line.nested = nested;
            line.child = Some(crate::fork::pid() as i32);
            if let Some((_, parties)) = behind.iter().find(|(d, _)| d == req.db.path()) {
                line.waited = Some(seconds(waited));
                line.behind = parties.clone();
            } else {
                line.waited = Some(0.0);
            }
            journal::record(req, self.remote.as_ref(), &line);
        }
    }

    fn journal_gave_up(&self, e: &Error) {
        let Error::Busy {
            database,
            mode,
            holders,
            waited,
            ..
        } = e
        else {
            return;
        };
        let Some(req) = self.request_of(database) else {
            return;
        };
        let mut line = Line::new(Kind::GaveUp, database, &self.program, *mode);
        line.waited = Some(seconds(*waited));
        line.behind = holders.iter().filter_map(Party::of).collect();
        journal::record(req, self.remote.as_ref(), &line);
    }
}

/// Databases held by this program: released when dropped (or by
/// [`Guard::release`]). The lock is a kernel lock on a descriptor of this
/// process, so its death releases it too, whatever the death; a forked
/// child never keeps it.
#[must_use = "the lock is released as soon as the guard is dropped"]
pub struct Guard {
    /// The locks taken for this guard (`None` when every database was held
    /// already by the same owner).
    held: Option<Held>,
    /// Databases the owner held already: released with the first hold.
    again: Vec<(Database, Mode)>,
    owner: OwnerId,
    /// The process that took it: a forked child's copy does nothing.
    pid: u32,
    program: String,
    since: Instant,
    remote: Option<Remote>,
}

impl std::fmt::Debug for Guard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Guard")
            .field("databases", &self.databases())
            .field("owner", &self.owner)
            .finish()
    }
}

impl Guard {
    /// Each database held, with its mode: the canonical path (symlinks and
    /// `..` resolved), as `dblaunch status` shows it.
    pub fn databases(&self) -> Vec<(PathBuf, Mode)> {
        let held = self
            .held
            .iter()
            .flat_map(|h| h.requests().map(|r| (r.db.path().to_path_buf(), r.mode)));
        let again = self.again.iter().map(|(d, m)| (d.path().to_path_buf(), *m));
        held.chain(again).collect()
    }

    /// The fencing token of each key held in the lock backend (strictly
    /// increasing over the grants of a key), for storage that checks them.
    /// Empty without a backend, and for a re-entered lock.
    pub fn fencing_tokens(&self) -> Vec<(String, i64)> {
        self.held.as_ref().map(Held::tokens).unwrap_or_default()
    }

    /// The fencing token, when exactly one key is held in the backend.
    pub fn fencing_token(&self) -> Option<i64> {
        match self.fencing_tokens().as_slice() {
            [(_, token)] => Some(*token),
            _ => None,
        }
    }

    /// Releases now (as dropping does).
    pub fn release(self) {
        drop(self);
    }

    fn let_go(&mut self) {
        for (db, _) in &self.again {
            owners::leave(self.owner, db);
        }
        let Some(held) = self.held.take() else {
            return;
        };
        let held_for = seconds(self.since.elapsed());
        let lines: Vec<(Request, Line)> = held
            .tickets()
            .map(|(req, ticket, nested)| {
                let mut line = Line::new(Kind::Released, req.db.path(), &self.program, req.mode);
                line.ticket = Some(ticket);
                line.nested = nested;
                line.child = Some(self.pid as i32);
                line.held = Some(held_for);
                line.outcome = Some(Outcome::Released);
                (req.clone(), line)
            })
            .collect();
        for req in held.requests() {
            owners::leave(self.owner, &req.db);
        }
        let released: Released = held.release();
        for (path, pids) in &released.kept {
            tracing::warn!(
                "{} stays locked after its release: processes {pids:?} still hold the lock's descriptor",
                path.display()
            );
        }
        drop(released);
        for (req, line) in &lines {
            journal::record(req, self.remote.as_ref(), line);
        }
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        if self.pid != crate::fork::pid() {
            // A forked child: its copies of the descriptors were closed at
            // the fork; the parent's lock is the parent's to release.
            if let Some(held) = self.held.take() {
                std::mem::forget(held);
            }
            return;
        }
        self.let_go();
    }
}
