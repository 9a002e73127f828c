//! Why the lock backend cannot be used, each with what to do about it.

use super::url::BACKEND_ENV;

/// The backend cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    #[error(
        "cannot reach the lock backend {server}: {what}; check that the server runs and that [backend] url (or {BACKEND_ENV}) names it. Nothing was started"
    )]
    /// The server cannot be reached.
    Unreachable {
        /// The server (without a password).
        server: String,
        /// What happened.
        what: String,
    },

    #[error(
        "the lock backend {server} refused dblaunch: {what}; check the user, the password (in the URL or PGPASSWORD; ~/.pgpass is not read) and the database name. Nothing was started"
    )]
    /// The server refused us (user, password, database).
    Refused {
        /// The server (without a password).
        server: String,
        /// What happened.
        what: String,
    },

    #[error("the lock backend {server} cannot be used: {what}. Nothing was started")]
    /// The configuration cannot be used.
    Config {
        /// The server (without a password).
        server: String,
        /// What happened.
        what: String,
    },

    #[error("the lock backend {server} failed: {what}; the locks taken so far were given back")]
    /// The server failed while we used it.
    Failed {
        /// The server (without a password).
        server: String,
        /// What happened.
        what: String,
    },
}
