import { EventEmitter } from 'node:events';
import { open, rename, rm } from 'node:fs/promises';
import path from 'node:path';
import { Readable } from 'node:stream';
import { silentLogger, type Logger } from '../logger.js';
import { formatHex8 } from '../naming.js';
import { decodeObject } from '../pipeline.js';
import { comparePos, formatPos, type Pos } from '../pos.js';
import type { WALSegmentInfo } from '../replica-client.js';
import { compareSegments, rankTargets } from '../restore/listing.js';
import { segmentObjectName } from '../restore/plan.js';
import { removeStaleTempFiles, tempPrefix } from '../restore/janitor.js';
import { firstLine, restoreWith, segmentDamageKind } from '../restore/restore.js';
import { resumableObject } from '../restore/retry.js';
import { sleep } from '../util/async.js';
import type { DamageLocation, RestoreReplica } from '../restore/types.js';
import { type WalChain, WalDamage, WalIndexApplier } from '../restore/wal-applier.js';
import { fsyncDir, pathExists, statOrUndefined, writeFileAtomic } from '../util/fs.js';
import { defaultMetaPath } from '../db/meta-state.js';
import { ProcessLock } from '../db/process-lock.js';
import { heldFileHandle, heldWritableFileHandle } from '../util/held-files.js';
import { ApplyFailed, ApplyWorkerClient } from './apply-client.js';
import { FollowError } from './errors.js';
import { PageBatch } from './page-batch.js';
import type { FollowerEvents, FollowerOptions, FollowerState, FollowerStatus } from './types.js';

export const DEFAULT_FOLLOW_INTERVAL_MS = 1000;
export const DEFAULT_FOLLOW_LOCK_TIMEOUT_MS = 5000;
/** Every this many polls without news, the poll lists generations instead of WAL segments. */
const GENERATION_CHECK_EVERY = 10;
/** After this many polls in a row without news, polls come every `idleIntervalMs`. */
const IDLE_AFTER_POLLS = 30;

/** Suffix of the marker file that says a database is a follower's output. */
export const FOLLOW_MARKER_SUFFIX = '-walship-follow';

interface Waiter {
  readonly pos: Pos;
  readonly resolve: () => void;
  readonly reject: (err: Error) => void;
}

function invalid(message: string): FollowError {
  return new FollowError('WALSHIP_FOLLOW_INVALID', message);
}

/**
 * Keeps a read-only copy of a replicated database current: restores it, then polls the replica
 * and applies each new WAL segment's transactions to the output database as they appear —
 * across WAL restarts (new indexes), later snapshots and new generations (a fresh restore,
 * written into place as one transaction).
 *
 * **Readers.** The output is a rollback-journal database (not WAL mode). Every batch of
 * transactions is written the way SQLite's own pager commits one — old pages to
 * `<db>-journal` (fsynced), new pages in place, journal deleted — under SQLite's EXCLUSIVE lock,
 * taken through a connection of the follower's own (in a worker thread). So any SQLite reader
 * (better-sqlite3, the `sqlite3` shell, other processes or this one) sees a whole committed
 * state or the one before it, never part of a transaction; a crash mid-write leaves a hot
 * journal SQLite rolls back. Readers must open the database read-only and set a busy timeout
 * (better-sqlite3's default is 5 s; the `sqlite3` shell needs `.timeout 5000`): while a batch
 * is written (milliseconds) new read transactions wait.
 *
 * **Cost.** One listing request per poll (`intervalMs`, default 1 s); every tenth poll without
 * news lists generations instead of WAL segments. After 30 polls without news (30 s by default)
 * polls come every `idleIntervalMs` (default 2 s) until the next news: an idle follower makes 30
 * requests a minute.
 *
 * **Verification.** Every frame's salts and checksum chain are verified before its transaction
 * is applied; a damaged segment stops the follower before it (state `stalled`, a `damage`
 * event), and polling goes on: a replaced object or a new generation resumes it.
 */
