//! Taking the locks of several databases at once: all or none, in canonical
//! path order (one global order, so two dblaunch processes can never wait for
//! each other in a cycle), holding the earlier ones while waiting for the later.

use std::fs;
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use crate::backend::{Acquired, Backend, Cancel, Claim, Claimant, Lease};
use crate::database::Database;
use crate::error::{Holder, LockError};
use crate::inherited::{self, Inherited};
use crate::kernel;
use crate::procfs::{self, FileId};
use crate::queue::{self, Enqueued, Queue, Release, Ticket, TicketId, Tidy, WaitOutcome};
use crate::record::{Mode, Owner, Record};

/// One database and how it is used.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    pub db: Database,
    pub mode: Mode,
    /// Its key in the lock backend, when one is configured: then it is
    /// locked there too, after the host's own lock.
    pub key: Option<String>,
}

impl Request {
    /// A database locked on this host only.
    pub fn local(db: Database, mode: Mode) -> Request {
        Request {
            db,
            mode,
            key: None,
        }
    }
}

/// The lock backend every keyed request also goes through, and who we are
/// to the other hosts.
#[derive(Clone)]
pub struct Remote {
    pub backend: Arc<dyn Backend>,
    pub host: String,
}

/// What a background acquisition reports.
#[derive(Debug)]
pub enum Progress {
    /// It now blocks on `database`, behind `holders`.
    Waiting {
        database: PathBuf,
        mode: Mode,
        holders: Vec<Holder>,
        /// Earlier tickets in the way besides `holders`.
        more: usize,
    },
    /// Every lock is held; here they are.
    Acquired(Held),
    Failed(LockError),
}

/// Where an acquisition is: which request, and which earlier tickets of it
/// remain to be waited for.
pub struct Acquisition {
    requests: Vec<Request>,
    /// For each request, the ticket this process inherited from an ancestor
    /// dblaunch that holds the database already (nested dblaunch): then it
    /// queues only among the processes under that ticket.
    parents: Vec<Option<&'static Inherited>>,
    owner: Owner,
    next: usize,
    blockers: Vec<TicketId>,
    /// Who was in front when request `next` queued.
    front: Option<Holder>,
    shared: Arc<Shared>,
    remote: Option<Remote>,
    /// The backend's grant, once every host-local lock is held.
    lease: Option<Box<dyn Lease>>,
    /// The ticket found held when [`Acquisition::advance`] last stopped short:
    /// its queue's directory and its id.
    blocked: Option<(PathBuf, TicketId)>,
}

#[derive(Default)]
struct Shared {
    cancelled: AtomicBool,
    /// Tickets taken so far, in request order; shared so that a cancel from
    /// another thread can give them back while the acquiring thread sleeps in
    /// the kernel.
    tickets: Mutex<Vec<Ticket>>,
    /// Interrupts a wait in the lock backend.
    remote_cancel: Cancel,
    /// Who was ahead in the backend when we last started waiting there.
    remote_ahead: Mutex<Option<(PathBuf, Mode, Vec<Holder>)>>,
    /// The lock backend's server, for messages.
    server: Option<String>,
}

