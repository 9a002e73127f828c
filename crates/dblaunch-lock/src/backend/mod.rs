//! The cross-host lock: the seam between dblaunch and a coordination
//! engine shared by several machines.
//!
//! A database with a backend is locked in two places, in one global order:
//! first on the host, by the kernel lock queue (so local
//! users, crash safety and leftovers work exactly as without a backend),
//! then here. The supervisor sees only [`Backend`] and [`Lease`]; PostgreSQL
//! is the first engine, and another (etcd) implements the same two traits
//! without touching the supervisor or the local lock.

mod config;
mod error;
#[cfg(feature = "postgres")]
mod postgres;
mod seam;
mod url;

pub use config::{Config, DEFAULT_LEASE, LEASE_ENV, parse_lease};
pub use error::BackendError;
#[cfg(feature = "postgres")]
pub(crate) use postgres::Postgres;
pub use seam::{Acquired, Backend, Claim, Claimant, Entry, Fence, Interrupt, Lease};
pub use url::{BACKEND_ENV, redact};
