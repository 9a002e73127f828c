//! The native half of the `dblaunch` Node package: the lock of
//! `dblaunch-lock` as N-API calls. `index.js` is the API; this module is
//! what it calls:
//!
//! - `acquire(request, canceller?)`: a Promise of a `Held` or of a
//!   `Failure` (a plain object that `index.js` turns into an Error). The
//!   wait runs on a thread of its own (see `waiters.rs`), never on the event
//!   loop nor on libuv's thread pool, and settles the Promise through a
//!   thread-safe function.
//! - `Canceller`: a `Cancel` that an `AbortSignal` fires.
//! - `resolve(dbs, manifest?)`: the canonical path of each database, as
//!   the lock names them (for re-entry, which `index.js` keeps per async
//!   context).
//! - `status(dbs, manifest?)`: a Promise of the `dblaunch status --json`
//!   document.

mod failure;
mod teardown;
mod waiters;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use dblaunch_lock::names::{self, Project};
use dblaunch_lock::{Cancel, Database, Error, Guard, Lock, Mode, OwnerId, occupancy};
use napi::bindgen_prelude::{Either, Object};
use napi::{Env, Status};
use napi_derive::napi;

use crate::failure::Failure;

/// What settles a Promise, on the event loop's thread.
type Resolver<T> = Box<dyn FnOnce(Env) -> napi::Result<T>>;

/// One database and how it is used.
#[napi(object)]
pub struct Target {
    pub db: String,
    /// `"read"` or `"write"`.
    pub mode: String,
}

/// What to lock, and how.
#[napi(object)]
pub struct Request {
    pub targets: Vec<Target>,
    /// Milliseconds; absent: as long as it takes; zero: try once.
    pub timeout_ms: Option<f64>,
    pub name: Option<String>,
    pub manifest: Option<String>,
}

/// Databases held; released by `release()`, or when garbage collected.
#[napi]
pub struct Held {
    guard: Option<Guard>,
    databases: Vec<HeldDatabase>,
    tokens: Vec<FencingToken>,
}

#[napi(object)]
#[derive(Clone)]
pub struct HeldDatabase {
    /// The canonical path, as `status` shows it.
    pub path: String,
    pub mode: String,
}

#[napi(object)]
#[derive(Clone)]
pub struct FencingToken {
    pub key: String,
    pub token: i64,
}

#[napi]
impl Held {
    /// Releases (once; later calls do nothing). Whether it was held.
    #[napi]
    pub fn release(&mut self) -> bool {
        let Some(guard) = self.guard.take() else {
            return false;
        };
        if self.tokens.is_empty() {
            // Host-local: a few system calls, here.
            drop(guard);
        } else {
            // Held in a lock backend too: giving it back there is a round
            // trip to PostgreSQL (up to a lease when it is unreachable),
            // which must not stall the event loop. The host's lock goes
            // with it, a moment later. (A thread that cannot be started
            // drops the guard here.)
            let _ = waiters::run(Box::new(move || drop(guard)));
        }
        true
    }

    #[napi]
    pub fn databases(&self) -> Vec<HeldDatabase> {
        self.databases.clone()
    }

    #[napi]
    pub fn fencing_tokens(&self) -> Vec<FencingToken> {
        self.tokens.clone()
    }
}

/// A Held that JavaScript dropped without a release (garbage collected,
/// or its worker ended) releases as `release()` does.
impl Drop for Held {
    fn drop(&mut self) {
        self.release();
    }
}

impl Held {
    fn new(guard: Guard) -> Held {
        let databases = guard
            .databases()
            .into_iter()
            .map(|(path, mode)| HeldDatabase {
                path: path.display().to_string(),
                mode: mode.to_string(),
            })
            .collect();
        let tokens = guard
            .fencing_tokens()
            .into_iter()
            .map(|(key, token)| FencingToken { key, token })
            .collect();
        Held {
            guard: Some(guard),
            databases,
            tokens,
        }
    }
}

