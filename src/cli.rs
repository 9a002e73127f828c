//! The command line, as clap definitions only. Meaning is given to it in
//! `cmd/`.

use std::path::PathBuf;
use std::time::Duration;

use clap::{ArgAction, ArgMatches, Args, FromArgMatches, Parser};

#[derive(Debug, Parser)]
#[command(
    name = "dblaunch",
    version,
    about = "Run programs that share embedded databases without lock errors",
    long_about = "Run programs that share embedded databases (DuckDB, SQLite, RocksDB, …) without \
                  lock errors. dblaunch takes a fair, crash-safe lock on each database before it \
                  starts a program, runs conflicting programs one after another and the rest side \
                  by side, forwards signals, and releases every lock the moment a program ends."
)]
pub struct Cli {
    /// The manifest [default: $DBLAUNCH_FILE, else the nearest dblaunch.toml
    /// in this directory or a parent]
    // Not global: after `logs`, `-f` means --follow, as with tail.
    #[arg(short = 'f', long = "file", env = "DBLAUNCH_FILE", value_name = "FILE")]
    pub file: Option<PathBuf>,

    #[command(flatten)]
    pub verbosity: Verbosity,

    #[command(subcommand)]
    pub subcommand: Subcommand,
}

// `-v` and `-q`, before the subcommand or after it: every
// subcommand takes them too (through `Lazy`), and `Cli::verbosity` adds the
// two up.
//
// Not clap's `global = true`: clap copies a global argument into every
// subcommand on each parse, and fills in its value in each afterwards; for
// two arguments and fourteen subcommands that was 12% of the instructions of
// a whole `dblaunch exec`. (A start-up tweak: docs/design.md, "Start-up cost".)
//
// (Plain comments: clap makes a flattened struct's doc comment the about
// text of the command it is flattened into.)
#[derive(Debug, Args, Clone, Copy, Default, PartialEq, Eq)]
pub struct Verbosity {
    /// More detail about what dblaunch does (-vv for even more)
    #[arg(short, long, action = ArgAction::Count, conflicts_with = "quiet")]
    pub verbose: u8,

    /// Only errors from dblaunch itself; programs' output is untouched
    #[arg(short, long)]
    pub quiet: bool,
}

impl Cli {
    /// The `-v` and `-q` given before and after the subcommand, together;
    /// an error if that makes both.
    pub fn verbosity(&self) -> Result<Verbosity, clap::Error> {
        let sub = self.subcommand.verbosity();
        let both = Verbosity {
            verbose: self.verbosity.verbose.saturating_add(sub.verbose),
            quiet: self.verbosity.quiet || sub.quiet,
        };
        if both.quiet && both.verbose > 0 {
            let mut cmd = <Cli as clap::CommandFactory>::command();
            return Err(cmd.error(
                clap::error::ErrorKind::ArgumentConflict,
                "the argument '--quiet' cannot be used with '--verbose'",
            ));
        }
        Ok(both)
    }
}

#[derive(Debug, clap::Subcommand)]
pub enum Subcommand {
    /// Run programs and groups of the manifest in the foreground
    Run(Lazy<RunArgs>),
    /// Like run, but in the background; returns once every program started
    Start(Lazy<RunArgs>),
    /// Show the output of programs started with `start`
    Logs(Lazy<LogsArgs>),
    /// List the programs of this manifest that run under any dblaunch
    Ps(Lazy<PsArgs>),
    /// Stop programs gracefully and start them again
    Restart(Lazy<RestartArgs>),
    /// Run one command under database locks, no manifest needed
    Exec(Lazy<ExecArgs>),
    /// Show who holds and who waits for each database
    Status(Lazy<StatusArgs>),
    /// Show who held and who waited for each database, from its lock journal
    History(Lazy<HistoryArgs>),
    /// Print lock metrics (OpenMetrics text), or serve them at /metrics
    Metrics(Lazy<MetricsArgs>),
    /// Gracefully stop programs of this manifest running under any dblaunch
    Stop(Lazy<StopArgs>),
    /// Validate the manifest and show each program's locks and conflicts
    Check(Lazy<NoArgs>),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell)
    Completions(Lazy<CompletionsArgs>),
    /// Print the man page (roff), e.g. `dblaunch man > dblaunch.1`
    Man(Lazy<NoArgs>),
    /// Test fixture: a program that records what happens to it
    #[command(name = "__probe", hide = true)]
    Probe(Lazy<ProbeArgs>),
}

