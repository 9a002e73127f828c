//! From the raw manifest to the model: every bad name, reference, path,
//! duration and cycle is collected as a [`Diagnostic`] pointing at its place
//! in the file, so one `dblaunch check` shows them all.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use dblaunch_lock::backend::BACKEND_ENV;
use toml::Spanned;

use super::error::Diagnostic;
use super::model::{
    DEFAULT_MAX_RESTARTS, DbRef, Hold, Manifest, Program, Restart, Settings, is_path, normalize,
};
use super::raw::{Raw, RawProgram};
use super::shapes::duration;
use super::suggest::closest;

fn suggest(d: Diagnostic, name: &str, known: &[&str], kind: &str) -> Diagnostic {
    match closest(name, known.iter().copied()) {
        Some(c) => d.help(format!("did you mean `{c}`?")),
        None if known.is_empty() => d.help(format!("the manifest defines no {kind}")),
        None => d.help(format!("the {kind} are: {}", known.join(", "))),
    }
}

/// A name users type on the command line and see as an output prefix.
fn check_name(name: &Spanned<String>, kind: &str, diags: &mut Vec<Diagnostic>) {
    let n = name.get_ref();
    let ok = !n.is_empty()
        && n.chars()
            .all(|c| c.is_alphanumeric() || matches!(c, '_' | '-' | '.'));
    if !ok {
        diags.push(
            Diagnostic::new(
                format!("{kind} name `{n}` is not a plain name"),
                Some(name.span()),
            )
            .help("use letters, digits, `_`, `-` and `.` only"),
        );
    }
}

pub fn parse_signal(s: &str) -> Option<i32> {
    if let Ok(n) = s.parse::<i32>() {
        return nix::sys::signal::Signal::try_from(n).ok().map(|s| s as i32);
    }
    let upper = s.to_ascii_uppercase();
    let full = if upper.starts_with("SIG") {
        upper
    } else {
        format!("SIG{upper}")
    };
    full.parse::<nix::sys::signal::Signal>()
        .ok()
        .map(|s| s as i32)
}