/// Ends a wait from the event loop (an `AbortSignal`'s abort).
#[napi]
pub struct Canceller {
    cancel: Arc<Cancel>,
}

#[napi]
impl Canceller {
    #[napi(constructor)]
    pub fn new() -> napi::Result<Canceller> {
        let cancel = Cancel::new().map_err(|e| {
            napi::Error::new(
                Status::GenericFailure,
                format!("cannot make an eventfd to cancel a wait with: {e}"),
            )
        })?;
        Ok(Canceller {
            cancel: Arc::new(cancel),
        })
    }

    /// Ends the wait now: the queue is left and nothing is granted later.
    #[napi]
    pub fn cancel(&self) {
        self.cancel.cancel();
    }
}

/// A new owner for each acquisition: even numbers (the lock gives threads
/// odd ones), unique in the process whatever the worker thread, so that two
/// acquisitions never re-enter each other in the lock. Re-entry is
/// `index.js`'s, per async context.
fn new_owner() -> OwnerId {
    static NEXT: AtomicU64 = AtomicU64::new(2);
    OwnerId(NEXT.fetch_add(2, Ordering::Relaxed))
}

/// The Lock a request stands for; a Failure for input that names nothing
/// lockable.
fn lock_of(request: Request, cancel: Arc<Cancel>) -> Result<Lock, Box<Failure>> {
    let mut lock: Option<Lock> = None;
    for t in &request.targets {
        let mode: Mode = t.mode.parse().map_err(Failure::invalid)?;
        lock = Some(match lock {
            None => Lock::new(&t.db, mode),
            Some(l) => l.and(&t.db, mode),
        });
    }
    let mut lock = lock.ok_or_else(|| Failure::invalid("no database to lock was given".into()))?;
    if let Some(ms) = request.timeout_ms {
        if !ms.is_finite() || ms < 0.0 {
            return Err(Failure::invalid(format!(
                "timeout {ms} is not a number of milliseconds (0 or more)"
            )));
        }
        lock = lock.timeout(Duration::from_secs_f64(ms / 1000.0));
    }
    if let Some(name) = request.name {
        lock = lock.name(name);
    }
    if let Some(manifest) = request.manifest {
        lock = lock.manifest(manifest);
    }
    Ok(lock.cancel_on(cancel).owner(new_owner()))
}

/// Waits for the request's databases on a thread of its own; the Promise
/// settles with a `Held` or a `Failure`.
#[napi(ts_return_type = "Promise<Held | Failure>")]
pub fn acquire<'env>(
    env: &'env Env,
    request: Request,
    canceller: Option<&Canceller>,
) -> napi::Result<Object<'env>> {
    // Every wait has a cancel: the signal's, else one of its own, which the
    // environment's teardown fires (a worker that ends leaves the queue).
    let cancel = match canceller {
        Some(c) => Arc::clone(&c.cancel),
        None => Arc::new(Cancel::new().map_err(|e| {
            napi::Error::new(
                Status::GenericFailure,
                format!("cannot make an eventfd to wait with: {e}"),
            )
        })?),
    };
    teardown::watch(env, &cancel)?;
    let (deferred, promise) = env.create_deferred::<Either<Held, Failure>, Resolver<_>>()?;
    let lock = match lock_of(request, cancel) {
        Ok(lock) => lock,
        Err(failure) => {
            deferred.resolve(Box::new(move |_| Ok(Either::B(*failure))));
            return Ok(promise);
        }
    };
    let started = waiters::run(Box::new(move || {
        let outcome = match lock.acquire() {
            Ok(guard) => Either::A(Held::new(guard)),
            Err(e) => Either::B(*Failure::of(&e)),
        };
        // Settled on the event loop's thread; if Node has gone (a worker
        // that ended), the outcome is dropped here, and a guard with it.
        deferred.resolve(Box::new(move |_| Ok(outcome)));
    }));
    started.map_err(|e| {
        napi::Error::new(
            Status::GenericFailure,
            format!("cannot start a thread to wait for the lock on: {e}"),
        )
    })?;
    Ok(promise)
}

