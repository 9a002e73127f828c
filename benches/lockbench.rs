//! dblaunch against flock(1), side by side in one run, reported as ratios.
//!
//!     cargo bench --bench lockbench            # full run (a few minutes)
//!     cargo bench --bench lockbench -- --quick # smoke run (CI)
//!     cargo bench --bench lockbench -- --run-only # `run` of 30 vs a shell, 40 rounds
//!
//! Measures:
//! 1. one launch: wall time (median) and CPU time (user + sys, mean) of
//!    `exec --write db -- true` vs `flock -x db.lock true` (and bare `true`
//!    as the floor), interleaved, and page faults (mean); and CPU and wall
//!    time per launch in blocks of 100 launches of one tool, 20 rounds,
//!    the tools taking turns to go first (ratio: median of the rounds');
//! 2. hand-off latency: 8 processes contend for one database; the time from
//!    one holder's last instruction to the next holder's first, from a
//!    monotonic clock logged by the programs themselves;
//! 3. throughput with 8 and 64 contenders (jobs per second, and CPU per
//!    job), and with 64 of which 30% read: 8 jobs of 1 ms per contender.
//!    Measures 2 and 3 run in 5 rounds, the two tools side by side and
//!    taking turns to go first; their ratios are the medians of the rounds'
//!    ratios (see `paired`);
//! 4. scaling: jobs/s and CPU per job (the tool plus its command, from
//!    getrusage of the reaped children) with 1, 8, 64 and 256 contenders:
//!    whether the cost of a launch grows with the queue;
//! 5. the cost of a queued waiter: CPU time and context switches (wake-ups)
//!    of a process queued behind a holder for 1.5 s;
//! 6. writer starvation: how long a writer waits behind a continuous stream
//!    of overlapping readers.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const DBLAUNCH: &str = env!("CARGO_BIN_EXE_dblaunch");

struct Config {
    launches: usize,
    /// Rounds of each contention measure, the two tools alternated (see
    /// [`paired`]).
    rounds: usize,
    /// Rounds of blocks of single launches (see [`launch_blocks`]).
    block_rounds: usize,
    handoff_jobs: usize,
    idle: Duration,
    starvation_readers: usize,
}

#[derive(Clone, Copy, PartialEq)]
enum Tool {
    Flock,
    Dblaunch,
}

