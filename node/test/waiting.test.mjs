// Waiting: off the event loop and off libuv's thread pool, and an aborted
// wait leaves the queue and is never granted.
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { promisify } from 'node:util';

import { AbortError, lock, withLock } from 'dblaunch';

import { agent, occupancy, queued, tempDir } from './helpers.mjs';

test('an aborted wait leaves the queue at once and is never granted', { timeout: 60_000 }, async (t) => {
  const dir = tempDir(t);
  const db = path.join(dir, 'app.db');
  const holder = await agent(t);
  holder.send({ op: 'lock', tag: 'w', db });
  await holder.next('granted');

  const controller = new AbortController();
  let ran = false;
  const waiting = withLock(db, { signal: controller.signal }, () => {
    ran = true;
  });
  await queued(db, process.pid);
  const after = await agent(t);
  after.send({ op: 'lock', tag: 'w', db });
  await queued(db, after.pid);

  const reason = new Error('no longer needed');
  const aborted = performance.now();
  controller.abort(reason);
  const error = await waiting.catch((e) => e);
  const took = performance.now() - aborted;
  t.diagnostic(`rejected ${took.toFixed(1)} ms after the abort`);
  assert.ok(error instanceof AbortError);
  assert.equal(error.name, 'AbortError');
  assert.equal(error.code, 'ABORT_ERR');
  assert.equal(error.cause, reason);
  assert.ok(took < 1000, `took ${took} ms`);
  // Out of the queue by the time the promise rejected.
  assert.deepEqual((await occupancy(db)).waiters, [after.pid]);

  // The holder lets go: the process queued behind gets it, never the aborted wait.
  holder.send({ op: 'release', tag: 'w' });
  await after.next('granted');
  assert.deepEqual((await occupancy(db)).holders, [after.pid]);
  after.send({ op: 'release', tag: 'w' });
  await after.next('released');
  assert.equal(ran, false);
  assert.deepEqual(await occupancy(db).then((o) => [o.holders, o.waiters]), [[], []]);
});

test('an aborted wait in another process leaves its queue too', { timeout: 60_000 }, async (t) => {
  const dir = tempDir(t);
  const db = path.join(dir, 'app.db');
  const held = await lock(db);
  const waiter = await agent(t);
  waiter.send({ op: 'withLock', tag: 'w', db });
  await queued(db, waiter.pid);
  waiter.send({ op: 'abort', tag: 'w' });
  const error = await waiter.next('error');
  assert.equal(error.name, 'AbortError');
  assert.deepEqual((await occupancy(db)).waiters, []);
  held.release();
  assert.ok(!waiter.events.some((e) => e.event === 'granted'));
});

test('a signal aborted before the call rejects at once with nothing queued', { timeout: 30_000 }, async (t) => {
  const dir = tempDir(t);
  const db = path.join(dir, 'app.db');
  const error = await lock(db, { signal: AbortSignal.abort() }).catch((e) => e);
  assert.equal(error.name, 'AbortError');
  assert.ok(!fs.existsSync(path.join(dir, '.app.db.dblaunch')), 'a lock directory was made');
  // A signal that is not aborted changes nothing.
  const h = await lock(db, { signal: new AbortController().signal });
  assert.deepEqual((await occupancy(db)).holders, [process.pid]);
  h.release();
});

test('the event loop keeps serving while a lock is awaited: a timer set before the wait fires on time', {
  timeout: 30_000,
}, async (t) => {
  const dir = tempDir(t);
  const db = path.join(dir, 'app.db');
  const holder = await agent(t);
  holder.send({ op: 'lock', tag: 'w', db });
  await holder.next('granted');

  const set = performance.now();
  const fired = new Promise((resolve) => setTimeout(() => resolve(performance.now()), 50));
  let ticks = 0;
  const interval = setInterval(() => ticks++, 10);
  const waiting = withLock(db, () => performance.now());
  const late = (await fired) - set - 50;
  t.diagnostic(`the timer fired ${late.toFixed(1)} ms late`);
  assert.ok(late < 40, `the timer fired ${late} ms late`);
  await queued(db, process.pid);
  const before = ticks;
  await new Promise((resolve) => setTimeout(resolve, 100));
  assert.ok(ticks - before >= 4, `only ${ticks - before} interval ticks in 100 ms`);
  clearInterval(interval);
  const released = performance.now();
  holder.send({ op: 'release', tag: 'w' });
  const granted = await waiting;
  t.diagnostic(`granted ${(granted - released).toFixed(1)} ms after the release was sent`);
});

test("more waits than libuv's thread pool has threads: fs, crypto and dns calls still complete promptly", {
  timeout: 60_000,
}, async (t) => {
  const dir = tempDir(t);
  const pool = Number(process.env.UV_THREADPOOL_SIZE || 4);
  const waits = pool * 4;
  const dbs = Array.from({ length: waits }, (_, i) => path.join(dir, `db${i}`));
  const holder = await agent(t);
  for (const [i, db] of dbs.entries()) {
    holder.send({ op: 'lock', tag: `w${i}`, db });
    await holder.next((e) => e.event === 'granted' && e.tag === `w${i}`);
  }
  const controller = new AbortController();
  const pending = dbs.map((db) => lock(db, { signal: controller.signal }).catch((e) => e));
  for (const db of dbs) await queued(db, process.pid);

  const file = path.join(dir, 'data');
  fs.writeFileSync(file, 'x'.repeat(4096));
  const started = performance.now();
  await Promise.all([
    ...Array.from({ length: 32 }, () => fs.promises.readFile(file)),
    ...Array.from({ length: 8 }, () => promisify(crypto.pbkdf2)('pw', 'salt', 1, 32, 'sha256')),
    promisify(fs.stat)(dir),
  ]);
  const took = performance.now() - started;
  t.diagnostic(`${waits} waits pending; 41 thread-pool calls took ${took.toFixed(1)} ms`);
  assert.ok(took < 2000, `thread-pool calls took ${took} ms`);
  controller.abort();
  for (const e of await Promise.all(pending)) assert.equal(e.name, 'AbortError');
  for (const db of dbs) assert.deepEqual((await occupancy(db)).waiters, []);
});
