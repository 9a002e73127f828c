// Mutual exclusion and FIFO order between Node processes, `dblaunch exec`
// and Python programs: one queue per database for all of them.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';

import {
  agent,
  Child,
  dblaunchBin,
  execHolder,
  fixtures,
  hasPython,
  occupancy,
  pythonHolder,
  pythonPackage,
  queued,
  tempDir,
} from './helpers.mjs';

test('Node processes are granted a written database one at a time, in the order they queued', {
  timeout: 60_000,
}, async (t) => {
  const dir = tempDir(t);
  const db = path.join(dir, 'app.db');
  const agents = [];
  for (let i = 0; i < 4; i++) agents.push(await agent(t, { name: `agent-${i}` }));
  agents[0].send({ op: 'lock', tag: 'w', db });
  await agents[0].next('granted');
  for (const a of agents.slice(1)) {
    a.send({ op: 'lock', tag: 'w', db });
    await queued(db, a.pid);
  }
  const { waiters } = await occupancy(db);
  assert.deepEqual(
    waiters,
    agents.slice(1).map((a) => a.pid),
  );
  for (let i = 0; i < agents.length; i++) {
    if (i > 0) await agents[i].next('granted');
    // Only the one granted holds it; the rest still wait, in order.
    const now = await occupancy(db);
    assert.deepEqual(now.holders, [agents[i].pid]);
    assert.deepEqual(
      now.waiters,
      agents.slice(i + 1).map((a) => a.pid),
    );
    for (const later of agents.slice(i + 1)) {
      assert.ok(!later.events.some((e) => e.event === 'granted'), `agent ${later.pid} was granted out of turn`);
    }
    agents[i].send({ op: 'release', tag: 'w' });
    await agents[i].next('released');
  }
  assert.deepEqual((await occupancy(db)).holders, []);
});

test('readers hold together; a writer waits for them, and readers queued behind the writer wait for it', {
  timeout: 60_000,
}, async (t) => {
  const dir = tempDir(t);
  const db = path.join(dir, 'app.db');
  const [r1, r2, w, r3] = [await agent(t), await agent(t), await agent(t), await agent(t)];
  r1.send({ op: 'lock', tag: 'r', db, options: { mode: 'read' } });
  r2.send({ op: 'lock', tag: 'r', db, options: { mode: 'read' } });
  await r1.next('granted');
  await r2.next('granted');
  w.send({ op: 'lock', tag: 'w', db, options: { mode: 'write' } });
  await queued(db, w.pid);
  r3.send({ op: 'lock', tag: 'r', db, options: { mode: 'read' } });
  await queued(db, r3.pid);
  assert.deepEqual((await occupancy(db)).holders.sort(), [r1.pid, r2.pid].sort());
  r1.send({ op: 'release', tag: 'r' });
  await r1.next('released');
  r2.send({ op: 'release', tag: 'r' });
  await w.next('granted');
  assert.deepEqual((await occupancy(db)).holders, [w.pid]);
  assert.ok(!r3.events.some((e) => e.event === 'granted'), 'a reader overtook the queued writer');
  w.send({ op: 'release', tag: 'w' });
  await r3.next('granted');
});

test('one queue for Node, dblaunch exec and Python under dblaunch exec, in FIFO order', {
  timeout: 60_000,
}, async (t) => {
  const dir = tempDir(t);
  const db = path.join(dir, 'app.db');
  const first = await agent(t, { name: 'node-first' });
  first.send({ op: 'withLock', tag: 'w', db });
  await first.next('granted');
  const order = [];
  const viaExec = execHolder(t, db, { name: 'exec-second' });
  await queued(db, viaExec.pid);
  order.push(['exec-second', viaExec]);
  const node = await agent(t, { name: 'node-third' });
  node.send({ op: 'withLock', tag: 'w', db });
  await queued(db, node.pid);
  order.push(['node-third', node]);
  if (hasPython()) {
    const py = execHolder(t, db, { program: 'python3', name: 'python-fourth' });
    await queued(db, py.pid);
    order.push(['python-fourth', py]);
  } else {
    t.diagnostic('python3 is not installed: the Python program is left out of this queue');
  }
  const { python, why } = pythonPackage();
  if (python) {
    const lib = pythonHolder(t, python, db, { name: 'python-package-fifth' });
    await queued(db, lib.pid);
    order.push(['python-package-fifth', lib]);
  } else {
    t.diagnostic(why);
  }
  const names = (await occupancy(db)).report.waiters.map((p) => p.program);
  assert.deepEqual(
    names,
    order.map(([name]) => name),
  );
  first.send({ op: 'release', tag: 'w' });
  for (const [name, child] of order) {
    await child.next('granted');
    const { report } = await occupancy(db);
    assert.deepEqual(
      report.holders.map((p) => p.program),
      [name],
    );
    if (child === node) child.send({ op: 'release', tag: 'w' });
    else child.proc.stdin.end('\n');
  }
  await viaExec.ended();
});

test('critical sections of Node, dblaunch exec and Python processes never overlap and lose no increment', {
  timeout: 120_000,
}, async (t) => {
  const dir = tempDir(t);
  const db = path.join(dir, 'counter.db');
  fs.writeFileSync(path.join(dir, 'counter'), '0');
  const script = path.join(fixtures, 'critical.mjs');
  const perNode = 40;
  const nodes = [0, 1, 2].map((i) => new Child(t, process.execPath, [script, dir, `node${i}`, String(perNode), db]));
  // Python programs that lock with the Python package, when it is there.
  const { python: withPackage, why } = pythonPackage();
  if (!withPackage) t.diagnostic(why);
  const libs = withPackage
    ? [0, 1].map(
        (i) => new Child(t, withPackage, [path.join(fixtures, 'critical_lib.py'), dir, `py${i}`, String(perNode), db]),
      )
    : [];
  const execs = [];
  const python = hasPython();
  if (!python) t.diagnostic('python3 is not installed: no Python processes take part');
  // Exec'd programs, one section each, started while the Node processes run.
  for (let i = 0; i < 20; i++) {
    const [cmd, file] = python && i % 2 ? ['python3', 'critical.py'] : [process.execPath, 'critical.mjs'];
    const child = new Child(t, dblaunchBin, [
      'exec',
      '--write',
      db,
      '--',
      cmd,
      path.join(fixtures, file),
      dir,
      `exec${i}`,
    ]);
    execs.push(child);
    await child.ended(60_000);
  }
  for (const child of [...nodes, ...libs]) {
    assert.deepEqual(await child.ended(60_000), { code: 0, signal: null }, child.stderr);
  }
  for (const child of execs) assert.deepEqual(child.exit, { code: 0, signal: null }, child.stderr);
  const total = (nodes.length + libs.length) * perNode + execs.length;
  assert.equal(fs.readFileSync(path.join(dir, 'counter'), 'utf8'), String(total));
  const log = fs.readFileSync(path.join(dir, 'log'), 'utf8').trim().split('\n');
  assert.equal(log.length, 2 * total);
  for (let i = 0; i < log.length; i += 2) {
    assert.ok(
      log[i].startsWith('+') && log[i + 1] === `-${log[i].slice(1)}`,
      `sections overlap at line ${i}: ${log.slice(i, i + 4)}`,
    );
  }
  // Processes took turns: the sections are not all one process's in a row.
  const switches = log.filter((l, i) => i % 2 === 0 && i > 0 && l !== log[i - 2]).length;
  assert.ok(switches > 10, `only ${switches} switches between processes`);
});
