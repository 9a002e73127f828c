//! The record stored in a ticket: who waits for or holds a database, written
//! as one JSON object. It is only ever *believed* after [`Record::is_alive`]
//! has matched its pid against the recorded start time and boot id; the
//! kernel lock, not the record, says whether the database is held.

use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use crate::mode::Mode;
use crate::{host, procfs};

/// Whether the ticket's owner still queues or already runs its program.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RecordState {
    /// It waits in the queue.
    Waiting,
    /// Its program runs, holding the lock.
    Holding,
}

/// What a ticket says about its owner. Identical for every database one
/// program locks, but for the mode.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Owner {
    /// The program name `status` shows (`--name`, the manifest's name, or the
    /// command's basename).
    pub program: String,
    /// The command line `status` shows.
    pub command: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
/// What a ticket says about its owner, as JSON.
pub struct Record {
    /// For a holder, the program's own process; for a waiter, the dblaunch
    /// that waits.
    pub pid: i32,
    /// `pid`'s start time in clock ticks after boot (`/proc/PID/stat` field 22).
    pub start_time: u64,
    /// `/proc/sys/kernel/random/boot_id` when written.
    pub boot_id: String,
    /// The host it was written on.
    pub host: String,
    /// The dblaunch that supervises the program.
    pub supervisor_pid: i32,
    /// The supervising dblaunch's start time.
    pub supervisor_start_time: u64,
    /// The program name.
    pub program: String,
    /// Read or write.
    pub mode: Mode,
    /// Waiting or holding.
    pub state: RecordState,
    /// RFC 3339: when it started waiting, or when it started holding.
    pub since: String,
    /// The command line.
    pub command: Vec<String>,
}

impl Record {
    /// A record for this dblaunch waiting on behalf of `owner`.
    pub fn waiting(owner: &Owner, mode: Mode) -> Record {
        let (me, start) = own_identity();
        Record {
            pid: me,
            start_time: start,
            boot_id: procfs::boot_id().to_owned(),
            host: host::name().to_owned(),
            supervisor_pid: me,
            supervisor_start_time: start,
            program: owner.program.clone(),
            mode,
            state: RecordState::Waiting,
            since: now_rfc3339(),
            command: owner.command.clone(),
        }
    }

    /// The same record once the lock is held by the program running as `pid`.
    pub fn holding(&self, pid: i32) -> Record {
        self.holding_since(pid, procfs::start_time(pid).unwrap_or_default())
    }

    /// As [`Record::holding`], with `pid`'s start time already read.
    pub fn holding_since(&self, pid: i32, start_time: u64) -> Record {
        Record {
            pid,
            start_time,
            state: RecordState::Holding,
            since: now_rfc3339(),
            ..self.clone()
        }
    }

    /// The same record once this very process holds the lock (a program
    /// locking for itself).
    pub(crate) fn holding_here(&self) -> Record {
        let (me, start) = own_identity();
        self.holding_since(me, start)
    }

    /// True while a process with this pid *and* this start time exists on
    /// this boot of this host. A recycled pid has another start time.
    pub fn is_alive(&self) -> bool {
        self.boot_id == procfs::boot_id()
            && self.host == host::name()
            && procfs::start_time(self.pid) == Some(self.start_time)
    }

    /// Whether the supervising dblaunch is still the process it was.
    pub fn supervisor_is_alive(&self) -> bool {
        self.boot_id == procfs::boot_id()
            && self.host == host::name()
            && procfs::start_time(self.supervisor_pid) == Some(self.supervisor_start_time)
    }

    pub(crate) fn to_bytes(&self) -> Vec<u8> {
        let mut out = serde_json::to_vec(self).expect("a record always serialises");
        out.push(b'\n');
        out
    }
}

/// This process's pid and start time, read once per process (again in a
/// forked child, whose pid is its own).
pub(crate) fn own_identity() -> (i32, u64) {
    use std::sync::atomic::{AtomicI32, AtomicU64, Ordering};
    static PID: AtomicI32 = AtomicI32::new(0);
    static START: AtomicU64 = AtomicU64::new(0);
    let me = crate::fork::pid() as i32;
    if PID.load(Ordering::Acquire) == me {
        return (me, START.load(Ordering::Acquire));
    }
    let start = procfs::start_time(me).unwrap_or_default();
    START.store(start, Ordering::Release);
    PID.store(me, Ordering::Release);
    (me, start)
}

fn now_rfc3339() -> String {
    humantime::format_rfc3339_seconds(SystemTime::now()).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn owner() -> Owner {
        Owner {
            program: "ingest".into(),
            command: vec!["python".into(), "-m".into(), "ingest".into()],
        }
    }

    #[test]
    fn own_record_is_alive_and_round_trips() {
        let r = Record::waiting(&owner(), Mode::Write);
        assert!(r.is_alive());
        let back: Record = serde_json::from_slice(&r.to_bytes()).unwrap();
        assert_eq!(back, r);
    }

    #[test]
    fn a_recycled_pid_is_not_believed() {
        let mut r = Record::waiting(&owner(), Mode::Read);
        r.start_time += 1;
        assert!(!r.is_alive());
        let mut r = Record::waiting(&owner(), Mode::Read);
        r.boot_id = "another-boot".into();
        assert!(!r.is_alive());
    }

    #[test]
    fn modes_conflict_unless_both_read() {
        assert!(!Mode::Read.conflicts_with(Mode::Read));
        assert!(Mode::Read.conflicts_with(Mode::Write));
        assert!(Mode::Write.conflicts_with(Mode::Read));
        assert!(Mode::Write.conflicts_with(Mode::Write));
    }
}
