//! The cross-host lock: the seam between dblaunch and a coordination
//! engine shared by several machines (SPEC.md §8).
//!
//! A database with a backend is locked in two places, in one global order:
//! first on the host, by the kernel lock queue of `crate::lock` (so local
//! users, crash safety and leftovers work exactly as without a backend),
//! then here. The supervisor sees only [`Backend`] and [`Lease`]; PostgreSQL
//! is the first engine, and another (etcd) implements the same two traits
//! without touching the supervisor or the local lock.

mod postgres;

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use crate::mode::Mode;

/// `DBLAUNCH_BACKEND`: a backend URL; overrides the manifest's.
pub const BACKEND_ENV: &str = "DBLAUNCH_BACKEND";
/// `DBLAUNCH_LEASE`: overrides the manifest's `lease`.
pub const LEASE_ENV: &str = "DBLAUNCH_LEASE";
/// The default lease (SPEC.md §8).
pub const DEFAULT_LEASE: Duration = Duration::from_secs(10);

/// Where the backend is and how long a lease lasts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    pub url: String,
    pub lease: Duration,
}

impl Config {
    /// The backend configuration: the environment over the manifest's
    /// `[backend]`; `None` when neither names one (local locks only).
    pub fn resolve(manifest: Option<&Config>) -> Result<Option<Config>, String> {
        let url = match std::env::var(BACKEND_ENV) {
            Ok(u) if !u.trim().is_empty() => Some(u),
            _ => manifest.map(|c| c.url.clone()),
        };
        let Some(url) = url else {
            return Ok(None);
        };
        let lease = match std::env::var(LEASE_ENV) {
            Ok(l) if !l.trim().is_empty() => {
                parse_lease(&l).map_err(|e| format!("{LEASE_ENV}={l:?} is not a lease: {e}"))?
            }
            _ => manifest.map_or(DEFAULT_LEASE, |c| c.lease),
        };
        Ok(Some(Config { url, lease }))
    }

    /// Connects to the engine the URL names.
    pub fn open(&self) -> Result<Arc<dyn Backend>, BackendError> {
        let scheme = self.url.split("://").next().unwrap_or_default();
        match scheme {
            "postgres" | "postgresql" => Ok(Arc::new(postgres::Postgres::new(self)?)),
            _ if !self.url.contains("://") && self.url.contains('=') => {
                // libpq's key=value form ("host=… dbname=…").
                Ok(Arc::new(postgres::Postgres::new(self)?))
            }
            other => Err(BackendError::Config {
                server: redact(&self.url),
                what: format!(
                    "`{other}` is not a backend dblaunch knows; the backend is PostgreSQL: postgres://USER@HOST/DATABASE"
                ),
            }),
        }
    }
}

/// A lease as written: humantime ("10s", "1m"), at least one second.
pub fn parse_lease(text: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(text.trim()).map_err(|e| e.to_string())?;
    if d < Duration::from_secs(1) {
        return Err(
            "a lease must be at least 1s: the holder renews it four times a lease over the network"
                .into(),
        );
    }
    Ok(d)
}

/// A URL with its password replaced, for messages.
pub fn redact(url: &str) -> String {
    // postgres://user:password@host… → postgres://user@host…
    let mut out = url.to_owned();
    if let Some(scheme_end) = out.find("://") {
        let rest_start = scheme_end + 3;
        let authority_end = out[rest_start..]
            .find(['/', '?'])
            .map_or(out.len(), |i| rest_start + i);
        if let Some(at) = out[rest_start..authority_end].rfind('@') {
            let userinfo = &out[rest_start..rest_start + at];
            if let Some(colon) = userinfo.find(':') {
                out.replace_range(rest_start + colon..rest_start + at, "");
            }
        }
    }
    // …?password=… and key=value "password=…"
    let mut cleaned = String::with_capacity(out.len());
    let mut rest = out.as_str();
    loop {
        let end = rest.find(['&', ' ', '?']).unwrap_or(rest.len());
        let part = &rest[..end];
        cleaned.push_str(if part.starts_with("password=") {
            "password=***"
        } else {
            part
        });
        if end == rest.len() {
            break;
        }
        cleaned.push_str(&rest[end..end + 1]);
        rest = &rest[end + 1..];
    }
    cleaned
}

/// One database's claim in the backend.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Claim {
    pub key: String,
    pub mode: Mode,
}

/// Who a claim belongs to, as other hosts see it.
#[derive(Clone, Debug)]
pub struct Claimant {
    pub host: String,
    pub pid: i32,
    pub program: String,
}

/// A holder or waiter of a key, on any host.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Entry {
    pub key: String,
    pub host: String,
    pub pid: i32,
    pub program: String,
    pub mode: Mode,
    pub holding: bool,
    /// The fencing token of a grant.
    pub token: Option<i64>,
    /// When it queued or was granted, as the server's clock has it.
    pub since: String,
    /// Its session is gone but its row stays: a holder that did not release
    /// cleanly (crash, partition); it is waited out by the next holder.
    pub lost: bool,
}

