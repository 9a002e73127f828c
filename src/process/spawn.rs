//! Spawning one program: its own process group, the lock descriptors it
//! must inherit, death with dblaunch, and the terminal when it is interactive.

use std::ffi::{CStr, CString};
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
    /// Variables of dblaunch's own environment the program does not get
    /// (unless `env` sets them).
    pub hide: &'a [&'a str],
}

/// A started program. Its pid is also its process group id.
pub struct Child {
    pub pid: i32,
    /// Its start time in clock ticks after boot (as `/proc/PID/stat` says),
    /// known without reading `/proc` (see [`procfs::start_time_between`]);
    /// `None` if it must be read there.
    ///
    /// [`procfs::start_time_between`]: dblaunch_lock::procfs::start_time_between
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
    // The start time from the boot clock around the clone, not from /proc
    // (a start-up tweak: docs/design.md, "Start-up cost").
    let before = dblaunch_lock::procfs::boot_clock();
    let pid = clone_vfork(&mut child).map_err(other)?;
    let start_time =
        dblaunch_lock::procfs::start_time_between(before, dblaunch_lock::procfs::boot_clock());
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
    /// The variables kept from dblaunch's own environment: pointers into
    /// it, not copies (see [`own_environment`]).
    kept: Vec<*const libc::c_char>,
    /// The launch's own settings, `NAME=value`; they follow `kept`.
    settings: Vec<CString>,
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
        let settings: Vec<(&str, &str)> = launch
            .env
            .iter()
            .enumerate()
            .filter(|&(i, (k, _))| {
                k != READY_FD_ENV && !launch.env[i + 1..].iter().any(|(n, _)| n == k)
            })
            .map(|(_, (k, v))| (k.as_str(), v.as_str()))
            .collect();
        let kept: Vec<(&[u8], &CStr)> = own_environment()
            .filter_map(|entry| Some((env_name(entry.to_bytes())?, entry)))
            .filter(|&(name, _)| {
                name != READY_FD_ENV.as_bytes()
                    && !settings.iter().any(|(k, _)| k.as_bytes() == name)
            })
            .collect();
        // Apart, so that the common case (nothing hidden: `exec`) runs the
        // filter above as it was: inlined into the spawn.
        let mut kept = kept;
        if !launch.hide.is_empty() {
            kept.retain(|&(name, _)| !launch.hide.iter().any(|h| h.as_bytes() == name));
        }
        let settings_c = settings
            .iter()
            .map(|(k, v)| c(format!("{k}={v}").as_bytes()))
            .collect::<io::Result<Vec<_>>>()?;
        // A bare name is looked up in the program's PATH (as std's Command
        // does when the PATH is changed), else the default path of execvp.
        let candidates = if program.contains('/') || program.is_empty() {
            vec![c(program.as_bytes())?]
        } else {
            let path: &[u8] = match settings.iter().find(|(k, _)| *k == "PATH") {
                Some((_, v)) => v.as_bytes(),
                None => kept
                    .iter()
                    .find(|(name, _)| *name == b"PATH")
                    .map_or(b"/usr/local/bin:/bin:/usr/bin", |(_, entry)| {
                        &entry.to_bytes()[b"PATH=".len()..]
                    }),
            };
            path.split(|&b| b == b':')
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
            kept: kept.iter().map(|(_, entry)| entry.as_ptr()).collect(),
            settings: settings_c,
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
        self.kept
            .iter()
            .copied()
            .chain(null_terminated(&self.settings))
            .collect()
    }
}

/// dblaunch's own environment, `NAME=value` entries as the C library keeps
/// them. Borrowed, not copied: copying every variable into a map and back
/// into C strings was a tenth of a launch's instructions. (A start-up
/// tweak: docs/design.md, "Start-up cost".)
fn own_environment() -> impl Iterator<Item = &'static CStr> {
    unsafe extern "C" {
        static environ: *const *const libc::c_char;
    }
    // SAFETY: `environ` is the C library's null-terminated array of
    // NUL-terminated strings. dblaunch never changes its own environment
    // (no set_var, putenv or unsetenv anywhere, in it or its libraries), so
    // the array and its strings stay as they are for the process's lifetime.
    let mut next = unsafe { environ };
    std::iter::from_fn(move || {
        if next.is_null() {
            return None;
        }
        // SAFETY: `next` points into the array, at or before its null end.
        let entry = unsafe { *next };
        if entry.is_null() {
            return None;
        }
        // SAFETY: as above; the entry is a NUL-terminated string.
        unsafe {
            next = next.add(1);
            Some(CStr::from_ptr(entry))
        }
    })
}

