//! Who occupies a database: holders (with the processes nested under
//! them), waiters in queue order, leftovers that kept a program's lock, and
//! processes that use the database's files outside dblaunch. Computed in one
//! place, from one pass over the queues, `/proc/locks` and every process's
//! descriptors, whatever the number of databases: `status` renders it; the
//! busy messages and the waiting line use the same classification of a
//! ticket ([`QueueEntry::role`]) and the same foreign-lock query
//! ([`foreign_holders`]).

use std::collections::BTreeSet;
use std::path::Path;

use serde::Serialize;

use crate::database::Database;
use crate::foreign::{database_files, foreign_holders};
use crate::holder::Holder;
use crate::mode::Mode;
use crate::procfs::{self, FdUse, FileId};
use crate::queue::{Queue, QueueEntry, Role};
use crate::record::Record;
use crate::request::Request;

/// The `dblaunch status --json` document, exactly.
#[derive(Debug, Serialize)]
pub struct Report {
    /// Each database asked about.
    pub databases: Vec<DbStatus>,
}

#[derive(Debug, Serialize)]
/// Who occupies one database.
pub struct DbStatus {
    /// Its canonical path.
    pub path: String,
    /// Who holds it, with the processes nested under them.
    pub holders: Vec<Person>,
    /// Who waits for it, in queue order.
    pub waiters: Vec<Person>,
    /// Processes that use its files outside dblaunch.
    pub foreign: Vec<Foreign>,
}

#[derive(Debug, Serialize)]
/// A holder or waiter.
pub struct Person {
    /// Its process: for a holder the program's own, for a waiter the one that waits.
    pub pid: i32,
    /// Its program name.
    pub program: String,
    /// Read or write.
    pub mode: Mode,
    /// Since when (RFC 3339).
    pub since: String,
    /// Its command line.
    pub command: Vec<String>,
    /// For the table only, why this holder is not a running program's
    /// record: `leftover` (the program has exited and this process of it kept
    /// the lock) or `lock directory removed` (it holds a ticket of a removed
    /// lock directory).
    #[serde(skip)]
    pub note: Option<&'static str>,
    /// Nested dblaunch under this holder (a script it runs calls `dblaunch
    /// exec` or `run` for the database it holds): who holds and who waits
    /// among the processes under it. Absent when there are none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nested: Option<Nested>,
}

#[derive(Debug, Serialize)]
/// Who holds and waits among the processes under one holder.
pub struct Nested {
    /// Who holds, among them.
    pub holders: Vec<Person>,
    /// Who waits, among them.
    pub waiters: Vec<Person>,
}

#[derive(Debug, Serialize)]
/// A process that uses the database outside dblaunch.
pub struct Foreign {
    /// Its process.
    pub pid: i32,
    /// Its command line.
    pub command: Vec<String>,
    /// For the table only: it holds a lock on the file (true: exclusive).
    #[serde(skip)]
    pub lock: Option<bool>,
    /// For the table only: it has the file open.
    #[serde(skip)]
    pub open: bool,
}

struct Looked {
    db: Database,
    entries: Vec<QueueEntry>,
    /// Holders whose lock directory was removed while they ran.
    orphans: Vec<Holder>,
    tickets: Vec<FileId>,
    files: Vec<FileId>,
}

/// Builds the report: one pass over the queues, one over /proc/locks and
/// one over every process's descriptors, whatever the number of databases.
pub fn report(dbs: &[Database]) -> Report {
    let looked: Vec<Looked> = dbs
        .iter()
        .map(|db| {
            let (entries, orphans) = match Queue::existing(db) {
                Some(q) => {
                    let entries = q.entries();
                    let dead: Vec<_> = entries.iter().filter(|e| !e.live).map(|e| e.id).collect();
                    if !dead.is_empty() {
                        q.remove_dead(&dead);
                    }
                    (
                        entries.into_iter().filter(|e| e.live).collect(),
                        q.orphans(),
                    )
                }
                None => (Vec::new(), Vec::new()),
            };
            let tickets: Vec<FileId> = entries
                .iter()
                .filter_map(|e| FileId::of_path(&e.path))
                .collect();
            Looked {
                db: db.clone(),
                files: database_files(db.path()),
                tickets,
                entries,
                orphans,
            }
        })
        .collect();
    let wanted: Vec<FileId> = looked
        .iter()
        .flat_map(|l| l.tickets.iter().chain(l.files.iter()).copied())
        .collect();
    let uses = procfs::fd_uses(&wanted);
    let locks = procfs::locks();
    Report {
        databases: looked.iter().map(|l| occupancy(l, &uses, &locks)).collect(),
    }
}

