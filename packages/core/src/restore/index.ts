/**
 * Restore: target selection, fast verified WAL apply, damage reports, and the inspection API
 * (generations, snapshots, WAL segments) used by the CLI.
 */
export { restore, DEFAULT_RESTORE_PARALLELISM } from './restore.js';
export { calcRestoreTarget, listGenerations, listSnapshots, listWalSegments, generationBounds } from './listing.js';
export { RestoreError } from './errors.js';
export type { RestoreErrorCode } from './errors.js';
export type {
  RestoreReplica,
  RestoreOptions,
  RestoreProgress,
  RestoreResult,
  ConcurrentGeneration,
  RestorablePoint,
  DamageKind,
  DamageLocation,
  DamageReport,
  RestoreTargetOptions,
  RestoreTarget,
  GenerationInfo,
  ListOptions,
  ReplicaSnapshotInfo,
  ReplicaWALSegmentInfo,
} from './types.js';
