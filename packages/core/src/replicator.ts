import { EventEmitter } from 'node:events';
import { OPTION_DEFAULTS } from './defaults.js';
import fs from 'node:fs/promises';
import path from 'node:path';
import { type EngineSettings, WalEngine } from './db/engine.js';
import { defaultLitestreamMetaPath } from './db/litestream-meta.js';
import { defaultMetaPath } from './db/meta-state.js';
import { ProcessLock } from './db/process-lock.js';
import { type WalWatch, watchWal } from './db/wal-watch.js';
import { toMillis } from './duration.js';
import { ClosedError, ConfigError, errorMessage, ReplicaAheadError, WalshipError } from './errors.js';
import { childLogger, type Logger, silentLogger } from './logger.js';
import type { ReplicaOptions, ReplicatorOptions } from './options.js';
import { defaultStages } from './pipeline.js';
import { comparePos, formatPos, type Pos, ZERO_POS } from './pos.js';
import { DEFAULT_LEASE_TTL_MS, MIN_LEASE_TTL_MS } from './replica/lease.js';
import { Replica } from './replica/replica.js';
import { removeValidationLeftovers, ReplicaValidator } from './replica/validator.js';
import type { ReplicatorEvents, ReplicatorStatus, ReplicaStatus, ValidationEvent } from './replicator-types.js';
import { backoffDelay, Signal, sleep } from './util/async.js';
import { releaseUnlinkedHeldFiles } from './util/held-files.js';
import { checkConcurrency, sharedLimiters } from './util/shared-limits.js';

