//! Shapes a value of the manifest may take in several places (a command:
//! `command`, and `exec` of a readiness check; a duration: `stop_timeout`,
//! `wait`, a check's `interval` and `timeout`, `debounce`), and how a
//! message names the type of a value that is none of them.

use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use super::error::Diagnostic;
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

/// A duration as written (`"500ms"`, `"1h30m"`), parsed; `what` names the
/// key in the message when it is not one.
pub(super) fn duration(
    s: &Spanned<String>,
    what: &str,
    diags: &mut Vec<Diagnostic>,
) -> Option<Duration> {
    match humantime::parse_duration(s.get_ref()) {
        Ok(d) => Some(d),
        Err(e) => {
            diags.push(
                Diagnostic::new(
                    format!("{what} `{}` is not a duration: {e}", s.get_ref()),
                    Some(s.span()),
                )
                .help("write a duration such as \"500ms\", \"10s\", \"10m\" or \"1h30m\""),
            );
            None
        }
    }
}