pub fn validate(path: &Path, raw: Raw, diags: &mut Vec<Diagnostic>) -> Manifest {
    let dir = path
        .parent()
        .map(|p| {
            if p.as_os_str().is_empty() {
                Path::new(".")
            } else {
                p
            }
        })
        .unwrap_or(Path::new("."));
    let dir = std::fs::canonicalize(dir)
        .unwrap_or_else(|_| normalize(&std::env::current_dir().unwrap_or_default(), dir));

    let mut settings = Settings::default();
    if let Some(s) = &raw.settings.stop_timeout {
        if let Some(d) = duration(s, "stop_timeout", diags) {
            settings.stop_timeout = d;
        }
    }
    if let Some(s) = &raw.settings.wait {
        settings.wait = duration(s, "wait", diags);
    }

    // [databases]
    let mut databases: Vec<(String, PathBuf)> = Vec::new();
    for (name, p) in &raw.databases {
        check_name(name, "database", diags);
        if name.get_ref().contains('.') {
            diags.push(
                Diagnostic::new(
                    format!("database name `{}` contains `.`, so in reads/writes it would be taken for a path", name.get_ref()),
                    Some(name.span()),
                )
                .help("name databases with bare words (letters, events); paths go on the right-hand side"),
            );
        }
        if p.get_ref().trim().is_empty() {
            diags.push(Diagnostic::new(
                format!("database `{}` has an empty path", name.get_ref()),
                Some(p.span()),
            ));
            continue;
        }
        databases.push((
            name.get_ref().clone(),
            normalize(&dir, Path::new(p.get_ref())),
        ));
    }
    let db_names: Vec<&str> = databases.iter().map(|(n, _)| n.as_str()).collect();
    let keys: Vec<(PathBuf, String)> = raw
        .keys
        .iter()
        .filter_map(|(name, key)| {
            if key.get_ref().trim().is_empty() {
                diags.push(Diagnostic::new(
                    format!("database `{name}` has an empty key"),
                    Some(key.span()),
                ));
                return None;
            }
            let (_, path) = databases.iter().find(|(n, _)| n == name)?;
            Some((path.clone(), key.get_ref().clone()))
        })
        .collect();
    let backend = raw.backend.as_ref().and_then(|(at, b)| {
        // DBLAUNCH_BACKEND overrides `url` (`Config::resolve`), so it may
        // also stand in for it: the URL, and the password in it, then stay
        // out of the committed file. Read as `Config::resolve` reads it.
        let from_env = std::env::var(BACKEND_ENV)
            .ok()
            .filter(|u| !u.trim().is_empty());
        let Some(url) = b.url.as_ref().map(|u| u.get_ref().clone()).or(from_env) else {
            diags.push(
                Diagnostic::new(
                    format!("[backend] has no url, and {BACKEND_ENV}, which may give it instead, is not set"),
                    Some(at.span()),
                )
                .help(format!(
                    "write url = \"postgres://USER@HOST/DATABASE\" here, or keep the URL (and its password) out of this file: set {BACKEND_ENV}=postgres://USER:PASSWORD@HOST/DATABASE for every dblaunch command, `check` included (it checks the manifest as the other commands see it, with the same environment); or remove [backend] to lock on this host only"
                )),
            );
            return None;
        };
        let lease = match &b.lease {
            None => dblaunch_lock::backend::DEFAULT_LEASE,
            Some(l) => match dblaunch_lock::backend::parse_lease(l.get_ref()) {
                Ok(d) => d,
                Err(e) => {
                    diags.push(
                        Diagnostic::new(format!("lease {:?} is not a lease: {e}", l.get_ref()), Some(l.span()))
                            .help("write a duration such as \"10s\""),
                    );
                    return None;
                }
            },
        };
        Some(dblaunch_lock::backend::Config { url, lease })
    });

    // Names: programs and groups share one namespace.
    let mut seen: HashMap<&str, &str> = HashMap::new();
    for (name, _) in &raw.programs {
        check_name(name, "program", diags);
        seen.insert(name.get_ref(), "program");
    }
    for (name, _) in &raw.groups {
        check_name(name, "group", diags);
        if seen.insert(name.get_ref(), "group") == Some("program") {
            diags.push(
                Diagnostic::new(
                    format!("`{}` is both a program and a group", name.get_ref()),
                    Some(name.span()),
                )
                .help("rename one of them: `dblaunch run NAME` must mean one thing"),
            );
        }
    }
    let program_names: Vec<&str> = raw
        .programs
        .iter()
        .map(|(n, _)| n.get_ref().as_str())
        .collect();
    let all_program_names: Vec<&str> = program_names
        .iter()
        .copied()
        .chain(raw.broken_programs.iter().map(String::as_str))
        .collect();
    let group_names: Vec<&str> = raw
        .groups
        .iter()
        .map(|(n, _)| n.get_ref().as_str())
        .collect();

    let mut programs = Vec::new();
    for (name, rp) in &raw.programs {
        programs.push(program(
            name,
            rp,
            &dir,
            &databases,
            &db_names,
            &program_names,
            &all_program_names,
            &group_names,
            diags,
        ));
    }
    super::cycles::after_cycles(&raw, &programs, diags);

    // [groups]
    let mut groups = Vec::new();
    for (name, members) in &raw.groups {
        if members.is_empty() {
            diags.push(
                Diagnostic::new(
                    format!("group `{}` is empty", name.get_ref()),
                    Some(name.span()),
                )
                .help("list its programs or groups, or remove it"),
            );
        }
        for m in members {
            let known = all_program_names.contains(&m.get_ref().as_str())
                || group_names.contains(&m.get_ref().as_str());
            if !known {
                let mut all: Vec<&str> = all_program_names
                    .iter()
                    .chain(group_names.iter())
                    .copied()
                    .collect();
                all.sort_unstable();
                all.dedup();
                diags.push(suggest(
                    Diagnostic::new(
                        format!(
                            "group `{}` names `{}`, which is neither a program nor a group",
                            name.get_ref(),
                            m.get_ref()
                        ),
                        Some(m.span()),
                    ),
                    m.get_ref(),
                    &all,
                    "programs and groups",
                ));
            }
        }
        groups.push((
            name.get_ref().clone(),
            members.iter().map(|m| m.get_ref().clone()).collect(),
        ));
    }
    super::cycles::group_cycles(&raw, diags);

    Manifest {
        path: path.to_path_buf(),
        dir,
        settings,
        databases,
        keys,
        backend,
        programs,
        groups,
    }
}