impl Subcommand {
    /// The `-v` and `-q` given after the subcommand.
    fn verbosity(&self) -> Verbosity {
        match self {
            Subcommand::Run(l) | Subcommand::Start(l) => l.1,
            Subcommand::Logs(l) => l.1,
            Subcommand::Ps(l) => l.1,
            Subcommand::Restart(l) => l.1,
            Subcommand::Exec(l) => l.1,
            Subcommand::Status(l) => l.1,
            Subcommand::History(l) => l.1,
            Subcommand::Metrics(l) => l.1,
            Subcommand::Stop(l) => l.1,
            Subcommand::Check(l) | Subcommand::Man(l) => l.1,
            Subcommand::Completions(l) => l.1,
            Subcommand::Probe(l) => l.1,
        }
    }
}

/// A subcommand's arguments (and its `-v`/`-q`), made into clap's
/// definitions only when that subcommand is parsed or shown (clap's
/// `Command::defer`). Every launch parses its command line, and building
/// every subcommand's arguments to parse `exec` cost a launch a few percent
/// of its CPU and of its page faults. (A start-up tweak: docs/design.md, "Start-up cost".)
#[derive(Debug)]
pub struct Lazy<T>(pub T, pub Verbosity);

impl<T: Args> Args for Lazy<T> {
    fn augment_args(cmd: clap::Command) -> clap::Command {
        cmd.defer(|cmd| Verbosity::augment_args(T::augment_args(cmd)))
    }
    fn augment_args_for_update(cmd: clap::Command) -> clap::Command {
        cmd.defer(|cmd| Verbosity::augment_args_for_update(T::augment_args_for_update(cmd)))
    }
    fn group_id() -> Option<clap::Id> {
        T::group_id()
    }
}

impl<T: FromArgMatches> FromArgMatches for Lazy<T> {
    fn from_arg_matches(matches: &ArgMatches) -> Result<Self, clap::Error> {
        Ok(Lazy(
            T::from_arg_matches(matches)?,
            Verbosity::from_arg_matches(matches)?,
        ))
    }
    fn from_arg_matches_mut(matches: &mut ArgMatches) -> Result<Self, clap::Error> {
        Ok(Lazy(
            T::from_arg_matches_mut(matches)?,
            Verbosity::from_arg_matches_mut(matches)?,
        ))
    }
    fn update_from_arg_matches(&mut self, matches: &ArgMatches) -> Result<(), clap::Error> {
        self.0.update_from_arg_matches(matches)?;
        self.1.update_from_arg_matches(matches)
    }
    fn update_from_arg_matches_mut(&mut self, matches: &mut ArgMatches) -> Result<(), clap::Error> {
        self.0.update_from_arg_matches_mut(matches)?;
        self.1.update_from_arg_matches_mut(matches)
    }
}

// A subcommand that takes no arguments of its own (a plain comment, as for
// `Verbosity`).
#[derive(Debug, Args)]
pub struct NoArgs {}

#[derive(Debug, Args)]
pub struct CompletionsArgs {
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

// How long to queue for a busy database. (A plain comment: clap makes a
// flattened struct's doc comment the about text of the command it is
// flattened into, and `exec --help` and `run --help` opened with this line.)
#[derive(Debug, Args, Clone, Copy)]
pub struct WaitArgs {
    /// Give up with status 75 if a database stays busy this long (500ms, 30s, 10m)
    #[arg(long, value_name = "DUR", value_parser = parse_duration, conflicts_with = "no_wait")]
    pub wait: Option<Duration>,

    /// Give up with status 75 at once if a database is busy (= --wait 0s)
    #[arg(long)]
    pub no_wait: bool,

    /// Grace period between the stop signal and SIGKILL [default: 10s; for run, the manifest's stop_timeout]
    #[arg(long, value_name = "DUR", value_parser = parse_duration)]
    pub stop_timeout: Option<Duration>,
}

impl WaitArgs {
    /// The queueing limit: `None` waits as long as it takes.
    pub fn limit(&self) -> Option<Duration> {
        if self.no_wait {
            Some(Duration::ZERO)
        } else {
            self.wait
        }
    }
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// Programs or groups of the manifest
    #[arg(required = true, value_name = "TARGET")]
    pub targets: Vec<String>,

    #[command(flatten)]
    pub wait: WaitArgs,

    /// Do not restart programs when their watched paths change (`watch`)
    #[arg(long)]
    pub no_watch: bool,

    /// Internal (`start`): output to .dblaunch/logs, readiness to a pipe
    #[arg(long, hide = true)]
    pub detached: bool,
}

#[derive(Debug, Args)]
pub struct LogsArgs {
    /// Keep printing new lines as they come, like tail -f
    #[arg(short, long)]
    pub follow: bool,

    /// How many of the last lines of each program to show first
    #[arg(short = 'n', long, default_value_t = 20, value_name = "N")]
    pub lines: usize,

