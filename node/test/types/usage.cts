// The declarations as a CommonJS module sees them (type-checked only).
import dblaunch = require('dblaunch');

async function main(): Promise<number> {
  const held: dblaunch.Lock = await dblaunch.lock('data/app.db', { mode: 'read' });
  held.release();
  return dblaunch.withLock(['a.db', 'b.db'], { timeout: 10 }, () => 1);
}

void main;
