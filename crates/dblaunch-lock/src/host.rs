//! This host's name, as records, the journal and the lock backend report
//! it: `DBLAUNCH_HOST` when set (several hosts that share one machine, or a
//! name other hosts know this one by), else the system's host name. Read
//! once per process, so every part of dblaunch agrees.

use std::sync::OnceLock;

/// The variable that names this host for dblaunch.
pub const HOST_ENV: &str = "DBLAUNCH_HOST";

/// This host's name (see the module's documentation).
pub fn name() -> &'static str {
    static NAME: OnceLock<String> = OnceLock::new();
    NAME.get_or_init(|| match std::env::var(HOST_ENV) {
        Ok(h) if !h.trim().is_empty() => h,
        _ => nix::unistd::gethostname()
            .ok()
            .and_then(|h| h.into_string().ok())
            .unwrap_or_else(|| "unknown-host".to_owned()),
    })
}
