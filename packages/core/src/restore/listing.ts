import { errorMessage } from '../errors.js';
import { isGenerationName } from '../naming.js';
import { silentLogger, type Logger } from '../logger.js';
import type { SnapshotInfo, WALSegmentInfo } from '../replica-client.js';
import { RestoreError } from './errors.js';
import { throwIfAborted, withRetry } from './retry.js';
import type {
  ConcurrentGeneration,
  GenerationInfo,
  ListOptions,
  ReplicaSnapshotInfo,
  ReplicaWALSegmentInfo,
  RestoreReplica,
  RestoreTarget,
  RestoreTargetOptions,
} from './types.js';

/** Snapshots and WAL segments of one generation, sorted (index; index, offset). */
export interface GenerationListing {
  readonly replica: RestoreReplica;
  readonly generation: string;
  readonly snapshots: readonly SnapshotInfo[];
  readonly segments: readonly WALSegmentInfo[];
}

interface TimeBounds {
  readonly createdAt: Date;
  readonly updatedAt: Date;
}

function compareSnapshots(a: SnapshotInfo, b: SnapshotInfo): number {
  return a.index - b.index || a.createdAt.getTime() - b.createdAt.getTime();
}

export function compareSegments(a: WALSegmentInfo, b: WALSegmentInfo): number {
  return a.index - b.index || a.offset - b.offset;
}

/** Validates replica names and applies `replicaName`. */
function selectReplicas(replicas: readonly RestoreReplica[], replicaName: string | undefined): RestoreReplica[] {
  if (!Array.isArray(replicas) || replicas.length === 0) {
    throw new RestoreError('WALSHIP_RESTORE_INVALID', 'at least one replica is required');
  }
  const seen = new Set<string>();
  for (const r of replicas) {
    if (!r || typeof r.name !== 'string' || r.name === '' || !r.client) {
      throw new RestoreError('WALSHIP_RESTORE_INVALID', 'every replica needs a name and a client');
    }
    if (seen.has(r.name)) throw new RestoreError('WALSHIP_RESTORE_INVALID', `duplicate replica name "${r.name}"`);
    seen.add(r.name);
  }
  if (replicaName === undefined || replicaName === '') return [...replicas];
  const found = replicas.filter((r) => r.name === replicaName);
  if (found.length === 0) {
    throw new RestoreError(
      'WALSHIP_RESTORE_INVALID',
      `replica "${replicaName}" not found; known replicas: ${replicas.map((r) => r.name).join(', ')}`,
    );
  }
  return found;
}

function checkGenerationOption(generation: string | undefined): void {
  if (generation !== undefined && generation !== '' && !isGenerationName(generation)) {
    throw new RestoreError('WALSHIP_RESTORE_INVALID', `invalid generation "${generation}": expected 16 lowercase hex characters`);
  }
}

/** Lists one generation (with retries on transient errors); results sorted and de-duplicated. */
async function listGeneration(
  replica: RestoreReplica,
  generation: string,
  signal?: AbortSignal,
  logger: Logger = silentLogger,
): Promise<GenerationListing> {
  const onRetry = (err: unknown) => logger.warn('listing failed, retrying', { replica: replica.name, generation, error: String(err) });
  const [snaps, segs] = await Promise.all([
    withRetry(() => replica.client.snapshots(generation), { signal, onRetry }),
    withRetry(() => replica.client.walSegments(generation), { signal, onRetry }),
  ]);
  const snapshots = dedupe(
    snaps.filter((s) => s.generation === generation || s.generation === undefined).sort(compareSnapshots),
    (a, b) => a.index === b.index,
  );
  const segments = dedupe(
    segs.filter((s) => s.generation === generation || s.generation === undefined).sort(compareSegments),
    (a, b) => a.index === b.index && a.offset === b.offset,
  );
  return { replica, generation, snapshots, segments };
}

