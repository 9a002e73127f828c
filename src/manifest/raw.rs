//! The manifest as written: serde structs shaped exactly like the TOML, with
//! spans on every name and reference so that validation can point at them.
//!
//! The document is first parsed into toml's spanned tree (recovering from
//! syntax errors, so that every one is reported), then each section and
//! each program is deserialised on its own: one bad program does not hide
//! the errors of the next.

use std::collections::BTreeMap;

use serde::Deserialize;
use toml::Spanned;
use toml::de::{DeTable, DeValue, ValueDeserializer};

use super::error::Diagnostic;
use super::shapes::{RawCommand, article};

// Unknown keys are found by `unknown_keys`, not serde's deny_unknown_fields,
// so that one misspelt key does not hide every other error of its table.
#[derive(Debug, Default, Deserialize)]
pub struct RawSettings {
    pub stop_timeout: Option<Spanned<String>>,
    pub wait: Option<Spanned<String>>,
}

/// `[backend]`: the lock backend shared by several hosts.
#[derive(Debug, Default, Deserialize)]
pub struct RawBackend {
    pub url: Option<Spanned<String>>,
    pub lease: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
pub struct RawProgram {
    pub command: Spanned<RawCommand>,
    pub cwd: Option<Spanned<String>>,
    #[serde(default)]
    pub env: BTreeMap<String, Spanned<String>>,
    #[serde(default)]
    pub reads: Vec<Spanned<String>>,
    #[serde(default)]
    pub writes: Vec<Spanned<String>>,
    /// "running" (default: dblaunch holds its databases while it runs) or
    /// "on-demand" (it locks them itself, per operation).
    pub hold: Option<Spanned<String>>,
    #[serde(default)]
    pub after: Vec<Spanned<String>>,
    /// The signal that asks it to stop (default SIGTERM).
    pub stop_signal: Option<Spanned<String>>,
    /// "no" (default), "on-failure" or "always".
    pub restart: Option<Spanned<String>>,
    /// Consecutive restarts before giving up.
    pub max_restarts: Option<Spanned<i64>>,
    /// Stop gracefully when someone queues for its databases in a
    /// conflicting mode, and come back after them.
    pub yields: Option<Spanned<bool>>,
    /// Programs that must be running and ready before it starts.
    #[serde(default)]
    pub needs: Vec<Spanned<String>>,
    /// `ready` and `watch`, read by `devloop.rs` (`watch` has two shapes).
    #[serde(skip)]
    pub devloop: super::devloop::RawDevloop,
}

/// The sections, in document order.
#[derive(Debug, Default)]
pub struct Raw {
    pub settings: RawSettings,
    pub databases: Vec<(Spanned<String>, Spanned<String>)>,
    /// `key = "…"` of databases written as `{ path = "…", key = "…" }`.
    pub keys: Vec<(String, Spanned<String>)>,
    /// `[backend]`, when present.
    pub backend: Option<(Spanned<()>, RawBackend)>,
    pub programs: Vec<(Spanned<String>, RawProgram)>,
    pub groups: Vec<(Spanned<String>, Vec<Spanned<String>>)>,
    /// Programs whose table could not be read: their names still count as
    /// known, so references to them raise no second error.
    pub broken_programs: Vec<String>,
}

const SETTINGS_KEYS: [&str; 2] = ["stop_timeout", "wait"];
const PROGRAM_KEYS: [&str; 14] = [
    "command",
    "cwd",
    "env",
    "reads",
    "writes",
    "hold",
    "after",
    "stop_signal",
    "restart",
    "max_restarts",
    "yields",
    "needs",
    "ready",
    "watch",
];

fn unknown_keys(
    value: &Spanned<DeValue<'_>>,
    known: &[&str],
    what: &str,
    diags: &mut Vec<Diagnostic>,
) {
    let DeValue::Table(t) = value.get_ref() else {
        return;
    };
    for (k, _) in in_order(t) {
        if !known.contains(&k.get_ref().as_ref()) {
            let mut d = Diagnostic::new(
                format!("unknown key `{}` in {what}", k.get_ref()),
                Some(k.span()),
            );
            d = match super::suggest::closest(k.get_ref(), known.iter().copied()) {
                Some(c) => d.help(format!(
                    "did you mean `{c}`? The keys are {}",
                    known.join(", ")
                )),
                None => d.help(format!("the keys are {}", known.join(", "))),
            };
            diags.push(d);
        }
    }
}

const SECTIONS: [&str; 5] = ["settings", "backend", "databases", "programs", "groups"];
const BACKEND_KEYS: [&str; 2] = ["url", "lease"];
const DATABASE_KEYS: [&str; 2] = ["path", "key"];

pub fn parse(text: &str) -> (Raw, Vec<Diagnostic>) {
    let (doc, errors) = DeTable::parse_recoverable(text);
    let mut diags: Vec<Diagnostic> = errors
        .iter()
        .map(|e| {
            Diagnostic::new(format!("malformed TOML: {}", e.message().trim_end()), e.span())
                .help("see https://toml.io for the syntax, or dblaunch.toml.example for a manifest that works")
        })
        .collect();
    let mut raw = Raw::default();
    if !diags.is_empty() {
        // What follows a syntax error is guesswork; report the syntax only.
        return (raw, diags);
    }
    for (key, value) in in_order(doc.get_ref()) {
        match key.get_ref().as_ref() {
            "settings" => {
                unknown_keys(value, &SETTINGS_KEYS, "[settings]", &mut diags);
                if let Some(s) = deserialize::<RawSettings>(value, &mut diags, "[settings]") {
                    raw.settings = s;
                }
            }
            "backend" => {
                unknown_keys(value, &BACKEND_KEYS, "[backend]", &mut diags);
                if let Some(b) = deserialize::<RawBackend>(value, &mut diags, "[backend]") {
                    raw.backend = Some((spanned(key, ()), b));
                }
            }
            "databases" => {
                for (name, path) in table(value, "[databases]", &mut diags) {
                    match path.get_ref() {
                        DeValue::String(s) => raw
                            .databases
                            .push((owned(name), spanned(path, s.to_string()))),
                        DeValue::Table(t) => {
                            let what = format!("database `{}`", name.get_ref());
                            unknown_keys(path, &DATABASE_KEYS, &what, &mut diags);
                            let field = |k: &str| {
                                t.iter().find(|(key, _)| key.get_ref() == k).map(|(_, v)| v)
                            };
                            match field("path").map(|v| (v, v.get_ref())) {
                                Some((v, DeValue::String(p))) => {
                                    raw.databases.push((owned(name), spanned(v, p.to_string())))
                                }
                                _ => diags.push(
                                    Diagnostic::new(
                                        format!("{what} needs a path string"),
                                        Some(path.span()),
                                    )
                                    .help(format!(
                                        "write {} = {{ path = \"data/{}.duckdb\", key = \"{}\" }}",
                                        name.get_ref(),
                                        name.get_ref(),
                                        name.get_ref()
                                    )),
                                ),
                            }
                            match field("key").map(|v| (v, v.get_ref())) {
                                Some((v, DeValue::String(k))) => raw
                                    .keys
                                    .push((name.get_ref().to_string(), spanned(v, k.to_string()))),
                                Some((v, _)) => diags.push(Diagnostic::new(
                                    format!("the key of {what} must be a string"),
                                    Some(v.span()),
                                )),
                                None => {}
                            }
                        }
                        other => diags.push(
                            Diagnostic::new(
                                format!(
                                    "database `{}` must be a path string, not {}",
                                    name.get_ref(),
                                    article(other.type_str())
                                ),
                                Some(path.span()),
                            )
                            .help("write e.g. letters = \"data/letters.duckdb\""),
                        ),
                    }
                }
            }
            "programs" => {
                for (name, program) in table(value, "[programs]", &mut diags) {
                    let what = format!("program `{}`", name.get_ref());
                    if !program.get_ref().is_table() {
                        diags.push(
                            Diagnostic::new(
                                format!(
                                    "{what} must be a table, not {}",
                                    article(program.get_ref().type_str())
                                ),
                                Some(program.span()),
                            )
                            .help(format!(
                                "write [programs.{}] with command = [...] below it",
                                name.get_ref()
                            )),
                        );
                        raw.broken_programs.push(name.get_ref().to_string());
                        continue;
                    }
                    unknown_keys(program, &PROGRAM_KEYS, &what, &mut diags);
                    let devloop = super::devloop::read(program, name.get_ref(), &mut diags);
                    match deserialize::<RawProgram>(program, &mut diags, &what) {
                        Some(p) => raw
                            .programs
                            .push((owned(name), RawProgram { devloop, ..p })),
                        None => raw.broken_programs.push(name.get_ref().to_string()),
                    }
                }
            }
            "groups" => {
                for (name, members) in table(value, "[groups]", &mut diags) {
                    let what = format!("group `{}`", name.get_ref());
                    if let Some(m) = deserialize::<Vec<Spanned<String>>>(members, &mut diags, &what)
                    {
                        raw.groups.push((owned(name), m));
                    }
                }
            }
            other => {
                let mut d = Diagnostic::new(format!("unknown section `{other}`"), Some(key.span()));
                d = match super::suggest::closest(other, SECTIONS.iter().copied()) {
                    Some(s) => d.help(format!("did you mean `{s}`? The sections are [settings], [backend], [databases], [programs] and [groups]")),
                    None => d.help("the sections are [settings], [backend], [databases], [programs] and [groups]"),
                };
                diags.push(d);
            }
        }
    }
    (raw, diags)
}

/// Entries of a table in the order they appear in the document.
fn in_order<'a, 'i>(
    t: &'a DeTable<'i>,
) -> Vec<(
    &'a Spanned<std::borrow::Cow<'i, str>>,
    &'a Spanned<DeValue<'i>>,
)> {
    let mut v: Vec<_> = t.iter().collect();
    v.sort_by_key(|(k, _)| k.span().start);
    v
}

fn table<'a, 'i>(
    value: &'a Spanned<DeValue<'i>>,
    what: &str,
    diags: &mut Vec<Diagnostic>,
) -> Vec<(
    &'a Spanned<std::borrow::Cow<'i, str>>,
    &'a Spanned<DeValue<'i>>,
)> {
    match value.get_ref() {
        DeValue::Table(t) => in_order(t),
        other => {
            diags.push(Diagnostic::new(
                format!("{what} must be a table, not {}", article(other.type_str())),
                Some(value.span()),
            ));
            Vec::new()
        }
    }
}

fn deserialize<'de, T: Deserialize<'de>>(
    value: &Spanned<DeValue<'de>>,
    diags: &mut Vec<Diagnostic>,
    what: &str,
) -> Option<T> {
    match T::deserialize(ValueDeserializer::from(value.clone())) {
        Ok(v) => Some(v),
        Err(e) => {
            let message = e.message().trim_end().to_owned();
            let help = schema_help(&message);
            let mut d = Diagnostic::new(
                format!("in {what}: {message}"),
                e.span().or(Some(value.span())),
            );
            if let Some(h) = help {
                d = d.help(h);
            }
            diags.push(d);
            None
        }
    }
}

/// Turns serde's wording into advice.
fn schema_help(message: &str) -> Option<String> {
    if message.contains("missing field `command`") {
        Some(
            "every program needs command = [\"program\", \"arg\", ...] or command = \"shell line\""
                .to_owned(),
        )
    } else if message.contains("invalid type") {
        Some(
            "reads, writes, after and group members are arrays of strings; env values are strings"
                .to_owned(),
        )
    } else {
        None
    }
}

fn owned(k: &Spanned<std::borrow::Cow<'_, str>>) -> Spanned<String> {
    Spanned::new(k.span(), k.get_ref().to_string())
}

fn spanned<T, U>(at: &Spanned<T>, value: U) -> Spanned<U> {
    Spanned::new(at.span(), value)
}