const DB_KEYS = new Set([
  'replicas',
  'metaPath',
  'litestreamMetaPath',
  'monitorInterval',
  'checkpointInterval',
  'minCheckpointPageCount',
  'maxCheckpointPageCount',
  'truncatePageCount',
  'busyTimeout',
  'logger',
  'concurrency',
  'idleScanInterval',
]);
const REPLICA_KEYS = new Set([
  'client',
  'name',
  'syncInterval',
  'retention',
  'retentionCheckInterval',
  'snapshotInterval',
  'validationInterval',
  'stages',
  'leaseTtl',
  'takeover',
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

/** `leaseTtl`: a duration of at least MIN_LEASE_TTL_MS, or 0 (no lease). */
function leaseTtl(v: unknown): number {
  const ms = toMillis(v as ReplicaOptions['leaseTtl'], DEFAULT_LEASE_TTL_MS, 'lease-ttl');
  if (ms !== 0 && ms < MIN_LEASE_TTL_MS)
    throw new ConfigError(`invalid lease-ttl: ${JSON.stringify(v)}: use at least 1s, or 0 to turn the lease off`);
  return ms;
}

function takeoverOption(v: unknown): boolean {
  if (v === undefined) return false;
  if (typeof v !== 'boolean') throw new ConfigError(`invalid takeover: ${JSON.stringify(v)}: expected true or false`);
  return v;
}

/**
 * While the `-wal` is watched, an idle database is still scanned every
 * WATCH_IDLE_POLL_FACTOR × monitorInterval, at most every WATCH_IDLE_POLL_MS (and at least every
 * monitorInterval): only a safety net for a missed notification.
 */
const WATCH_IDLE_POLL_FACTOR = 10;
const WATCH_IDLE_POLL_MS = 10_000;
/** Longest single timer (setTimeout's limit is 2^31-1 ms). */
const MAX_WAIT_MS = 3_600_000;

interface CommitMark {
  index: number;
  end: number;
  seenAt: number;
}

/**
 * The replicator itself, on the thread it was created on. Applications use `Replicator`
 * (replicator-facade.ts), which runs this class in the engine worker, or here with
 * `thread: 'inline'`. Errors: see `Replicator`.
 */
export class ReplicatorCore extends EventEmitter<ReplicatorEvents> {
  readonly dbPath: string;
  readonly #engine: WalEngine;
  readonly #replicas: Replica[];
  readonly #monitorIntervalMs: number;
  /** `idleScanInterval`: the safety scan of a watched, idle database. */
  readonly #idleScanMs: number | undefined;
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
  /** Change notifications for the -wal (db/wal-watch.ts); set by the watch, cleared by each monitor scan. */
  #watch: WalWatch | undefined;
  #walChanged = false;
  /** `validationInterval` > 0: the replica's validator (replica/validator.ts). */
  readonly #validators = new Map<Replica, ReplicaValidator>();
  /** Started, but the database file did not exist at the last look. */
  #waitingForDb = false;
  /** Closes an idle database's spare SQLite connections (see #armShed). */
  #shedTimer: NodeJS.Timeout | undefined;

  constructor(dbPath: string, options: ReplicatorOptions) {
    super();
    if (!dbPath) throw new ConfigError('database path required');
    this.dbPath = path.resolve(dbPath);
    const o = camelKeys(options, DB_KEYS, 'database') as unknown as ReplicatorOptions;
    if (!Array.isArray(o.replicas)) throw new ConfigError(`replicas must be a list for ${this.dbPath}`);
    this.#log = o.logger ?? silentLogger;
    this.#monitorIntervalMs = toMillis(o.monitorInterval, OPTION_DEFAULTS.monitorIntervalMs, 'monitor-interval');
    this.#idleScanMs =
      o.idleScanInterval === undefined ? undefined : toMillis(o.idleScanInterval, WATCH_IDLE_POLL_MS, 'idle-scan-interval');
    if (this.#idleScanMs !== undefined && this.#idleScanMs <= 0) throw new ConfigError('idle-scan-interval must be positive');
    const minPages = positiveInt(o.minCheckpointPageCount, OPTION_DEFAULTS.minCheckpointPageCount, 'min-checkpoint-page-count', false);
    const settings: EngineSettings = {
      metaPath: path.resolve(o.metaPath ?? defaultMetaPath(this.dbPath)),
      checkpointIntervalMs: toMillis(o.checkpointInterval, OPTION_DEFAULTS.checkpointIntervalMs, 'checkpoint-interval'),
      minCheckpointPageCount: minPages,
      maxCheckpointPageCount: positiveInt(o.maxCheckpointPageCount, OPTION_DEFAULTS.maxCheckpointPageCount, 'max-checkpoint-page-count'),
      truncatePageCount: positiveInt(o.truncatePageCount, OPTION_DEFAULTS.truncatePageCount, 'truncate-page-count'),
      busyTimeoutMs: toMillis(o.busyTimeout, OPTION_DEFAULTS.busyTimeoutMs, 'busy-timeout'),
      logger: childLogger(this.#log, { db: this.dbPath }),
      litestreamMetaPath: litestreamMetaPathOf(o.litestreamMetaPath, this.dbPath),
    };
    this.#engine = new WalEngine(this.dbPath, settings, () => this.#replicas.map((r) => r.pos));
    const concurrency = checkConcurrency(o.concurrency);
    const limiters = concurrency ? sharedLimiters(concurrency) : undefined;
    const names = new Set<string>();
    const validationMs: number[] = [];
    this.#replicas = o.replicas.map((raw: ReplicaOptions) => {
      const r = camelKeys(raw, REPLICA_KEYS, 'replica') as unknown as ReplicaOptions;
      if (!r.client || typeof r.client.writeWALSegment !== 'function') throw new ConfigError('replica client required');
      const name = r.name ?? r.client.type;
      if (names.has(name))
        throw new ConfigError(`duplicate replica name: ${JSON.stringify(name)}: give each replica of ${this.dbPath} a unique name`);
      names.add(name);
      const retentionMs = toMillis(r.retention, OPTION_DEFAULTS.retentionMs, 'retention');
      validationMs.push(toMillis(r.validationInterval, OPTION_DEFAULTS.validationIntervalMs, 'validation-interval'));
      return new Replica(
        {
          name,
          client: r.client,
          syncIntervalMs: toMillis(r.syncInterval, OPTION_DEFAULTS.syncIntervalMs, 'sync-interval'),
          retentionMs,
          retentionCheckIntervalMs: toMillis(
            r.retentionCheckInterval,
            OPTION_DEFAULTS.retentionCheckIntervalMs,
            'retention-check-interval',
          ),
          snapshotIntervalMs: toMillis(r.snapshotInterval, OPTION_DEFAULTS.snapshotIntervalMs, 'snapshot-interval'),
          leaseTtlMs: leaseTtl(r.leaseTtl),
          takeover: takeoverOption(r.takeover),
          stages: r.stages ?? defaultStages(),
          logger: childLogger(this.#log, { db: this.dbPath, replica: name }),
          ...(limiters ? { limiters } : {}),
        },
        this.#engine,
        this,
      );
    });
    this.#replicas.forEach((replica, i) => {
      const intervalMs = validationMs[i]!;
      if (intervalMs <= 0) return;
      this.#validators.set(
        replica,
        new ReplicaValidator(replica, this.#engine, {
          intervalMs,
          metaPath: settings.metaPath,
          // Litestream waits 10 s; a replica uploads at most every syncInterval.
          waitTimeoutMs: Math.max(10_000, 2 * replica.settings.syncIntervalMs + 10_000),
          logger: childLogger(this.#log, { db: this.dbPath, replica: replica.name }),
        }),
      );
    });
    this.#engine.on('generation', (e: { generation: string; reason: string }) => {
      this.#marks = [];
      this.emit('generation', e);
    });
    this.#engine.on('litestream-generation', (e: { generation: string; index: number }) => this.emit('litestream-continued', e));
    this.#engine.on('restart', (e: { index: number; durationMs: number }) => this.emit('wal-restart', e));
    this.#engine.on(
      'checkpoint',
      (e: { mode: 'PASSIVE' | 'TRUNCATE'; durationMs: number; result?: { log: number }; lockHeldMs?: number; restarted?: boolean }) =>
        this.emit('checkpoint', {
          mode: e.mode,
          durationMs: e.durationMs,
          ...(e.result && e.result.log >= 0 ? { walFrames: e.result.log } : {}),
          ...(e.lockHeldMs !== undefined ? { lockHeldMs: e.lockHeldMs, restarted: e.restarted ?? false } : {}),
        }),
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
    // Files of a validation cut short by a kill -9 (under the lock, before any validation runs).
    await removeValidationLeftovers(this.#engine.settings.metaPath);
    this.#running = true;
    this.#stopping = false;
    this.#abort = new AbortController();
    try {
      if (await this.#engine.open()) {
        this.#waitingForDb = false;
        await this.#afterScan(true);
      } else {
        this.#waitingForDb = true;
        this.#log.info('waiting for database file to appear', { db: this.dbPath });
      }
    } catch (err) {
      this.#running = false;
      await this.#releaseLock();
      throw err;
    }
    // Changed = true: the first scan picks up whatever was committed before the watch began.
    this.#walChanged = true;
    this.#watch = watchWal(this.dbPath, () => {
      this.#walChanged = true;
      this.#kick.notify();
    });
    this.#loops = [
      this.#monitorLoop(),
      ...this.#replicas.map((r) => this.#replicaLoop(r)),
      ...[...this.#validators.values()].map((v) => this.#validationLoop(v)),
    ];
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
          this.#waitingForDb = false;
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

  /**
   * Scans after the `-wal` changes (the watch, re-armed before each scan, so one notification
   * per scan), at most once per monitorInterval while scans find commits (under load scans
   * keep their polling cadence);
   * at idle only every 10 × monitorInterval up to 10 s (a safety net), or checkpointInterval
   * when shorter (idle checkpoints). Without a working watch it polls every monitorInterval,
   * as Litestream does.
   */
  async #monitorLoop(): Promise<void> {
    let last = Date.now();
    let found = true; // whether the last scan found new commits
    while (this.#running) {
      const watching = this.#watch?.active === true;
      if (!watching || !this.#walChanged) {
        const cp = this.#engine.settings.checkpointIntervalMs;
        const safety = this.#idleScanMs ?? Math.min(WATCH_IDLE_POLL_MS, WATCH_IDLE_POLL_FACTOR * this.#monitorIntervalMs);
        const poll = Math.min(safety, cp > 0 ? cp : Number.POSITIVE_INFINITY);
        const idleMs = watching ? Math.max(this.#monitorIntervalMs, poll) : this.#monitorIntervalMs;
        await this.#kick.wait(watching ? Math.max(0, last + idleMs - Date.now()) : idleMs);
        if (!this.#running) break;
      }
      // After a scan that found commits (a writer is busy) the next waits monitorInterval; after
      // one that found none (a notification that was not a commit: e.g. the -wal's attributes
      // changed, or another scan got there first) a commit is probably what comes next: soon.
      const early = last + (found ? this.#monitorIntervalMs : Math.min(this.#monitorIntervalMs, 100)) - Date.now();
      if (early > 0) await sleep(early, this.#abort.signal).catch(() => {});
      if (!this.#running) break;
      // A timed wake: make sure the watch still watches the directory that holds the database.
      if (!this.#walChanged) this.#watch?.refresh();
      // Re-arm (the watch reports one change per arm) before the scan, which sees everything before.
      this.#walChanged = false;
      this.#watch?.arm();
      const before = this.#engine.pos;
      await this.#scanOnce();
      const scanned = this.#engine.pos;
      found = comparePos(scanned, before) !== 0;
      await this.#maybeCheckpoint();
      // A restart by the checkpoint starts a new index that replicas waiting for a change must ship.
      if (comparePos(this.#engine.pos, scanned) !== 0) this.#changed.notify();
      last = Date.now();
    }
  }

  async #maybeCheckpoint(): Promise<void> {
    if (!this.#engine.isOpen) return;
    await this.#withEngine(async () => {
      try {
        await this.#engine.maybeCheckpoint({ uploading: this.#replicas.some((r) => r.inflight > 0) });
        await this.#engine.onReplicasAdvanced();
      } catch (err) {
        this.#log.error('checkpoint error', { error: errorMessage(err) });
        this.emit('checkpoint-error', { mode: 'PASSIVE', error: err as Error });
      }
    });
    this.#armShed();
  }

  /**
   * Once the database has been idle for a while, closes every SQLite connection but the pin's
   * (a thousand idle databases then hold a thousand connections, not six thousand). One timer,
   * armed after engine work while spare connections are open; the next use reopens them.
   */
  #armShed(): void {
    if (this.#shedTimer || !this.#running) return;
    const due = this.#engine.shedDueInMs();
    if (due === undefined) return;
    this.#shedTimer = setTimeout(
      () => {
        this.#shedTimer = undefined;
        if (!this.#running || this.#stopping) return;
        void this.#withEngine(async () => {
          try {
            this.#engine.shedConnections();
          } catch (err) {
            this.#log.warn('closing idle connections failed', { error: errorMessage(err) });
          }
        }).then(() => this.#armShed());
      },
      Math.max(due, 250),
    );
    this.#shedTimer.unref();
  }

  async #replicaLoop(r: Replica): Promise<void> {
    let lastRun = 0;
    while (this.#running) {
      const wait = Math.max(0, lastRun + r.settings.syncIntervalMs - Date.now());
      if (wait > 0) await sleep(wait, this.#abort.signal).catch(() => {});
      if (!this.#running) break;
      // Caught up (or no database yet): sleep until the monitor loop reports a change or a
      // snapshot/retention timer is due. No scans of its own: the monitor loop does them.
      const idle = () => !this.#engine.isOpen || (r.lastError === undefined && r.reached(this.#engine.pos));
      if (idle()) {
        const due = this.#engine.isOpen ? r.maintenanceDueIn() : Number.POSITIVE_INFINITY;
        if (due > 0) {
          await this.#changed.wait(Math.min(due, MAX_WAIT_MS));
          if (!this.#running) break;
          if (idle() && (!this.#engine.isOpen || r.maintenanceDueIn() > 0)) continue;
        }
      }
      lastRun = Date.now();
      await this.#syncReplica(r);
      // Tell replicas waiting for a change when the WAL moved on meanwhile (e.g. this sync's checkpoint restarted it).
      if (r.lastError === undefined && (!r.restorablePos || comparePos(r.restorablePos, this.#engine.pos) < 0)) this.#changed.notify();
      if (r.lastError !== undefined) {
        await sleep(backoffDelay(r.errors - 1, 500, 30_000), this.#abort.signal).catch(() => {});
        continue;
      }
      try {
        await this.#maintain(r);
      } catch (err) {
        r.recordError(err);
        this.#log.error('replica maintenance error', { replica: r.name, error: errorMessage(err) });
        this.emit('replica-error', { replica: r.name, error: err as Error });
      }
    }
  }

  /** Snapshot and retention runs that are due; held back while the replica is being validated. */
  async #maintain(r: Replica): Promise<void> {
    const run = async () => {
      if (r.snapshotDue()) await r.snapshot();
      if (r.retentionDue()) await r.enforceRetention();
    };
    const v = this.#validators.get(r);
    await (v ? v.maintenance(run) : run());
  }

  /** `validationInterval`: validates the replica every interval (replica/validator.ts). */
  async #validationLoop(v: ReplicaValidator): Promise<void> {
    while (this.#running) {
      await sleep(Math.min(v.settings.intervalMs, 2_147_000_000), this.#abort.signal).catch(() => {});
      if (!this.#running) break;
      if (!this.#engine.isOpen) continue;
      const e = await v.validate(this.#abort.signal);
      if (!this.#running) break;
      this.#reportValidation(e);
    }
  }

  #reportValidation(e: ValidationEvent): void {
    const fields = {
      replica: e.replica,
      pos: formatPos(e.pos),
      pages: e.pages,
      durationMs: e.durationMs,
      ...(e.localHoldMs !== undefined ? { localHoldMs: e.localHoldMs } : {}),
      ...(e.snapshotIndex !== undefined ? { snapshot: e.snapshotIndex } : {}),
    };
    if (e.result === 'ok') this.#log.info('validation ok', fields);
    else if (e.result === 'mismatch') {
      this.#log.error(
        `validation mismatch: replica ${JSON.stringify(e.replica)} does not match the local database at ${formatPos(e.pos)}: ${e.reason ?? ''}`,
        {
          ...fields,
          mismatchedPages: e.mismatchedPages,
          ...(e.mismatchedPageNumbers ? { firstMismatchedPages: e.mismatchedPageNumbers.join(',') } : {}),
        },
      );
    } else this.#log.warn(`validation skipped: ${e.reason ?? ''}`, fields);
    this.emit('validation', e);
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
      if (err instanceof ReplicaAheadError) {
        // The replica holds commits the local database does not: continuing the generation
        // would fork it. Start a new one (once, whichever replica finds it first).
        await this.#withEngine(() => this.#engine.forkGeneration(err.generation, err.message));
        this.#changed.notify();
        return;
      }
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
    const p = r.restorablePos;
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
   * (synchronous replication on demand). Resolves with the position reached. While the
   * replicator waits for its database file to appear (`status().waiting`), it resolves at once
   * with the zero position: nothing has been committed, so there is nothing to sync (a file
   * that appeared meanwhile is opened first and synced as usual). A replica that keeps failing
   * is retried with backoff meanwhile.
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
      // Restorable, not just uploaded: WAL shipped ahead of a generation's first snapshot is not.
      const done = this.#replicas.every((r) => r.reached(target));
      if (done) return target;
      if (!this.#running) throw new ClosedError('replicator stopped before sync completed');
      // A replica whose lease another writer took will never catch up: say so instead of waiting.
      const fenced = this.#replicas.find((r) => r.lease.lostError !== undefined);
      if (fenced) throw fenced.lease.lostError!;
      if (opts.signal?.aborted) throw opts.signal.reason;
      const left = deadline - Date.now();
      if (left <= 0) {
        const lagging = this.#replicas
          .filter((r) => !r.restorablePos || comparePos(r.restorablePos, target) < 0)
          .map((r) => `${r.name}${r.lastError ? ` (${r.lastError})` : ''}`);
        throw new WalshipError('WALSHIP_TIMEOUT', `sync timed out waiting for replicas: ${lagging.join(', ')}`);
      }
      await this.#progress.wait(Math.min(left, 250));
      // A failing replica is retried by its own loop, with backoff; kick only the healthy ones.
      for (const r of this.#replicas)
        if (r.lastError === undefined && (!r.restorablePos || comparePos(r.restorablePos, target) < 0)) this.#kickReplica(r);
    }
  }

  /** Starts a sync of `r` unless one started by `sync()` is still running. */
  #kickReplica(r: Replica): void {
    if (this.#kicks.has(r)) return;
    this.#kicks.set(
      r,
      this.#syncReplica(r).finally(() => this.#kicks.delete(r)),
    );
  }

  /**
   * Stops replication: a final sync of every replica (bounded by `timeout` ms, default 30 s),
   * then a clean stop that lets the next start continue the same generation, and releases
   * every lock and connection. Replica clients are not closed (they belong to the caller).
   */
  async stop(opts: { timeout?: number } = {}): Promise<void> {
    if (!this.#running || this.#stopping) return;
    this.#stopping = true;
    const timeout = opts.timeout ?? OPTION_DEFAULTS.stopTimeoutMs;
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
    clearTimeout(this.#shedTimer);
    this.#shedTimer = undefined;
    this.#watch?.close();
    this.#watch = undefined;
    this.#abort.abort(new ClosedError());
    this.#kick.notify();
    this.#changed.notify();
    this.#progress.notify();
    await Promise.allSettled([...this.#loops, ...this.#kicks.values()]);
    // Nothing writes any more: free the replicas' leases for the next writer.
    await Promise.allSettled(this.#replicas.map((r) => r.lease.release()));
    await this.#withEngine(() => this.#engine.close({ clean: true }));
    await this.#releaseLock();
    // A deleted database: its held descriptors (util/held-files.ts) would keep its disk space.
    if (
      !(await fs.stat(this.dbPath).then(
        () => true,
        () => false,
      ))
    )
      await releaseUnlinkedHeldFiles();
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
    const waitingForDb = this.#running && this.#waitingForDb && !this.#engine.isOpen;
    const replicas: ReplicaStatus[] = this.#replicas.map((r) => {
      const lagMs = this.#lagMs(r, now);
      return {
        name: r.name,
        type: r.client.type,
        pos: r.restorablePos ?? ZERO_POS,
        lagMs,
        syncIntervalMs: r.settings.syncIntervalMs,
        ...(r.lastSyncAt ? { lastSyncAt: r.lastSyncAt } : {}),
        ...(r.lastError ? { lastError: r.lastError } : {}),
        healthy: !waitingForDb && r.lastError === undefined && lagMs <= r.settings.syncIntervalMs + this.#monitorIntervalMs + 5000,
      };
    });
    const waiting = waitingForDb ? 'database does not exist yet' : undefined;
    return {
      dbPath: this.dbPath,
      generation: this.#engine.generation,
      pos: this.pos,
      ...this.#sizes,
      replicas,
      ...(waiting ? { waiting } : {}),
    };
  }

  /** Forces a WAL checkpoint and restart now (e.g. before a backup of the database file). */
  async checkpoint(): Promise<boolean> {
    if (!this.#engine.isOpen) return false;
    return this.#withEngine(() => this.#engine.restartWal('PASSIVE'));
  }
}

/** The Litestream meta directory to look for at start (`false`: none; default `<dir>/.<db>-litestream`). */
function litestreamMetaPathOf(v: unknown, dbPath: string): string | undefined {
  if (v === false) return undefined;
  if (v === undefined || v === null) return defaultLitestreamMetaPath(dbPath);
  if (typeof v !== 'string' || v === '') throw new ConfigError(`litestream-meta-path must be a directory path or false for ${dbPath}`);
  return path.resolve(v);
}
