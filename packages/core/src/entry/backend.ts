// `@walship/core/backend`: what a storage backend's author needs beyond the errors and the
// `ReplicaClient` contract (both also in `@walship/core`): the replica layout and its names,
// leases over a directory, and the helpers the bundled backends share.
export type * from '../backend.js';
export { bodyChunkToBuffer, isRetryableHttpStatus } from '../backend-helpers.js';
export * from '../naming.js';
export * from '../replica/lease-store.js';
export type * from '../replica-client.js';