impl Shared {
    fn tickets(&self) -> MutexGuard<'_, Vec<Ticket>> {
        // A panic elsewhere must not wedge lock release.
        self.tickets.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The outcome of [`Acquisition::advance`].
#[derive(Debug, PartialEq, Eq)]
pub enum Step {
    Done,
    Blocked,
}

impl Acquisition {
    /// Orders and checks the requests. The same database named twice in one
    /// mode is one request; read and write of one database is an error.
    pub fn new(
        mut requests: Vec<Request>,
        owner: Owner,
        remote: Option<&Remote>,
    ) -> Result<Acquisition, LockError> {
        requests.sort_by(|a, b| a.db.cmp(&b.db).then(a.mode.cmp(&b.mode)));
        requests.dedup();
        if let Some(w) = requests.windows(2).find(|w| w[0].db == w[1].db) {
            return Err(LockError::ReadAndWrite {
                database: w[0].db.path().to_path_buf(),
            });
        }
        let parents = requests
            .iter()
            .map(|req| {
                let lock_dir = req.db.lock_dir();
                // An ancestor's ticket stays in the queue while it holds the
                // lock: with no ticket there, no ancestor holds this
                // database, and this process's descriptors need not be
                // looked through (a listing of /proc/self/fd per launch).
                if !queue::has_tickets(&lock_dir) {
                    return Ok(None);
                }
                let Some(parent) = inherited::for_lock_dir(&lock_dir) else {
                    return Ok(None);
                };
                if parent.id.mode == Mode::Read && req.mode == Mode::Write {
                    // The ancestor will not let go while we run, and nobody
                    // may write while it reads: waiting would never end.
                    let (program, pid) = parent.holder();
                    return Err(LockError::NestedUpgrade {
                        database: req.db.path().to_path_buf(),
                        program,
                        pid,
                    });
                }
                Ok(Some(parent))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Acquisition {
            requests,
            parents,
            owner,
            next: 0,
            blockers: Vec::new(),
            front: None,
            shared: Arc::new(Shared {
                server: remote.map(|r| r.backend.server()),
                ..Shared::default()
            }),
            remote: remote.cloned(),
            lease: None,
            blocked: None,
        })
    }

    /// The backend claims: keyed requests, in key order (the one global
    /// order of the backend, after the host's own).
    fn claims(&self) -> Vec<Claim> {
        if self.remote.is_none() {
            return Vec::new();
        }
        let mut claims: Vec<Claim> = self
            .requests
            .iter()
            .filter_map(|r| {
                r.key.as_ref().map(|key| Claim {
                    key: key.clone(),
                    mode: r.mode,
                })
            })
            .collect();
        claims.sort();
        claims.dedup_by(|b, a| {
            // One key named by two databases: the stronger mode wins.
            if a.key == b.key {
                a.mode = a.mode.max(b.mode);
                true
            } else {
                false
            }
        });
        claims
    }

    /// Whether the backend must still be asked: a backend is configured,
    /// some request has a key, and nothing was granted yet.
    fn needs_remote(&self) -> bool {
        self.remote.is_some()
            && self.lease.is_none()
            && self.requests.iter().any(|r| r.key.is_some())
    }

    fn database_of(&self, claim: &Claim) -> PathBuf {
        self.requests
            .iter()
            .find(|r| r.key.as_deref() == Some(&claim.key))
            .map_or_else(|| PathBuf::from(&claim.key), |r| r.db.path().to_path_buf())
    }

    fn claimant(&self, remote: &Remote) -> Claimant {
        Claimant {
            host: remote.host.clone(),
            pid: std::process::id() as i32,
            program: self.owner.program.clone(),
        }
    }

    /// Takes the backend's claims once the host's locks are held.
    /// `deadline`: `Some(now)` to try once; `Ok(false)`: cancelled.
    fn acquire_remote(
        &mut self,
        deadline: Option<std::time::Instant>,
        mut on_wait: impl FnMut(Progress),
    ) -> Result<bool, LockError> {
        let Some(remote) = self.remote.clone() else {
            return Ok(true);
        };
        if !self.needs_remote() {
            return Ok(true);
        }
        let claims = self.claims();
        let who = self.claimant(&remote);
        let path_of = |claim: &Claim| self.database_of(claim);
        let shared = Arc::clone(&self.shared);
        let outcome = remote.backend.acquire(
            &claims,
            &who,
            deadline,
            &self.shared.remote_cancel,
            &mut |claim, ahead| {
                let holders: Vec<Holder> = ahead.into_iter().map(Holder::Remote).collect();
                *shared
                    .remote_ahead
                    .lock()
                    .unwrap_or_else(|p| p.into_inner()) =
                    Some((path_of(claim), claim.mode, holders.clone()));
                on_wait(Progress::Waiting {
                    database: path_of(claim),
                    mode: claim.mode,
                    holders,
                    more: 0,
                });
            },
        )?;
        match outcome {
            Acquired::Granted(lease) => {
                self.lease = Some(lease);
                Ok(true)
            }
            Acquired::Busy { claim, ahead } => {
                if self.shared.remote_cancel.is_cancelled() {
                    return Ok(false);
                }
                Err(LockError::Busy {
                    database: path_of(&claim),
                    mode: claim.mode,
                    holders: ahead.into_iter().map(Holder::Remote).collect(),
                    waited: Default::default(),
                    limit: Default::default(),
                })
            }
        }
    }

    pub fn requests(&self) -> &[Request] {
        &self.requests
    }

    /// After [`Acquisition::advance`] answered [`Step::Blocked`]: the request
    /// whose host-local lock is taken, and who is in front (the oldest
    /// earlier ticket, named with one record read). `None` when only the
    /// backend is left to ask: that is a round trip, not yet a wait (the
    /// backend reports one when someone is ahead there).
    pub fn blocked_on(&self) -> Option<(&Request, Vec<Holder>)> {
        let req = self.requests.get(self.next)?;
        Some((req, self.front.iter().cloned().collect()))
    }

    /// After [`Acquisition::advance`] answered [`Step::Blocked`] on a ticket of
    /// this host's queue: that ticket's queue directory and id (`None` when
    /// the backend is what is left to ask).
    pub fn blocker(&self) -> Option<(&Path, TicketId)> {
        self.blocked.as_ref().map(|(dir, id)| (dir.as_path(), *id))
    }

    /// If the ticket this waits behind is one that this process has just
    /// let go and found free (in `released`), moves past it without asking
    /// the kernel again, or listing the queue. It was held, so it had been
    /// granted: a writer is granted only once every earlier ticket is gone
    /// (unlinked, or dead), and a reader once every earlier writer is. So
    /// behind a writer, or for a reader (who waits for writers only),
    /// nothing earlier is left to wait for either; a writer behind a reader
    /// still checks the earlier tickets (other readers may hold).
    pub fn pass_released(&mut self, released: &Released) {
        let Some((dir, id)) = &self.blocked else {
            return;
        };
        if self.blockers.last() != Some(id) || !released.freed(dir, *id) {
            return;
        }
        let reader = self
            .requests
            .get(self.next)
            .is_some_and(|r| r.mode == Mode::Read);
        if id.mode == Mode::Write || reader {
            self.blockers.clear();
        } else {
            self.blockers.pop();
        }
        self.blocked = None;
    }

    /// After [`Acquisition::advance`] answered [`Step::Blocked`] on a ticket:
    /// what a waiting thread tells before it sleeps (see [`waiting`]).
    pub fn waiting(&self) -> Option<Progress> {
        self.blocked.as_ref()?;
        let queue = self.shared.tickets().get(self.next)?.queue().clone();
        let req = self.requests.get(self.next)?;
        Some(waiting(&queue, req, self.front.as_ref(), &self.blockers))
    }

    /// Whether `id` in the queue directory `dir` is one of our tickets.
    pub fn has_ticket(&self, dir: &Path, id: TicketId) -> bool {
        self.shared.tickets().iter().any(|t| t.is(dir, id))
    }

    /// Who is ahead of us on the database we are blocked on.
    pub fn holders_now(&self) -> Option<(PathBuf, Mode, Vec<Holder>)> {
        blocked_report(&self.requests, &self.shared)
    }

    /// Gives up: every ticket taken so far leaves the queue now.
    pub fn abandon(self) {
        abandon_all(&self.shared);
    }

    /// Takes every lock now or none: no waiting, no ticket left behind when
    /// any database is busy (`--no-wait`).
    pub fn try_now(mut self) -> Result<Held, LockError> {
        for (i, req) in self.requests.iter().enumerate() {
            let queue = self.queue(i)?;
            let record = Record::waiting(&self.owner, req.mode);
            match queue.enqueue(req.mode, &record, true)? {
                Enqueued::Queued { ticket, .. } => self.shared.tickets().push(ticket),
                Enqueued::Busy(holders) => {
                    abandon_all(&self.shared);
                    let mut holders = holders;
                    holders.extend(foreign_holders(req));
                    return Err(LockError::Busy {
                        database: req.db.path().to_path_buf(),
                        mode: req.mode,
                        holders,
                        waited: Default::default(),
                        limit: Default::default(),
                    });
                }
            }
        }
        if let Err(e) = self.acquire_remote(Some(std::time::Instant::now()), |_| {}) {
            abandon_all(&self.shared);
            return Err(e);
        }
        Ok(self.into_held())
    }

    /// Moves forward as far as possible. Without `block`, stops at the first
    /// ticket that is still held and answers [`Step::Blocked`]; with it,
    /// sleeps in the kernel until each is gone, telling `on_wait` first.
    pub fn advance(
        &mut self,
        block: bool,
        mut on_wait: impl FnMut(Progress),
    ) -> Result<Step, LockError> {
        self.blocked = None;
        while self.next < self.requests.len() {
            if self.shared.cancelled.load(Ordering::Acquire) {
                return Ok(Step::Blocked);
            }
            let req = &self.requests[self.next];
            // Once queued, the ticket knows its queue: the thread that goes on
            // waiting need not make sure of the lock directory again.
            let queued = self
                .shared
                .tickets()
                .get(self.next)
                .map(|t| t.queue().clone());
            let queue = match queued {
                Some(q) => q,
                None => self.queue(self.next)?,
            };
            {
                let mut tickets = self.shared.tickets();
                if tickets.len() == self.next {
                    if self.shared.cancelled.load(Ordering::Acquire) {
                        return Ok(Step::Blocked);
                    }
                    let record = Record::waiting(&self.owner, req.mode);
                    match queue.enqueue(req.mode, &record, false)? {
                        Enqueued::Queued {
                            ticket,
                            blockers,
                            front,
                        } => {
                            self.blockers = blockers;
                            self.front = front;
                            tickets.push(ticket);
                        }
                        Enqueued::Busy(_) => unreachable!("only no-wait enqueues are busy"),
                    }
                }
            }
            let front = self.front.clone();
            let outcome = queue::wait_turn(
                queue.dir(),
                &mut self.blockers,
                block,
                &self.shared.cancelled,
                |remaining| on_wait(waiting(&queue, req, front.as_ref(), remaining)),
            )
            .map_err(|source| LockError::Io {
                action: "wait for",
                path: queue.dir().to_path_buf(),
                database: req.db.path().to_path_buf(),
                source,
            })?;
            match outcome {
                WaitOutcome::Done => self.next += 1,
                WaitOutcome::Blocked(id) => {
                    self.blocked = Some((queue.dir().to_path_buf(), id));
                    return Ok(Step::Blocked);
                }
                WaitOutcome::Cancelled => return Ok(Step::Blocked),
            }
        }
        if self.needs_remote() {
            // The backend is a network round trip or a wait: never on the
            // supervisor's own thread.
            if !block {
                return Ok(Step::Blocked);
            }
            if !self.acquire_remote(None, &mut on_wait)? {
                return Ok(Step::Blocked);
            }
        }
        Ok(Step::Done)
    }

    /// The queue request `i` joins: the database's own, or the nested one
    /// under the ticket an ancestor dblaunch holds it with.
    fn queue(&self, i: usize) -> Result<Queue, LockError> {
        match self.parents[i] {
            Some(parent) => Queue::nested(&self.requests[i].db, parent),
            None => Queue::open(&self.requests[i].db),
        }
    }

    /// Finishes the acquisition in a thread of its own, which tells
    /// `notify` how it goes. The returned handle can cancel it.
    pub fn in_background(mut self, notify: impl Fn(Progress) + Send + 'static) -> Acquirer {
        let shared = Arc::clone(&self.shared);
        let requests = self.requests.clone();
        // Detached: the supervisor gets the locks through `notify` and never
        // waits for the thread to wind down.
        let spawned = std::thread::Builder::new()
            .name("dblaunch-lock-wait".into())
            .spawn(move || match self.advance(true, &notify) {
                Ok(Step::Done) => {
                    // A cancel that raced with the last wake-up: give back.
                    let cancelled = self.shared.cancelled.load(Ordering::Acquire);
                    let held = self.into_held();
                    if cancelled {
                        held.release();
                    } else {
                        notify(Progress::Acquired(held));
                    }
                }
                Ok(Step::Blocked) => {} // cancelled
                Err(e) => {
                    abandon_all(&self.shared);
                    notify(Progress::Failed(e));
                }
            });
        if let Err(e) = spawned {
            tracing::error!("cannot start a thread to wait for locks: {e}");
        }
        Acquirer { shared, requests }
    }

    pub fn into_held(mut self) -> Held {
        let tickets = std::mem::take(&mut *self.shared.tickets());
        Held {
            lease: self.lease.take(),
            program: self.owner.program.clone(),
            entries: self
                .requests
                .into_iter()
                .zip(tickets)
                .map(|(request, ticket)| {
                    let record = Record::waiting(&self.owner, request.mode);
                    (request, ticket, record)
                })
                .collect(),
        }
    }
}

/// A running background acquisition.
pub struct Acquirer {
    shared: Arc<Shared>,
    requests: Vec<Request>,
}

impl Acquirer {
    /// Gives up: every ticket taken so far leaves the queue now. The thread
    /// may sleep on until the ticket it waits for is released; it then sees
    /// the cancel and ends without taking anything.
    pub fn cancel(self) {
        self.shared.cancelled.store(true, Ordering::Release);
        self.shared.remote_cancel.cancel();
        abandon_all(&self.shared);
    }

