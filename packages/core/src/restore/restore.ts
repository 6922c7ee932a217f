import { constants as fsConstants } from 'node:fs';
import { link, mkdir, open, rename, rm, stat, unlink, type FileHandle } from 'node:fs/promises';
import path from 'node:path';
import { addAbortSignal, Readable } from 'node:stream';
import { CorruptDataError, isNotFoundError, isWalshipError } from '../errors.js';
import { silentLogger, type Logger } from '../logger.js';
import { formatHex8, MAX_INDEX } from '../naming.js';
import { decodeObject, lz4Stage, type ObjectStage } from '../pipeline.js';
import { formatPos } from '../pos.js';
import type { SnapshotInfo, WALSegmentInfo } from '../replica-client.js';
import { describeDamage, RestoreError } from './errors.js';
import { removeStaleTempFiles, removeTempFiles, startJanitor, tempPrefix } from './janitor.js';
import { pathExists, writeFullAt } from '../util/fs.js';
import { type GenerationListing, holdsAtLeast, rankTargets, type SkippedReplica, type TargetChoice } from './listing.js';
import { PageStore } from './page-store.js';
import { buildPlan, segmentObjectName, snapshotCandidates, snapshotObjectName, type RestorePlan, type TargetFilter } from './plan.js';
import { SegmentPrefetcher } from './prefetch.js';
import { resumableObject, throwIfAborted } from './retry.js';
import type {
  DamageLocation,
  DamageReport,
  RestorablePoint,
  RestoreOptions,
  RestoreProgress,
  RestoreReplica,
  RestoreResult,
} from './types.js';
import { SegmentVerifier } from './segment-verifier.js';
import { type WalChain, WalDamage, WalIndexApplier } from './wal-applier.js';
import { defaultWorkerCount, WorkerDecodePipeline } from './worker-decoder.js';

/** Default number of segment downloads in flight. */
export const DEFAULT_RESTORE_PARALLELISM = 8;

const SQLITE_HEADER = Buffer.from('SQLite format 3\0', 'latin1');

/** Tunables for tests and benchmarks (not part of the public options). */
export interface RestoreInternals {
  committedBytes?: number;
  pendingBytes?: number;
  segmentBufferBytes?: number;
  /** Decode worker threads (default 0 = decode on the main thread; see defaultWorkerCount). */
  workers?: number;
  /** Use workers only when the planned stored WAL is at least this large (default 16 MiB). */
  workerThresholdBytes?: number;
  /**
   * Called before the result is moved into place with where the WAL chain of the last applied
   * index stands (undefined when no WAL was applied) and the page size: a follower continues there.
   */
  onRestored?: (end: { readonly chain: WalChain | undefined; readonly pageSize: number }) => void;
}

/** Below this much stored WAL, starting workers costs more than it saves. */
const WORKER_THRESHOLD_BYTES = 16 * 1024 * 1024;

/** True when objects are plain LZ4 frames (what the decode workers handle). */
function isDefaultStages(stages: readonly ObjectStage[] | undefined): boolean {
  return stages === undefined || (stages.length === 1 && stages[0] === lz4Stage);
}

interface PassContext {
  readonly replica: RestoreReplica;
  readonly tempDb: string;
  readonly spillPath: string;
  readonly fileMode: number;
  readonly parallelism: number;
  readonly logger: Logger;
  readonly signal: AbortSignal | undefined;
  readonly progress: ProgressReporter;
  readonly internals: RestoreInternals;
}

/** Outcome of one pass (one snapshot plus WAL). The temp database holds the state at `reached`. */
interface PassResult {
  readonly plan: RestorePlan;
  /** Snapshot object missing or corrupt: nothing was restored. */
  readonly snapshotDamage?: DamageLocation;
  /** WAL damage that stopped the pass. */
  readonly damage?: DamageLocation;
  /** Point the temp database holds after the pass (valid unless snapshotDamage). */
  readonly reached: RestorablePoint;
  /** Whether `reached` is a consistent state (past the snapshot's base segments). */
  readonly consistent: boolean;
  readonly walBytes: number;
  readonly pageSize: number;
  /** Where the last fully applied index's chain stands (complete passes only). */
  readonly chain?: WalChain;
}

class ProgressReporter {
  private last = 0;
  constructor(private readonly cb: RestoreOptions['onProgress']) {}

  report(p: RestoreProgress, force = false): void {
    if (!this.cb) return;
    const now = Date.now();
    if (!force && now - this.last < 100) return;
    this.last = now;
    try {
      this.cb(p);
    } catch {
      // A throwing progress callback must not break the restore.
    }
  }
}

function invalid(message: string): RestoreError {
  return new RestoreError('WALSHIP_RESTORE_INVALID', message);
}