/** Removes neighbours that name the same object (e.g. `…_00000020` and `…_000000020`), keeping the first. */
function dedupe<T>(sorted: T[], same: (a: T, b: T) => boolean): T[] {
  const out: T[] = [];
  for (const x of sorted) {
    if (out.length > 0 && same(out[out.length - 1]!, x)) continue;
    out.push(x);
  }
  return out;
}

/**
 * Time bounds of a generation (format reference §6.1 with fix #527): min/max `createdAt` over
 * its snapshots and WAL segments, ignoring segments whose index is below the lowest snapshot's
 * index. Without snapshots, all segments count. Undefined for an empty generation.
 */
export function generationBounds(l: Pick<GenerationListing, 'snapshots' | 'segments'>): TimeBounds | undefined {
  let min = Infinity;
  let max = -Infinity;
  const lowest = l.snapshots.length > 0 ? Math.min(...l.snapshots.map((s) => s.index)) : -Infinity;
  for (const s of l.snapshots) {
    const t = s.createdAt.getTime();
    if (t < min) min = t;
    if (t > max) max = t;
  }
  for (const s of l.segments) {
    if (s.index < lowest) continue;
    const t = s.createdAt.getTime();
    if (t < min) min = t;
    if (t > max) max = t;
  }
  if (min === Infinity) return undefined;
  return { createdAt: new Date(min), updatedAt: new Date(max) };
}

async function listGenerationNames(replica: RestoreReplica, signal?: AbortSignal, logger: Logger = silentLogger): Promise<string[]> {
  const names = await withRetry(() => replica.client.generations(), {
    signal,
    onRetry: (err) => logger.warn('listing generations failed, retrying', { replica: replica.name, error: String(err) }),
  });
  return [...new Set(names.filter(isGenerationName))].sort();
}

export interface TargetChoice extends RestoreTarget {
  readonly listing: GenerationListing;
  /** Other generations of the same replica whose lifetimes overlap the chosen one's (see {@link concurrentGenerations}). */
  readonly concurrent: readonly ConcurrentGeneration[];
}

/**
 * The generations whose lifetimes overlap `chosen`'s. One database's generations follow each
 * other in time (walship starts a new one at least a second after the previous one's last
 * upload), so an overlap means another writer — another database, or a second replicator —
 * wrote to the same replica at the same time: two lineages. Strict overlap only, so stores
 * that list whole seconds do not turn a quick succession into a false alarm.
 */
function concurrentGenerations(chosen: ConcurrentGeneration, others: readonly ConcurrentGeneration[]): ConcurrentGeneration[] {
  return others.filter(
    (o) =>
      o.generation !== chosen.generation &&
      o.createdAt.getTime() < chosen.updatedAt.getTime() &&
      chosen.createdAt.getTime() < o.updatedAt.getTime(),
  );
}

/**
 * True when generation bounds `a` are newer than `b`: a later `updatedAt` wins (Litestream's
 * rule); on a tie — stores that list whole seconds (S3, Azure, SFTP) make a generation that
 * began within the second of the previous one's last upload tie with it — the generation that
 * began later wins, because one database's generations follow each other in time. A complete
 * tie keeps `b` (the first, as Litestream does).
 */
function newerGeneration(a: TimeBounds, b: TimeBounds): boolean {
  const d = a.updatedAt.getTime() - b.updatedAt.getTime();
  return d > 0 || (d === 0 && a.createdAt.getTime() > b.createdAt.getTime());
}

/** A replica a restore did not use, and why. */
export interface SkippedReplica {
  readonly replicaName: string;
  readonly reason: string;
}

/** Every replica's choice, best first, and the replicas whose listing failed. */
export interface RankedTargets {
  readonly ranked: readonly TargetChoice[];
  /** Replicas whose listing failed (after the client's retries), with the error. */
  readonly unreachable: readonly (SkippedReplica & { readonly error: unknown })[];
}

/**
 * Chooses the generation to restore (format reference §6.1): per replica, the generation with
 * the latest `updatedAt` among those passing the `generation` and `timestamp` filters (a tie
 * goes to the one that began later, see `newerGeneration`); across replicas, the one whose
 * choice is latest (strictly later wins; ties keep the first).
 * Generations without any snapshot cannot be restored and are skipped with a warning.
 * Any listing error aborts.
 */
