// `@walship/core`: the embedder's API — Replicator, DirectoryReplicator, Follower, restore,
// their options, events and errors, the ReplicaClient contract they take, age keys and the
// object stages. Backend authors also use `@walship/core/backend`; codecs are in
// `@walship/core/format`.
export * from './errors.js';
export * from './pos.js';
export type * from './replica-client.js';
export * from './age/index.js';
export { defaultStages, lz4Stage, type ObjectStage } from './pipeline.js';
export * from './logger.js';
export * from './duration.js';
export type * from './options.js';
export type * from './replicator-types.js';
export { Replicator } from './replicator-facade.js';
export { OPTION_DEFAULTS } from './defaults.js';
export * from './directory/index.js';
export { defaultMetaPath } from './db/meta-state.js';
export * from './restore/index.js';
export * from './follow/index.js';
export { DEFAULT_LEASE_TTL_MS, describeLeaseHolder, parseLeaseRecord, type LeaseRecord } from './replica/lease.js';