impl Tool {
    fn name(self) -> &'static str {
        match self {
            Tool::Flock => "flock(1)",
            Tool::Dblaunch => "dblaunch",
        }
    }

    /// The command that runs `argv` under this tool's lock on `dir`'s db.
    fn command(self, dir: &Path, write: bool, argv: &[&str]) -> Command {
        let mut c = match self {
            Tool::Flock => {
                let mut c = Command::new("flock");
                c.arg(if write { "-x" } else { "-s" })
                    .arg(dir.join("db.lock"));
                c
            }
            Tool::Dblaunch => {
                let mut c = Command::new(DBLAUNCH);
                c.args(["-q", "exec", if write { "--write" } else { "--read" }])
                    .arg(dir.join("app.db"))
                    .arg("--");
                c
            }
        };
        c.args(argv)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        c
    }
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    if cfg!(debug_assertions) {
        // `cargo test --bench lockbench -- --quick`, as CI runs it: the
        // benchmark works end to end, but dblaunch is the unoptimised build.
        println!(
            "(an unoptimised build: the figures below say that the benchmark runs, not how fast dblaunch is; `cargo bench --bench lockbench` measures)\n"
        );
    }
    if std::env::args().any(|a| a == "--run-only") {
        // The one measure that compares whole runs (about 0.1 s each): more
        // rounds than the full benchmark gives it, and nothing else.
        let cpu_at_start = CpuTimes::now();
        let in_run = run_handoff(30, 40);
        in_run.print_rows();
        print_steal(cpu_at_start);
        return;
    }
    let cfg = if quick {
        Config {
            launches: 30,
            rounds: 1,
            block_rounds: 2,
            handoff_jobs: 5,
            idle: Duration::from_millis(500),
            starvation_readers: 10,
        }
    } else {
        Config {
            launches: 300,
            rounds: 5,
            block_rounds: 20,
            handoff_jobs: 40,
            idle: Duration::from_millis(1500),
            starvation_readers: 40,
        }
    };
    for tool in ["flock", "true"] {
        if Command::new(tool).arg("--version").output().is_err() && tool == "flock" {
            eprintln!("lockbench: flock(1) is not installed (util-linux); nothing to compare with");
            std::process::exit(1);
        }
    }
    println!(
        "lockbench: dblaunch vs flock(1), {} mode\n",
        if quick { "quick" } else { "full" }
    );

    let cpu_at_start = CpuTimes::now();
    let launch = launch_overhead(&cfg);
    let blocks = launch_blocks(&cfg);
    let handoff = handoff_latency(&cfg, 8);
    // As the issue that set the targets measured them: 8 jobs of 1 ms per
    // contender. (The scaling table below runs jobs of 0 ms: CPU-bound.)
    let jobs = if quick { 2 } else { 8 };
    let t8 = throughput(cfg.rounds, 8, jobs);
    let t64 = throughput(cfg.rounds, 64, jobs);
    let t64r = throughput_mixed(cfg.rounds, 64, jobs, 30);
    let scale = scaling(if quick {
        &[(1, 20), (8, 4), (64, 1)]
    } else {
        &[(1, 200), (8, 32), (64, 4), (256, 1)]
    });
    let idle = idle_cost(&cfg);
    let in_run = run_handoff(if quick { 8 } else { 30 }, if quick { 3 } else { 10 });
    let starve = starvation(&cfg);

    println!("\n| measure | flock(1) | dblaunch | ratio dblaunch/flock | target |");
    println!("| --- | --- | --- | --- | --- |");
    println!(
        "| one launch of `LOCK true`, median wall time | {} | {} | {:.2}x | <= 1.0x |",
        ms(launch.wall.0),
        ms(launch.wall.1),
        ratio(launch.wall.1, launch.wall.0)
    );
    println!(
        "| one launch of `LOCK true`, CPU time (user + sys, `true` included) | {} | {} | {:.2}x | <= 1.0x |",
        ms(launch.cpu.0),
        ms(launch.cpu.1),
        ratio(launch.cpu.1, launch.cpu.0)
    );
    println!(
        "| one launch in blocks of {} (rounds, tools alternating), CPU time (user + sys, `true` included) | {} | {} | {:.2}x | <= 1.0x |",
        LAUNCH_BLOCK,
        ms(blocks.cpu.tools.0),
        ms(blocks.cpu.tools.1),
        blocks.cpu.ratio
    );
    println!(
        "| same, wall time | {} | {} | {:.2}x | <= 1.0x |",
        ms(blocks.wall.tools.0),
        ms(blocks.wall.tools.1),
        blocks.wall.ratio
    );
    println!(
        "| one launch of `LOCK true`, page faults (`true` included) | {:.0} | {:.0} | {:.2}x | |",
        launch.faults.0,
        launch.faults.1,
        launch.faults.1 / launch.faults.0
    );
    println!(
        "| hand-off latency, median, 8 contenders | {} | {} | {:.2}x | <= 1.0x |",
        ms(handoff.tools.0),
        ms(handoff.tools.1),
        handoff.ratio
    );
    t8.print_rows("8 contenders", "");
    t64.print_rows("64 contenders", ">= 1.0x");
    t64r.print_rows("64 contenders, 30% readers", ">= 0.9x");
    println!(
        "| queued waiter: CPU time / wake-ups in {} | {} / {} | {} / {} | | 0 / 0 |",
        humantime::format_duration(cfg.idle),
        ms(idle.0.0),
        idle.0.1,
        ms(idle.1.0),
        idle.1.1
    );
    in_run.print_rows();
    println!(
        "| writer wait behind a stream of overlapping readers | {} | {} | {:.2}x | no starvation |",
        ms(starve.0),
        ms(starve.1),
        ratio(starve.1, starve.0)
    );

    println!(
        "\n| contenders | flock(1) jobs/s | dblaunch jobs/s | ratio | flock(1) CPU per job | dblaunch CPU per job | ratio |"
    );
    println!("| --- | --- | --- | --- | --- | --- | --- |");
    for (n, [f, d]) in &scale {
        println!(
            "| {n} | {:.0} | {:.0} | {:.2}x | {} | {} | {:.2}x |",
            f.0,
            d.0,
            d.0 / f.0,
            ms(f.1),
            ms(d.1),
            ratio(d.1, f.1)
        );
    }

    // On a virtual machine the host may run something else on our CPUs;
    // the guest sees that only as "steal" time. Ratios from a run with much
    // of it are not worth comparing.
    print_steal(cpu_at_start);
}

