#!/usr/bin/env node
// Builds what the package ships, from the Rust workspace one level up:
//   dblaunch.<platform>-<arch>-gnu.node  the native module (crate dblaunch-node)
//   bin/dblaunch                         the dblaunch executable (`npx dblaunch`)
//
// Profiles: the module is built with the workspace's `node` profile (release,
// but a panic becomes a JavaScript exception instead of ending the process)
// and the executable with `release`, as shipped. DBLAUNCH_NODE_PROFILE and
// DBLAUNCH_NODE_BIN_PROFILE choose others (scripts/test-node uses cheaper
// ones: same code, no link-time optimisation).

const { execFileSync } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');

const here = path.resolve(__dirname, '..');
const root = path.resolve(here, '..');
const moduleProfile = process.env.DBLAUNCH_NODE_PROFILE || 'module';
const binProfile = process.env.DBLAUNCH_NODE_BIN_PROFILE || 'release';

function cargo(args) {
  console.error(`build: cargo ${args.join(' ')}`);
  execFileSync('cargo', args, { cwd: root, stdio: 'inherit' });
}

function targetDir() {
  const out = execFileSync('cargo', ['metadata', '--format-version=1', '--no-deps', '--locked'], {
    cwd: root,
    maxBuffer: 64 << 20,
  });
  return JSON.parse(out).target_directory;
}

// The folder cargo puts a profile's output in.
function outDir(target, profile) {
  const dir = { dev: 'debug', test: 'debug', release: 'release', bench: 'release' }[profile] ?? profile;
  return path.join(target, dir);
}

function copy(from, to) {
  fs.mkdirSync(path.dirname(to), { recursive: true });
  // A new file, not a rewrite of the old one: a Node process that has the
  // old module loaded keeps its mapping intact.
  fs.rmSync(to, { force: true });
  fs.copyFileSync(from, to);
  fs.chmodSync(to, 0o755);
  // Debug information (the dev profile has it) is no use in a package and
  // is most of a dev build's size.
  try {
    execFileSync('strip', ['--strip-debug', to]);
  } catch {
    // no strip(1): shipped as built
  }
  console.error(`build: ${path.relative(here, to)} (${(fs.statSync(to).size / 1048576).toFixed(1)} MiB)`);
}

if (process.platform !== 'linux') {
  console.error('build: dblaunch runs on Linux only');
  process.exit(1);
}

cargo(['build', '--locked', '-p', 'dblaunch-node', '--profile', moduleProfile]);
cargo(['build', '--locked', '-p', 'dblaunch', '--bin', 'dblaunch', '--profile', binProfile]);
const target = targetDir();
copy(
  path.join(outDir(target, moduleProfile), 'libdblaunch_node.so'),
  path.join(here, `dblaunch.${process.platform}-${process.arch}-gnu.node`),
);
copy(path.join(outDir(target, binProfile), 'dblaunch'), path.join(here, 'bin', 'dblaunch'));
