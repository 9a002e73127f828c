//! A program's process group: signalling all of it, knowing when it is empty,
//! and reaping whatever dblaunch is the parent (or subreaper) of.

use nix::errno::Errno;
use nix::sys::signal::{Signal, killpg};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;

/// A process group led by a program dblaunch started. Kill targets are typed:
/// this is always the whole group, never a single pid.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Group(pub i32);

impl Group {
    /// Sends `signal` to every process in the group. False if none is left.
    pub fn signal(self, signal: i32) -> bool {
        let Ok(sig) = Signal::try_from(signal) else {
            return false;
        };
        !matches!(killpg(Pid::from_raw(self.0), sig), Err(Errno::ESRCH))
    }

    /// Whether any process (zombies included) is still in the group.
    pub fn exists(self) -> bool {
        !matches!(killpg(Pid::from_raw(self.0), None), Err(Errno::ESRCH))
    }
}

/// How a process ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExitKind {
    Code(i32),
    Signal(i32),
}

impl ExitKind {
    /// The shell's convention: the code, or 128 + the signal.
    pub fn status(self) -> u8 {
        match self {
            ExitKind::Code(c) => (c & 0xff) as u8,
            ExitKind::Signal(s) => (128 + s).clamp(0, 255) as u8,
        }
    }
}

/// Reaps every child that has ended, without blocking.
pub fn reap_exited() -> Vec<(i32, ExitKind)> {
    let mut ended = Vec::new();
    loop {
        match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::Exited(pid, code)) => ended.push((pid.as_raw(), ExitKind::Code(code))),
            Ok(WaitStatus::Signaled(pid, sig, _)) => {
                ended.push((pid.as_raw(), ExitKind::Signal(sig as i32)))
            }
            Ok(WaitStatus::StillAlive) | Err(Errno::ECHILD) => break,
            Ok(_) => continue,
            Err(Errno::EINTR) => continue,
            Err(_) => break,
        }
    }
    ended
}
