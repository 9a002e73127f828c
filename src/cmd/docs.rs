//! `dblaunch completions SHELL` and `dblaunch man`: generated from the clap
//! definitions, so they never drift from the real command line.

use std::io::Write;

use clap::CommandFactory;

use crate::cli::Cli;
use crate::error::Error;

pub fn completions(shell: clap_complete::Shell) -> Result<u8, Error> {
    let mut cmd = Cli::command();
    clap_complete::generate(shell, &mut cmd, "dblaunch", &mut std::io::stdout());
    Ok(0)
}

pub fn man() -> Result<u8, Error> {
    let mut page = Vec::new();
    clap_mangen::Man::new(Cli::command())
        .render(&mut page)
        .map_err(|source| Error::Io {
            action: "render the man page".to_owned(),
            source,
        })?;
    // A closed stdout (`dblaunch man | head`) is not an error.
    let _ = std::io::stdout().write_all(&page);
    Ok(0)
}
