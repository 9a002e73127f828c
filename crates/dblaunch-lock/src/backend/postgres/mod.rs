//! The PostgreSQL backend: a session advisory
//! lock per key (the server queues them FIFO and lets no later reader
//! overtake a waiting writer), one row per holder or waiter in
//! `dblaunch_holders` (who, where, which fencing token), leases renewed on
//! the holding session, and holders that vanished waited out by the local
//! clock before anything starts.

mod connect;
mod engine;
mod journal;
mod lease;
mod schema;

pub(crate) use engine::Postgres;
