//! Shapes a value of the manifest may take in several places (a command:
//! `command`, and `exec` of a readiness check), and how a message names
//! the type of a value that is none of them.

use serde::Deserialize;

use super::model::Command;

/// A command as written: a string (run with `sh -c`) or an argv array.
#[derive(Debug, Deserialize)]
#[serde(
    untagged,
    expecting = "command must be a string (run with `sh -c`) or an array of strings (argv)"
)]
pub enum RawCommand {
    Shell(String),
    Argv(Vec<String>),
}

impl RawCommand {
    /// The command in the model.
    pub fn to_command(&self) -> Command {
        match self {
            RawCommand::Shell(s) => Command::Shell(s.clone()),
            RawCommand::Argv(v) => Command::Argv(v.clone()),
        }
    }
}

/// A TOML type with its article, for messages: "an array", "a string".
pub(super) fn article(type_str: &str) -> String {
    let a = if type_str.starts_with(['a', 'e', 'i', 'o', 'u']) {
        "an"
    } else {
        "a"
    };
    format!("{a} {type_str}")
}
