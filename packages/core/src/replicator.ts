import { EventEmitter } from 'node:events';
import fs from 'node:fs/promises';
import path from 'node:path';
import { type EngineSettings, WalEngine } from './db/engine.js';
import { defaultMetaPath } from './db/meta-state.js';
import { ProcessLock } from './db/process-lock.js';
import { toMillis } from './duration.js';
import { ClosedError, ConfigError, errorMessage, WalshipError } from './errors.js';
import { childLogger, type Logger, silentLogger } from './logger.js';
import type { ReplicaOptions, ReplicatorOptions } from './options.js';
import { defaultStages } from './pipeline.js';
import { comparePos, type Pos, ZERO_POS } from './pos.js';
import { Replica } from './replica/replica.js';
import type { ReplicatorEvents, ReplicatorStatus, ReplicaStatus } from './replicator-types.js';
import { backoffDelay, Signal, sleep } from './util/async.js';

const DB_KEYS = new Set([
  'replicas', 'metaPath', 'monitorInterval', 'checkpointInterval', 'minCheckpointPageCount', 'maxCheckpointPageCount',
  'truncatePageCount', 'busyTimeout', 'logger',
]);
const REPLICA_KEYS = new Set([
  'client', 'name', 'syncInterval', 'retention', 'retentionCheckInterval', 'snapshotInterval', 'validationInterval', 'stages',
]);

/** `sync-interval` → `syncInterval`; camelCase passes through. */
function camelKeys(o: object, allowed: Set<string>, what: string): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(o)) {
    const c = k.replace(/-([a-z])/g, (_, ch: string) => ch.toUpperCase());
    if (!allowed.has(c)) throw new ConfigError(`unknown ${what} option ${JSON.stringify(k)}`);
    out[c] = v;
  }
  return out;
}

function positiveInt(v: unknown, fallback: number, key: string, allowZero = true): number {
  if (v === undefined) return fallback;
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 0 || (!allowZero && v === 0)) {
    throw new ConfigError(`invalid ${key}: ${JSON.stringify(v)}: expected a ${allowZero ? 'non-negative' : 'positive'} integer`);
  }
  return v;
}

interface CommitMark {
  index: number;
  end: number;
  seenAt: number;
}

/**
 * Continuously replicates one SQLite database to one or more replicas (Litestream v0.3 layout).
 *
 * ```ts
 * const rep = new Replicator('/data/app.db', { replicas: [{ client: new FileReplicaClient({ path: '/backup/app' }) }] });
 * await rep.start();
 * // … the application writes …
 * await rep.sync();   // everything committed so far is durable on every replica
 * await rep.stop();
 * ```
 *
 * Errors: the constructor throws `ConfigError` for invalid options; `start()` throws
 * `ConfigError` when the database directory does not exist; `sync()` rejects with
 * `ClosedError` when the replicator stops first and with `WalshipError` code
 * `WALSHIP_TIMEOUT` when `timeout` passes. Replica failures are retried forever with backoff
 * and reported through `replica-error` events and `status()`.
 */
export class Replicator extends EventEmitter<ReplicatorEvents> {
  readonly dbPath: string;
  readonly #engine: WalEngine;
  readonly #replicas: Replica[];
  readonly #monitorIntervalMs: number;
  readonly #log: Logger;
  #running = false;
  #stopping = false;
  #loops: Promise<void>[] = [];
  #abort = new AbortController();
  #changed = new Signal();
  #progress = new Signal();
  #kick = new Signal();
  #marks: CommitMark[] = [];
  #engineBusy: Promise<unknown> = Promise.resolve();
  #sizes = { dbSizeBytes: 0, walSizeBytes: 0 };
  #lock: ProcessLock | undefined;
  #kicks = new Map<Replica, Promise<void>>();

