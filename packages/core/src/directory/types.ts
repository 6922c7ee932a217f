import type { Duration } from '../duration.js';
import type { ReplicaOptions, ReplicatorOptions } from '../options.js';
import type { Replicator } from '../replicator-facade.js';
import type { ReplicatorStatus } from '../replicator-types.js';

/** One database of a directory: its absolute path and its path relative to the directory. */
export interface DirectoryDatabase {
  readonly path: string;
  /** Relative to `dir`, `/`-separated (`tenant-1.db`, `eu/tenant-2.db`). */
  readonly relPath: string;
}

/**
 * Options of a {@link DirectoryReplicator}: the keys of Litestream v0.5's `dir:` entries, plus
 * every database option of `Replicator` (applied to each database found).
 */
export interface DirectoryReplicatorOptions
  extends Omit<ReplicatorOptions, 'replicas' | 'metaPath' | 'litestreamMetaPath' | 'concurrency'> {
  /** Glob on file names (`*.db`, `tenant-*.sqlite`); required, as in Litestream. */
  pattern: string;
  /** Look in subdirectories too (default false). Hidden meta directories are skipped. */
  recursive?: boolean;
  /**
   * Keep watching (default false: scan once at `start()`): databases created later are
   * replicated, deleted ones stop (their replicas are kept).
   */
  watch?: boolean;
  /**
   * Each database's replicas. A list: each replica's client is scoped to the database's
   * relative path (`client.scoped(relPath)`, so every client needs `scoped`); the replica of
   * `eu/t1.db` then lives under `<client root>/eu/t1.db/generations/…`. A function: called once
   * per database found, it returns that database's replicas.
   */
  replicas: readonly ReplicaOptions[] | ((db: DirectoryDatabase) => readonly ReplicaOptions[]);
  /**
   * Limits across all databases of this directory: `snapshots` written at once (default 2),
   * WAL `uploads` in flight at once (default 32), replicators `starting` at once (default 8).
   */
  concurrency?: { snapshots?: number; uploads?: number; starting?: number };
  /** With `watch`, how often the directory is listed where file-system events do not work (default `5s`). */
  pollInterval?: Duration;
  /** With `watch`, a full listing this often even when events work: a safety net (default `1m`). */
  rescanInterval?: Duration;
}

/** One database being replicated. */
export interface DirectoryDatabaseStatus extends DirectoryDatabase {
  readonly state: 'starting' | 'running' | 'stopping';
  readonly status: ReplicatorStatus;
}

/** A file that matched the pattern but is not replicated, and why. */
export interface DirectorySkipped extends DirectoryDatabase {
  readonly reason: string;
}

export interface DirectoryReplicatorStatus {
  readonly dir: string;
  /** True while the directory is watched (`watch: true`, between `start()` and `stop()`). */
  readonly watching: boolean;
  /** False when directory events do not work here and the directory is polled. */
  readonly events: boolean;
  readonly databases: readonly DirectoryDatabaseStatus[];
  /** Matching files that are not SQLite databases (looked at again when they change). */
  readonly skipped: readonly DirectorySkipped[];
  /** Databases whose replication could not start (tried again when they change, or after a while). */
  readonly failed: readonly (DirectorySkipped & { readonly error: Error })[];
  readonly lastScanAt: Date | undefined;
}

export interface DirectoryReplicatorEvents {
  /** A database is replicated from now on (its `Replicator` started). */
  'database-added': [DirectoryDatabase & { replicator: Replicator; walMode: boolean }];
  /** A database stopped being replicated because its file was deleted (its replicas are kept). */
  'database-removed': [DirectoryDatabase & { reason: 'deleted'; replicator: Replicator }];
  /** A matching file is not replicated (reported once per version of the file). */
  'database-skipped': [DirectorySkipped];
  /** A database's replication failed to start (reported once per version of the file). */
  'database-error': [DirectoryDatabase & { error: Error }];
  /** The directory could not be listed (once per outage; with `watch`, tried again). */
  'scan-error': [{ dir: string; error: Error }];
}