function validate(options: RestoreOptions): void {
  if (!options || typeof options.outputPath !== 'string' || options.outputPath === '') throw invalid('output path required');
  if (options.index !== undefined && options.timestamp !== undefined) throw invalid('cannot specify index & timestamp to restore');
  if (options.index !== undefined && (!Number.isInteger(options.index) || options.index < 0 || options.index > MAX_INDEX)) {
    throw invalid(`invalid index ${String(options.index)}: expected an integer from 0 to ${MAX_INDEX}`);
  }
  if (options.offset !== undefined) {
    if (options.index === undefined) throw invalid('cannot specify offset without index to restore');
    if (!Number.isSafeInteger(options.offset) || options.offset < 0)
      throw invalid(`invalid offset ${String(options.offset)}: expected a non-negative integer`);
  }
  if (options.timestamp !== undefined && (!(options.timestamp instanceof Date) || Number.isNaN(options.timestamp.getTime()))) {
    throw invalid('invalid timestamp: expected a valid Date');
  }
  if (options.verify !== undefined && !['integrity', 'quick', 'none'].includes(options.verify)) {
    throw invalid(`invalid verify "${String(options.verify)}": expected integrity, quick or none`);
  }
  if (options.parallelism !== undefined && (typeof options.parallelism !== 'number' || Number.isNaN(options.parallelism))) {
    throw invalid('invalid parallelism: expected a number');
  }
}

/**
 * Restores a database from the newest matching backup among `options.replicas` — or to a
 * point in time (`timestamp`) or WAL index (`index`) — into `options.outputPath`.
 *
 * Target selection follows Litestream v0.3 (format reference §6.1, with fix #527); snapshot
 * choice follows §6.2. The WAL is applied without SQLite's checkpointer: every frame's salts
 * and checksum chain are verified, only whole committed transactions are applied, and only the
 * newest version of each page is written. The result is built in
 * `<dir>/.<base>.walship-restore-<pid>-<random>`, checked with `PRAGMA integrity_check` (see
 * `verify`) and renamed into place; every temporary file is removed on success, on failure,
 * and by a janitor process if this process dies.
 *
 * @throws RestoreError `WALSHIP_RESTORE_INVALID` for bad options (`output path required`,
 *   `cannot specify index & timestamp to restore`, unknown replica, malformed generation…)
 * @throws RestoreError `WALSHIP_RESTORE_NO_BACKUPS` `no matching backups found` (unless
 *   `ifReplicaExists`), or no snapshot at or below `index` / at or before `timestamp`
 * @throws RestoreError `WALSHIP_RESTORE_OUTPUT_EXISTS` when the output exists and neither
 *   `overwrite` nor `ifDbNotExists` is set
 * @throws RestoreError `WALSHIP_RESTORE_DAMAGED` (with `damage`) when an object is missing or
 *   corrupt and `partial` is not set, or nothing at all is restorable
 * @throws RestoreError `WALSHIP_RESTORE_VERIFY_FAILED` when the integrity check fails
 * @throws the replica client's errors (after retries) and the abort reason of `signal`
 */
export async function restore(options: RestoreOptions): Promise<RestoreResult> {
  return restoreWith(options, {});
}

