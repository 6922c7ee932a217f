import type { Logger } from '../logger.js';
import type { ObjectStage } from '../pipeline.js';
import type { Pos } from '../pos.js';
import type { ReplicaClient, SnapshotInfo, WALSegmentInfo } from '../replica-client.js';

/** One replica restore may read from. */
export interface RestoreReplica {
  /** Replica name (unique among `replicas`); matched by `replicaName`. */
  readonly name: string;
  /** Storage backend holding the replica. */
  readonly client: ReplicaClient;
  /**
   * Object pipeline stages the replica was written with (default: LZ4 framing only, i.e.
   * `defaultStages()`). Objects are decoded through them in reverse order.
   */
  readonly stages?: readonly ObjectStage[];
}

/** What `restore()` reports through `onProgress`. Byte counts are stored (compressed) bytes. */
export interface RestoreProgress {
  readonly phase: 'snapshot' | 'wal' | 'verify';
  /** Stored (downloaded) bytes of the phase done so far; `verify`: database bytes checked. */
  readonly bytesDone: number;
  readonly bytesTotal: number;
  /** `wal` phase: WAL segment objects fully downloaded, of `segmentsTotal`. */
  readonly segmentsDone?: number;
  readonly segmentsTotal?: number;
}

/** Options of {@link restore}. */
export interface RestoreOptions {
  /** Path of the database to create. Its directory is created (mode 0700) when missing. */
  outputPath: string;
  /** Replicas to choose from (at least one; names must be unique). */
  replicas: readonly RestoreReplica[];
  /** Only consider the replica with this name. */
  replicaName?: string;
  /** Only consider this generation (16 lowercase hex characters). */
  generation?: string;
  /**
   * Inclusive upper WAL index: restore the snapshot with the highest index ≤ `index`, then
   * every WAL index up to and including `index`. Without `generation`, the latest matching
   * generation is used. Cannot be combined with `timestamp`.
   */
  index?: number;
  /**
   * With `index`: stop inside `index` at this byte offset of its WAL (the position just after a
   * commit frame, e.g. a `Pos.offset` walship reported), instead of at the index's end. An
   * offset that is not a commit boundary stops the restore as damage (`invalid-wal` /
   * `missing-segment`). The snapshot is chosen as with `index` alone; a snapshot of `index`
   * itself is only right when it was taken at or before `offset` (walship's validator
   * guarantees that; see `validationInterval`). `restoredTo` tells where the restore ended: a
   * replica whose WAL ends before `offset` restores to its end.
   */
  offset?: number;
  /**
   * Point in time: restore the newest snapshot created at or before `timestamp` and the WAL
   * segments created at or before it (object creation times from storage metadata). Only
   * generations whose time bounds contain `timestamp` qualify.
   */
  timestamp?: Date;
  /** Segment downloads in flight at once (default 8; values below 1 become 1). */
  parallelism?: number;
  /**
   * Replace an existing database at `outputPath` (default false: an existing output, or an
   * existing `-wal`/`-journal` file next to it, fails with `WALSHIP_RESTORE_OUTPUT_EXISTS`).
   * The old `-wal`, `-shm` and `-journal` files are removed. Never use it while a process has
   * the output open.
   */
  overwrite?: boolean;
  /** If the output already exists, do nothing and return status `skipped-db-exists` (Litestream's `-if-db-not-exists`). */
  ifDbNotExists?: boolean;
  /** If no backup matches, return status `skipped-no-backups` instead of failing (Litestream's `-if-replica-exists`). */
  ifReplicaExists?: boolean;
  /**
   * Check run on the restored database before it is moved into place (default `integrity`:
   * `PRAGMA integrity_check`; `quick`: `PRAGMA quick_check`; `none`: no check). A failing
   * check throws `WALSHIP_RESTORE_VERIFY_FAILED` and leaves no output.
   */
  verify?: 'integrity' | 'quick' | 'none';
  /**
   * On a missing or corrupt object, restore up to the latest restorable point (the last
   * fully valid committed transaction before the damage) instead of failing; the damage is
   * reported in `result.partial`. Default false.
   */
  partial?: boolean;
  /** Log sink (default: silent). */
  logger?: Logger;
  /** Aborts the restore; temporary files are removed and the signal's reason is thrown. */
  signal?: AbortSignal;
  /** Called (at most every ~100 ms, and at the end of each phase) with download progress. */
  onProgress?: (progress: RestoreProgress) => void;
}

/** A point a restore can reach: the position just after a commit frame, and when it was stored. */
export interface RestorablePoint {
  /** Position after the last restorable commit (offset 0 / the snapshot's index when only the snapshot is usable). */
  readonly pos: Pos;
  /** Creation time of the object that holds that commit (or of the snapshot). */
  readonly time: Date;
  /** Snapshot the point is restored from. */
  readonly snapshotIndex: number;
}

