//! The dev-loop keys of a program: `ready` (when it counts as up), `watch`
//! (what restarts it) and `needs` (what must be up before it starts), from
//! the TOML (read here, beside `raw.rs`, since `watch` has two shapes) to
//! the model, every error located.

use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use toml::Spanned;
use toml::de::DeValue;

use super::error::Diagnostic;
use super::model::{Check, Ready, Watch, normalize};
use super::shapes::{RawCommand, duration};

/// The readiness checks, then their settings.
const READY_CHECKS: [&str; 5] = ["tcp", "http", "exec", "log", "notify"];
const READY_KEYS: [&str; 7] = [
    "tcp", "http", "exec", "log", "notify", "interval", "timeout",
];
const WATCH_KEYS: [&str; 3] = ["paths", "ignore", "debounce"];

/// How often a check runs until it succeeds, and how long it may take.
pub const DEFAULT_INTERVAL: Duration = Duration::from_millis(250);
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);
/// Changes this close together restart a watched program once.
pub const DEFAULT_DEBOUNCE: Duration = Duration::from_millis(300);

/// `ready = { … }` as written.
#[derive(Debug, Default)]
pub struct RawReady {
    pub at: Range<usize>,
    pub tcp: Option<Spanned<String>>,
    pub http: Option<Spanned<String>>,
    pub exec: Option<Spanned<RawCommand>>,
    pub log: Option<Spanned<String>>,
    pub notify: Option<Spanned<bool>>,
    pub interval: Option<Spanned<String>>,
    pub timeout: Option<Spanned<String>>,
    /// It names a check dblaunch does not know (already reported).
    pub unknown: bool,
}

/// `watch = [...]` or `watch = { paths = [...], ignore = [...], debounce }`.
#[derive(Debug, Default)]
pub struct RawWatch {
    pub paths: Vec<Spanned<String>>,
    pub ignore: Vec<Spanned<String>>,
    pub debounce: Option<Spanned<String>>,
}

/// A program's dev-loop keys as written (`needs` is deserialised with the
/// rest of the program). Boxed: most programs have neither, and a large
/// program struct costs every launch that reads the manifest.
#[derive(Debug, Default)]
pub struct RawDevloop {
    pub ready: Option<Box<RawReady>>,
    pub watch: Option<Box<RawWatch>>,
}

fn field<'a, 'i>(value: &'a Spanned<DeValue<'i>>, key: &str) -> Option<&'a Spanned<DeValue<'i>>> {
    match value.get_ref() {
        DeValue::Table(t) => t.iter().find(|(k, _)| k.get_ref() == key).map(|(_, v)| v),
        _ => None,
    }
}

fn string(
    v: &Spanned<DeValue<'_>>,
    what: &str,
    diags: &mut Vec<Diagnostic>,
) -> Option<Spanned<String>> {
    match v.get_ref() {
        DeValue::String(s) => Some(Spanned::new(v.span(), s.to_string())),
        other => {
            diags.push(Diagnostic::new(
                format!(
                    "{what} must be a string, not {}",
                    super::shapes::article(other.type_str())
                ),
                Some(v.span()),
            ));
            None
        }
    }
}

fn strings(
    v: &Spanned<DeValue<'_>>,
    what: &str,
    diags: &mut Vec<Diagnostic>,
) -> Vec<Spanned<String>> {
    match v.get_ref() {
        DeValue::Array(items) => items
            .iter()
            .filter_map(|i| string(i, what, diags))
            .collect(),
        other => {
            diags.push(
                Diagnostic::new(
                    format!(
                        "{what} must be an array of strings, not {}",
                        super::shapes::article(other.type_str())
                    ),
                    Some(v.span()),
                )
                .help("write e.g. [\"src\", \"package.json\"]"),
            );
            Vec::new()
        }
    }
}

/// Reads `ready` and `watch` of program `name` (its table is `program`).
pub fn read(program: &Spanned<DeValue<'_>>, name: &str, diags: &mut Vec<Diagnostic>) -> RawDevloop {
    RawDevloop {
        ready: field(program, "ready")
            .and_then(|v| read_ready(v, name, diags))
            .map(Box::new),
        watch: field(program, "watch")
            .and_then(|v| read_watch(v, name, diags))
            .map(Box::new),
    }
}