/** {@link restore} with internal tunables (memory budgets); for tests and benchmarks. */
export async function restoreWith(options: RestoreOptions, internals: RestoreInternals): Promise<RestoreResult> {
  const started = performance.now();
  validate(options);
  const logger = options.logger ?? silentLogger;
  const signal = options.signal;
  const outputPath = path.resolve(options.outputPath);
  const parallelism = Math.max(1, Math.floor(options.parallelism ?? DEFAULT_RESTORE_PARALLELISM));
  throwIfAborted(signal);

  if (options.ifDbNotExists && (await pathExists(outputPath))) {
    logger.info('database already exists, skipping', { path: outputPath });
    return { status: 'skipped-db-exists' };
  }

  const { ranked, unreachable } = await rankTargets(
    {
      replicas: options.replicas,
      ...(options.replicaName !== undefined ? { replicaName: options.replicaName } : {}),
      ...(options.generation !== undefined ? { generation: options.generation } : {}),
      ...(options.timestamp !== undefined ? { timestamp: options.timestamp } : {}),
      logger,
      ...(signal ? { signal } : {}),
    },
    true,
  );
  const target = ranked[0];
  // Every replica unreachable: the first one's error, as before (nothing is known to restore).
  if (!target && unreachable[0]) throw unreachable[0].error;
  if (!target) {
    if (options.ifReplicaExists) {
      logger.info('no matching backups found');
      return { status: 'skipped-no-backups' };
    }
    throw new RestoreError('WALSHIP_RESTORE_NO_BACKUPS', 'no matching backups found');
  }
  // Replicas to fall back on when the chosen one turns out damaged or fails mid-restore: those
  // holding the same generation at least as far. The others are reported, never used silently.
  const skippedReplicas: SkippedReplica[] = unreachable.map(({ replicaName, reason }) => ({ replicaName, reason }));
  const fallbacks: TargetChoice[] = [];
  for (const other of ranked.slice(1)) {
    if (holdsAtLeast(other, target)) fallbacks.push(other);
    else
      skippedReplicas.push({
        replicaName: other.replicaName,
        reason: `holds an older point (generation ${other.generation}, last updated ${other.updatedAt.toISOString()})`,
      });
  }
  if (target.concurrent.length > 0) {
    logger.warn(
      'the replica holds generations written at the same time by another writer; restoring the newest, never a mix (choose another with -generation)',
      {
        replica: target.replicaName,
        restoring: target.generation,
        others: target.concurrent.map((g) => `${g.generation} (${g.createdAt.toISOString()} to ${g.updatedAt.toISOString()})`).join(', '),
      },
    );
  }

  let fileMode = 0o600;
  if (!options.overwrite) {
    for (const p of [outputPath, `${outputPath}-wal`, `${outputPath}-journal`]) {
      if (await pathExists(p)) {
        throw new RestoreError(
          'WALSHIP_RESTORE_OUTPUT_EXISTS',
          `cannot restore, output path already exists: ${p} (use overwrite to replace it, or ifDbNotExists / -if-db-not-exists to skip)`,
        );
      }
    }
  } else {
    try {
      fileMode = (await stat(outputPath)).mode & 0o7777;
    } catch {
      // no existing output
    }
  }

  const filter: TargetFilter = {
    ...(options.index !== undefined ? { index: options.index } : {}),
    ...(options.timestamp !== undefined ? { timestamp: options.timestamp } : {}),
    ...(options.offset !== undefined ? { offset: options.offset } : {}),
  };
  const firstCandidates = snapshotCandidates(target.listing.snapshots, filter);
  if (firstCandidates.length === 0) {
    const why =
      options.index !== undefined
        ? `cannot find snapshot index: no snapshots available at or below index ${formatHex8(options.index)}`
        : `cannot find snapshot index by timestamp: no snapshots available at or before ${options.timestamp?.toISOString()}`;
    throw new RestoreError('WALSHIP_RESTORE_NO_BACKUPS', `no matching backups found: ${why} in generation ${target.listing.generation}`);
  }
  if (options.index !== undefined) {
    const highest = target.listing.segments.reduce((m, s) => Math.max(m, s.index), -1);
    if (highest < options.index) {
      logger.warn('requested index is above the highest wal index; restoring the latest state', {
        index: formatHex8(options.index),
        highest: highest < 0 ? 'none' : formatHex8(highest),
      });
    }
  }

  const dir = path.dirname(outputPath);
  await mkdir(dir, { recursive: true, mode: 0o700 });
  await removeStaleTempFiles(outputPath, logger);
  const prefix = tempPrefix(outputPath);
  const tempDb = path.join(dir, prefix);
  const janitor = await startJanitor(dir, prefix, logger);
  const ctxFor = (listing: GenerationListing): PassContext => ({
    replica: listing.replica,
    tempDb,
    spillPath: `${tempDb}.spill`,
    fileMode,
    parallelism,
    logger,
    signal,
    progress: new ProgressReporter(options.onProgress),
    internals,
  });
  /** One complete attempt from one replica: the temp database built and verified. */
  const attempt = async (choice: TargetChoice, partial: boolean) => {
    await removeTempFiles(dir, prefix);
    const ctx = ctxFor(choice.listing);
    const candidates = snapshotCandidates(choice.listing.snapshots, filter);
    if (candidates.length === 0)
      throw new RestoreError('WALSHIP_RESTORE_NO_BACKUPS', `no matching snapshot in generation ${choice.generation}`);
    const outcome = await restoreFromCandidates(ctx, choice.listing, candidates, filter, partial);
    await verifyDatabase(tempDb, options.verify ?? 'integrity', ctx);
    return outcome;
  };
  try {
    const attempts = [target, ...fallbacks];
    let used = target;
    let outcome: Awaited<ReturnType<typeof attempt>> | undefined;
    let firstError: unknown;
    for (const choice of attempts) {
      // With fallbacks left, a damaged replica is not restored partially: another may be whole.
      const allowPartial = options.partial === true && attempts.length === 1;
      try {
        outcome = await attempt(choice, allowPartial);
        used = choice;
        break;
      } catch (err) {
        throwIfAborted(signal);
        firstError ??= err;
        if (attempts.length === 1) throw err;
        const reason = `restore failed: ${firstLine(err)}`;
        skippedReplicas.push({ replicaName: choice.replicaName, reason });
        logger.warn('restore from this replica failed; trying the next replica that holds the same point', {
          replica: choice.replicaName,
          reason,
        });
      }
    }
    if (!outcome && options.partial === true && attempts.length > 1) {
      // No replica restores whole: the best one up to its latest restorable point.
      const at = skippedReplicas.findIndex((r) => r.replicaName === target.replicaName);
      if (at >= 0) skippedReplicas.splice(at, 1);
      outcome = await attempt(target, true);
      used = target;
    }
    if (!outcome) throw firstError;
    const listing = used.listing;
    const { pass } = outcome;
    throwIfAborted(signal);
    internals.onRestored?.({ chain: pass.chain, pageSize: pass.pageSize });
    await placeOutput(tempDb, outputPath, options.overwrite === true);
    const durationMs = performance.now() - started;
    logger.info('restore finished', {
      path: outputPath,
      replica: used.replicaName,
      generation: listing.generation,
      snapshot: formatHex8(pass.plan.snapshot.index),
      position: formatPos(pass.reached.pos),
      walBytes: pass.walBytes,
      durationMs: Math.round(durationMs),
      partial: outcome.partial !== undefined,
      ...(skippedReplicas.length > 0 ? { skipped: skippedReplicas.map((r) => `${r.replicaName}: ${r.reason}`).join('; ') } : {}),
    });
    return {
      status: 'restored',
      replicaName: listing.replica.name,
      generation: listing.generation,
      snapshotIndex: pass.plan.snapshot.index,
      restoredTo: pass.reached.pos,
      ...(outcome.partial ? { partial: outcome.partial } : {}),
      ...(used.concurrent.length > 0 ? { concurrentGenerations: used.concurrent } : {}),
      ...(skippedReplicas.length > 0 ? { skippedReplicas } : {}),
      walBytes: pass.walBytes,
      durationMs,
    };
  } finally {
    await removeTempFiles(dir, prefix);
    janitor.release();
  }
}