export class Follower extends EventEmitter<FollowerEvents> {
  readonly outputPath: string;
  readonly #opts: FollowerOptions;
  readonly #logger: Logger;
  readonly #interval: number;
  readonly #idleInterval: number;
  readonly #lockTimeout: number;
  readonly #abort = new AbortController();
  #state: FollowerState = 'new';
  #worker: ApplyWorkerClient | undefined;
  #placed = false;
  #replica: RestoreReplica | undefined;
  #generation = '';
  #pageSize = 0;
  /** WAL index being read, and its applier (undefined before the index's first byte). */
  #index = 0;
  #applier: WalIndexApplier | undefined;
  #batch: PageBatch | undefined;
  /** Position of the last commit staged in the batch / written to the output. */
  #batchPos: Pos | undefined;
  #pos: Pos | undefined;
  #lastAppliedAt: Date | undefined;
  #behindSince: Date | undefined;
  #damage: DamageLocation | undefined;
  #lastError: string | undefined;
  #requests = 0;
  #needGenerationCheck = false;
  /** Generations ranked and found not newer than the followed one (not looked at again). */
  readonly #knownGenerations = new Set<string>();
  /** Generation checks a not-yet-settled generation went through. */
  readonly #generationChecks = new Map<string, number>();
  readonly #waiters = new Set<Waiter>();
  #loop: Promise<void> | undefined;
  #starting: Promise<void> | undefined;
  #lock: ProcessLock | undefined;
  /**
   * Segments of the current index already applied (`offset:size`), so a segment that appears
   * later at an offset below the position (re-shipped with other bounds after a crash of the
   * primary's replicator, or overlapping from a second writer) is noticed: the checksum chain
   * decides what of it continues the output. Undefined until the first poll after a restore.
   */
  #seen: Set<string> | undefined;

  /**
   * @throws FollowError `WALSHIP_FOLLOW_INVALID` for bad options
   */
  constructor(outputPath: string, options: FollowerOptions) {
    super();
    if (typeof outputPath !== 'string' || outputPath === '') throw invalid('output path required');
    if (!options || !Array.isArray(options.replicas) || options.replicas.length === 0)
      throw invalid('at least one replica is required to follow');
    for (const [key, value] of [
      ['intervalMs', options.intervalMs],
      ['idleIntervalMs', options.idleIntervalMs],
      ['lockTimeoutMs', options.lockTimeoutMs],
    ] as const) {
      if (value !== undefined && (typeof value !== 'number' || !Number.isFinite(value) || value <= 0)) {
        throw invalid(`invalid ${key} ${String(value)}: expected a positive number of milliseconds`);
      }
    }
    if (options.verify !== undefined && !['integrity', 'quick', 'none'].includes(options.verify)) {
      throw invalid(`invalid verify "${String(options.verify)}": expected integrity, quick or none`);
    }
    this.outputPath = path.resolve(outputPath);
    this.#opts = options;
    this.#logger = options.logger ?? silentLogger;
    this.#interval = options.intervalMs ?? DEFAULT_FOLLOW_INTERVAL_MS;
    this.#idleInterval = Math.max(this.#interval, options.idleIntervalMs ?? 2 * this.#interval);
    this.#lockTimeout = options.lockTimeoutMs ?? DEFAULT_FOLLOW_LOCK_TIMEOUT_MS;
  }

  /**
   * Restores the output (or takes over a follower's existing output, in place) and starts
   * following. Resolves once the output is restored.
   * @throws FollowError `WALSHIP_FOLLOW_STATE` when already started; `WALSHIP_FOLLOW_OUTPUT_EXISTS`
   * @throws RestoreError as `restore()` does for the initial restore (no backups, damage, verify failed…)
   */
  start(): Promise<void> {
    if (this.#state !== 'new') {
      return Promise.reject(
        new FollowError(
          'WALSHIP_FOLLOW_STATE',
          `follower already ${this.#state === 'stopped' ? 'stopped' : 'started'}: create a new Follower`,
        ),
      );
    }
    this.#state = 'restoring';
    this.#starting = this.#start();
    return this.#starting;
  }

