//! The dev loop: `ready` checks against real servers, `needs` (start after,
//! stop before), `watch` (restart on change, through the lock queue like
//! anyone), and systemd's notify protocol. Every wait is on an event (a line
//! in the probe log, a file, a datagram), bounded by `PATIENCE`.

use std::fs;
use std::io::Write;
use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use crate::*;

/// A port nobody listens on now.
fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// A small HTTP server: listens after `DELAY` seconds (logging
/// `LABEL listening NS` to the probe log first), answers 503 until `OK`
/// seconds after that, then 200.
const SERVER: &str = r#"
import http.server, os, sys, time
port, delay, ok_after, log, label = int(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3]), sys.argv[4], sys.argv[5]
time.sleep(delay)
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        code = 200 if time.monotonic() - t0 >= ok_after else 503
        self.send_response(code)
        self.end_headers()
        self.wfile.write(b"x")
    def log_message(self, *a):
        pass
s = http.server.HTTPServer(("127.0.0.1", port), H)
t0 = time.monotonic()
with open(log, "a") as f:
    f.write("%s listening %d %d %d\n" % (label, time.monotonic_ns(), os.getpid(), os.getpgrp()))
s.serve_forever()
"#;

/// Records whether `PORT` answered when it started (`answered` holds
/// `yes` or the error), logs `LABEL start NS`, then stays until signalled
/// (or exits at once with `--once`).
const CLIENT: &str = r#"
import os, signal, socket, sys, time
port, log, label, out = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
with open(log, "a") as f:
    f.write("%s start %d %d %d\n" % (label, time.monotonic_ns(), os.getpid(), os.getpgrp()))
try:
    socket.create_connection(("127.0.0.1", port), 2).close()
    said = "yes"
except OSError as e:
    said = str(e)
with open(out, "w") as f:
    f.write(said)
if "--once" not in sys.argv:
    signal.pause()
"#;

impl Env {
    fn scripts(&self) {
        fs::write(self.path("server.py"), SERVER).unwrap();
        fs::write(self.path("client.py"), CLIENT).unwrap();
    }

    fn server_cmd(&self, port: u16, delay: f64, ok_after: f64, label: &str) -> String {
        format!(
            "[\"python3\", \"{}\", \"{port}\", \"{delay}\", \"{ok_after}\", \"{}\", \"{label}\"]",
            self.path("server.py").display(),
            self.log().display()
        )
    }

    fn client_cmd(&self, port: u16, label: &str, once: bool) -> String {
        format!(
            "[\"python3\", \"{}\", \"{port}\", \"{}\", \"{label}\", \"{}\"{}]",
            self.path("client.py").display(),
            self.log().display(),
            self.path("answered").display(),
            if once { ", \"--once\"" } else { "" }
        )
    }

    fn starts(&self, label: &str) -> Vec<u128> {
        self.events()
            .into_iter()
            .filter(|e| e.label == label && e.what == "start")
            .map(|e| e.ns)
            .collect()
    }

    fn wait_starts(&self, label: &str, n: usize) -> Vec<u128> {
        wait_until(&format!("{n} starts of {label}"), || {
            self.starts(label).len() >= n
        });
        self.starts(label)
    }
}

/// The manifest's path: a run given it on its command line names the
/// test's directory, so that a failed test's run is killed with it.
fn manifest(env: &Env) -> String {
    env.path("dblaunch.toml").display().to_string()
}

/// `dblaunch ps --json`: each program's JSON object.
fn ps(env: &Env) -> Vec<serde_json::Value> {
    let o = env.run(&["ps", "--json"]);
    let doc: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap_or_default();
    doc["programs"].as_array().cloned().unwrap_or_default()
}

fn ps_of(env: &Env, program: &str) -> Option<serde_json::Value> {
    ps(env).into_iter().find(|p| p["program"] == program)
}

fn stop(env: &Env, mut run: Child) -> String {
    kill(run.id() as i32, libc::SIGTERM);
    wait_status(&mut run);
    let err = stderr_of(&mut run);
    let _ = env;
    err
}