/**
 * Tries the chosen snapshot, then older ones of the same generation when the snapshot object
 * is damaged or the WAL is damaged before the snapshot's base segments. Returns the pass to
 * finalise (complete, or partial when allowed), or throws DAMAGED.
 */
async function restoreFromCandidates(
  ctx: PassContext,
  listing: GenerationListing,
  candidates: readonly SnapshotInfo[],
  filter: TargetFilter,
  partial: boolean,
): Promise<{ pass: PassResult; partial?: DamageReport }> {
  const skipped: DamageLocation[] = [];
  let firstDamage: DamageLocation | undefined;
  for (const snapshot of candidates) {
    const plan = buildPlan(listing, snapshot, filter);
    const pass = await runPass(ctx, listing, plan);
    if (pass.snapshotDamage) {
      ctx.logger.warn('snapshot is damaged, trying an older snapshot', {
        generation: listing.generation,
        index: formatHex8(snapshot.index),
        detail: pass.snapshotDamage.detail,
      });
      skipped.push(pass.snapshotDamage);
      continue;
    }
    if (!pass.damage) {
      if (skipped.length > 0) {
        ctx.logger.warn('restored from an older snapshot because newer ones are damaged', {
          generation: listing.generation,
          snapshot: formatHex8(snapshot.index),
          skipped: skipped.map((s) => s.object),
        });
      }
      return { pass };
    }
    if (pass.consistent) {
      const report: DamageReport = {
        ...pass.damage,
        restorable: pass.reached,
        ...(skipped.length > 0 ? { skippedSnapshots: skipped } : {}),
      };
      if (partial) {
        ctx.logger.warn('restoring up to the latest restorable point', { damage: describeDamage(report, true) });
        return { pass, partial: report };
      }
      throw new RestoreError('WALSHIP_RESTORE_DAMAGED', describeDamage(report, false), { damage: report });
    }
    firstDamage ??= pass.damage;
    ctx.logger.warn('wal is damaged before the snapshot is complete, trying an older snapshot', {
      generation: listing.generation,
      snapshot: formatHex8(snapshot.index),
      detail: pass.damage.detail,
    });
  }
  const primary = firstDamage ?? skipped[0]!;
  const report: DamageReport = { ...primary, ...(skipped.length > 0 && firstDamage ? { skippedSnapshots: skipped } : {}) };
  if (!firstDamage && skipped.length > 1) (report as { skippedSnapshots?: DamageLocation[] }).skippedSnapshots = skipped.slice(1);
  throw new RestoreError('WALSHIP_RESTORE_DAMAGED', describeDamage(report, partial), { damage: report });
}