/// The share of the machine's CPU time the host took since `start`.
fn print_steal(start: Option<CpuTimes>) {
    if let (Some(start), Some(end)) = (start, CpuTimes::now()) {
        let share = end.steal_share_since(&start);
        println!(
            "\nCPU time taken by the host (steal, /proc/stat) during the run: {:.0}%{}",
            share * 100.0,
            if share > STEAL_WARN {
                "; the host was busy: these figures are disturbed, measure again"
            } else {
                ""
            }
        );
    }
}

/// Above this share of steal time a run's figures are called disturbed.
const STEAL_WARN: f64 = 0.05;

/// The machine's CPU time by kind, in clock ticks: the first line of
/// /proc/stat (user nice system idle iowait irq softirq steal ...).
struct CpuTimes {
    total: u64,
    steal: u64,
}

impl CpuTimes {
    fn now() -> Option<CpuTimes> {
        let stat = fs::read_to_string("/proc/stat").ok()?;
        Self::parse(stat.lines().next()?)
    }

    fn parse(line: &str) -> Option<CpuTimes> {
        let mut fields = line.split_whitespace();
        if fields.next()? != "cpu" {
            return None;
        }
        // guest and guest_nice (fields 9 and 10) are already in user.
        let ticks: Vec<u64> = fields
            .take(8)
            .map(|f| f.parse().ok())
            .collect::<Option<_>>()?;
        Some(CpuTimes {
            total: ticks.iter().sum(),
            steal: *ticks.get(7)?,
        })
    }

    fn steal_share_since(&self, start: &CpuTimes) -> f64 {
        let total = self.total.saturating_sub(start.total);
        if total == 0 {
            return 0.0;
        }
        self.steal.saturating_sub(start.steal) as f64 / total as f64
    }
}

fn now_ns() -> u128 {
    let t = nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC).unwrap();
    t.tv_sec() as u128 * 1_000_000_000 + t.tv_nsec() as u128
}

