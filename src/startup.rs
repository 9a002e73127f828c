//! What dblaunch does at start only to make each launch cheaper, gathered
//! where it can be: every `dblaunch exec` is a process start, so start-up
//! is part of what a lock costs. Each item says what it saves. The tweaks
//! that must stay where they act (in `main.rs`, `cli.rs`, `process/spawn.rs`
//! and others, and at link time in `build.rs`) are listed with these, with
//! their measured reasons, in docs/design.md ("Start-up cost").

use clap::{CommandFactory, FromArgMatches};

use crate::cli::Cli;

/// The process-wide settings `main` makes before anything else. `main` is
/// `no_main` (std's `lang_start` spent a measurable part of every launch
/// finding the main thread's stack guard, which dblaunch never needs);
/// this does what `lang_start` did that matters here, and one thing more.
///
/// # Safety
///
/// Call once, first thing in `main`, before any thread exists.
pub unsafe fn before_anything() {
    // A closed pipe is an error to handle, not a death (std's `lang_start`
    // ignored SIGPIPE for the same reason).
    // SAFETY: SIG_IGN installs no handler code; no other thread exists yet
    // (the caller's promise).
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_IGN);
    }
    // One malloc arena for all threads. glibc gives each new thread an arena
    // of its own at its first allocation (a 64 MiB reservation, trimmed, and
    // fresh pages to fault in): a cost on every queued launch, whose wait
    // runs in a thread that allocates a few paths. dblaunch's threads are
    // few and mostly asleep, so they never contend for the one arena.
    #[cfg(target_env = "gnu")]
    // SAFETY: mallopt only sets a tunable; no other thread exists yet.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 1);
    }
}

/// `Cli::try_parse()`, without freeing clap's definitions of the command
/// line afterwards: they are a tree of a few hundred allocations, freeing
/// them cost every launch about 4% of its instructions, and the process
/// never needs them again (the kernel takes the memory back at exit).
pub(crate) fn parse() -> Result<Cli, clap::Error> {
    let mut command = Cli::command();
    let parsed = command
        .try_get_matches_from_mut(std::env::args_os())
        .and_then(|mut matches| Cli::from_arg_matches_mut(&mut matches))
        .map_err(|e| e.format(&mut command));
    std::mem::forget(command);
    parsed
}
