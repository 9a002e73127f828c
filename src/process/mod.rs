//! Starting programs in process groups of their own, signalling those groups
//! and reaping them.

mod group;
mod spawn;

pub use group::{ExitKind, Group, reap_exited};
pub use spawn::{Child, Launch, READY_FD_ENV, Stdio, spawn};
