//! A database's lock history, rebuilt from its journal: holds (who held it
//! in which mode from when to when, and how it ended), waits (who waited how
//! long behind whom, and whether they got it), marks (give-ups, foreign
//! blocks, yields, crashes) and a summary. `cmd/history.rs` prints it,
//! `svg.rs` draws it, `metrics.rs` counts it.
//!
//! | file | its one job |
//! | --- | --- |
//! | `load.rs` | every chosen database's journal (or the backend's), read into histories |
//! | `build.rs` | one history, rebuilt from journal lines |
//! | `model.rs` | what a history is made of: holds, waits, marks, the summary |
//! | `summary.rs` | the summary computed: counts, percentiles, who kept whom waiting |
//! | `svg.rs` | the timeline as a picture |
//! | `metrics.rs` | the OpenMetrics exposition |

mod build;
mod load;
pub mod metrics;
mod model;
mod summary;
pub mod svg;

pub use build::build;
pub use load::load;
pub use model::{History, Hold, KeptWaiting, Mark, MarkKind, Stats, Summary, Wait, WaitEnd};
