// PGlite (a real one) keeps one writer per data directory only if its
// programs take turns: without a lock, processes that write one data
// directory lose acknowledged rows; with withLock (and dblaunch exec beside
// it) none is lost.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import { createRequire } from 'node:module';
import os from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';

import { Child, dblaunchBin, fixtures, tempDir } from './helpers.mjs';

const script = path.join(fixtures, 'pglite.mjs');
let missing;
try {
  createRequire(path.join(fixtures, 'x.js')).resolve('@electric-sql/pglite');
} catch {
  missing = '@electric-sql/pglite is not installed beside the tests (scripts/test-node installs it)';
  if (process.env.DBLAUNCH_REQUIRE_TOOLS === '1') throw new Error(missing);
}

// A data directory made once (initdb takes seconds) and copied for each test.
let template;
const ending = [];
before(async () => {
  if (missing) return;
  template = fs.mkdtempSync(path.join(os.tmpdir(), 'dblaunch-pglite-'));
  const init = new Child({ after: (end) => ending.push(end) }, process.execPath, [
    script,
    'once',
    path.join(template, 'data'),
    'init-0',
    '0',
  ]);
  assert.deepEqual(await init.ended(180_000), { code: 0, signal: null }, init.stderr);
});
after(async () => {
  for (const end of ending) await end();
  if (template) fs.rmSync(template, { recursive: true, force: true });
});

function dataDir(t) {
  const dir = path.join(tempDir(t), 'pgdata');
  fs.cpSync(path.join(template, 'data'), dir, { recursive: true });
  return dir;
}

const acked = (children) => children.flatMap((c) => c.events.filter((e) => e.event === 'ack').map((e) => e.row));

/** The rows in the data directory, in insertion order (null if it cannot be opened). */
async function rows(t, dir) {
  const count = new Child(t, process.execPath, [script, 'count', dir]);
  const event = await count.next((e) => e.event === 'rows' || e.event === 'unreadable', 60_000);
  return event.rows ?? null;
}

test('without a lock, processes writing one data directory lose acknowledged rows', {
  skip: missing,
  timeout: 180_000,
}, async (t) => {
  const dir = dataDir(t);
  const perProcess = 10;
  const children = [0, 1, 2, 3].map(
    (i) => new Child(t, process.execPath, [script, 'unlocked', dir, `p${i}`, String(perProcess)]),
  );
  // Every process opens the directory before any of them inserts; a process
  // that cannot even start PGlite beside the others takes no part.
  const opened = [];
  for (const child of children) {
    const first = await child.next((e) => e.event === 'open', 90_000).catch(() => null);
    if (first) opened.push(child);
  }
  for (const child of opened) child.send('go');
  for (const child of opened) await child.next('inserted', 60_000);
  for (const child of opened) child.send('close');
  for (const child of opened) await child.next('closed', 60_000);
  const sent = acked(opened);
  const found = await rows(t, dir);
  const kept = new Set((found ?? []).map((r) => r.id));
  const lost = sent.filter((row) => !kept.has(row));
  t.diagnostic(
    `without a lock: ${opened.length} of ${children.length} processes opened the directory together; ${sent.length} rows acknowledged, ${found === null ? 'the directory cannot be opened any more' : `${kept.size} in the directory`}: ${lost.length} acknowledged rows lost`,
  );
  assert.ok(opened.length >= 2, 'fewer than two processes could open the directory together');
  assert.ok(lost.length > 0, 'no row was lost: the failure this package prevents did not happen here');
});

test('processes writing one data directory through withLock keep every acknowledged row', {
  skip: missing,
  timeout: 300_000,
}, async (t) => {
  const dir = dataDir(t);
  const [batches, perBatch] = [2, 5];
  const children = [0, 1, 2, 3].map(
    (i) => new Child(t, process.execPath, [script, 'locked', dir, `p${i}`, String(batches), String(perBatch)]),
  );
  for (const child of children) assert.deepEqual(await child.ended(240_000), { code: 0, signal: null }, child.stderr);
  const sent = acked(children);
  assert.equal(sent.length, children.length * batches * perBatch);
  const found = await rows(t, dir);
  assert.ok(found, 'the data directory cannot be opened');
  assert.deepEqual(found.map((r) => r.id).sort(), [...sent].sort());
  // Each batch is whole: nothing of another process came between its rows.
  const runs = found.map((r) => r.id.replace(/-\d+$/, ''));
  for (let i = 0; i < runs.length; i += perBatch) {
    assert.equal(new Set(runs.slice(i, i + perBatch)).size, 1, `batches interleave at row ${i}: ${runs}`);
  }
  t.diagnostic(`with withLock: ${sent.length} rows acknowledged, ${found.length} in the directory, none lost`);
});

test('a long-running process that locks per operation takes turns with dblaunch exec, and neither loses a row', {
  skip: missing,
  timeout: 300_000,
}, async (t) => {
  const dir = dataDir(t);
  const [operations, perOperation] = [4, 2];
  const long = new Child(t, process.execPath, [
    script,
    'locked',
    dir,
    'long',
    String(operations),
    String(perOperation),
  ]);
  const cli = [];
  for (let i = 0; i < operations; i++) {
    const child = new Child(t, dblaunchBin, [
      'exec',
      '--write',
      dir,
      '--',
      process.execPath,
      script,
      'once',
      dir,
      `cli-${i}`,
      String(perOperation),
    ]);
    cli.push(child);
    assert.deepEqual(await child.ended(120_000), { code: 0, signal: null }, child.stderr);
  }
  assert.deepEqual(await long.ended(120_000), { code: 0, signal: null }, long.stderr);
  const sent = acked([long, ...cli]);
  assert.equal(sent.length, 2 * operations * perOperation);
  const found = await rows(t, dir);
  assert.ok(found, 'the data directory cannot be opened');
  assert.deepEqual(found.map((r) => r.id).sort(), [...sent].sort());
  const sources = found.map((r) => r.source);
  const turns = sources.filter((s, i) => i > 0 && s !== sources[i - 1]).length;
  t.diagnostic(`long-running process and dblaunch exec: ${found.length} rows, none lost; ${turns} changes of writer`);
  assert.ok(turns >= 2, `the two did not take turns: ${sources}`);
});
