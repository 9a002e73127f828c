//! dblaunch: run programs that share embedded databases without lock errors.
//!
//! The binary is a thin wrapper around [`run`]; each subcommand lives in
//! `cmd/`, the run of programs in `supervisor/`, process handling in
//! `process/`; the database lock is the `dblaunch-lock` crate. The table of
//! every file's job is in docs/design.md ("Layout").

pub mod cli;
pub mod cmd;
pub mod control;
pub mod databases;
pub mod error;
pub mod events;
pub mod history;
mod logging;
pub mod manifest;
pub mod output;
pub mod platform;
pub mod process;
pub mod project;
pub mod readiness;
pub mod sdnotify;
pub mod signals;
pub mod startup;
pub mod supervisor;
pub mod watch;

use crate::cli::{Lazy, Subcommand};
pub use crate::error::Error;
pub use dblaunch_lock::procfs;

/// Parses the command line, runs the subcommand and returns the exit status.
pub fn run() -> u8 {
    let parsed = startup::parse().and_then(|cli| {
        let verbosity = cli.verbosity()?;
        Ok((cli, verbosity))
    });
    let (cli, verbosity) = match parsed {
        Ok(parsed) => parsed,
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
    logging::init(verbosity.verbose, verbosity.quiet);
    let result = match cli.subcommand {
        Subcommand::Exec(Lazy(args, _)) => cmd::exec::execute(cli.file.as_deref(), args),
        Subcommand::Run(Lazy(args, _)) => cmd::run::execute(cli.file.as_deref(), args),
        Subcommand::Start(Lazy(args, _)) => cmd::start::execute(cli.file.as_deref(), args),
        Subcommand::Logs(Lazy(args, _)) => cmd::logs::execute(cli.file.as_deref(), args),
        Subcommand::Ps(Lazy(args, _)) => cmd::ps::execute(cli.file.as_deref(), args),
        Subcommand::Restart(Lazy(args, _)) => cmd::stop::restart(cli.file.as_deref(), args),
        Subcommand::Status(Lazy(args, _)) => cmd::status::execute(cli.file.as_deref(), args),
        Subcommand::History(Lazy(args, _)) => cmd::history::execute(cli.file.as_deref(), args),
        Subcommand::Metrics(Lazy(args, _)) => cmd::metrics::execute(cli.file.as_deref(), args),
        Subcommand::Stop(Lazy(args, _)) => cmd::stop::execute(cli.file.as_deref(), args),
        Subcommand::Check(_) => cmd::check::execute(cli.file.as_deref()),
        Subcommand::Probe(Lazy(args, _)) => cmd::probe::execute(args),
        Subcommand::Completions(Lazy(args, _)) => cmd::docs::completions(args.shell),
        Subcommand::Man(_) => cmd::docs::man(),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            tracing::error!("{e}");
            e.exit_code()
        }
    }
}
