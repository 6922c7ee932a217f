import type { Readable } from 'node:stream';
import type { ReplicaClient } from '@walship/core';

/** What the store itself records about one object (see {@link StoreBackdoor.statKey}). */
export interface StoredObjectInfo {
  /** Stored size in bytes. */
  size: number;
  /**
   * The object's creation time as the store records it, read through the store's own API (file
   * or SFTP mtime, S3 `LastModified` from HeadObject, GCS `timeCreated`, ABS creation time).
   */
  createdAt: Date;
}

/**
 * Raw access to the store behind a client, bypassing the client under test. The suite uses it
 * to check what really landed in storage (exact keys, bytes and creation times), to plant
 * foreign objects and odd names, and to clean up after each test.
 *
 * Keys are relative to the client's root and `/`-separated, e.g.
 * `generations/0123456789abcdef/wal/00000001_00000000.wal.lz4`.
 */
export interface StoreBackdoor {
  /**
   * Every object key under the client's root, root-relative, `/`-separated, in any order.
   * Only objects (files), never folders or directory markers. Empty when the root is absent.
   */
  listKeys(): Promise<string[]>;
  /** The stored bytes of `key`, or `undefined` when it does not exist. */
  readKey(key: string): Promise<Buffer | undefined>;
  /**
   * The stored bytes of `key` as a stream, or `undefined` when it does not exist (used for the
   * large objects, which must not be held in memory). Resolves only once the object is known to
   * exist: a missing object resolves `undefined`, not a stream that errors later.
   */
  openKey(key: string): Promise<Readable | undefined>;
  /**
   * Size and creation time of `key` as the store records them, or `undefined` when it does not
   * exist. The suite requires the `createdAt` a client lists to equal this time (to within
   * {@link timeResolutionMs}), so a client that reports the listing time, its own clock, or a
   * constant fails.
   */
  statKey(key: string): Promise<StoredObjectInfo | undefined>;
  /**
   * Resolution of the store's creation times, in milliseconds: the largest difference the suite
   * allows between a listed `createdAt` and {@link statKey}'s, and the gap it leaves between
   * writes whose times must differ. `1` for stores with millisecond times (local files, GCS);
   * `1000` for stores that keep whole seconds (SFTP mtimes, S3's HeadObject `Last-Modified`,
   * ABS). Must be a positive integer, at most 60000.
   */
  readonly timeResolutionMs: number;
  /** Stores `body` at `key` (creating parent folders where the store has them). */
  writeKey(key: string, body: Buffer): Promise<void>;
  /** Removes everything under the root. Must succeed when the root is absent. */
  cleanup(): Promise<void>;
}

/** What `create` returns for each test: a fresh client and raw access to its (empty) root. */
export interface ClientUnderTest {
  client: ReplicaClient;
  store: StoreBackdoor;
}

/**
 * Registers one test. `node:test`'s `test`, vitest's `it` and jest's `test` all fit. The suite
 * only uses `node:assert`, so any runner that treats a thrown error as a failure works.
 */
export type TestFn = (name: string, fn: () => Promise<void>) => unknown;

/** Options of {@link replicaClientSuite}. */
export interface ReplicaClientSuiteOptions {
  /** Registers a test (see {@link TestFn}). */
  test: TestFn;
  /**
   * A fresh client on an empty, unique root, and a backdoor to that root. Called once per
   * test; the suite always calls `client.close?.()` and `store.cleanup()` afterwards.
   */
  create: () => Promise<ClientUnderTest>;
  /** Size of the large streamed object, in bytes. Default 64 MiB. */
  largeObjectBytes?: number;
  /** Objects written for the pagination tests. Default 1100 (more than one 1000-key page). */
  paginationObjectCount?: number;
  /**
   * Names (without `prefix`) of tests not to register; document the reason next to the list.
   * Unknown names throw, so typos do not silently skip nothing. See `replicaClientTestNames`.
   */
  skip?: readonly string[];
  /** Prepended to every test name, e.g. `'s3: '`. */
  prefix?: string;
  /**
   * Capability gaps of the server under test: test name (without `prefix`) → the reason, e.g.
   * `'lease precondition: a stale version is refused': 'the emulator ignores ifGenerationMatch'`.
   * Such a test still runs, named with its reason, and must fail its assertions: one that
   * passes, or throws anything but an assertion error, fails, so a gap is never silently green
   * and a stale declaration is noticed. Unknown names throw.
   */
  gaps?: Readonly<Record<string, string>>;
}
