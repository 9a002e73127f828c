//! One database's queue: the gate, the tickets, and the three operations on
//! them (enqueue, wait for one's turn, release).
//!
//! Invariants, which every function here keeps:
//! - a ticket is created, exclusively flocked and given its record while its
//!   creator holds the gate, so every ticket another process can list is
//!   either locked by a live owner or dead;
//! - a ticket is unlinked only by someone who got a shared lock on it (waiting
//!   for it, or trying without waiting): only its owner ever holds it
//!   exclusively, so that proves no process holds it any more; or renamed
//!   out of the queue by its owner while it holds it (a spare, `spare.rs`);
//! - ticket numbers only grow, so a name that no longer exists is finished.
//!
//! | file | its one job |
//! | --- | --- |
//! | `name.rs` | a ticket's name (`00000000000000000042.w`) and its nested queue's |
//! | `lock_dir.rs` | the directory: making files in it, listing its tickets |
//! | `record_file.rs` | opening a ticket, reading its record |
//! | `gate.rs` | the gate: the counter, holders of a removed directory |
//! | `handle.rs` | [`Queue`]: what anyone may read of a queue |
//! | `entry.rs` | [`QueueEntry`]: one ticket as others see it, and its owner's role |
//! | `ticket.rs` | [`Ticket`]: our own place: take, update, abandon, release |
//! | `wait.rs` | waiting for our turn behind the earlier tickets, in flock(2) |
//! | `watch.rs` | waiting for one ticket to be let go, in poll(2), cancellable |
//! | `tidy.rs` | clearing away what nobody holds |
//! | `spare.rs` | the released own ticket a process keeps for its next lock |

mod entry;
mod gate;
mod handle;
mod lock_dir;
mod name;
mod record_file;
mod spare;
mod ticket;
mod tidy;
mod wait;
mod watch;

#[cfg(test)]
mod tests;

pub use entry::{QueueEntry, Role};
pub use handle::Queue;
pub use name::{TicketId, nested_dir_of};
pub use ticket::{Enqueued, Release, Ticket};
pub use tidy::Tidy;
pub use wait::{WaitOutcome, has_tickets, wait_turn};
pub use watch::{Cancel, Watched, wait_free};