#[expect(
    clippy::too_many_arguments,
    reason = "one call site; a struct would only rename them"
)]
fn program(
    name: &Spanned<String>,
    rp: &RawProgram,
    dir: &Path,
    databases: &[(String, PathBuf)],
    db_names: &[&str],
    program_names: &[&str],
    all_program_names: &[&str],
    group_names: &[&str],
    diags: &mut Vec<Diagnostic>,
) -> Program {
    let pname = name.get_ref();
    let command = rp.command.get_ref().to_command();
    let empty = command.is_blank();
    if empty {
        diags.push(
            Diagnostic::new(
                format!("program `{pname}` has an empty command"),
                Some(rp.command.span()),
            )
            .help("write command = [\"program\", \"arg\", ...] or command = \"shell line\""),
        );
    }
    let cwd = match &rp.cwd {
        Some(c) => {
            let p = normalize(dir, Path::new(c.get_ref()));
            if !p.is_dir() {
                diags.push(
                    Diagnostic::new(
                        format!("the cwd of program `{pname}`, {}, is not a directory", p.display()),
                        Some(c.span()),
                    )
                    .help("create it, or correct `cwd` (relative paths are relative to the manifest's directory)"),
                );
            }
            p
        }
        None => dir.to_path_buf(),
    };
    let env = rp
        .env
        .iter()
        .map(|(k, v)| (k.clone(), v.get_ref().clone()))
        .collect();
    let mut resolve = |list: &[Spanned<String>],
                       field: &str|
     -> Vec<(DbRef, std::ops::Range<usize>)> {
        let mut out: Vec<(DbRef, std::ops::Range<usize>)> = Vec::new();
        for entry in list {
            let given = entry.get_ref();
            let path = if is_path(given) {
                normalize(dir, Path::new(given))
            } else if let Some((_, p)) = databases.iter().find(|(n, _)| n == given) {
                p.clone()
            } else {
                diags.push(suggest(
                    Diagnostic::new(
                        format!("program `{pname}` {field} `{given}`, which is not in [databases]"),
                        Some(entry.span()),
                    ),
                    given,
                    db_names,
                    "databases",
                ));
                continue;
            };
            if let Some(parent) = path.parent() {
                if !parent.is_dir() {
                    diags.push(
                        Diagnostic::new(
                            format!("the directory {} of database `{given}` does not exist", parent.display()),
                            Some(entry.span()),
                        )
                        .help("create it first, or correct the path (relative paths are relative to the manifest's directory)"),
                    );
                }
            }
            if !out.iter().any(|(d, _)| d.path == path) {
                out.push((
                    DbRef {
                        given: given.clone(),
                        path,
                    },
                    entry.span(),
                ));
            }
        }
        out
    };
    let reads = resolve(&rp.reads, "reads");
    let writes = resolve(&rp.writes, "writes");
    for (w, span) in &writes {
        if let Some((r, _)) = reads.iter().find(|(r, _)| same_database(&r.path, &w.path)) {
            diags.push(
                Diagnostic::new(
                    format!(
                        "program `{pname}` both reads `{}` and writes `{}`, one database",
                        r.given, w.given
                    ),
                    Some(span.clone()),
                )
                .help("a write lock already allows reading: remove it from `reads`"),
            );
        }
    }
    let hold = hold(pname, rp, reads.is_empty() && writes.is_empty(), diags);
    let mut after = Vec::new();
    for a in &rp.after {
        match program_names.iter().position(|n| n == a.get_ref()) {
            Some(i) => after.push(i),
            // Already reported where it is defined.
            None if all_program_names.contains(&a.get_ref().as_str()) => {}
            None if group_names.contains(&a.get_ref().as_str()) => diags.push(
                Diagnostic::new(
                    format!(
                        "program `{pname}` runs after `{}`, which is a group",
                        a.get_ref()
                    ),
                    Some(a.span()),
                )
                .help("`after` takes program names; list the group's programs instead"),
            ),
            None => diags.push(suggest(
                Diagnostic::new(
                    format!(
                        "program `{pname}` runs after `{}`, which is not a program",
                        a.get_ref()
                    ),
                    Some(a.span()),
                ),
                a.get_ref(),
                program_names,
                "programs",
            )),
        }
    }
    let mut needs = Vec::new();
    for a in &rp.needs {
        match program_names.iter().position(|n| n == a.get_ref()) {
            Some(i) if i < program_names.len() && program_names[i] == pname => diags.push(
                Diagnostic::new(format!("program `{pname}` needs itself"), Some(a.span()))
                    .help("`needs` names the programs that must be up before this one starts"),
            ),
            Some(i) => needs.push(i),
            None if all_program_names.contains(&a.get_ref().as_str()) => {}
            None if group_names.contains(&a.get_ref().as_str()) => diags.push(
                Diagnostic::new(
                    format!(
                        "program `{pname}` needs `{}`, which is a group",
                        a.get_ref()
                    ),
                    Some(a.span()),
                )
                .help("`needs` takes program names; list the group's programs instead"),
            ),
            None => diags.push(suggest(
                Diagnostic::new(
                    format!(
                        "program `{pname}` needs `{}`, which is not a program",
                        a.get_ref()
                    ),
                    Some(a.span()),
                ),
                a.get_ref(),
                program_names,
                "programs",
            )),
        }
    }
    let ready = rp
        .devloop
        .ready
        .as_ref()
        .and_then(|r| super::devloop::ready(r, pname, diags))
        .map(Box::new);
    let watch = rp
        .devloop
        .watch
        .as_ref()
        .and_then(|w| super::devloop::watch(w, pname, dir, diags))
        .map(Box::new);
    let stop_signal = match &rp.stop_signal {
        Some(s) => parse_signal(s.get_ref()).unwrap_or_else(|| {
            diags.push(
                Diagnostic::new(format!("`{}` is not a signal", s.get_ref()), Some(s.span()))
                    .help("write a signal name such as \"SIGTERM\", \"SIGINT\" or \"SIGQUIT\""),
            );
            libc::SIGTERM
        }),
        None => libc::SIGTERM,
    };
    let restart = match rp.restart.as_ref().map(|r| (r, r.get_ref().as_str())) {
        None | Some((_, "no")) => Restart::No,
        Some((_, "on-failure")) => Restart::OnFailure,
        Some((_, "always")) => Restart::Always,
        Some((r, other)) => {
            diags.push(
                Diagnostic::new(format!("`{other}` is not a restart policy"), Some(r.span()))
                    .help("write restart = \"no\", \"on-failure\" or \"always\""),
            );
            Restart::No
        }
    };
    let max_restarts = match &rp.max_restarts {
        Some(m) => u32::try_from(*m.get_ref()).unwrap_or_else(|_| {
            diags.push(
                Diagnostic::new(
                    format!(
                        "max_restarts must be a whole number from 0, not {}",
                        m.get_ref()
                    ),
                    Some(m.span()),
                )
                .help("write e.g. max_restarts = 5"),
            );
            0
        }),
        None => DEFAULT_MAX_RESTARTS,
    };
    Program {
        name: pname.clone(),
        command,
        cwd,
        env,
        reads: reads.into_iter().map(|(d, _)| d).collect(),
        writes: writes.into_iter().map(|(d, _)| d).collect(),
        hold,
        after,
        stop_signal,
        restart,
        max_restarts,
        yields: rp.yields.as_ref().is_some_and(|y| *y.get_ref()),
        needs,
        ready,
        watch,
    }
}

