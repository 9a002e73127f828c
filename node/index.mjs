// The ES module entry point: the same module as require('dblaunch') (one
// instance, so async contexts and re-entry are shared by both).
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);
const dblaunch = require('./index.js');

export const { withLock, lock, status, LockError, AbortError } = dblaunch;
export default dblaunch;
