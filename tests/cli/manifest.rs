//! Every bad manifest gives its line and column, the source line, a caret
//! and what to do (checked verbatim), exits 2, and starts nothing.

use crate::*;

/// `dblaunch check` on `manifest`, in a project with `data/`.
fn check(manifest: &str) -> (i32, String, String) {
    check_manifest(manifest, &["data"])
}

fn assert_error(manifest: &str, expected: &str) {
    assert_manifest_error(manifest, &["data"], expected);
}

#[test]
fn malformed_toml() {
    assert_error(
        "[programs.a]\ncommand = [\"x\"\n",
        "dblaunch: error: malformed TOML: unclosed array, expected `]`
 --> DIR/dblaunch.toml:2:15
  |
2 | command = [\"x\"
  |               ^
  = help: see https://toml.io for the syntax",
    );
}

#[test]
fn unknown_keys_and_sections_get_suggestions() {
    assert_error(
        "[programs.a]\ncommand = \"x\"\nwrite = [\"data/a.db\"]\n",
        "unknown key `write` in program `a`
 --> DIR/dblaunch.toml:3:1
  |
3 | write = [\"data/a.db\"]
  | ^^^^^
  = help: did you mean `writes`?",
    );
    assert_error(
        "[setings]\n",
        "unknown section `setings`\n --> DIR/dblaunch.toml:1:2",
    );
}

#[test]
fn wrong_types() {
    assert_error(
        "[programs.a]\ncommand = 5\n",
        "in program `a`: command must be a string (run with `sh -c`) or an array of strings (argv)
 --> DIR/dblaunch.toml:2:11
  |
2 | command = 5
  |           ^",
    );
    assert_error(
        "[programs.a]\ncommand = \"x\"\nreads = \"data/a.db\"\n",
        "dblaunch.toml:3:9",
    );
    assert_error(
        "[databases]\na = 1\n",
        "database `a` must be a path string, not an integer\n --> DIR/dblaunch.toml:2:5",
    );
}

#[test]
fn bad_durations() {
    assert_error(
        "[settings]\nstop_timeout = \"10 parsecs\"\n",
        "stop_timeout `10 parsecs` is not a duration: unknown time unit \"parsecs\", supported units: ns, us/µs, ms, sec, min, hours, days, weeks, months, years (and few variations)
 --> DIR/dblaunch.toml:2:16
  |
2 | stop_timeout = \"10 parsecs\"
  |                ^^^^^^^^^^^^",
    );
}

#[test]
fn empty_commands() {
    assert_error(
        "[programs.a]\ncommand = []\n",
        "program `a` has an empty command\n --> DIR/dblaunch.toml:2:11",
    );
    assert_error(
        "[programs.a]\ncommand = \"  \"\n",
        "program `a` has an empty command",
    );
    assert_error(
        "[programs.a]\ncwd = \".\"\n",
        "in program `a`: missing field `command`",
    );
}

#[test]
fn unknown_names_get_the_closest_one() {
    assert_error(
        "[databases]\nletters = \"data/l.db\"\n[programs.a]\ncommand = \"x\"\nreads = [\"leters\"]\n",
        "program `a` reads `leters`, which is not in [databases]
 --> DIR/dblaunch.toml:5:10
  |
5 | reads = [\"leters\"]
  |          ^^^^^^^^
  = help: did you mean `letters`?",
    );
    assert_error(
        "[programs.ingest]\ncommand = \"x\"\n[programs.b]\ncommand = \"x\"\nafter = [\"ingset\"]\n",
        "program `b` runs after `ingset`, which is not a program\n --> DIR/dblaunch.toml:5:10",
    );
    assert_error(
        "[programs.a]\ncommand = \"x\"\n[groups]\ng = [\"a\", \"b\"]\n",
        "group `g` names `b`, which is neither a program nor a group",
    );
}

#[test]
fn after_cycles_are_printed() {
    assert_error(
        "[programs.a]\ncommand = \"x\"\nafter = [\"c\"]\n[programs.b]\ncommand = \"x\"\nafter = [\"a\"]\n[programs.c]\ncommand = \"x\"\nafter = [\"b\"]\n",
        "`after` goes round in a circle: a → b → c → a",
    );
    assert_error(
        "[groups]\ng = [\"h\"]\nh = [\"g\"]\n",
        "group `g` contains itself: g → h → g",
    );
}

#[test]
fn reading_and_writing_one_database_and_duplicate_names() {
    assert_error(
        "[databases]\nl = \"data/l.db\"\n[programs.a]\ncommand = \"x\"\nreads = [\"l\"]\nwrites = [\"data/../data/l.db\"]\n",
        "program `a` both reads `l` and writes `data/../data/l.db`, one database",
    );
    assert_error(
        "[programs.a]\ncommand = \"x\"\n[groups]\na = [\"a\"]\n",
        "`a` is both a program and a group",
    );
}

#[test]
fn missing_directories() {
    assert_error(
        "[programs.a]\ncommand = \"x\"\ncwd = \"nope\"\n",
        "the cwd of program `a`, DIR/nope, is not a directory\n --> DIR/dblaunch.toml:3:7",
    );
    assert_error(
        "[programs.a]\ncommand = \"x\"\nwrites = [\"nope/a.db\"]\n",
        "the directory DIR/nope of database `nope/a.db` does not exist",
    );
}

#[test]
fn all_errors_are_reported_at_once_and_nothing_starts() {
    let toml = "[programs.a]\ncommand = []\nreads = [\"x\"]\ncolour = 1\n[programs.b]\ncommand = \"touch started\"\nafter = [\"zz\"]\n";
    let (status, _, err) = check(toml);
    assert_eq!(status, 2);
    for expected in [
        "empty command",
        "reads `x`",
        "unknown key `colour`",
        "after `zz`",
        "4 errors in DIR/dblaunch.toml",
    ] {
        assert!(err.contains(expected), "{expected}: {err}");
    }
    let env = Env::new();
    env.manifest(toml);
    let o = env.run(&["run", "b"]);
    assert_eq!(code(&o), 2);
    assert!(!env.path("started").exists());
}

#[test]
fn check_shows_locks_and_conflicts() {
    let (status, out, err) = check(
        "[databases]\nl = \"data/l.db\"\n[programs.web]\ncommand = \"x\"\nreads = [\"l\"]\n[programs.ingest]\ncommand = \"x\"\nwrites = [\"l\", \"data/s.db\"]\n[programs.report]\ncommand = \"x\"\nreads = [\"l\"]\nafter = [\"ingest\"]\n",
    );
    assert_eq!(status, 0, "{err}");
    assert!(
        out.contains("ingest  writes l (data/l.db), data/s.db"),
        "{out}"
    );
    assert!(
        out.contains("report  reads l (data/l.db); after ingest"),
        "{out}"
    );
    assert!(
        out.contains("web (read) and ingest (write) on l (data/l.db): one at a time"),
        "{out}"
    );
    assert!(out.contains("ingest (write) and report (read)"), "{out}");
    assert!(
        !out.contains("web (read) and report"),
        "readers do not conflict: {out}"
    );
}

#[test]
fn check_shows_a_program_that_locks_for_itself() {
    let (status, out, err) = check(
        "[databases]\nl = \"data/l.db\"\n[programs.web]\ncommand = \"x\"\nreads = [\"l\"]\nhold = \"on-demand\"\n[programs.ingest]\ncommand = \"x\"\nwrites = [\"l\"]\n[programs.worker]\ncommand = \"x\"\nwrites = [\"l\"]\nhold = \"on-demand\"\n[programs.report]\ncommand = \"x\"\nreads = [\"l\"]\nhold = \"running\"\n",
    );
    assert_eq!(status, 0, "{err}");
    let (first, rest) = out.split_once('\n').unwrap();
    assert!(
        first.ends_with("/dblaunch.toml: ok, 4 programs, 0 groups, 1 named database"),
        "{first}"
    );
    assert_eq!(
        rest,
        "
programs:
  web     reads l (data/l.db); locks for itself, per operation
  ingest  writes l (data/l.db)
  worker  writes l (data/l.db); locks for itself, per operation
  report  reads l (data/l.db)

conflicts:
  web (read) and ingest (write) on l (data/l.db): per operation (web locks for itself)
  web (read) and worker (write) on l (data/l.db): per operation (both lock for themselves)
  ingest (write) and worker (write) on l (data/l.db): per operation (worker locks for itself)
  ingest (write) and report (read) on l (data/l.db): one at a time
  worker (write) and report (read) on l (data/l.db): per operation (worker locks for itself)
"
    );
}

#[test]
fn hold_is_running_or_on_demand() {
    assert_error(
        "[databases]\nl = \"data/l.db\"\n[programs.web]\ncommand = \"x\"\nreads = [\"l\"]\nhold = \"ondemand\"\n",
        "dblaunch: error: program `web`: `ondemand` is not a way to hold its locks
 --> DIR/dblaunch.toml:6:8
  |
6 | hold = \"ondemand\"
  |        ^^^^^^^^^^
  = help: did you mean `on-demand`? Write hold = \"running\" (the default: dblaunch holds its databases while it runs) or hold = \"on-demand\" (it locks them itself, per operation)
",
    );
    assert_error(
        "[programs.web]\ncommand = \"x\"\nreads = [\"data/l.db\"]\nhold = \"sometimes\"\n",
        "dblaunch: error: program `web`: `sometimes` is not a way to hold its locks
 --> DIR/dblaunch.toml:4:8
  |
4 | hold = \"sometimes\"
  |        ^^^^^^^^^^^
  = help: write hold = \"running\" (the default: dblaunch holds its databases while it runs) or hold = \"on-demand\" (it locks them itself, per operation)
",
    );
}

#[test]
fn a_program_that_locks_for_itself_declares_its_databases_and_does_not_yield() {
    assert_error(
        "[programs.web]\ncommand = \"x\"\nhold = \"on-demand\"\n",
        "dblaunch: error: program `web` locks for itself (hold = \"on-demand\") but declares no database
 --> DIR/dblaunch.toml:3:8
  |
3 | hold = \"on-demand\"
  |        ^^^^^^^^^^^
  = help: list the databases it locks in `reads` and `writes`: `check`, `ps` and `status` show them
",
    );
    assert_error(
        "[programs.web]\ncommand = \"x\"\nreads = [\"data/l.db\"]\nhold = \"on-demand\"\nyields = true\n",
        "dblaunch: error: program `web` yields, but it locks for itself (hold = \"on-demand\"): dblaunch holds nothing of it to yield
 --> DIR/dblaunch.toml:5:10
  |
5 | yields = true
  |          ^^^^
  = help: remove `yields = true`: between its operations the program holds nothing, and others get in then
",
    );
    let (status, _, err) = check(
        "[programs.web]\ncommand = \"x\"\nreads = [\"data/l.db\"]\nhold = \"on-demand\"\nyields = false\n",
    );
    assert_eq!(status, 0, "{err}");
}

#[test]
fn restart_policies_are_checked() {
    assert_error(
        "[programs.a]\ncommand = \"x\"\nrestart = \"sometimes\"\n",
        "`sometimes` is not a restart policy\n --> DIR/dblaunch.toml:3:11",
    );
    assert_error(
        "[programs.a]\ncommand = \"x\"\nmax_restarts = -1\n",
        "max_restarts must be a whole number from 0, not -1",
    );
    let (status, _, err) =
        check("[programs.a]\ncommand = \"x\"\nrestart = \"on-failure\"\nmax_restarts = 2\n");
    assert_eq!(status, 0, "{err}");
}
