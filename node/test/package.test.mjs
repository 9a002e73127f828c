// The package as installed: the dblaunch command, and one module for
// require and import.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { test } from 'node:test';
import esmDefault, * as esm from 'dblaunch';

import { packageDir } from './helpers.mjs';

const require = createRequire(import.meta.url);

test('npx dblaunch --help runs the native dblaunch executable', { timeout: 60_000 }, (t) => {
  // The project the package is installed in (npx looks there first).
  const project = path.resolve(packageDir, '..', '..');
  const link = path.join(project, 'node_modules', '.bin', 'dblaunch');
  if (!fs.existsSync(link)) {
    t.skip('not an installed package (run through scripts/test-node)');
    return;
  }
  const target = fs.realpathSync(link);
  assert.equal(target, path.join(packageDir, 'bin', 'dblaunch'));
  const head = Buffer.alloc(4);
  const fd = fs.openSync(target, 'r');
  fs.readSync(fd, head, 0, 4, 0);
  fs.closeSync(fd);
  assert.deepEqual([...head], [0x7f, 0x45, 0x4c, 0x46], 'not an ELF executable');
  const run = spawnSync('npx', ['--no-install', 'dblaunch', '--help'], { cwd: project, encoding: 'utf8' });
  assert.equal(run.status, 0, run.stderr);
  assert.match(run.stdout, /Usage: dblaunch/);
  assert.match(run.stdout, /exec/);
  const version = spawnSync('npx', ['--no-install', 'dblaunch', '--version'], { cwd: project, encoding: 'utf8' });
  assert.match(version.stdout, /dblaunch \d+\.\d+\.\d+/);
});

test('require and import give one module', () => {
  const cjs = require('dblaunch');
  assert.equal(esmDefault, cjs);
  for (const name of ['withLock', 'lock', 'status', 'LockError', 'AbortError']) {
    assert.equal(typeof cjs[name], 'function', name);
    assert.equal(esm[name], cjs[name], name);
  }
});

test('the package ships types and the native module, and nothing of the build', () => {
  const files = fs.readdirSync(packageDir).sort();
  for (const f of ['index.js', 'index.mjs', 'index.d.ts', 'index.d.mts', 'package.json'])
    assert.ok(files.includes(f), f);
  assert.ok(
    files.some((f) => /^dblaunch\.linux-.*\.node$/.test(f)),
    `no native module in ${files}`,
  );
  if (packageDir.includes(`${path.sep}node_modules${path.sep}`)) {
    for (const f of ['Cargo.toml', 'src', 'test', 'scripts']) assert.ok(!files.includes(f), `${f} is shipped`);
  }
});
