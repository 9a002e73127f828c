//! `dblaunch._native`: the lock of `dblaunch-lock` for Python. The pure
//! Python package (`python/dblaunch`) checks and shapes the arguments and is
//! the documented API; this module only waits, holds and reports.
//!
//! No Python object is touched without the interpreter attached, and no
//! wait happens attached: a synchronous wait detaches (other Python threads
//! run) and attaches only to run the signal handlers when a signal
//! interrupts it; an asyncio wait runs on a thread of its own, which
//! attaches once, at the end, to hand its result to the event loop.

use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use dblaunch_lock::names::{self, Project};
use dblaunch_lock::{Cancel, Database, Error, Guard, Holder, Lock, Mode, OwnerId, occupancy};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList};

/// What to lock and how, checked and owned by Rust, so that a wait needs
/// no Python object.
struct Request {
    targets: Vec<(String, Mode)>,
    timeout: Option<Duration>,
    name: Option<String>,
    owner: Option<OwnerId>,
}

impl Request {
    fn new(
        targets: Vec<(String, String)>,
        timeout: Option<f64>,
        name: Option<String>,
        owner: Option<u64>,
    ) -> PyResult<Request> {
        if targets.is_empty() {
            return Err(PyValueError::new_err("no database given"));
        }
        let targets = targets
            .into_iter()
            .map(|(db, mode)| {
                let mode = mode.parse::<Mode>().map_err(|_| {
                    PyValueError::new_err(format!(
                        "{mode:?} is not a mode: give \"read\" (shared) or \"write\" (exclusive)"
                    ))
                })?;
                Ok((db, mode))
            })
            .collect::<PyResult<Vec<_>>>()?;
        let timeout = match timeout {
            None => None,
            Some(t) if t.is_nan() || t < 0.0 => {
                return Err(PyValueError::new_err(format!(
                    "timeout={t} is not a number of seconds: give 0 or more (0 tries once), or None to wait as long as it takes"
                )));
            }
            Some(t) if t.is_infinite() => None,
            Some(t) => Some(Duration::try_from_secs_f64(t).unwrap_or(Duration::MAX)),
        };
        if name.as_deref().is_some_and(|n| n.trim().is_empty()) {
            return Err(PyValueError::new_err(
                "name is empty: give the name `dblaunch status` should show, or None",
            ));
        }
        if owner.is_some_and(|o| o % 2 == 1) {
            return Err(PyValueError::new_err(
                "an owner must be an even number (odd ones are threads)",
            ));
        }
        Ok(Request {
            targets,
            timeout,
            name,
            owner: owner.map(OwnerId),
        })
    }

    fn lock(&self) -> Lock {
        let mut targets = self.targets.iter();
        let (db, mode) = targets.next().expect("checked: at least one");
        let mut lock = Lock::new(db, *mode);
        for (db, mode) in targets {
            lock = lock.and(db, *mode);
        }
        if let Some(t) = self.timeout {
            lock = lock.timeout(t);
        }
        if let Some(n) = &self.name {
            lock = lock.name(n.clone());
        }
        if let Some(o) = self.owner {
            lock = lock.owner(o);
        }
        lock
    }
}

/// Databases held: what `dblaunch.Lock` keeps while it holds.
#[pyclass(frozen, module = "dblaunch._native")]
struct Held {
    guard: Mutex<Option<Guard>>,
    /// The process that holds: a forked child's copy holds nothing.
    pid: u32,
    databases: Vec<(String, String)>,
    tokens: Vec<(String, i64)>,
}

impl Held {
    fn new(guard: Guard) -> Held {
        let databases = guard
            .databases()
            .into_iter()
            .map(|(p, m)| (p.display().to_string(), m.to_string()))
            .collect();
        let tokens = guard.fencing_tokens();
        Held {
            guard: Mutex::new(Some(guard)),
            pid: std::process::id(),
            databases,
            tokens,
        }
    }

    fn guard(&self) -> MutexGuard<'_, Option<Guard>> {
        self.guard.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[pymethods]
impl Held {
    /// Releases the databases; false if they were released already.
    fn release(&self, py: Python<'_>) -> bool {
        let guard = self.guard().take();
        match guard {
            Some(guard) => {
                py.detach(|| guard.release());
                true
            }
            None => false,
        }
    }

    /// Whether the databases are still held (never in a forked child:
    /// the lock stays its parent's).
    #[getter]
    fn held(&self) -> bool {
        self.pid == std::process::id() && self.guard().is_some()
    }

    /// Each database (its canonical path) and its mode.
    #[getter]
    fn databases(&self) -> Vec<(String, String)> {
        self.databases.clone()
    }