/** Kinds of damage restore can find. */
export type DamageKind =
  /** The snapshot object vanished between listing and download. */
  | 'missing-snapshot'
  /** The snapshot object does not decode (bad LZ4 frame, checksum, truncated). */
  | 'corrupt-snapshot'
  /** A WAL index between the snapshot's index and the target has no segments. */
  | 'missing-index'
  /** A WAL segment is missing: an index does not start at offset 0, a gap between offsets, or a listed object vanished. */
  | 'missing-segment'
  /** A WAL segment object does not decode (bad LZ4 frame or content checksum). */
  | 'corrupt-segment'
  /** A WAL segment object ends early (LZ4 frame cut short). */
  | 'truncated-segment'
  /** Decoded WAL data is invalid: bad header, page size, salt, checksum chain, a cut frame, or overlapping segments. */
  | 'invalid-wal';

/** Where one piece of damage is. */
export interface DamageLocation {
  readonly kind: DamageKind;
  readonly replicaName: string;
  readonly generation: string;
  /** WAL index of the damage (the snapshot's index for snapshot damage). */
  readonly index: number;
  /** Byte offset within the (uncompressed) WAL index; 0 for snapshot damage. */
  readonly offset: number;
  /** Object key relative to the generation, e.g. `wal/00000002_00001038.wal.lz4`, when one object is at fault. */
  readonly object?: string;
  /** One-line human description. */
  readonly detail: string;
}

/**
 * What a restore found damaged and how far it can get. Carried by `RestoreError` (code
 * `WALSHIP_RESTORE_DAMAGED`) and by `RestoreResult.partial`.
 */
export interface DamageReport extends DamageLocation {
  /** Latest restorable point before the damage; undefined when nothing can be restored. */
  readonly restorable?: RestorablePoint;
  /** Damaged snapshots that were skipped in favour of an older snapshot of the same generation. */
  readonly skippedSnapshots?: readonly DamageLocation[];
}

/** Result of {@link restore}. */
export interface RestoreResult {
  /**
   * `restored`: the output was written. `skipped-db-exists`: `ifDbNotExists` was set and the
   * output exists. `skipped-no-backups`: `ifReplicaExists` was set and no backup matched.
   */
  readonly status: 'restored' | 'skipped-db-exists' | 'skipped-no-backups';
  /** Replica the database was restored from. */
  readonly replicaName?: string;
  /**
   * Replicas not used, and why: unreachable (listing failed), holding an older point than the
   * chosen one, or damaged / failing during the restore (the next replica holding the same
   * point was used instead).
   */
  readonly skippedReplicas?: readonly { readonly replicaName: string; readonly reason: string }[];
  readonly generation?: string;
  /** Index of the snapshot the database was built from. */
  readonly snapshotIndex?: number;
  /** Position just after the last applied commit (the snapshot's `(index, 0)` when no WAL was applied). */
  readonly restoredTo?: Pos;
  /** Set when `partial` was requested and damage stopped the restore early. */
  readonly partial?: DamageReport;
  /** Decoded WAL bytes processed. */
  readonly walBytes?: number;
  /** Wall time of the whole restore. */
  readonly durationMs?: number;
  /**
   * Generations of the same replica written while the restored one was: another writer (a
   * second database or replicator) used the replica at the same time. Each is a lineage of its
   * own; restore never mixes them, and `generation` restores one of these instead.
   */
  readonly concurrentGenerations?: readonly ConcurrentGeneration[];
}

/** A generation whose lifetime (first to last object) overlaps the restored one's. */
export interface ConcurrentGeneration {
  readonly generation: string;
  readonly createdAt: Date;
  readonly updatedAt: Date;
}

/** Options of {@link calcRestoreTarget}. */
export interface RestoreTargetOptions {
  replicas: readonly RestoreReplica[];
  replicaName?: string;
  generation?: string;
  timestamp?: Date;
  logger?: Logger;
  signal?: AbortSignal;
}

/** The generation {@link calcRestoreTarget} picks. */
export interface RestoreTarget {
  readonly replicaName: string;
  readonly generation: string;
  /** Latest object creation time in the generation (its upper time bound). */
  readonly updatedAt: Date;
}

/** One generation of one replica, for `walship generations`. */
export interface GenerationInfo {
  readonly replicaName: string;
  readonly generation: string;
  /** Earliest object creation time (snapshots and WAL segments at or above the lowest snapshot's index). */
  readonly createdAt: Date;
  /** Latest object creation time. */
  readonly updatedAt: Date;
  /** `now − updatedAt` in milliseconds. */
  readonly lagMs: number;
  readonly snapshotCount: number;
  readonly walSegmentCount: number;
  /** Stored bytes of all snapshots and WAL segments of the generation. */
  readonly size: number;
}

/** Options of the listing functions. */
export interface ListOptions {
  /** Only this replica. */
  replicaName?: string;
  /** Only this generation (snapshots and WAL segments listings). */
  generation?: string;
  /** Reference time for `lagMs` (default now). */
  now?: Date;
  signal?: AbortSignal;
}

export type ReplicaSnapshotInfo = SnapshotInfo & { readonly replicaName: string };
export type ReplicaWALSegmentInfo = WALSegmentInfo & { readonly replicaName: string };