#[test]
fn a_dependent_starts_only_once_its_tcp_server_is_ready() {
    let env = Env::new();
    env.scripts();
    let port = free_port();
    env.manifest(format!(
        "[programs.db]\ncommand = {}\nready = {{ tcp = \"127.0.0.1:{port}\" }}\n\n[programs.web]\ncommand = {}\nneeds = [\"db\"]\n",
        env.server_cmd(port, 0.5, 0.0, "db"),
        env.client_cmd(port, "web", true)
    ));
    let o = env.run(&["run", "web"]);
    let err = text(&o.stderr);
    assert_eq!(code(&o), 0, "{err}");
    assert_eq!(
        fs::read_to_string(env.path("answered")).unwrap(),
        "yes",
        "{err}"
    );
    let listening = env.time_of("db", "listening");
    assert!(env.time_of("web", "start") > listening);
    // db ran only because web needs it: stopped once web was done.
    assert!(
        err.contains("db: stopped, as nothing needs it any more"),
        "{err}"
    );
}

#[test]
fn a_dependent_starts_only_once_its_http_server_answers_2xx() {
    let env = Env::new();
    env.scripts();
    let port = free_port();
    env.manifest(format!(
        "[programs.db]\ncommand = {}\nready = {{ http = \"http://127.0.0.1:{port}/health\", interval = \"100ms\" }}\n\n[programs.web]\ncommand = {}\nneeds = [\"db\"]\n",
        env.server_cmd(port, 0.3, 0.5, "db"),
        env.client_cmd(port, "web", true)
    ));
    let o = env.run(&["run", "web"]);
    let err = text(&o.stderr);
    assert_eq!(code(&o), 0, "{err}");
    // The server answered 503 for its first 0.5 s.
    let listening = env.time_of("db", "listening");
    let started = env.time_of("web", "start");
    assert!(started > listening + 500_000_000, "{err}");
}

/// A `ready` check that does not succeed in time: the program is stopped,
/// fails (status 1), and what needs it is not started; the message names
/// the check and what it last saw. With `server`, db needs a server that
/// answers 503 (itself ready once it listens), so every try sees it.
fn times_out(ready: &str, server: bool, expected: &[&str]) {
    let env = Env::new();
    env.scripts();
    let port = free_port();
    let mut manifest = String::new();
    let mut needs = "";
    if server {
        manifest = format!(
            "[programs.srv]\ncommand = {}\nready = {{ tcp = \"127.0.0.1:{port}\" }}\n\n",
            env.server_cmd(port, 0.0, 1000.0, "srv")
        );
        needs = "needs = [\"srv\"]\n";
    }
    let command = env.probe_toml(
        "db",
        &format!(", \"--until\", \"{}\"", env.path("never").display()),
    );
    let ready = ready.replace("PORT", &port.to_string());
    manifest += &format!(
        "[programs.db]\ncommand = {command}\nready = {ready}\n{needs}\n[programs.web]\ncommand = \"touch started\"\nneeds = [\"db\"]\n",
    );
    env.manifest(manifest);
    let o = env.run(&["run", "web"]);
    let err = text(&o.stderr).replace(&port.to_string(), "PORT");
    assert_eq!(code(&o), 1, "{err}");
    for e in expected {
        assert!(err.contains(e), "expected: {e}\ngot:\n{err}");
    }
    assert!(!env.path("started").exists(), "{err}");
}

#[test]
fn a_tcp_check_that_times_out_says_connection_refused() {
    times_out(
        "{ tcp = \"127.0.0.1:PORT\", timeout = \"1s\" }",
        false,
        &[
            "db: not ready after 1s: tcp 127.0.0.1:PORT: last try: connection refused; stopping it (SIGTERM)",
            "web: not started: it needs db, which was not ready within 1s (tcp 127.0.0.1:PORT: last try: connection refused)",
        ],
    );
}

#[test]
fn an_http_check_that_times_out_says_the_status() {
    times_out(
        "{ http = \"http://127.0.0.1:PORT/\", timeout = \"1500ms\" }",
        true,
        &[
            "db: not ready after 1s 500ms: http http://127.0.0.1:PORT/: last try: HTTP 503; stopping it (SIGTERM)",
            "web: not started: it needs db",
        ],
    );
}

#[test]
fn an_exec_check_that_times_out_says_its_status_and_last_line() {
    times_out(
        "{ exec = \"echo no response; exit 2\", timeout = \"1s\" }",
        false,
        &[
            "db: not ready after 1s: exec `echo no response; exit 2`: last try: exit status 2: no response; stopping it (SIGTERM)",
        ],
    );
}

