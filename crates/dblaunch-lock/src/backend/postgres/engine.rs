//! The engine: a session per acquisition, the server's queue, the grant
//! and its fencing token; who holds and waits on every host.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use postgres::Client;
use postgres::error::SqlState;

use super::connect::Connector;
use super::schema::{CLASS, ensure_schema};
use super::{journal, lease};
use crate::backend::{Acquired, Backend, BackendError, Claim, Claimant, Config, Entry, Interrupt};
use crate::mode::Mode;

pub struct Postgres {
    connector: Arc<Connector>,
    lease: Duration,
    journal: journal::Writer,
}

impl Postgres {
    pub fn new(config: &Config) -> Result<Postgres, BackendError> {
        Ok(Postgres {
            connector: Arc::new(Connector::new(&config.url, config.lease)?),
            lease: config.lease,
            journal: journal::Writer::default(),
        })
    }

    fn failed(&self, e: &postgres::Error) -> BackendError {
        self.connector.classify(e)
    }

    /// One try: a session, a place in the server's queue, the grant. An
    /// error after the session was opened is `Lost` (worth another try
    /// while the wait allows).
    fn attempt(
        &self,
        claims: &[Claim],
        who: &Claimant,
        deadline: Option<Instant>,
        cancel: &Interrupt,
        on_wait: &mut dyn FnMut(&Claim, Vec<Entry>),
    ) -> Result<Acquired, Attempt> {
        let mut client = self
            .connector
            .connect(self.lease)
            .map_err(Attempt::Failed)?;
        let lost = |e: postgres::Error| Attempt::Lost(self.failed(&e));
        ensure_schema(&mut client).map_err(lost)?;
        let row = client
            .query_one(
                "SELECT pid, backend_start FROM pg_stat_activity WHERE pid = pg_backend_pid()",
                &[],
            )
            .map_err(lost)?;
        let backend_pid: i32 = row.get(0);
        let backend_start: std::time::SystemTime = row.get(1);
        static SERIAL: AtomicU64 = AtomicU64::new(0);
        let holder_id = format!(
            "{}/{}/{}/{}",
            who.host,
            who.pid,
            backend_pid,
            SERIAL.fetch_add(1, Ordering::Relaxed)
        );
        for claim in claims {
            client
                .execute(
                    "INSERT INTO dblaunch_holders (key, holder_id, mode, granted, host, pid, program, backend_pid, backend_start) \
                     VALUES ($1, $2, $3, false, $4, $5, $6, $7, $8)",
                    &[
                        &claim.key,
                        &holder_id,
                        &mode_name(claim.mode),
                        &who.host,
                        &who.pid,
                        &who.program,
                        &backend_pid,
                        &backend_start,
                    ],
                )
                .map_err(lost)?;
        }
        set_interrupt(cancel, Some(self.connector.canceller(&client)));
        let outcome =
            self.queue_and_grant(&mut client, &holder_id, claims, deadline, cancel, on_wait);
        set_interrupt(cancel, None);
        match outcome {
            Ok(Some((tokens, granted_at))) => {
                Ok(Acquired::Granted(Box::new(lease::PgLease::start(
                    client,
                    holder_id,
                    claims.iter().map(|c| (c.key.clone(), c.mode)).collect(),
                    tokens,
                    self.lease,
                    self.connector.server().to_owned(),
                    granted_at,
                ))))
            }
            Ok(None) | Err(Attempt::Busy(..)) if cancel.is_cancelled() => {
                leave(&mut client, &holder_id);
                Ok(Acquired::Busy {
                    claim: claims[0].clone(),
                    ahead: Vec::new(),
                })
            }
            Ok(None) => unreachable!("no grant without a cancel or busy"),
            Err(Attempt::Busy(claim, ahead)) => {
                leave(&mut client, &holder_id);
                Ok(Acquired::Busy { claim, ahead })
            }
            Err(e) => {
                leave(&mut client, &holder_id);
                Err(e)
            }
        }
    }

