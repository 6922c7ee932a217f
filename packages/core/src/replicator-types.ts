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
  /** True while lag ≤ sync interval + monitor interval + 5 s grace and no error is pending. */
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
  checkpoint: [{ mode: 'PASSIVE' | 'RESTART' | 'TRUNCATE'; durationMs: number; walFrames?: number; lockHeldMs?: number; restarted?: boolean }];
  'checkpoint-error': [{ mode: 'PASSIVE' | 'RESTART' | 'TRUNCATE'; error: Error }];
  /** A new generation started (with Litestream's reason string). */
  generation: [{ generation: string; reason: string }];
  /** A WAL segment was uploaded to a replica. */
  'replica-sync': [{ replica: string; pos: Pos; bytes: number; durationMs: number }];
  'replica-error': [{ replica: string; error: Error }];
  snapshot: [{ replica: string; generation: string; index: number; sizeBytes: number; durationMs: number }];
  /** One storage request (for metrics): bytes are payload bytes of GET/PUT. */
  operation: [{ replica: string; replicaType: string; operation: ReplicaOperation; bytes: number }];
}