#[test]
fn a_log_check_that_times_out_says_no_line_matched() {
    times_out(
        "{ log = \"ready to accept\", timeout = \"1s\" }",
        false,
        &["db: not ready after 1s: log /ready to accept/: no line matched; stopping it (SIGTERM)"],
    );
}

#[test]
fn a_log_line_makes_a_program_ready() {
    let env = Env::new();
    env.manifest(format!(
        "[programs.db]\ncommand = \"echo starting; sleep 0.2; echo database system is ready to accept connections; exec sleep 60\"\nready = {{ log = \"ready to accept\" }}\n\n{}needs = [\"db\"]\n",
        env.probe_program("web", "", "")
    ));
    let o = env.run(&["run", "web"]);
    let err = text(&o.stderr);
    assert_eq!(code(&o), 0, "{err}");
    let ready = err.find("db: ready after").expect("db is ready");
    let started = err.find("web: started").expect("web started");
    assert!(ready < started, "{err}");
}

#[test]
fn a_program_with_notify_is_ready_when_it_sends_ready_1() {
    let env = Env::new();
    let script = r#"
import os, socket, time
time.sleep(0.2)
open("sent", "w").close()
addr = os.environ["NOTIFY_SOCKET"]
if addr.startswith("@"):
    addr = "\0" + addr[1:]
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.sendto(b"STATUS=warming up\nREADY=1", addr)
time.sleep(60)
"#;
    fs::write(env.path("notifier.py"), script).unwrap();
    env.manifest(
        "[programs.db]\ncommand = [\"python3\", \"notifier.py\"]\nready = { notify = true }\n\n[programs.web]\ncommand = \"test -f sent && touch saw-it\"\nneeds = [\"db\"]\n",
    );
    let o = env.run(&["run", "web"]);
    let err = text(&o.stderr);
    assert_eq!(code(&o), 0, "{err}");
    assert!(env.path("saw-it").exists(), "{err}");
}

#[test]
fn on_ctrl_c_a_dependent_has_exited_before_its_server_gets_the_signal() {
    let env = Env::new();
    let linger = env.path("linger");
    let never = env.path("never");
    env.manifest(format!(
        "{}{}needs = [\"db\"]\n",
        env.probe_program("db", &format!(", \"--until\", \"{}\"", never.display()), ""),
        env.probe_program(
            "web",
            &format!(
                ", \"--until\", \"{}\", \"--linger-until\", \"{}\"",
                never.display(),
                linger.display()
            ),
            ""
        ),
    ));
    let mut run = env.spawn(&["-f", &manifest(&env), "run", "web"]);
    env.time_of("web", "start");
    kill(run.id() as i32, libc::SIGINT);
    env.time_of("web", "got SIGINT");
    // web lingers: db must not have been signalled yet. ps is an event
    // that comes after the stop was handled.
    let db = ps_of(&env, "db").expect("db in ps");
    assert_eq!(db["state"], "stopping", "{db}");
    assert!(
        !env.events()
            .iter()
            .any(|e| e.label == "db" && e.what.starts_with("got"))
    );
    touch(&linger);
    let web_end = env.time_of("web", "end");
    let db_signalled = env.time_of("db", "got SIGINT");
    assert!(db_signalled > web_end);
    let status = wait_status(&mut run);
    assert_eq!(status.code(), Some(130));
}

/// A watched program, the probe labelled `web`, held until signalled.
fn watched(env: &Env, watch: &str) -> Child {
    fs::create_dir_all(env.path("src")).unwrap();
    env.manifest(env.probe_program(
        "web",
        &format!(", \"--until\", \"{}\"", env.path("never").display()),
        &format!("watch = {watch}"),
    ));
    let run = env.spawn(&["-f", &manifest(env), "run", "web"]);
    env.wait_starts("web", 1);
    run
}