fn read_ready(
    v: &Spanned<DeValue<'_>>,
    name: &str,
    diags: &mut Vec<Diagnostic>,
) -> Option<RawReady> {
    let DeValue::Table(t) = v.get_ref() else {
        diags.push(
            Diagnostic::new(
                format!(
                    "`ready` of program `{name}` must be a table, not {}",
                    super::shapes::article(v.get_ref().type_str())
                ),
                Some(v.span()),
            )
            .help(ready_help()),
        );
        return None;
    };
    let mut ready = RawReady {
        at: v.span(),
        ..RawReady::default()
    };
    let what = |k: &str| format!("`ready.{k}` of program `{name}`");
    for (k, value) in t.iter() {
        match k.get_ref().as_ref() {
            "tcp" => ready.tcp = string(value, &what("tcp"), diags),
            "http" => ready.http = string(value, &what("http"), diags),
            "log" => ready.log = string(value, &what("log"), diags),
            "interval" => ready.interval = string(value, &what("interval"), diags),
            "timeout" => ready.timeout = string(value, &what("timeout"), diags),
            "exec" => match value.get_ref() {
                DeValue::String(s) => {
                    ready.exec = Some(Spanned::new(value.span(), RawCommand::Shell(s.to_string())))
                }
                DeValue::Array(_) => {
                    let argv = strings(value, &what("exec"), diags);
                    ready.exec = Some(Spanned::new(
                        value.span(),
                        RawCommand::Argv(argv.into_iter().map(|s| s.into_inner()).collect()),
                    ))
                }
                other => diags.push(Diagnostic::new(
                    format!(
                        "{} must be a string (run with `sh -c`) or an array of strings (argv), not {}",
                        what("exec"),
                        super::shapes::article(other.type_str())
                    ),
                    Some(value.span()),
                )),
            },
            "notify" => match value.get_ref() {
                DeValue::Boolean(b) => ready.notify = Some(Spanned::new(value.span(), *b)),
                other => diags.push(
                    Diagnostic::new(
                        format!(
                            "{} must be true or false, not {}",
                            what("notify"),
                            super::shapes::article(other.type_str())
                        ),
                        Some(value.span()),
                    )
                    .help("write ready = { notify = true }"),
                ),
            },
            other => {
                ready.unknown = true;
                let d = Diagnostic::new(
                    format!("unknown readiness check `{other}` in program `{name}`"),
                    Some(k.span()),
                );
                diags.push(match super::suggest::closest(other, READY_KEYS.iter().copied()) {
                    Some(c) => d.help(format!("did you mean `{c}`? A{}", &ready_help()[1..])),
                    None => d.help(ready_help()),
                });
            }
        }
    }
    Some(ready)
}

fn ready_help() -> String {
    format!(
        "a check is one of {} (with interval and timeout), e.g. ready = {{ tcp = \"127.0.0.1:5432\" }}",
        READY_CHECKS.join(", ")
    )
}

fn read_watch(
    v: &Spanned<DeValue<'_>>,
    name: &str,
    diags: &mut Vec<Diagnostic>,
) -> Option<RawWatch> {
    let what = format!("`watch` of program `{name}`");
    match v.get_ref() {
        DeValue::Array(_) => Some(RawWatch {
            paths: strings(v, &what, diags),
            ..RawWatch::default()
        }),
        DeValue::Table(t) => {
            let mut w = RawWatch::default();
            let mut unknown = false;
            for (k, value) in t.iter() {
                match k.get_ref().as_ref() {
                    "paths" => {
                        w.paths =
                            strings(value, &format!("`watch.paths` of program `{name}`"), diags)
                    }
                    "ignore" => {
                        w.ignore =
                            strings(value, &format!("`watch.ignore` of program `{name}`"), diags)
                    }
                    "debounce" => {
                        w.debounce = string(
                            value,
                            &format!("`watch.debounce` of program `{name}`"),
                            diags,
                        )
                    }
                    other => {
                        unknown = true;
                        let d = Diagnostic::new(
                            format!("unknown key `{other}` in {what}"),
                            Some(k.span()),
                        );
                        diags.push(
                            match super::suggest::closest(other, WATCH_KEYS.iter().copied()) {
                                Some(c) => d.help(format!(
                                    "did you mean `{c}`? The keys are paths, ignore and debounce"
                                )),
                                None => d.help("the keys are paths, ignore and debounce"),
                            },
                        );
                    }
                }
            }
            if !unknown && !t.iter().any(|(k, _)| k.get_ref() == "paths") {
                diags.push(
                    Diagnostic::new(format!("{what} has no paths"), Some(v.span()))
                        .help("write watch = { paths = [\"src\"], ignore = [\"*.tmp\"] }"),
                );
            }
            Some(w)
        }
        other => {
            diags.push(
                Diagnostic::new(
                    format!("{what} must be an array of paths or a table, not {}", super::shapes::article(other.type_str())),
                    Some(v.span()),
                )
                .help("write watch = [\"src\", \"package.json\"] or watch = { paths = [\"src\"], ignore = [\"*.tmp\"], debounce = \"300ms\" }"),
            );
            None
        }
    }
}