function classifyObjectError(err: unknown): 'missing' | 'truncated' | 'corrupt' | undefined {
  if (isNotFoundError(err)) return 'missing';
  if (isWalshipError(err, 'WALSHIP_CORRUPT')) return /truncat|empty/i.test(err.message) ? 'truncated' : 'corrupt';
  return undefined;
}

/** The damage a failed WAL segment read means (missing, truncated, corrupt), or undefined for other errors (network…). */
export function segmentDamageKind(err: unknown): 'missing-segment' | 'truncated-segment' | 'corrupt-segment' | undefined {
  const kind = classifyObjectError(err);
  return kind === undefined
    ? undefined
    : kind === 'missing'
      ? 'missing-segment'
      : kind === 'truncated'
        ? 'truncated-segment'
        : 'corrupt-segment';
}

export function firstLine(err: unknown): string {
  return (err instanceof Error ? err.message : String(err)).split('\n')[0] ?? '';
}

/** Builds the temp database from `plan`: snapshot, then WAL, stopping at the first damage. */
async function runPass(ctx: PassContext, listing: GenerationListing, plan: RestorePlan): Promise<PassResult> {
  const { replica, logger, signal } = ctx;
  const gen = listing.generation;
  const snapshot = plan.snapshot;
  const base = { replicaName: replica.name, generation: gen };
  const snapshotPoint: RestorablePoint = {
    pos: { generation: gen, index: snapshot.index, offset: 0 },
    time: snapshot.createdAt,
    snapshotIndex: snapshot.index,
  };
  await rm(ctx.spillPath, { force: true });
  const fh = await open(ctx.tempDb, fsConstants.O_RDWR | fsConstants.O_CREAT | fsConstants.O_TRUNC, ctx.fileMode);
  const segments: WALSegmentInfo[] = plan.indexes.flatMap((ip) => [...ip.segments]);
  const prefetcher =
    segments.length > 0
      ? new SegmentPrefetcher({
          client: replica.client,
          segments,
          parallelism: ctx.parallelism,
          ...(ctx.internals.segmentBufferBytes ? { bufferBytes: ctx.internals.segmentBufferBytes } : {}),
          ...(signal ? { signal } : {}),
          logger,
        })
      : undefined;
  // Decode workers for large WALs written with the default (LZ4) stages.
  const workerCount = ctx.internals.workers ?? defaultWorkerCount();
  const storedBySegment = new Array<number>(segments.length).fill(0);
  let walStored = 0;
  let segmentsDone = 0;
  const walProgress = () => ({
    phase: 'wal' as const,
    bytesDone: walStored,
    bytesTotal: plan.walStoredBytes,
    segmentsDone,
    segmentsTotal: segments.length,
  });
  const onStored = (i: number, n: number) => {
    const before = storedBySegment[i]!;
    storedBySegment[i] = before + n;
    walStored += n;
    const size = segments[i]!.size;
    if (before < size && before + n >= size) segmentsDone++;
    ctx.progress.report(walProgress());
  };
  const workersPromise =
    prefetcher &&
    workerCount > 0 &&
    isDefaultStages(replica.stages) &&
    plan.walStoredBytes >= (ctx.internals.workerThresholdBytes ?? WORKER_THRESHOLD_BYTES)
      ? WorkerDecodePipeline.start({
          prefetcher,
          offsets: segments.map((s) => s.offset),
          workers: workerCount,
          logger,
          onStoredBytes: onStored,
        })
      : undefined;
  let workers: WorkerDecodePipeline | undefined;
  let store: PageStore | undefined;
  try {
    // -- snapshot ---------------------------------------------------------------------------
    logger.info('restoring snapshot', { generation: gen, index: formatHex8(snapshot.index), size: snapshot.size });
    let snapshotStored = 0;
    let snapshotBytes = 0;
    const head = Buffer.alloc(100);
    try {
      const stored = resumableObject(
        async () => addAbortSignal(signalOrNever(signal), await replica.client.snapshotReader(gen, snapshot.index)) as Readable,
        {
          ...(signal ? { signal } : {}),
          onRetry: (err, attempt) => logger.warn('snapshot download failed, retrying', { attempt, error: String(err) }),
          onBytes: (n) => {
            snapshotStored += n;
            ctx.progress.report({ phase: 'snapshot', bytesDone: snapshotStored, bytesTotal: plan.snapshotBytes });
          },
        },
      );
      const decoded = decodeObject(Readable.from(stored, { objectMode: false }), replica.stages);
      for await (const raw of decoded) {
        const chunk = raw as Buffer;
        if (snapshotBytes < 100) chunk.copy(head, snapshotBytes, 0, Math.min(chunk.length, 100 - snapshotBytes));
        await writeFullAt(fh, chunk, 0, chunk.length, snapshotBytes);
        snapshotBytes += chunk.length;
      }
      if (snapshotStored === 0) throw new CorruptDataError('snapshot object is empty (0 bytes)');
    } catch (err) {
      throwIfAborted(signal);
      const kind = classifyObjectError(err);
      if (!kind) throw err;
      return {
        plan,
        snapshotDamage: {
          ...base,
          kind: kind === 'missing' ? 'missing-snapshot' : 'corrupt-snapshot',
          index: snapshot.index,
          offset: 0,
          object: snapshotObjectName(snapshot.index),
          detail: kind === 'missing' ? 'snapshot object not found' : firstLine(err),
        },
        reached: snapshotPoint,
        consistent: false,
        walBytes: 0,
        pageSize: 0,
      };
    }
    ctx.progress.report({ phase: 'snapshot', bytesDone: snapshotStored, bytesTotal: plan.snapshotBytes }, true);
    const pageSize = snapshotPageSize(head, snapshotBytes);
    if (typeof pageSize === 'string') {
      return {
        plan,
        snapshotDamage: {
          ...base,
          kind: 'corrupt-snapshot',
          index: snapshot.index,
          offset: 0,
          object: snapshotObjectName(snapshot.index),
          detail: pageSize,
        },
        reached: snapshotPoint,
        consistent: false,
        walBytes: 0,
        pageSize: 0,
      };
    }

    // -- WAL ----------------------------------------------------------------------------------
    workers = await workersPromise;
    workers?.begin(pageSize);
    store = new PageStore(fh, pageSize, {
      spillPath: ctx.spillPath,
      ...(ctx.internals.committedBytes ? { committedBytes: ctx.internals.committedBytes } : {}),
      ...(ctx.internals.pendingBytes ? { pendingBytes: ctx.internals.pendingBytes } : {}),
    });
    let reached = snapshotPoint;
    let consistent = plan.baseSegments === 0;
    let walBytes = 0;
    let k = 0;
    let overlaps = 0;
    let chain: WalChain | undefined;
    const damageAt = async (d: DamageLocation): Promise<PassResult> => {
      store!.discardPending();
      await store!.flush();
      if (store!.dbPages !== undefined) await fh.truncate(store!.dbPages * pageSize);
      return { plan, damage: d, reached, consistent, walBytes, pageSize };
    };
    for (const ip of plan.indexes) {
      throwIfAborted(signal);
      const idx = ip.index;
      // `offset` (plan.stopAt): nothing at or after it in its index is applied.
      const stop = plan.stopAt && plan.stopAt.index === idx ? plan.stopAt.offset : Number.POSITIVE_INFINITY;
      const applier = new WalIndexApplier(store, pageSize, (c) => {
        reached = { pos: { generation: gen, index: idx, offset: c.offset }, time: c.time, snapshotIndex: snapshot.index };
      });
      for (let si = 0; si < ip.segments.length; si++) {
        const seg = ip.segments[si]!;
        const segBase = { ...base, index: idx, object: segmentObjectName(idx, seg.offset) };
        // Bytes at the segment's start that the previous segment already covered.
        let skip = 0;
        if (seg.offset !== applier.consumed) {
          // Drain nothing: the prefetcher is closed in finally.
          if (seg.offset > applier.consumed) {
            return damageAt({
              ...base,
              kind: 'missing-segment',
              index: idx,
              offset: applier.consumed,
              object: segmentObjectName(idx, applier.consumed),
              detail: `missing wal segment: expected offset ${applier.consumed}, next segment starts at offset ${seg.offset}`,
            });
          }
          // Overlapping segments: two replicators shipped the same WAL with different segment
          // bounds. The overlap is dropped; the checksum chain, checked by the applier itself
          // from the first frame after it, proves the rest continues this WAL. A segment of
          // another WAL (another lineage) fails there and stops the restore as damage: never a mix.
          skip = applier.consumed - seg.offset;
          if (overlaps++ === 0) {
            logger.warn(
              'wal segments overlap: two writers shipped this generation; dropping the overlap, the checksum chain decides what continues',
              {
                generation: gen,
                index: formatHex8(idx),
                object: segBase.object,
                overlap: skip,
              },
            );
          }
        }
        // Feeds the applier what lies past the overlap.
        let toDrop = skip;
        let decodedBytes = 0;
        const feed = async (whole: Buffer): Promise<void> => {
          const at = seg.offset + decodedBytes;
          decodedBytes += whole.length;
          if (at >= stop) return;
          const chunk = at + whole.length > stop ? whole.subarray(0, stop - at) : whole;
          if (toDrop >= chunk.length) {
            toDrop -= chunk.length;
            return;
          }
          const rest = toDrop > 0 ? chunk.subarray(toDrop) : chunk;
          toDrop = 0;
          await applier.write(rest);
        };
        applier.segmentTime = seg.createdAt;
        const si2 = k++;
        const before = applier.consumed;
        try {
          if (workers) {
            applier.setTrust(SegmentVerifier.trustedFrom(seg.offset + skip, pageSize));
            for await (const chunk of workers.take(si2)) {
              if (chunk.badAt >= 0) applier.limitTrust(chunk.badAt);
              if (chunk.bigEndian !== undefined && applier.bigEndian !== undefined && chunk.bigEndian !== applier.bigEndian)
                applier.limitTrust(-1);
              walBytes += chunk.buf.length;
              await feed(chunk.buf);
            }
          } else {
            applier.setTrust(Infinity);
            const counted = countBytes(prefetcher!.take(si2), (n) => onStored(si2, n));
            const decoded = decodeObject(Readable.from(counted, { objectMode: false }), replica.stages);
            for await (const raw of decoded) {
              const chunk = raw as Buffer;
              walBytes += chunk.length;
              await feed(chunk);
            }
          }
          if (storedBySegment[si2] === 0) throw new CorruptDataError('wal segment object is empty (0 bytes)');
          if (decodedBytes === 0 || (skip === 0 && applier.consumed === before)) {
            return damageAt({ ...segBase, kind: 'corrupt-segment', offset: seg.offset, detail: 'wal segment decodes to 0 bytes' });
          }
        } catch (err) {
          throwIfAborted(signal);
          if (err instanceof WalDamage) {
            return damageAt({ ...segBase, kind: 'invalid-wal', offset: err.offset, detail: err.detail });
          }
          const kind = segmentDamageKind(err);
          if (!kind) throw err;
          return damageAt({
            ...segBase,
            kind,
            offset: seg.offset,
            detail:
              kind === 'missing-segment'
                ? 'wal segment object not found'
                : `${firstLine(err)} (after ${applier.consumed - before} decoded bytes)`,
          });
        }
        if (!consistent && idx === snapshot.index && si + 1 >= plan.baseSegments && store.pendingPages === 0) consistent = true;
      }
      try {
        applier.finish();
      } catch (err) {
        if (!(err instanceof WalDamage)) throw err;
        const last = ip.segments[ip.segments.length - 1]!;
        return damageAt({
          ...base,
          kind: err.offset >= applier.consumed && err.detail.includes('missing') ? 'missing-segment' : 'invalid-wal',
          index: idx,
          offset: err.offset,
          object: segmentObjectName(idx, last.offset),
          detail: err.detail,
        });
      }
      await store.flush();
      if (store.dbPages !== undefined) await fh.truncate(store.dbPages * pageSize);
      chain = applier.chain();
      logger.debug('applied wal', {
        generation: gen,
        index: formatHex8(idx),
        frames: applier.frames,
        bytes: applier.consumed,
        pagesWritten: store.pagesWritten,
        pagesSpilled: store.pagesSpilled,
      });
    }
    ctx.progress.report(walProgress(), true);
    if (plan.damage) {
      // Listing-level damage (missing index / initial segment) after everything before it applied.
      return { plan, damage: plan.damage, reached, consistent, walBytes, pageSize };
    }
    return { plan, reached, consistent: true, walBytes, pageSize, ...(chain ? { chain } : {}) };
  } finally {
    prefetcher?.close();
    await (workers ?? (await workersPromise?.catch(() => undefined)))?.close();
    await store?.close();
    await fh.sync().catch(() => {});
    await fh.close().catch(() => {});
    await rm(ctx.spillPath, { force: true }).catch(() => {});
  }
}

