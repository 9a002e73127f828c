//! What the supervisor is asked to run: each program (`Spec`) and how the
//! run behaves (`Options`), and the restart back-off.

use std::path::PathBuf;
use std::time::Duration;

use dblaunch_lock::Request;

/// One program to run.
#[derive(Clone, Debug)]
pub struct Spec {
    pub name: String,
    pub argv: Vec<String>,
    pub cwd: Option<PathBuf>,
    pub env: Vec<(String, String)>,
    pub locks: Vec<Request>,
    /// A program that locks for itself, per operation (`hold =
    /// "on-demand"`): the databases it declares, which `ps` looks up. dblaunch
    /// takes none of them for it (`locks` is empty), so it starts at once.
    pub locks_itself: Option<Vec<Request>>,
    /// Indices (into the run's specs) of programs that must exit 0 first.
    pub after: Vec<usize>,
    pub stop_signal: i32,
    pub restart: crate::manifest::Restart,
    pub max_restarts: u32,
    /// Give way to anyone who queues for its databases in a conflicting
    /// mode: stop gracefully, queue again behind them, come back.
    pub yields: bool,
    /// The dev loop: what it needs, when it is up, what restarts it.
    pub dev: Dev,
}

/// A program's part in the dev loop (`needs`, `ready`, `watch`); nothing
/// for `exec`.
#[derive(Clone, Debug, Default)]
pub struct Dev {
    /// Indices (into the run's specs) of programs that must be running and
    /// ready before it starts, and that are stopped only after it.
    pub needs: Vec<usize>,
    pub ready: Option<Box<crate::manifest::Ready>>,
    /// `None` also with `run --no-watch`.
    pub watch: Option<Box<crate::manifest::Watch>>,
    /// In the run only because another program needs it: stopped once
    /// every other program has ended.
    pub needed_only: bool,
}

/// A run at least this long resets the count of consecutive restarts.
pub(super) const STABLE_RUN: Duration = Duration::from_secs(10);

/// The delay before the `n`th consecutive restart: 100 ms, doubling, at
/// most 30 s.
pub fn backoff(n: u32) -> Duration {
    let ms = 100u64.saturating_mul(1 << n.saturating_sub(1).min(20));
    Duration::from_millis(ms.min(30_000))
}

/// How a run behaves.
pub struct Options {
    pub stop_timeout: Duration,
    /// Queueing limit per program; `None` waits as long as it takes.
    pub wait: Option<Duration>,
    /// Lifecycle lines (started, exited) at info level; otherwise debug.
    pub announce: bool,
    /// The project directory: listen there for `dblaunch stop`.
    pub control: Option<PathBuf>,
    /// A detached run: program output goes to `NAME.log` files here.
    pub logs: Option<PathBuf>,
    /// A detached run: tell `dblaunch start` here how each program started,
    /// then close it.
    pub ready: Option<std::fs::File>,
    /// The lock backend shared with other hosts, for keyed databases.
    pub remote: Option<dblaunch_lock::Remote>,
    /// Speak systemd's notify protocol when `$NOTIFY_SOCKET` is set (READY=1,
    /// STOPPING=1), and keep that socket from the programs (`run`; `exec`
    /// passes it on to its one program). The supervisor clears it when the
    /// variable is not set, so that nothing is hidden for nothing.
    pub systemd: bool,
}

impl Options {
    /// dblaunch's own variables that its programs do not get.
    pub(super) fn hidden_env(&self) -> &'static [&'static str] {
        if self.systemd {
            &[crate::sdnotify::NOTIFY_SOCKET]
        } else {
            &[]
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    pub(super) fn backoff_doubles_from_100ms_up_to_30s() {
        assert_eq!(backoff(1), Duration::from_millis(100));
        assert_eq!(backoff(2), Duration::from_millis(200));
        assert_eq!(backoff(4), Duration::from_millis(800));
        assert_eq!(backoff(9), Duration::from_millis(25_600));
        assert_eq!(backoff(10), Duration::from_secs(30));
        assert_eq!(backoff(1000), Duration::from_secs(30));
    }
}