    /// The fencing token of each key held in the lock backend.
    #[getter]
    fn fencing_tokens(&self) -> Vec<(String, i64)> {
        self.tokens.clone()
    }
}

/// An asyncio wait in progress, which its task cancels.
#[pyclass(frozen, module = "dblaunch._native")]
struct Waiter {
    cancel: Arc<Cancel>,
}

#[pymethods]
impl Waiter {
    /// Ends the wait at once: the queue is left, nothing is granted later.
    fn cancel(&self) {
        self.cancel.cancel();
    }
}

/// Waits for the lock on the calling thread, detached from Python; a
/// signal runs Python's handlers, and their exception (KeyboardInterrupt)
/// ends the wait and is raised.
#[pyfunction]
#[pyo3(signature = (targets, timeout=None, name=None, owner=None))]
fn acquire(
    py: Python<'_>,
    targets: Vec<(String, String)>,
    timeout: Option<f64>,
    name: Option<String>,
    owner: Option<u64>,
) -> PyResult<Held> {
    let request = Request::new(targets, timeout, name, owner)?;
    let mut raised: Option<PyErr> = None;
    let result = py.detach(|| {
        request.lock().acquire_interruptible(|| {
            Python::attach(|py| match py.check_signals() {
                Ok(()) => true,
                Err(e) => {
                    raised = Some(e);
                    false
                }
            })
        })
    });
    match (result, raised) {
        (Ok(guard), None) => Ok(Held::new(guard)),
        (Ok(guard), Some(e)) => {
            // Granted as the handler raised: the exception wins.
            py.detach(|| guard.release());
            Err(e)
        }
        (Err(_), Some(e)) => Err(e),
        (Err(e), None) => Err(error(py, e)),
    }
}

/// Starts waiting for the lock on a thread of its own (never the event
/// loop's executor); when the wait ends, `loop.call_soon_threadsafe(done,
/// result)` hands over a `Held` or the exception. The returned `Waiter`
/// cancels it.
#[pyfunction]
#[pyo3(signature = (targets, timeout, name, owner, done, event_loop))]
fn start(
    py: Python<'_>,
    targets: Vec<(String, String)>,
    timeout: Option<f64>,
    name: Option<String>,
    owner: u64,
    done: Py<PyAny>,
    event_loop: Py<PyAny>,
) -> PyResult<Waiter> {
    let request = Request::new(targets, timeout, name, Some(owner))?;
    let cancel = Arc::new(
        Cancel::new()
            .map_err(|e| failure(py, format!("cannot make an eventfd to wait with: {e}")))?,
    );
    let cancel_on = Arc::clone(&cancel);
    std::thread::Builder::new()
        .name("dblaunch-wait".into())
        .spawn(move || {
            block_signals();
            let result = request.lock().cancel_on(cancel_on).acquire();
            // `done` and `event_loop` are used and dropped attached. When
            // the interpreter is shutting down nothing can take the result:
            // a lock in it is released as it drops, here.
            let _handed = Python::try_attach(move |py| {
                let value = match result {
                    Ok(guard) => Py::new(py, Held::new(guard)).map(Py::into_any),
                    Err(e) => Ok(error(py, e).into_value(py).into_any()),
                };
                let value = match value {
                    Ok(v) => v,
                    Err(e) => e.into_value(py).into_any(),
                };
                let handed = event_loop.call_method1(
                    py,
                    "call_soon_threadsafe",
                    (done, value.clone_ref(py)),
                );
                if handed.is_err() {
                    // The loop is closed: nobody will take the lock.
                    if let Ok(held) = value.bind(py).cast::<Held>() {
                        held.get().release(py);
                    }
                }
            });
        })
        .map_err(|e| failure(py, format!("cannot start a thread to wait with: {e}")))?;
    Ok(Waiter { cancel })
}

/// Keeps signals away from a wait thread: the kernel gives a process's
/// signal to any thread that does not block it, and Python runs its
/// handlers (Ctrl-C's KeyboardInterrupt) only when one of its own threads
/// is woken by it.
fn block_signals() {
    // SAFETY: sigfillset initialises the set it is given, and
    // pthread_sigmask changes only the calling thread's mask.
    unsafe {
        let mut all: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&mut all);
        libc::pthread_sigmask(libc::SIG_BLOCK, &all, std::ptr::null_mut());
    }
}

/// `dblaunch status --json` for `dbs` (paths or manifest names; none: every
/// database of the manifest's [databases]).
#[pyfunction]
fn status_json(py: Python<'_>, dbs: Vec<String>) -> PyResult<String> {
    let report = py.detach(|| -> Result<String, String> {
        let cwd = std::env::current_dir()
            .map_err(|e| format!("cannot read the current directory: {e}"))?;
        let project = Project::find(None, &cwd).map_err(|e| e.to_string())?;
        let mut found: Vec<Database> = Vec::new();
        if dbs.is_empty() {
            let Some(project) = project.as_deref() else {
                return Err(format!(
                    "there is no manifest ({} or {} in {} or a parent): name the databases, dblaunch.status(PATH, ...)",
                    names::FILE_ENV,
                    names::MANIFEST,
                    cwd.display()
                ));
            };
            for (_, path, _) in &project.databases {
                found.push(Database::resolve(path, &project.dir).map_err(|e| e.to_string())?);
            }
        } else {
            for db in &dbs {
                found.push(
                    names::resolve(db, project.as_deref(), &cwd).map_err(|e| e.to_string())?,
                );
            }
        }
        found.sort();
        found.dedup();
        let report = occupancy::report(&found);
        serde_json::to_string(&report).map_err(|e| e.to_string())
    });
    report.map_err(PyValueError::new_err)
}