const NEVER = new AbortController().signal;
function signalOrNever(signal: AbortSignal | undefined): AbortSignal {
  return signal ?? NEVER;
}

async function* countBytes(src: AsyncIterable<Buffer>, onBytes: (n: number) => void): AsyncGenerator<Buffer, void, undefined> {
  for await (const chunk of src) {
    onBytes(chunk.length);
    yield chunk;
  }
}

/** Page size from the database header, or a description of why the snapshot is not a database. */
function snapshotPageSize(head: Buffer, size: number): number | string {
  if (size < 100) return `snapshot is not a SQLite database (${size} bytes)`;
  if (!head.subarray(0, 16).equals(SQLITE_HEADER)) return 'snapshot is not a SQLite database (bad header string)';
  const raw = head.readUInt16BE(16);
  const pageSize = raw === 1 ? 65536 : raw;
  if (pageSize < 512 || pageSize > 65536 || (pageSize & (pageSize - 1)) !== 0) return `snapshot has an invalid page size ${raw}`;
  if (size % pageSize !== 0) return `snapshot size ${size} is not a multiple of its page size ${pageSize}`;
  return pageSize;
}

/** Opens the restored file with SQLite: WAL mode, then the selected check. */
async function verifyDatabase(tempDb: string, mode: 'integrity' | 'quick' | 'none', ctx: PassContext): Promise<void> {
  const size = (await stat(tempDb)).size;
  ctx.progress.report({ phase: 'verify', bytesDone: 0, bytesTotal: size }, true);
  const fh = await open(tempDb, 'r');
  const hdr = Buffer.alloc(20);
  try {
    await fh.read(hdr, 0, 20, 0);
  } finally {
    await fh.close();
  }
  const walMode = hdr[18] === 2 && hdr[19] === 2;
  if (mode === 'none' && walMode) {
    ctx.progress.report({ phase: 'verify', bytesDone: size, bytesTotal: size }, true);
    return;
  }
  const Database = await loadSqlite();
  const db = new Database(tempDb, { fileMustExist: true });
  try {
    if (!walMode) {
      const jm = db.pragma('journal_mode = WAL', { simple: true });
      if (String(jm).toLowerCase() !== 'wal') {
        throw new RestoreError(
          'WALSHIP_RESTORE_VERIFY_FAILED',
          `cannot switch the restored database to WAL mode (journal_mode=${String(jm)})`,
        );
      }
    }
    if (mode !== 'none') {
      const pragma = mode === 'quick' ? 'quick_check' : 'integrity_check';
      let rows: unknown[];
      try {
        rows = db.pragma(pragma) as unknown[];
      } catch (err) {
        throw new RestoreError('WALSHIP_RESTORE_VERIFY_FAILED', `restored database failed ${pragma}: ${firstLine(err)}`, { cause: err });
      }
      const msgs = rows.map((r) => String(Object.values(r as Record<string, unknown>)[0]));
      if (!(msgs.length === 1 && msgs[0] === 'ok')) {
        throw new RestoreError(
          'WALSHIP_RESTORE_VERIFY_FAILED',
          `restored database failed ${pragma}: ${msgs.slice(0, 3).join('; ')}${msgs.length > 3 ? ` (and ${msgs.length - 3} more)` : ''}`,
        );
      }
    }
  } finally {
    db.close();
  }
  ctx.progress.report({ phase: 'verify', bytesDone: size, bytesTotal: size }, true);
}