#[test]
fn a_change_under_a_watched_directory_restarts_the_program_within_the_debounce() {
    let env = Env::new();
    let run = watched(&env, "[\"src\"]");
    let before = Instant::now();
    fs::write(env.path("src/main.py"), "print(1)\n").unwrap();
    env.wait_starts("web", 2);
    let took = before.elapsed();
    assert!(took < Duration::from_millis(1300), "{took:?}");
    let web = ps_of(&env, "web").unwrap();
    assert_eq!(web["change_restarts"], 1, "{web}");
    let table = text(&env.run(&["ps"]).stdout);
    assert!(table.contains("0+1"), "{table}");
    let err = stop(&env, run);
    assert!(
        err.contains("src/main.py changed: restarting it (SIGTERM)"),
        "{err}"
    );
}

#[test]
fn fifty_quick_writes_restart_once() {
    let env = Env::new();
    let run = watched(&env, "{ paths = [\"src\"], debounce = \"500ms\" }");
    let mut f = fs::File::create(env.path("src/data.txt")).unwrap();
    for i in 0..50 {
        writeln!(f, "{i}").unwrap();
        f.flush().unwrap();
    }
    drop(f);
    env.wait_starts("web", 2);
    // One more change, after the burst's restart: the next start is its.
    let after_burst = env.starts("web")[1];
    fs::write(env.path("src/other.txt"), "x").unwrap();
    let starts = env.wait_starts("web", 3);
    assert!(starts[2] > after_burst);
    let web = ps_of(&env, "web").unwrap();
    assert_eq!(web["change_restarts"], 2, "{web}");
    let err = stop(&env, run);
    assert_eq!(env.starts("web").len(), 3, "{err}");
}

#[test]
fn ignored_files_restart_nothing() {
    let env = Env::new();
    fs::write(env.path(".gitignore"), "*.log\nbuild/\n").unwrap();
    for d in ["src/build", "src/node_modules", "src/.git", "src/sub"] {
        fs::create_dir_all(env.path(d)).unwrap();
    }
    fs::write(env.path("src/sub/.ignore"), "secret*\n").unwrap();
    let run = watched(&env, "{ paths = [\"src\"], ignore = [\"*.tmp\"] }");
    for f in [
        "src/app.log",
        "src/build/out.js",
        "src/node_modules/x.js",
        "src/.git/index",
        "src/scratch.tmp",
        "src/sub/secret.txt",
    ] {
        fs::write(env.path(f), "x").unwrap();
    }
    fs::create_dir(env.path("src/target")).unwrap();
    // The first change that counts names itself: had any of the above
    // counted, it would be the one named, and the restart would be its.
    fs::write(env.path("src/sub/main.rs"), "x").unwrap();
    env.wait_starts("web", 2);
    let err = stop(&env, run);
    assert!(
        err.contains("src/sub/main.rs changed: restarting it"),
        "{err}"
    );
    assert_eq!(env.starts("web").len(), 2, "{err}");
}

#[test]
fn a_restarted_writer_queues_behind_an_exec_that_holds_its_database() {
    let env = Env::new();
    fs::create_dir_all(env.path("src")).unwrap();
    fs::create_dir_all(env.path("data")).unwrap();
    env.manifest(env.probe_program(
        "web",
        &format!(", \"--until\", \"{}\"", env.path("never").display()),
        "writes = [\"data/app.db\"]\nwatch = [\"src\"]",
    ));
    let run = env.spawn(&["-f", &manifest(&env), "run", "web"]);
    env.wait_starts("web", 1);
    // An exec queues behind web…
    let go = env.path("go");
    let mut holder = env.spawn(&with_cmd(
        &["exec", "--write", "data/app.db"],
        &env.probe("holder", &["--until", go.to_str().unwrap()]),
    ));
    wait_until("the exec's ticket", || env.tickets("data/app.db") == 2);
    // …so web, restarted by a change, queues behind the exec.
    fs::write(env.path("src/main.rs"), "x").unwrap();
    let holder_start = env.time_of("holder", "start");
    wait_until("web to queue again", || {
        ps_of(&env, "web").is_some_and(|p| p["state"] == "queued")
    });
    assert_eq!(env.starts("web").len(), 1);
    touch(&go);
    let holder_end = env.time_of("holder", "end");
    let starts = env.wait_starts("web", 2);
    assert!(holder_start < holder_end && holder_end < starts[1]);
    assert!(wait_status(&mut holder).success());
    stop(&env, run);
}

