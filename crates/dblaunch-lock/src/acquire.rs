//! Taking the locks of several databases at once: all or none, in canonical
//! path order (one global order, so two dblaunch processes can never wait for
//! each other in a cycle), holding the earlier ones while waiting for the later.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use crate::backend::{Interrupt, Lease};
use crate::error::LockError;
use crate::foreign::foreign_holders;
use crate::held::{Held, Released};
use crate::holder::Holder;
use crate::inherited::{self, Inherited};
use crate::mode::Mode;
use crate::queue::{
    self, Cancel, Enqueued, Queue, Ticket, TicketId, WaitOutcome, Watched, wait_free,
};
use crate::record::{Owner, Record};
use crate::remote::{Ahead, Remote};
use crate::request::Request;

/// What a background acquisition reports.
#[derive(Debug)]
pub enum Progress {
    /// It now blocks on `database`, behind `holders`.
    Waiting {
        /// The database waited for.
        database: PathBuf,
        /// The mode asked for.
        mode: Mode,
        /// Who is in the way (the oldest first).
        holders: Vec<Holder>,
        /// Earlier tickets in the way besides `holders`.
        more: usize,
    },
    /// Every lock is held; here they are.
    Acquired(Held),
    /// It failed; every ticket was given back.
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
    /// The locks are this process's own (see [`Acquisition::own`]).
    own: bool,
}

#[derive(Default)]
struct Shared {
    cancelled: AtomicBool,
    /// Every host-local lock is held (only the backend may be left): until
    /// then, what blocks is a ticket of this host's queue, even when every
    /// ticket is taken (the last one still waits its turn).
    local_done: AtomicBool,
    /// Tickets taken so far, in request order; shared so that a cancel from
    /// another thread can give them back while the acquiring thread sleeps in
    /// the kernel.
    tickets: Mutex<Vec<Ticket>>,
    /// Interrupts a wait in the lock backend.
    remote_cancel: Interrupt,
    /// Who was ahead in the backend when we last started waiting there.
    remote_ahead: Ahead,
    /// The lock backend's server, for messages.
    server: Option<String>,
}

