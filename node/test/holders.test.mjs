// A Node holder as others see it: status names it with its pid and name; a
// busy error names it; its death (SIGKILL) hands the database over at once.
import assert from 'node:assert/strict';
import path from 'node:path';
import { test } from 'node:test';

import { lock, status, withLock } from 'dblaunch';

import { agent, dblaunch, fixtures, occupancy, queued, tempDir } from './helpers.mjs';

test('a Node holder killed with SIGKILL hands the database to the next in line at once', {
  timeout: 60_000,
}, async (t) => {
  const dir = tempDir(t);
  const db = path.join(dir, 'app.db');
  const holder = await agent(t, { name: 'doomed' });
  holder.send({ op: 'lock', tag: 'w', db });
  await holder.next('granted');
  const next = await agent(t, { name: 'next' });
  next.send({ op: 'lock', tag: 'w', db });
  await queued(db, next.pid);
  const killed = performance.now();
  process.kill(holder.pid, 'SIGKILL');
  const granted = await next.next('granted', 10_000);
  const handOver = granted.at - killed;
  t.diagnostic(`granted ${handOver.toFixed(1)} ms after the SIGKILL`);
  assert.ok(handOver < 1000, `the hand-over took ${handOver} ms`);
  assert.deepEqual((await occupancy(db)).holders, [next.pid]);
});

test('status --json names a Node holder with its pid and its name', { timeout: 60_000 }, async (t) => {
  const dir = tempDir(t);
  const db = path.join(dir, 'app.db');
  // The default name is the script's base name.
  const byScript = await agent(t);
  byScript.send({ op: 'lock', tag: 'r', db, options: { mode: 'read' } });
  await byScript.next('granted');
  // $DBLAUNCH_PROGRAM, as dblaunch sets for the programs it starts.
  const byEnv = await agent(t, { name: 'from-env' });
  byEnv.send({ op: 'lock', tag: 'r', db, options: { mode: 'read' } });
  await byEnv.next('granted');
  // The name option, over both.
  const byOption = await agent(t, { name: 'from-env-too' });
  byOption.send({ op: 'lock', tag: 'r', db, options: { mode: 'read', name: 'given-name' } });
  await byOption.next('granted');

  const cli = await dblaunch(['status', '--json', db]);
  assert.equal(cli.code, 0, cli.stderr);
  const report = JSON.parse(cli.stdout);
  const holders = report.databases[0].holders;
  const named = (pid) => holders.find((h) => h.pid === pid);
  assert.equal(named(byScript.pid)?.program, 'agent.mjs');
  assert.equal(named(byEnv.pid)?.program, 'from-env');
  assert.equal(named(byOption.pid)?.program, 'given-name');
  for (const h of holders) assert.equal(h.mode, 'read');
  assert.deepEqual(named(byScript.pid).command, [process.execPath, path.join(fixtures, 'agent.mjs')]);
  // status() gives the same document.
  assert.deepEqual(await status(db), report);
  assert.deepEqual(await status([db, db]), report);
});

test('status() of every database of the manifest, and by manifest name', { timeout: 30_000 }, async (t) => {
  const dir = tempDir(t);
  const manifest = path.join(dir, 'dblaunch.toml');
  const fs = await import('node:fs');
  fs.writeFileSync(manifest, '[databases]\nmain = "data/main.db"\nother = "other.db"\n');
  fs.mkdirSync(path.join(dir, 'data'));
  await withLock('main', { manifest }, async () => {
    const all = await status(undefined, { manifest });
    assert.deepEqual(
      all.databases.map((d) => d.path),
      [path.join(dir, 'data/main.db'), path.join(dir, 'other.db')],
    );
    assert.deepEqual(
      all.databases[0].holders.map((h) => h.pid),
      [process.pid],
    );
    const one = await status('main', { manifest });
    assert.deepEqual(one.databases, [all.databases[0]]);
    const cli = await dblaunch(['status', '--json', 'main'], { cwd: dir });
    assert.deepEqual(JSON.parse(cli.stdout), one);
  });
});

test('a timeout rejects with EBUSY, naming the holder, and leaves nothing queued', { timeout: 60_000 }, async (t) => {
  const dir = tempDir(t);
  const db = path.join(dir, 'app.db');
  const holder = await agent(t, { name: 'busy-holder' });
  holder.send({ op: 'lock', tag: 'w', db });
  await holder.next('granted');
  const started = performance.now();
  const error = await withLock(db, { timeout: 300 }, () => assert.fail('granted while held')).catch((e) => e);
  const waited = performance.now() - started;
  assert.equal(error.code, 'EBUSY');
  assert.equal(error.name, 'LockError');
  assert.ok(waited >= 300 && waited < 5000, `waited ${waited} ms`);
  assert.equal(error.database, db);
  assert.equal(error.mode, 'write');
  assert.equal(error.timeout, 300);
  assert.ok(error.waited >= 300);
  assert.equal(error.holders[0].kind, 'program');
  assert.equal(error.holders[0].pid, holder.pid);
  assert.equal(error.holders[0].program, 'busy-holder');
  assert.equal(error.holders[0].holding, true);
  assert.match(error.message, new RegExp(`busy-holder \\(pid ${holder.pid}\\) holds it for write`));
  assert.deepEqual((await occupancy(db)).waiters, []);

  // A timeout of zero tries once.
  const once = await lock(db, { mode: 'read', timeout: 0 }).catch((e) => e);
  assert.equal(once.code, 'EBUSY');
  assert.match(once.message, /busy-holder/);
  assert.deepEqual((await occupancy(db)).waiters, []);

  // And once it is free, zero takes it.
  holder.send({ op: 'release', tag: 'w' });
  await holder.next('released');
  const taken = await lock(db, { timeout: 0 });
  assert.deepEqual(taken.databases, [{ path: db, mode: 'write' }]);
  taken.release();
});

test('a process queued ahead is named too, as queued ahead', { timeout: 60_000 }, async (t) => {
  const dir = tempDir(t);
  const db = path.join(dir, 'app.db');
  const holder = await agent(t, { name: 'holder' });
  holder.send({ op: 'lock', tag: 'w', db });
  await holder.next('granted');
  const ahead = await agent(t, { name: 'ahead' });
  ahead.send({ op: 'lock', tag: 'w', db });
  await queued(db, ahead.pid);
  const error = await lock(db, { timeout: 100 }).catch((e) => e);
  assert.equal(error.code, 'EBUSY');
  const programs = error.holders.map((h) => [h.program, h.holding]);
  assert.deepEqual(programs, [
    ['holder', true],
    ['ahead', false],
  ]);
});
