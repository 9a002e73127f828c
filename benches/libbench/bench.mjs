// dblaunch's Node API against proper-lockfile, side by side.
//
//   node bench.mjs [--quick] [--dir DIR] [--build NOTE]
//
// Run it from an npm project where `dblaunch` (the packed package) and
// `proper-lockfile` are installed: scripts/bench-libs makes one. Compares
// `withLock(db, { mode: 'write' }, fn)` with proper-lockfile's
// `lock(file, options)` and the release function it returns. The measures
// are those of bench.py beside it (docs/benchmarks.md, "Python and Node
// libraries"):
// 1. uncontended lock + release in one process: median over rounds of the
//    time per iteration, and the median of the rounds' ratios;
// 2. hand-off latency with 2 and 8 processes: this process holds, 1 or 7
//    children queue, and each grant is timed from the previous holder's
//    release (process.hrtime: CLOCK_MONOTONIC, shared by all processes);
// 3. the CPU time and wake-ups (context switches, every thread) of a child
//    queued behind a holder;
// 4. the order of grants to 8 children that queued one after the other.
// Rounds take turns between the libraries. Ratios are dblaunch / the other:
// below 1.0x dblaunch is faster.
//
// `--child DIR` is the contender the benchmark starts (through fork, with
// an IPC channel).

import { fork } from 'node:child_process';
import fs from 'node:fs';
import { createRequire } from 'node:module';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { lock, status, withLock } from 'dblaunch';
import lockfile from 'proper-lockfile';

const require = createRequire(import.meta.url);
const LIBS = ['dblaunch', 'proper-lockfile'];
const IDLE = 'idle process';
// Between one contender's start and the next's, in measure 4: a polling
// library gives no sign that it has queued, so every library gets the same
// time to do so.
const SETTLE = 100;
// In measure 2, the holder releases at a random time in this range (ms)
// after its waiters called, the same for both libraries in a round: a
// release at a fixed time would fall at the same point of a poller's cycle
// each time.
const HANDOFF_HOLD = [50, 300];
// proper-lockfile does not wait by default (retries: 0). Told to retry for
// ever, it waits 10 ms, then twice as long each time, up to 100 ms.
const RETRIES = { forever: true, minTimeout: 10, maxTimeout: 100 };
const ANSWER_TIMEOUT = 120_000;

const nowNs = () => process.hrtime.bigint();
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

// What takes and releases one lock of `lib` on its own file under `root`:
// take() resolves to a function that releases it.
function locker(lib, root) {
  const folder = path.join(root, lib);
  fs.mkdirSync(folder, { recursive: true });
  const db = path.join(folder, 'app.db');
  if (lib === 'dblaunch') {
    return {
      take: async () => {
        const held = await lock(db, { mode: 'write' });
        return () => held.release();
      },
      // The idiom: the function runs under the lock.
      run: (fn) => withLock(db, { mode: 'write' }, fn),
    };
  }
  if (lib === 'proper-lockfile') {
    // It locks an existing file (it resolves its real path).
    fs.closeSync(fs.openSync(db, 'a'));
    return {
      take: () => lockfile.lock(db, { retries: RETRIES }),
      run: async (fn) => {
        const release = await lockfile.lock(db, { retries: RETRIES });
        try {
          return await fn();
        } finally {
          await release();
        }
      },
    };
  }
  throw new Error(`unknown library ${lib}`);
}

// The contender.

function child(root) {
  const lockers = Object.fromEntries(LIBS.map((lib) => [lib, locker(lib, root)]));
  // Ends with the benchmark, however it ends.
  process.on('disconnect', () => process.exit(0));
  process.on('message', async (command) => {
    if (command.op !== 'take') return;
    process.send({ ev: 'calling' });
    let acq = 0n;
    let rel = 0n;
    await lockers[command.lib].run(() => {
      acq = nowNs();
      rel = nowNs();
    });
    process.send({ ev: 'granted', id: command.id, acq: String(acq), rel: String(rel) });
  });
}

class Child {
  constructor(root) {
    this.process = fork(fileURLToPath(import.meta.url), ['--child', root], { stdio: 'inherit' });
    this.pid = this.process.pid;
    this.messages = [];
    this.waiting = null;
    this.process.on('message', (m) => {
      if (this.waiting) {
        const w = this.waiting;
        this.waiting = null;
        w.resolve(m);
      } else {
        this.messages.push(m);
      }
    });
    this.process.on('exit', (code) => {
      if (this.waiting && !this.stopping) this.waiting.reject(new Error(`contender ${this.pid} exited (${code})`));
    });
  }