fn ratio(a: Duration, b: Duration) -> f64 {
    a.as_secs_f64() / b.as_secs_f64()
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

fn workdir() -> tempfile::TempDir {
    tempfile::tempdir().expect("temp dir")
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn percentile(mut v: Vec<Duration>, p: f64) -> Duration {
    v.sort();
    v[((v.len() - 1) as f64 * p) as usize]
}

/// Median wall time of one uncontended launch, interleaving the tools so
/// that machine noise hits both alike.
fn launch_overhead(cfg: &Config) -> Launch {
    let dir = workdir();
    let mut bare = Vec::new();
    let mut flock = Vec::new();
    let mut dbl = Vec::new();
    for _ in 0..5 {
        // Warm the page cache and the lock directories.
        Tool::Flock
            .command(dir.path(), true, &["true"])
            .status()
            .unwrap();
        Tool::Dblaunch
            .command(dir.path(), true, &["true"])
            .status()
            .unwrap();
    }
    // CPU time (user + system, from getrusage of the reaped children) of
    // each tool's launches, `true` included, summed over the interleaved runs.
    let mut cpu = [Duration::ZERO; 2];
    let mut faults = [0u64; 2];
    for _ in 0..cfg.launches {
        let t = Instant::now();
        Command::new("true").status().unwrap();
        bare.push(t.elapsed());
        for (k, tool) in [Tool::Flock, Tool::Dblaunch].into_iter().enumerate() {
            let before = children_usage();
            let t = Instant::now();
            assert!(
                tool.command(dir.path(), true, &["true"])
                    .status()
                    .unwrap()
                    .success()
            );
            [&mut flock, &mut dbl][k].push(t.elapsed());
            let after = children_usage();
            cpu[k] += after.cpu - before.cpu;
            faults[k] += after.faults - before.faults;
        }
    }
    let (b, f, d) = (median(bare), median(flock), median(dbl));
    let per = |c: Duration| c / cfg.launches as u32;
    println!(
        "launch: median `true` {}, `flock -x db.lock true` {}, `dblaunch exec --write db -- true` {} ({} runs each)",
        ms(b),
        ms(f),
        ms(d),
        cfg.launches
    );
    println!(
        "        overhead over bare `true`: flock {} , dblaunch {}; CPU per launch (with `true`): flock {}, dblaunch {}",
        ms(f.saturating_sub(b)),
        ms(d.saturating_sub(b)),
        ms(per(cpu[0])),
        ms(per(cpu[1]))
    );
    let per_launch = |n: u64| n as f64 / cfg.launches as f64;
    Launch {
        wall: (f, d),
        cpu: (per(cpu[0]), per(cpu[1])),
        faults: (per_launch(faults[0]), per_launch(faults[1])),
    }
}

/// One uncontended launch of each tool: median wall time, mean CPU time and
/// mean page faults (minor faults, `true` included).
struct Launch {
    wall: (Duration, Duration),
    cpu: (Duration, Duration),
    faults: (f64, f64),
}

/// Launches per block in [`launch_blocks`].
const LAUNCH_BLOCK: usize = 100;

/// One uncontended launch, measured in blocks: each round runs
/// [`LAUNCH_BLOCK`] launches of one tool, then as many of the other (taking
/// turns to go first), and the ratio is the median of the rounds' ratios.
/// Steadier than single interleaved launches, whose ratio moved by 0.1
/// from run to run here.
fn launch_blocks(cfg: &Config) -> Blocks {
    let dir = workdir();
    let rounds = cfg.block_rounds;
    let [f, d] = paired(rounds, |tool, _| {
        let (cpu0, t) = (children_cpu(), Instant::now());
        for _ in 0..LAUNCH_BLOCK {
            assert!(
                tool.command(dir.path(), true, &["true"])
                    .status()
                    .unwrap()
                    .success()
            );
        }
        let per = LAUNCH_BLOCK as f64;
        (
            (children_cpu() - cpu0).as_secs_f64() / per,
            t.elapsed().as_secs_f64() / per,
        )
    });
    let split = |v: &[(f64, f64)], pick: fn(&(f64, f64)) -> f64| v.iter().map(pick).collect();
    let cpu = summarise([split(&f, |r| r.0), split(&d, |r| r.0)]).seconds();
    let wall = summarise([split(&f, |r| r.1), split(&d, |r| r.1)]).seconds();
    println!(
        "launch blocks ({rounds} rounds x {LAUNCH_BLOCK}): CPU per launch flock {}, dblaunch {} ({:.2}x); wall {}, {} ({:.2}x)",
        ms(cpu.tools.0),
        ms(cpu.tools.1),
        cpu.ratio,
        ms(wall.tools.0),
        ms(wall.tools.1),
        wall.ratio
    );
    Blocks { cpu, wall }
}

/// [`launch_blocks`]' result.
struct Blocks {
    cpu: Paired<Duration>,
    wall: Paired<Duration>,
}

/// `contenders` loops of `jobs` each; every job is the probe logging its
/// start and end. Returns the gaps between one job's end and the next one's
/// start (the hand-offs) and the total wall time.
fn contend(tool: Tool, contenders: usize, jobs: usize, hold: &str) -> (Vec<Duration>, Duration) {
    let (wall, log, _dir) = contend_mixed(tool, contenders, jobs, hold, 0);
    (gaps(&log), wall)
}

/// As [`contend`], with `readers_pct` percent of the contenders reading
/// (shared) instead of writing; returns the wall time and the log.
fn contend_mixed(
    tool: Tool,
    contenders: usize,
    jobs: usize,
    hold: &str,
    readers_pct: usize,
) -> (Duration, PathBuf, tempfile::TempDir) {
    let dir = workdir();
    let log = dir.path().join("events.log");
    let t = Instant::now();
    let threads: Vec<_> = (0..contenders)
        .map(|c| {
            let dir = dir.path().to_path_buf();
            let log = log.clone();
            let hold = hold.to_owned();
            std::thread::spawn(move || {
                for j in 0..jobs {
                    let label = format!("c{c}j{j}");
                    let write = c * 100 / contenders.max(1) >= readers_pct;
                    let status = tool
                        .command(
                            &dir,
                            write,
                            &[
                                DBLAUNCH,
                                "__probe",
                                "--hold",
                                &hold,
                                "--label",
                                &label,
                                "--log",
                                log.to_str().unwrap(),
                            ],
                        )
                        .status()
                        .unwrap();
                    assert!(status.success());
                }
            })
        })
        .collect();
    for th in threads {
        th.join().unwrap();
    }
    (t.elapsed(), log, dir)
}

/// Resource usage of every child this process has reaped so far: each tool
/// and everything it ran.
fn children_usage() -> Usage {
    // SAFETY: an all-zero rusage is a valid value; getrusage fills it.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: getrusage writes into the struct we own.
    unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut ru) };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    Usage {
        cpu: tv(ru.ru_utime) + tv(ru.ru_stime),
        faults: ru.ru_minflt as u64,
    }
}

