// dblaunch for Node: the same fair, crash-safe lock per database as every
// `dblaunch exec`, `dblaunch run` and Python program on the machine.
//
//   await withLock('data/app.db', { mode: 'write', timeout: 30_000 }, async () => {
//     // open the database, work, close it
//   });
//
// Waits run on threads of the native module's own (never on the event loop,
// never on libuv's thread pool). Re-entry is per async context: everything a
// withLock callback runs (awaits included) re-enters what that callback and
// the callbacks around it hold; two withLock calls that are not nested
// exclude each other as two processes do. docs/node.md has the whole story.

const { AsyncLocalStorage } = require('node:async_hooks');
const fs = require('node:fs');
const path = require('node:path');
const { fileURLToPath } = require('node:url');

// `await using` needs Symbol.asyncDispose, which Node 18 lacks: Node's own
// name for it, as Node 20 defines it.
for (const [name, key] of [
  ['asyncDispose', 'nodejs.asyncDispose'],
  ['dispose', 'nodejs.dispose'],
]) {
  if (typeof Symbol[name] !== 'symbol') {
    Object.defineProperty(Symbol, name, { value: Symbol.for(key) });
  }
}

const native = loadNative();

function loadNative() {
  const file = `dblaunch.${process.platform}-${process.arch}-gnu.node`;
  const full = path.join(__dirname, file);
  if (!fs.existsSync(full)) {
    const built = fs.readdirSync(__dirname).filter((f) => f.endsWith('.node'));
    throw new Error(
      `dblaunch has no native module for ${process.platform}-${process.arch} (${file}); ` +
        `this package was built for: ${built.join(', ') || 'nothing'}. ` +
        'Build it from the source (npm run build in node/) on this platform.',
    );
  }
  return require(full);
}

/** Why a lock was not granted (`code` EBUSY, EDEADLK, EINVAL or EIO). */
class LockError extends Error {
  constructor(failure) {
    super(failure.message);
    this.name = 'LockError';
    this.code = failure.code;
    for (const key of ['database', 'mode', 'holder']) {
      if (failure[key] != null) this[key] = failure[key];
    }
    if (failure.holders != null) this.holders = failure.holders;
    if (failure.waitedMs != null) this.waited = failure.waitedMs;
    if (failure.timeoutMs != null) this.timeout = failure.timeoutMs;
  }
}

/** An aborted wait, as Node reports one (`name` AbortError, `code` ABORT_ERR). */
class AbortError extends Error {
  constructor(message = 'The operation was aborted', options = undefined) {
    super(message, options);
    this.name = 'AbortError';
    this.code = 'ABORT_ERR';
  }
}

function invalid(message) {
  return new LockError({ code: 'EINVAL', message });
}

function aborted(signal) {
  return new AbortError('the wait for the lock was aborted; it left the queue', {
    cause: signal.reason,
  });
}

const OPTIONS = ['mode', 'timeout', 'name', 'signal', 'manifest'];
const MODES = ['read', 'write'];

function checkMode(mode, what) {
  if (!MODES.includes(mode)) {
    throw invalid(
      `${what} ${JSON.stringify(mode)} is neither "read" (shared with other readers) nor "write" (exclusive)`,
    );
  }
  return mode;
}

function checkOptions(options) {
  if (options == null) return {};
  if (typeof options !== 'object' || Array.isArray(options)) {
    throw invalid(`the options must be an object ({ ${OPTIONS.join(', ')} }), not ${describe(options)}`);
  }
  for (const key of Object.keys(options)) {
    if (!OPTIONS.includes(key)) {
      throw invalid(`unknown option ${JSON.stringify(key)}: the options are ${OPTIONS.join(', ')}`);
    }
  }
  const { mode, timeout, name, signal, manifest } = options;
  const checked = {};
  if (mode !== undefined) checked.mode = checkMode(mode, 'mode');
  if (timeout !== undefined && timeout !== null && timeout !== Infinity) {
    if (typeof timeout !== 'number' || !Number.isFinite(timeout) || timeout < 0) {
      throw invalid(
        `timeout ${describe(timeout)} is not a number of milliseconds: give 0 or more (0 tries once), or leave it out to wait as long as it takes`,
      );
    }
    checked.timeout = timeout;
  }
  if (name !== undefined) {
    if (typeof name !== 'string' || name.trim() === '') {
      throw invalid(`name ${describe(name)} is not a name: give a non-empty string, as status shows it`);
    }
    checked.name = name;
  }
  if (signal !== undefined) {
    if (
      signal === null ||
      typeof signal !== 'object' ||
      typeof signal.aborted !== 'boolean' ||
      typeof signal.addEventListener !== 'function'
    ) {
      throw invalid(`signal ${describe(signal)} is not an AbortSignal`);
    }
    checked.signal = signal;
  }
  if (manifest !== undefined) {
    if (typeof manifest !== 'string' || manifest === '') {
      throw invalid(`manifest ${describe(manifest)} is not the path of a dblaunch.toml`);
    }
    checked.manifest = manifest;
  }
  return checked;
}