    /// Who is ahead of us on the database we are blocked on.
    pub fn holders_now(&self) -> Option<(PathBuf, Mode, Vec<Holder>)> {
        blocked_report(&self.requests, &self.shared)
    }

    /// Whether `id` in the queue directory `dir` is one of our tickets.
    pub fn has_ticket(&self, dir: &Path, id: TicketId) -> bool {
        self.shared.tickets().iter().any(|t| t.is(dir, id))
    }
}

/// What a waiter blocked on `req` behind `remaining` (oldest first) tells.
/// O(1) in the queue's length: the oldest blocker (the holder, usually) is
/// named and the rest counted, and only when someone will be told (not -q);
/// otherwise who was in front when we queued (for the journal), read then.
/// Reading and validating every ticket ahead on each wait made a queue of n
/// waiters cost n² reads of /proc.
fn waiting(
    queue: &Queue,
    req: &Request,
    front: Option<&Holder>,
    remaining: &[TicketId],
) -> Progress {
    let named = match remaining.first() {
        Some(&oldest) if tracing::enabled!(tracing::Level::INFO) => queue.holders_among(&[oldest]),
        _ => front.into_iter().cloned().collect(),
    };
    Progress::Waiting {
        database: req.db.path().to_path_buf(),
        mode: req.mode,
        more: remaining.len().saturating_sub(named.len()),
        holders: named,
    }
}

fn abandon_all(shared: &Shared) {
    for t in std::mem::take(&mut *shared.tickets()) {
        t.abandon();
    }
}

fn blocked_report(requests: &[Request], shared: &Shared) -> Option<(PathBuf, Mode, Vec<Holder>)> {
    let tickets = shared.tickets();
    if tickets.len() == requests.len() {
        // Every host-local lock is ours: what blocks is in the backend.
        let remote = shared
            .remote_ahead
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        if remote.is_some() {
            return remote;
        }
        if let (Some(server), Some(req)) =
            (&shared.server, requests.iter().find(|r| r.key.is_some()))
        {
            return Some((
                req.db.path().to_path_buf(),
                req.mode,
                vec![Holder::BackendSilent {
                    server: server.clone(),
                }],
            ));
        }
    }
    let ticket = tickets.last()?;
    let req = requests.get(tickets.len() - 1)?;
    let mut holders = holders_ahead(ticket.queue(), ticket.id());
    holders.extend(foreign_holders(req));
    Some((req.db.path().to_path_buf(), req.mode, holders))
}

fn holders_ahead(queue: &Queue, mine: TicketId) -> Vec<Holder> {
    let ahead: Vec<TicketId> = queue
        .entries()
        .into_iter()
        .map(|e| e.id)
        .filter(|id| id.number < mine.number && mine.mode.conflicts_with(id.mode))
        .collect();
    let mut holders = queue.holders_among(&ahead);
    holders.sort_by_key(|h| !matches!(h, Holder::Program { holding: true, .. }));
    holders
}

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

/// Locks that are held: every database of one program.
pub struct Held {
    entries: Vec<(Request, Ticket, Record)>,
    /// The backend's grant of the keyed databases.
    lease: Option<Box<dyn Lease>>,
    program: String,
}

impl std::fmt::Debug for Held {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(
                self.entries
                    .iter()
                    .map(|(r, t, _)| (r.db.path(), r.mode, t.id())),
            )
            .finish()
    }
}

impl Held {
    pub fn requests(&self) -> impl Iterator<Item = &Request> {
        self.entries.iter().map(|(r, _, _)| r)
    }

