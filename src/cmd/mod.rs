//! One module per subcommand, each with `execute(args) -> Result<u8, Error>`
//! returning the exit status. None of them uses another: what several
//! share is in `project.rs`, `databases.rs` and `history/`.

pub mod check;
pub mod docs;
pub mod exec;
pub mod history;
pub mod logs;
pub mod metrics;
pub mod probe;
pub mod ps;
pub mod run;
pub mod start;
pub mod status;
pub mod stop;
