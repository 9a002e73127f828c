// The declarations as an ES module sees them: compiled by tsc and run by
// scripts/test-node (`await using` is lowered by TypeScript, since Node 20
// has no such syntax yet).
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

import dblaunch, { AbortError, type Lock, LockError, type LockOptions, lock, status, withLock } from 'dblaunch';

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'dblaunch-types-'));
const db = path.join(dir, 'app.db');
const options: LockOptions = { mode: 'write', timeout: 1000, name: 'types', signal: new AbortController().signal };

const n: number = await withLock(db, options, async (held: Lock) => {
  const first = held.databases[0];
  const mode: 'read' | 'write' = first.mode;
  assert.equal(mode, 'write');
  return 1;
});
assert.equal(n, 1);
const s: string = await withLock({ read: [db], write: path.join(dir, 'b.db') }, () => 'x');
assert.equal(s, 'x');

{
  await using held = await lock(db, { timeout: 0 });
  const report = await status(db);
  assert.equal(report.databases[0].holders[0].pid, process.pid);
  assert.equal(held.fencingToken, null);
}
// Released at the end of the block.
assert.deepEqual((await status(db)).databases[0].holders, []);

try {
  await lock(db, { mode: 'read', timeout: -1 });
  assert.fail('accepted');
} catch (e) {
  assert.ok(e instanceof LockError);
  const code: 'EBUSY' | 'EDEADLK' | 'EINVAL' | 'EIO' = e.code;
  assert.equal(code, 'EINVAL');
  for (const h of e.holders ?? []) {
    if (h.kind === 'program') console.log(h.program, h.pid, h.holding);
  }
}
assert.equal(typeof AbortError, 'function');
assert.equal(dblaunch.withLock, withLock);
fs.rmSync(dir, { recursive: true });
console.log('types: ok');
