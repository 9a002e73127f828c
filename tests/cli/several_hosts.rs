//! Several hosts through a real PostgreSQL (the lock backend): a throwaway
//! server (initdb + pg_ctl on a temporary directory and port), hosts
//! simulated by distinct host names (DBLAUNCH_HOST) and distinct project
//! directories, so that only the backend stands between them: each host
//! has its own database path and so its own host-local lock, and shares
//! the database's `key` with the others.

use std::io::Write;
use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use dblaunch_lock::Remote;
use dblaunch_lock::backend::{Backend, Config};

use crate::*;

const PASSWORD: &str = "s3cret-pw";

/// The server every test of this file shares (a key per test keeps them
/// apart); stopped when the test process ends.
struct Server {
    port: u16,
    _dir: tempfile::TempDir,
    /// Stops the server when its standard input closes.
    reaper: Mutex<Option<Child>>,
}

static SERVER: OnceLock<Server> = OnceLock::new();

fn server() -> &'static Server {
    SERVER.get_or_init(start_server)
}

fn pg_bin(name: &str) -> PathBuf {
    let mut dirs: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect())
        .unwrap_or_default();
    let mut versions: Vec<PathBuf> = fs::read_dir("/usr/lib/postgresql")
        .map(|d| d.flatten().map(|e| e.path().join("bin")).collect())
        .unwrap_or_default();
    versions.sort();
    dirs.extend(versions.into_iter().rev());
    dirs.into_iter()
        .map(|d| d.join(name))
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!("PostgreSQL's {name} is not installed (Debian: apt-get install postgresql); .ci/run installs it")
        })
}

/// The server refuses to run as root: as root, run it as `nobody`.
fn as_server_user(program: &Path) -> Command {
    if nix::unistd::geteuid().is_root() {
        let mut c = Command::new("setpriv");
        c.args(["--reuid=65534", "--regid=65534", "--clear-groups"])
            .arg(program);
        c
    } else {
        Command::new(program)
    }
}

