/**
 * Defaults of the replicator's options, Litestream v0.3's (db.go, replica.go); durations in
 * milliseconds. `Replicator` applies them to options left out, and the CLI to keys a
 * `litestream.yml` leaves out, so both read them from here.
 */
export const OPTION_DEFAULTS = {
  monitorIntervalMs: 1_000,
  checkpointIntervalMs: 60_000,
  minCheckpointPageCount: 1_000,
  maxCheckpointPageCount: 10_000,
  truncatePageCount: 500_000,
  busyTimeoutMs: 1_000,
  syncIntervalMs: 1_000,
  retentionMs: 24 * 3_600_000,
  retentionCheckIntervalMs: 3_600_000,
  snapshotIntervalMs: 0,
  validationIntervalMs: 0,
  /** `stop()`'s bound on the final sync (the CLI's `shutdown-sync-timeout`). */
  stopTimeoutMs: 30_000,
} as const;
