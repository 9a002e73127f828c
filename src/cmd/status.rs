//! `dblaunch status [--json] [PATH]...`: for each database, who holds it,
//! who waits for it in queue order, and which processes use its files
//! without dblaunch. Every pid is validated against its recorded start time;
//! a dead ticket is cleared away (under the gate, where that is safe).

use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::cli::StatusArgs;
use crate::error::Error;
use crate::lock::{
    Database, Holder, Mode, Queue, QueueEntry, Request, State, database_files, foreign_holders,
};
use crate::procfs::{self, FdUse, FileId};

/// The `--json` document (SPEC.md §3), exactly.
#[derive(Debug, Serialize)]
pub struct Report {
    pub databases: Vec<DbStatus>,
}

#[derive(Debug, Serialize)]
pub struct DbStatus {
    pub path: String,
    pub holders: Vec<Person>,
    pub waiters: Vec<Person>,
    pub foreign: Vec<Foreign>,
}

#[derive(Debug, Serialize)]
pub struct Person {
    pub pid: i32,
    pub program: String,
    pub mode: Mode,
    pub since: String,
    pub command: Vec<String>,
    /// For the table only: the program has exited and this process of it
    /// kept the lock.
    #[serde(skip)]
    pub leftover: bool,
    /// Nested dblaunch under this holder (a script it runs calls `dblaunch
    /// exec` or `run` for the database it holds): who holds and who waits
    /// among the processes under it. Absent when there are none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nested: Option<Nested>,
}

#[derive(Debug, Serialize)]
pub struct Nested {
    pub holders: Vec<Person>,
    pub waiters: Vec<Person>,
}

#[derive(Debug, Serialize)]
pub struct Foreign {
    pub pid: i32,
    pub command: Vec<String>,
    /// For the table only: it holds a lock on the file (true: exclusive).
    #[serde(skip)]
    pub lock: Option<bool>,
    /// For the table only: it has the file open.
    #[serde(skip)]
    pub open: bool,
}

pub fn execute(file: Option<&Path>, args: StatusArgs) -> Result<u8, Error> {
    let dbs = databases(file, &args.paths)?;
    let report = report(&dbs);
    let mut out = std::io::stdout().lock();
    // A closed stdout (`dblaunch status | head`) is not an error.
    let _ = if args.json {
        writeln!(
            out,
            "{}",
            serde_json::to_string(&report).expect("the report always serialises")
        )
    } else {
        write!(out, "{}", table(&report))
    };
    Ok(0)
}

/// The databases to show: the given paths, else the manifest's.
fn databases(file: Option<&Path>, paths: &[PathBuf]) -> Result<Vec<Database>, Error> {
    let cwd = std::env::current_dir().map_err(|source| Error::Io {
        action: "read the current directory".to_owned(),
        source,
    })?;
    let mut dbs = BTreeSet::new();
    if paths.is_empty() {
        let manifest = super::check::load(file).map_err(|e| match e {
            Error::Manifest(crate::manifest::ManifestError::NotFound { what }) => Error::Usage(
                format!("{what}; or name the databases: dblaunch status PATH..."),
            ),
            other => other,
        })?;
        let mut all: Vec<PathBuf> = manifest.databases.iter().map(|(_, p)| p.clone()).collect();
        for p in &manifest.programs {
            all.extend(p.locks().map(|(d, _)| d.path.clone()));
        }
        for p in all {
            dbs.insert(Database::resolve(&p, &manifest.dir)?);
        }
    } else {
        for p in paths {
            dbs.insert(Database::resolve(p, &cwd)?);
        }
    }
    Ok(dbs.into_iter().collect())
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
            let entries = match Queue::existing(db) {
                Some(q) => {
                    let entries = q.entries();
                    let dead: Vec<_> = entries.iter().filter(|e| !e.live).map(|e| e.id).collect();
                    if !dead.is_empty() {
                        q.remove_dead(&dead);
                    }
                    entries.into_iter().filter(|e| e.live).collect()
                }
                None => Vec::new(),
            };
            let orphans = Queue::existing(db).map(|q| q.orphans()).unwrap_or_default();
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
        databases: looked.iter().map(|l| status(l, &uses, &locks)).collect(),
    }
}

