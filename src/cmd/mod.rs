//! One module per subcommand, each with `execute(args) -> Result<u8, Error>`
//! returning the exit status.

pub mod check;
pub mod docs;
pub mod exec;
pub mod probe;
pub mod run;
pub mod status;
pub mod stop;
