// Bad input rejects with EINVAL before anything is queued.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';

import { lock, status, withLock } from 'dblaunch';

import { tempDir } from './helpers.mjs';

test('bad input rejects with EINVAL, and nothing is queued or made', async (t) => {
  const dir = tempDir(t);
  const db = path.join(dir, 'app.db');
  const cases = [
    ['a mode that is neither read nor write', () => lock(db, { mode: 'exclusive' }), /neither "read"/],
    ['an unknown option', () => lock(db, { timout: 10 }), /unknown option "timout"/],
    ['a negative timeout', () => lock(db, { timeout: -1 }), /timeout -1/],
    ['a timeout that is not a number', () => lock(db, { timeout: '10' }), /timeout "10"/],
    ['NaN as the timeout', () => lock(db, { timeout: Number.NaN }), /timeout NaN/],
    ['an empty name', () => lock(db, { name: ' ' }), /name/],
    ['a signal that is not an AbortSignal', () => lock(db, { signal: {} }), /AbortSignal/],
    ['options that are not an object', () => lock(db, 'write'), /options must be an object/],
    ['an empty path', () => lock(''), /not a database/],
    ['a number for a database', () => lock(7), /not a database/],
    ['no database at all', () => lock([]), /no database/],
    ['an unknown key in { read, write }', () => lock({ reed: db }), /the key "reed"/],
    ['{ read, write } and the mode option', () => lock({ read: db }, { mode: 'read' }), /not both/],
    ['withLock without a function', () => withLock(db, { mode: 'write' }), /fn must be a function/],
    [
      'one database both read and written',
      () => lock({ read: db, write: path.join(dir, '.', 'app.db') }),
      /both read and written/,
    ],
    ['a directory that does not exist', () => lock(path.join(dir, 'missing', 'app.db')), /does not exist/],
    ['a device', () => lock('/dev/null'), /not a database file/],
    ['a bare name without a manifest', () => lock('appdb'), /\.\/appdb/],
    ['a URL that is not a file', () => lock(new URL('https://example.invalid/x.db')), /not a file: URL/],
    ['status with an unknown option', () => status(db, { mode: 'read' }), /only option of status/],
  ];
  for (const [what, call, message] of cases) {
    const error = await call().then(
      () => assert.fail(`${what}: accepted`),
      (e) => e,
    );
    assert.equal(error.code, 'EINVAL', `${what}: ${error.stack}`);
    assert.equal(error.name, 'LockError', what);
    assert.match(error.message, message, what);
  }
  // Nothing was queued: no lock directory anywhere in the test's directory.
  assert.deepEqual(fs.readdirSync(dir), []);
});

test("a manifest name with a typo is refused with the manifest's names", async (t) => {
  const dir = tempDir(t);
  const manifest = path.join(dir, 'dblaunch.toml');
  fs.writeFileSync(manifest, '[databases]\nletters = "letters.db"\n');
  const error = await withLock('leters', { manifest }, () => assert.fail('granted')).catch((e) => e);
  assert.equal(error.code, 'EINVAL');
  assert.match(error.message, /did you mean `letters`\?/);
  assert.deepEqual(fs.readdirSync(dir), ['dblaunch.toml']);
  // The right name locks the manifest's path.
  await withLock('letters', { manifest }, (held) => {
    assert.deepEqual(held.databases, [{ path: path.join(dir, 'letters.db'), mode: 'write' }]);
  });
  // A file: URL is a path.
  await withLock(new URL(`file://${dir}/url.db`), (held) => {
    assert.equal(held.databases[0].path, path.join(dir, 'url.db'));
  });
});