/// `ready` of program `name`, checked.
pub fn ready(raw: &RawReady, name: &str, diags: &mut Vec<Diagnostic>) -> Option<Ready> {
    let mut checks: Vec<(Range<usize>, Option<Check>)> = Vec::new();
    if let Some(a) = &raw.tcp {
        checks.push((a.span(), tcp(a, diags).map(Check::Tcp)));
    }
    if let Some(u) = &raw.http {
        checks.push((u.span(), http(u, diags)));
    }
    if let Some(c) = &raw.exec {
        let command = c.get_ref().to_command();
        let empty = command.is_blank();
        if empty {
            diags.push(Diagnostic::new(
                format!("`ready.exec` of program `{name}` is an empty command"),
                Some(c.span()),
            ));
        }
        checks.push((c.span(), (!empty).then_some(Check::Exec(command))));
    }
    if let Some(l) = &raw.log {
        let check = match regex::Regex::new(l.get_ref()) {
            Ok(r) => Some(Check::Log(r)),
            Err(e) => {
                let why = e.to_string();
                // The regex crate's message draws its own caret; its last
                // line says what is wrong.
                let why = why
                    .lines()
                    .rfind(|l| !l.trim().is_empty())
                    .unwrap_or("")
                    .trim();
                let why = why.strip_prefix("error: ").unwrap_or(why);
                diags.push(
                    Diagnostic::new(format!("`ready.log` of program `{name}` is not a regular expression: {why}"), Some(l.span()))
                        .help("write a regular expression (Rust's regex syntax); escape special characters such as `(`, `[` and `.` with `\\\\`"),
                );
                None
            }
        };
        checks.push((l.span(), check));
    }
    if let Some(n) = &raw.notify {
        if !n.get_ref() {
            diags.push(
                Diagnostic::new(
                    format!("`ready.notify` of program `{name}` can only be true"),
                    Some(n.span()),
                )
                .help("remove `ready` for a program that is up as soon as it runs"),
            );
        }
        checks.push((n.span(), n.get_ref().then_some(Check::Notify)));
    }
    let interval = raw
        .interval
        .as_ref()
        .and_then(|s| duration(s, "interval", diags))
        .unwrap_or(DEFAULT_INTERVAL);
    let timeout = raw
        .timeout
        .as_ref()
        .and_then(|s| duration(s, "timeout", diags))
        .unwrap_or(DEFAULT_TIMEOUT);
    if interval.is_zero() {
        if let Some(s) = &raw.interval {
            diags.push(Diagnostic::new(
                "the interval of a readiness check must be longer than zero",
                Some(s.span()),
            ));
        }
    }
    match checks.len() {
        0 if raw.unknown => None,
        0 => {
            diags.push(
                Diagnostic::new(
                    format!("`ready` of program `{name}` names no check"),
                    Some(raw.at.clone()),
                )
                .help(ready_help()),
            );
            None
        }
        1 => {
            let check = checks.pop().and_then(|(_, c)| c)?;
            Some(Ready {
                check,
                interval,
                timeout,
            })
        }
        _ => {
            diags.push(
                Diagnostic::new(
                    format!(
                        "`ready` of program `{name}` names {} checks; it takes one",
                        checks.len()
                    ),
                    Some(checks[1].0.clone()),
                )
                .help("keep the one check that says the program is up"),
            );
            None
        }
    }
}

