//! Spawning one program: its own process group, the lock descriptors it
//! must inherit, death with dblaunch, and the terminal when it is interactive.

use std::ffi::{CString, OsString};
use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::process::{ChildStderr, ChildStdout};
use std::ptr;

use nix::fcntl::OFlag;
use nix::sys::signal::{SigSet, SigmaskHow, pthread_sigmask};

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
    /// Its start time in clock ticks after boot (as `/proc/PID/stat` says),
    /// known without reading `/proc` (see [`procfs::start_time_between`]);
    /// `None` if it must be read there.
    ///
    /// [`procfs::start_time_between`]: crate::procfs::start_time_between
    pub start_time: Option<u64>,
    pub stdout: Option<ChildStdout>,
    pub stderr: Option<ChildStderr>,
}

/// Starts the program. Spawn from a thread that lives as long as the
/// program: PR_SET_PDEATHSIG fires when the *thread* that forked exits.
///
/// The child is made with `clone(CLONE_VM | CLONE_VFORK)`, as glibc's
/// posix_spawn does, not with fork: it shares dblaunch's memory until it
/// execs, so no page tables are copied and no page is faulted in twice, and
/// its exec error comes back through that memory instead of a socket.
/// posix_spawn itself cannot be used: it has no way to set PR_SET_PDEATHSIG.
pub fn spawn(launch: &Launch<'_>) -> Result<Child, SpawnError> {
    let shown = launch.argv.join(" ");
    let Some(program) = launch.argv.first() else {
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
    let other = |source| SpawnError::Other {
        command: shown.clone(),
        source,
    };
    let prepared = Prepared::new(launch, program).map_err(other)?;
    let (out, err) = match launch.stdio {
        Stdio::Inherit => (None, None),
        Stdio::Piped => (
            Some(nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(|e| other(e.into()))?),
            Some(nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(|e| other(e.into()))?),
        ),
    };
    let mut child = ChildSetup {
        parent: nix::unistd::getpid().as_raw(),
        candidates: prepared.candidates_ptrs(),
        argv: prepared.argv_ptrs(),
        envp: prepared.envp_ptrs(),
        cwd: prepared.cwd.as_ref().map_or(ptr::null(), |c| c.as_ptr()),
        inherit: launch.inherit,
        terminal: launch.terminal.unwrap_or(-1),
        stdout: out.as_ref().map_or(-1, |(_, w)| w.as_raw_fd()),
        stderr: err.as_ref().map_or(-1, |(_, w)| w.as_raw_fd()),
        error: 0,
    };
    let before = crate::procfs::boot_clock();
    let pid = clone_vfork(&mut child).map_err(other)?;
    let start_time = crate::procfs::start_time_between(before, crate::procfs::boot_clock());
    if child.error != 0 {
        // The child wrote its error and exited without exec; reap it here,
        // so the supervisor never sees a pid it did not start.
        let _ = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(pid), None);
        return Err(classify(shown, io::Error::from_raw_os_error(child.error)));
    }
    if let Some(tty) = launch.terminal {
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
    // The write ends close here: the program holds the only copies.
    Ok(Child {
        pid,
        start_time,
        stdout: out.map(|(r, _)| ChildStdout::from(r)),
        stderr: err.map(|(r, _)| ChildStderr::from(r)),
    })
}

/// Everything the child needs, as C strings made before the clone: the child
/// may not allocate.
struct Prepared {
    /// Where to look for the program, in order (several for a bare name
    /// searched in PATH, as execvp does).
    candidates: Vec<CString>,
    argv: Vec<CString>,
    envp: Vec<CString>,
    cwd: Option<CString>,
}

impl Prepared {
    fn new(launch: &Launch<'_>, program: &str) -> io::Result<Prepared> {
        let c = |s: &[u8]| {
            CString::new(s).map_err(|_| {
                io::Error::new(io::ErrorKind::InvalidInput, "a string holds a NUL byte")
            })
        };
        let argv = launch
            .argv
            .iter()
            .map(|a| c(a.as_bytes()))
            .collect::<io::Result<Vec<_>>>()?;
        // The program's environment: ours, then the launch's settings (the
        // last one of a name wins), without the internal hand-off variable.
        let mut env: Vec<(OsString, OsString)> = std::env::vars_os()
            .filter(|(k, _)| k != READY_FD_ENV && !launch.env.iter().any(|(n, _)| k == n.as_str()))
            .collect();
        for (k, v) in launch.env {
            if k != READY_FD_ENV {
                env.retain(|(n, _)| n != k.as_str());
                env.push((k.into(), v.into()));
            }
        }
        let envp = env
            .iter()
            .map(|(k, v)| {
                let mut kv = k.as_bytes().to_vec();
                kv.push(b'=');
                kv.extend_from_slice(v.as_bytes());
                c(&kv)
            })
            .collect::<io::Result<Vec<_>>>()?;
        // A bare name is looked up in the program's PATH (as std's Command
        // does when the PATH is changed), else the default path of execvp.
        let candidates = if program.contains('/') || program.is_empty() {
            vec![c(program.as_bytes())?]
        } else {
            let path = env.iter().find(|(k, _)| k == "PATH").map_or_else(
                || OsString::from("/usr/local/bin:/bin:/usr/bin"),
                |(_, v)| v.clone(),
            );
            path.as_bytes()
                .split(|&b| b == b':')
                .map(|dir| {
                    let dir = if dir.is_empty() { b"." as &[u8] } else { dir };
                    let mut full = dir.to_vec();
                    full.push(b'/');
                    full.extend_from_slice(program.as_bytes());
                    c(&full)
                })
                .collect::<io::Result<Vec<_>>>()?
        };
        let cwd = launch
            .cwd
            .map(|p| c(p.as_os_str().as_bytes()))
            .transpose()?;
        Ok(Prepared {
            candidates,
            argv,
            envp,
            cwd,
        })
    }

    fn candidates_ptrs(&self) -> Vec<*const libc::c_char> {
        null_terminated(&self.candidates)
    }
    fn argv_ptrs(&self) -> Vec<*const libc::c_char> {
        null_terminated(&self.argv)
    }
    fn envp_ptrs(&self) -> Vec<*const libc::c_char> {
        null_terminated(&self.envp)
    }
}

fn null_terminated(strings: &[CString]) -> Vec<*const libc::c_char> {
    strings
        .iter()
        .map(|s| s.as_ptr())
        .chain(std::iter::once(ptr::null()))
        .collect()
}

/// What the child reads (and, on failure, writes: `error`) in the memory it
/// shares with dblaunch until it execs.
struct ChildSetup<'a> {
    parent: i32,
    candidates: Vec<*const libc::c_char>,
    argv: Vec<*const libc::c_char>,
    envp: Vec<*const libc::c_char>,
    cwd: *const libc::c_char,
    inherit: &'a [RawFd],
    terminal: RawFd,
    stdout: RawFd,
    stderr: RawFd,
    /// The errno of the step that failed; 0 while all went well.
    error: i32,
}