function describe(value) {
  if (typeof value === 'string') return JSON.stringify(value);
  if (typeof value === 'number' || typeof value === 'boolean' || value == null) return String(value);
  if (Array.isArray(value)) return 'an array';
  return `a ${typeof value}`;
}

function databaseArg(db) {
  if (db instanceof URL) {
    if (db.protocol !== 'file:') throw invalid(`${db.href} is not a file: URL`);
    return fileURLToPath(db);
  }
  if (typeof db !== 'string' || db === '') {
    throw invalid(
      `${describe(db)} is not a database: give the path of the database file (or directory), or a name of the manifest's [databases]`,
    );
  }
  return db;
}

function list(dbs) {
  return Array.isArray(dbs) ? dbs : [dbs];
}

/**
 * The databases and modes of a request: a database (a path, a file: URL or
 * a manifest name), a list of them (each in `mode`), or `{ read, write }`
 * (each a database or a list).
 */
function targetsOf(db, mode) {
  const targets = [];
  if (db !== null && typeof db === 'object' && !Array.isArray(db) && !(db instanceof URL)) {
    if (mode !== undefined) {
      throw invalid('give either { read, write } or the mode option, not both');
    }
    for (const key of Object.keys(db)) {
      const m = checkMode(key, 'the key');
      for (const one of list(db[key] ?? [])) targets.push({ db: databaseArg(one), mode: m });
    }
  } else {
    for (const one of list(db)) targets.push({ db: databaseArg(one), mode: mode ?? 'write' });
  }
  if (targets.length === 0) throw invalid('no database to lock was given');
  return targets;
}

// Re-entry. Each withLock callback runs in a context of its own; a context
// records what was granted in it (by its withLock, and by lock() calls made
// in it) and knows the context around it. A request made in a context
// re-enters what that context or one around it holds in a covering mode
// (write covers read and write), and is refused at once (EDEADLK) when one
// of them holds a database for reading and it asks to write: it would wait
// for itself. Everything else queues, as another process would.
const contexts = new AsyncLocalStorage();

function newContext(parent) {
  return { parent, held: new Map() };
}

function holdsAnything(context) {
  for (let c = context; c; c = c.parent) if (c.held.size > 0) return true;
  return false;
}

// The mode a context or one around it holds `database` in (write when any
// of them writes it), or undefined.
function heldIn(context, database) {
  let mode;
  for (let c = context; c; c = c.parent) {
    for (const held of c.held.get(database) ?? []) {
      if (held.mode === 'write') return 'write';
      mode = held.mode;
    }
  }
  return mode;
}

function covers(held, wanted) {
  return held === 'write' || wanted === 'read';
}

/** What is taken, and where it is recorded for re-entry. */
class Lock {
  #held;
  #reentered;
  #context;
  #released = false;

  constructor(held, reentered, context) {
    this.#held = held;
    this.#reentered = reentered;
    this.#context = context;
    if (held && context) {
      for (const { path: database, mode } of held.databases()) {
        const holds = context.held.get(database) ?? [];
        holds.push({ mode, by: this });
        context.held.set(database, holds);
      }
    }
  }

