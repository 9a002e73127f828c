//! A grant kept alive: renewed on the holding session every quarter lease,
//! and a watchdog that SIGKILLs the program's process group before the
//! lease can have run out in the backend when renewals stop succeeding.
//!
//! The deadline counts from the *send* time of the last renewal that
//! succeeded, on CLOCK_BOOTTIME (which, unlike the monotonic clock, goes on
//! during a suspend): a waiter that finds our row after our session ended
//! was granted after that renewal was sent, and waits a whole lease by its
//! own clock before it starts anything.

use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use nix::sys::signal::{Signal, killpg};
use nix::time::{ClockId, clock_gettime};
use nix::unistd::Pid;
use postgres::Client;

use crate::backend::{Entry, Fence, Lease};
use crate::mode::Mode;

pub struct PgLease {
    shared: Arc<Shared>,
    tokens: Vec<(String, i64)>,
    release: mpsc::Sender<()>,
    released: mpsc::Receiver<()>,
}

struct Shared {
    lease: Duration,
    server: String,
    /// CLOCK_BOOTTIME (ns) when the last renewal that succeeded was sent.
    last_ok: AtomicU64,
    /// The program's process group (or process, see `single`), once started.
    pgid: AtomicI32,
    /// `pgid` is one process, not a group: a program that locks for itself.
    single: AtomicBool,
    program: Mutex<String>,
    /// Renewals failed for too long: the program was (or will be) killed.
    fenced: AtomicBool,
    done: Mutex<bool>,
    wake: Condvar,
    /// Told when conflicting waiters queue behind us (`yields`).
    watcher: Mutex<Option<Box<dyn Fn() + Send>>>,
    behind: Mutex<Vec<Entry>>,
}

/// How often a watched lease looks for waiters behind it.
const WATCH_EVERY: Duration = Duration::from_millis(250);

/// Live conflicting waiters of our keys: any waiter of a key we write, a
/// writer of a key we read.
const WAITERS: &str = "SELECT key, host, pid, program, mode, \
     to_char(since AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"') \
     FROM dblaunch_holders h WHERE key = ANY($1) AND NOT granted \
     AND (mode = 'write' OR key = ANY($2)) \
     AND EXISTS (SELECT 1 FROM pg_stat_activity a WHERE a.pid = h.backend_pid AND a.backend_start = h.backend_start) \
     ORDER BY since";

/// What is left of a lease before the holder fences itself: the kill must
/// land before the lease can have run out for a waiter, allowing for the
/// kill's own latency and clock rate differences.
fn margin(lease: Duration) -> Duration {
    (lease / 6).max(Duration::from_millis(200))
}

pub fn boottime() -> Duration {
    clock_gettime(ClockId::CLOCK_BOOTTIME)
        .map(Duration::from)
        .unwrap_or_default()
}

impl PgLease {
    /// `client` holds the advisory locks; the grant's UPDATE was just sent
    /// on it, so that is the first successful renewal.
    pub fn start(
        client: Client,
        holder_id: String,
        modes: Vec<(String, Mode)>,
        tokens: Vec<(String, i64)>,
        lease: Duration,
        server: String,
        granted_at: Duration,
    ) -> PgLease {
        let shared = Arc::new(Shared {
            lease,
            server,
            last_ok: AtomicU64::new(granted_at.as_nanos() as u64),
            pgid: AtomicI32::new(0),
            single: AtomicBool::new(false),
            program: Mutex::new(String::new()),
            fenced: AtomicBool::new(false),
            done: Mutex::new(false),
            wake: Condvar::new(),
            watcher: Mutex::new(None),
            behind: Mutex::new(Vec::new()),
        });
        let (release, release_rx) = mpsc::channel();
        let (released_tx, released) = mpsc::channel();
        let keys = tokens.len() as u64;
        let renewer = Arc::clone(&shared);
        let spawned = std::thread::Builder::new()
            .name("dblaunch-lease".into())
            .spawn(move || {
                renew(
                    client,
                    &holder_id,
                    &modes,
                    keys,
                    &renewer,
                    release_rx,
                    released_tx,
                );
            });
        if let Err(e) = spawned {
            tracing::error!("cannot start the thread that renews the lease: {e}");
            shared.fenced.store(true, Ordering::SeqCst);
        }
        let watchdog = Arc::clone(&shared);
        let spawned = std::thread::Builder::new()
            .name("dblaunch-fence".into())
            .spawn(move || watch(&watchdog));
        if let Err(e) = spawned {
            tracing::error!("cannot start the lease watchdog: {e}");
            shared.fenced.store(true, Ordering::SeqCst);
        }
        PgLease {
            shared,
            tokens,
            release,
            released,
        }
    }
}

impl Lease for PgLease {
    fn tokens(&self) -> Vec<(String, i64)> {
        self.tokens.clone()
    }

    fn started(&self, fence: Fence, program: &str) {
        *self
            .shared
            .program
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = program.to_owned();
        let (pid, single) = match fence {
            Fence::Group(pgid) => (pgid, false),
            Fence::Process(pid) => (pid, true),
        };
        self.shared.single.store(single, Ordering::SeqCst);
        self.shared.pgid.store(pid, Ordering::SeqCst);
        // The watchdog may have fired before the program existed.
        if self.shared.fenced.load(Ordering::SeqCst) {
            kill(&self.shared, pid);
        }
    }

    fn release(self: Box<Self>) {
        {
            let mut done = self.shared.done.lock().unwrap_or_else(|p| p.into_inner());
            *done = true;
            self.shared.wake.notify_all();
        }
        let _ = self.release.send(());
        // The row goes and the lock is given back on the holding session;
        // a backend that is gone gets a lease's worth of waiting from the
        // next holder instead, so do not wait for it longer than that.
        let _ = self.released.recv_timeout(self.shared.lease);
    }

