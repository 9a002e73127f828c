//! Who is in the way of a lock, as far as it can be told, and how to say
//! so in a message.

use std::fmt;
use std::time::Duration;

use crate::backend::Entry;
use crate::mode::Mode;

/// Who is in the way, as far as it can be told.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Holder {
    /// A live, validated dblaunch record.
    Program {
        /// Its program name.
        program: String,
        /// Its process.
        pid: i32,
        /// Read or write.
        mode: Mode,
        /// It holds (else it waits ahead).
        holding: bool,
        /// Since when (RFC 3339).
        since: String,
    },
    /// The record's process is gone but the lock is still held: a leftover
    /// process of that program (a daemonised grandchild) kept the inherited
    /// descriptor.
    Leftover {
        /// The program that has exited.
        program: String,
        /// The processes that kept its lock, with their commands.
        pids: Vec<(i32, String)>,
        /// Read or write.
        mode: Mode,
    },
    /// A live ticket whose record cannot be read or believed.
    Unknown {
        /// The ticket.
        ticket: String,
        /// Why its record cannot be believed.
        why: String,
    },
    /// A holder whose lock directory was removed while it ran: its ticket is
    /// in no queue, but its lock is live.
    Orphan {
        /// Its program name, when its record can be read.
        program: Option<String>,
        /// Its process.
        pid: i32,
        /// Its command line.
        command: String,
        /// Read or write.
        mode: Mode,
        /// Since when (RFC 3339).
        since: String,
    },
    /// A holder or waiter on another host (or this one), as the lock
    /// backend lists it.
    Remote(Entry),
    /// Every host-local lock was ours, but the lock backend had not yet
    /// said who is ahead there (still connecting, or queueing).
    BackendSilent {
        /// The server (without a password).
        server: String,
    },
    /// A process that locked the database file itself, outside dblaunch.
    Foreign {
        /// Its process, when the kernel says (not for an OFD lock).
        pid: Option<i32>,
        /// Its command line.
        command: String,
        /// An exclusive lock (else shared).
        write: bool,
    },
}

impl fmt::Display for Holder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Holder::Program {
                program,
                pid,
                mode,
                holding,
                since,
            } => {
                let verb = if *holding {
                    "holds it"
                } else {
                    "is queued ahead"
                };
                write!(f, "{program} (pid {pid}) {verb} for {mode} since {since}")
            }
            Holder::Leftover {
                program,
                pids,
                mode,
            } => {
                write!(
                    f,
                    "a leftover process of {program}, which has exited, still holds its {mode} lock"
                )?;
                for (pid, cmd) in pids {
                    write!(f, " (pid {pid}: {cmd})")?;
                }
                Ok(())
            }
            Holder::Orphan {
                program,
                pid,
                command,
                ..
            } => match program {
                Some(program) => write!(f, "{program} (pid {pid}: {command})"),
                None => write!(f, "pid {pid} ({command})"),
            },
            Holder::Remote(entry) => write!(f, "{entry}"),
            Holder::BackendSilent { server } => write!(
                f,
                "the lock backend {server} had not yet said who holds it (the connection or the queueing there took all of the wait)"
            ),
            Holder::Unknown { ticket, why } => write!(
                f,
                "the live ticket {ticket} has a record that cannot be read ({why})"
            ),
            Holder::Foreign {
                pid,
                command,
                write,
            } => {
                let mode = if *write { "write" } else { "read" };
                match pid {
                    Some(pid) => write!(
                        f,
                        "pid {pid} ({command}) holds a {mode} lock on the database file itself, outside dblaunch"
                    ),
                    None => write!(
                        f,
                        "a process outside dblaunch holds a {mode} lock on the database file itself"
                    ),
                }
            }
        }
    }
}

/// Holders as a message names them: each, joined by ", and".
pub(crate) struct HolderList<'a>(pub(crate) &'a [Holder]);

impl fmt::Display for HolderList<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            return f.write_str("the process holding it could not be identified");
        }
        for (i, h) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(", and ")?;
            }
            write!(f, "{h}")?;
        }
        Ok(())
    }
}

/// A duration rounded for people: milliseconds below 10 s, else seconds.
pub fn round(d: Duration) -> humantime::FormattedDuration {
    let d = if d < Duration::from_secs(10) {
        Duration::from_millis(d.as_millis() as u64)
    } else {
        Duration::from_secs(d.as_secs())
    };
    humantime::format_duration(d)
}
