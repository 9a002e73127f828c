//! Where the lock backend is and how long a lease lasts: the manifest's
//! `[backend]`, with the environment over it.

use std::time::Duration;

use super::url::BACKEND_ENV;

/// `DBLAUNCH_LEASE`: overrides the manifest's `lease`.
pub const LEASE_ENV: &str = "DBLAUNCH_LEASE";
/// The default lease.
pub const DEFAULT_LEASE: Duration = Duration::from_secs(10);

/// Where the backend is and how long a lease lasts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// The server, as a libpq-style URL (`postgres://USER@HOST/DATABASE`)
    /// or key=value string.
    pub url: String,
    /// How long a holder that lost the backend may still run.
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lease_is_at_least_a_second() {
        assert_eq!(parse_lease("3s"), Ok(Duration::from_secs(3)));
        assert!(parse_lease("500ms").is_err());
        assert!(parse_lease("soon").is_err());
    }
}