#[test]
fn a_program_that_failed_starts_again_after_a_fix() {
    let env = Env::new();
    fs::create_dir_all(env.path("src")).unwrap();
    env.manifest(format!(
        "[programs.web]\ncommand = \"test -f src/fixed || exit 3; exec {BIN} __probe --label web --log {} --until never\"\nwatch = [\"src\"]\n",
        env.log().display()
    ));
    let run = env.spawn(&["-f", &manifest(&env), "run", "web"]);
    wait_until("web to have failed", || {
        ps_of(&env, "web").is_some_and(|p| p["state"] == "exited")
    });
    touch(&env.path("src/fixed"));
    env.wait_starts("web", 1);
    let web = ps_of(&env, "web").unwrap();
    assert_eq!(web["state"], "running", "{web}");
    let err = stop(&env, run);
    assert!(
        err.contains("src/fixed changed: starting it again"),
        "{err}"
    );
}

#[test]
fn no_watch_turns_watching_off() {
    let env = Env::new();
    fs::create_dir_all(env.path("src")).unwrap();
    env.manifest("[programs.web]\ncommand = \"true\"\nwatch = [\"src\"]\n");
    // Without --no-watch the run would wait for a change.
    let o = env.run(&["run", "--no-watch", "web"]);
    assert_eq!(code(&o), 0, "{}", text(&o.stderr));
}

#[test]
fn ps_shows_starting_then_ready() {
    let env = Env::new();
    let never = env.path("never");
    env.manifest(format!(
        "{}ready = {{ exec = \"test -f go\", interval = \"50ms\" }}\n",
        env.probe_program(
            "db",
            &format!(", \"--until\", \"{}\"", never.display()),
            "writes = [\"db.sqlite\"]"
        )
    ));
    let run = env.spawn(&["-f", &manifest(&env), "run", "db"]);
    env.time_of("db", "start");
    let db = ps_of(&env, "db").unwrap();
    assert_eq!(db["state"], "starting", "{db}");
    assert!(text(&env.run(&["ps"]).stdout).contains("starting"));
    touch(&env.path("go"));
    wait_until("db to be ready", || {
        ps_of(&env, "db").is_some_and(|p| p["state"] == "ready")
    });
    assert!(text(&env.run(&["ps"]).stdout).contains("ready"));
    // And the database's journal says so.
    wait_until("the journal's ready line", || {
        fs::read_to_string(env.path(".db.sqlite.dblaunch/journal"))
            .is_ok_and(|j| j.contains("\"event\":\"ready\""))
    });
    let err = stop(&env, run);
    assert!(err.contains("ready after"), "{err}");
}

/// A datagram from `sock`, within `PATIENCE`.
fn datagram(sock: &UnixDatagram) -> String {
    sock.set_read_timeout(Some(PATIENCE)).unwrap();
    let mut buf = [0u8; 4096];
    let n = sock.recv(&mut buf).expect("a datagram in time");
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

#[test]
fn under_systemd_ready_1_comes_once_every_program_is_ready() {
    let env = Env::new();
    env.scripts();
    let port = free_port();
    let socket_path = env.path("notify.sock");
    let sock = UnixDatagram::bind(&socket_path).unwrap();
    env.manifest(format!(
        "[programs.db]\ncommand = {}\nready = {{ tcp = \"127.0.0.1:{port}\" }}\n\n[programs.web]\ncommand = {}\nneeds = [\"db\"]\n\n[programs.env]\ncommand = \"echo ${{NOTIFY_SOCKET:-none}} > env.txt; exec sleep 60\"\n",
        env.server_cmd(port, 0.5, 0.0, "db"),
        env.client_cmd(port, "web", false)
    ));
    let mut run = env
        .cmd(&["-f", &manifest(&env), "run", "db", "web", "env"])
        .env("NOTIFY_SOCKET", &socket_path)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let first = datagram(&sock);
    assert!(first.starts_with("READY=1"), "{first}");
    // By then db answers, and web has started (and seen it answer).
    assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_ok());
    let web = ps_of(&env, "web").unwrap();
    assert_eq!(web["state"], "running", "{web}");
    wait_until("web's answer", || {
        fs::read_to_string(env.path("answered")).is_ok_and(|s| !s.is_empty())
    });
    assert_eq!(fs::read_to_string(env.path("answered")).unwrap(), "yes");
    wait_until("env.txt", || {
        fs::read_to_string(env.path("env.txt")).is_ok_and(|s| s.ends_with('\n'))
    });
    assert_eq!(fs::read_to_string(env.path("env.txt")).unwrap(), "none\n");
    kill(run.id() as i32, libc::SIGTERM);
    assert_eq!(datagram(&sock), "STOPPING=1");
    wait_status(&mut run);
}