  answer() {
    if (this.messages.length > 0) return Promise.resolve(this.messages.shift());
    return new Promise((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new Error(`contender ${this.pid} did not answer in ${ANSWER_TIMEOUT / 1000} s`)),
        ANSWER_TIMEOUT,
      );
      this.waiting = {
        resolve: (m) => {
          clearTimeout(timer);
          resolve(m);
        },
        reject: (e) => {
          clearTimeout(timer);
          reject(e);
        },
      };
    });
  }

  // Asks the child to lock; resolves when it is about to.
  async take(lib, id) {
    this.process.send({ op: 'take', lib, id });
    const m = await this.answer();
    if (m.ev !== 'calling') throw new Error(`contender ${this.pid} answered ${JSON.stringify(m)}`);
  }

  async granted() {
    const m = await this.answer();
    if (m.ev !== 'granted') throw new Error(`contender ${this.pid} answered ${JSON.stringify(m)}`);
    return { id: m.id, acq: BigInt(m.acq), rel: BigInt(m.rel) };
  }

  stop() {
    this.stopping = true;
    const exited = new Promise((resolve) => {
      if (this.process.exitCode !== null || this.process.signalCode !== null) resolve();
      else this.process.once('exit', resolve);
    });
    if (this.process.connected) this.process.disconnect();
    const timer = setTimeout(() => this.process.kill('SIGKILL'), 10_000);
    return exited.then(() => clearTimeout(timer));
  }
}

// Measures.

const rotated = (libs, turn) => {
  const k = turn % libs.length;
  return [...libs.slice(k), ...libs.slice(0, k)];
};
const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
};
const mean = (xs) => xs.reduce((a, b) => a + b, 0) / xs.length;

// Seconds per lock + release, one figure per round (a first round warms up).
async function uncontended(lockers, rounds, n) {
  const times = Object.fromEntries(LIBS.map((lib) => [lib, []]));
  for (let turn = 0; turn <= rounds; turn++) {
    for (const lib of rotated(LIBS, turn)) {
      const { run } = lockers[lib];
      const start = nowNs();
      for (let i = 0; i < n; i++) await run(() => {});
      const elapsed = Number(nowNs() - start) / n / 1e9;
      if (turn > 0) times[lib].push(elapsed);
    }
  }
  return times;
}

// The latency of each hand-off from a holder's release (`released`) along
// the grants, in seconds.
function chain(released, grants) {
  grants.sort((a, b) => (a.acq < b.acq ? -1 : a.acq > b.acq ? 1 : 0));
  const gaps = [];
  let previous = released;
  for (const g of grants) {
    if (g.acq < previous) throw new Error('two holders at once: the lock did not exclude');
    gaps.push(Number(g.acq - previous) / 1e9);
    previous = g.rel;
  }
  return gaps;
}

class Bench {
  constructor(root, children) {
    this.root = root;
    this.children = children;
    this.lockers = Object.fromEntries(LIBS.map((lib) => [lib, locker(lib, root)]));
    this.unqueued = 0;
  }

  // dblaunch says who waits: count the rounds where the settle time was too
  // short for every contender to queue.
  async checkQueued(lib, n) {
    if (lib !== 'dblaunch') return;
    const report = await status(path.join(this.root, 'dblaunch', 'app.db'));
    const entry = report.databases[0];
    if (!entry || entry.waiters.length !== n) this.unqueued++;
  }

  async handoff(lib, n, hold) {
    const waiters = this.children.slice(0, n - 1);
    const release = await this.lockers[lib].take();
    let released;
    try {
      for (const [i, c] of waiters.entries()) await c.take(lib, i);
      await sleep(hold);
      await this.checkQueued(lib, waiters.length);
    } finally {
      released = nowNs();
      await release();
    }
    return chain(released, await Promise.all(waiters.map((c) => c.granted())));
  }

  // How many of `n` contenders, started one after the other behind a
  // holder, were granted in their place.
  async grantOrder(lib, n) {
    const waiters = this.children.slice(0, n);
    const release = await this.lockers[lib].take();
    try {
      for (const [i, c] of waiters.entries()) {
        await c.take(lib, i);
        await sleep(SETTLE);
      }
      await this.checkQueued(lib, waiters.length);
    } finally {
      await release();
    }
    const grants = await Promise.all(waiters.map((c) => c.granted()));
    grants.sort((a, b) => (a.acq < b.acq ? -1 : a.acq > b.acq ? 1 : 0));
    return grants.filter((g, place) => g.id === place).length;
  }

