//! The one kernel primitive the lock is built on: flock(2).
//!
//! Why flock(2) and not `nix::fcntl::Flock`: that wrapper unlocks on drop with
//! `LOCK_UN`, which releases the lock for the whole open file description,
//! including the copy the spawned program inherited. dblaunch must be able to
//! close its own descriptor without touching the program's lock, so it calls
//! flock(2) itself and only ever releases by closing.
//!
//! Why flock and not POSIX (`F_SETLK`) locks: POSIX locks belong to a process,
//! are not inherited by children and vanish when *any* descriptor of the file
//! is closed. flock locks belong to the open file description, survive
//! fork/exec when the descriptor is inherited, and are released by the kernel
//! when the last process holding it is gone. The databases' own engines use
//! POSIX locks on their own files; on Linux the two families never interact,
//! and dblaunch never locks a database file anyway.

use std::os::fd::{AsFd, AsRawFd};

use nix::errno::Errno;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Shared,
    Exclusive,
}

/// Takes a flock on `fd`. Returns `Ok(false)` when `block` is false and the
/// lock is held elsewhere. A blocking call that a signal interrupts is retried.
pub fn lock(fd: impl AsFd, kind: Kind, block: bool) -> nix::Result<bool> {
    let mut op = match kind {
        Kind::Shared => libc::LOCK_SH,
        Kind::Exclusive => libc::LOCK_EX,
    };
    if !block {
        op |= libc::LOCK_NB;
    }
    let raw = fd.as_fd().as_raw_fd();
    loop {
        // SAFETY: flock(2) only reads its integer arguments; `raw` comes from a
        // borrowed descriptor that stays open for the duration of the call.
        let rc = unsafe { libc::flock(raw, op) };
        match Errno::result(rc) {
            Ok(_) => return Ok(true),
            Err(Errno::EWOULDBLOCK) if !block => return Ok(false),
            Err(Errno::EINTR) => continue,
            Err(e) => return Err(e),
        }
    }
}

/// A POSIX or OFD record lock (what SQLite, DuckDB and RocksDB take on their
/// own files) that conflicts with reading (`write` false) or writing the
/// whole file behind `fd`, as the kernel reports it for that one file:
/// `Some((pid, exclusive))`, with no pid for an OFD lock (the kernel does not
/// say whose). Asked with F_OFD_GETLK, which takes no lock and, unlike
/// reading `/proc/locks` (several reads, entries skipped when other locks
/// come and go between them), answers atomically. flock(2) locks are not
/// reported (the two families do not interact on Linux).
pub fn conflicting_record_lock(
    fd: impl AsFd,
    write: bool,
) -> nix::Result<Option<(Option<i32>, bool)>> {
    // SAFETY: an all-zero `struct flock` is a valid value of the type.
    let mut fl: libc::flock = unsafe { std::mem::zeroed() };
    fl.l_type = if write { libc::F_WRLCK } else { libc::F_RDLCK } as libc::c_short;
    fl.l_whence = libc::SEEK_SET as libc::c_short;
    fl.l_start = 0;
    fl.l_len = 0;
    // SAFETY: F_OFD_GETLK reads and writes the `flock` we own, which lives
    // for the duration of the call; the descriptor is borrowed and open.
    let rc = unsafe { libc::fcntl(fd.as_fd().as_raw_fd(), libc::F_OFD_GETLK, &mut fl) };
    Errno::result(rc)?;
    if fl.l_type == libc::F_UNLCK as libc::c_short {
        return Ok(None);
    }
    let pid = (fl.l_pid > 0).then_some(fl.l_pid);
    Ok(Some((pid, fl.l_type == libc::F_WRLCK as libc::c_short)))
}
