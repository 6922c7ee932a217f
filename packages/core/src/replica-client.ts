import type { Readable } from 'node:stream';
import type { Pos } from './pos.js';

/** One snapshot object as listed by a replica client. */
export interface SnapshotInfo {
  readonly generation: string;
  /** WAL index the snapshot was taken at. */
  readonly index: number;
  /** Stored (compressed) size in bytes. */
  readonly size: number;
  /** Creation time from storage metadata (file mtime, S3 LastModified, GCS timeCreated, ABS creation time). */
  readonly createdAt: Date;
}

/** One WAL segment object as listed by a replica client. */
export interface WALSegmentInfo {
  readonly generation: string;
  readonly index: number;
  /** Byte offset of the segment's first byte within its (uncompressed) WAL index. */
  readonly offset: number;
  /** Stored (compressed) size in bytes. */
  readonly size: number;
  readonly createdAt: Date;
}

/** Optional features a client declares so callers can use faster paths. */
export interface ReplicaClientCapabilities {
  /**
   * `deleteWALSegments` deletes many objects per request (S3 DeleteObjects, ABS batch).
   * Purely informational; callers always pass whole lists.
   */
  readonly batchDelete?: boolean;
  /** Upper bound of concurrent requests the client is happy to serve (default 8). */
  readonly maxConcurrency?: number;
  /**
   * The client implements `readLease` and `writeLease` (see "Leases" on `ReplicaClient`).
   * walship uses them only when this is true, so a client that lacks them keeps working, with
   * the weaker guarantee that a second writer on the same replica is not detected.
   */
  readonly leases?: boolean;
}

/** The replica's lease object as stored (see `ReplicaClient.readLease`). */
export interface StoredLease {
  /** The stored bytes as UTF-8 text (walship stores one JSON object). */
  readonly body: string;
  /**
   * Opaque token naming this version of the object, passed back to `writeLease`: the S3 or ABS
   * ETag, the GCS generation, a sequence number on file systems.
   */
  readonly version: string;
}

/** Options of {@link ReplicaClient.walSegments}. */
export interface WalSegmentsOptions {
  /** Only segments of this WAL index and later ones are needed (lower ones may be returned too). */
  readonly fromIndex?: number;
}

/**
 * A storage backend for walship replicas: stores opaque objects in Litestream v0.3's layout
 * (see `layout` in `naming.ts`) under the client's own root:
 *
 *     <root>/generations/<generation>/snapshots/<index %08x>.snapshot.lz4
 *     <root>/generations/<generation>/wal/<index %08x>_<offset %08x>.wal.lz4
 *
 * The client stores bytes exactly as given; compression (and any later encryption) happens
 * in walship's object pipeline, never in the client.
 *
 * Contract shared by every method:
 * - A method taking a generation throws `InvalidArgumentError` when the generation is empty,
 *   with Litestream's message (`cannot determine <what>: generation required`). The `layout`
 *   helpers throw exactly these.
 * - Listings may be returned in any order; callers sort. Objects whose names do not parse are
 *   skipped silently (a replica root may contain foreign files). Names are parsed with
 *   `parseSnapshotFileName` / `parseWalSegmentFileName`, which accept 8–16 hex digits.
 * - Listing a generation (or root) that does not exist returns an empty list, not an error.
 * - Readers throw `NotFoundError` (code `WALSHIP_NOT_FOUND`) when the object does not exist;
 *   this must be distinguishable from every other failure.
 * - Deletes are idempotent: deleting something that does not exist succeeds.
 * - Writes are atomic from a reader's point of view where the store allows it: a reader sees
 *   either no object or the whole object (temp file + rename on file systems; single PUT or
 *   completed multipart upload on object stores).
 * - Any other failure should be thrown as `BackendError` with `retryable` set; plain errors
 *   are treated as retryable. walship retries with backoff; clients may retry internally too.
 * - Methods may be called concurrently (up to `capabilities.maxConcurrency`).
 *
 * Leases (optional; declare `capabilities.leases: true`): one small object per replica that
 * records which walship writes to it, kept beside `generations/` where Litestream never looks
 * (`leaseObjectKey` / `leaseDirKey` in lease-store.ts). walship reads it, and replaces it only
 * with `writeLease`'s precondition, so two writers on one replica cannot both believe they own
 * it. The precondition must be checked by the store itself, atomically, where the store can:
 * S3 `If-None-Match: *` / `If-Match`, GCS `ifGenerationMatch`, ABS `If-None-Match: *` /
 * `If-Match`, an exclusive create (link or rename without replace) on file systems, for which
 * `readSequencedLease` / `writeSequencedLease` implement it over a directory.
 */
export interface ReplicaClient {
  /** Backend type: `file`, `s3`, `gcs`, `abs`, `sftp`, or a third party's own name. */
  readonly type: string;

  /** Features this client offers beyond the base contract. */
  readonly capabilities?: ReplicaClientCapabilities;