/// [`children_usage`]: what the reaped children used, from one getrusage.
struct Usage {
    /// CPU time, user + system.
    cpu: Duration,
    /// Minor page faults. A launch's are mostly the tool's code being
    /// mapped in: a stale `startup.order` shows here first (see build.rs).
    faults: u64,
}

/// CPU time (user + system) of the reaped children.
fn children_cpu() -> Duration {
    children_usage().cpu
}

/// Jobs per second and CPU per job (the tool and its command, which is the
/// same for both tools) for several queue lengths: does the cost of a
/// launch grow with the queue?
fn scaling(counts: &[(usize, usize)]) -> Vec<(usize, [(f64, Duration); 2])> {
    let mut rows = Vec::new();
    for &(contenders, jobs) in counts {
        let mut row = [(0.0, Duration::ZERO); 2];
        for (k, tool) in [Tool::Flock, Tool::Dblaunch].into_iter().enumerate() {
            let cpu0 = children_cpu();
            let (wall, _, _dir) = contend_mixed(tool, contenders, jobs, "0ms", 0);
            let n = (contenders * jobs) as f64;
            row[k] = (n / wall.as_secs_f64(), (children_cpu() - cpu0).div_f64(n));
            println!(
                "scaling ({contenders} contenders x {jobs} jobs): {}: {:.0} jobs/s, CPU per job {}",
                tool.name(),
                row[k].0,
                ms(row[k].1)
            );
        }
        rows.push((contenders, row));
    }
    rows
}

/// Jobs per second and CPU per job of each tool (flock(1) first): the
/// medians over the rounds, and the medians of the rounds' ratios.
struct Throughput {
    rate: Paired<f64>,
    cpu: Paired<Duration>,
}

impl Throughput {
    /// Its two rows of the summary table.
    fn print_rows(&self, who: &str, target: &str) {
        println!(
            "| throughput, {who}, 8 jobs of 1 ms each: jobs/s | {:.0} | {:.0} | {:.2}x | {target} |",
            self.rate.tools.0, self.rate.tools.1, self.rate.ratio
        );
        println!(
            "| same run, CPU per job (user + sys, the job included) | {} | {} | {:.2}x | |",
            ms(self.cpu.tools.0),
            ms(self.cpu.tools.1),
            self.cpu.ratio
        );
    }
}

/// Runs `measure` once per tool in each of `rounds` rounds, alternating
/// which tool goes first (flock(1) in even rounds, dblaunch in odd ones).
/// A single run of each, one after the other, puts whatever the machine
/// does meanwhile (another tenant, a cache, the clock rate) into the
/// ratio; the ratio of runs made side by side, round by round, cancels
/// most of it. Returns each tool's results, round by round.
fn paired<T>(rounds: usize, mut measure: impl FnMut(Tool, usize) -> T) -> [Vec<T>; 2] {
    let mut out = [Vec::new(), Vec::new()];
    for round in 0..rounds {
        let order = if round % 2 == 0 { [0, 1] } else { [1, 0] };
        for k in order {
            let tool = [Tool::Flock, Tool::Dblaunch][k];
            out[k].push(measure(tool, round));
        }
    }
    out
}

