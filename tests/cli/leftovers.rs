//! No process that the suite starts may outlive it: one left running holds
//! the harness's output open, keeps locks, and hides a test that does not
//! clean up after itself.
//!
//! Every process the suite starts is marked by the environment it inherits:
//! [`MARK`], whose value names this test process (pid and start time), so
//! processes of other test runs on the machine are never taken for ours,
//! and a process reparented to init or a subreaper is still recognised.
//! The mark is set before `main`, while the process has a single thread.
//! At exit, once the harness is done (this handler was registered first, so
//! it runs after every other exit handler, such as the one that stops the
//! PostgreSQL server of `several_hosts`), the marked processes get a few
//! seconds to end; any still running is named with its command line and
//! killed, and the run fails. What escapes the mark: processes started
//! with a cleared environment, and those that overwrite the memory their
//! environment came in (PostgreSQL's server processes write their titles
//! there; they end with the server, which is marked).

use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The environment variable that marks the processes this run starts.
const MARK: &str = "DBLAUNCH_TEST_RUN";

/// How long processes still ending (signalled, not yet reaped) may take.
const GRACE: Duration = Duration::from_secs(5);

/// `MARK=VALUE`, as it appears in `/proc/PID/environ`.
static MARKED: OnceLock<Vec<u8>> = OnceLock::new();

// SAFETY: `.init_array` holds pointers to functions the C runtime calls
// before `main`, with the arguments of `main`, which `at_start` ignores (an
// `extern "C"` function may be called with more arguments than it takes).
#[used]
#[unsafe(link_section = ".init_array")]
static AT_START: extern "C" fn() = at_start;

extern "C" fn at_start() {
    let me = std::process::id();
    let value = format!("{me}.{}", start_time(me as i32).unwrap_or_default());
    // SAFETY: this runs before `main`, before the process has a second
    // thread, so nothing can read the environment while it changes.
    unsafe { std::env::set_var(MARK, &value) };
    let _ = MARKED.set(format!("{MARK}={value}").into_bytes());
    // SAFETY: `at_exit` is an `extern "C" fn()` that never unwinds (it
    // cannot panic: every failure in it is handled).
    unsafe { libc::atexit(at_exit) };
}

/// A process's start time in clock ticks after boot (`/proc/PID/stat`
/// field 22).
fn start_time(pid: i32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(')')?
        .1
        .split_whitespace()
        .nth(19)?
        .parse()
        .ok()
}

extern "C" fn at_exit() {
    let Some(mark) = MARKED.get() else {
        return;
    };
    let deadline = Instant::now() + GRACE;
    let mut left = marked(mark);
    while !left.is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
        left = marked(mark);
    }
    if left.is_empty() {
        return;
    }
    eprintln!(
        "\nerror: {} process(es) started by this test run outlived it (still running {GRACE:?} after the last test); a test does not clean up after itself. Killed now:",
        left.len()
    );
    for (pid, cmdline) in &left {
        eprintln!("  pid {pid}: {cmdline}");
    }
    // Those, and whatever they start before they die.
    for _ in 0..50 {
        if left.is_empty() {
            break;
        }
        for (pid, _) in &left {
            crate::kill(*pid, libc::SIGKILL);
        }
        std::thread::sleep(Duration::from_millis(20));
        left = marked(mark);
    }
    // SAFETY: _exit(2) ends the process at once; nothing runs after it.
    unsafe { libc::_exit(1) }
}

/// Live processes other than this one whose environment carries `mark`,
/// with their command lines.
fn marked(mark: &[u8]) -> Vec<(i32, String)> {
    let me = std::process::id() as i32;
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<i32>().ok())
        else {
            continue;
        };
        if pid == me {
            continue;
        }
        // Unreadable (gone, or another user's without the rights): not ours
        // as far as can be told. A zombie's environment reads empty.
        let Ok(environ) = std::fs::read(format!("/proc/{pid}/environ")) else {
            continue;
        };
        if !environ.split(|&b| b == 0).any(|v| v == mark) || !crate::alive(pid) {
            continue;
        }
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        let cmdline = String::from_utf8_lossy(&cmdline)
            .trim_end_matches('\0')
            .replace('\0', " ");
        found.push((pid, cmdline));
    }
    found
}
