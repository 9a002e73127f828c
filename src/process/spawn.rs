//! Spawning one program: its own process group, the lock descriptors it
//! must inherit, death with dblaunch, and the terminal when it is interactive.

use std::io;
use std::os::fd::RawFd;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{ChildStderr, ChildStdout, Command};

use crate::error::SpawnError;

/// How `dblaunch start` hands its detached run the pipe to report on.
pub const READY_FD_ENV: &str = "DBLAUNCH_READY_FD";

/// What the program's stdout and stderr are.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stdio {
    /// dblaunch's own, untouched (one program: it may be interactive).
    Inherit,
    /// Pipes, for prefixing (several programs).
    Piped,
}

/// Everything needed to start one program.
pub struct Launch<'a> {
    pub argv: &'a [String],
    pub cwd: Option<&'a Path>,
    pub env: &'a [(String, String)],
    /// Descriptors (the held lock tickets) the program must keep across exec.
    pub inherit: &'a [RawFd],
    /// Give the program the terminal on this descriptor as its foreground
    /// process group.
    pub terminal: Option<RawFd>,
    pub stdio: Stdio,
}

/// A started program. Its pid is also its process group id.
pub struct Child {
    pub pid: i32,
    pub stdout: Option<ChildStdout>,
    pub stderr: Option<ChildStderr>,
}

/// Starts the program. Spawn from a thread that lives as long as the
/// program: PR_SET_PDEATHSIG fires when the *thread* that forked exits.
pub fn spawn(launch: &Launch<'_>) -> Result<Child, SpawnError> {
    let shown = launch.argv.join(" ");
    let Some((program, args)) = launch.argv.split_first() else {
        return Err(SpawnError::NotFound { command: shown });
    };
    if let Some(cwd) = launch.cwd {
        if !cwd.is_dir() {
            return Err(SpawnError::MissingCwd {
                command: shown,
                cwd: cwd.to_path_buf(),
            });
        }
    }
    let mut cmd = Command::new(program);
    cmd.args(args);
    if let Some(cwd) = launch.cwd {
        cmd.current_dir(cwd);
    }
    cmd.envs(launch.env.iter().map(|(k, v)| (k, v)));
    // Internal to `dblaunch start`; the descriptor is not inherited either.
    cmd.env_remove(READY_FD_ENV);
    if launch.stdio == Stdio::Piped {
        cmd.stdout(std::process::Stdio::piped());
        cmd.stderr(std::process::Stdio::piped());
    }
    let parent = nix::unistd::getpid().as_raw();
    let fds = launch.inherit.to_vec();
    let terminal = launch.terminal;
    // SAFETY: the closure runs in the forked child before exec and only makes
    // async-signal-safe system calls (prctl and getppid in
    // platform::die_with_parent, setpgid, fcntl,
    // tcsetpgrp, signal, _exit) on values captured before the fork; it
    // allocates nothing.
    unsafe {
        cmd.pre_exec(move || {
            // Die with dblaunch (SIGKILL, OOM) so no program runs
            // unsupervised; if it is gone already, end here.
            if crate::platform::die_with_parent(parent).is_err() {
                libc::_exit(128 + libc::SIGKILL);
            }
            if libc::setpgid(0, 0) != 0 {
                return Err(io::Error::last_os_error());
            }
            // The lock tickets were opened close-on-exec like every file in
            // Rust; this program (and its children) must keep them, so that
            // the database stays locked exactly as long as they live.
            for &fd in &fds {
                let flags = libc::fcntl(fd, libc::F_GETFD);
                if flags < 0 || libc::fcntl(fd, libc::F_SETFD, flags & !libc::FD_CLOEXEC) < 0 {
                    return Err(io::Error::last_os_error());
                }
            }
            if let Some(tty) = terminal {
                // Become the terminal's foreground group, as a shell's job
                // does; SIGTTOU must be ignored to be allowed to.
                libc::signal(libc::SIGTTOU, libc::SIG_IGN);
                libc::tcsetpgrp(tty, libc::getpid());
                libc::signal(libc::SIGTTOU, libc::SIG_DFL);
                libc::signal(libc::SIGTTIN, libc::SIG_DFL);
            }
            Ok(())
        });
    }
    let child = cmd.spawn().map_err(|source| classify(shown, source))?;
    let pid = child.id() as i32;
    if let Some(tty) = terminal {
        // Also from this side, so that neither order of the race between
        // parent and child leaves the program in the background.
        let _ = nix::unistd::setpgid(
            nix::unistd::Pid::from_raw(pid),
            nix::unistd::Pid::from_raw(pid),
        );
        // SAFETY: tcsetpgrp only reads its arguments.
        unsafe {
            libc::tcsetpgrp(tty, pid);
        }
    }
    // The pid is reaped by the supervisor's waitpid loop, not through Child.
    let mut child = child;
    Ok(Child {
        pid,
        stdout: child.stdout.take(),
        stderr: child.stderr.take(),
    })
}

fn classify(command: String, source: io::Error) -> SpawnError {
    match source.raw_os_error() {
        Some(libc::ENOENT) => SpawnError::NotFound { command },
        Some(libc::EACCES | libc::ENOEXEC | libc::EISDIR | libc::EPERM) => {
            SpawnError::NotExecutable { command, source }
        }
        _ => SpawnError::Other { command, source },
    }
}