  // CPU seconds and wake-ups of a contender queued behind a holder for
  // `window` ms (IDLE: a contender doing nothing).
  async idle(lib, window) {
    const c = this.children[0];
    if (lib === IDLE) {
      const before = processStats(c.pid);
      await sleep(window);
      return statsDelta(before, processStats(c.pid));
    }
    const release = await this.lockers[lib].take();
    let before;
    let after;
    try {
      await c.take(lib, 0);
      await sleep(SETTLE);
      before = processStats(c.pid);
      await sleep(window);
      after = processStats(c.pid);
    } finally {
      await release();
    }
    await c.granted();
    return statsDelta(before, after);
  }
}

// One process: on-CPU nanoseconds (schedstat) and context switches
// (status) of each thread.
function processStats(pid) {
  const cpu = new Map();
  const switches = new Map();
  for (const tid of fs.readdirSync(`/proc/${pid}/task`)) {
    try {
      cpu.set(tid, Number(fs.readFileSync(`/proc/${pid}/task/${tid}/schedstat`, 'utf8').split(' ')[0]));
      let n = 0;
      for (const line of fs.readFileSync(`/proc/${pid}/task/${tid}/status`, 'utf8').split('\n')) {
        if (line.startsWith('voluntary_ctxt_switches') || line.startsWith('nonvoluntary_ctxt_switches')) {
          n += Number(line.split(/\s+/)[1]);
        }
      }
      switches.set(tid, n);
    } catch {
      // a thread that ended meanwhile
    }
  }
  return { cpu, switches };
}

// Threads that ended in the window are missed; threads that started in it
// count from 0.
function statsDelta(before, after) {
  let cpu = 0;
  let wakes = 0;
  for (const [tid, v] of after.cpu) cpu += v - (before.cpu.get(tid) ?? 0);
  for (const [tid, v] of after.switches) wakes += v - (before.switches.get(tid) ?? 0);
  return [cpu / 1e9, wakes];
}

// Reporting.

const ms = (s) => (s < 0.01 ? `${(s * 1e3).toFixed(3)} ms` : `${(s * 1e3).toFixed(1)} ms`);
const us = (s) => `${(s * 1e6).toFixed(1)} µs`;
const fmtRatio = (r) => (r >= 0.1 ? `${r.toFixed(2)}x` : `${Number(r.toPrecision(2))}x`);
const ratio = (a, b) => (b > 0 ? fmtRatio(a / b) : 'n/a');

function table(header, rows) {
  const lines = [`| ${header.join(' | ')} |`, `|${header.map(() => ' --- ').join('|')}|`];
  for (const row of rows) lines.push(`| ${row.join(' | ')} |`);
  console.log(`${lines.join('\n')}\n`);
}

function steal() {
  const values = fs.readFileSync('/proc/stat', 'utf8').split('\n')[0].trim().split(/\s+/).slice(1).map(Number);
  return [values[7] ?? 0, values.reduce((a, b) => a + b, 0)];
}

function label(lib) {
  if (lib === IDLE) return 'a process waiting for a message, no lock (floor)';
  if (lib === 'dblaunch') return 'dblaunch';
  return `${lib} ${require(`${lib}/package.json`).version}`;
}