/// The child's stack: it runs on it until exec, while dblaunch's thread
/// waits (CLONE_VFORK), so it only needs room for a few system calls.
const CHILD_STACK: usize = 64 * 1024;

fn clone_vfork(setup: &mut ChildSetup<'_>) -> io::Result<i32> {
    // Not zeroed: the child touches only the top few kilobytes, so the rest
    // is never faulted in (zeroing it cost a memset and 16 page faults per
    // launch).
    let mut stack: Vec<std::mem::MaybeUninit<u8>> = Vec::with_capacity(CHILD_STACK);
    // The stack grows down; x86-64 and aarch64 want it 16-byte aligned.
    let top = (stack.as_mut_ptr() as usize + CHILD_STACK) & !15;
    // No handler may run in the child: it would run dblaunch's signal-hook
    // handler, which writes to dblaunch's self-pipe. Block everything
    // around the clone; the child resets the handlers before unblocking.
    let all = SigSet::all();
    let mut old = SigSet::empty();
    pthread_sigmask(SigmaskHow::SIG_SETMASK, Some(&all), Some(&mut old))?;
    // SAFETY: CLONE_VM|CLONE_VFORK suspends this thread until the child has
    // exec'd or exited, so `setup` and `stack` outlive every use the child
    // makes of them; the child (child_main) makes only async-signal-safe
    // system calls and allocates nothing.
    let pid = unsafe {
        libc::clone(
            child_main,
            top as *mut libc::c_void,
            libc::CLONE_VM | libc::CLONE_VFORK | libc::SIGCHLD,
            (setup as *mut ChildSetup<'_>).cast(),
        )
    };
    let cloned = if pid < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(pid)
    };
    pthread_sigmask(SigmaskHow::SIG_SETMASK, Some(&old), None)?;
    drop(stack);
    cloned
}

