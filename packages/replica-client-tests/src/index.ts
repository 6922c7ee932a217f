/**
 * `@walship/replica-client-tests` — the conformance suite every walship `ReplicaClient`
 * (walship's own backends and third parties') runs.
 *
 * ```ts
 * import { test } from 'node:test';
 * import { replicaClientSuite, fileSystemBackdoor } from '@walship/replica-client-tests';
 *
 * replicaClientSuite({
 *   test,
 *   create: async () => {
 *     const root = await makeUniqueRoot();
 *     return { client: new MyClient({ root }), store: myBackdoor(root) };
 *   },
 * });
 * ```
 *
 * @packageDocumentation
 */
export type { ClientUnderTest, ReplicaClientSuiteOptions, StoreBackdoor, StoredObjectInfo, TestFn } from './types.js';
export { leasePreconditionGaps, leasePreconditionTestNames, replicaClientSuite, replicaClientTestNames } from './suite.js';
export { describeStoreKeys, snapshotKey, sortedStoreKeys, walSegmentKey } from './keys.js';
export { fileSystemBackdoor, type FileSystemBackdoorOptions } from './fs-backdoor.js';
export {
  bodyOf,
  digestStream,
  failingBody,
  generatedBody,
  generatedBodyDigest,
  pseudoRandomBytes,
  readAll,
} from './bodies.js';
