// What the tests share: temporary directories, processes that are always
// ended when a test ends, their events (JSON lines on stdout), and bounded
// waits for a state (no test sleeps for a fixed time to let something
// happen).
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import { createRequire } from 'node:module';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import { status } from 'dblaunch';

const require = createRequire(import.meta.url);

export const fixtures = path.join(path.dirname(fileURLToPath(import.meta.url)), 'fixtures');
/** The package as installed (or this checkout, when run inside it). */
export const packageDir = path.dirname(require.resolve('dblaunch/package.json'));
/** The dblaunch executable the package ships. */
export const dblaunchBin = path.join(packageDir, 'bin', 'dblaunch');

/** A fresh directory, removed when the test ends. */
export function tempDir(t) {
  const dir = fs.realpathSync(fs.mkdtempSync(path.join(os.tmpdir(), 'dblaunch-node-')));
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** Resolves once `check()` returns a truthy value (which it resolves to); rejects after `ms`. */
export async function until(what, check, ms = 10_000) {
  const deadline = Date.now() + ms;
  for (let delay = 2; ; delay = Math.min(delay * 2, 50)) {
    const value = await check();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, delay));
  }
}

/** Who holds and who waits for `db`: pids, in queue order. */
export async function occupancy(db) {
  const report = await status(db);
  const [d] = report.databases;
  return { holders: d.holders.map((p) => p.pid), waiters: d.waiters.map((p) => p.pid), report: d };
}

/** Resolves once `pid` waits in the queue of `db`. */
export function queued(db, pid, ms) {
  return until(`pid ${pid} to queue for ${db}`, async () => (await occupancy(db)).waiters.includes(pid), ms);
}

/**
 * A process of the test: started in a process group of its own, which is
 * killed (SIGKILL) when the test ends if it is still running. `events` are
 * the JSON lines it prints; `next(pred)` waits for the next matching one.
 */
export class Child {
  constructor(t, command, args, options = {}) {
    this.proc = spawn(command, args, {
      detached: true,
      stdio: ['pipe', 'pipe', 'pipe'],
      ...options,
      env: { ...process.env, ...options.env },
    });
    this.pid = this.proc.pid;
    this.events = [];
    this.stderr = '';
    this.waiters = [];
    this.exited = new Promise((resolve) => {
      this.proc.on('exit', (code, signal) => {
        this.exit = { code, signal };
        this.wake();
        resolve(this.exit);
      });
    });
    let buffer = '';
    this.proc.stdout.setEncoding('utf8');
    this.proc.stdout.on('data', (chunk) => {
      buffer += chunk;
      for (let i = buffer.indexOf('\n'); i >= 0; i = buffer.indexOf('\n')) {
        const line = buffer.slice(0, i).trim();
        buffer = buffer.slice(i + 1);
        if (!line) continue;
        try {
          this.events.push({ ...JSON.parse(line), at: performance.now() });
        } catch {
          this.events.push({ event: 'text', text: line, at: performance.now() });
        }
      }
      this.wake();
    });
    this.proc.stderr.setEncoding('utf8');
    this.proc.stderr.on('data', (chunk) => {
      this.stderr += chunk;
    });
    this.proc.stdin.on('error', () => {});
    t.after(() => this.kill());
  }

  wake() {
    for (const w of this.waiters.splice(0)) w();
  }

