//! Why a lock was not granted, as a plain object that `index.js` turns into
//! an Error with a `code`: `EBUSY` (with the holders), `EDEADLK`,
//! `EINVAL`, `ECANCELED` (an `AbortError` there), `EIO`.

use dblaunch_lock::{Error, Holder};
use napi_derive::napi;
use serde_json::{Value, json};

#[napi(object)]
pub struct Failure {
    pub code: String,
    /// What happened and what to do about it, naming the holder.
    pub message: String,
    /// The database concerned, when there is one.
    pub database: Option<String>,
    /// The mode that was asked for (`EBUSY`).
    pub mode: Option<String>,
    /// Who was in the way, the holder first (`EBUSY`).
    pub holders: Option<Value>,
    /// How long it waited, in milliseconds (`EBUSY`).
    pub waited_ms: Option<f64>,
    /// The timeout, in milliseconds (`EBUSY`).
    pub timeout_ms: Option<f64>,
    /// Who holds the database for reading (`EDEADLK`).
    pub holder: Option<String>,
}

impl Failure {
    fn bare(code: &str, message: String) -> Failure {
        Failure {
            code: code.to_owned(),
            message,
            database: None,
            mode: None,
            holders: None,
            waited_ms: None,
            timeout_ms: None,
            holder: None,
        }
    }

    /// Input that names nothing lockable.
    pub fn invalid(message: String) -> Box<Failure> {
        Box::new(Failure::bare("EINVAL", message))
    }

    pub fn of(e: &Error) -> Box<Failure> {
        Box::new(Failure::from_error(e))
    }

    fn from_error(e: &Error) -> Failure {
        let message = e.to_string();
        match e {
            Error::Busy {
                database,
                mode,
                holders,
                waited,
                timeout,
            } => Failure {
                database: Some(database.display().to_string()),
                mode: Some(mode.to_string()),
                holders: Some(Value::Array(holders.iter().map(holder).collect())),
                waited_ms: Some(waited.as_secs_f64() * 1000.0),
                timeout_ms: Some(timeout.as_secs_f64() * 1000.0),
                ..Failure::bare("EBUSY", message)
            },
            Error::WouldDeadlock { database, holder } => Failure {
                database: Some(database.display().to_string()),
                holder: Some(holder.clone()),
                ..Failure::bare("EDEADLK", message)
            },
            Error::Usage(_) => Failure::bare("EINVAL", message),
            Error::Cancelled => Failure::bare("ECANCELED", message),
            Error::Failed(_) => Failure::bare("EIO", message),
        }
    }
}

/// A holder as a plain object: its `kind`, its fields, and `description`,
/// the words the messages use for it.
fn holder(h: &Holder) -> Value {
    let description = h.to_string();
    let mut v = match h {
        Holder::Program {
            program,
            pid,
            mode,
            holding,
            since,
        } => json!({
            "kind": "program", "program": program, "pid": pid, "mode": mode,
            "holding": holding, "since": since,
        }),
        Holder::Leftover {
            program,
            pids,
            mode,
        } => json!({
            "kind": "leftover", "program": program, "mode": mode,
            "processes": pids.iter().map(|(pid, command)| json!({"pid": pid, "command": command})).collect::<Vec<_>>(),
        }),
        Holder::Unknown { ticket, why } => json!({
            "kind": "unknown", "ticket": ticket, "why": why,
        }),
        Holder::Orphan {
            program,
            pid,
            command,
            mode,
            since,
        } => json!({
            "kind": "orphan", "program": program, "pid": pid, "command": command,
            "mode": mode, "since": since,
        }),
        Holder::Remote(entry) => {
            let mut v = serde_json::to_value(entry).unwrap_or_else(|_| json!({}));
            v["kind"] = json!("remote");
            v
        }
        Holder::BackendSilent { server } => json!({
            "kind": "backend-silent", "server": server,
        }),
        Holder::Foreign {
            pid,
            command,
            write,
        } => json!({
            "kind": "foreign", "pid": pid, "command": command,
            "mode": if *write { "write" } else { "read" },
        }),
    };
    v["description"] = json!(description);
    v
}
