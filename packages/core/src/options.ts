import type { Duration } from './duration.js';
import type { Logger } from './logger.js';
import type { ObjectStage } from './pipeline.js';
import type { ReplicaClient } from './replica-client.js';
import type { ConcurrencyLimits } from './util/shared-limits.js';

export type { ConcurrencyLimits };

/**
 * One replica of a database. Option names are the litestream.yml replica keys in camelCase
 * (`sync-interval` → `syncInterval`); kebab-case spellings are accepted too.
 */
export interface ReplicaOptions {
  /** The storage backend. */
  client: ReplicaClient;
  /** Unique per database; defaults to the client's type (`file`, `s3`, …). */
  name?: string;
  /** Minimum time between uploads (default `1s`). */
  syncInterval?: Duration;
  /** How long snapshots and WAL are kept (default `24h`; `0` disables retention). */
  retention?: Duration;
  /** How often retention runs (default `1h`, clamped to `retention`). */
  retentionCheckInterval?: Duration;
  /** Take a new snapshot this often (default `0` = only when needed). */
  snapshotInterval?: Duration;
  /** Periodically restore the replica and compare checksums (default `0` = off). */
  validationInterval?: Duration;
  /** Object pipeline stages (default: LZ4 framing). */
  stages?: readonly ObjectStage[];
  /**
   * Time to live of this replica's lease, the record that keeps a second walship (another
   * host) from writing to the same replica (default `1m`, at least `1s`; `0` turns the lease
   * off). See "One writer per replica" in the README.
   */
  leaseTtl?: Duration;
  /**
   * Take over another walship's live lease instead of refusing to write (a planned failover
   * while the old writer may still run; `walship replicate -force`). Default false.
   */
  takeover?: boolean;
}

/**
 * Options of a replicated database. Names are the litestream.yml database keys in camelCase
 * (kebab-case accepted too) plus walship's own.
 */
export interface ReplicatorOptions {
  replicas: readonly ReplicaOptions[];
  /** Meta directory (default `<dir>/.<name>-walship`). */
  metaPath?: string;
  /**
   * Litestream v0.3's meta directory for this database (default `<dir>/.<name>-litestream`;
   * `false`: do not look). On a start without walship state, a Litestream generation found
   * there is continued — no new snapshot — when the WAL proves continuity; otherwise a new
   * generation starts and its reason says why (see the README, "Moving from Litestream").
   */
  litestreamMetaPath?: string | false;
  /** How often the WAL is checked for new transactions (default `1s`). */
  monitorInterval?: Duration;
  /** Checkpoint an idle WAL after this long (default `1m`; `0` disables). */
  checkpointInterval?: Duration;
  /** Checkpoint and restart the WAL once it holds this many pages (default 1000). */
  minCheckpointPageCount?: number;
  /**
   * Restart the WAL at this many pages even when a replica lags, keeping that replica's
   * unsent WAL in the meta directory (default 10000). Never blocks writers on readers.
   */
  maxCheckpointPageCount?: number;
  /**
   * Emergency size in pages: past it walship waits for readers (blocking writers up to
   * `busyTimeout`) to restart and truncate the WAL (default 500000; `0` disables).
   */
  truncatePageCount?: number;
  /** SQLite busy timeout for walship's own connections (default `1s`). */
  busyTimeout?: Duration;
  /** Log sink (default: silent). */
  logger?: Logger;
  /**
   * Where the engine runs: `worker` (default), in the process's one shared engine worker
   * thread, off the application's event loop; `inline`, on the calling thread.
   */
  thread?: 'worker' | 'inline';
  /**
   * Concurrency limits shared with every replicator of the process that passes the same `key`
   * (`snapshots` written at once, default 2; WAL `uploads` in flight at once, default 32).
   * Default: none — this replicator's work is limited only by its own replicas.
   * `DirectoryReplicator` gives all its databases one group.
   */
  concurrency?: ConcurrencyLimits;
  /**
   * While the `-wal` is watched (inotify), an idle database is still scanned this often, as a
   * safety net for a missed notification (default `10 × monitorInterval`, at most `10s`; never
   * longer than `checkpointInterval`).
   * `DirectoryReplicator` uses `1m`: a thousand idle databases then cost ~17 scans a second.
   */
  idleScanInterval?: Duration;
}