/// Asks an acquisition to stop; shared with the thread that acquires.
#[derive(Default)]
pub struct Interrupt {
    pub cancelled: AtomicBool,
    /// How to interrupt a wait in progress (the engine's own cancel).
    pub interrupt: std::sync::Mutex<Option<Box<dyn Fn() + Send>>>,
}

impl Interrupt {
    pub fn is_cancelled(&self) -> bool {
        self.cancelled.load(std::sync::atomic::Ordering::Acquire)
    }

    pub fn cancel(&self) {
        self.cancelled
            .store(true, std::sync::atomic::Ordering::Release);
        let guard = self.interrupt.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(f) = guard.as_ref() {
            f();
        }
    }
}

/// A coordination engine shared by several hosts.
pub trait Backend: Send + Sync {
    /// The server, for messages (never with a password).
    fn server(&self) -> String;
    /// Takes every claim (sorted by key), waiting behind earlier claimants
    /// of every host until `deadline` (none: as long as it takes) or a
    /// cancel. `on_wait` hears who is ahead each time it starts waiting.
    fn acquire(
        &self,
        claims: &[Claim],
        who: &Claimant,
        deadline: Option<Instant>,
        cancel: &Interrupt,
        on_wait: &mut dyn FnMut(&Claim, Vec<Entry>),
    ) -> Result<Acquired, BackendError>;
    /// Holders and waiters of these keys on every host, holders first.
    fn entries(&self, keys: &[String]) -> Result<Vec<Entry>, BackendError>;
    /// Sends a journal line of `key` (SPEC.md §9), without waiting for it.
    fn record(&self, key: &str, line: &str);
    /// Waits, at most `within`, until the lines recorded so far are stored.
    fn flush(&self, within: Duration);
    /// Every host's journal lines of these keys, oldest first, as
    /// (key, line).
    fn journal(&self, keys: &[String]) -> Result<Vec<(String, String)>, BackendError>;
}

/// The outcome of [`Backend::acquire`].
pub enum Acquired {
    Granted(Box<dyn Lease>),
    /// The deadline passed (or a cancel came) while `entries` were ahead.
    Busy {
        claim: Claim,
        ahead: Vec<Entry>,
    },
}

/// Claims granted by a backend, kept alive (renewed) while held.
pub trait Lease: Send {
    /// The fencing token of each key: strictly increasing over the grants of
    /// a key, for storage that checks them.
    fn tokens(&self) -> Vec<(String, i64)>;
    /// The program that now uses the claims, which is killed (its process
    /// group, or the one process, as `fence` says) if the lease cannot be
    /// renewed in time.
    fn started(&self, fence: Fence, program: &str);
    /// Lets go (the program has ended).
    fn release(self: Box<Self>);
    /// From now on, calls `wake` whenever the claimants queued behind this
    /// lease in a conflicting mode (on any host) change and some remain,
    /// within about a quarter of a second (for `yields`).
    fn watch_waiters(&self, wake: Box<dyn Fn() + Send>);
    /// Who waits behind this lease in a conflicting mode, as last seen.
    fn waiters(&self) -> Vec<Entry>;
}

/// What a lease that can no longer be renewed kills, before another host
/// may be granted the lock: two holders must never overlap.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fence {
    /// A program's process group: what the launcher starts.
    Group(i32),
    /// One process: a program that locks for itself.
    Process(i32),
}

/// The backend cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    #[error(
        "cannot reach the lock backend {server}: {what}; check that the server runs and that [backend] url (or {BACKEND_ENV}) names it. Nothing was started"
    )]
    Unreachable { server: String, what: String },

    #[error(
        "the lock backend {server} refused dblaunch: {what}; check the user, the password (in the URL or PGPASSWORD; ~/.pgpass is not read) and the database name. Nothing was started"
    )]
    Refused { server: String, what: String },

    #[error("the lock backend {server} cannot be used: {what}. Nothing was started")]
    Config { server: String, what: String },

    #[error("the lock backend {server} failed: {what}; the locks taken so far were given back")]
    Failed { server: String, what: String },
}

impl fmt::Display for Entry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let verb = match (self.holding, self.lost) {
            (true, true) => "held it and lost the backend (its lease is waited out)",
            (true, false) => "holds it",
            (false, _) => "is queued ahead",
        };
        write!(
            f,
            "{} (pid {}) on host {} {verb} for {} since {}",
            self.program, self.pid, self.host, self.mode, self.since
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_never_show() {
        assert_eq!(
            redact("postgres://ops:s3cret@db.internal:5432/locks?sslmode=require"),
            "postgres://ops@db.internal:5432/locks?sslmode=require"
        );
        assert_eq!(
            redact("postgres://ops@db/locks?password=s3cret&sslmode=require"),
            "postgres://ops@db/locks?password=***&sslmode=require"
        );
        assert_eq!(
            redact("host=db user=ops password=s3cret dbname=locks"),
            "host=db user=ops password=*** dbname=locks"
        );
        assert_eq!(redact("postgres://db/locks"), "postgres://db/locks");
    }

    #[test]
    fn a_lease_is_at_least_a_second() {
        assert_eq!(parse_lease("3s"), Ok(Duration::from_secs(3)));
        assert!(parse_lease("500ms").is_err());
        assert!(parse_lease("soon").is_err());
    }
}