async function chooseTarget(options: RestoreTargetOptions): Promise<TargetChoice | undefined> {
  const { ranked, unreachable } = await rankTargets(options, false);
  if (unreachable[0]) throw unreachable[0].error;
  return ranked[0];
}

/**
 * {@link chooseTarget}'s choice for every replica, best first (the same order: latest
 * `updatedAt` first, ties in replica order). With `tolerateErrors`, a replica whose listing
 * fails is reported in `unreachable` instead of aborting (an abort signal still aborts).
 */
export async function rankTargets(options: RestoreTargetOptions, tolerateErrors: boolean): Promise<RankedTargets> {
  const logger = options.logger ?? silentLogger;
  const replicas = selectReplicas(options.replicas, options.replicaName);
  checkGenerationOption(options.generation);
  const ts = options.timestamp?.getTime();
  if (ts !== undefined && Number.isNaN(ts)) throw new RestoreError('WALSHIP_RESTORE_INVALID', 'invalid timestamp');
  const ranked: TargetChoice[] = [];
  const unreachable: (SkippedReplica & { error: unknown })[] = [];
  for (const replica of replicas) {
    throwIfAborted(options.signal);
    let listings: GenerationListing[];
    try {
      let names = await listGenerationNames(replica, options.signal, logger);
      if (options.generation) names = names.filter((g) => g === options.generation);
      listings = await mapLimit(names, 8, (g) => listGeneration(replica, g, options.signal, logger));
    } catch (err) {
      throwIfAborted(options.signal);
      if (!tolerateErrors) throw err;
      const reason = `listing failed: ${errorMessage(err)}`;
      logger.warn('replica unreachable, skipping it', { replica: replica.name, reason });
      unreachable.push({ replicaName: replica.name, reason, error: err });
      continue;
    }
    let replicaBest: Omit<TargetChoice, 'concurrent'> | undefined;
    let bestCreatedAt = 0;
    const all: ConcurrentGeneration[] = [];
    for (const listing of listings) {
      const bounds = generationBounds(listing);
      if (!bounds) continue;
      all.push({ generation: listing.generation, ...bounds });
      if (listing.snapshots.length === 0) {
        logger.warn('generation has no snapshot, skipping', { replica: replica.name, generation: listing.generation });
        continue;
      }
      if (ts !== undefined && (ts < bounds.createdAt.getTime() || ts > bounds.updatedAt.getTime())) continue;
      if (!replicaBest || newerGeneration(bounds, { createdAt: new Date(bestCreatedAt), updatedAt: replicaBest.updatedAt })) {
        replicaBest = { replicaName: replica.name, generation: listing.generation, updatedAt: bounds.updatedAt, listing };
        bestCreatedAt = bounds.createdAt.getTime();
      }
    }
    if (replicaBest) {
      const chosen = all.find((g) => g.generation === replicaBest!.generation)!;
      ranked.push({ ...replicaBest, concurrent: concurrentGenerations(chosen, all) });
    }
  }
  // Stable: equal times keep replica order (the first wins, as Litestream).
  ranked.sort((a, b) => b.updatedAt.getTime() - a.updatedAt.getTime());
  return { ranked, unreachable };
}

/**
 * True when `other` holds at least the point `chosen` would restore: the same generation, with
 * WAL reaching at least as far (its last segment starts at or after `chosen`'s), so restoring
 * from it instead loses nothing `chosen` lists.
 */
export function holdsAtLeast(other: TargetChoice, chosen: TargetChoice): boolean {
  if (other.generation !== chosen.generation) return false;
  const last = (l: GenerationListing) => {
    let index = -1;
    let offset = -1;
    for (const s of l.segments) if (s.index > index || (s.index === index && s.offset > offset)) ({ index, offset } = s);
    for (const s of l.snapshots) if (s.index > index) ({ index, offset } = { index: s.index, offset: -1 });
    return { index, offset };
  };
  const a = last(other.listing);
  const b = last(chosen.listing);
  return a.index > b.index || (a.index === b.index && a.offset >= b.offset);
}