  /**
   * Names of generations under `<root>/generations/`: only entries that are valid generation
   * names (16 lowercase hex). Empty array when the root or the `generations` folder is absent.
   */
  generations(): Promise<string[]>;

  /**
   * Deletes every object under the generation (snapshots, WAL segments, anything else).
   * Succeeds when the generation does not exist.
   * @throws InvalidArgumentError `cannot determine generation path: generation required`
   */
  deleteGeneration(generation: string): Promise<void>;

  /**
   * Snapshots of one generation, with stored size and creation time.
   * @throws InvalidArgumentError `cannot determine snapshots path: generation required`
   */
  snapshots(generation: string): Promise<SnapshotInfo[]>;

  /**
   * Stores `body` (consumed to its end) as the snapshot `(generation, index)`, replacing any
   * existing object of that name. Resolves with the stored size and creation time.
   * If `body` errors, the write fails and no object becomes visible.
   * @throws InvalidArgumentError `cannot determine snapshot path: generation required`
   */
  writeSnapshot(generation: string, index: number, body: Readable): Promise<SnapshotInfo>;

  /**
   * Opens the stored bytes of a snapshot as a stream.
   * @throws NotFoundError when the snapshot does not exist
   * @throws InvalidArgumentError `cannot determine snapshot path: generation required`
   */
  snapshotReader(generation: string, index: number): Promise<Readable>;

  /**
   * Deletes one snapshot; succeeds when it does not exist.
   * @throws InvalidArgumentError `cannot determine snapshot path: generation required`
   */
  deleteSnapshot(generation: string, index: number): Promise<void>;

  /**
   * WAL segments of one generation, with stored size and creation time.
   *
   * With `options.fromIndex`, the caller needs only the segments of that WAL index and later
   * ones: a backend whose listing can start at a key (S3's `StartAfter`) lists from there, so a
   * follower polling a long generation pays one request, not one per thousand segments. Segments
   * of lower indexes may still be returned (a backend may ignore the option): callers filter.
   * @throws InvalidArgumentError `cannot determine wal path: generation required`
   */
  walSegments(generation: string, options?: WalSegmentsOptions): Promise<WALSegmentInfo[]>;

  /**
   * Stores `body` as the WAL segment named by `pos` (its starting position). Same atomicity
   * and error rules as `writeSnapshot`.
   * @throws InvalidArgumentError `cannot determine wal segment path: generation required`
   */
  writeWALSegment(pos: Pos, body: Readable): Promise<WALSegmentInfo>;

  /**
   * Opens the stored bytes of a WAL segment as a stream.
   * @throws NotFoundError when the segment does not exist
   * @throws InvalidArgumentError `cannot determine wal segment path: generation required`
   */
  walSegmentReader(pos: Pos): Promise<Readable>;

  /**
   * Deletes the listed WAL segments (any generations mixed); missing ones are ignored.
   * Validates every position before deleting anything.
   * @throws InvalidArgumentError `cannot determine wal segment path: generation required`
   *   when any position has an empty generation
   */
  deleteWALSegments(positions: readonly Pos[]): Promise<void>;

  /**
   * The lease object, or undefined when there is none. Optional (see "Leases" above).
   */
  readLease?(): Promise<StoredLease | undefined>;

  /**
   * Stores `body` as the lease object, only if the precondition holds at the store:
   * `ifVersion === null` — no lease object exists (create if absent); otherwise — the stored
   * lease is still at version `ifVersion`. Resolves with the new version, or `null` when the
   * precondition failed (another writer created or replaced the lease meanwhile); throws
   * `BackendError` for anything else. Optional (see "Leases" above).
   */
  writeLease?(body: string, ifVersion: string | null): Promise<string | null>;

  /**
   * A client whose root is `<root>/<subPath>`, sharing this client's connections and settings
   * (one S3/GCS/Azure SDK client, one SSH session), for directory replication: each database
   * found in a directory is replicated to `<replica root>/<its relative path>/generations/…`,
   * an ordinary replica that any client rooted there (and Litestream v0.3) reads on its own.
   * Performs no I/O. `close()` on the scoped client releases nothing shared; `close()` on this
   * client ends the scoped ones too. Optional: a composer without it builds one client per
   * database from the backend's config instead. `subPath` is checked and cleaned with
   * `normalizeSubPath` (naming.ts).
   * @throws InvalidArgumentError when `subPath` is empty, absolute, or has `.`/`..` segments
   */
  scoped?(subPath: string): ReplicaClient;

  /**
   * The databases directory replication stored under this client's root: every relative path
   * `P` (`/`-separated, no leading or trailing `/`) such that `<root>/P/generations/` holds a
   * valid generation, in any order. The root's own `generations/` is not reported, and the walk
   * does not descend into a `generations` folder. Empty when the root does not exist. Optional
   * (restoring a whole directory needs it); `findDatabases` (naming.ts) implements the walk
   * over a backend's "list child folders" primitive.
   */
  databases?(): Promise<string[]>;

  /** Releases connections and other resources. Optional; idempotent. */
  close?(): Promise<void>;
}