/// The name of a `NAME=value` entry, as std reads it (a leading `=` belongs
/// to the name); `None` for an entry without `=`, which std skips.
fn env_name(entry: &[u8]) -> Option<&[u8]> {
    let at = entry.iter().skip(1).position(|&b| b == b'=')? + 1;
    Some(&entry[..at])
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

/// A start-up tweak (docs/design.md, "Start-up cost"): `clone(CLONE_VM|CLONE_VFORK)`
/// instead of fork, on a stack that is not zeroed.
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

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(ptrs: &[*const libc::c_char]) -> Vec<String> {
        let (last, entries) = ptrs.split_last().expect("null-terminated");
        assert!(last.is_null());
        entries
            .iter()
            // SAFETY: every pointer but the last is a live C string of `Prepared`
            // or of the environment.
            .map(|&p| unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned())
            .collect()
    }

    #[test]
    fn the_environment_is_ours_then_the_launchs_settings_last_one_wins() {
        let env = [
            ("DBLAUNCH_TEST_A".to_owned(), "1".to_owned()),
            ("PATH".to_owned(), "/nowhere:/elsewhere".to_owned()),
            (READY_FD_ENV.to_owned(), "7".to_owned()),
            ("DBLAUNCH_TEST_A".to_owned(), "2".to_owned()),
        ];
        let argv = ["prog".to_owned()];
        let launch = Launch {
            argv: &argv,
            cwd: None,
            env: &env,
            inherit: &[],
            terminal: None,
            stdio: Stdio::Inherit,
            hide: &[],
        };
        let prepared = Prepared::new(&launch, "prog").unwrap();
        let envp = strings(&prepared.envp_ptrs());
        let ours: Vec<String> = std::env::vars_os()
            .filter(|(k, _)| k != "PATH" && k != "DBLAUNCH_TEST_A" && k != READY_FD_ENV)
            .map(|(k, v)| format!("{}={}", k.to_string_lossy(), v.to_string_lossy()))
            .collect();
        let mut expected = ours;
        expected.push("PATH=/nowhere:/elsewhere".to_owned());
        expected.push("DBLAUNCH_TEST_A=2".to_owned());
        assert_eq!(envp, expected);
        // The program is looked up in the launch's PATH.
        assert_eq!(
            strings(&prepared.candidates_ptrs()),
            ["/nowhere/prog", "/elsewhere/prog"]
        );
    }

    #[test]
    fn without_settings_the_program_is_looked_up_in_our_path() {
        let argv = ["prog".to_owned()];
        let launch = Launch {
            argv: &argv,
            cwd: None,
            env: &[],
            inherit: &[],
            terminal: None,
            stdio: Stdio::Inherit,
            hide: &[],
        };
        let prepared = Prepared::new(&launch, "prog").unwrap();
        let ours: Vec<String> = std::env::vars_os()
            .map(|(k, v)| format!("{}={}", k.to_string_lossy(), v.to_string_lossy()))
            .collect();
        assert_eq!(strings(&prepared.envp_ptrs()), ours);
        let path = std::env::var("PATH").unwrap_or_else(|_| "/usr/local/bin:/bin:/usr/bin".into());
        let expected: Vec<String> = path
            .split(':')
            .map(|d| format!("{}/prog", if d.is_empty() { "." } else { d }))
            .collect();
        assert_eq!(strings(&prepared.candidates_ptrs()), expected);
    }

    #[test]
    fn env_names_are_read_as_std_reads_them() {
        assert_eq!(env_name(b"A=1"), Some(&b"A"[..]));
        assert_eq!(env_name(b"A=1=2"), Some(&b"A"[..]));
        assert_eq!(env_name(b"=C:=x"), Some(&b"=C:"[..]));
        assert_eq!(env_name(b"NOEQUALS"), None);
        assert_eq!(env_name(b""), None);
    }
}
