//! One module per subcommand, each with `execute(args) -> Result<u8, Error>`
//! returning the exit status.

pub mod check;
pub mod docs;
pub mod exec;
pub mod logs;
pub mod probe;
pub mod ps;
pub mod run;
pub mod start;
pub mod status;
pub mod stop;
