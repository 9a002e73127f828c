//! `dblaunch completions SHELL` and `dblaunch man`: generated from the clap
//! definitions, so they never drift from the real command line.

use std::io::Write;

use clap::CommandFactory;

use crate::cli::Cli;
use crate::error::Error;

pub fn completions(shell: clap_complete::Shell) -> Result<u8, Error> {
    let mut cmd = Cli::command();
    // Made in memory (clap_complete panics when its writer fails), then
    // written.
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut cmd, "dblaunch", &mut script);
    print(&script, "the completion script")
}

pub fn man() -> Result<u8, Error> {
    let mut page = Vec::new();
    clap_mangen::Man::new(Cli::command())
        .render(&mut page)
        .map_err(|source| Error::Io {
            action: "render the man page".to_owned(),
            source,
        })?;
    print(&page, "the man page")
}

/// Writes `text` to stdout. A closed stdout (`dblaunch man | head`) is not
/// an error; any other failure (a full disk) is.
fn print(text: &[u8], what: &str) -> Result<u8, Error> {
    match std::io::stdout().write_all(text) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(Error::Io {
            action: format!("write {what} to stdout"),
            source: e,
        }),
        _ => Ok(0),
    }
}
