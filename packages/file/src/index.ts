/**
 * `@walship/file` — walship replicas in a local directory (Litestream v0.3 layout).
 * @packageDocumentation
 */
export { FileReplicaClient, expandFileReplicaPath } from './file-replica-client.js';
export type { FileReplicaClientOptions } from './file-replica-client.js';
export { fileBackend } from './backend.js';