  async #start(): Promise<void> {
    try {
      // One writer of the output: the lock a Replicator of the same file would take too, so
      // neither a second follower nor `walship replicate` can write it while this one follows.
      this.#lock = await ProcessLock.acquire(
        defaultMetaPath(this.outputPath),
        this.outputPath,
        (who) => `cannot follow into ${this.outputPath}: another walship is following or replicating it (${who}); stop it first`,
      );
      await removeStaleTempFiles(this.outputPath, this.#logger, 'follow');
      if (await pathExists(this.outputPath)) {
        if (await pathExists(this.#markerPath)) {
          await this.#checkTakeover();
          await this.#openWorker(); // plays back a hot journal left by a crash
          this.#placed = true;
        } else if (!this.#opts.overwrite) {
          throw new FollowError(
            'WALSHIP_FOLLOW_OUTPUT_EXISTS',
            `cannot follow into ${this.outputPath}: it exists and is not a follower's database (use overwrite to replace it)`,
          );
        }
      }
      await this.#restoreFull('start');
      if (this.#signal.aborted) throw this.#signal.reason;
    } catch (err) {
      this.#state = 'stopped';
      await this.#release();
      throw err;
    }
    this.#state = this.#damage ? 'stalled' : 'following';
    this.#loop = this.#run();
  }

  /** A follower's earlier output may be taken over only if nothing but a follower wrote it since. */
  async #checkTakeover(): Promise<void> {
    const head = Buffer.alloc(20);
    // A held handle, never closed: closing one would drop this process's SQLite locks on the file.
    await (await heldFileHandle(this.outputPath)).read(head, 0, 20, 0);
    const wal = await statOrUndefined(`${this.outputPath}-wal`);
    if (head[18] === 2 || head[19] === 2 || (wal && wal.size > 0)) {
      throw new FollowError(
        'WALSHIP_FOLLOW_OUTPUT_EXISTS',
        `cannot follow into ${this.outputPath}: it is in WAL mode, so it was promoted or written by an application since a follower wrote it (remove ${this.#markerPath} and use overwrite to replace it)`,
      );
    }
  }

  /** `await using follower = new Follower(…)`: `stop()` when the scope ends. */
  async [Symbol.asyncDispose](): Promise<void> {
    await this.stop();
  }