/// `HOST:PORT`, as written (resolved when checked).
fn tcp(a: &Spanned<String>, diags: &mut Vec<Diagnostic>) -> Option<String> {
    let s = a.get_ref();
    match split_host_port(s) {
        Some(_) => Some(s.clone()),
        None => {
            diags.push(
                Diagnostic::new(format!("`{s}` is not an address to connect to"), Some(a.span()))
                    .help("write HOST:PORT, e.g. tcp = \"127.0.0.1:5432\" or tcp = \"localhost:8080\" ([::1]:8080 for IPv6)"),
            );
            None
        }
    }
}

/// `host:port` with a port from 1 to 65535 and a host without spaces.
pub fn split_host_port(s: &str) -> Option<(&str, u16)> {
    let (host, port) = s.rsplit_once(':')?;
    let port: u16 = port.parse().ok().filter(|&p| p != 0)?;
    let host = match host.strip_prefix('[') {
        Some(h) => h.strip_suffix(']')?,
        None if host.contains(':') => return None,
        None => host,
    };
    let ok = !host.is_empty()
        && !host
            .chars()
            .any(|c| c.is_whitespace() || matches!(c, '/' | '@' | '?' | '#'));
    ok.then_some((host, port))
}

fn http(u: &Spanned<String>, diags: &mut Vec<Diagnostic>) -> Option<Check> {
    let s = u.get_ref();
    let bad = |why: &str, diags: &mut Vec<Diagnostic>| {
        diags.push(
            Diagnostic::new(
                format!("`{s}` is not a URL to check: {why}"),
                Some(u.span()),
            )
            .help("write http = \"http://127.0.0.1:3000/health\" (any 2xx answer means ready)"),
        );
        None
    };
    let Some(rest) = s.strip_prefix("http://") else {
        if s.starts_with("https://") {
            return bad(
                "https is not checked (no TLS in dblaunch); check the plain-http port, or use tcp or exec",
                diags,
            );
        }
        return bad("it must start with http://", diags);
    };
    let (authority, path) = match rest.find(['/', '?']) {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let path = if path.starts_with('?') {
        format!("/{path}")
    } else {
        path.to_owned()
    };
    let address = if authority
        .rsplit_once(':')
        .is_some_and(|(_, p)| !p.contains(']'))
    {
        authority.to_owned()
    } else {
        format!("{authority}:80")
    };
    if path.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return bad("it holds a space", diags);
    }
    match split_host_port(&address) {
        Some(_) => Some(Check::Http {
            url: s.clone(),
            address,
            host: authority.to_owned(),
            path,
        }),
        None => bad("no host and port after http://", diags),
    }
}

/// `watch` of a program, checked: every path exists.
pub fn watch(raw: &RawWatch, name: &str, dir: &Path, diags: &mut Vec<Diagnostic>) -> Option<Watch> {
    let mut paths: Vec<PathBuf> = Vec::new();
    for p in &raw.paths {
        if p.get_ref().trim().is_empty() {
            diags.push(Diagnostic::new(
                format!("program `{name}` watches an empty path"),
                Some(p.span()),
            ));
            continue;
        }
        let path = normalize(dir, Path::new(p.get_ref()));
        if std::fs::symlink_metadata(&path).is_err() {
            diags.push(
                Diagnostic::new(
                    format!("program `{name}` watches {}, which does not exist", path.display()),
                    Some(p.span()),
                )
                .help("create it, or correct the path (relative paths are relative to the manifest's directory)"),
            );
            continue;
        }
        if !paths.contains(&path) {
            paths.push(path);
        }
    }
    let mut ignore = Vec::new();
    for g in &raw.ignore {
        let mut rules = ignore::gitignore::GitignoreBuilder::new(dir);
        match rules.add_line(None, g.get_ref()) {
            Ok(_) => ignore.push(g.get_ref().clone()),
            Err(e) => diags.push(
                Diagnostic::new(
                    format!("`{}` is not a glob: {e}", g.get_ref()),
                    Some(g.span()),
                )
                .help(
                    "write a glob such as \"*.tmp\", \"build/\" or \"**/*.log\" (as in .gitignore)",
                ),
            ),
        }
    }
    let debounce = raw
        .debounce
        .as_ref()
        .and_then(|d| duration(d, "debounce", diags))
        .unwrap_or(DEFAULT_DEBOUNCE);
    (!paths.is_empty()).then_some(Watch {
        paths,
        ignore,
        debounce,
    })
}
