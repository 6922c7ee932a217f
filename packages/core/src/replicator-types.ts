import type { Pos } from './pos.js';

/** Per-replica state reported by `Replicator.status()`. */
export interface ReplicaStatus {
  readonly name: string;
  /** Client type (`file`, `s3`, …). */
  readonly type: string;
  /** Position durable on this replica (zero position before the first upload). */
  readonly pos: Pos;
  /**
   * Replication lag in milliseconds: time since the oldest committed transaction that is not
   * yet durable on this replica was first seen; 0 when the replica is caught up.
   */
  readonly lagMs: number;
  readonly syncIntervalMs: number;
  readonly lastSyncAt?: Date;
  /** Last error message of this replica; cleared by the next successful upload. */
  readonly lastError?: string;
  /**
   * True while lag ≤ sync interval + monitor interval + 5 s grace and no error is pending, and
   * the database is being replicated (false while `ReplicatorStatus.waiting` is set).
   */
  readonly healthy: boolean;
}

/** Snapshot of a replicator's state. */
export interface ReplicatorStatus {
  readonly dbPath: string;
  readonly generation: string;
  /** Newest committed position seen in the local WAL. */
  readonly pos: Pos;
  readonly dbSizeBytes: number;
  readonly walSizeBytes: number;
  readonly replicas: readonly ReplicaStatus[];
  /**
   * Set while the replicator is started but not replicating yet: `'database does not exist
   * yet'` until the database file appears (replication then starts by itself).
   */
  readonly waiting?: string;
}

/** Replica storage operation kinds, as Litestream's metrics label them. */
export type ReplicaOperation = 'GET' | 'PUT' | 'DELETE' | 'LIST';

/** Events a Replicator emits (it is an EventEmitter). */
export interface ReplicatorEvents {
  /** A monitor cycle finished. */
  sync: [{ durationMs: number; pos: Pos; dbSizeBytes: number; walSizeBytes: number }];
  'sync-error': [{ error: Error }];
  /**
   * A checkpoint ran. For walship's controlled WAL restarts, `lockHeldMs` is how long it held
   * SQLite's write lock (the application's writers wait meanwhile) and `restarted` whether the
   * WAL was restarted; a plain PASSIVE checkpoint takes no write lock and has neither.
   * `walFrames` is the number of frames the WAL held when the checkpoint ran.
   */
  checkpoint: [
    { mode: 'PASSIVE' | 'RESTART' | 'TRUNCATE'; durationMs: number; walFrames?: number; lockHeldMs?: number; restarted?: boolean },
  ];
  'checkpoint-error': [{ mode: 'PASSIVE' | 'RESTART' | 'TRUNCATE'; error: Error }];
  /**
   * walship restarted the WAL (a controlled checkpoint): replication continues in WAL index
   * `index` of the same generation (Litestream's numbering; segment names start over at offset
   * 0). `durationMs` is the whole checkpoint's. Follows the `checkpoint` event with `restarted: true`.
   */
  'wal-restart': [{ index: number; durationMs: number }];
  /** A new generation started (with Litestream's reason string). */
  generation: [{ generation: string; reason: string }];
  /** At start, walship continued the generation Litestream v0.3 was replicating (no new snapshot). */
  'litestream-continued': [{ generation: string; index: number }];
  /** A WAL segment was uploaded to a replica. */
  'replica-sync': [{ replica: string; pos: Pos; bytes: number; durationMs: number }];
  'replica-error': [{ replica: string; error: Error }];
  snapshot: [{ replica: string; generation: string; index: number; sizeBytes: number; durationMs: number }];
  /** One storage request (for metrics): bytes are payload bytes of GET/PUT. */
  operation: [{ replica: string; replicaType: string; operation: ReplicaOperation; bytes: number }];
  /** A validation (`validationInterval`) of a replica finished: `ok`, `mismatch` or `skipped`. */
  validation: [ValidationEvent];
}

/**
 * Outcome of one validation of a replica (`validationInterval`): the replica restored to `pos`
 * compared page by page with the local database at `pos`.
 */
export interface ValidationEvent {
  readonly replica: string;
  /**
   * `ok`: every page is equal. `mismatch`: pages differ, the page count differs, or the replica
   * cannot be restored to `pos` (damaged, or its WAL ends early). `skipped`: nothing could be
   * compared (the replica did not reach `pos` in time, the generation changed, a snapshot of
   * the same WAL index was taken meanwhile, a storage error…); not a verdict on the replica.
   */
  readonly result: 'ok' | 'mismatch' | 'skipped';
  /** Position compared (where the local database was read). */
  readonly pos: Pos;
  /** Pages of the local database at `pos` (0 when it was not read). */
  readonly pages: number;
  readonly mismatchedPages: number;
  /** The first (up to 10) page numbers that differ, 1-based. */
  readonly mismatchedPageNumbers?: readonly number[];
  /** Why it was skipped, or what did not match. */
  readonly reason?: string;
  /** Snapshot the replica was restored from. */
  readonly snapshotIndex?: number;
  /** How long the local read transaction was held (controlled WAL restarts wait meanwhile). */
  readonly localHoldMs?: number;
  readonly durationMs: number;
}