    /// Waits in the server's queue for each claim in turn, then waits out
    /// holders that vanished, then takes the fencing tokens. `None`: cancelled.
    fn queue_and_grant(
        &self,
        client: &mut Client,
        holder_id: &str,
        claims: &[Claim],
        deadline: Option<Instant>,
        cancel: &Interrupt,
        on_wait: &mut dyn FnMut(&Claim, Vec<Entry>),
    ) -> Result<Option<Grant>, Attempt> {
        let lost = |e: &postgres::Error| Attempt::Lost(self.failed(e));
        for claim in claims {
            if cancel.is_cancelled() {
                return Ok(None);
            }
            let (try_fn, wait_fn) = match claim.mode {
                Mode::Write => ("pg_try_advisory_lock", "pg_advisory_lock"),
                Mode::Read => ("pg_try_advisory_lock_shared", "pg_advisory_lock_shared"),
            };
            let got: bool = client
                .query_one(
                    &format!("SELECT {try_fn}($1, hashtext($2))"),
                    &[&CLASS, &claim.key],
                )
                .map_err(|e| lost(&e))?
                .get(0);
            if got {
                continue;
            }
            let ahead = self.ahead(client, &claim.key, holder_id);
            if deadline.is_some_and(|d| d <= Instant::now()) {
                return Err(Attempt::Busy(claim.clone(), ahead));
            }
            on_wait(claim, ahead);
            if let Some(d) = deadline {
                let ms = d
                    .saturating_duration_since(Instant::now())
                    .as_millis()
                    .max(1);
                client
                    .batch_execute(&format!("SET lock_timeout = {ms}"))
                    .map_err(|e| lost(&e))?;
            }
            let waited = client.query_one(
                &format!("SELECT {wait_fn}($1, hashtext($2))"),
                &[&CLASS, &claim.key],
            );
            match waited {
                Ok(_) => {}
                Err(e) if is_code(&e, &SqlState::LOCK_NOT_AVAILABLE) => {
                    let ahead = self.ahead(client, &claim.key, holder_id);
                    return Err(Attempt::Busy(claim.clone(), ahead));
                }
                Err(e) if is_code(&e, &SqlState::QUERY_CANCELED) && cancel.is_cancelled() => {
                    return Ok(None);
                }
                Err(e) => return Err(lost(&e)),
            }
            if deadline.is_some() {
                client
                    .batch_execute("SET lock_timeout = 0")
                    .map_err(|e| lost(&e))?;
            }
        }
        // Rows of holders in a conflicting mode while we hold the advisory
        // locks can only be holders whose session ended without a release
        // (a crash, a partition): their program may run on until it fences
        // itself, at most `lease` after its last renewal, which was sent
        // before the server let us in. Wait that long by our own clock.
        let mut orphans: Vec<(String, Entry)> = Vec::new();
        for claim in claims {
            let rows = client
                .query(
                    "SELECT holder_id, host, pid, program, mode, token, \
                     to_char(since AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"') \
                     FROM dblaunch_holders WHERE key = $1 AND granted AND holder_id <> $2",
                    &[&claim.key, &holder_id],
                )
                .map_err(|e| lost(&e))?;
            for r in rows {
                let mode = mode_of(r.get(4));
                if mode.conflicts_with(claim.mode) {
                    orphans.push((
                        r.get(0),
                        Entry {
                            key: claim.key.clone(),
                            host: r.get(1),
                            pid: r.get(2),
                            program: r.get(3),
                            mode,
                            holding: true,
                            token: r.get(5),
                            since: r.get(6),
                            lost: true,
                        },
                    ));
                }
            }
        }
        if !orphans.is_empty() {
            let names: Vec<String> = orphans
                .iter()
                .map(|(_, e)| format!("{} (pid {}) on host {}", e.program, e.pid, e.host))
                .collect();
            if deadline.is_some_and(|d| d < Instant::now() + self.lease) {
                let claim = claims
                    .iter()
                    .find(|c| c.key == orphans[0].1.key)
                    .cloned()
                    .unwrap_or_else(|| claims[0].clone());
                return Err(Attempt::Busy(
                    claim,
                    orphans.into_iter().map(|(_, e)| e).collect(),
                ));
            }
            tracing::warn!(
                "{} did not release {} cleanly (a crash or a lost network); waiting out its lease of {} before starting anything",
                names.join(", "),
                orphans[0].1.key,
                humantime::format_duration(self.lease)
            );
            // A statement keeps the session busy (an idle one could be
            // ended by idle_session_timeout) and a cancel can cut it short.
            let slept = client.execute("SELECT pg_sleep($1)", &[&self.lease.as_secs_f64()]);
            match slept {
                Ok(_) => {}
                Err(e) if is_code(&e, &SqlState::QUERY_CANCELED) && cancel.is_cancelled() => {
                    return Ok(None);
                }
                Err(e) => return Err(lost(&e)),
            }
            let ids: Vec<String> = orphans.into_iter().map(|(id, _)| id).collect();
            client
                .execute(
                    "DELETE FROM dblaunch_holders WHERE holder_id = ANY($1)",
                    &[&ids],
                )
                .map_err(|e| lost(&e))?;
        }
        if cancel.is_cancelled() {
            return Ok(None);
        }
        // The grant is the lease's first renewal: it counts from its send.
        let granted_at = lease::boottime();
        let mut tokens = Vec::new();
        for claim in claims {
            let token: i64 = client
                .query_one(
                    "UPDATE dblaunch_holders SET granted = true, token = nextval('dblaunch_fencing'), \
                     since = clock_timestamp(), last_beat = clock_timestamp() \
                     WHERE key = $1 AND holder_id = $2 RETURNING token",
                    &[&claim.key, &holder_id],
                )
                .map_err(|e| lost(&e))?
                .get(0);
            tokens.push((claim.key.clone(), token));
        }
        Ok(Some((tokens, granted_at)))
    }