fn status(l: &Looked, uses: &[FdUse], locks: &[procfs::KernelLock]) -> DbStatus {
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
        match &e.record {
            Ok(r) if r.is_alive() && r.state == State::Holding => {
                managed.insert(r.supervisor_pid);
                let mut holder = person(
                    r.pid,
                    &r.program,
                    r.mode,
                    &r.since,
                    r.command.clone(),
                    false,
                );
                holder.nested = nested(&l.db, &e.path, &mut managed);
                holders.push(holder);
            }
            Ok(r) if r.state == State::Waiting && r.supervisor_is_alive() => {
                managed.insert(r.supervisor_pid);
                waiters.push(person(
                    r.pid,
                    &r.program,
                    r.mode,
                    &r.since,
                    r.command.clone(),
                    false,
                ));
            }
            // The program is gone but the ticket is still locked: processes
            // it left behind kept the inherited lock.
            Ok(r) => {
                for pid in lockers {
                    holders.push(person(
                        pid,
                        &r.program,
                        r.mode,
                        &r.since,
                        procfs::cmdline(pid),
                        true,
                    ));
                }
            }
            Err(_) => {
                for pid in lockers {
                    holders.push(person(pid, "?", e.id.mode, "", procfs::cmdline(pid), true));
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
            holders.push(person(
                *pid,
                name,
                *mode,
                since,
                procfs::cmdline(*pid),
                true,
            ));
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
    let asked = foreign_holders(&Request {
        db: l.db.clone(),
        mode: Mode::Write,
    });
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
        let Ok(r) = &e.record else { continue };
        let mut p = person(
            r.pid,
            &r.program,
            r.mode,
            &r.since,
            r.command.clone(),
            false,
        );
        if r.is_alive() && r.state == State::Holding {
            managed.insert(r.supervisor_pid);
            p.nested = nested(db, &e.path, managed);
            n.holders.push(p);
        } else if r.state == State::Waiting && r.supervisor_is_alive() {
            managed.insert(r.supervisor_pid);
            n.waiters.push(p);
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
        leftover,
        nested: None,
    }
}

fn ago(since: &str) -> String {
    humantime::parse_rfc3339(since)
        .ok()
        .and_then(|t| std::time::SystemTime::now().duration_since(t).ok())
        .map(|d| {
            format!(
                " ({} ago)",
                humantime::format_duration(std::time::Duration::from_secs(d.as_secs()))
            )
        })
        .unwrap_or_default()
}

/// A command line on one line, whatever newlines its arguments hold.
fn one_line(argv: &[String]) -> String {
    argv.join(" ")
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

/// Nested holders and waiters under a holder, indented one step per level.
fn nested_lines(s: &mut String, n: &Nested, depth: usize) {
    let indent = "  ".repeat(depth + 1);
    for (role, p) in n
        .holders
        .iter()
        .map(|p| ("holds (nested)", p))
        .chain(n.waiters.iter().map(|p| ("waits (nested)", p)))
    {
        s.push_str(&format!(
            "{indent}{role}  {}  pid {}  {}  since {}{}  {}\n",
            p.program,
            p.pid,
            p.mode,
            p.since,
            ago(&p.since),
            one_line(&p.command)
        ));
        if let Some(inner) = &p.nested {
            nested_lines(s, inner, depth + 1);
        }
    }
}

/// The human-readable form.
pub fn table(r: &Report) -> String {
    let mut s = String::new();
    for db in &r.databases {
        if db.holders.is_empty() && db.waiters.is_empty() && db.foreign.is_empty() {
            s.push_str(&format!("{}: free\n", db.path));
            continue;
        }
        s.push_str(&format!("{}\n", db.path));
        let width = db
            .holders
            .iter()
            .chain(&db.waiters)
            .map(|p| p.program.len())
            .max()
            .unwrap_or(0)
            .max(7);
        for (role, p) in db
            .holders
            .iter()
            .map(|p| ("holds", p))
            .chain(db.waiters.iter().map(|p| ("waits", p)))
        {
            let program = if p.leftover {
                format!("{} (leftover)", p.program)
            } else {
                p.program.clone()
            };
            s.push_str(&format!(
                "  {role}  {program:<width$}  pid {:<7}  {:<5}  since {}{}  {}\n",
                p.pid,
                p.mode.to_string(),
                p.since,
                ago(&p.since),
                one_line(&p.command),
                width = width + if p.leftover { 11 } else { 0 },
            ));
            if let Some(n) = &p.nested {
                nested_lines(&mut s, n, 1);
            }
        }
        for f in &db.foreign {
            let how = match (f.lock, f.open) {
                (Some(true), _) => "write lock",
                (Some(false), _) => "read lock",
                (None, _) => "open",
            };
            s.push_str(&format!(
                "  used   {:<width$}  pid {:<7}  {how:<10}  {}\n",
                "outside dblaunch",
                f.pid,
                one_line(&f.command),
                width = width.max(16)
            ));
        }
    }
    s
}