  /** Stops polling (after the batch being written, if any) and releases the output. The database stays consistent. */
  async stop(): Promise<void> {
    if (this.#state === 'stopped' && !this.#loop && !this.#starting) return;
    this.#state = 'stopped';
    this.#abort.abort(new FollowError('WALSHIP_FOLLOW_STOPPED', 'follower stopped'));
    await this.#starting?.catch(() => {});
    this.#starting = undefined;
    await this.#loop;
    this.#loop = undefined;
    this.#state = 'stopped'; // again: the last poll may have set following/stalled meanwhile
    await this.#release();
    for (const w of this.#waiters)
      w.reject(new FollowError('WALSHIP_FOLLOW_STOPPED', `follower stopped before reaching ${formatPos(w.pos)}`));
    this.#waiters.clear();
  }

  status(): FollowerStatus {
    return {
      state: this.#state,
      ...(this.#replica ? { replicaName: this.#replica.name } : {}),
      ...(this.#generation ? { generation: this.#generation } : {}),
      ...(this.#pos ? { pos: this.#pos } : {}),
      ...(this.#lastAppliedAt ? { lastAppliedAt: this.#lastAppliedAt } : {}),
      lagMs: this.#behindSince ? Math.max(0, Date.now() - this.#behindSince.getTime()) : 0,
      ...(this.#damage ? { damage: this.#damage } : {}),
      ...(this.#lastError ? { lastError: this.#lastError } : {}),
      requests: this.#requests,
    };
  }

  /**
   * Resolves once the output holds `pos` (a position of the same generation at or past it), e.g.
   * the `pos` a primary's `sync()` reported: read-your-writes from a follower.
   * A position of a generation the follower has left (it restored a newer one) is never reached:
   * it rejects then, since the newer generation may or may not hold it.
   * @throws FollowError `WALSHIP_FOLLOW_TIMEOUT` after `timeoutMs`; `WALSHIP_FOLLOW_STOPPED` when the follower stops first;
   *   `WALSHIP_FOLLOW_GENERATION_CHANGED` when it moves on from `pos.generation` without reaching `pos`
   * @throws the abort reason of `signal`
   */
  waitFor(pos: Pos, options: { timeoutMs?: number; signal?: AbortSignal } = {}): Promise<void> {
    if (this.#reached(pos)) return Promise.resolve();
    if (this.#state === 'stopped')
      return Promise.reject(new FollowError('WALSHIP_FOLLOW_STOPPED', `follower stopped before reaching ${formatPos(pos)}`));
    return new Promise<void>((resolve, reject) => {
      let timer: NodeJS.Timeout | undefined;
      const done = () => {
        this.#waiters.delete(waiter);
        if (timer) clearTimeout(timer);
        options.signal?.removeEventListener('abort', onAbort);
      };
      const waiter: Waiter = {
        pos,
        resolve: () => {
          done();
          resolve();
        },
        reject: (err) => {
          done();
          reject(err);
        },
      };
      const onAbort = () => waiter.reject(options.signal!.reason as Error);
      if (options.signal?.aborted) return reject(options.signal.reason as Error);
      options.signal?.addEventListener('abort', onAbort, { once: true });
      if (options.timeoutMs !== undefined) {
        timer = setTimeout(
          () =>
            waiter.reject(
              new FollowError(
                'WALSHIP_FOLLOW_TIMEOUT',
                `position ${formatPos(pos)} not reached within ${options.timeoutMs} ms (at ${this.#pos ? formatPos(this.#pos) : 'nothing yet'})`,
              ),
            ),
          options.timeoutMs,
        );
      }
      this.#waiters.add(waiter);
    });
  }

  get #markerPath(): string {
    return `${this.outputPath}${FOLLOW_MARKER_SUFFIX}`;
  }

  get #signal(): AbortSignal {
    return this.#abort.signal;
  }

  #reached(pos: Pos): boolean {
    const cur = this.#pos;
    return cur !== undefined && cur.generation === pos.generation && comparePos(cur, pos) >= 0;
  }

  /** A request to the apply worker; a worker that died is replaced first. */
  async #request(req: Parameters<ApplyWorkerClient['request']>[0], transfer: ArrayBuffer[] = []): ReturnType<ApplyWorkerClient['request']> {
    if (this.#worker?.dead) {
      this.#logger.warn("the follower's apply worker died; starting a new one", { error: firstLine(this.#worker.dead) });
      await this.#worker.close().catch(() => {});
      this.#worker = undefined;
    }
    await this.#openWorker();
    return this.#worker!.request(req, transfer);
  }

  async #openWorker(): Promise<void> {
    if (this.#worker) return;
    const fh = await heldWritableFileHandle(this.outputPath);
    const worker = new ApplyWorkerClient();
    try {
      await worker.request({ op: 'open', dbPath: this.outputPath, fd: fh.fd, lockTimeoutMs: this.#lockTimeout });
    } catch (err) {
      await worker.close().catch(() => {});
      throw err;
    }
    this.#worker = worker;
  }

  async #release(): Promise<void> {
    await this.#batch?.close();
    this.#batch = undefined;
    await this.#worker?.close().catch(() => {});
    this.#worker = undefined;
    await this.#lock?.release().catch(() => {});
    this.#lock = undefined;
  }

  /** Restores the newest state into a temporary file and puts it in place of the output. */
  async #restoreFull(reason: 'start' | 'new-generation' | 'wal-removed', generation?: string): Promise<void> {
    const started = performance.now();
    const dir = path.dirname(this.outputPath);
    const tmp = path.join(dir, tempPrefix(this.outputPath, 'follow'));
    let end: { chain: WalChain | undefined; pageSize: number } | undefined;
    const previousGeneration = this.#generation;
    try {
      const result = await restoreWith(
        {
          outputPath: tmp,
          replicas: this.#opts.replicas,
          overwrite: true,
          logger: this.#logger,
          signal: this.#signal,
          ...(this.#opts.replicaName !== undefined ? { replicaName: this.#opts.replicaName } : {}),
          ...(generation !== undefined ? { generation } : {}),
          ...(this.#opts.verify !== undefined ? { verify: this.#opts.verify } : {}),
          ...(this.#opts.parallelism !== undefined ? { parallelism: this.#opts.parallelism } : {}),
          ...(this.#opts.onProgress ? { onProgress: this.#opts.onProgress } : {}),
        },
        { onRestored: (e) => (end = e) },
      );
      const { replicaName, generation: gen, restoredTo } = result;
      if (result.status !== 'restored' || !end || replicaName === undefined || gen === undefined || !restoredTo)
        throw new Error(`restore returned ${result.status}`);
      if (this.#placed && this.#pageSize !== 0 && this.#pageSize !== end.pageSize) {
        // A page size cannot change in place (the rollback journal has one page size): the new
        // file replaces the old one; readers see it once they reopen the database.
        this.#logger.warn('the new state has another page size: replacing the database file (readers must reopen it)', {
          from: this.#pageSize,
          to: end.pageSize,
        });
        await this.#worker?.close().catch(() => {});
        this.#worker = undefined;
        this.#placed = false;
      }
      if (!this.#placed) {
        await this.#placeNew(tmp);
      } else {
        const pages = await this.#request({ op: 'swap', pageSize: end.pageSize, fromPath: tmp });
        this.#logger.debug('restored copy written into place', { pages: pages.pages, lockWaitMs: Math.round(pages.lockWaitMs ?? 0) });
      }
      const replica = this.#opts.replicas.find((r) => r.name === replicaName)!;
      await this.#batch?.close();
      this.#replica = replica;
      this.#generation = gen;
      this.#knownGenerations.add(gen);
      this.#seen = undefined;
      this.#pageSize = end.pageSize;
      this.#index = restoredTo.index;
      this.#batch = new PageBatch(`${tmp}.batch`, end.pageSize);
      this.#applier = end.chain ? WalIndexApplier.resume(this.#batch, end.pageSize, end.chain, (c) => this.#onCommit(c.offset)) : undefined;
      this.#pos = restoredTo;
      this.#batchPos = restoredTo;
      this.#lastAppliedAt = new Date();
      this.#behindSince = undefined;
      this.#damage = undefined;
      this.#needGenerationCheck = false;
      if (this.#state === 'stalled') this.#state = 'following';
      const durationMs = performance.now() - started;
      this.#logger.info(reason === 'start' ? 'following' : 'restored a new state of the replica; following', {
        path: this.outputPath,
        replica: replica.name,
        generation: gen,
        position: formatPos(restoredTo),
        reason,
        durationMs: Math.round(durationMs),
      });
      this.emit('restored', { replicaName: replica.name, generation: gen, pos: restoredTo, reason, durationMs });
      this.#settleWaiters();
      for (const w of this.#waiters) {
        if (w.pos.generation !== gen && w.pos.generation === previousGeneration) {
          w.reject(
            new FollowError(
              'WALSHIP_FOLLOW_GENERATION_CHANGED',
              `the follower moved from generation ${previousGeneration} to ${gen} before reaching ${formatPos(w.pos)}`,
            ),
          );
        }
      }
    } finally {
      await rm(tmp, { force: true }).catch(() => {});
    }
  }

  /** First output: the restored file, switched to rollback-journal mode, moved into place. */
  async #placeNew(tmp: string): Promise<void> {
    const fh = await open(tmp, 'r+');
    try {
      await fh.write(Buffer.from([1, 1]), 0, 2, 18);
      await fh.sync();
    } finally {
      await fh.close();
    }
    await writeFileAtomic(
      this.#markerPath,
      `${JSON.stringify({ follower: 'walship', createdAt: new Date().toISOString() })}\n`,
      0o644,
      'follower marker',
    );
    for (const suffix of ['-wal', '-shm', '-journal']) await rm(`${this.outputPath}${suffix}`, { force: true });
    await rename(tmp, this.outputPath);
    await fsyncDir(path.dirname(this.outputPath));
    this.#placed = true;
    await this.#openWorker();
  }

  #onCommit(offset: number): void {
    this.#batchPos = { generation: this.#generation, index: this.#index, offset };
  }

  #settleWaiters(): void {
    for (const w of this.#waiters) if (this.#reached(w.pos)) w.resolve();
  }

  async #run(): Promise<void> {
    let quiet = 0;
    while (!this.#signal.aborted) {
      try {
        await sleep(quiet >= IDLE_AFTER_POLLS ? this.#idleInterval : this.#interval, this.#signal);
      } catch {
        break;
      }
      try {
        const generations = this.#needGenerationCheck || quiet % GENERATION_CHECK_EVERY === GENERATION_CHECK_EVERY - 1;
        const progressed = generations ? await this.#checkGenerations() : await this.#pollWal();
        quiet = progressed ? 0 : quiet + 1;
        this.#lastError = undefined;
      } catch (err) {
        if (this.#signal.aborted) break;
        this.#lastError = firstLine(err);
        this.#logger.warn('follow poll failed; retrying at the next poll', { error: this.#lastError });
        this.emit('poll-error', { error: err instanceof Error ? err : new Error(String(err)) });
      }
    }
  }

  /** Lists generations; restores the newest when it is not the one followed. */
  async #checkGenerations(): Promise<boolean> {
    this.#requests++;
    const gens = await this.#replica!.client.generations();
    this.#needGenerationCheck = false;
    const fresh = gens.filter((g) => !this.#knownGenerations.has(g));
    if (fresh.length === 0 && gens.includes(this.#generation)) return false;
    const { ranked, unreachable } = await rankTargets(
      {
        replicas: this.#opts.replicas,
        ...(this.#opts.replicaName !== undefined ? { replicaName: this.#opts.replicaName } : {}),
        logger: this.#logger,
        signal: this.#signal,
      },
      true,
    );
    const best = ranked[0];
    if (best && best.generation !== this.#generation) {
      this.#logger.info('the replica has a new generation; restoring it', {
        from: this.#generation,
        to: best.generation,
        replica: best.replicaName,
      });
      await this.#restoreFull('new-generation', best.generation);
      return true;
    }
    // Settled only once ranked against the followed one with a snapshot of its own (a generation
    // listed before its first snapshot is uploaded is ranked again at the next check), and
    // never when a replica could not be listed. One that never gets a snapshot is given up after
    // 30 checks.
    if (unreachable.length === 0) {
      for (const g of fresh) {
        const tries = (this.#generationChecks.get(g) ?? 0) + 1;
        this.#generationChecks.set(g, tries);
        this.#requests++;
        if (tries >= 30 || (await this.#replica!.client.snapshots(g)).length > 0) {
          this.#knownGenerations.add(g);
          this.#generationChecks.delete(g);
        }
      }
    }
    return false;
  }

  /** Lists the generation's WAL and applies every segment that continues the output. */
  async #pollWal(): Promise<boolean> {
    const replica = this.#replica!;
    this.#requests++;
    // From the current index on: on S3 one request however long the generation is.
    const idx0 = this.#index;
    const segs = (await replica.client.walSegments(this.#generation, { fromIndex: idx0 }))
      .filter((s) => s.index >= idx0)
      .sort(compareSegments);
    if (segs.length === 0) {
      this.#needGenerationCheck = true;
      return false;
    }
    const batch = this.#batch!;
    let progressed = false;
    let stalled: DamageLocation | undefined;
    const key = (s: WALSegmentInfo) => `${s.offset}:${s.size}`;
    if (!this.#seen) {
      // First poll after a restore: what lies below the position was applied by the restore.
      const next = this.#applier?.consumed ?? 0;
      this.#seen = new Set(segs.filter((s) => s.index === this.#index && s.offset < next).map(key));
    }
    for (;;) {
      const next = this.#applier?.consumed ?? 0;
      const idx = this.#index;
      const below = segs.find((s) => s.index === idx && s.offset < next && !this.#seen!.has(key(s)));
      const seg = below ?? segs.find((s) => s.index === idx && s.offset === next);
      if (seg) {
        if (below) {
          this.#logger.warn(
            "a wal segment below the follower's position appeared (re-shipped with other bounds, or a second writer): the checksum chain decides what of it continues",
            {
              object: segmentObjectName(seg.index, seg.offset),
              position: formatPos({ generation: this.#generation, index: idx, offset: next }),
            },
          );
        }
        const damage = await this.#feed(seg, next - seg.offset);
        if (damage) {
          stalled = damage;
          break;
        }
        this.#seen!.add(key(seg));
        progressed = true;
        continue;
      }
      const hasCurrent = segs.some((s) => s.index === idx);
      const gap = segs.find((s) => s.index === idx && s.offset > next);
      if (gap) {
        stalled = this.#damageAt({
          kind: 'missing-segment',
          index: idx,
          offset: next,
          object: segmentObjectName(idx, next),
          detail: `missing wal segment: expected offset ${next}, next segment starts at offset ${gap.offset}`,
        });
        break;
      }
      const restart = segs.find((s) => s.index === idx + 1 && s.offset === 0);
      if (restart && (hasCurrent || next === 0)) {
        if (batch.pendingPages > 0) {
          stalled = this.#damageAt({
            kind: 'invalid-wal',
            index: idx,
            offset: next,
            detail: `wal index ${formatHex8(idx)} ends with an uncommitted transaction though index ${formatHex8(idx + 1)} exists`,
          });
          break;
        }
        // The primary restarted its WAL: this index is complete.
        this.#index = idx + 1;
        this.#applier = undefined;
        this.#seen = new Set();
        continue;
      }
      if (segs.some((s) => s.index > idx)) {
        if (!hasCurrent) {
          // What the output needs next is gone (retention removed it): start over from a snapshot.
          await this.#applyBatch();
          this.#logger.warn('the wal segments the follower needs were removed from the replica; restoring from a snapshot', {
            position: formatPos(this.#pos!),
          });
          await this.#restoreFull('wal-removed', this.#generation);
          return true;
        }
        stalled = this.#damageAt({
          kind: 'missing-index',
          index: idx + 1,
          offset: 0,
          detail: `WAL index ${formatHex8(idx + 1)} has no segment at offset 0 but a later index exists`,
        });
      }
      break;
    }
    if (!stalled && this.#damage) {
      this.#damage = undefined;
      this.#state = 'following';
    }
    if (batch.commits > 0) await this.#applyBatch();
    this.#updateLag(segs);
    return progressed;
  }

  #updateLag(segs: readonly WALSegmentInfo[]): void {
    const next = this.#applier?.consumed ?? 0;
    let oldest: Date | undefined;
    for (const s of segs) {
      if (s.index < this.#index || (s.index === this.#index && s.offset < next)) continue;
      if (!oldest || s.createdAt < oldest) oldest = s.createdAt;
    }
    this.#behindSince = oldest;
  }

  #damageAt(d: Omit<DamageLocation, 'replicaName' | 'generation'>): DamageLocation {
    const damage: DamageLocation = { replicaName: this.#replica!.name, generation: this.#generation, ...d };
    const same =
      this.#damage && this.#damage.index === damage.index && this.#damage.offset === damage.offset && this.#damage.detail === damage.detail;
    this.#damage = damage;
    this.#state = 'stalled';
    if (!same) {
      this.#logger.error('the replica is damaged; the follower stops before it and keeps polling', {
        object: damage.object,
        detail: damage.detail,
        position: this.#pos ? formatPos(this.#pos) : '',
      });
      this.emit('damage', { damage });
    }
    return damage;
  }

  /**
   * Downloads, verifies and stages one segment, its first `skip` decoded bytes dropped (those the
   * output already holds). Returns the damage that stopped it, if any.
   */
  async #feed(seg: WALSegmentInfo, skip: number): Promise<DamageLocation | undefined> {
    const replica = this.#replica!;
    const batch = this.#batch!;
    const before = this.#applier?.chain();
    const posBefore = this.#batchPos;
    batch.mark();
    const applier = (this.#applier ??= new WalIndexApplier(batch, this.#pageSize, (c) => this.#onCommit(c.offset)));
    applier.segmentTime = seg.createdAt;
    const object = segmentObjectName(seg.index, seg.offset);
    try {
      this.#requests++;
      const stored = resumableObject(
        async () =>
          (await replica.client.walSegmentReader({ generation: this.#generation, index: seg.index, offset: seg.offset })) as Readable,
        {
          signal: this.#signal,
          onRetry: (err, attempt) => this.#logger.warn('wal segment download failed, retrying', { object, attempt, error: firstLine(err) }),
        },
      );
      let n = 0;
      let toDrop = skip;
      for await (const raw of decodeObject(Readable.from(stored, { objectMode: false }), replica.stages)) {
        const chunk = raw as Buffer;
        n += chunk.length;
        if (toDrop >= chunk.length) {
          toDrop -= chunk.length;
          continue;
        }
        await applier.write(toDrop > 0 ? chunk.subarray(toDrop) : chunk);
        toDrop = 0;
      }
      if (n === 0) throw new WalDamage(seg.offset, 'wal segment decodes to 0 bytes');
      return undefined;
    } catch (err) {
      // Nothing of this segment is applied: the batch and the chain go back to its start.
      batch.rollback();
      this.#batchPos = posBefore;
      this.#applier = before ? WalIndexApplier.resume(batch, this.#pageSize, before, (c) => this.#onCommit(c.offset)) : undefined;
      if (this.#signal.aborted) throw err;
      if (err instanceof WalDamage)
        return this.#damageAt({ kind: 'invalid-wal', index: seg.index, offset: err.offset, object, detail: err.detail });
      const kind = segmentDamageKind(err);
      if (!kind) throw err;
      return this.#damageAt({
        kind,
        index: seg.index,
        offset: seg.offset,
        object,
        detail: kind === 'missing-segment' ? 'wal segment object not found' : firstLine(err),
      });
    }
  }

  /** Writes the batch's committed transactions to the output as one transaction. */
  async #applyBatch(): Promise<void> {
    const batch = this.#batch!;
    if (batch.commits === 0 || batch.dbPages === undefined) return;
    const { pgnos, offsets } = await batch.committedPages();
    let res;
    try {
      res = await this.#request(
        { op: 'apply', pageSize: this.#pageSize, pageCount: batch.dbPages, spillPath: batch.spillPath, pgnos, offsets },
        [pgnos.buffer as ArrayBuffer, offsets.buffer as ArrayBuffer],
      );
    } catch (err) {
      if (err instanceof ApplyFailed && err.busy) {
        throw new Error(`readers held ${this.outputPath} for more than ${this.#lockTimeout} ms; the batch is retried at the next poll`, {
          cause: err,
        });
      }
      throw err;
    }
    const commits = batch.commits;
    batch.applied();
    this.#pos = this.#batchPos;
    this.#lastAppliedAt = new Date();
    this.#logger.debug('applied', {
      position: formatPos(this.#pos!),
      commits,
      pages: res.pages,
      durationMs: Math.round(res.durationMs ?? 0),
    });
    this.emit('applied', {
      pos: this.#pos!,
      commits,
      pages: res.pages ?? 0,
      durationMs: res.durationMs ?? 0,
      lockWaitMs: res.lockWaitMs ?? 0,
    });
    this.#settleWaiters();
  }
}