  constructor(dbPath: string, options: ReplicatorOptions) {
    super();
    if (!dbPath) throw new ConfigError('database path required');
    this.dbPath = path.resolve(dbPath);
    const o = camelKeys(options, DB_KEYS, 'database') as unknown as ReplicatorOptions;
    if (!Array.isArray(o.replicas)) throw new ConfigError(`replicas must be a list for ${this.dbPath}`);
    this.#log = o.logger ?? silentLogger;
    this.#monitorIntervalMs = toMillis(o.monitorInterval, 1000, 'monitor-interval');
    const minPages = positiveInt(o.minCheckpointPageCount, 1000, 'min-checkpoint-page-count', false);
    const settings: EngineSettings = {
      metaPath: path.resolve(o.metaPath ?? defaultMetaPath(this.dbPath)),
      checkpointIntervalMs: toMillis(o.checkpointInterval, 60_000, 'checkpoint-interval'),
      minCheckpointPageCount: minPages,
      maxCheckpointPageCount: positiveInt(o.maxCheckpointPageCount, 10_000, 'max-checkpoint-page-count'),
      truncatePageCount: positiveInt(o.truncatePageCount, 500_000, 'truncate-page-count'),
      busyTimeoutMs: toMillis(o.busyTimeout, 1000, 'busy-timeout'),
      logger: childLogger(this.#log, { db: this.dbPath }),
    };
    this.#engine = new WalEngine(this.dbPath, settings, () => this.#replicas.map((r) => r.pos));
    const names = new Set<string>();
    this.#replicas = o.replicas.map((raw: ReplicaOptions) => {
      const r = camelKeys(raw, REPLICA_KEYS, 'replica') as unknown as ReplicaOptions;
      if (!r.client || typeof r.client.writeWALSegment !== 'function') throw new ConfigError('replica client required');
      const name = r.name ?? r.client.type;
      if (names.has(name)) throw new ConfigError(`duplicate replica name: ${JSON.stringify(name)}: give each replica of ${this.dbPath} a unique name`);
      names.add(name);
      const retentionMs = toMillis(r.retention, 24 * 3_600_000, 'retention');
      if (toMillis(r.validationInterval, 0, 'validation-interval') > 0) {
        throw new ConfigError('validation-interval is not supported by walship yet: remove it (use `walship restore` to verify replicas)');
      }
      return new Replica(
        {
          name,
          client: r.client,
          syncIntervalMs: toMillis(r.syncInterval, 1000, 'sync-interval'),
          retentionMs,
          retentionCheckIntervalMs: toMillis(r.retentionCheckInterval, 3_600_000, 'retention-check-interval'),
          snapshotIntervalMs: toMillis(r.snapshotInterval, 0, 'snapshot-interval'),
          stages: r.stages ?? defaultStages(),
          logger: childLogger(this.#log, { db: this.dbPath, replica: name }),
        },
        this.#engine,
        this,
      );
    });
    this.#engine.on('generation', (e: { generation: string; reason: string }) => {
      this.#marks = [];
      this.emit('generation', e);
    });
    this.#engine.on('checkpoint', (e: { mode: 'PASSIVE' | 'TRUNCATE'; durationMs: number }) =>
      this.emit('checkpoint', { mode: e.mode, durationMs: e.durationMs }),
    );
  }

  /** Serialises engine work (scan, checkpoint) in call order. */
  #withEngine<T>(fn: () => Promise<T>): Promise<T> {
    const next = this.#engineBusy.then(fn);
    this.#engineBusy = next.catch(() => {});
    return next;
  }

  /**
   * Opens the database (switching it to WAL mode and taking walship's read lock), decides the
   * generation, and starts the background loops. When the database file does not exist yet,
   * replication starts as soon as it appears.
   * @throws ConfigError when the database's directory does not exist
   * @throws LockedError (`WALSHIP_LOCKED`) when another walship already replicates the database
   */
  async start(): Promise<void> {
    if (this.#running) return;
    const dir = path.dirname(this.dbPath);
    try {
      const st = await fs.stat(dir);
      if (!st.isDirectory()) throw new ConfigError(`database directory is not a directory: ${dir}`);
    } catch (err) {
      if (err instanceof ConfigError) throw err;
      throw new ConfigError(`database directory does not exist: ${dir}: create it or fix the database path`);
    }
    this.#lock = await ProcessLock.acquire(this.#engine.settings.metaPath, this.dbPath);
    this.#running = true;
    this.#stopping = false;
    this.#abort = new AbortController();
    try {
      if (await this.#engine.open()) {
        await this.#afterScan(true);
      } else {
        this.#log.info('waiting for database file to appear', { db: this.dbPath });
      }
    } catch (err) {
      this.#running = false;
      await this.#releaseLock();
      throw err;
    }
    this.#loops = [this.#monitorLoop(), ...this.#replicas.map((r) => this.#replicaLoop(r))];
  }

  async #afterScan(changed: boolean): Promise<void> {
    if (changed) {
      const p = this.#engine.pos;
      const last = this.#marks[this.#marks.length - 1];
      if (!last || last.index !== p.index || last.end !== p.offset) this.#marks.push({ index: p.index, end: p.offset, seenAt: Date.now() });
      this.#changed.notify();
    }
  }

  async #scanOnce(): Promise<void> {
    await this.#withEngine(async () => {
      const t0 = Date.now();
      try {
        if (!this.#engine.isOpen) {
          if (!(await this.#engine.open())) return;
          await this.#afterScan(true);
        } else {
          await this.#afterScan(await this.#engine.scan());
        }
        this.#sizes = await this.#engine.sizes();
        this.emit('sync', { durationMs: Date.now() - t0, pos: this.#engine.pos, ...this.#sizes });
      } catch (err) {
        this.#log.error('sync error', { error: errorMessage(err) });
        this.emit('sync-error', { error: err as Error });
      }
    });
  }

  async #monitorLoop(): Promise<void> {
    while (this.#running) {
      await this.#kick.wait(this.#monitorIntervalMs);
      if (!this.#running) break;
      await this.#scanOnce();
      await this.#maybeCheckpoint();
    }
  }

  async #maybeCheckpoint(): Promise<void> {
    if (!this.#engine.isOpen || this.#replicas.some((r) => r.inflight > 0)) return;
    await this.#withEngine(async () => {
      try {
        await this.#engine.maybeCheckpoint();
        await this.#engine.onReplicasAdvanced();
      } catch (err) {
        this.#log.error('checkpoint error', { error: errorMessage(err) });
        this.emit('checkpoint-error', { mode: 'PASSIVE', error: err as Error });
      }
    });
  }

  async #replicaLoop(r: Replica): Promise<void> {
    let lastRun = 0;
    while (this.#running) {
      const wait = Math.max(0, lastRun + r.settings.syncIntervalMs - Date.now());
      if (wait > 0) await sleep(wait, this.#abort.signal).catch(() => {});
      if (!this.#running) break;
      // Wait for a change (or the next tick, for retention/snapshot timers and retries).
      if (r.lastError === undefined && r.pos && comparePos(r.pos, this.#engine.pos) >= 0 && r.pos.generation === this.#engine.generation) {
        await this.#changed.wait(Math.max(r.settings.syncIntervalMs, 1000));
        if (!this.#running) break;
      }
      lastRun = Date.now();
      await this.#syncReplica(r);
      if (r.lastError !== undefined) {
        await sleep(backoffDelay(r.errors - 1, 500, 30_000), this.#abort.signal).catch(() => {});
        continue;
      }
      try {
        if (r.snapshotDue()) await r.snapshot();
        if (r.retentionDue()) await r.enforceRetention();
      } catch (err) {
        r.recordError(err);
        this.#log.error('replica maintenance error', { replica: r.name, error: errorMessage(err) });
        this.emit('replica-error', { replica: r.name, error: err as Error });
      }
    }
  }

  async #syncReplica(r: Replica): Promise<void> {
    if (!this.#engine.isOpen) return;
    try {
      await this.#scanOnce();
      await r.sync();
      r.recordSuccess();
      this.#trimMarks();
      this.#progress.notify();
      await this.#maybeCheckpoint();
    } catch (err) {
      r.recordError(err);
      this.#log.error('replica sync error', { replica: r.name, error: errorMessage(err) });
      this.emit('replica-error', { replica: r.name, error: err as Error });
      this.#progress.notify();
    }
  }

  #trimMarks(): void {
    const min = this.#minReplicaPos();
    if (!min) return;
    while (this.#marks.length > 1) {
      const m = this.#marks[0]!;
      if (m.index < min.index || (m.index === min.index && m.end <= min.offset)) this.#marks.shift();
      else break;
    }
  }

  #minReplicaPos(): Pos | undefined {
    let min: Pos | undefined;
    for (const r of this.#replicas) {
      if (!r.pos || r.pos.generation !== this.#engine.generation) return undefined;
      if (!min || comparePos(r.pos, min) < 0) min = r.pos;
    }
    return min;
  }

  #lagMs(r: Replica, now: number): number {
    const p = r.pos;
    const gen = this.#engine.generation;
    if (!gen) return 0;
    if (p && p.generation === gen && comparePos(p, this.#engine.pos) >= 0) return 0;
    for (const m of this.#marks) {
      if (!p || p.generation !== gen || m.index > p.index || (m.index === p.index && m.end > p.offset)) return now - m.seenAt;
    }
    return 0;
  }

  /**
   * Resolves once every transaction committed before the call is durable on every replica
   * (synchronous replication on demand). Resolves with the position reached; while the
   * replicator waits for its database file to appear, at once with the zero position (nothing
   * has been committed). A replica that keeps failing is retried with backoff meanwhile.
   * @throws ClosedError if the replicator stops first
   * @throws WalshipError `WALSHIP_TIMEOUT` after `timeout` ms
   */
  async sync(opts: { timeout?: number; signal?: AbortSignal } = {}): Promise<Pos> {
    if (!this.#running) throw new ClosedError();
    const deadline = opts.timeout !== undefined ? Date.now() + opts.timeout : Number.POSITIVE_INFINITY;
    await this.#scanOnce();
    // Waiting for the database file to appear: nothing has been committed, nothing to sync.
    if (!this.#engine.isOpen) return ZERO_POS;
    let target = this.#engine.pos;
    // Replica syncs run beside this wait, never awaited directly: an upload that hangs must
    // not keep `timeout` from firing.
    for (const r of this.#replicas) this.#kickReplica(r);
    for (;;) {
      if (this.#engine.generation !== target.generation) target = this.#engine.pos;
      const done = this.#replicas.every((r) => r.pos && r.pos.generation === target.generation && comparePos(r.pos, target) >= 0);
      if (done) return target;
      if (!this.#running) throw new ClosedError('replicator stopped before sync completed');
      if (opts.signal?.aborted) throw opts.signal.reason;
      const left = deadline - Date.now();
      if (left <= 0) {
        const lagging = this.#replicas.filter((r) => !r.pos || comparePos(r.pos, target) < 0).map((r) => `${r.name}${r.lastError ? ` (${r.lastError})` : ''}`);
        throw new WalshipError('WALSHIP_TIMEOUT', `sync timed out waiting for replicas: ${lagging.join(', ')}`);
      }
      await this.#progress.wait(Math.min(left, 250));
      // A failing replica is retried by its own loop, with backoff; kick only the healthy ones.
      for (const r of this.#replicas) if (r.lastError === undefined && (!r.pos || comparePos(r.pos, target) < 0)) this.#kickReplica(r);
    }
  }

  /** Starts a sync of `r` unless one started by `sync()` is still running. */
  #kickReplica(r: Replica): void {
    if (this.#kicks.has(r)) return;
    this.#kicks.set(r, this.#syncReplica(r).finally(() => this.#kicks.delete(r)));
  }

  /**
   * Stops replication: a final sync of every replica (bounded by `timeout` ms, default 30 s),
   * then a clean stop that lets the next start continue the same generation, and releases
   * every lock and connection. Replica clients are not closed (they belong to the caller).
   */
  async stop(opts: { timeout?: number } = {}): Promise<void> {
    if (!this.#running || this.#stopping) return;
    this.#stopping = true;
    const timeout = opts.timeout ?? 30_000;
    // The database may have appeared since the last scan: open it, so the final sync includes it.
    if (!this.#engine.isOpen) await this.#scanOnce();
    if (this.#engine.isOpen) {
      try {
        await this.sync({ timeout });
      } catch (err) {
        this.#log.warn('final sync incomplete', { error: errorMessage(err) });
      }
    }
    this.#running = false;
    this.#abort.abort(new ClosedError());
    this.#kick.notify();
    this.#changed.notify();
    this.#progress.notify();
    await Promise.allSettled([...this.#loops, ...this.#kicks.values()]);
    await this.#withEngine(() => this.#engine.close({ clean: true }));
    await this.#releaseLock();
  }

  async #releaseLock(): Promise<void> {
    const lock = this.#lock;
    this.#lock = undefined;
    await lock?.release();
  }

  /** Current position of the local WAL (zero before the database is opened). */
  get pos(): Pos {
    return this.#engine.isOpen ? this.#engine.pos : ZERO_POS;
  }

  status(): ReplicatorStatus {
    const now = Date.now();
    const replicas: ReplicaStatus[] = this.#replicas.map((r) => {
      const lagMs = this.#lagMs(r, now);
      return {
        name: r.name,
        type: r.client.type,
        pos: r.pos ?? ZERO_POS,
        lagMs,
        syncIntervalMs: r.settings.syncIntervalMs,
        ...(r.lastSyncAt ? { lastSyncAt: r.lastSyncAt } : {}),
        ...(r.lastError ? { lastError: r.lastError } : {}),
        healthy: r.lastError === undefined && lagMs <= r.settings.syncIntervalMs + this.#monitorIntervalMs + 5000,
      };
    });
    return { dbPath: this.dbPath, generation: this.#engine.generation, pos: this.pos, ...this.#sizes, replicas };
  }

  /** Forces a WAL checkpoint and restart now (e.g. before a backup of the database file). */
  async checkpoint(): Promise<boolean> {
    if (!this.#engine.isOpen) return false;
    return this.#withEngine(() => this.#engine.restartWal('PASSIVE'));
  }
}
