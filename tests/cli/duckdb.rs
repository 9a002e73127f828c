//! The case that hurts most, with a real DuckDB (the `duckdb` package from
//! PyPI; `.ci/run` installs it): a web app keeps a read-only connection open
//! all day, and a writer fails with "Could not set lock on file".

use std::fs;

use crate::*;

const APP: &str = r#"
import duckdb, signal, sys, time
signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
con = duckdb.connect("data.duckdb", read_only=True)
while True:
    n = con.execute("select count(*) from t").fetchone()[0]
    print(f"serving {n}", flush=True)
    time.sleep(0.05)
"#;

const WRITER: &str = r#"
import duckdb
con = duckdb.connect("data.duckdb")
con.execute("create table if not exists t(x integer)")
con.execute("insert into t values (1)")
con.close()
print("written", flush=True)
"#;

fn duckdb_available() -> bool {
    Command::new("python3")
        .args(["-c", "import duckdb"])
        .status()
        .is_ok_and(|s| s.success())
}

fn setup(env: &Env, yields: bool) {
    fs::write(env.path("app.py"), APP).unwrap();
    fs::write(env.path("writer.py"), WRITER).unwrap();
    let o = Command::new("python3")
        .arg("writer.py")
        .current_dir(env.dir.path())
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o.stderr));
    env.manifest(format!(
            "[settings]\nstop_timeout = \"5s\"\n[databases]\ndata = \"data.duckdb\"\n[programs.app]\ncommand = [\"python3\", \"-u\", \"app.py\"]\nreads = [\"data\"]\nyields = {yields}\n"
        ));
}

#[test]
fn duckdb_writers_get_in_while_a_yielding_app_started_in_the_background_holds_a_read_connection() {
    if !duckdb_available() {
        eprintln!("skipped: python3 cannot import duckdb (pip install duckdb)");
        return;
    }
    let env = Env::new();
    setup(&env, false);
    // Without dblaunch: the engine's own error.
    let mut app = Command::new("python3")
        .args(["-u", "app.py"])
        .current_dir(env.dir.path())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::BufRead;
        let mut first = String::new();
        std::io::BufReader::new(app.stdout.as_mut().unwrap())
            .read_line(&mut first)
            .unwrap();
        assert!(first.starts_with("serving"), "{first}");
    }
    let o = Command::new("python3")
        .arg("writer.py")
        .current_dir(env.dir.path())
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(
        text(&o.stderr).contains("Could not set lock on file"),
        "{}",
        text(&o.stderr)
    );
    // dblaunch names the app instead of crashing into it.
    let o = env.run(&[
        "exec",
        "--no-wait",
        "--write",
        "data.duckdb",
        "--",
        "python3",
        "writer.py",
    ]);
    assert_eq!(code(&o), 75);
    assert!(
        text(&o.stderr).contains(&format!("pid {}", app.id())),
        "{}",
        text(&o.stderr)
    );
    app.kill().unwrap();
    app.wait().unwrap();

    // Under dblaunch without `yields`: the writer queues behind the app,
    // and --wait ends it with 75, naming the app.
    let o = env.run(&["start", "app"]);
    assert_eq!(code(&o), 0, "{}", text(&o.stdout));
    let o = env.run(&[
        "exec",
        "--wait",
        "500ms",
        "--write",
        "data.duckdb",
        "--",
        "python3",
        "writer.py",
    ]);
    assert_eq!(code(&o), 75);
    assert!(text(&o.stderr).contains("app (pid"), "{}", text(&o.stderr));
    assert!(text(&env.run(&["stop"]).stdout).contains("stopped app"));

    // With `yields = true`, started in the background: every write lands,
    // and the app is back serving (and sees it) after each one.
    setup(&env, true);
    let o = env.run(&["start", "app"]);
    assert_eq!(code(&o), 0, "{}{}", text(&o.stdout), text(&o.stderr));
    let log = env.path(".dblaunch/logs/app.log");
    let served = |n: usize| {
        fs::read_to_string(&log)
            .unwrap_or_default()
            .lines()
            .any(|l| l == format!("serving {n}"))
    };
    // One row from each setup so far.
    wait_until("the app to serve", || served(2));
    for n in 3..=5 {
        let o = env.run(&[
            "exec",
            "--write",
            "data.duckdb",
            "--",
            "python3",
            "writer.py",
        ]);
        assert_eq!(code(&o), 0, "{}", text(&o.stderr));
        assert!(
            !text(&o.stderr).contains("Could not set lock"),
            "{}",
            text(&o.stderr)
        );
        assert_eq!(text(&o.stdout), "written\n");
        wait_until(&format!("the app to come back and serve {n} rows"), || {
            served(n)
        });
    }
    // ps and logs tell the story.
    let ps = text(&env.run(&["ps"]).stdout);
    assert!(
        ps.contains("app") && ps.contains("running") && ps.contains("data.duckdb (read)"),
        "{ps}"
    );
    let logs = text(&env.run(&["logs", "-n", "1000", "app"]).stdout);
    assert!(logs.contains("app | serving 5"), "{logs}");
    let story = fs::read_to_string(env.path(".dblaunch/dblaunch.log")).unwrap();
    assert_eq!(story.matches("yielding").count(), 3, "{story}");
    assert!(!logs.contains("Could not set lock") && !story.contains("Could not set lock"));
    assert!(text(&env.run(&["stop"]).stdout).contains("stopped app"));
    wait_until("nothing left", || {
        processes_naming(&env.dir.path().display().to_string()).is_empty()
    });
}