    /// Each database with its ticket number, and whether it is held within
    /// an ancestor dblaunch's hold (nested).
    /// Whether `id` in the queue directory `dir` is one of these tickets.
    pub fn has_ticket(&self, dir: &Path, id: TicketId) -> bool {
        self.entries.iter().any(|(_, t, _)| t.is(dir, id))
    }

    pub fn tickets(&self) -> impl Iterator<Item = (&Request, u64, bool)> {
        self.entries
            .iter()
            .map(|(r, t, _)| (r, t.id().number, t.queue().is_nested()))
    }

    /// The locked descriptors, for the program to inherit.
    pub fn fds(&self) -> Vec<RawFd> {
        self.entries
            .iter()
            .map(|(_, t, _)| t.fd().as_raw_fd())
            .collect()
    }

    /// Fails if a lock directory was removed or replaced while we waited: the
    /// queue we hold our place in is no longer the one newcomers join.
    pub fn check_still_queued(&self) -> Result<(), LockError> {
        match self.entries.iter().find(|(_, t, _)| !t.still_queued()) {
            Some((req, _, _)) => Err(LockError::Removed {
                database: req.db.path().to_path_buf(),
            }),
            None => Ok(()),
        }
    }

    /// Conflicting locks taken on the database files outside dblaunch.
    /// Not asked for a database an ancestor dblaunch holds: its own program
    /// (which waits for us) may well have the file locked, and waiting for
    /// it would be a deadlock.
    pub fn foreign_holders(&self) -> Vec<(PathBuf, Mode, Vec<Holder>)> {
        self.entries
            .iter()
            .filter(|(_, t, _)| !t.queue().is_nested())
            .map(|(req, _, _)| (req.db.path().to_path_buf(), req.mode, foreign_holders(req)))
            .filter(|(_, _, h)| !h.is_empty())
            .collect()
    }

