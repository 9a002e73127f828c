// withLock and lock inside one process: release when the function settles
// or throws, exclusion between calls, re-entry per async context, several
// databases at once.
import assert from 'node:assert/strict';
import { once } from 'node:events';
import path from 'node:path';
import { test } from 'node:test';
import { Worker } from 'node:worker_threads';

import { LockError, lock, withLock } from 'dblaunch';

import { fixtures, occupancy, queued, tempDir, until } from './helpers.mjs';

const free = async (db) => assert.deepEqual(await occupancy(db).then((o) => [o.holders, o.waiters]), [[], []]);

test('withLock resolves to what the function returns, and releases', async (t) => {
  const db = path.join(tempDir(t), 'app.db');
  assert.equal(await withLock(db, () => 42), 42);
  assert.equal(
    await withLock(db, { mode: 'read' }, async (held) => {
      assert.deepEqual(held.databases, [{ path: db, mode: 'read' }]);
      assert.equal(held.released, false);
      assert.equal(held.fencingToken, null);
      assert.deepEqual((await occupancy(db)).holders, [process.pid]);
      return 'done';
    }),
    'done',
  );
  await free(db);
});

test('withLock releases when its function throws or rejects', async (t) => {
  const db = path.join(tempDir(t), 'app.db');
  await assert.rejects(
    withLock(db, () => {
      throw new Error('sync failure');
    }),
    /sync failure/,
  );
  await free(db);
  await assert.rejects(
    withLock(db, async () => {
      await new Promise((resolve) => setImmediate(resolve));
      throw new TypeError('async failure');
    }),
    TypeError,
  );
  await free(db);
  // Free for anyone, at once.
  (await lock(db, { timeout: 0 })).release();
});

test('two withLock calls of one process exclude each other as two processes do', async (t) => {
  const db = path.join(tempDir(t), 'app.db');
  let inside = 0;
  let most = 0;
  const order = [];
  const section = (id) => async () => {
    inside++;
    most = Math.max(most, inside);
    order.push(id);
    for (let i = 0; i < 3; i++) await new Promise((resolve) => setImmediate(resolve));
    inside--;
  };
  await Promise.all(Array.from({ length: 8 }, (_, i) => withLock(db, section(i))));
  assert.equal(most, 1);
  assert.equal(order.length, 8);
  // Readers share.
  let readers = 0;
  let together = 0;
  await Promise.all(
    Array.from({ length: 4 }, () =>
      withLock(db, { mode: 'read' }, async () => {
        readers++;
        together = Math.max(together, readers);
        await new Promise((resolve) => setTimeout(resolve, 20));
        readers--;
      }),
    ),
  );
  assert.ok(together > 1, 'readers did not share');
  await free(db);
});

test('a nested withLock re-enters what its context holds; read then write fails at once with EDEADLK', async (t) => {
  const dir = tempDir(t);
  const db = path.join(dir, 'app.db');
  const other = path.join(dir, 'other.db');
  await withLock(db, { mode: 'write' }, async () => {
    // Write covers write and read, by any name of the same file.
    const inner = await withLock(path.join(dir, '.', 'app.db'), { timeout: 0 }, async (held) => {
      await new Promise((resolve) => setImmediate(resolve));
      return withLock(db, { mode: 'read', timeout: 0 }, () => held.databases);
    });
    assert.deepEqual(inner, [{ path: db, mode: 'write' }]);
    // One holder, nothing queued: re-entry does not queue.
    assert.deepEqual(await occupancy(db).then((o) => [o.holders, o.waiters]), [[process.pid], []]);
    // lock() in the context re-enters too.
    const again = await lock(db, { timeout: 0 });
    again.release();
    assert.deepEqual((await occupancy(db)).holders, [process.pid]);
  });
  await free(db);

  await withLock(db, { mode: 'read' }, async () => {
    const started = performance.now();
    const error = await withLock(db, { mode: 'write' }, () => assert.fail('granted')).catch((e) => e);
    assert.ok(error instanceof LockError);
    assert.equal(error.code, 'EDEADLK');
    assert.equal(error.database, db);
    assert.match(error.message, /holds it for reading/);
    assert.ok(performance.now() - started < 1000);
    // Deeper down too, and with other databases asked for beside it: nothing is taken.
    await withLock(other, async () => {
      const deeper = await lock([other, db], { mode: 'write' }).catch((e) => e);
      assert.equal(deeper.code, 'EDEADLK');
    });
    assert.deepEqual(await occupancy(db).then((o) => o.waiters), []);
  });
  await free(db);
  await free(other);
});

