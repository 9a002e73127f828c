//! dblaunch: run programs that share embedded databases without lock errors.
//!
//! The binary is a thin wrapper around [`run`]; each subcommand lives in
//! `cmd/`, the database lock in `lock/`, process handling in `process/`.

pub mod backend;
pub mod cli;
pub mod cmd;
pub mod control;
pub mod error;
pub mod events;
pub mod history;
pub mod journal;
pub mod lock;
mod logging;
pub mod manifest;
pub mod output;
pub mod platform;
pub mod process;
pub mod project;
pub mod signals;
pub mod supervisor;

use clap::Parser;

use crate::cli::{Cli, Command, Lazy};
pub use crate::error::Error;
pub use crate::platform::procfs;

/// Parses the command line, runs the subcommand and returns the exit status.
pub fn run() -> u8 {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            // --help and --version print to stdout and succeed; usage errors
            // exit 2. A closed stdout is not an error worth reporting.
            let _ = e.print();
            return if e.use_stderr() {
                error::code::USAGE
            } else {
                0
            };
        }
    };
    logging::init(cli.verbose, cli.quiet);
    let result = match cli.command {
        Command::Exec(Lazy(args)) => cmd::exec::execute(cli.file.as_deref(), args),
        Command::Run(Lazy(args)) => cmd::run::execute(cli.file.as_deref(), args),
        Command::Start(Lazy(args)) => cmd::start::execute(cli.file.as_deref(), args),
        Command::Logs(Lazy(args)) => cmd::logs::execute(cli.file.as_deref(), args),
        Command::Ps(Lazy(args)) => cmd::ps::execute(cli.file.as_deref(), args),
        Command::Restart(Lazy(args)) => cmd::stop::restart(cli.file.as_deref(), args),
        Command::Status(Lazy(args)) => cmd::status::execute(cli.file.as_deref(), args),
        Command::History(Lazy(args)) => cmd::history::execute(cli.file.as_deref(), args),
        Command::Metrics(Lazy(args)) => cmd::metrics::execute(cli.file.as_deref(), args),
        Command::Stop(Lazy(args)) => cmd::stop::execute(cli.file.as_deref(), args),
        Command::Check => cmd::check::execute(cli.file.as_deref()),
        Command::Probe(Lazy(args)) => cmd::probe::execute(args),
        Command::Completions { shell } => cmd::docs::completions(shell),
        Command::Man => cmd::docs::man(),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            tracing::error!("{e}");
            e.exit_code()
        }
    }
}