/// Signals whose dispositions dblaunch changes: caught ones (their handlers
/// must not run in the child) and SIGPIPE (ignored in dblaunch, default in
/// programs).
fn changed_signals() -> impl Iterator<Item = i32> {
    crate::signals::FORWARDED
        .into_iter()
        .chain([libc::SIGCHLD, libc::SIGPIPE])
}

extern "C" fn child_main(arg: *mut libc::c_void) -> libc::c_int {
    // SAFETY: `arg` is the ChildSetup that clone_vfork passed, alive while
    // its thread is suspended (CLONE_VFORK).
    let setup = unsafe { &mut *arg.cast::<ChildSetup<'_>>() };
    // SAFETY: every call below is an async-signal-safe system call on values
    // prepared before the clone.
    let errno = unsafe { child_setup(setup) };
    setup.error = if errno == 0 { libc::EINVAL } else { errno };
    // SAFETY: _exit ends only the child (it shares no thread with dblaunch).
    unsafe { libc::_exit(127) }
}

/// Sets the child up and execs; returns the errno of what failed.
unsafe fn child_setup(s: &ChildSetup<'_>) -> i32 {
    let errno = || {
        io::Error::last_os_error()
            .raw_os_error()
            .unwrap_or(libc::EINVAL)
    };
    // SAFETY: async-signal-safe system calls only (see child_main).
    unsafe {
        for sig in changed_signals() {
            libc::signal(sig, libc::SIG_DFL);
        }
        // Die with dblaunch (SIGKILL, OOM) so no program runs unsupervised;
        // if it is gone already, end here.
        if crate::platform::die_with_parent(s.parent).is_err() {
            libc::_exit(128 + libc::SIGKILL);
        }
        if libc::setpgid(0, 0) != 0 {
            return errno();
        }
        // The lock tickets were opened close-on-exec like every file in
        // Rust; this program (and its children) must keep them, so that the
        // database stays locked exactly as long as they live.
        for &fd in s.inherit {
            let flags = libc::fcntl(fd, libc::F_GETFD);
            if flags < 0 || libc::fcntl(fd, libc::F_SETFD, flags & !libc::FD_CLOEXEC) < 0 {
                return errno();
            }
        }
        for (fd, target) in [
            (s.stdout, libc::STDOUT_FILENO),
            (s.stderr, libc::STDERR_FILENO),
        ] {
            if fd >= 0 && libc::dup2(fd, target) < 0 {
                return errno();
            }
        }
        if s.terminal >= 0 {
            // Become the terminal's foreground group, as a shell's job does;
            // SIGTTOU must be ignored to be allowed to.
            libc::signal(libc::SIGTTOU, libc::SIG_IGN);
            libc::tcsetpgrp(s.terminal, libc::getpid());
            libc::signal(libc::SIGTTOU, libc::SIG_DFL);
            libc::signal(libc::SIGTTIN, libc::SIG_DFL);
        }
        if !s.cwd.is_null() && libc::chdir(s.cwd) != 0 {
            return errno();
        }
        let mut none: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut none);
        libc::pthread_sigmask(libc::SIG_SETMASK, &none, ptr::null_mut());
        // As execvp: the first candidate that execs wins; a candidate that
        // exists but may not be run is remembered over later ones missing.
        let mut result = libc::ENOENT;
        for &path in &s.candidates[..s.candidates.len() - 1] {
            libc::execve(path, s.argv.as_ptr(), s.envp.as_ptr());
            match errno() {
                libc::ENOENT | libc::ENOTDIR | libc::ESTALE | libc::ENODEV | libc::ETIMEDOUT => {}
                libc::EACCES => result = libc::EACCES,
                other => return other,
            }
        }
        result
    }
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