/// `hold`: "running" or "on-demand". A program that locks for itself still
/// declares its databases (`check`, `ps` and `status` show them), and has
/// nothing for dblaunch to yield.
fn hold(pname: &str, rp: &RawProgram, no_database: bool, diags: &mut Vec<Diagnostic>) -> Hold {
    const VALUES: [&str; 2] = ["running", "on-demand"];
    let Some(h) = &rp.hold else {
        return Hold::Running;
    };
    let hold = match h.get_ref().as_str() {
        "running" => return Hold::Running,
        "on-demand" => Hold::OnDemand,
        other => {
            let values = "hold = \"running\" (the default: dblaunch holds its databases while it runs) or hold = \"on-demand\" (it locks them itself, per operation)";
            let help = match closest(other, VALUES.iter().copied()) {
                Some(c) => format!("did you mean `{c}`? Write {values}"),
                None => format!("write {values}"),
            };
            diags.push(
                Diagnostic::new(
                    format!("program `{pname}`: `{other}` is not a way to hold its locks"),
                    Some(h.span()),
                )
                .help(help),
            );
            return Hold::Running;
        }
    };
    if no_database {
        diags.push(
            Diagnostic::new(
                format!("program `{pname}` locks for itself (hold = \"on-demand\") but declares no database"),
                Some(h.span()),
            )
            .help("list the databases it locks in `reads` and `writes`: `check`, `ps` and `status` show them"),
        );
    }
    if let Some(y) = rp.yields.as_ref().filter(|y| *y.get_ref()) {
        diags.push(
            Diagnostic::new(
                format!("program `{pname}` yields, but it locks for itself (hold = \"on-demand\"): dblaunch holds nothing of it to yield"),
                Some(y.span()),
            )
            .help("remove `yields = true`: between its operations the program holds nothing, and others get in then"),
        );
    }
    hold
}

/// Two spellings of one database: equal once both are canonical (as far
/// as they exist).
pub fn same_database(a: &Path, b: &Path) -> bool {
    let canon = |p: &Path| -> PathBuf {
        match (
            p.parent().and_then(|d| std::fs::canonicalize(d).ok()),
            p.file_name(),
        ) {
            (Some(d), Some(n)) => std::fs::canonicalize(p).unwrap_or_else(|_| d.join(n)),
            _ => p.to_path_buf(),
        }
    };
    a == b || canon(a) == canon(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typos_get_a_suggestion_and_strangers_do_not() {
        let names = ["ingest", "report", "webapp"];
        assert_eq!(closest("ingset", names.iter().copied()), Some("ingest"));
        assert_eq!(closest("reprot", names.iter().copied()), Some("report"));
        assert_eq!(closest("zzz", names.iter().copied()), None);
    }

    #[test]
    fn signals_parse_by_name_and_number() {
        assert_eq!(parse_signal("SIGTERM"), Some(libc::SIGTERM));
        assert_eq!(parse_signal("int"), Some(libc::SIGINT));
        assert_eq!(parse_signal("9"), Some(libc::SIGKILL));
        assert_eq!(parse_signal("SIGNOPE"), None);
    }
}