    /// Live tickets queued after ours, in a mode that conflicts with ours:
    /// who waits for us to let go.
    pub fn waiting_behind(&self) -> Vec<(PathBuf, Holder)> {
        let mut behind = Vec::new();
        for (req, ticket, _) in &self.entries {
            let mine = ticket.id();
            let later: Vec<TicketId> = ticket
                .queue()
                .entries()
                .into_iter()
                .map(|e| e.id)
                .filter(|id| id.number > mine.number && mine.mode.conflicts_with(id.mode))
                .collect();
            for h in ticket.queue().holders_among(&later) {
                behind.push((req.db.path().to_path_buf(), h));
            }
        }
        // And on other hosts, as the backend last showed them.
        if let Some(lease) = &self.lease {
            for e in lease.waiters() {
                let database = self
                    .entries
                    .iter()
                    .find(|(r, _, _)| r.key.as_deref() == Some(e.key.as_str()))
                    .map(|(r, _, _)| r.db.path().to_path_buf())
                    .unwrap_or_default();
                behind.push((database, Holder::Remote(e)));
            }
        }
        behind
    }

    /// Calls `wake` when someone on another host queues behind these locks
    /// in a conflicting mode (for `yields`); nothing without a backend.
    pub fn watch_remote_waiters(&self, wake: Box<dyn Fn() + Send>) {
        if let Some(lease) = &self.lease {
            lease.watch_waiters(wake);
        }
    }