/// The figures for docs/dev-loop.md: from a server's readiness to its
/// dependent's start, and from a change to the restarted program's start
/// (medians of several). `cargo test --release --test cli devloop::figures
/// -- --ignored --nocapture`
#[test]
#[ignore = "a measurement, not a check"]
fn figures() {
    let median = |mut v: Vec<u128>| {
        v.sort_unstable();
        v[v.len() / 2] as f64 / 1e6
    };
    let mut ready = Vec::new();
    for _ in 0..7 {
        let env = Env::new();
        env.scripts();
        let port = free_port();
        // The dependent is the probe: it logs its start at once (python
        // takes a few hundred milliseconds to).
        env.manifest(format!(
            "[programs.db]\ncommand = {}\nready = {{ tcp = \"127.0.0.1:{port}\" }}\n\n{}needs = [\"db\"]\n",
            env.server_cmd(port, 0.3, 0.0, "db"),
            env.probe_program("web", "", "")
        ));
        let o = env.run(&["run", "web"]);
        assert_eq!(code(&o), 0);
        ready.push(env.time_of("web", "start") - env.time_of("db", "listening"));
    }
    let mut change = Vec::new();
    let env = Env::new();
    let run = watched(&env, "[\"src\"]");
    for n in 0..7 {
        let t = now_ns();
        fs::write(env.path("src/x"), n.to_string()).unwrap();
        let starts = env.wait_starts("web", n + 2);
        change.push(starts[n + 1] - t);
    }
    stop(&env, run);
    println!(
        "server listening -> dependent started: median {:.0} ms (of {:?} ms)",
        median(ready.clone()),
        ready.iter().map(|n| n / 1_000_000).collect::<Vec<_>>()
    );
    println!(
        "file written -> restarted program started: median {:.0} ms (of {:?} ms)",
        median(change.clone()),
        change.iter().map(|n| n / 1_000_000).collect::<Vec<_>>()
    );
}

fn assert_error(manifest: &str, expected: &str) {
    assert_manifest_error(manifest, &["src"], expected);
}