test('a context that still reads a database after one of its reads ended refuses to write it', async (t) => {
  const dir = tempDir(t);
  const db = path.join(dir, 'app.db');
  await withLock(path.join(dir, 'other.db'), async () => {
    // Either of two reads ending first (whichever was granted last).
    for (const order of [
      [0, 1],
      [1, 0],
    ]) {
      const reads = await Promise.all([lock(db, { mode: 'read' }), lock(db, { mode: 'read' })]);
      reads[order[0]].release();
      const error = await withLock(db, { timeout: 1000 }, () => assert.fail('granted')).catch((e) => e);
      assert.equal(error.code, 'EDEADLK');
      reads[order[1]].release();
    }
    // Now nothing of it is held here: a write queues, and is granted.
    await withLock(db, { timeout: 1000 }, () => {});
  });
  await free(db);
});

test('siblings in one context exclude each other unless the context holds the database', async (t) => {
  const dir = tempDir(t);
  const db = path.join(dir, 'app.db');
  const outer = path.join(dir, 'outer.db');
  let inside = 0;
  let most = 0;
  const section = async () => {
    inside++;
    most = Math.max(most, inside);
    await new Promise((resolve) => setTimeout(resolve, 10));
    inside--;
  };
  // The context holds only outer.db: its two children queue for app.db.
  await withLock(outer, () => Promise.all([withLock(db, section), withLock(db, section)]));
  assert.equal(most, 1);
  // The context holds app.db: both children re-enter it, and run together.
  most = 0;
  await withLock(db, () => Promise.all([withLock(db, section), withLock(db, section)]));
  assert.equal(most, 2);
  await free(db);
});

test('lock() outside withLock is a holder of its own; a second one waits for the first', async (t) => {
  const db = path.join(tempDir(t), 'app.db');
  const first = await lock(db);
  const error = await lock(db, { timeout: 50 }).catch((e) => e);
  assert.equal(error.code, 'EBUSY');
  assert.equal(error.holders[0].pid, process.pid);
  const second = lock(db);
  first.release();
  first.release(); // a second release does nothing
  assert.equal(first.released, true);
  (await second).release();
  await free(db);
});

test('Symbol.asyncDispose and Symbol.dispose release (what `await using` and `using` call)', async (t) => {
  const db = path.join(tempDir(t), 'app.db');
  const held = await lock(db);
  assert.deepEqual((await occupancy(db)).holders, [process.pid]);
  await held[Symbol.asyncDispose]();
  assert.equal(held.released, true);
  await free(db);
  const again = await lock(db);
  again[Symbol.dispose]();
  await free(db);
});

test('several databases at once: every one is taken, or none', async (t) => {
  const dir = tempDir(t);
  const [a, b, c] = ['a.db', 'b.db', 'c.db'].map((n) => path.join(dir, n));
  await withLock({ read: [a, b], write: c }, async (held) => {
    assert.deepEqual(held.databases.map((d) => [path.basename(d.path), d.mode]).sort(), [
      ['a.db', 'read'],
      ['b.db', 'read'],
      ['c.db', 'write'],
    ]);
    // Another holder may read a and b, but not c.
    const reader = await lock([a, b], { mode: 'read', timeout: 0 });
    reader.release();
  });
  const busy = await lock(b, { mode: 'write' });
  // a and c are free, b is not: after the timeout none of them is held.
  const error = await lock([a, b, c], { mode: 'write', timeout: 100 }).catch((e) => e);
  assert.equal(error.code, 'EBUSY');
  assert.equal(error.database, b);
  busy.release();
  for (const db of [a, b, c]) await free(db);
});

test('worker threads exclude each other like processes; a worker that ends leaves the queue and lets go', async (t) => {
  const db = path.join(tempDir(t), 'app.db');
  const script = path.join(fixtures, 'worker.cjs');
  const holder = new Worker(script, { workerData: { db } });
  t.after(() => holder.terminate());
  await once(holder, 'message');
  assert.equal((await once(holder, 'message'))[0], 'held');
  const busy = await lock(db, { timeout: 0 }).catch((e) => e);
  assert.equal(busy.code, 'EBUSY');
  await holder.terminate();
  await until('the ended worker to let go', async () => (await occupancy(db)).holders.length === 0);

  const held = await lock(db);
  const waiter = new Worker(script, { workerData: { db } });
  t.after(() => waiter.terminate());
  await once(waiter, 'message');
  await queued(db, process.pid);
  await waiter.terminate();
  await until('the ended worker to leave the queue', async () => (await occupancy(db)).waiters.length === 0);
  held.release();
  await free(db);
});