    fn watch_waiters(&self, wake: Box<dyn Fn() + Send>) {
        *self
            .shared
            .watcher
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = Some(wake);
    }

    fn waiters(&self) -> Vec<Entry> {
        self.shared
            .behind
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

fn renew(
    mut client: Client,
    holder_id: &str,
    modes: &[(String, Mode)],
    keys: u64,
    shared: &Shared,
    release: mpsc::Receiver<()>,
    released: mpsc::Sender<()>,
) {
    let every = shared.lease / 4;
    let mut broken = false;
    let mut next = std::time::Instant::now() + every;
    loop {
        let watched = shared
            .watcher
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_some();
        let now = std::time::Instant::now();
        let wait = next.saturating_duration_since(now);
        let wait = if watched { wait.min(WATCH_EVERY) } else { wait };
        match release.recv_timeout(wait) {
            Ok(()) | Err(mpsc::RecvTimeoutError::Disconnected) => break,
            Err(mpsc::RecvTimeoutError::Timeout) => {}
        }
        if broken {
            continue;
        }
        if watched {
            look_behind(&mut client, modes, shared);
        }
        if std::time::Instant::now() < next {
            continue;
        }
        next += every;
        let sent = boottime();
        match client.execute(
            "UPDATE dblaunch_holders SET last_beat = clock_timestamp() WHERE holder_id = $1 AND granted",
            &[&holder_id],
        ) {
            Ok(n) if n == keys => {
                shared
                    .last_ok
                    .store(sent.as_nanos() as u64, Ordering::SeqCst);
            }
            Ok(_) => {
                // Our rows were taken for a lost holder's: someone else may
                // be running already. Fence now.
                tracing::error!(
                    "the lock backend {} no longer lists this holder (another host took its place)",
                    shared.server
                );
                fence(shared);
                broken = true;
            }
            Err(e) => {
                tracing::warn!(
                    "cannot renew the lease with the lock backend {}: {e}; the program is killed if this lasts",
                    shared.server
                );
                broken = client.is_closed();
            }
        }
    }
    if !broken {
        let _ = client.execute(
            "DELETE FROM dblaunch_holders WHERE holder_id = $1",
            &[&holder_id],
        );
        let _ = client.batch_execute("SELECT pg_advisory_unlock_all()");
    }
    drop(client);
    let _ = released.send(());
}

/// Reads who waits behind us; tells the watcher when that changed and
/// someone does.
fn look_behind(client: &mut Client, modes: &[(String, Mode)], shared: &Shared) {
    let keys: Vec<&str> = modes.iter().map(|(k, _)| k.as_str()).collect();
    let written: Vec<&str> = modes
        .iter()
        .filter(|(_, m)| *m == Mode::Write)
        .map(|(k, _)| k.as_str())
        .collect();
    let Ok(rows) = client.query(WAITERS, &[&keys, &written]) else {
        return;
    };
    let now: Vec<Entry> = rows
        .into_iter()
        .map(|r| Entry {
            key: r.get(0),
            host: r.get(1),
            pid: r.get(2),
            program: r.get(3),
            mode: if r.get::<_, &str>(4) == "read" {
                Mode::Read
            } else {
                Mode::Write
            },
            holding: false,
            token: None,
            since: r.get(5),
            lost: false,
        })
        .collect();
    let changed = {
        let mut behind = shared.behind.lock().unwrap_or_else(|p| p.into_inner());
        let changed = *behind != now;
        *behind = now;
        changed && !behind.is_empty()
    };
    if changed {
        if let Some(wake) = &*shared.watcher.lock().unwrap_or_else(|p| p.into_inner()) {
            wake();
        }
    }
}

fn watch(shared: &Shared) {
    let mut done = shared.done.lock().unwrap_or_else(|p| p.into_inner());
    loop {
        if *done {
            return;
        }
        let last = Duration::from_nanos(shared.last_ok.load(Ordering::SeqCst));
        let deadline = last + shared.lease - margin(shared.lease);
        let now = boottime();
        if now >= deadline {
            drop(done);
            fence(shared);
            return;
        }
        done = shared
            .wake
            .wait_timeout(done, deadline - now)
            .unwrap_or_else(|p| p.into_inner())
            .0;
    }
}

/// Sends SIGKILL to what the lease protects: the program's group, or the
/// one process that locks for itself.
fn kill(shared: &Shared, pid: i32) {
    if shared.single.load(Ordering::SeqCst) {
        let _ = nix::sys::signal::kill(Pid::from_raw(pid), Signal::SIGKILL);
    } else {
        let _ = killpg(Pid::from_raw(pid), Signal::SIGKILL);
    }
}

/// Kills the program's group: past this point another host may be granted
/// the lock, and two writers must never overlap.
fn fence(shared: &Shared) {
    if shared.fenced.swap(true, Ordering::SeqCst) {
        return;
    }
    let pgid = shared.pgid.load(Ordering::SeqCst);
    let program = shared
        .program
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    let silent = humantime::format_duration(shared.lease - margin(shared.lease));
    if pgid > 0 {
        let what = if shared.single.load(Ordering::SeqCst) {
            format!("process {pgid}")
        } else {
            format!("its process group {pgid}")
        };
        tracing::error!(
            "{program}: killed (SIGKILL to {what}): its lease could not be renewed with the lock backend {} for {silent}, and another host may be granted the lock once the lease runs out",
            shared.server
        );
        kill(shared, pgid);
    } else {
        tracing::error!(
            "the lease could not be renewed with the lock backend {} for {silent}: nothing is started with it",
            shared.server
        );
    }
}
