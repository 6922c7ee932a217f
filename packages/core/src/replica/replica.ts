import type { EventEmitter } from 'node:events';
import { Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { WalEngine } from '../db/engine.js';
import { formatGoDuration } from '../duration.js';
import { AgeError, type AgeErrorCode, errorMessage, isNotFoundError, ReplicaAheadError, isWalshipError } from '../errors.js';
import type { Logger } from '../logger.js';
import { decodeObject, encodeObject, encodeSource, type ObjectStage } from '../pipeline.js';
import { comparePos, formatPos, type Pos } from '../pos.js';
import type { ReplicaClient, SnapshotInfo, WALSegmentInfo } from '../replica-client.js';
import { backoffDelay, Mutex, sleep } from '../util/async.js';
import type { SharedLimiters } from '../util/shared-limits.js';
import { DEFAULT_LEASE_TTL_MS, ReplicaLease } from './lease.js';

/**
 * A generation's first object is written at least this long after the replica's previous write
 * (or after the replica was created, which covers the previous process's last writes). Stores
 * that list whole seconds (S3, Azure, SFTP) then give every object of the new generation a
 * later time than every object of the old one, so a restore by time — walship's or Litestream
 * v0.3's, which keeps the first of two generations with the same time — picks the new one.
 */
const NEW_GENERATION_GAP_MS = 1100;

export interface ReplicaSettings {
  readonly name: string;
  readonly client: ReplicaClient;
  readonly syncIntervalMs: number;
  readonly retentionMs: number;
  readonly retentionCheckIntervalMs: number;
  readonly snapshotIntervalMs: number;
  readonly stages: readonly ObjectStage[];
  readonly logger: Logger;
  /** Lease time to live (default `DEFAULT_LEASE_TTL_MS`; 0: no lease). See lease.ts. */
  readonly leaseTtlMs?: number;
  /** Take over another writer's live lease (planned failover). */
  readonly takeover?: boolean;
  /** Limits shared with other replicators (`concurrency` option; util/shared-limits.ts). */
  readonly limiters?: SharedLimiters;
}

/**
 * One destination of one database: keeps its remote position in memory (recomputed from the
 * remote only at start and after a failure that leaves it unknown), uploads WAL segments,
 * takes snapshots when the generation has none (or on `snapshotInterval`), and enforces
 * retention. Failures are retried with exponential backoff and never affect other replicas.
 */
export class Replica {
  readonly name: string;
  /** The replica's client behind its lease guard (writes check the lease first). */
  readonly client: ReplicaClient;
  readonly settings: ReplicaSettings;
  readonly lease: ReplicaLease;
  /** Durable remote position; undefined while unknown. */
  pos: Pos | undefined;
  lastError: string | undefined;
  lastSyncAt: Date | undefined;
  errors = 0;
  #engine: WalEngine;
  #events: EventEmitter;
  #log: Logger;
  #mutex = new Mutex();
  #lastSnapshotAt = 0;
  #lastRetentionAt = Date.now();
  /** Generation known to have a snapshot on this replica. */
  #snapshotGeneration: string | undefined;
  /** performance.now() of the last completed write (creation time before the first). */
  #lastWriteAt = performance.now();
  inflight = 0;

  constructor(settings: ReplicaSettings, engine: WalEngine, events: EventEmitter) {
    this.settings = settings;
    this.name = settings.name;
    // Every write and delete goes through the lease (lease.ts); reads pass straight through.
    this.lease = new ReplicaLease({
      client: settings.client,
      replica: settings.name,
      dbPath: engine.dbPath,
      metaPath: engine.settings.metaPath,
      ttlMs: settings.leaseTtlMs ?? DEFAULT_LEASE_TTL_MS,
      takeover: settings.takeover ?? false,
      logger: settings.logger,
      generation: () => engine.generation,
      onRequest: (op) => this.#op(op),
    });
    this.client = this.lease.guard(settings.client);
    this.#engine = engine;
    this.#events = events;
    this.#log = settings.logger;
  }

  #op(operation: 'GET' | 'PUT' | 'DELETE' | 'LIST', bytes = 0): void {
    this.#events.emit('operation', { replica: this.name, replicaType: this.client.type, operation, bytes });
  }

  /** Computes the remote position for the engine's generation (LIST, and a GET of the last segment). */
  async #calcPos(): Promise<void> {
    const generation = this.#engine.generation;
    this.#op('LIST');
    const snapshots = await this.client.snapshots(generation);
    this.#snapshotGeneration = snapshots.length > 0 ? generation : undefined;
    if (snapshots.length > 0) this.#lastSnapshotAt = Math.max(...snapshots.map((s) => s.createdAt.getTime()));
    this.#op('LIST');
    const segments = await this.client.walSegments(generation);
    if (segments.length === 0) {
      this.pos = snapshots.length > 0 ? { generation, index: Math.max(...snapshots.map((s) => s.index)), offset: 0 } : undefined;
      return;
    }
    let last = segments[0]!;
    for (const s of segments) if (s.index > last.index || (s.index === last.index && s.offset > last.offset)) last = s;
    const start = { generation, index: last.index, offset: last.offset };
    let n = 0;
    const stored = await this.client.walSegmentReader(start);
    try {
      await pipeline(
        decodeObject(stored, this.settings.stages),
        new Transform({
          transform(chunk: Buffer, _e, cb) {
            n += chunk.length;
            cb();
          },
        }),
      );
    } catch (err) {
      // E.g. age recipients without identities: say what could not be read, and why.
      if (isWalshipError(err) && err.code.startsWith('WALSHIP_AGE_')) {
        throw new AgeError(
          err.code as AgeErrorCode,
          `cannot read the replica's position from its last wal segment ${formatPos(start)}: ${err.message}`,
        );
      }
      throw err;
    }
    this.#op('GET', last.size);
    this.pos = { generation, index: last.index, offset: last.offset + n };
  }

  /**
   * The replica's position once a restore can reach it: its generation has a snapshot on this
   * replica. WAL shipped ahead of a generation's first snapshot does not count yet.
   */
  get restorablePos(): Pos | undefined {
    return this.pos && this.#snapshotGeneration === this.pos.generation ? this.pos : undefined;
  }

  /**
   * Called when this replica begins writing a snapshot, with the snapshot's position (before
   * anything is uploaded). The validator uses it to know that a snapshot of an index it is
   * restoring may have been replaced by a later one (replica/validator.ts).
   */
  onSnapshotStart: ((pos: Pos) => void) | undefined;

  /** True when a restore of this replica reaches `target`: restorable, same generation, at or past it. */
  reached(target: Pos): boolean {
    const p = this.restorablePos;
    return p !== undefined && p.generation === target.generation && comparePos(p, target) >= 0;
  }

  /**
   * Uploads everything the engine has committed. Takes a snapshot first when this replica has
   * none for the current generation (or its local data is gone).
   * @throws the client's error; the caller retries with backoff
   */
  sync(): Promise<void> {
    return this.#mutex.run(() => this.#sync());
  }

  async #sync(): Promise<void> {
    const engine = this.#engine;
    if (!engine.isOpen || !engine.generation) return;
    // Take the replica's lease before anything else; false: wait after a forced takeover.
    if (!(await this.lease.begin())) return;
    if (!this.pos || this.pos.generation !== engine.generation) await this.#calcPos();
    if (this.#snapshotGeneration !== engine.generation) await this.#snapshot();
    for (;;) {
      const src = engine.sourceFor(this.pos!);
      if (src.kind === 'caught-up') break;
      if (src.kind === 'unavailable') {
        if (src.ahead) throw new ReplicaAheadError(this.name, engine.generation, src.reason);
        this.#log.warn('replica needs a new snapshot', { replica: this.name, reason: src.reason, position: formatPos(this.pos!) });
        await this.#snapshot();
        continue;
      }
      await this.#uploadSegment(src);
    }
    this.lastSyncAt = new Date();
  }

  /**
   * One WAL segment. `limited`: in turn with the group's other uploads (`concurrency`); a
   * snapshot's own WAL is not, since the snapshot already holds a slot and its read transaction.
   */
  async #uploadSegment(src: Extract<ReturnType<WalEngine['sourceFor']>, { kind: 'data' }>, limited = true): Promise<void> {
    const t0 = Date.now();
    const generation = this.#engine.generation;
    const start: Pos = { generation, index: src.index, offset: src.start };
    const upload = async () => {
      this.inflight++;
      try {
        const body = encodeObject(this.#engine.openSegment(src), this.settings.stages);
        return await this.client.writeWALSegment(start, body);
      } finally {
        this.inflight--;
      }
    };
    const limiter = limited ? this.settings.limiters?.uploads : undefined;
    const info: WALSegmentInfo = await (limiter ? limiter(upload) : upload());
    this.#lastWriteAt = performance.now();
    this.#op('PUT', info.size);
    this.pos = { generation, index: src.index, offset: src.end };
    this.#log.info('wal segment written', {
      replica: this.name,
      position: formatPos(start),
      sz: src.end - src.start,
      elapsed: formatGoDuration(Date.now() - t0),
    });
    this.#events.emit('replica-sync', { replica: this.name, pos: this.pos, bytes: src.end - src.start, durationMs: Date.now() - t0 });
  }

  /**
   * Snapshot of the database file labelled with the current WAL index. The WAL of that index
   * up to the snapshot's point is uploaded first, so every restore that uses the snapshot also
   * replays every frame the snapshot's pages may already contain.
   */
  snapshot(): Promise<SnapshotInfo> {
    return this.#mutex.run(() => this.#snapshot());
  }

  /** A snapshot, in turn with the other replicators of its `concurrency` group. */
  #snapshot(): Promise<SnapshotInfo> {
    const limiter = this.settings.limiters?.snapshots;
    return limiter ? limiter(() => this.#takeSnapshot()) : this.#takeSnapshot();
  }

  async #takeSnapshot(): Promise<SnapshotInfo> {
    const t0 = Date.now();
    const engine = this.#engine;
    if (!this.pos || this.pos.generation !== engine.generation) {
      // The first object of a generation on this replica: order it after the previous one's.
      const wait = this.#lastWriteAt + NEW_GENERATION_GAP_MS - performance.now();
      if (wait > 0) await sleep(wait);
    }
    return engine.withSnapshot(async ({ pos, source }) => {
      this.onSnapshotStart?.(pos);
      // Send the WAL of the snapshot's index up to the snapshot's point first, always. The
      // database file may already hold frames up to there (checkpoints copy up to the pin),
      // and a restore replays the snapshot's index from its start on top of it: a snapshot on
      // the replica without those frames — a kill -9 between the two uploads — would restore
      // to a torn database. For a generation's first snapshot this means the generation has
      // WAL but no snapshot while the snapshot uploads; walship's restore skips such a
      // generation (nothing in it was acknowledged yet) and Litestream's fails until it lands.
      if (!this.pos || this.pos.generation !== pos.generation) this.pos = { generation: pos.generation, index: pos.index, offset: 0 };
      // From wherever the replica stands — possibly in an index the WAL has left since its
      // last sync: that index's tail must not be skipped, or restores from older snapshots
      // would silently miss it (a segment list cannot show where an index should have ended).
      await this.#shipUpTo(pos);
      if (comparePos(this.pos, pos) < 0 && this.pos.index < pos.index) {
        // The rest of an older index is gone locally (it was not kept for this replica).
        this.#log.warn(
          'replica misses the end of an older wal index; older snapshots of this generation may not restore to their latest point',
          {
            replica: this.name,
            position: formatPos(this.pos),
            snapshot: formatPos(pos),
          },
        );
        this.pos = { generation: pos.generation, index: pos.index, offset: 0 };
        await this.#shipUpTo(pos);
      }
      // The database is read straight into the LZ4 encoder's buffers (encodeSource), so memory
      // stays a few blocks whatever the database size.
      const body = encodeSource(source, this.settings.stages);
      let info: SnapshotInfo;
      try {
        info = await this.client.writeSnapshot(pos.generation, pos.index, body);
      } finally {
        // Nothing may read the database file once the snapshot transaction ends.
        if (!body.destroyed) body.destroy();
      }
      this.#lastWriteAt = performance.now();
      this.#op('PUT', info.size);
      this.#snapshotGeneration = pos.generation;
      this.#lastSnapshotAt = info.createdAt.getTime();
      this.#log.info('snapshot written', {
        replica: this.name,
        position: formatPos(pos),
        sz: info.size,
        elapsed: formatGoDuration(Date.now() - t0),
      });
      this.#events.emit('snapshot', {
        replica: this.name,
        generation: pos.generation,
        index: pos.index,
        sizeBytes: info.size,
        durationMs: Date.now() - t0,
      });
      return info;
    });
  }

  /** Uploads from the replica's position up to `pos` (not past it), across closed indexes, while the data is available locally. */
  async #shipUpTo(pos: Pos): Promise<void> {
    while (comparePos(this.pos!, pos) < 0) {
      const src = this.#engine.sourceFor(this.pos!);
      if (src.kind !== 'data') return;
      await this.#uploadSegment(src.index === pos.index && src.end > pos.offset ? { ...src, end: pos.offset } : src, false);
    }
  }

  /** True when a periodic snapshot is due. */
  snapshotDue(now = Date.now()): boolean {
    return (
      this.settings.snapshotIntervalMs > 0 &&
      this.#snapshotGeneration !== undefined &&
      now - this.#lastSnapshotAt >= this.settings.snapshotIntervalMs
    );
  }

  retentionDue(now = Date.now()): boolean {
    if (this.settings.retentionMs <= 0) return false;
    const every = Math.min(this.settings.retentionCheckIntervalMs, this.settings.retentionMs);
    return now - this.#lastRetentionAt >= every;
  }

  /**
   * Milliseconds until `snapshotDue()` or `retentionDue()` turns true (≤ 0: one is due now;
   * Infinity: neither ever will), so an idle replica can sleep exactly that long.
   */
  maintenanceDueIn(now = Date.now()): number {
    let due = Number.POSITIVE_INFINITY;
    if (this.settings.snapshotIntervalMs > 0 && this.#snapshotGeneration !== undefined)
      due = this.#lastSnapshotAt + this.settings.snapshotIntervalMs - now;
    if (this.settings.retentionMs > 0) {
      const every = Math.min(this.settings.retentionCheckIntervalMs, this.settings.retentionMs);
      due = Math.min(due, this.#lastRetentionAt + every - now);
    }
    return due;
  }

  /**
   * Litestream's retention: keep snapshots newer than `retention` (taking a fresh one when none
   * is), delete generations without a retained snapshot, and within a generation delete
   * snapshots and WAL segments below its lowest retained snapshot index.
   */
  enforceRetention(now = Date.now()): Promise<void> {
    return this.#mutex.run(async () => {
      this.#lastRetentionAt = now;
      const client = this.client;
      this.#op('LIST');
      const generations = await client.generations();
      const all: SnapshotInfo[] = [];
      for (const g of generations) {
        this.#op('LIST');
        all.push(...(await client.snapshots(g)));
      }
      const cutoff = now - this.settings.retentionMs;
      let retained = all.filter((s) => s.createdAt.getTime() >= cutoff);
      if (retained.length === 0) {
        if (!this.#engine.isOpen) return;
        retained = [await this.#snapshot()];
      }
      const current = this.#engine.generation;
      for (const g of generations) {
        const keep = retained.filter((s) => s.generation === g);
        if (keep.length === 0) {
          if (g === current) continue; // never delete what the live generation builds on
          await client.deleteGeneration(g);
          this.#op('DELETE');
          this.#log.info('generation deleted', { replica: this.name, generation: g });
          continue;
        }
        const min = Math.min(...keep.map((s) => s.index));
        for (const s of all) {
          if (s.generation === g && s.index < min) {
            await client.deleteSnapshot(g, s.index);
            this.#op('DELETE');
            this.#log.info('snapshot deleted', { replica: this.name, generation: g, index: s.index });
          }
        }
        this.#op('LIST');
        const old = (await client.walSegments(g)).filter((s) => s.index < min);
        if (old.length > 0) {
          await client.deleteWALSegments(old.map((s) => ({ generation: g, index: s.index, offset: s.offset })));
          this.#op('DELETE');
          this.#log.info('wal segments deleted before', { replica: this.name, generation: g, index: min, count: old.length });
        }
      }
    });
  }

  /** Runs `fn` with retries and backoff until it succeeds or `signal` aborts. */
  static async retrying<T>(
    fn: () => Promise<T>,
    opts: { signal?: AbortSignal; attempts?: number; onError?: (err: unknown, attempt: number) => void },
  ): Promise<T> {
    for (let attempt = 0; ; attempt++) {
      try {
        return await fn();
      } catch (err) {
        opts.onError?.(err, attempt);
        if (isNotFoundError(err) || (isWalshipError(err) && (err as { retryable?: boolean }).retryable === false)) throw err;
        if (opts.attempts !== undefined && attempt + 1 >= opts.attempts) throw err;
        await sleep(backoffDelay(attempt), opts.signal);
      }
    }
  }

  recordError(err: unknown): void {
    this.errors++;
    this.lastError = errorMessage(err);
  }

  recordSuccess(): void {
    this.errors = 0;
    this.lastError = undefined;
  }
}