impl Shared {
    fn tickets(&self) -> MutexGuard<'_, Vec<Ticket>> {
        // A panic elsewhere must not wedge lock release.
        self.tickets.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// How [`Acquisition::wait`] ended.
#[derive(Debug)]
pub enum Waited {
    /// Every lock is held.
    Held(Held),
    /// The cancel fired (or a signal's handler asked to stop); every ticket
    /// was given back.
    Cancelled,
    /// The deadline passed; every ticket was given back. Who was in the
    /// way, on which database and for which mode, when it could be told.
    TimedOut(Option<(PathBuf, Mode, Vec<Holder>)>),
}

/// The outcome of [`Acquisition::advance`].
#[derive(Debug, PartialEq, Eq)]
pub enum Step {
    /// Every lock is held.
    Done,
    /// A ticket (or the backend) is in the way; see [`Acquisition::blocker`].
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
                if inherited::none() || !queue::has_tickets(&lock_dir) {
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
            own: false,
        })
    }

    /// Makes the locks this process's own, as a program locking for itself
    /// does (not for a program it starts): a forked child closes its copy
    /// of every ticket at the fork, so it never keeps the lock alive.
    pub fn own(mut self) -> Acquisition {
        self.own = true;
        self
    }

    /// Whether the backend must still be asked: a backend is configured,
    /// some request has a key, and nothing was granted yet.
    fn needs_remote(&self) -> bool {
        self.remote.is_some()
            && self.lease.is_none()
            && self.requests.iter().any(|r| r.key.is_some())
    }

    /// Takes the backend's claims once the host's locks are held.
    /// `deadline`: `Some(now)` to try once; `Ok(false)`: cancelled.
    fn acquire_remote(
        &mut self,
        deadline: Option<Instant>,
        mut on_wait: impl FnMut(Progress),
    ) -> Result<bool, LockError> {
        let Some(remote) = self.remote.clone() else {
            return Ok(true);
        };
        if !self.needs_remote() {
            return Ok(true);
        }
        let granted = remote.acquire(
            &self.requests,
            &self.owner.program,
            deadline,
            &self.shared.remote_cancel,
            &self.shared.remote_ahead,
            |database, mode, holders| {
                on_wait(Progress::Waiting {
                    database,
                    mode,
                    holders,
                    more: 0,
                })
            },
        )?;
        match granted {
            Some(lease) => {
                self.lease = Some(lease);
                Ok(true)
            }
            None => Ok(false),
        }
    }

    /// The requests, in the order they are taken.
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
    /// what a waiting thread tells before it sleeps (see `waiting`).
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
            let record = |_| Record::waiting(&self.owner, req.mode);
            match Ticket::take(&queue, req.mode, &record, true, self.own)? {
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
                    // A program's own lock of one database, granted at once,
                    // says so in its first record: no second write.
                    let alone = self.own && self.requests.len() == 1;
                    let record = |granted: bool| {
                        let waiting = Record::waiting(&self.owner, req.mode);
                        if granted && alone {
                            waiting.holding_here()
                        } else {
                            waiting
                        }
                    };
                    match Ticket::take(&queue, req.mode, &record, false, self.own)? {
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
        self.shared.local_done.store(true, Ordering::Release);
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
            Some(parent) => Queue::nested(&self.requests[i].db, parent.nested_dir()),
            None => Queue::open(&self.requests[i].db),
        }
    }

    /// Finishes the acquisition on this thread, sleeping in poll(2) between
    /// steps (see `queue::wait_free`): the wait of a program's own lock, which
    /// ends at `deadline` (`None`: none) or when `cancel` fires, from any
    /// thread, with every ticket given back and no thread left behind.
    /// `on_wait` hears each time it starts waiting behind someone new;
    /// `interrupted` is asked after a signal woke the wait: `false` stops it
    /// as a cancel would.
    pub fn wait(
        mut self,
        cancel: Option<&Cancel>,
        deadline: Option<Instant>,
        mut on_wait: impl FnMut(Progress),
        mut interrupted: impl FnMut() -> bool,
    ) -> Result<Waited, LockError> {
        if let Some(cancel) = cancel {
            let shared = Arc::clone(&self.shared);
            cancel.on_cancel(Box::new(move || shared.remote_cancel.cancel()));
        }
        // Without a cancel of the caller's, one to sleep on is made only if
        // the wait comes to sleeping (an eventfd less per uncontended lock).
        let mut made: Option<Cancel> = None;
        let mut told: Option<(PathBuf, TicketId)> = None;
        loop {
            if cancel.is_some_and(Cancel::is_cancelled) {
                self.abandon();
                return Ok(Waited::Cancelled);
            }
            match self.advance(false, |_| {}) {
                Ok(Step::Done) => return Ok(Waited::Held(self.into_held())),
                Ok(Step::Blocked) => {}
                Err(e) => {
                    self.abandon();
                    return Err(e);
                }
            }
            let Some((dir, id)) = self.blocker().map(|(d, i)| (d.to_path_buf(), i)) else {
                // Every host-local lock is held; the backend is left.
                match self.acquire_remote(deadline, &mut on_wait) {
                    Ok(true) => continue,
                    Ok(false) => {
                        self.abandon();
                        return Ok(Waited::Cancelled);
                    }
                    Err(LockError::Busy {
                        database,
                        mode,
                        holders,
                        ..
                    }) => {
                        self.abandon();
                        return Ok(Waited::TimedOut(Some((database, mode, holders))));
                    }
                    Err(e) => {
                        self.abandon();
                        return Err(e);
                    }
                }
            };
            if told.as_ref() != Some(&(dir.clone(), id)) {
                if let Some(progress) = self.waiting() {
                    on_wait(progress);
                }
                told = Some((dir.clone(), id));
            }
            let sleep_on = match (cancel, &mut made) {
                (Some(c), _) => c,
                (None, Some(m)) => &*m,
                (None, made) => match Cancel::new() {
                    Ok(m) => made.insert(m),
                    Err(source) => {
                        self.abandon();
                        return Err(LockError::Io {
                            action: "make an eventfd to wait with for",
                            path: dir,
                            database: PathBuf::new(),
                            source,
                        });
                    }
                },
            };
            let watched = wait_free(&dir.join(id.file_name()), sleep_on, deadline);
            match watched {
                Ok(Watched::Free) => {}
                Ok(Watched::Interrupted) => {
                    if !interrupted() {
                        self.abandon();
                        return Ok(Waited::Cancelled);
                    }
                }
                Ok(Watched::Cancelled) => {
                    self.abandon();
                    return Ok(Waited::Cancelled);
                }
                Ok(Watched::TimedOut) => {
                    let ahead = self.holders_now();
                    self.abandon();
                    return Ok(Waited::TimedOut(ahead));
                }
                Err(source) => {
                    let database = self
                        .requests
                        .get(self.next)
                        .map(|r| r.db.path().to_path_buf())
                        .unwrap_or_default();
                    self.abandon();
                    return Err(LockError::Io {
                        action: "wait for",
                        path: dir,
                        database,
                        source,
                    });
                }
            }
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

    /// Every lock is held: the tickets, records and lease, as a [`Held`].
    pub fn into_held(mut self) -> Held {
        let tickets = std::mem::take(&mut *self.shared.tickets());
        let entries = self
            .requests
            .into_iter()
            .zip(tickets)
            .map(|(request, ticket)| {
                let record = Record::waiting(&self.owner, request.mode);
                (request, ticket, record)
            })
            .collect();
        Held::new(entries, self.lease.take(), self.owner.program.clone())
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
    if shared.local_done.load(Ordering::Acquire) {
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
