import { formatHex8, snapshotFileName, walSegmentFileName } from '../naming.js';
import type { SnapshotInfo, WALSegmentInfo } from '../replica-client.js';
import type { GenerationListing } from './listing.js';
import type { DamageLocation } from './types.js';

/** The WAL segments of one index to apply, sorted by offset; the first one is at offset 0. */
interface IndexPlan {
  readonly index: number;
  readonly segments: readonly WALSegmentInfo[];
}

/** What one restore pass applies. */
export interface RestorePlan {
  readonly replicaName: string;
  readonly generation: string;
  readonly snapshot: SnapshotInfo;
  /** Consecutive indexes from the snapshot's index; each starts at offset 0. */
  readonly indexes: readonly IndexPlan[];
  /** Damage visible in the listing (missing index, index not starting at 0); the pass stops there. */
  readonly damage?: DamageLocation;
  /**
   * Number of leading segments of the snapshot's own index created at or before the snapshot:
   * the snapshot may hold pages of their frames, so a restore that stops inside them would mix
   * states. A partial restore from this snapshot must get past them.
   */
  readonly baseSegments: number;
  /** Stored bytes of the snapshot and all planned segments. */
  readonly snapshotBytes: number;
  readonly walStoredBytes: number;
  /** Highest index present in the listing (after filters), −1 when none: to warn about a requested index that does not exist. */
  readonly maxListedIndex: number;
  /** With `TargetFilter.offset`: bytes of index `stopAt.index` at and after `stopAt.offset` are not applied. */
  readonly stopAt?: { readonly index: number; readonly offset: number };
}

export interface TargetFilter {
  readonly index?: number;
  readonly timestamp?: Date;
  /** With `index`: stop at this byte offset of index `index`. */
  readonly offset?: number;
}

export function snapshotObjectName(index: number): string {
  return `snapshots/${snapshotFileName(index)}`;
}

export function segmentObjectName(index: number, offset: number): string {
  return `wal/${walSegmentFileName(index, offset)}`;
}

/**
 * Snapshot choice (format reference §6.2 step 2): with `index`, the highest snapshot index ≤
 * `index`; otherwise the snapshot with the latest `createdAt` ≤ `timestamp` (latest overall
 * without a timestamp; ties go to the higher index). The result lists every qualifying
 * snapshot, best first, so a damaged snapshot can fall back to an older one.
 */
export function snapshotCandidates(snapshots: readonly SnapshotInfo[], filter: TargetFilter): SnapshotInfo[] {
  if (filter.index !== undefined) {
    return snapshots.filter((s) => s.index <= filter.index!).sort((a, b) => b.index - a.index);
  }
  const ts = filter.timestamp?.getTime();
  const ok = ts === undefined ? [...snapshots] : snapshots.filter((s) => s.createdAt.getTime() <= ts);
  ok.sort((a, b) => b.createdAt.getTime() - a.createdAt.getTime() || b.index - a.index);
  // Fallbacks are older snapshots by index (a later-created snapshot of a lower index is not older).
  const first = ok[0];
  if (!first) return [];
  return [
    first,
    ...ok
      .slice(1)
      .filter((s) => s.index < first.index)
      .sort((a, b) => b.index - a.index),
  ];
}

/**
 * Builds the WAL plan for `snapshot` (corrected §6.2 steps 3–7): segments sorted by (index,
 * offset); indexes below the snapshot ignored; with `index`, indexes above it ignored; with
 * `timestamp`, the scan stops at the first segment created after it. Every index from the
 * snapshot's must be present and start at offset 0; the first violation becomes
 * `plan.damage` and the plan ends before it. Offset contiguity is checked while applying,
 * when decoded lengths are known.
 */
export function buildPlan(listing: GenerationListing, snapshot: SnapshotInfo, filter: TargetFilter): RestorePlan {
  const ts = filter.timestamp?.getTime();
  const wanted: WALSegmentInfo[] = [];
  for (const s of listing.segments) {
    if (s.index < snapshot.index) continue;
    if (filter.index !== undefined && s.index > filter.index) break;
    if (filter.offset !== undefined && s.index === filter.index && s.offset >= filter.offset) continue;
    if (ts !== undefined && s.createdAt.getTime() > ts) break;
    wanted.push(s);
  }
  const byIndex = new Map<number, WALSegmentInfo[]>();
  let maxIndex = -1;
  for (const s of wanted) {
    let list = byIndex.get(s.index);
    if (!list) byIndex.set(s.index, (list = []));
    list.push(s);
    if (s.index > maxIndex) maxIndex = s.index;
  }
  const base = {
    replicaName: listing.replica.name,
    generation: listing.generation,
  };
  const indexes: IndexPlan[] = [];
  let damage: DamageLocation | undefined;
  for (let idx = snapshot.index; idx <= maxIndex; idx++) {
    const segs = byIndex.get(idx);
    if (!segs || segs.length === 0) {
      const next = wanted.find((s) => s.index > idx);
      damage = {
        ...base,
        kind: 'missing-index',
        index: idx,
        offset: 0,
        detail: `WAL index ${formatHex8(idx)} has no segments but index ${formatHex8(next?.index ?? maxIndex)} exists`,
      };
      break;
    }
    if (segs[0]!.offset !== 0) {
      damage = {
        ...base,
        kind: 'missing-segment',
        index: idx,
        offset: 0,
        object: segmentObjectName(idx, 0),
        detail: `missing initial wal segment: index ${formatHex8(idx)} starts at offset ${segs[0]!.offset}`,
      };
      break;
    }
    indexes.push({ index: idx, segments: segs });
  }
  // Counted on the listing, not the plan: if the plan stops before them (damage), the
  // snapshot alone is not a consistent point either.
  const st = snapshot.createdAt.getTime();
  const baseSegments = wanted.filter((s) => s.index === snapshot.index && s.createdAt.getTime() <= st).length;
  let walStoredBytes = 0;
  for (const ip of indexes) for (const s of ip.segments) walStoredBytes += s.size;
  return {
    ...base,
    snapshot,
    indexes,
    ...(damage ? { damage } : {}),
    baseSegments,
    snapshotBytes: snapshot.size,
    walStoredBytes,
    maxListedIndex: maxIndex,
    ...(filter.offset !== undefined && filter.index !== undefined ? { stopAt: { index: filter.index, offset: filter.offset } } : {}),
  };
}
