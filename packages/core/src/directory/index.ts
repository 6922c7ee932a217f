export { DirectoryReplicator } from './directory-replicator.js';
export { compilePattern } from './scan.js';
export type * from './types.js';