    /// Programs [default: every program with a log]
    #[arg(value_name = "NAME")]
    pub names: Vec<String>,
}

#[derive(Debug, Args)]
pub struct RestartArgs {
    /// Programs or groups to restart
    #[arg(required = true, value_name = "TARGET")]
    pub targets: Vec<String>,
}

#[derive(Debug, Args)]
#[command(arg_required_else_help = true)]
pub struct ExecArgs {
    /// Lock PATH for reading (shared with other readers); repeatable
    #[arg(long = "read", value_name = "PATH")]
    pub reads: Vec<PathBuf>,

    /// Lock PATH for writing (exclusive); repeatable
    #[arg(long = "write", value_name = "PATH")]
    pub writes: Vec<PathBuf>,

    #[command(flatten)]
    pub wait: WaitArgs,

    /// The program name that `status` shows [default: the command's file name]
    #[arg(long, value_name = "NAME")]
    pub name: Option<String>,

    /// The command and its arguments (after --)
    #[arg(required = true, last = true, value_name = "COMMAND")]
    pub command: Vec<String>,
}

#[derive(Debug, Args)]
pub struct PsArgs {
    /// One JSON object, `{"programs": [...]}`, instead of a table
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// One JSON object instead of a table
    #[arg(long)]
    pub json: bool,

    /// Databases to show [default: the manifest's]
    #[arg(value_name = "PATH")]
    pub paths: Vec<PathBuf>,
}

#[derive(Debug, Args)]
pub struct HistoryArgs {
    /// Only what happened since: a duration back from now (1h, 30m, 2d) or
    /// a UTC time (2026-11-22T10:00:00Z, "2026-11-22 10:00")
    #[arg(long, value_name = "DUR|TIME", value_parser = parse_since)]
    pub since: Option<std::time::SystemTime>,

    /// One JSON object instead of text (its format is in docs/history.md)
    #[arg(long)]
    pub json: bool,

    /// Also draw the timeline as an SVG picture into FILE
    #[arg(long, value_name = "FILE")]
    pub svg: Option<PathBuf>,

    /// Databases: paths or manifest names [default: the manifest's]
    #[arg(value_name = "DB")]
    pub databases: Vec<PathBuf>,
}

#[derive(Debug, Args)]
pub struct MetricsArgs {
    /// Serve the metrics at http://ADDR/metrics instead of printing them
    /// once (e.g. 127.0.0.1:9464)
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<String>,

    /// The text format to print (served metrics follow the scraper's
    /// Accept header)
    #[arg(long, value_enum, default_value = "openmetrics")]
    pub format: crate::history::metrics::Format,