/// The median of `v` (not empty).
fn median_f(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// The medians of each tool's results, and the median of the per-round
/// ratios dblaunch / flock(1).
struct Paired<T> {
    tools: (T, T),
    ratio: f64,
}

impl Paired<f64> {
    /// The same, with the results in seconds as durations.
    fn seconds(self) -> Paired<Duration> {
        Paired {
            tools: (
                Duration::from_secs_f64(self.tools.0),
                Duration::from_secs_f64(self.tools.1),
            ),
            ratio: self.ratio,
        }
    }
}

fn summarise(results: [Vec<f64>; 2]) -> Paired<f64> {
    let ratios = results[1]
        .iter()
        .zip(&results[0])
        .map(|(d, f)| d / f)
        .collect();
    let [f, d] = results;
    Paired {
        tools: (median_f(f), median_f(d)),
        ratio: median_f(ratios),
    }
}

/// Jobs per second and CPU per job of each tool, with `readers_pct` percent
/// of the contenders reading; every job holds its lock for 1 ms.
fn throughput_mixed(
    rounds: usize,
    contenders: usize,
    jobs: usize,
    readers_pct: usize,
) -> Throughput {
    let results = paired(rounds, |tool, round| {
        let cpu0 = children_cpu();
        let (wall, _, _dir) = contend_mixed(tool, contenders, jobs, "1ms", readers_pct);
        let n = contenders * jobs;
        let rate = n as f64 / wall.as_secs_f64();
        let cpu = (children_cpu() - cpu0) / n as u32;
        let readers = if readers_pct > 0 {
            format!(", {readers_pct}% readers")
        } else {
            String::new()
        };
        println!(
            "throughput ({contenders} contenders x {jobs} jobs of 1 ms{readers}), round {}: {}: {rate:.0} jobs/s, CPU per job {}",
            round + 1,
            tool.name(),
            ms(cpu)
        );
        (rate, cpu.as_secs_f64())
    });
    let [f, d] = results;
    let split = |v: &Vec<(f64, f64)>| -> (Vec<f64>, Vec<f64>) { v.iter().copied().unzip() };
    let ((f_rate, f_cpu), (d_rate, d_cpu)) = (split(&f), split(&d));
    Throughput {
        rate: summarise([f_rate, d_rate]),
        cpu: summarise([f_cpu, d_cpu]).seconds(),
    }
}

fn gaps(log: &Path) -> Vec<Duration> {
    let text = fs::read_to_string(log).unwrap_or_default();
    let mut iv: Vec<(u128, u128)> = Vec::new();
    let mut starts = std::collections::HashMap::new();
    for line in text.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        let ns: u128 = f[2].parse().unwrap();
        match f[1] {
            "start" => {
                starts.insert(f[0].to_owned(), ns);
            }
            "end" => iv.push((starts[f[0]], ns)),
            _ => {}
        }
    }
    iv.sort();
    iv.windows(2)
        .map(|w| {
            assert!(w[1].0 >= w[0].1, "overlapping exclusive holders: {w:?}");
            Duration::from_nanos((w[1].0 - w[0].1) as u64)
        })
        .collect()
}

/// The median hand-off of each tool (the median over the rounds of each
/// round's median), and the median of the rounds' ratios.
fn handoff_latency(cfg: &Config, contenders: usize) -> Paired<Duration> {
    let results = paired(cfg.rounds, |tool, round| {
        let (g, _) = contend(tool, contenders, cfg.handoff_jobs, "2ms");
        let (med, p90) = (median(g.clone()), percentile(g.clone(), 0.9));
        println!(
            "hand-off ({contenders} contenders x {} jobs), round {}: {}: median {}, p90 {} over {} hand-offs",
            cfg.handoff_jobs,
            round + 1,
            tool.name(),
            ms(med),
            ms(p90),
            g.len()
        );
        med.as_secs_f64()
    });
    summarise(results).seconds()
}