    /// The fencing tokens for the program's environment (SPEC.md §8):
    /// `DBLAUNCH_FENCING_TOKEN` when it holds one key,
    /// `DBLAUNCH_FENCING_TOKENS` (`key=token,…`) always.
    pub fn fencing_env(&self) -> Vec<(String, String)> {
        let Some(lease) = &self.lease else {
            return Vec::new();
        };
        let tokens = lease.tokens();
        let mut env = vec![(
            "DBLAUNCH_FENCING_TOKENS".to_owned(),
            tokens
                .iter()
                .map(|(k, t)| format!("{k}={t}"))
                .collect::<Vec<_>>()
                .join(","),
        )];
        if let [(_, token)] = tokens.as_slice() {
            env.push(("DBLAUNCH_FENCING_TOKEN".to_owned(), token.to_string()));
        }
        env
    }

    /// Records that the program running as `pid` now holds the locks.
    pub fn mark_holding(&mut self, pid: i32, start_time: u64) {
        if let Some(lease) = &self.lease {
            lease.started(pid, &self.program);
        }
        for (req, ticket, record) in &mut self.entries {
            *record = record.holding_since(pid, start_time);
            if let Err(e) = ticket.update(record) {
                tracing::warn!(
                    "cannot update the lock record of {}: {e}; status will show this dblaunch instead of the program",
                    req.db.path().display()
                );
            }
        }
    }