fn occupancy(l: &Looked, uses: &[FdUse], locks: &[procfs::KernelLock]) -> DbStatus {
    let mut holders = Vec::new();
    let mut waiters = Vec::new();
    // Processes that belong to dblaunch's side of this database: they have
    // a live ticket open (the programs inherit it), or are in a holder's
    // process group, or are the supervising dblaunch.
    let mut managed: BTreeSet<i32> = uses
        .iter()
        .filter(|u| l.tickets.contains(&u.file))
        .map(|u| u.pid)
        .collect();
    for e in &l.entries {
        let ticket = FileId::of_path(&e.path);
        let lockers: Vec<i32> = uses
            .iter()
            .filter(|u| Some(u.file) == ticket && u.write_lock)
            .map(|u| u.pid)
            .collect();
        match e.role() {
            Role::Holds(r) => {
                managed.insert(r.supervisor_pid);
                let mut holder = person_of(r);
                holder.nested = nested(&l.db, &e.path, &mut managed);
                holders.push(holder);
            }
            Role::Waits(r) => {
                managed.insert(r.supervisor_pid);
                waiters.push(person_of(r));
            }
            Role::Leftover(r) => {
                for pid in lockers {
                    holders.push(match r {
                        Some(r) => person(
                            pid,
                            &r.program,
                            r.mode,
                            &r.since,
                            procfs::cmdline(pid),
                            true,
                        ),
                        None => person(pid, "?", e.id.mode, "", procfs::cmdline(pid), true),
                    });
                }
            }
        }
    }
    for o in &l.orphans {
        if let Holder::Orphan {
            program,
            pid,
            mode,
            since,
            ..
        } = o
        {
            managed.insert(*pid);
            let name = program.as_deref().unwrap_or("?");
            let mut p = person(*pid, name, *mode, since, procfs::cmdline(*pid), true);
            p.note = Some("lock directory removed");
            holders.push(p);
        }
    }
    let mut holder_groups: Vec<i32> = Vec::new();
    for h in &holders {
        each_person(h, &mut |p| holder_groups.push(p.pid));
    }
    let is_managed = |pid: i32| {
        managed.contains(&pid) || procfs::pgid(pid).is_some_and(|g| holder_groups.contains(&g))
    };
    let mut foreign: Vec<Foreign> = Vec::new();
    let mut add = |pid: i32, lock: Option<bool>, open: bool| {
        let f = match foreign.iter().position(|f| f.pid == pid) {
            Some(i) => &mut foreign[i],
            None => {
                foreign.push(Foreign {
                    pid,
                    command: procfs::cmdline(pid),
                    lock: None,
                    open: false,
                });
                foreign.last_mut().expect("just pushed")
            }
        };
        f.open |= open;
        f.lock = match (f.lock, lock) {
            (Some(a), Some(b)) => Some(a || b),
            (a, b) => a.or(b),
        };
    };
    // The kernel's own answer for these files first (atomic, one lock per
    // file); then /proc/locks for the rest, which a busy machine can make
    // skip a line while other locks come and go.
    let asked = foreign_holders(&Request::local(l.db.clone(), Mode::Write));
    for h in asked {
        if let Holder::Foreign {
            pid: Some(pid),
            write,
            ..
        } = h
        {
            if !is_managed(pid) {
                add(pid, Some(write), false);
            }
        }
    }
    for lock in locks.iter().filter(|k| l.files.contains(&k.file)) {
        if let Some(pid) = lock
            .pid
            .filter(|&p| procfs::start_time(p).is_some() && !is_managed(p))
        {
            add(pid, Some(lock.write), false);
        }
    }
    for u in uses
        .iter()
        .filter(|u| l.files.contains(&u.file) && !is_managed(u.pid))
    {
        add(u.pid, u.locked.then_some(u.write_lock), true);
    }
    foreign.sort_by_key(|f| f.pid);
    DbStatus {
        path: l.db.path().display().to_string(),
        holders,
        waiters,
        foreign,
    }
}

/// The nested queue under a holder's ticket, recursively; every process in
/// it is dblaunch's, not a foreign user.
fn nested(db: &Database, ticket: &Path, managed: &mut BTreeSet<i32>) -> Option<Nested> {
    let queue = Queue::existing_nested(db, ticket)?;
    let mut n = Nested {
        holders: Vec::new(),
        waiters: Vec::new(),
    };
    for e in queue.entries().into_iter().filter(|e| e.live) {
        match e.role() {
            Role::Holds(r) => {
                managed.insert(r.supervisor_pid);
                let mut p = person_of(r);
                p.nested = nested(db, &e.path, managed);
                n.holders.push(p);
            }
            Role::Waits(r) => {
                managed.insert(r.supervisor_pid);
                n.waiters.push(person_of(r));
            }
            Role::Leftover(_) => {}
        }
    }
    (!n.holders.is_empty() || !n.waiters.is_empty()).then_some(n)
}

/// `f` for a person and everyone nested under it.
fn each_person(p: &Person, f: &mut impl FnMut(&Person)) {
    f(p);
    if let Some(n) = &p.nested {
        for q in n.holders.iter().chain(&n.waiters) {
            each_person(q, f);
        }
    }
}

fn person_of(r: &Record) -> Person {
    person(
        r.pid,
        &r.program,
        r.mode,
        &r.since,
        r.command.clone(),
        false,
    )
}

fn person(
    pid: i32,
    program: &str,
    mode: Mode,
    since: &str,
    command: Vec<String>,
    leftover: bool,
) -> Person {
    Person {
        pid,
        program: program.to_owned(),
        mode,
        since: since.to_owned(),
        command,
        note: leftover.then_some("leftover"),
        nested: None,
    }
}