    /// Databases: paths or manifest names [default: the manifest's]
    #[arg(value_name = "DB")]
    pub databases: Vec<PathBuf>,
}

/// `--since`: a duration back from now, or a point in time (UTC).
pub fn parse_since(s: &str) -> Result<std::time::SystemTime, String> {
    if let Ok(d) = humantime::parse_duration(s) {
        return std::time::SystemTime::now()
            .checked_sub(d)
            .ok_or_else(|| format!("{s} is before the epoch"));
    }
    // "2026-11-22 10:00", without seconds, as people write it.
    let with_seconds = format!("{s}:00");
    let minutes_only = s.len() == 16 && s.as_bytes().get(10) == Some(&b' ');
    if minutes_only {
        if let Ok(t) = humantime::parse_rfc3339_weak(&with_seconds) {
            return Ok(t);
        }
    }
    humantime::parse_rfc3339_weak(s).map_err(|_| {
        format!(
            "`{s}` is neither a duration nor a time; write a duration back from now (30m, 2h, 1d) or a UTC time (2026-11-22T10:00:00Z)"
        )
    })
}

#[derive(Debug, Args)]
pub struct StopArgs {
    /// Programs or groups to stop [default: all of the manifest's]
    #[arg(value_name = "TARGET")]
    pub targets: Vec<String>,
}

#[derive(Debug, Args)]
pub struct ProbeArgs {
    /// Append `LABEL start|end MONOTONIC_NS PID PGID [PPID]` lines here
    #[arg(long)]
    pub log: Option<PathBuf>,
    #[arg(long, default_value = "probe")]
    pub label: String,
    /// Stay this long
    #[arg(long, value_parser = parse_duration)]
    pub hold: Option<Duration>,
    /// Stay until this file exists
    #[arg(long)]
    pub until: Option<PathBuf>,
    /// On a signal that ends it, wait until this file exists before ending
    #[arg(long)]
    pub linger_until: Option<PathBuf>,
    /// Signals (numbers) to log and otherwise ignore
    #[arg(long = "ignore", value_name = "SIGNO")]
    pub ignore: Vec<i32>,
    /// Start a grandchild (another probe with the same options) first
    #[arg(long)]
    pub grandchild: bool,
    /// Write own pid to this file, once ready
    #[arg(long)]
    pub pidfile: Option<PathBuf>,
    /// Exit with this status
    #[arg(long, default_value_t = 0)]
    pub exit: i32,
    /// Lock this database for writing itself, through the lock library, as
    /// a program with hold = "on-demand" does (a path, or a name of the
    /// manifest's [databases]); logs `locked` and `unlocked`
    #[arg(long, value_name = "DB")]
    pub lock_write: Vec<String>,
    /// Lock this database for reading itself, as --lock-write does
    #[arg(long, value_name = "DB")]
    pub lock_read: Vec<String>,
    /// Take those locks once this file exists [default: at once]
    #[arg(long, value_name = "FILE")]
    pub lock_when: Option<PathBuf>,
    /// Release them once this file exists [default: when the probe ends]
    #[arg(long, value_name = "FILE")]
    pub unlock_when: Option<PathBuf>,
}

pub fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s)
        .map_err(|e| format!("{e}; write a duration such as 500ms, 30s, 10m or 1h30m"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_cli_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn exec_takes_the_command_after_double_dash() {
        let cli = Cli::try_parse_from([
            "dblaunch",
            "exec",
            "--write",
            "a.db",
            "--read",
            "b.db",
            "--no-wait",
            "--",
            "cmd",
            "--flag",
        ])
        .unwrap();
        let Subcommand::Exec(Lazy(e, _)) = cli.subcommand else {
            panic!()
        };
        assert_eq!(e.command, ["cmd", "--flag"]);
        assert_eq!(e.wait.limit(), Some(Duration::ZERO));
    }

    #[test]
    fn each_subcommand_keeps_its_own_about_once_built() {
        // Clap makes a flattened struct's doc comment the about text of the
        // command it is flattened into, once the (deferred) arguments are
        // built: `exec --help` opened with WaitArgs' doc comment.
        let mut cli = Cli::command();
        let abouts = |cli: &clap::Command| -> Vec<(String, String)> {
            cli.get_subcommands()
                .map(|s| {
                    let about = s.get_about().map(|a| a.to_string()).unwrap_or_default();
                    (s.get_name().to_owned(), about)
                })
                .collect()
        };
        let before = abouts(&cli);
        cli.build();
        let after = abouts(&cli);
        assert_eq!(before.len(), 14);
        for ((name, about), built) in before.iter().zip(&after) {
            assert!(!about.is_empty(), "{name} has no about");
            assert_eq!((name, about), (&built.0, &built.1));
        }
    }

    #[test]
    fn verbosity_is_taken_before_and_after_the_subcommand() {
        let parse = |args: &[&str]| {
            let cli = Cli::try_parse_from(args.iter().copied()).map_err(|e| e.kind())?;
            cli.verbosity().map_err(|e| e.kind())
        };
        let v = |verbose, quiet| Ok(Verbosity { verbose, quiet });
        let exec = ["exec", "--write", "a", "--", "x"];
        let with = |before: &[&'static str], after: &[&'static str]| {
            let mut args = vec!["dblaunch"];
            args.extend_from_slice(before);
            args.push(exec[0]);
            args.extend_from_slice(after);
            args.extend_from_slice(&exec[1..]);
            parse(&args)
        };
        assert_eq!(with(&[], &[]), v(0, false));
        assert_eq!(with(&["-q"], &[]), v(0, true));
        assert_eq!(with(&[], &["-q"]), v(0, true));
        assert_eq!(with(&["-v"], &["-v"]), v(2, false));
        assert_eq!(with(&["-vv"], &[]), v(2, false));
        let conflict = Err(clap::error::ErrorKind::ArgumentConflict);
        assert_eq!(with(&["-q"], &["-v"]), conflict);
        assert_eq!(with(&["-v"], &["-q"]), conflict);
        assert_eq!(with(&[], &["-q", "-v"]), conflict);
        assert_eq!(with(&["-q", "-v"], &[]), conflict);
        assert_eq!(parse(&["dblaunch", "check", "-q"]), v(0, true));
        assert_eq!(parse(&["dblaunch", "-v", "man"]), v(1, false));
    }

    #[test]
    fn wait_and_no_wait_conflict() {
        assert!(
            Cli::try_parse_from([
                "dblaunch",
                "exec",
                "--write",
                "a",
                "--wait",
                "1s",
                "--no-wait",
                "--",
                "x"
            ])
            .is_err()
        );
    }
}
