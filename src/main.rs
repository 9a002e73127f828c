//! The binary: `dblaunch::run()`, exit with its status.
//!
//! `no_main`, a start-up tweak that can only live here (see docs/design.md,
//! "Start-up cost"): every launch pays for the runtime's start-up, and
//! std's `lang_start` spends a measurable part of it finding the main
//! thread's stack guard (glibc parses /proc/self/maps for it). dblaunch
//! needs none of that; what `lang_start` did that matters here is done by
//! `dblaunch::startup::before_anything`.
#![cfg_attr(not(test), no_main)]

#[cfg(not(test))]
#[unsafe(no_mangle)]
extern "C" fn main(
    _argc: std::ffi::c_int,
    _argv: *const *const std::ffi::c_char,
) -> std::ffi::c_int {
    // SAFETY: the first thing the process runs; no other thread exists.
    unsafe {
        dblaunch::startup::before_anything();
    }
    std::process::exit(dblaunch::run().into())
}