fn throughput(rounds: usize, contenders: usize, jobs: usize) -> Throughput {
    throughput_mixed(rounds, contenders, jobs, 0)
}

/// CPU ticks (utime+stime of all threads) and context switches of `pid`.
fn cost(pid: u32) -> (u64, u64) {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let rest: Vec<&str> = stat
        .rsplit(')')
        .next()
        .unwrap_or("")
        .split_whitespace()
        .collect();
    let cpu = rest
        .get(11)
        .and_then(|s| s.parse::<u64>().ok())
        .unwrap_or(0)
        + rest
            .get(12)
            .and_then(|s| s.parse::<u64>().ok())
            .unwrap_or(0);
    let mut switches = 0;
    if let Ok(tasks) = fs::read_dir(format!("/proc/{pid}/task")) {
        for t in tasks.flatten() {
            let s = fs::read_to_string(t.path().join("status")).unwrap_or_default();
            for l in s.lines() {
                if l.starts_with("voluntary_ctxt_switches")
                    || l.starts_with("nonvoluntary_ctxt_switches")
                {
                    switches += l
                        .split_whitespace()
                        .nth(1)
                        .and_then(|n| n.parse::<u64>().ok())
                        .unwrap_or(0);
                }
            }
        }
    }
    (cpu, switches)
}

fn idle_cost(cfg: &Config) -> ((Duration, u64), (Duration, u64)) {
    // SAFETY: sysconf has no preconditions.
    let tick = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    let mut out = Vec::new();
    for tool in [Tool::Flock, Tool::Dblaunch] {
        let dir = workdir();
        let go = dir.path().join("go");
        let mut holder = tool
            .command(
                dir.path(),
                true,
                &[DBLAUNCH, "__probe", "--until", go.to_str().unwrap()],
            )
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(200));
        let mut waiter = tool.command(dir.path(), true, &["true"]).spawn().unwrap();
        std::thread::sleep(Duration::from_millis(300));
        let a = cost(waiter.id());
        std::thread::sleep(cfg.idle);
        let b = cost(waiter.id());
        fs::write(&go, "").unwrap();
        holder.wait().unwrap();
        waiter.wait().unwrap();
        let cpu = Duration::from_secs_f64((b.0 - a.0) as f64 / tick);
        println!(
            "queued waiter over {}: {}: CPU {}, context switches {}",
            humantime::format_duration(cfg.idle),
            tool.name(),
            ms(cpu),
            b.1 - a.1
        );
        out.push((cpu, b.1 - a.1));
    }
    (out[0], out[1])
}

struct InRun {
    programs: usize,
    rounds: usize,
    shell_wall: Duration,
    run_wall: Duration,
    /// The median of the rounds' ratios (each round runs both).
    ratio: f64,
    shell_gap: Duration,
    run_gap: Duration,
}

impl InRun {
    fn print_rows(&self) {
        println!(
            "| `dblaunch run` of {} conflicting programs vs a shell running them in sequence: wall time ({} rounds, paired) | {} | {} | {:.2}x | <= 1.05x |",
            self.programs,
            self.rounds,
            ms(self.shell_wall),
            ms(self.run_wall),
            self.ratio
        );
        println!(
            "| same, median gap between one program's end and the next one's start | {} | {} | {:.2}x | |",
            ms(self.shell_gap),
            ms(self.run_gap),
            ratio(self.run_gap, self.shell_gap)
        );
    }
}

