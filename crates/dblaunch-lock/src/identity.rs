//! Who a program that locks for itself is, as `status`, `history` and the
//! busy messages name it: the name given; else the program name when
//! dblaunch started it (`$DBLAUNCH_PROGRAM`); else the base name of the
//! script its interpreter runs (`worker.py`, `server.js`, the module of
//! `python -m`), or of its executable.

use std::path::Path;
use std::sync::OnceLock;

use crate::procfs;

/// The variable through which dblaunch tells a program its name.
pub const PROGRAM_ENV: &str = "DBLAUNCH_PROGRAM";

/// This process's command line, read once.
pub fn command() -> &'static [String] {
    static COMMAND: OnceLock<Vec<String>> = OnceLock::new();
    COMMAND.get_or_init(|| procfs::cmdline(std::process::id() as i32))
}

/// This process's program name (see the module's documentation); read once.
pub fn program() -> &'static str {
    static NAME: OnceLock<String> = OnceLock::new();
    NAME.get_or_init(|| {
        std::env::var(PROGRAM_ENV)
            .ok()
            .filter(|n| !n.trim().is_empty())
            .unwrap_or_else(|| from_command(command()))
    })
}

/// The name a command line stands for: the script an interpreter runs, or
/// the executable.
pub fn from_command(argv: &[String]) -> String {
    let Some(first) = argv.first() else {
        return "unknown".to_owned();
    };
    let exe = base_name(first);
    let interpreter = Interpreter::of(&exe);
    let Some(interpreter) = interpreter else {
        return exe;
    };
    let mut args = argv[1..].iter();
    while let Some(arg) = args.next() {
        match interpreter.option(arg) {
            Opt::Module => return args.next().map_or(exe, |m| m.clone()),
            Opt::Inline => return exe,
            Opt::TakesValue => {
                args.next();
            }
            Opt::Flag => {}
            Opt::Script => return base_name(arg),
        }
    }
    exe
}

fn base_name(path: &str) -> String {
    Path::new(path)
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| path.to_owned())
}

#[derive(Clone, Copy)]
enum Interpreter {
    Python,
    Node,
    Other,
}

enum Opt {
    /// `-m module`: the module is the name.
    Module,
    /// `-c code`, `-e code`: no script; the interpreter is the name.
    Inline,
    /// An option followed by its value.
    TakesValue,
    Flag,
    /// The first argument that is not an option: the script.
    Script,
}

impl Interpreter {
    fn of(exe: &str) -> Option<Interpreter> {
        let stem = exe.trim_end_matches(|c: char| c.is_ascii_digit() || c == '.');
        Some(match stem {
            "python" | "pypy" => Interpreter::Python,
            "node" | "nodejs" | "bun" | "deno" | "tsx" | "ts-node" => Interpreter::Node,
            "ruby" | "perl" | "php" | "bash" | "sh" | "dash" | "zsh" | "Rscript" | "julia"
            | "lua" => Interpreter::Other,
            _ => return None,
        })
    }

    fn option(self, arg: &str) -> Opt {
        if !arg.starts_with('-') || arg == "-" {
            return Opt::Script;
        }
        match (self, arg) {
            (Interpreter::Python, "-m") => Opt::Module,
            (Interpreter::Python, "-c")
            | (Interpreter::Node, "-e" | "-p" | "--eval" | "--print")
            | (Interpreter::Other, "-c" | "-e") => Opt::Inline,
            (Interpreter::Python, "-X" | "-W" | "-Q")
            | (
                Interpreter::Node,
                "-r" | "--require" | "--import" | "--loader" | "-C" | "--conditions",
            ) => Opt::TakesValue,
            _ => Opt::Flag,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(argv: &[&str]) -> String {
        from_command(&argv.iter().map(|s| s.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn scripts_modules_and_executables() {
        assert_eq!(
            name(&["/usr/bin/python3", "-u", "app/worker.py", "--x"]),
            "worker.py"
        );
        assert_eq!(
            name(&["python3.11", "-X", "dev", "-m", "pipeline.ingest"]),
            "pipeline.ingest"
        );
        assert_eq!(name(&["python", "-c", "print(1)"]), "python");
        assert_eq!(name(&["node", "--require", "x", "server.js"]), "server.js");
        assert_eq!(name(&["/opt/app/bin/dbtool", "serve"]), "dbtool");
        assert_eq!(name(&[]), "unknown");
    }
}