#[test]
fn an_unknown_readiness_check() {
    assert_error(
        "[programs.db]\ncommand = \"x\"\nready = { tpc = \"127.0.0.1:5432\" }\n",
        "dblaunch: error: unknown readiness check `tpc` in program `db`
 --> DIR/dblaunch.toml:3:11
  |
3 | ready = { tpc = \"127.0.0.1:5432\" }
  |           ^^^
  = help: did you mean `tcp`? A check is one of tcp, http, exec, log, notify (with interval and timeout), e.g. ready = { tcp = \"127.0.0.1:5432\" }\n",
    );
}

#[test]
fn a_bad_address_url_or_regex() {
    assert_error(
        "[programs.db]\ncommand = \"x\"\nready = { tcp = \"localhost\" }\n",
        "dblaunch: error: `localhost` is not an address to connect to
 --> DIR/dblaunch.toml:3:17
  |
3 | ready = { tcp = \"localhost\" }
  |                 ^^^^^^^^^^^
  = help: write HOST:PORT, e.g. tcp = \"127.0.0.1:5432\" or tcp = \"localhost:8080\" ([::1]:8080 for IPv6)",
    );
    assert_error(
        "[programs.db]\ncommand = \"x\"\nready = { http = \"https://127.0.0.1/\" }\n",
        "dblaunch: error: `https://127.0.0.1/` is not a URL to check: https is not checked (no TLS in dblaunch); check the plain-http port, or use tcp or exec
 --> DIR/dblaunch.toml:3:18
  |
3 | ready = { http = \"https://127.0.0.1/\" }
  |                  ^^^^^^^^^^^^^^^^^^^^
  = help: write http = \"http://127.0.0.1:3000/health\" (any 2xx answer means ready)",
    );
    assert_error(
        "[programs.db]\ncommand = \"x\"\nready = { log = \"ready (to\" }\n",
        "dblaunch: error: `ready.log` of program `db` is not a regular expression: unclosed group
 --> DIR/dblaunch.toml:3:17
  |
3 | ready = { log = \"ready (to\" }
  |                 ^^^^^^^^^^^",
    );
    assert_error(
        "[programs.db]\ncommand = \"x\"\nready = { tcp = \"127.0.0.1:1\", timeout = \"soon\" }\n",
        "dblaunch: error: timeout `soon` is not a duration: expected number at 0
 --> DIR/dblaunch.toml:3:42",
    );
}

#[test]
fn a_watched_path_that_does_not_exist() {
    assert_error(
        "[programs.web]\ncommand = \"x\"\nwatch = [\"src\", \"nope\"]\n",
        "dblaunch: error: program `web` watches DIR/nope, which does not exist
 --> DIR/dblaunch.toml:3:17
  |
3 | watch = [\"src\", \"nope\"]
  |                 ^^^^^^
  = help: create it, or correct the path (relative paths are relative to the manifest's directory)",
    );
    assert_error(
        "[programs.web]\ncommand = \"x\"\nwatch = { path = [\"src\"] }\n",
        "dblaunch: error: unknown key `path` in `watch` of program `web`
 --> DIR/dblaunch.toml:3:11
  |
3 | watch = { path = [\"src\"] }
  |           ^^^^
  = help: did you mean `paths`? The keys are paths, ignore and debounce",
    );
}

#[test]
fn needs_cycles_and_unknown_names() {
    assert_error(
        "[programs.web]\ncommand = \"x\"\nneeds = [\"db\"]\n[programs.db]\ncommand = \"x\"\nafter = [\"web\"]\n",
        "dblaunch: error: `needs` and `after` go round in a circle: web → db → web
 --> DIR/dblaunch.toml:3:10
  |
3 | needs = [\"db\"]
  |          ^^^^
  = help: no program in a circle can ever start; remove one of these `needs` or `after` entries",
    );
    assert_error(
        "[programs.web]\ncommand = \"x\"\nneeds = [\"dbb\"]\n[programs.db]\ncommand = \"x\"\n",
        "dblaunch: error: program `web` needs `dbb`, which is not a program
 --> DIR/dblaunch.toml:3:10
  |
3 | needs = [\"dbb\"]
  |          ^^^^^
  = help: did you mean `db`?",
    );
    let (status, _, err) = check_manifest(
        "[programs.db]\ncommand = \"x\"\nready = { tcp = \"127.0.0.1:5432\", interval = \"100ms\" }\n[programs.web]\ncommand = \"x\"\nneeds = [\"db\"]\nwatch = { paths = [\"src\"], ignore = [\"*.tmp\"], debounce = \"200ms\" }\n",
        &["src"],
    );
    assert_eq!(status, 0, "{err}");
}

/// `GET http://127.0.0.1:PORT/`'s body.
fn get(port: u16) -> String {
    use std::io::Read;
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(PATIENCE)).unwrap();
    s.write_all(b"GET / HTTP/1.0\r\nHost: x\r\n\r\n").unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    text.split("\r\n\r\n").nth(1).unwrap_or("").to_owned()
}

#[test]
fn the_devloop_example_runs_and_restarts_on_an_edit() {
    let env = Env::new();
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/devloop");
    let (stub, web) = (free_port(), free_port());
    for f in [
        "dblaunch.toml",
        ".gitignore",
        "stub.py",
        "migrate.py",
        "pipeline.sh",
        "web/app.py",
    ] {
        let text = fs::read_to_string(root.join(f)).unwrap();
        let text = text
            .replace("8765", &stub.to_string())
            .replace("8766", &web.to_string());
        fs::create_dir_all(env.path(f).parent().unwrap()).unwrap();
        fs::write(env.path(f), text).unwrap();
    }
    fs::create_dir_all(env.path("data")).unwrap();
    let mut run = env.spawn(&["-f", &manifest(&env), "run", "web", "pipeline"]);
    let ready = |restarts: u64| {
        move |p: serde_json::Value| p["state"] == "ready" && p["change_restarts"] == restarts
    };
    wait_until("the pipeline and web", || {
        ps_of(&env, "pipeline").is_some_and(|p| p["state"] == "exited")
            && ps_of(&env, "web").is_some_and(ready(0))
    });
    assert_eq!(get(web), "100 orders, 7409.79 EUR\n");
    let app = env.path("web/app.py");
    let edited = fs::read_to_string(&app)
        .unwrap()
        .replace("orders, {total", "orders in all, {total");
    fs::write(&app, edited).unwrap();
    wait_until("web, restarted", || {
        ps_of(&env, "web").is_some_and(ready(1))
    });
    assert_eq!(get(web), "100 orders in all, 7409.79 EUR\n");
    kill(run.id() as i32, libc::SIGINT);
    assert_eq!(wait_status(&mut run).code(), Some(130));
    let err = stderr_of(&mut run);
    let web_end = err.find("web: killed by SIGINT").expect(&err);
    let stub_end = err.find("stub: killed by SIGINT").expect(&err);
    assert!(web_end < stub_end, "{err}");
}

#[test]
fn check_shows_needs_ready_and_watch() {
    let env = Env::new();
    fs::create_dir(env.path("src")).unwrap();
    env.manifest(
        "[programs.db]\ncommand = \"x\"\nready = { tcp = \"127.0.0.1:5432\" }\n[programs.web]\ncommand = \"x\"\nneeds = [\"db\"]\nwatch = [\"src\"]\n",
    );
    let o = env.run(&["check"]);
    let out = text(&o.stdout);
    assert_eq!(code(&o), 0, "{}", text(&o.stderr));
    assert!(
        out.contains("  db   no database; ready: tcp 127.0.0.1:5432\n"),
        "{out}"
    );
    assert!(
        out.contains("  web  no database; needs db; watches src\n"),
        "{out}"
    );
}

#[test]
fn a_dependent_not_started_gets_its_chance_when_a_change_restarts_what_it_needs() {
    let env = Env::new();
    fs::create_dir_all(env.path("db")).unwrap();
    env.manifest(format!(
        "[programs.db]\ncommand = \"test -f db/fixed || exit 4; exec sleep 60\"\nready = {{ exec = \"test -f db/fixed\" }}\nwatch = [\"db\"]\n\n{}needs = [\"db\"]\n",
        env.probe_program("web", &format!(", \"--until\", \"{}\"", env.path("never").display()), "")
    ));
    let run = env.spawn(&["-f", &manifest(&env), "run", "web"]);
    wait_until("web not started", || {
        ps_of(&env, "web").is_some_and(|p| p["state"] == "skipped")
    });
    touch(&env.path("db/fixed"));
    env.wait_starts("web", 1);
    let err = stop(&env, run);
    assert!(
        err.contains("web: not started: it needs db, which exited 4 before it was ready"),
        "{err}"
    );
}

/// Out of inotify watches: a clear error that names the limit. The limit
/// is lowered in a user namespace of the test's own (its
/// `user.max_inotify_watches`), so nothing else on the machine is touched.
#[test]
fn running_out_of_inotify_watches_names_the_limit() {
    if !Command::new("unshare")
        .args(["-U", "-r", "true"])
        .status()
        .is_ok_and(|s| s.success())
    {
        eprintln!("skipped: no user namespace to lower the limit in (unshare -U -r)");
        return;
    }
    let env = Env::new();
    fs::create_dir_all(env.path("src/a/b/c/d/e")).unwrap();
    env.manifest("[programs.web]\ncommand = \"true\"\nwatch = [\"src\"]\n");
    let o = wait_output(
        Command::new("unshare")
            .args(["-U", "-r", "sh", "-c"])
            .arg(format!(
                "echo 3 > /proc/sys/user/max_inotify_watches && exec {BIN} -f {} run web",
                manifest(&env)
            ))
            .env_remove("RUST_LOG")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let err = text(&o.stderr);
    assert_eq!(code(&o), 1, "{err}");
    assert!(
        err.contains("dblaunch: error: cannot watch the paths of web: the system's limit of inotify watches is reached (fs.inotify.max_user_watches = "),
        "{err}"
    );
    assert!(
        err.contains("raise it with `sysctl fs.inotify.max_user_watches=524288` (as root)"),
        "{err}"
    );
}