async function main() {
  const args = process.argv.slice(2);
  const option = (name) => {
    const i = args.indexOf(name);
    return i >= 0 ? args[i + 1] : undefined;
  };
  if (option('--child')) {
    child(option('--child'));
    return;
  }
  const quick = args.includes('--quick');
  const [iterations, rounds] = quick ? [50, 3] : [500, 15];
  const handoffRounds = quick
    ? [
        [2, 4],
        [8, 2],
      ]
    : [
        [2, 40],
        [8, 15],
      ];
  const [orderRounds, idleRounds, window] = quick ? [1, 1, 300] : [3, 3, 1000];

  const root = fs.mkdtempSync(path.join(option('--dir') ?? os.tmpdir(), 'libbench-node.'));
  const children = [];
  const stealStart = steal();
  try {
    for (let i = 0; i < 8; i++) children.push(new Child(root));
    const bench = new Bench(root, children);
    console.log(`## Node: dblaunch against ${label('proper-lockfile')}\n`);
    console.log(
      `${quick ? 'quick (a smoke run: too few iterations to compare)' : 'full'} run; Node ${process.version}; ` +
        `dblaunch build: ${option('--build') ?? 'not said'}; ${os.cpus().length} cores; ` +
        `load average at the start ${os.loadavg()[0].toFixed(2)}; lock files in ${root}\n`,
    );

    // 1. Uncontended.
    const perOp = await uncontended(bench.lockers, rounds, iterations);
    const ratios = perOp['proper-lockfile'].map((b, i) => perOp.dblaunch[i] / b);
    console.log(`### Uncontended lock + release (${rounds} rounds of ${iterations}, one process)\n`);
    table(
      ['library', 'median per lock + release', 'dblaunch / it (median of rounds)'],
      LIBS.map((lib) => [label(lib), us(median(perOp[lib])), lib === 'dblaunch' ? '1.00x' : fmtRatio(median(ratios))]),
    );

    // 2. Hand-off latency.
    let seed = 1;
    // A small generator of its own: the same holds in every run.
    const random = () => {
      seed = (seed * 1103515245 + 12345) % 2147483648;
      return seed / 2147483648;
    };
    for (const [n, nrounds] of handoffRounds) {
      const gaps = Object.fromEntries(LIBS.map((lib) => [lib, []]));
      for (let turn = 0; turn < nrounds; turn++) {
        const hold = HANDOFF_HOLD[0] + random() * (HANDOFF_HOLD[1] - HANDOFF_HOLD[0]);
        for (const lib of rotated(LIBS, turn)) gaps[lib].push(...(await bench.handoff(lib, n, hold)));
      }
      const p50 = Object.fromEntries(LIBS.map((lib) => [lib, median(gaps[lib])]));
      const avg = Object.fromEntries(LIBS.map((lib) => [lib, mean(gaps[lib])]));
      console.log(`### Hand-off latency, ${n} processes (${gaps.dblaunch.length} hand-offs per library)\n`);
      table(
        ['library', 'p50', 'dblaunch / it (p50)', 'mean', 'dblaunch / it (mean)', 'max'],
        LIBS.map((lib) => [
          label(lib),
          ms(p50[lib]),
          ratio(p50.dblaunch, p50[lib]),
          ms(avg[lib]),
          ratio(avg.dblaunch, avg[lib]),
          ms(Math.max(...gaps[lib])),
        ]),
      );
    }

    // 3. A queued waiter.
    const idleLibs = [...LIBS, IDLE];
    const costs = Object.fromEntries(idleLibs.map((lib) => [lib, []]));
    for (let turn = 0; turn < idleRounds; turn++) {
      for (const lib of rotated(idleLibs, turn)) costs[lib].push(await bench.idle(lib, window));
    }
    console.log(`### A waiter queued behind a holder for ${window / 1000} s (mean of ${idleRounds})\n`);
    table(
      ['library', 'CPU time', 'wake-ups (context switches, all threads)'],
      idleLibs.map((lib) => [
        label(lib),
        `${(mean(costs[lib].map((c) => c[0])) * 1e3).toFixed(2)} ms`,
        mean(costs[lib].map((c) => c[1])).toFixed(0),
      ]),
    );

    // 4. Grant order.
    const places = Object.fromEntries(LIBS.map((lib) => [lib, []]));
    for (let turn = 0; turn < orderRounds; turn++) {
      for (const lib of rotated(LIBS, turn)) places[lib].push(await bench.grantOrder(lib, 8));
    }
    console.log(`### Grant order: 8 contenders started ${SETTLE} ms apart behind a holder (${orderRounds} rounds)\n`);
    table(
      ['library', 'in arrival order', 'in place, each round'],
      LIBS.map((lib) => [
        label(lib),
        places[lib].every((p) => p === 8) ? 'yes' : 'no',
        places[lib].map((p) => `${p} of 8`).join(', '),
      ]),
    );
    if (bench.unqueued > 0) {
      console.log(
        `(dblaunch's status showed fewer waiters than started in ${bench.unqueued} rounds: the settle time was too short there)\n`,
      );
    }
    const [s0, t0] = stealStart;
    const [s1, t1] = steal();
    const share = (s1 - s0) / Math.max(t1 - t0, 1);
    console.log(`CPU time taken by the host (steal, /proc/stat) during the run: ${Math.round(share * 100)}%\n`);
  } finally {
    await Promise.all(children.map((c) => c.stop()));
    fs.rmSync(root, { recursive: true, force: true });
  }
}

await main();
