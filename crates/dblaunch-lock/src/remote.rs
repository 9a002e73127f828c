//! The cross-host part of an acquisition: once every host-local lock is
//! held, the keyed databases are claimed in the lock backend, in key order
//! (the backend's one global order, after the host's own).

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use crate::backend::{
    Acquired, Backend, BackendError, Claim, Claimant, Config, Interrupt, Lease, redact,
};
use crate::error::LockError;
use crate::holder::Holder;
use crate::mode::Mode;
use crate::request::Request;

/// The lock backend every keyed request also goes through, and who we are
/// to the other hosts.
#[derive(Clone)]
pub struct Remote {
    /// The engine.
    pub backend: Arc<dyn Backend>,
    /// This host's name, as the other hosts see it.
    pub host: String,
}

/// Who is ahead in the backend, last reported: the database, the mode and
/// the holders.
pub(crate) type Ahead = Mutex<Option<(PathBuf, Mode, Vec<Holder>)>>;

impl Remote {
    /// Connects to the engine `config` names, as this host.
    pub fn connect(config: &Config) -> Result<Remote, BackendError> {
        Ok(Remote {
            backend: open(config)?,
            host: crate::host::name().to_owned(),
        })
    }

    /// Takes the backend's claims for the keyed `requests` on behalf of
    /// `program`. `deadline`: `Some(now)` to try once, `None` to wait as long
    /// as it takes. `ahead` and `on_wait` hear who is ahead each time the
    /// backend starts waiting. `Ok(None)`: cancelled.
    pub(crate) fn acquire(
        &self,
        requests: &[Request],
        program: &str,
        deadline: Option<Instant>,
        cancel: &Interrupt,
        ahead: &Ahead,
        mut on_wait: impl FnMut(PathBuf, Mode, Vec<Holder>),
    ) -> Result<Option<Box<dyn Lease>>, LockError> {
        let claims = claims(requests);
        let who = Claimant {
            host: self.host.clone(),
            pid: std::process::id() as i32,
            program: program.to_owned(),
        };
        let outcome =
            self.backend
                .acquire(&claims, &who, deadline, cancel, &mut |claim, entries| {
                    let holders: Vec<Holder> = entries.into_iter().map(Holder::Remote).collect();
                    *ahead.lock().unwrap_or_else(|p| p.into_inner()) =
                        Some((database_of(requests, claim), claim.mode, holders.clone()));
                    on_wait(database_of(requests, claim), claim.mode, holders);
                })?;
        match outcome {
            Acquired::Granted(lease) => Ok(Some(lease)),
            Acquired::Busy { claim, ahead } => {
                if cancel.is_cancelled() {
                    return Ok(None);
                }
                Err(LockError::Busy {
                    database: database_of(requests, &claim),
                    mode: claim.mode,
                    holders: ahead.into_iter().map(Holder::Remote).collect(),
                    waited: Default::default(),
                    limit: Default::default(),
                })
            }
        }
    }
}

/// The engine `config`'s URL names: PostgreSQL (`postgres://…`, or libpq's
/// `key=value` form).
fn open(config: &Config) -> Result<Arc<dyn Backend>, BackendError> {
    let scheme = config.url.split("://").next().unwrap_or_default();
    let postgres = matches!(scheme, "postgres" | "postgresql")
        || (!config.url.contains("://") && config.url.contains('='));
    if !postgres {
        return Err(BackendError::Config {
            server: redact(&config.url),
            what: format!(
                "`{scheme}` is not a backend dblaunch knows; the backend is PostgreSQL: postgres://USER@HOST/DATABASE"
            ),
        });
    }
    #[cfg(feature = "postgres")]
    {
        Ok(Arc::new(crate::backend::Postgres::new(config)?))
    }
    #[cfg(not(feature = "postgres"))]
    {
        Err(BackendError::Config {
            server: redact(&config.url),
            what: "this build of dblaunch has no PostgreSQL backend (the lock crate's `postgres` feature is off)".to_owned(),
        })
    }
}

/// The backend claims of `requests`: the keyed ones, in key order; one key
/// named by two databases is claimed once, in the stronger mode.
fn claims(requests: &[Request]) -> Vec<Claim> {
    let mut claims: Vec<Claim> = requests
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
        if a.key == b.key {
            a.mode = a.mode.max(b.mode);
            true
        } else {
            false
        }
    });
    claims
}

/// The database a claim stands for, to name in messages.
fn database_of(requests: &[Request], claim: &Claim) -> PathBuf {
    requests
        .iter()
        .find(|r| r.key.as_deref() == Some(&claim.key))
        .map_or_else(|| PathBuf::from(&claim.key), |r| r.db.path().to_path_buf())
}