  /** Each database held, `{ path, mode }`: canonical paths, as status shows them. */
  get databases() {
    return [...(this.#held ? this.#held.databases() : []), ...this.#reentered];
  }

  /** The fencing token of each key held in a lock backend ([backend]). */
  get fencingTokens() {
    return this.#held ? this.#held.fencingTokens() : [];
  }

  /** The fencing token, when exactly one key is held in a lock backend. */
  get fencingToken() {
    const tokens = this.fencingTokens;
    return tokens.length === 1 ? tokens[0].token : null;
  }

  get released() {
    return this.#released;
  }

  /**
   * Releases now; later calls do nothing. Releasing a lock releases its
   * databases even where a re-entry (a nested withLock, a lock() in the
   * same context) still runs: re-entries borrow it.
   */
  release() {
    if (this.#released) return;
    this.#released = true;
    if (this.#context) {
      for (const [database, holds] of this.#context.held) {
        const others = holds.filter((h) => h.by !== this);
        if (others.length > 0) this.#context.held.set(database, others);
        else this.#context.held.delete(database);
      }
    }
    if (this.#held) this.#held.release();
  }

  async [Symbol.asyncDispose]() {
    this.release();
  }

  [Symbol.dispose]() {
    this.release();
  }

  get [Symbol.toStringTag]() {
    return 'dblaunch.Lock';
  }
}

/**
 * Takes `db` for a request made in context `around`; what is granted is
 * recorded in `into`.
 */
async function take(db, options, around, into) {
  const opts = checkOptions(options);
  const targets = targetsOf(db, opts.mode);
  const { signal } = opts;
  if (signal?.aborted) throw aborted(signal);
  let queue = targets;
  const reentered = [];
  if (holdsAnything(around)) {
    const found = native.resolve(
      targets.map((t) => t.db),
      opts.manifest,
    );
    if (!Array.isArray(found)) throw new LockError(found);
    queue = [];
    for (const [i, target] of targets.entries()) {
      const held = heldIn(around, found[i]);
      if (!held) {
        queue.push(target);
      } else if (covers(held, target.mode)) {
        if (!reentered.some((r) => r.path === found[i])) reentered.push({ path: found[i], mode: held });
      } else {
        throw new LockError({
          code: 'EDEADLK',
          database: found[i],
          holder: 'this async context (a withLock callback, or one around it)',
          message: `cannot take the write lock on ${found[i]}: this async context (a withLock callback, or one around it) holds it for reading and keeps it while this waits, so it could never be granted; take the write lock first (write covers read), or release the read lock before asking to write`,
        });
      }
    }
  }
  const held = queue.length > 0 ? await wait(queue, opts) : null;
  return new Lock(held, reentered, into);
}

async function wait(targets, { timeout, name, manifest, signal }) {
  const request = { targets, timeoutMs: timeout, name, manifest };
  if (!signal) return settled(await native.acquire(request), undefined);
  const canceller = new native.Canceller();
  const stop = onAbort(signal, canceller);
  try {
    return settled(await native.acquire(request, canceller), signal);
  } finally {
    stop();
  }
}

// One 'abort' listener per signal, whatever the number of waits it ends (a
// request's signal may end many): Node warns past ten listeners.
const cancellers = new WeakMap();

function onAbort(signal, canceller) {
  let waits = cancellers.get(signal);
  if (!waits) {
    waits = new Set();
    const listener = () => {
      for (const c of waits) c.cancel();
    };
    waits.listener = listener;
    cancellers.set(signal, waits);
    signal.addEventListener('abort', listener, { once: true });
  }
  waits.add(canceller);
  return () => {
    waits.delete(canceller);
    if (waits.size === 0 && cancellers.get(signal) === waits) {
      cancellers.delete(signal);
      signal.removeEventListener('abort', waits.listener);
    }
  };
}

function settled(outcome, signal) {
  if (outcome instanceof native.Held) {
    // Granted as the abort came: it is let go at once, never handed out.
    if (signal?.aborted) {
      outcome.release();
      throw aborted(signal);
    }
    return outcome;
  }
  if (outcome.code === 'ECANCELED' && signal) throw aborted(signal);
  throw new LockError(outcome);
}

/**
 * Takes the databases, runs `fn` (in an async context of its own, given the
 * lock), and releases them when what it returns settles, or it throws.
 * Resolves to what `fn` returns.
 */
async function withLock(db, options, fn) {
  if (fn === undefined && typeof options === 'function') {
    fn = options;
    options = undefined;
  }
  if (typeof fn !== 'function') {
    throw invalid(`withLock(db, options, fn): fn must be a function, not ${describe(fn)}`);
  }
  const around = contexts.getStore();
  const context = newContext(around);
  const held = await take(db, options, around, context);
  try {
    return await contexts.run(context, fn, held);
  } finally {
    held.release();
  }
}

/**
 * Takes the databases and resolves to a Lock to release (`release()`, or
 * `await using`). Outside a withLock callback every call is its own holder,
 * as a process is; inside one, it re-enters what the callback holds and
 * what it takes is held by that callback's context.
 */
function lock(db, options) {
  const context = contexts.getStore();
  return take(db, options, context, context);
}

/**
 * What `dblaunch status --json` prints for the databases (a database or a
 * list; none: every database of the manifest's [databases]).
 */
async function status(db, options) {
  if (options != null && (typeof options !== 'object' || Object.keys(options).some((k) => k !== 'manifest'))) {
    throw invalid('the only option of status is manifest');
  }
  const { manifest } = checkOptions(options);
  const dbs = db == null ? [] : list(db).map(databaseArg);
  const outcome = await native.status(dbs, manifest);
  if (typeof outcome !== 'string') throw new LockError(outcome);
  return JSON.parse(outcome);
}

module.exports = { withLock, lock, status, LockError, AbortError };