    /// Who else holds or waits for `key`, as far as it can be read now.
    fn ahead(&self, client: &mut Client, key: &str, me: &str) -> Vec<Entry> {
        read_entries(client, &[key.to_owned()], Some(me)).unwrap_or_default()
    }
}

/// The fencing token of each key, and when the grant was sent (on
/// CLOCK_BOOTTIME): the lease's first renewal.
type Grant = (Vec<(String, i64)>, Duration);

enum Attempt {
    /// Could not start (connect, login): final.
    Failed(BackendError),
    /// The session broke after it was opened: worth another try.
    Lost(BackendError),
    Busy(Claim, Vec<Entry>),
}

impl Backend for Postgres {
    fn server(&self) -> String {
        self.connector.server().to_owned()
    }

    fn acquire(
        &self,
        claims: &[Claim],
        who: &Claimant,
        deadline: Option<Instant>,
        cancel: &Interrupt,
        on_wait: &mut dyn FnMut(&Claim, Vec<Entry>),
    ) -> Result<Acquired, BackendError> {
        let mut warned = false;
        loop {
            match self.attempt(claims, who, deadline, cancel, on_wait) {
                Ok(a) => return Ok(a),
                Err(Attempt::Busy(claim, ahead)) => return Ok(Acquired::Busy { claim, ahead }),
                // A login refused, a database missing, a table that may not
                // be created: final. A connection that broke is tried again
                // (once one was made: a server that cannot be reached at
                // all is an error at once).
                Err(Attempt::Failed(e)) if !warned => return Err(e),
                Err(Attempt::Failed(e) | Attempt::Lost(e))
                    if !matches!(e, BackendError::Unreachable { .. }) =>
                {
                    return Err(e);
                }
                Err(Attempt::Failed(e) | Attempt::Lost(e)) => {
                    // Lost while waiting: keep trying until the wait runs out.
                    if !warned {
                        tracing::warn!("{e}; trying again until the wait runs out");
                        warned = true;
                    }
                    let retry_at = Instant::now() + Duration::from_millis(500);
                    if deadline.is_some_and(|d| d <= retry_at) {
                        return Err(e);
                    }
                    while Instant::now() < retry_at {
                        if cancel.is_cancelled() {
                            return Ok(Acquired::Busy {
                                claim: claims[0].clone(),
                                ahead: Vec::new(),
                            });
                        }
                        std::thread::sleep(Duration::from_millis(50));
                    }
                }
            }
        }
    }