fn start_server() -> Server {
    let dir = tempfile::Builder::new()
        .prefix("dblaunch-pg")
        .tempdir()
        .unwrap();
    if nix::unistd::geteuid().is_root() {
        nix::unistd::chown(
            dir.path(),
            Some(nix::unistd::Uid::from_raw(65534)),
            Some(nix::unistd::Gid::from_raw(65534)),
        )
        .unwrap();
    }
    let pwfile = dir.path().join("pw");
    fs::write(&pwfile, PASSWORD).unwrap();
    std::os::unix::fs::chown(&pwfile, Some(65534), Some(65534)).ok();
    let data = dir.path().join("data");
    let out = as_server_user(&pg_bin("initdb"))
        .arg("-D")
        .arg(&data)
        .args([
            "-U",
            "dblaunch",
            "--auth-host=scram-sha-256",
            "--auth-local=trust",
            "-E",
            "UTF8",
        ])
        .arg(format!("--pwfile={}", pwfile.display()))
        .output()
        .expect("run initdb");
    assert!(out.status.success(), "initdb: {}", text(&out.stderr));
    // The partition test's host reaches the server over a veth pair.
    let mut hba = fs::OpenOptions::new()
        .append(true)
        .open(data.join("pg_hba.conf"))
        .unwrap();
    writeln!(hba, "host all all 10.0.0.0/8 scram-sha-256").unwrap();
    // TLS, with a certificate for the name `localhost` only (so that
    // verify-full to 127.0.0.1 must fail), signed by a CA of the test's.
    certificate_authority(dir.path(), "ca");
    openssl(
        dir.path(),
        "req -newkey rsa:2048 -nodes -subj /CN=localhost -keyout data/server.key -out server.csr",
    );
    fs::write(
        dir.path().join("leaf.ext"),
        "subjectAltName=DNS:localhost\nbasicConstraints=CA:FALSE\n",
    )
    .unwrap();
    openssl(
        dir.path(),
        "x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 2 -extfile leaf.ext -out data/server.crt",
    );
    for f in ["server.key", "server.crt"] {
        std::os::unix::fs::chown(data.join(f), Some(65534), Some(65534)).ok();
        fs::set_permissions(
            data.join(f),
            std::os::unix::fs::PermissionsExt::from_mode(0o600),
        )
        .unwrap();
    }
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let out = as_server_user(&pg_bin("pg_ctl"))
        .arg("-D")
        .arg(&data)
        .arg("-l")
        .arg(dir.path().join("server.log"))
        .arg("-o")
        .arg(format!(
            "-p {port} -k {} -c listen_addresses=* -c max_connections=200 -c fsync=off -c ssl=on",
            dir.path().display()
        ))
        .args(["-w", "start"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .output()
        .expect("run pg_ctl");
    assert!(
        out.status.success(),
        "pg_ctl start: {} {}",
        text(&out.stderr),
        fs::read_to_string(dir.path().join("server.log")).unwrap_or_default()
    );
    // Stop it, and remove its directory, when this test process ends,
    // however it ends: the reaper waits for the end of its standard input,
    // a pipe that only this process writes to (its end is closed on exec, so
    // no other child holds it), which closes when this process exits or, on
    // a normal exit, earlier, in `stop_server`. In a process group of its own,
    // so that a Ctrl-C to the test run does not kill it first.
    let reaper = as_server_user(Path::new("/bin/sh"))
        .args([
            "-c",
            &format!(
                "read -r _; {} -D {} -m immediate stop; rm -rf {}",
                pg_bin("pg_ctl").display(),
                data.display(),
                dir.path().display()
            ),
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .expect("start the server's reaper");
    // SAFETY: `stop_server` is an `extern "C" fn()` that cannot unwind.
    // Registered after the suite's check for leftover processes, it runs
    // before it.
    unsafe { libc::atexit(stop_server) };
    Server {
        port,
        _dir: dir,
        reaper: Mutex::new(Some(reaper)),
    }
}

/// At exit: stops the server (through its reaper) and waits until it has
/// stopped, so that it does not outlive the test process.
extern "C" fn stop_server() {
    let Some(server) = SERVER.get() else {
        return;
    };
    let reaper = server.reaper.lock().ok().and_then(|mut r| r.take());
    if let Some(mut reaper) = reaper {
        drop(reaper.stdin.take());
        let _ = reaper.wait();
    }
}

/// TLS: `require` encrypts without checking; `verify-ca` checks the chain;
/// `verify-full` the name too (the certificate is for `localhost`, not for
/// 127.0.0.1); a wrong CA fails. Each failure is exit 1 naming the server.
#[test]
fn tls_is_checked_as_libpq_checks_it() {
    let env = Env::new();
    let port = server().port;
    let ca = server()._dir.path().join("ca.crt");
    let other_ca = env.path("other.crt");
    certificate_authority(env.dir.path(), "other");
    let url = |host: &str, params: &str| {
        format!("postgres://dblaunch:{PASSWORD}@{host}:{port}/postgres?{params}")
    };
    let ca = ca.display();
    let other = other_ca.display();
    for (backend, ok, says) in [
        (url("127.0.0.1", "sslmode=require"), true, ""),
        (
            url("127.0.0.1", &format!("sslmode=verify-ca&sslrootcert={ca}")),
            true,
            "",
        ),
        (
            url(
                "localhost",
                &format!("sslmode=verify-full&sslrootcert={ca}"),
            ),
            true,
            "",
        ),
        (
            url(
                "127.0.0.1",
                &format!("sslmode=verify-full&sslrootcert={ca}"),
            ),
            false,
            "certificate",
        ),
        (
            url(
                "localhost",
                &format!("sslmode=verify-full&sslrootcert={other}"),
            ),
            false,
            "certificate",
        ),
    ] {
        let out = env
            .cmd(&["exec", "--write", "tls.db", "--", "true"])
            .env("DBLAUNCH_BACKEND", &backend)
            .output()
            .unwrap();
        let err = text(&out.stderr);
        if ok {
            assert_eq!(code(&out), 0, "{backend}: {err}");
        } else {
            assert_eq!(code(&out), 1, "{backend}: {err}");
            assert!(err.to_lowercase().contains(says), "{backend}: {err}");
            assert!(!err.contains(PASSWORD), "{err}");
        }
    }
    // The sessions were encrypted: the server says so while one holds.
    let go = env.path("go");
    let mut holder = env
        .cmd(&["exec", "--write", "tls.db", "--", "sh", "-c"])
        .arg(format!(
            "while [ ! -e {} ]; do sleep 0.05; done",
            go.display()
        ))
        .env("DBLAUNCH_BACKEND", url("127.0.0.1", "sslmode=require"))
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let b = backend(Duration::from_secs(10));
    let key = env.path("tls.db").display().to_string();
    wait_until("the holder to hold", || {
        b.entries(std::slice::from_ref(&key))
            .is_ok_and(|e| e.iter().any(|e| e.holding))
    });
    let psql_ssl = Command::new(pg_bin("psql"))
        .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-U", "dblaunch", "-At", "-c"])
        .arg("SELECT count(*) FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) WHERE s.ssl AND a.query LIKE '%dblaunch_holders%'")
        .arg("postgres")
        .env("PGPASSWORD", PASSWORD)
        .env("PGSSLMODE", "disable")
        .output()
        .unwrap();
    touch(&go);
    assert_eq!(wait_status(&mut holder).code(), Some(0));
    let n: i64 = text(&psql_ssl.stdout).trim().parse().unwrap_or(0);
    assert!(
        n >= 1,
        "no encrypted dblaunch session: {}",
        text(&psql_ssl.stderr)
    );
}

fn openssl(dir: &Path, args: &str) {
    let out = Command::new("openssl")
        .args(args.split(' '))
        .current_dir(dir)
        .output()
        .expect("run openssl");
    assert!(
        out.status.success(),
        "openssl {args}: {}",
        text(&out.stderr)
    );
}

/// `NAME.crt` and `NAME.key` in `dir`: a self-signed CA.
fn certificate_authority(dir: &Path, name: &str) {
    openssl(
        dir,
        &format!(
            "req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN={name} -keyout {name}.key -out {name}.crt"
        ),
    );
}

fn url(port: u16, password: &str, database: &str) -> String {
    format!("postgres://dblaunch:{password}@127.0.0.1:{port}/{database}?sslmode=disable")
}

/// A simulated host: its own directory, manifest and host name, and
/// perhaps a network namespace of its own.
struct Host {
    name: String,
    dir: PathBuf,
    netns: Option<String>,
}

impl Host {
    fn new(env: &Env, name: &str, key: &str, lease: &str) -> Host {
        Host::reaching(
            env,
            name,
            key,
            lease,
            &url(server().port, PASSWORD, "postgres"),
        )
    }

    fn reaching(env: &Env, name: &str, key: &str, lease: &str, url: &str) -> Host {
        let dir = env.path(name);
        fs::create_dir_all(&dir).unwrap();
        fs::write(
            dir.join("dblaunch.toml"),
            format!(
                "[backend]\nurl = \"{url}\"\nlease = \"{lease}\"\n\n[databases]\nletters = {{ path = \"letters.db\", key = \"{key}\" }}\n"
            ),
        )
        .unwrap();
        Host {
            name: name.to_owned(),
            dir,
            netns: None,
        }
    }

    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = match &self.netns {
            Some(ns) => {
                let mut c = Command::new("nsenter");
                c.arg(format!("--net=/run/netns/{ns}")).arg("--").arg(BIN);
                c
            }
            None => Command::new(BIN),
        };
        c.args(args)
            .current_dir(&self.dir)
            .env("DBLAUNCH_HOST", &self.name)
            .env_remove("RUST_LOG")
            .env_remove("DBLAUNCH_BACKEND")
            .env_remove("DBLAUNCH_LEASE")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        c
    }

    /// Runs to completion on this host and returns the output (as
    /// [`Env::run`] does for the local project).
    fn run(&self, args: &[&str]) -> Output {
        wait_output(
            self.cmd(args)
                .stdout(Stdio::piped())
                .spawn()
                .expect("spawn dblaunch"),
        )
    }

    /// `exec --MODE letters -- sh -c 'note the token; exec probe'`.
    fn exec(&self, env: &Env, mode: &str, label: &str, extra: &[&str]) -> Child {
        let probe = env.probe(label, extra).join(" ");
        let tokens = env.path("tokens");
        let script = format!(
            "echo {label} {mode} $DBLAUNCH_FENCING_TOKEN >> {}; exec {probe}",
            tokens.display()
        );
        self.cmd(&["exec", mode, "letters", "--", "sh", "-c", &script])
            .spawn()
            .expect("spawn dblaunch")
    }
}

fn backend(lease: Duration) -> std::sync::Arc<dyn Backend> {
    let config = Config {
        url: url(server().port, PASSWORD, "postgres"),
        lease,
    };
    Remote::connect(&config).expect("open the backend").backend
}

fn waiters(b: &dyn Backend, key: &str) -> usize {
    b.entries(&[key.to_owned()])
        .map(|e| e.iter().filter(|e| !e.holding && !e.lost).count())
        .unwrap_or(0)
}

/// (label, start, end) of each program that ran, and each one's mode.
fn runs(env: &Env) -> Vec<(String, u128, u128)> {
    intervals(&env.events())
}

fn assert_no_overlap(env: &Env, writers: &[String]) {
    let runs = runs(env);
    for (i, a) in runs.iter().enumerate() {
        for b in &runs[i + 1..] {
            let conflict = writers.contains(&a.0) || writers.contains(&b.0);
            let overlap = a.1 < b.2 && b.1 < a.2;
            assert!(
                !(conflict && overlap),
                "{} ({}..{}) and {} ({}..{}) overlapped",
                a.0,
                a.1,
                a.2,
                b.0,
                b.1,
                b.2
            );
        }
    }
}

fn tokens(env: &Env) -> Vec<(String, String, i64)> {
    fs::read_to_string(env.path("tokens"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            Some((
                f.first()?.to_string(),
                f.get(1)?.to_string(),
                f.get(2)?.parse().ok()?,
            ))
        })
        .collect()
}

/// Arrival order across hosts is the order in which requests reach the
/// backend's queue. Each contender here has a checkout of its own (its own
/// host-local lock), under one of three host names, so every one of them
/// queues in the backend directly and the order is the server's alone.
#[test]
fn three_hosts_of_eight_contenders_never_overlap_and_keep_arrival_order() {
    let env = Env::new();
    let key = "three-hosts";
    let b = backend(Duration::from_secs(10));
    // A first holder keeps everyone queued until all have arrived.
    let go = env.path("go");
    let gate_host = Host::new(&env, "gatehost", key, "10s");
    let mut gate = gate_host.exec(&env, "--write", "gate", &["--until", go.to_str().unwrap()]);
    env.wait_event("gate", |e| e.label == "gate" && e.what == "start");
    let mut children = Vec::new();
    let mut order = Vec::new();
    let mut writers = vec!["gate".to_owned()];
    for i in 0..24 {
        let mut host = Host::new(&env, &format!("checkout{i}"), key, "10s");
        host.name = format!("host{}", i % 3);
        let write = i % 3 != 1;
        let label = format!("{}-{i}", host.name);
        if write {
            writers.push(label.clone());
        }
        let mode = if write { "--write" } else { "--read" };
        children.push(host.exec(&env, mode, &label, &["--hold", "20ms"]));
        wait_until(&format!("{label} to queue in the backend"), || {
            waiters(&*b, key) == i + 1
        });
        order.push(label);
    }
    touch(&go);
    assert_eq!(wait_status(&mut gate).code(), Some(0));
    for mut c in children {
        let status = wait_status(&mut c);
        assert_eq!(status.code(), Some(0), "{}", stderr_of(&mut c));
    }
    let runs = runs(&env);
    assert_eq!(runs.len(), 25, "every job ran once: {runs:?}");
    assert_no_overlap(&env, &writers);
    // Whoever conflicts with an earlier arrival starts after it has ended.
    let at = |label: &str| runs.iter().find(|r| r.0 == label).unwrap();
    for (i, a) in order.iter().enumerate() {
        for later in &order[i + 1..] {
            if writers.contains(a) || writers.contains(later) {
                assert!(
                    at(a).2 <= at(later).1,
                    "{later} started before {a}, which arrived first, had ended"
                );
            }
        }
    }
    assert_tokens_increase(&env, 25);
    // Hand-off through the server: from a writer's end to the start of the
    // next in arrival order (printed, for the record; not asserted).
    let mut gaps: Vec<u128> = order
        .windows(2)
        .filter(|w| writers.contains(&w[0]))
        .map(|w| at(&w[1]).1.saturating_sub(at(&w[0]).2))
        .collect();
    gaps.sort_unstable();
    if let Some(median) = gaps.get(gaps.len() / 2) {
        eprintln!(
            "hand-off between hosts through the server: median {:.1} ms over {} hand-offs",
            *median as f64 / 1e6,
            gaps.len()
        );
    }
}

/// Eight contenders on each of three hosts, those of a host sharing its
/// checkout: they queue on their host first, then in the backend.
#[test]
fn three_hosts_of_eight_contenders_sharing_a_checkout_each_never_overlap() {
    let env = Env::new();
    let key = "three-hosts-shared";
    let hosts: Vec<Host> = (0..3)
        .map(|h| Host::new(&env, &format!("host{h}"), key, "10s"))
        .collect();
    let mut children = Vec::new();
    let mut writers = Vec::new();
    for i in 0..24 {
        let host = &hosts[i % 3];
        let write = i % 3 != 1;
        let label = format!("{}-{i}", host.name);
        if write {
            writers.push(label.clone());
        }
        let mode = if write { "--write" } else { "--read" };
        children.push(host.exec(&env, mode, &label, &["--hold", "10ms"]));
    }
    for mut c in children {
        let status = wait_status(&mut c);
        assert_eq!(status.code(), Some(0), "{}", stderr_of(&mut c));
    }
    let runs = runs(&env);
    assert_eq!(runs.len(), 24, "every job ran once: {runs:?}");
    assert_no_overlap(&env, &writers);
    assert_tokens_increase(&env, 24);
}

/// Fencing tokens strictly increase over the grants of the key: a write's
/// token is above every token granted before it.
fn assert_tokens_increase(env: &Env, jobs: usize) {
    let tokens = tokens(env);
    assert_eq!(tokens.len(), jobs, "{tokens:?}");
    let writes: Vec<i64> = tokens
        .iter()
        .filter(|(_, m, _)| m == "--write")
        .map(|(_, _, t)| *t)
        .collect();
    assert!(
        writes.windows(2).all(|w| w[0] < w[1]),
        "write tokens out of order: {writes:?}"
    );
    let mut all: Vec<i64> = tokens.iter().map(|t| t.2).collect();
    all.sort();
    all.dedup();
    assert_eq!(all.len(), jobs, "a token was given twice: {tokens:?}");
}

/// Writer `a` on host alpha holding `key` until the file `go` exists, and writer `b` on
/// host beta queued behind it in the backend: the two dblaunch processes
/// and the pid of a's program.
fn holder_and_waiter(env: &Env, key: &str, lease: Duration) -> (Child, i32, Child) {
    let written = humantime::format_duration(lease).to_string();
    let a = Host::new(env, "alpha", key, &written);
    let bhost = Host::new(env, "beta", key, &written);
    let go = env.path("go");
    hold_and_queue(
        env,
        (&a, &bhost),
        key,
        lease,
        &["--until", go.to_str().unwrap()],
    )
}

/// Writer `a` on host `hosts.0` (its probe given `holding`), and writer `b`
/// on `hosts.1` queued behind it in the backend.
fn hold_and_queue(
    env: &Env,
    hosts: (&Host, &Host),
    key: &str,
    lease: Duration,
    holding: &[&str],
) -> (Child, i32, Child) {
    let b = backend(lease);
    let pidfile = env.path("a.pid");
    let mut probe = holding.to_vec();
    probe.extend(["--pidfile", pidfile.to_str().unwrap()]);
    let first = hosts.0.exec(env, "--write", "a", &probe);
    env.wait_event("a to start", |e| e.label == "a" && e.what == "start");
    let program = pids_in(&pidfile)[0];
    let second = hosts.1.exec(env, "--write", "b", &[]);
    wait_until("b to queue", || waiters(&*b, key) == 1);
    (first, program, second)
}

#[test]
fn a_killed_holder_s_program_dies_and_the_next_host_waits_out_the_lease() {
    let env = Env::new();
    let lease = Duration::from_secs(2);
    let (mut first, program, mut second) = holder_and_waiter(&env, "killed-holder", lease);
    kill(first.id() as i32, libc::SIGKILL);
    let killed = monotonic_ns();
    let _ = first.wait();
    wait_until("a's program to die with its dblaunch", || !alive(program));
    let dead = monotonic_ns();
    let started = env.time_of("b", "start");
    assert!(started > dead, "b started before a's program was gone");
    let after = Duration::from_nanos((started - killed) as u64);
    eprintln!(
        "crash: a's program dead {:?} after the kill, b started {after:?} after it",
        Duration::from_nanos((dead - killed) as u64)
    );
    assert!(
        after >= lease,
        "b started {after:?} after the crash, before a's lease could have run out"
    );
    assert!(
        after <= lease + Duration::from_secs(1),
        "b started {after:?} after the crash: more than lease + 1 s"
    );
    assert_eq!(wait_status(&mut second).code(), Some(0));
    let err = stderr_of(&mut second);
    assert!(err.contains("waiting out its lease"), "{err}");
}

#[test]
fn a_holder_paused_past_its_lease_never_overlaps_the_next() {
    let env = Env::new();
    let lease = Duration::from_secs(1);
    let (mut first, program, mut second) = holder_and_waiter(&env, "paused-holder", lease);
    kill(first.id() as i32, libc::SIGSTOP);
    // Paused for three leases: its program runs on, unsupervised.
    let until = Instant::now() + Duration::from_secs(3);
    while Instant::now() < until {
        assert!(
            !env.events()
                .iter()
                .any(|e| e.label == "b" && e.what == "start"),
            "b started while a's program still ran"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    kill(first.id() as i32, libc::SIGCONT);
    // On resume, whichever of a's threads runs first decides: the watchdog
    // sees that the lease has passed and kills the program, or a renewal on
    // the session succeeds (the server never ended it: a stopped process's
    // kernel still answers keepalives, so the lock stayed held) and a holds
    // on, safely. Either way b must wait until a's program is gone; let it
    // end now.
    touch(&env.path("go"));
    let b_start = env.time_of("b", "start");
    let events = env.events();
    assert!(!alive(program), "b started beside a's program");
    if let Some(end) = events.iter().find(|e| e.label == "a" && e.what == "end") {
        assert!(end.ns <= b_start, "b started before a's program ended");
    }
    let status = wait_status(&mut first);
    let err = stderr_of(&mut first);
    assert!(
        status.code() == Some(0) || err.contains("lease could not be renewed"),
        "a neither ended normally nor fenced itself: {status:?} {err}"
    );
    assert_eq!(wait_status(&mut second).code(), Some(0));
}

#[test]
fn no_wait_names_the_remote_holder_and_its_host() {
    let env = Env::new();
    let key = "no-wait";
    let a = Host::new(&env, "alpha", key, "10s");
    let bhost = Host::new(&env, "beta", key, "10s");
    let go = env.path("go");
    let mut first = a.exec(&env, "--write", "a", &["--until", go.to_str().unwrap()]);
    env.wait_event("a to start", |e| e.label == "a" && e.what == "start");
    let out = bhost.run(&["exec", "--no-wait", "--write", "letters", "--", "true"]);
    assert_eq!(code(&out), 75, "{}", text(&out.stderr));
    let err = text(&out.stderr);
    assert!(err.contains("on host alpha holds it"), "{err}");
    // Long enough to reach the server's queue on a loaded machine (a wait
    // that runs out before that cannot name the holder).
    let out = bhost.run(&["exec", "--wait", "2s", "--write", "letters", "--", "true"]);
    assert_eq!(code(&out), 75, "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("on host alpha"),
        "{}",
        text(&out.stderr)
    );
    // status on beta shows alpha's holder, with its host and token.
    let out = bhost.run(&["status", "--json"]);
    assert_eq!(code(&out), 0, "{}", text(&out.stderr));
    let status: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let holder = &status["backend"]["keys"][0]["holders"][0];
    assert_eq!(holder["host"], "alpha", "{status}");
    assert_eq!(holder["mode"], "write", "{status}");
    assert!(holder["token"].as_i64().is_some(), "{status}");
    touch(&go);
    assert_eq!(wait_status(&mut first).code(), Some(0));
}

/// With a backend, a wait that runs out behind a holder on the same host
/// names that holder (it waited in the host's own queue, before the
/// backend was ever asked), not the backend.
#[test]
fn a_wait_behind_a_holder_of_the_same_host_names_it() {
    let env = Env::new();
    let a = Host::new(&env, "alpha", "same-host", "10s");
    let go = env.path("go");
    let mut first = a.exec(&env, "--write", "a", &["--until", go.to_str().unwrap()]);
    env.wait_event("a to start", |e| e.label == "a" && e.what == "start");
    let out = a.run(&["exec", "--wait", "1s", "--read", "letters", "--", "true"]);
    let err = text(&out.stderr);
    assert_eq!(code(&out), 75, "{err}");
    assert!(err.contains("holds it for write"), "{err}");
    assert!(!err.contains("had not yet said"), "{err}");
    touch(&go);
    assert_eq!(wait_status(&mut first).code(), Some(0));
}

#[test]
fn a_backend_that_cannot_be_used_is_exit_1_with_nothing_started() {
    let env = Env::new();
    let port = server().port;
    let closed = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let marker = env.path("started");
    for (backend, says) in [
        (
            url(closed, PASSWORD, "postgres"),
            "cannot reach the lock backend",
        ),
        (
            url(port, "wrong-password", "postgres"),
            "password authentication failed",
        ),
        (url(port, PASSWORD, "no_such_db"), "does not exist"),
    ] {
        let out = env
            .cmd(&[
                "exec",
                "--write",
                "app.db",
                "--",
                "touch",
                marker.to_str().unwrap(),
            ])
            .env("DBLAUNCH_BACKEND", &backend)
            .output()
            .unwrap();
        let err = text(&out.stderr);
        assert_eq!(code(&out), 1, "{backend}: {err}");
        assert!(err.contains(says), "{err}");
        assert!(err.contains("127.0.0.1:"), "names the server: {err}");
        assert!(
            !err.contains(PASSWORD) && !err.contains("wrong-password"),
            "{err}"
        );
        assert!(!marker.exists(), "the command ran");
        assert_eq!(env.tickets("app.db"), 0, "a local lock was left");
    }
}

/// A network namespace joined to this one by a veth pair, whose traffic
/// can be stalled in both directions: packets silently held in a `tc htb`
/// class of 8 bit/s behind a large pfifo, which TCP cannot tell from a
/// cut cable (a dropping qdisc would not do: TCP treats a local drop as
/// congestion, and a userspace proxy that stops forwarding leaves the
/// server's kernel answering keepalives).
struct Netns {
    name: String,
    outer: String,
    inner: String,
    /// The server's address as seen from inside.
    server: String,
}

fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().expect("run ip");
    assert!(out.status.success(), "ip {args:?}: {}", text(&out.stderr));
}

fn stall(netns: Option<&str>, dev: &str) {
    let mut tc: Vec<String> = Vec::new();
    if let Some(ns) = netns {
        tc.extend(["-n".into(), ns.into()]);
    }
    for rule in [
        format!("qdisc add dev {dev} root handle 1: htb default 1"),
        format!("class add dev {dev} parent 1: classid 1:1 htb rate 8bit ceil 8bit"),
        format!("qdisc add dev {dev} parent 1:1 handle 10: pfifo limit 100000"),
    ] {
        let mut args = tc.clone();
        args.extend(rule.split(' ').map(str::to_owned));
        let out = Command::new("tc").args(&args).output().expect("run tc");
        assert!(out.status.success(), "tc {args:?}: {}", text(&out.stderr));
    }
}

impl Netns {
    fn new() -> Netns {
        let id = std::process::id();
        let name = format!("dblaunch-{id}");
        let (outer, inner) = (
            format!("dbl{}o", id % 100_000),
            format!("dbl{}i", id % 100_000),
        );
        let net = format!("10.{}.{}", 100 + id % 100, (id / 100) % 250);
        ip(&["netns", "add", &name]);
        let ns = Netns {
            server: format!("{net}.1"),
            name,
            outer,
            inner,
        };
        ip(&[
            "link", "add", &ns.outer, "type", "veth", "peer", "name", &ns.inner,
        ]);
        ip(&["link", "set", &ns.inner, "netns", &ns.name]);
        ip(&["addr", "add", &format!("{net}.1/30"), "dev", &ns.outer]);
        ip(&["link", "set", &ns.outer, "up"]);
        ip(&[
            "-n",
            &ns.name,
            "addr",
            "add",
            &format!("{net}.2/30"),
            "dev",
            &ns.inner,
        ]);
        ip(&["-n", &ns.name, "link", "set", &ns.inner, "up"]);
        ip(&["-n", &ns.name, "link", "set", "lo", "up"]);
        ns
    }

    /// Both directions held from now on.
    fn cut(&self) {
        stall(None, &self.outer);
        stall(Some(&self.name), &self.inner);
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        // Deleting the namespace deletes the veth pair with it.
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .output();
    }
}

/// The holder's host loses the server (its packets silently held both
/// ways): its program is killed before its lease can have run out, and the
/// next host starts only after that, within about two leases.
#[test]
fn a_partitioned_holder_is_fenced_before_its_lease_runs_out() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("skipped: a network namespace takes root (CI runs as root)");
        return;
    }
    let env = Env::new();
    let key = "partitioned-holder";
    let lease = Duration::from_secs(2);
    let netns = Netns::new();
    let inside = format!(
        "postgres://dblaunch:{PASSWORD}@{}:{}/postgres?sslmode=disable",
        netns.server,
        server().port
    );
    let mut a = Host::reaching(&env, "alpha", key, "2s", &inside);
    a.netns = Some(netns.name.clone());
    let bhost = Host::new(&env, "beta", key, "2s");
    let (mut first, program, mut second) =
        hold_and_queue(&env, (&a, &bhost), key, lease, &["--hold", "1h"]);
    netns.cut();
    let cut = monotonic_ns();
    let start = Instant::now();
    while alive(program) {
        assert!(start.elapsed() < PATIENCE, "a's program was never killed");
        std::thread::sleep(Duration::from_millis(2));
    }
    let dead = monotonic_ns();
    let started = env.time_of("b", "start");
    let killed_after = Duration::from_nanos((dead - cut) as u64);
    let next_after = Duration::from_nanos((started - cut) as u64);
    eprintln!(
        "partition: a's program dead {killed_after:?} after the cut, b started {next_after:?} after it"
    );
    assert!(started > dead, "b started before a's program was gone");
    assert!(
        killed_after < lease,
        "a's program ran {killed_after:?} into the partition, past its lease"
    );
    assert!(
        next_after <= 2 * lease + Duration::from_secs(1),
        "b started {next_after:?} after the cut: more than about two leases"
    );
    assert_eq!(wait_status(&mut second).code(), Some(0));
    let status = wait_status(&mut first);
    let err = stderr_of(&mut first);
    assert_ne!(status.code(), Some(0), "{err}");
    assert!(err.contains("lease could not be renewed"), "{err}");
}

fn monotonic_ns() -> u128 {
    let t = nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC).unwrap();
    t.tv_sec() as u128 * 1_000_000_000 + t.tv_nsec() as u128
}

/// With a backend, every host's journal lines go to it too, so `history` on
/// one host shows the others' holds and whom its own programs waited for.
#[test]
fn history_covers_every_host_through_the_backend() {
    let env = Env::new();
    let key = "history-hosts";
    let a = Host::new(&env, "alpha", key, "10s");
    let bhost = Host::new(&env, "beta", key, "10s");
    let b = backend(Duration::from_secs(10));
    let go = env.path("go");
    let mut first = a.exec(&env, "--write", "a", &["--until", go.to_str().unwrap()]);
    env.wait_event("a to start", |e| e.label == "a" && e.what == "start");
    let mut second = bhost.exec(&env, "--write", "b", &["--hold", "200ms"]);
    wait_until("b to queue", || waiters(&*b, key) == 1);
    touch(&go);
    assert_eq!(wait_status(&mut first).code(), Some(0));
    assert_eq!(wait_status(&mut second).code(), Some(0));
    let out = bhost.run(&["history", "--json"]);
    assert_eq!(code(&out), 0, "{}", text(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let db = &v["databases"][0];
    let hosts: Vec<&str> = db["holds"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["host"].as_str().unwrap())
        .collect();
    assert_eq!(hosts, ["alpha", "beta"], "{db}");
    let wait = &db["waits"][0];
    assert_eq!(wait["host"], "beta", "{db}");
    assert_eq!(wait["behind"]["host"], "alpha", "{db}");
    assert_eq!(wait["end"], "granted", "{db}");
    // b's hold as history has it, against its own log.
    let runs = runs(&env);
    let (_, start, end) = runs.iter().find(|r| r.0 == "b").unwrap();
    let own = (end - start) as f64 / 1e9;
    let held = db["holds"][1]["held"].as_f64().unwrap();
    assert!((held - own).abs() < 0.15, "held {held}s, ran {own}s");
    assert_eq!(db["summary"]["conflicts"], 1, "{db}");
}

/// `yields = true` across hosts: a reader on alpha gives way to a writer
/// that queues on beta, and comes back after it.
#[test]
fn a_yielding_reader_on_one_host_lets_a_writer_of_another_in() {
    let env = Env::new();
    let key = "yields-across";
    let a = Host::new(&env, "alpha", key, "10s");
    let manifest = a.dir.join("dblaunch.toml");
    let mut toml = fs::read_to_string(&manifest).unwrap();
    toml += &format!(
        "\n[settings]\nstop_timeout = \"2s\"\n\n{}",
        env.probe_program(
            "web",
            ", \"--hold\", \"1h\"",
            "reads = [\"letters\"]\nyields = true"
        )
    );
    fs::write(&manifest, toml).unwrap();
    let bhost = Host::new(&env, "beta", key, "10s");
    let mut run = a.cmd(&["run", "web"]).spawn().unwrap();
    env.wait_event("web", |e| e.label == "web" && e.what == "start");
    // ps on beta shows alpha's reader, with its host.
    let out = bhost.run(&["ps"]);
    assert_eq!(code(&out), 0, "{}", text(&out.stderr));
    let table = text(&out.stdout);
    assert!(table.contains("on other hosts"), "{table}");
    assert!(
        table.contains("web") && table.contains("on alpha") && table.contains("holds read"),
        "{table}"
    );
    let out = bhost.run(&["ps", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["other_hosts"][0]["host"], "alpha", "{v}");
    assert_eq!(v["other_hosts"][0]["program"], "web", "{v}");
    let mut writer = bhost.exec(&env, "--write", "w", &["--hold", "100ms"]);
    assert_eq!(
        wait_status(&mut writer).code(),
        Some(0),
        "{}",
        stderr_of(&mut writer)
    );
    let events = env.events();
    let at = |label: &str, what: &str| {
        events
            .iter()
            .filter(|e| e.label == label && e.what == what)
            .map(|e| e.ns)
            .collect::<Vec<_>>()
    };
    let (w_start, w_end) = (at("w", "start")[0], at("w", "end")[0]);
    assert!(
        at("web", "got SIGTERM").len() == 1,
        "web was asked to stop: {events:?}"
    );
    assert!(
        at("web", "end")[0] < w_start,
        "the writer started beside the reader"
    );
    env.wait_event("web to come back", |e| {
        e.label == "web" && e.what == "start" && e.ns > w_end
    });
    let out = a.run(&["stop"]);
    assert_eq!(code(&out), 0, "{}", text(&out.stderr));
    assert_eq!(wait_status(&mut run).code(), Some(0));
    let err = stderr_of(&mut run);
    assert!(
        err.contains("yielding") && err.contains("on host beta"),
        "{err}"
    );
}

/// A `--wait` that runs out while the backend has not answered (here: a
/// server that accepts the connection and never speaks) says so, naming
/// the server: exit 75, as for any wait that runs out.
#[test]
fn a_wait_that_runs_out_before_the_backend_answers_names_the_server() {
    let env = Env::new();
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = silent.local_addr().unwrap().port();
    let marker = env.path("ran");
    let out = env
        .cmd(&[
            "exec", "--wait", "500ms", "--write", "app.db", "--", "touch",
        ])
        .arg(&marker)
        .env("DBLAUNCH_BACKEND", url(port, PASSWORD, "postgres"))
        .output()
        .unwrap();
    let err = text(&out.stderr);
    assert_eq!(code(&out), 75, "{err}");
    assert!(
        err.contains(&format!(
            "the lock backend postgres://dblaunch@127.0.0.1:{port}"
        )) && err.contains("had not yet said who holds it"),
        "{err}"
    );
    assert!(!err.contains(PASSWORD), "{err}");
    assert!(!marker.exists(), "the command ran");
    assert_eq!(env.tickets("app.db"), 0, "a local lock was left");
    drop(silent);
}

/// `[backend]` may give only the lease, the URL (and the password in it)
/// kept out of the committed file in DBLAUNCH_BACKEND: `run`, `exec` and
/// `status` lock and look through that server, under the manifest's lease.
/// Without a URL anywhere, every command that reads the manifest refuses
/// it, `check` included: exit 2, at the line of `[backend]`.
#[test]
fn a_lease_only_backend_takes_its_url_from_the_environment() {
    let env = Env::new();
    let key = "lease-only";
    let go = env.path("go");
    let hosts: Vec<Host> = ["alpha", "beta"]
        .into_iter()
        .map(|name| {
            let dir = env.path(name);
            fs::create_dir_all(&dir).unwrap();
            fs::write(
                dir.join("dblaunch.toml"),
                format!(
                    "[backend]\nlease = \"3s\"\n\n[databases]\nletters = {{ path = \"letters.db\", key = \"{key}\" }}\n\n{}",
                    env.probe_program(
                        "held",
                        &format!(", \"--until\", \"{}\"", go.display()),
                        "writes = [\"letters\"]"
                    )
                ),
            )
            .unwrap();
            Host {
                name: name.to_owned(),
                dir,
                netns: None,
            }
        })
        .collect();
    let (alpha, beta) = (&hosts[0], &hosts[1]);
    let manifest = alpha.dir.join("dblaunch.toml");

    // No URL anywhere: a manifest error, whatever the command.
    let marker = env.path("ran");
    let commands: [&[&str]; 5] = [
        &["check"],
        &["run", "held"],
        &[
            "exec",
            "--write",
            "letters",
            "--",
            "touch",
            marker.to_str().unwrap(),
        ],
        &["status"],
        &["history"],
    ];
    for args in commands {
        let out = alpha.run(args);
        let err = text(&out.stderr);
        assert_eq!(code(&out), 2, "{args:?}: {err}");
        assert!(
            err.contains("[backend] has no url")
                && err.contains("DBLAUNCH_BACKEND")
                && err.contains(&format!("{}:1:2", manifest.display())),
            "{args:?}: {err}"
        );
    }
    assert!(!marker.exists(), "the command ran");
    assert!(!env.path("events.log").exists(), "the program ran");

    // The URL from the environment.
    let with_url = |mut c: Command| {
        c.env("DBLAUNCH_BACKEND", url(server().port, PASSWORD, "postgres"));
        c
    };
    let output = |c: Command| wait_output(with_url(c).stdout(Stdio::piped()).spawn().unwrap());
    let out = output(alpha.cmd(&["check"]));
    assert_eq!(code(&out), 0, "{}", text(&out.stderr));
    let b = backend(Duration::from_secs(10));
    let mut run = with_url(alpha.cmd(&["run", "held"])).spawn().unwrap();
    env.wait_event("held to start", |e| e.label == "held" && e.what == "start");
    // The lock went through the server: beta's status reads alpha's holder
    // there, and so does this test.
    let out = output(beta.cmd(&["status", "--json"]));
    assert_eq!(code(&out), 0, "{}", text(&out.stderr));
    let status: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let shown = status["backend"]["server"].as_str().unwrap_or_default();
    assert!(
        shown.contains(&format!("127.0.0.1:{}", server().port)) && !shown.contains(PASSWORD),
        "{status}"
    );
    let holder = &status["backend"]["keys"][0]["holders"][0];
    assert_eq!(holder["program"], "held", "{status}");
    assert_eq!(holder["host"], "alpha", "{status}");
    let first_token = holder["token"].as_i64().expect("a fencing token");
    assert!(
        b.entries(&[key.to_owned()])
            .unwrap()
            .iter()
            .any(|e| e.holding && e.program == "held" && e.token == Some(first_token)),
        "the server does not know the holder"
    );
    // An exec on beta queues behind it in the server, and its program gets
    // the next fencing token.
    let next = with_url(beta.cmd(&[
        "exec",
        "--write",
        "letters",
        "--",
        "sh",
        "-c",
        "echo $DBLAUNCH_FENCING_TOKEN",
    ]))
    .stdout(Stdio::piped())
    .spawn()
    .unwrap();
    wait_until("beta's exec to queue in the server", || {
        waiters(&*b, key) == 1
    });
    touch(&go);
    assert_eq!(
        wait_status(&mut run).code(),
        Some(0),
        "{}",
        stderr_of(&mut run)
    );
    let out = wait_output(next);
    assert_eq!(code(&out), 0, "{}", text(&out.stderr));
    let token: i64 = text(&out.stdout).trim().parse().expect("a fencing token");
    assert!(token > first_token, "{token} after {first_token}");

    // The lease is the manifest's: a holder that crashes is waited out for
    // 3s, not for the default 10s.
    let go2 = env.path("go2");
    let mut crashing = with_url(alpha.cmd(&with_cmd(
        &["exec", "--write", "letters"],
        &env.probe("crashing", &["--until", go2.to_str().unwrap()]),
    )))
    .spawn()
    .unwrap();
    env.wait_event("crashing to start", |e| {
        e.label == "crashing" && e.what == "start"
    });
    let mut waiter = with_url(beta.cmd(&["run", "held"])).spawn().unwrap();
    wait_until("beta's run to queue in the server", || {
        waiters(&*b, key) == 1
    });
    kill(crashing.id() as i32, libc::SIGKILL);
    let _ = crashing.wait();
    assert_eq!(wait_status(&mut waiter).code(), Some(0));
    let err = stderr_of(&mut waiter);
    assert!(err.contains("waiting out its lease of 3s"), "{err}");
}