    /// Lets go of every lock: each database is free for the next holder on
    /// return, unless processes that escaped the program's process group
    /// still hold it (see [`Released::kept`]).
    pub fn release(self) -> Released {
        // In the reverse of the order taken: the backend, then the host.
        if let Some(lease) = self.lease {
            lease.release();
        }
        let mut released = Released::default();
        for (req, ticket, _) in self.entries.into_iter().rev() {
            let (dir, id) = (ticket.queue().dir().to_path_buf(), ticket.id());
            match ticket.release() {
                Release::Free(tidy) => released.freed.push((dir, id, tidy)),
                Release::HeldBy(pids) => released.kept.push((req.db.path().to_path_buf(), pids)),
            }
        }
        released
    }
}

/// What [`Held::release`] let go. The freed tickets' names stay in their
/// queues, dead, until this is dropped: a caller that has a program to
/// start next starts it first.
#[derive(Debug, Default)]
pub struct Released {
    /// Databases that stay locked, each with the processes that escaped the
    /// program's group and hold it still; their tickets stay queued.
    pub kept: Vec<(PathBuf, Vec<i32>)>,
    /// Tickets that nobody holds any more: queue directory, id, and what is
    /// left to clear away.
    freed: Vec<(PathBuf, TicketId, Tidy)>,
}

impl Released {
    /// Whether ticket `id` of the queue in `dir` was let go, and found free.
    pub fn freed(&self, dir: &Path, id: TicketId) -> bool {
        self.freed.iter().any(|(d, i, _)| *i == id && d == dir)
    }

    /// Takes over what `other` let go, to be cleared away with this.
    pub fn extend(&mut self, other: Released) {
        self.kept.extend(other.kept);
        self.freed.extend(other.freed);
    }
}