/// The Python exception for a lock not granted.
fn error(py: Python<'_>, e: Error) -> PyErr {
    let message = e.to_string();
    let made = match e {
        Error::Usage(m) => return PyValueError::new_err(m),
        Error::Busy {
            database,
            mode,
            holders,
            waited,
            timeout,
        } => (|| {
            let kwargs = PyDict::new(py);
            kwargs.set_item("database", path(&database))?;
            kwargs.set_item("mode", mode.to_string())?;
            let list = PyList::empty(py);
            for h in &holders {
                list.append(holder(py, h)?)?;
            }
            kwargs.set_item("holders", list)?;
            kwargs.set_item("waited", waited.as_secs_f64())?;
            kwargs.set_item("timeout", timeout.as_secs_f64())?;
            exception(py, "Busy", &message, &kwargs)
        })(),
        Error::WouldDeadlock { database, holder } => (|| {
            let kwargs = PyDict::new(py);
            kwargs.set_item("database", path(&database))?;
            kwargs.set_item("holder", holder)?;
            exception(py, "WouldDeadlock", &message, &kwargs)
        })(),
        Error::Cancelled | Error::Failed(_) => exception(py, "Error", &message, &PyDict::new(py)),
    };
    made.unwrap_or_else(|e| e)
}

fn path(p: &Path) -> String {
    p.display().to_string()
}

/// `dblaunch._errors.<class>(message, **kwargs)`, as a `PyErr`.
fn exception(
    py: Python<'_>,
    class: &str,
    message: &str,
    kwargs: &Bound<'_, PyDict>,
) -> PyResult<PyErr> {
    let class = py.import("dblaunch._errors")?.getattr(class)?;
    let value = class.call((message,), Some(kwargs))?;
    Ok(PyErr::from_value(value))
}

fn failure(py: Python<'_>, message: String) -> PyErr {
    exception(py, "Error", &message, &PyDict::new(py)).unwrap_or_else(|e| e)
}

/// A holder as a dict: `kind`, then what is known of it.
fn holder<'py>(py: Python<'py>, h: &Holder) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    match h {
        Holder::Program {
            program,
            pid,
            mode,
            holding,
            since,
        } => {
            d.set_item("kind", "program")?;
            d.set_item("pid", pid)?;
            d.set_item("program", program)?;
            d.set_item("mode", mode.to_string())?;
            d.set_item("holding", holding)?;
            d.set_item("since", since)?;
        }
        Holder::Leftover {
            program,
            pids,
            mode,
        } => {
            d.set_item("kind", "leftover")?;
            d.set_item("pid", pids.first().map(|(p, _)| *p))?;
            d.set_item("pids", pids.iter().map(|(p, _)| *p).collect::<Vec<_>>())?;
            d.set_item("program", program)?;
            d.set_item("mode", mode.to_string())?;
            d.set_item("holding", true)?;
        }
        Holder::Unknown { ticket, why } => {
            d.set_item("kind", "unknown")?;
            d.set_item("ticket", ticket)?;
            d.set_item("why", why)?;
        }
        Holder::Orphan {
            program,
            pid,
            command,
            mode,
            since,
        } => {
            d.set_item("kind", "orphan")?;
            d.set_item("pid", pid)?;
            d.set_item("program", program)?;
            d.set_item("command", command)?;
            d.set_item("mode", mode.to_string())?;
            d.set_item("holding", true)?;
            d.set_item("since", since)?;
        }
        Holder::Remote(e) => {
            d.set_item("kind", "remote")?;
            d.set_item("host", &e.host)?;
            d.set_item("pid", e.pid)?;
            d.set_item("program", &e.program)?;
            d.set_item("mode", e.mode.to_string())?;
            d.set_item("holding", e.holding)?;
            d.set_item("since", &e.since)?;
            d.set_item("key", &e.key)?;
            d.set_item("token", e.token)?;
            d.set_item("lost", e.lost)?;
        }
        Holder::BackendSilent { server } => {
            d.set_item("kind", "backend-silent")?;
            d.set_item("server", server)?;
        }
        Holder::Foreign {
            pid,
            command,
            write,
        } => {
            d.set_item("kind", "foreign")?;
            d.set_item("pid", pid)?;
            d.set_item("command", command)?;
            d.set_item("mode", if *write { "write" } else { "read" })?;
            d.set_item("holding", true)?;
        }
    }
    d.set_item("description", h.to_string())?;
    Ok(d)
}

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<Held>()?;
    m.add_class::<Waiter>()?;
    m.add_function(wrap_pyfunction!(acquire, m)?)?;
    m.add_function(wrap_pyfunction!(start, m)?)?;
    m.add_function(wrap_pyfunction!(status_json, m)?)?;
    Ok(())
}