  /** Resolves to the first event matching `pred` (seen already or to come). */
  async next(pred, ms = 20_000) {
    const match = typeof pred === 'string' ? (e) => e.event === pred : pred;
    const deadline = Date.now() + ms;
    for (;;) {
      const found = this.events.find((e) => !e.taken && match(e));
      if (found) {
        found.taken = true;
        return found;
      }
      if (this.exit) {
        throw new Error(
          `pid ${this.pid} exited (${JSON.stringify(this.exit)}) before the event; events ${JSON.stringify(this.events)}; stderr: ${this.stderr}`,
        );
      }
      const left = deadline - Date.now();
      if (left <= 0) {
        throw new Error(
          `timed out after ${ms} ms waiting for an event of pid ${this.pid}; events ${JSON.stringify(this.events)}; stderr: ${this.stderr}`,
        );
      }
      await new Promise((resolve) => {
        const timer = setTimeout(resolve, left);
        this.waiters.push(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
  }

  send(command) {
    this.proc.stdin.write(`${JSON.stringify(command)}\n`);
  }

  /** Resolves to its exit; rejects if it has not exited within `ms`. */
  async ended(ms = 20_000) {
    let timer;
    const late = new Promise((_, reject) => {
      timer = setTimeout(
        () => reject(new Error(`pid ${this.pid} still runs after ${ms} ms; stderr: ${this.stderr}`)),
        ms,
      );
    });
    try {
      return await Promise.race([this.exited, late]);
    } finally {
      clearTimeout(timer);
    }
  }

  async kill() {
    if (this.exit) return;
    try {
      process.kill(-this.pid, 'SIGKILL');
    } catch {
      // already gone
    }
    await this.exited;
  }
}

/** A Node process that takes and releases locks when told (test/fixtures/agent.mjs). */
export async function agent(t, { cwd, env, name } = {}) {
  const args = [path.join(fixtures, 'agent.mjs')];
  const child = new Child(t, process.execPath, args, {
    cwd,
    env: { ...env, ...(name ? { DBLAUNCH_PROGRAM: name } : {}) },
  });
  await child.next('ready');
  return child;
}

/**
 * A program run by `dblaunch exec` (test/fixtures/held.mjs or held.py): it
 * says `granted` when it starts, and exits at a line on stdin.
 */
/** A Python program that takes `db` with the Python package (test/fixtures/held_lib.py). */
export function pythonHolder(t, python, db, { mode = 'write', name = 'held_lib.py' } = {}) {
  return new Child(t, python, [path.join(fixtures, 'held_lib.py'), db, mode, name]);
}

export function execHolder(t, db, { mode = 'write', program = 'node', name, cwd } = {}) {
  const script = program === 'python3' ? path.join(fixtures, 'held.py') : path.join(fixtures, 'held.mjs');
  const interpreter = program === 'python3' ? 'python3' : process.execPath;
  const args = ['exec', `--${mode}`, db, ...(name ? ['--name', name] : []), '--', interpreter, script];
  return new Child(t, dblaunchBin, args, { cwd });
}

export function hasPython() {
  return spawnSync('python3', ['-c', 'pass']).status === 0;
}

/**
 * The Python interpreter that has the Python package (`import dblaunch`):
 * $DBLAUNCH_PYTHON, else python3; null, with why, when it has not.
 */
export function pythonPackage() {
  const python = process.env.DBLAUNCH_PYTHON || 'python3';
  const probe = spawnSync(python, ['-c', 'import dblaunch; dblaunch.lock; dblaunch.status'], { encoding: 'utf8' });
  if (probe.status === 0) return { python };
  return {
    python: null,
    why: `${python} cannot import the Python package dblaunch (set DBLAUNCH_PYTHON to an interpreter that has it): Python programs take part through dblaunch exec only`,
  };
}

/** Runs the dblaunch executable; resolves to { code, stdout, stderr }. */
export function dblaunch(args, options = {}) {
  return new Promise((resolve, reject) => {
    const proc = spawn(dblaunchBin, args, { ...options, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    proc.stdout.on('data', (d) => {
      stdout += d;
    });
    proc.stderr.on('data', (d) => {
      stderr += d;
    });
    const timer = setTimeout(() => {
      proc.kill('SIGKILL');
      reject(new Error(`dblaunch ${args.join(' ')} still ran after 30 s`));
    }, 30_000);
    proc.on('error', reject);
    proc.on('exit', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}