fn cwd() -> Result<PathBuf, Box<Failure>> {
    std::env::current_dir().map_err(|e| {
        Failure::invalid(format!(
            "cannot read the current directory ({e}), which relative database paths are relative to: give an absolute path"
        ))
    })
}

fn project(manifest: Option<&str>, cwd: &Path) -> Result<Option<Arc<Project>>, Box<Failure>> {
    Project::find(manifest.map(Path::new), cwd).map_err(|e| Failure::of(&Error::from(e)))
}

/// Resolves database arguments as the lock does.
fn databases(dbs: &[String], manifest: Option<&str>) -> Result<Vec<Database>, Box<Failure>> {
    let cwd = cwd()?;
    let project = project(manifest, &cwd)?;
    dbs.iter()
        .map(|given| {
            if given.is_empty() {
                return Err(Failure::invalid(
                    "a database path or name is empty: give the path of the database file (or directory), or a name of the manifest's [databases]".into(),
                ));
            }
            names::resolve(given, project.as_deref(), &cwd).map_err(|e| Failure::of(&Error::from(e)))
        })
        .collect()
}

/// The canonical path of each database (a `Failure` for one that names
/// nothing lockable).
#[napi]
pub fn resolve(dbs: Vec<String>, manifest: Option<String>) -> Either<Vec<String>, Failure> {
    match databases(&dbs, manifest.as_deref()) {
        Ok(found) => Either::A(
            found
                .iter()
                .map(|d| d.path().display().to_string())
                .collect(),
        ),
        Err(f) => Either::B(*f),
    }
}

/// The databases `status` reports: those given, else every database of the
/// manifest's `[databases]`.
fn reported(dbs: &[String], manifest: Option<&str>) -> Result<Vec<Database>, Box<Failure>> {
    if !dbs.is_empty() {
        let mut found = databases(dbs, manifest)?;
        found.sort();
        found.dedup();
        return Ok(found);
    }
    let cwd = cwd()?;
    let Some(project) = project(manifest, &cwd)? else {
        return Err(Failure::invalid(format!(
            "no manifest to take the databases from: no ${} and no {} in {} or any parent directory; or name the databases: status(['data/app.db'])",
            names::FILE_ENV,
            names::MANIFEST,
            cwd.display()
        )));
    };
    let mut found = project
        .databases
        .iter()
        .map(|(_, path, _)| Database::resolve(path, &project.dir))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| Failure::of(&Error::from(e)))?;
    found.sort();
    found.dedup();
    Ok(found)
}

/// The `dblaunch status --json` document for the databases (every one of
/// the manifest's when none is given), as JSON text; computed on a thread
/// of its own (it reads every process's descriptors).
#[napi(ts_return_type = "Promise<string | Failure>")]
pub fn status<'env>(
    env: &'env Env,
    dbs: Vec<String>,
    manifest: Option<String>,
) -> napi::Result<Object<'env>> {
    let (deferred, promise) = env.create_deferred::<Either<String, Failure>, Resolver<_>>()?;
    let started = waiters::run(Box::new(move || {
        let outcome = match reported(&dbs, manifest.as_deref()) {
            Ok(found) => {
                let report = occupancy::report(&found);
                Either::A(serde_json::to_string(&report).expect("the report always serialises"))
            }
            Err(f) => Either::B(*f),
        };
        deferred.resolve(Box::new(move |_| Ok(outcome)));
    }));
    started.map_err(|e| {
        napi::Error::new(
            Status::GenericFailure,
            format!("cannot start a thread to read the status on: {e}"),
        )
    })?;
    Ok(promise)
}

/// A guard crosses from the waiting thread to the event loop's.
const _: () = {
    const fn sendable<T: Send>() {}
    sendable::<Guard>();
};