/// `programs` programs that all write one database, run by one `dblaunch
/// run` (so each waits for the previous one's lock), against `sh -c 'p1; p2;
/// …'`. Medians over `rounds`, alternating.
fn run_handoff(programs: usize, rounds: usize) -> InRun {
    let dir = workdir();
    let log = dir.path().join("events.log");
    let probe = |label: &str| -> Vec<String> {
        [
            DBLAUNCH,
            "__probe",
            "--hold",
            "2ms",
            "--label",
            label,
            "--log",
            log.to_str().unwrap(),
        ]
        .map(str::to_owned)
        .to_vec()
    };
    let mut manifest = String::new();
    let mut names = Vec::new();
    let mut shell = Vec::new();
    for i in 0..programs {
        let name = format!("p{i:02}");
        let argv = probe(&name);
        manifest += &format!(
            "[programs.{name}]\ncommand = [{}]\nwrites = [\"app.db\"]\n",
            argv.iter()
                .map(|a| format!("{a:?}"))
                .collect::<Vec<_>>()
                .join(", ")
        );
        shell.push(argv.join(" "));
        names.push(name);
    }
    manifest += &format!(
        "[groups]\nall = [{}]\n",
        names
            .iter()
            .map(|n| format!("\"{n}\""))
            .collect::<Vec<_>>()
            .join(", ")
    );
    fs::write(dir.path().join("dblaunch.toml"), manifest).unwrap();
    let script = shell.join("; ");
    let (mut run_walls, mut shell_walls, mut run_gaps, mut shell_gaps) =
        (vec![], vec![], vec![], vec![]);
    // Each round runs both, taking turns to go first.
    for round in 0..rounds {
        for shell_now in [round % 2 == 1, round % 2 == 0] {
            let _ = fs::remove_file(&log);
            let mut command = if shell_now {
                let mut c = Command::new("sh");
                c.args(["-c", &script]);
                c
            } else {
                let mut c = Command::new(DBLAUNCH);
                c.args(["-q", "run", "all"]).current_dir(dir.path());
                c
            };
            let t = Instant::now();
            let ok = command.stdout(Stdio::null()).status().unwrap().success();
            assert!(ok);
            let (walls, all_gaps) = if shell_now {
                (&mut shell_walls, &mut shell_gaps)
            } else {
                (&mut run_walls, &mut run_gaps)
            };
            walls.push(t.elapsed());
            all_gaps.extend(gaps(&log));
        }
    }
    let ratios = run_walls
        .iter()
        .zip(&shell_walls)
        .map(|(r, s)| ratio(*r, *s))
        .collect();
    let r = InRun {
        programs,
        rounds,
        ratio: median_f(ratios),
        shell_wall: median(shell_walls),
        run_wall: median(run_walls),
        shell_gap: median(shell_gaps),
        run_gap: median(run_gaps),
    };
    println!(
        "in one run ({programs} conflicting programs x {rounds} rounds): shell {} (gap {}), dblaunch run {} (gap {})",
        ms(r.shell_wall),
        ms(r.shell_gap),
        ms(r.run_wall),
        ms(r.run_gap)
    );
    r
}

/// A new reader every 50 ms, each holding 150 ms: some reader always holds.
/// A writer arrives after the fifth; how long until it runs?
fn starvation(cfg: &Config) -> (Duration, Duration) {
    let mut out = Vec::new();
    for tool in [Tool::Flock, Tool::Dblaunch] {
        let dir = workdir();
        let log: PathBuf = dir.path().join("events.log");
        let mut readers: Vec<Child> = Vec::new();
        let mut writer = None;
        let mut asked = 0;
        for i in 0..cfg.starvation_readers {
            readers.push(
                tool.command(dir.path(), false, &[DBLAUNCH, "__probe", "--hold", "150ms"])
                    .spawn()
                    .unwrap(),
            );
            if i == 4 {
                asked = now_ns();
                writer = Some(
                    tool.command(
                        dir.path(),
                        true,
                        &[
                            DBLAUNCH,
                            "__probe",
                            "--label",
                            "w",
                            "--log",
                            log.to_str().unwrap(),
                        ],
                    )
                    .spawn()
                    .unwrap(),
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        writer.unwrap().wait().unwrap();
        for mut r in readers {
            r.wait().unwrap();
        }
        let text = fs::read_to_string(&log).unwrap();
        let started: u128 = text
            .lines()
            .find(|l| l.starts_with("w start"))
            .and_then(|l| l.split_whitespace().nth(2))
            .and_then(|n| n.parse().ok())
            .expect("the writer logged its start");
        let waited = Duration::from_nanos((started - asked) as u64);
        println!(
            "starvation ({} readers, 50 ms apart, 150 ms each): {}: the writer waited {}",
            cfg.starvation_readers,
            tool.name(),
            ms(waited)
        );
        out.push(waited);
    }
    (out[0], out[1])
}