/**
 * The generation a restore with these options would use (Litestream's `CalcRestoreTarget`),
 * or undefined when no backup matches.
 * @throws RestoreError `WALSHIP_RESTORE_INVALID` for an unknown `replicaName`, a malformed
 *   `generation` or an invalid `timestamp`; listing errors of the replica clients as thrown
 *   (after retries).
 */
export async function calcRestoreTarget(options: RestoreTargetOptions): Promise<RestoreTarget | undefined> {
  const t = await chooseTarget(options);
  return t ? { replicaName: t.replicaName, generation: t.generation, updatedAt: t.updatedAt } : undefined;
}

async function mapLimit<T, R>(items: readonly T[], limit: number, fn: (item: T) => Promise<R>): Promise<R[]> {
  const out = new Array<R>(items.length);
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const i = next++;
      out[i] = await fn(items[i]!);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return out;
}

/**
 * Generations of every replica (or of `opts.replicaName`) with their time bounds, lag and
 * sizes: sorted by replica (in the given order), then generation name. Empty generations are
 * left out.
 */
export async function listGenerations(replicas: readonly RestoreReplica[], opts: ListOptions = {}): Promise<GenerationInfo[]> {
  const now = (opts.now ?? new Date()).getTime();
  return perGeneration(replicas, opts, async (replica, g) => {
    const l = await listGeneration(replica, g, opts.signal);
    const bounds = generationBounds(l);
    if (!bounds) return [];
    let size = 0;
    for (const s of l.snapshots) size += s.size;
    for (const s of l.segments) size += s.size;
    return [
      {
        generation: g,
        createdAt: bounds.createdAt,
        updatedAt: bounds.updatedAt,
        lagMs: now - bounds.updatedAt.getTime(),
        snapshotCount: l.snapshots.length,
        walSegmentCount: l.segments.length,
        size,
      },
    ];
  });
}

/** `fetch(replica, generation)` for every selected replica and generation, tagged with the replica name. */
async function perGeneration<T extends object>(
  replicas: readonly RestoreReplica[],
  opts: ListOptions,
  fetch: (replica: RestoreReplica, generation: string) => Promise<T[]>,
): Promise<Array<T & { readonly replicaName: string }>> {
  checkGenerationOption(opts.generation);
  const out: Array<T & { readonly replicaName: string }> = [];
  for (const replica of selectReplicas(replicas, opts.replicaName)) {
    let names = await listGenerationNames(replica, opts.signal);
    if (opts.generation) names = names.filter((g) => g === opts.generation);
    const lists = await mapLimit(names, 8, (g) => fetch(replica, g));
    for (const list of lists) for (const item of list) out.push({ ...item, replicaName: replica.name });
  }
  return out;
}

/** Snapshots of every replica (or one; or one generation), sorted by replica (given order), generation, index. */
export async function listSnapshots(replicas: readonly RestoreReplica[], opts: ListOptions = {}): Promise<ReplicaSnapshotInfo[]> {
  return perGeneration(replicas, opts, async (replica, g) => {
    const snaps = await withRetry(() => replica.client.snapshots(g), { signal: opts.signal });
    return snaps.map((s) => ({ ...s, generation: g })).sort(compareSnapshots);
  });
}

/** WAL segments of every replica (or one; or one generation), sorted by replica, generation, index, offset. */
export async function listWalSegments(replicas: readonly RestoreReplica[], opts: ListOptions = {}): Promise<ReplicaWALSegmentInfo[]> {
  return perGeneration(replicas, opts, async (replica, g) => {
    const segs = await withRetry(() => replica.client.walSegments(g), { signal: opts.signal });
    return segs.map((s) => ({ ...s, generation: g })).sort(compareSegments);
  });
}