    fn entries(&self, keys: &[String]) -> Result<Vec<Entry>, BackendError> {
        let mut client = self.connector.connect(self.lease)?;
        ensure_schema(&mut client).map_err(|e| self.failed(&e))?;
        read_entries(&mut client, keys, None).map_err(|e| self.failed(&e))
    }

    fn record(&self, key: &str, line: &str) {
        self.journal.record(&self.connector, self.lease, key, line);
    }

    fn flush(&self, within: Duration) {
        self.journal.flush(within);
    }

    fn journal(&self, keys: &[String]) -> Result<Vec<(String, String)>, BackendError> {
        let mut client = self.connector.connect(self.lease)?;
        ensure_schema(&mut client).map_err(|e| self.failed(&e))?;
        journal::read(&mut client, keys).map_err(|e| self.failed(&e))
    }
}

/// Holders (live or lost) and live waiters of `keys`, holders first, each
/// queue in arrival order. Waiter rows of sessions that ended are removed.
fn read_entries(
    client: &mut Client,
    keys: &[String],
    except: Option<&str>,
) -> Result<Vec<Entry>, postgres::Error> {
    client.execute(
        "DELETE FROM dblaunch_holders h WHERE key = ANY($1) AND NOT granted AND NOT EXISTS \
         (SELECT 1 FROM pg_stat_activity a WHERE a.pid = h.backend_pid AND a.backend_start = h.backend_start)",
        &[&keys],
    )?;
    let rows = client.query(
        "SELECT key, host, pid, program, mode, granted, token, \
         to_char(since AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'), \
         EXISTS (SELECT 1 FROM pg_stat_activity a WHERE a.pid = h.backend_pid AND a.backend_start = h.backend_start), \
         holder_id \
         FROM dblaunch_holders h WHERE key = ANY($1) ORDER BY key, granted DESC, since",
        &[&keys],
    )?;
    Ok(rows
        .into_iter()
        .filter(|r| except != Some(r.get::<_, &str>(9)))
        .map(|r| {
            let live: bool = r.get(8);
            Entry {
                key: r.get(0),
                host: r.get(1),
                pid: r.get(2),
                program: r.get(3),
                mode: mode_of(r.get(4)),
                holding: r.get(5),
                token: r.get(6),
                since: r.get(7),
                lost: !live,
            }
        })
        .collect())
}

/// Gives up a place without a grant: rows first, then the session.
fn leave(client: &mut Client, holder_id: &str) {
    let _ = client.execute(
        "DELETE FROM dblaunch_holders WHERE holder_id = $1",
        &[&holder_id],
    );
    let _ = client.batch_execute("SELECT pg_advisory_unlock_all()");
}

fn set_interrupt(cancel: &Interrupt, f: Option<Box<dyn Fn() + Send>>) {
    *cancel.interrupt.lock().unwrap_or_else(|p| p.into_inner()) = f;
}

fn is_code(e: &postgres::Error, code: &SqlState) -> bool {
    e.code() == Some(code)
}

fn mode_name(m: Mode) -> &'static str {
    match m {
        Mode::Read => "read",
        Mode::Write => "write",
    }
}

fn mode_of(s: &str) -> Mode {
    if s == "read" { Mode::Read } else { Mode::Write }
}