type SqliteCtor = typeof import('better-sqlite3');
let sqliteCtor: Promise<SqliteCtor> | undefined;
async function loadSqlite(): Promise<SqliteCtor> {
  sqliteCtor ??= import('better-sqlite3').then(
    (m) => (m as unknown as { default?: SqliteCtor }).default ?? (m as unknown as SqliteCtor),
    (err: unknown) => {
      sqliteCtor = undefined;
      throw new RestoreError(
        'WALSHIP_RESTORE_VERIFY_FAILED',
        `cannot load better-sqlite3 (a peer dependency of @walship/core; install it): ${firstLine(err)}`,
        { cause: err },
      );
    },
  );
  return sqliteCtor;
}

/** fsyncs the temp file, moves it onto `outputPath` and fsyncs the directory. */
async function placeOutput(tempDb: string, outputPath: string, overwrite: boolean): Promise<void> {
  const fh = await open(tempDb, 'r+');
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
  for (const suffix of ['-wal', '-shm']) await rm(`${tempDb}${suffix}`, { force: true });
  if (overwrite) {
    // A stale -wal/-journal would be replayed onto the new database: remove them first.
    for (const suffix of ['-wal', '-journal', '-shm']) await rm(`${outputPath}${suffix}`, { force: true });
    await rename(tempDb, outputPath);
  } else {
    try {
      await link(tempDb, outputPath); // fails with EEXIST instead of replacing
      await unlink(tempDb);
    } catch (err) {
      const code = (err as { code?: string }).code;
      if (code === 'EEXIST') {
        throw new RestoreError(
          'WALSHIP_RESTORE_OUTPUT_EXISTS',
          `cannot restore, output path already exists: ${outputPath} (use overwrite to replace it, or ifDbNotExists / -if-db-not-exists to skip)`,
        );
      }
      // File systems without hard links: check, then rename.
      if (await pathExists(outputPath)) {
        throw new RestoreError('WALSHIP_RESTORE_OUTPUT_EXISTS', `cannot restore, output path already exists: ${outputPath}`);
      }
      await rename(tempDb, outputPath);
    }
  }
  await syncDir(path.dirname(outputPath));
}

async function syncDir(dir: string): Promise<void> {
  let fh: FileHandle | undefined;
  try {
    fh = await open(dir, 'r');
    await fh.sync();
  } catch {
    // Platforms that cannot fsync a directory.
  } finally {
    await fh?.close().catch(() => {});
  }
}
