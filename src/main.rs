//! The binary: `dblaunch::run()`, exit with its status.
//!
//! `no_main`: every launch pays for the runtime's start-up, and std's
//! `lang_start` spends a measurable part of it finding the main thread's
//! stack guard (glibc parses /proc/self/maps for it). dblaunch needs none of
//! that; it does the one thing `lang_start` did that matters here itself:
//! ignore SIGPIPE, so a closed pipe is an error to handle, not a death.
#![cfg_attr(not(test), no_main)]

#[cfg(not(test))]
#[unsafe(no_mangle)]
extern "C" fn main(
    _argc: std::ffi::c_int,
    _argv: *const *const std::ffi::c_char,
) -> std::ffi::c_int {
    // SAFETY: SIG_IGN installs no handler code; done before any thread exists.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_IGN);
    }
    // One malloc arena for all threads. glibc gives each new thread an arena
    // of its own at its first allocation (a 64 MiB reservation, trimmed, and
    // fresh pages to fault in): a cost on every queued launch, whose wait
    // runs in a thread that allocates a few paths. dblaunch's threads are
    // few and mostly asleep, so they never contend for the one arena.
    #[cfg(target_env = "gnu")]
    // SAFETY: mallopt only sets a tunable; called before any thread exists.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 1);
    }
    std::process::exit(dblaunch::run().into())
}
