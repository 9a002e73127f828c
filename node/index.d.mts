export * from './index.js';

import * as dblaunch from './index.js';
export default dblaunch;
