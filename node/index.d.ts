/// <reference types="node" />

/** How a program uses a database: `read` is shared with other readers, `write` is exclusive. */
export type Mode = 'read' | 'write';

/**
 * A database: a path (it has a `/` or a `.`; relative to the current
 * directory; it need not exist yet), a `file:` URL, or the name of an entry
 * of the manifest's `[databases]` (`$DBLAUNCH_FILE`, else the first
 * `dblaunch.toml` in the current directory or a parent).
 */
export type Database = string | URL;

/**
 * What to lock: one database, several (each in the `mode` option), or
 * several in modes of their own. Every database is taken, or none.
 */
export type Databases =
  | Database
  | readonly Database[]
  | { read?: Database | readonly Database[]; write?: Database | readonly Database[] };

export interface LockOptions {
  /** For a database or a list of them (default `write`); not with `{ read, write }`. */
  mode?: Mode;
  /**
   * How long to wait, in milliseconds: the promise rejects with `EBUSY`
   * after it (0: try once, leave nothing queued). Default: as long as it takes.
   */
  timeout?: number;
  /** The name `dblaunch status` and busy messages show (default `$DBLAUNCH_PROGRAM`, else the script's base name). */
  name?: string;
  /** Aborting it ends the wait at once: the request leaves the queue and is never granted; the promise rejects with an `AbortError`. */
  signal?: AbortSignal;
  /** The manifest whose `[databases]` names resolve. */
  manifest?: string;
}

export interface HeldDatabase {
  /** The canonical path (symbolic links and `..` resolved), as `dblaunch status` shows it. */
  path: string;
  mode: Mode;
}

export interface FencingToken {
  key: string;
  token: number;
}

/** Databases held. */
export interface Lock extends AsyncDisposable, Disposable {
  readonly databases: HeldDatabase[];
  /** Whether `release()` was called. */
  readonly released: boolean;
  /** The fencing token of each key held in a lock backend (`[backend]`); empty without one. */
  readonly fencingTokens: FencingToken[];
  /** The fencing token, when exactly one key is held in a lock backend; else `null`. */
  readonly fencingToken: number | null;
  /** Releases now (later calls do nothing). */
  release(): void;
  [Symbol.asyncDispose](): Promise<void>;
  [Symbol.dispose](): void;
}

/** Who is in the way of a lock. `description` is how messages name it. */
export type Holder =
  | {
      kind: 'program';
      program: string;
      pid: number;
      mode: Mode;
      /** true: holds it; false: is queued ahead. */
      holding: boolean;
      since: string;
      description: string;
    }
  | {
      kind: 'leftover';
      program: string;
      mode: Mode;
      processes: { pid: number; command: string }[];
      description: string;
    }
  | {
      kind: 'orphan';
      program: string | null;
      pid: number;
      command: string;
      mode: Mode;
      since: string;
      description: string;
    }
  | { kind: 'foreign'; pid: number | null; command: string; mode: Mode; description: string }
  | {
      kind: 'remote';
      key: string;
      host: string;
      pid: number;
      program: string;
      mode: Mode;
      holding: boolean;
      token: number | null;
      since: string;
      lost: boolean;
      description: string;
    }
  | { kind: 'backend-silent'; server: string; description: string }
  | { kind: 'unknown'; ticket: string; why: string; description: string };

/**
 * Why a lock was not granted; nothing is left queued or held.
 * - `EBUSY`: still busy at the timeout; `holders` says who is in the way, and the message names them.
 * - `EDEADLK`: this context (or the program dblaunch runs it under) holds the database for reading and asked to write.
 * - `EINVAL`: the arguments name nothing lockable; rejected before anything is queued.
 * - `EIO`: the lock cannot be taken (its directory cannot be written, the lock backend cannot be reached, …).
 */
export class LockError extends Error {
  readonly name: 'LockError';
  readonly code: 'EBUSY' | 'EDEADLK' | 'EINVAL' | 'EIO';
  /** The database concerned, when there is one. */
  readonly database?: string;
  /** The mode asked for (`EBUSY`). */
  readonly mode?: Mode;
  /** Who was in the way, the holder first (`EBUSY`). */
  readonly holders?: Holder[];
  /** How long it waited, in milliseconds (`EBUSY`). */
  readonly waited?: number;
  /** The timeout, in milliseconds (`EBUSY`). */
  readonly timeout?: number;
  /** Who holds the database for reading (`EDEADLK`). */
  readonly holder?: string;
}

/** An aborted wait, as Node reports one; `cause` is the signal's reason. */
export class AbortError extends Error {
  readonly name: 'AbortError';
  readonly code: 'ABORT_ERR';
  constructor(message?: string, options?: { cause?: unknown });
}

/**
 * Takes the databases, runs `fn` in an async context of its own, and
 * releases them when what `fn` returns settles (or it throws). Resolves to
 * what `fn` returns. A withLock (or lock) inside `fn` re-enters what `fn`'s
 * context and the contexts around it hold.
 */
export function withLock<T>(db: Databases, fn: (lock: Lock) => T | PromiseLike<T>): Promise<Awaited<T>>;
export function withLock<T>(
  db: Databases,
  options: LockOptions | undefined,
  fn: (lock: Lock) => T | PromiseLike<T>,
): Promise<Awaited<T>>;

/**
 * Takes the databases; release the Lock with `release()` or `await using`.
 * Outside withLock each call is a holder of its own; inside a withLock
 * callback it re-enters what that context holds, and what it takes is
 * held by that context.
 */
export function lock(db: Databases, options?: LockOptions): Promise<Lock>;

export interface StatusPerson {
  pid: number;
  program: string;
  mode: Mode;
  since: string;
  command: string[];
  nested?: { holders: StatusPerson[]; waiters: StatusPerson[] };
}

/** The document `dblaunch status --json` prints. */
export interface StatusReport {
  databases: {
    path: string;
    holders: StatusPerson[];
    waiters: StatusPerson[];
    foreign: { pid: number; command: string[] }[];
  }[];
}

/**
 * Who holds and who waits for the databases (one, or a list; none: every
 * database of the manifest's `[databases]`), as `dblaunch status --json`
 * prints it.
 */
export function status(db?: Database | readonly Database[], options?: { manifest?: string }): Promise<StatusReport>;
