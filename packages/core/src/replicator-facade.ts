import { EventEmitter } from 'node:events';
import { OPTION_DEFAULTS } from './defaults.js';
import { toMillis } from './duration.js';
import { ClosedError, ConfigError, EngineWorkerError, errorMessage } from './errors.js';
import { silentLogger, type Logger } from './logger.js';
import type { ReplicaOptions, ReplicatorOptions } from './options.js';
import { lz4Stage } from './pipeline.js';
import { type Pos, ZERO_POS } from './pos.js';
import { ReplicatorCore } from './replicator.js';
import type { ReplicatorEvents, ReplicatorStatus } from './replicator-types.js';
import { backoffDelay, sleep } from './util/async.js';
import { EngineHost, type EngineWorker } from './worker/engine-host.js';
import {
  type CallArgs,
  type CallMethod,
  type CallReply,
  type CreateArgs,
  EVENT_NAMES,
  type EventNote,
  type LogNote,
  type ReplicaSpec,
} from './worker/protocol.js';
import type { ServedClient } from './worker/remote-client.js';
import { fromWireError } from './worker/wire.js';

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
 * The engine (WAL scans and checksums, spills, checkpoints, snapshot reads, LZ4) runs in one
 * worker thread shared by every `Replicator` of the process, so the application's event loop
 * only forwards the replica clients' calls (they stay on the application's thread, as built).
 * Object stages of the application's own (after LZ4, e.g. encryption) run on its thread too.
 * `thread: 'inline'` runs everything on the calling thread instead. A worker that dies is
 * reported (`sync-error` with code `WALSHIP_ENGINE_WORKER`) and replaced; replication
 * resumes from the meta directory, and pending `sync()` calls carry on.
 *
 * Errors: the constructor throws `ConfigError` for invalid options; `start()` throws
 * `ConfigError` when the database directory does not exist and `LockedError` when another
 * walship replicates the database; `sync()` rejects with `ClosedError` when the replicator
 * stops first and with `WalshipError` code `WALSHIP_TIMEOUT` when `timeout` passes. Replica
 * failures are retried forever with backoff and reported through `replica-error` events and
 * `status()`.
 */
export class Replicator extends EventEmitter<ReplicatorEvents> {
  readonly dbPath: string;
  /** Validates the options; the replicator itself in inline mode. */
  readonly #core: ReplicatorCore;
  readonly #inline: boolean;
  readonly #options: ReplicatorOptions;
  readonly #log: Logger;
  readonly #monitorIntervalMs: number;
  readonly #served: ServedClient[];
  readonly #specs: Array<Omit<ReplicaSpec, 'client'>>;
  #host: EngineHost | undefined;
  #reg: { id: number; clientIds: number[] } | undefined;
  /** The worker this replicator was created in (undefined: not created in any live worker). */
  #in: EngineWorker | undefined;
  #status: ReplicatorStatus;
  #statusAt = Date.now();
  #running = false;
  #stopping = false;
  #restarting: Promise<void> | undefined;
  #lost = 0;

  constructor(dbPath: string, options: ReplicatorOptions) {
    super();
    const { thread, ...rest } = (options ?? {}) as ReplicatorOptions & { thread?: unknown };
    if (thread !== undefined && thread !== 'worker' && thread !== 'inline') {
      throw new ConfigError(`invalid thread: ${JSON.stringify(thread)}: expected "worker" or "inline"`);
    }
    this.#inline = thread === 'inline';
    this.#core = new ReplicatorCore(dbPath, rest);
    this.dbPath = this.#core.dbPath;
    this.#options = rest;
    this.#log = rest.logger ?? silentLogger;
    this.#monitorIntervalMs = toMillis(rest.monitorInterval, 1000, 'monitor-interval');
    this.#status = this.#core.status();
    this.#served = [];
    this.#specs = [];
    if (this.#inline) {
      const core = this.#core as unknown as EventEmitter;
      for (const name of EVENT_NAMES) core.on(name, (p: unknown) => (this.emit as (n: string, p: unknown) => boolean)(name, p));
      return;
    }
    for (const raw of rest.replicas) {
      const { client, stages, ...opts } = raw as ReplicaOptions & Record<string, unknown>;
      // LZ4 (the default first stage) runs in the worker; an application's own stages here.
      const all = stages ?? [lz4Stage];
      const lz4First = all[0] === lz4Stage;
      this.#served.push({ client, stages: lz4First ? all.slice(1) : all });
      this.#specs.push({
        type: client.type,
        ...(client.capabilities ? { capabilities: { ...client.capabilities } } : {}),
        stages: lz4First ? 'lz4' : 'none',
        options: opts,
      });
    }
  }

  /**
   * Opens the database (switching it to WAL mode and taking walship's read lock), decides the
   * generation, and starts the background loops. When the database file does not exist yet,
   * replication starts as soon as it appears.
   * @throws ConfigError when the database's directory does not exist
   * @throws LockedError (`WALSHIP_LOCKED`) when another walship already replicates the database
   */
  async start(): Promise<void> {
    if (this.#inline) return this.#core.start();
    if (this.#running) return;
    this.#host ??= EngineHost.shared();
    this.#reg ??= this.#host.register(
      {
        onEvent: (n) => this.#onEvent(n),
        onLog: (n) => this.#onLog(n),
        onWorkerLost: (err) => this.#onWorkerLost(err),
      },
      this.#served,
    );
    try {
      await this.#startInWorker();
    } catch (err) {
      await this.#dispose();
      throw err;
    }
    this.#running = true;
    this.#stopping = false;
  }

  async #startInWorker(): Promise<void> {
    const w = this.#host!.worker();
    if (this.#in !== w) {
      const reg = this.#reg!;
      const args: CreateArgs = {
        id: reg.id,
        dbPath: this.dbPath,
        options: Object.fromEntries(Object.entries(this.#options).filter(([k]) => k !== 'replicas' && k !== 'logger')),
        replicas: this.#specs.map((s, i) => ({ ...s, client: reg.clientIds[i]! })),
        log: this.#options.logger !== undefined,
      };
      await w.wire.request('create', args);
      this.#in = w;
    }
    await this.#call('start');
  }

  async #call(method: CallMethod, arg?: CallArgs['arg']): Promise<unknown> {
    const w = this.#in;
    if (!w) throw new EngineWorkerError('the engine worker is restarting');
    const reply = await w.wire.request<CallReply>('call', { id: this.#reg!.id, method, ...(arg ? { arg } : {}) } satisfies CallArgs);
    this.#setStatus(reply.status);
    return reply.value;
  }

  /** Ends this replicator in the worker and forgets it (after a failed start or a stop). */
  async #dispose(): Promise<void> {
    if (this.#in) await this.#call('stop').catch(() => {});
    this.#forget();
  }

  /** Leaves the worker and the host (its clients too). */
  #forget(): void {
    this.#in = undefined;
    if (this.#reg) this.#host?.unregister(this.#reg.id, this.#reg.clientIds);
    this.#reg = undefined;
  }

  #setStatus(s: ReplicatorStatus): void {
    this.#status = s;
    this.#statusAt = Date.now();
  }

  #onEvent(n: EventNote): void {
    this.#setStatus(n.status);
    const payload: Record<string, unknown> = { ...n.payload };
    for (const [k, e] of Object.entries(n.errors)) payload[k] = fromWireError(e);
    (this.emit as (name: string, p: unknown) => boolean)(n.name, payload);
  }

  #onLog(n: LogNote): void {
    this.#log[n.level](n.message, n.fields);
  }

  #onWorkerLost(err: EngineWorkerError): void {
    if (this.#in === undefined) return;
    this.#in = undefined;
    if (!this.#running) return;
    this.#log.error('engine worker lost; restarting replication', { error: errorMessage(err) });
    this.emit('sync-error', { error: err });
    this.#restarting ??= this.#restart().finally(() => (this.#restarting = undefined));
  }

  /** Starts again in a fresh worker, with backoff, until it works or the replicator stops. */
  async #restart(): Promise<void> {
    while (this.#running && !this.#in) {
      await sleep(backoffDelay(this.#lost++, 200, 30_000));
      if (!this.#running) return;
      try {
        await this.#startInWorker();
        this.#lost = 0;
      } catch (err) {
        if (!(err instanceof EngineWorkerError)) {
          this.#log.error('restart of replication failed', { error: errorMessage(err) });
          this.emit('sync-error', { error: err as Error });
        }
      }
    }
  }

  /** Runs `method` in the worker, waiting out a worker restart (the call is repeated in the new one). */
  async #callSurviving(method: CallMethod, deadline: number, signal?: AbortSignal): Promise<unknown> {
    for (;;) {
      if (!this.#running) throw new ClosedError(method === 'sync' ? 'replicator stopped before sync completed' : undefined);
      const left = deadline - Date.now();
      const call = this.#in
        ? this.#call(method, method === 'sync' && Number.isFinite(deadline) ? { timeout: Math.max(0, left) } : undefined)
        : Promise.reject(new EngineWorkerError('the engine worker is restarting'));
      try {
        return await (signal ? raceAbort(call, signal) : call);
      } catch (err) {
        if (!(err instanceof EngineWorkerError)) throw err;
        if (signal?.aborted) throw signal.reason;
        // Wait for the restart (bounded by the deadline), then repeat the call.
        await (this.#restarting ?? sleep(50));
        if (Date.now() > deadline) throw err;
      }
    }
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
    if (this.#inline) return this.#core.sync(opts);
    if (!this.#running) throw new ClosedError();
    if (opts.signal?.aborted) throw opts.signal.reason;
    const deadline = opts.timeout !== undefined ? Date.now() + opts.timeout : Number.POSITIVE_INFINITY;
    return (await this.#callSurviving('sync', deadline, opts.signal)) as Pos;
  }

  /** `await using replicator = new Replicator(…)`: `stop()` with its defaults when the scope ends. */
  async [Symbol.asyncDispose](): Promise<void> {
    await this.stop();
  }

  /**
   * Stops replication: a final sync of every replica (bounded by `timeout` ms, default 30 s),
   * then a clean stop that lets the next start continue the same generation, and releases
   * every lock and connection. Replica clients are not closed (they belong to the caller).
   */
  async stop(opts: { timeout?: number } = {}): Promise<void> {
    if (this.#inline) return this.#core.stop(opts);
    if (!this.#running || this.#stopping) return;
    this.#stopping = true;
    try {
      // A worker lost just now: wait (bounded) for the restart, so the final sync still runs.
      // (The bound's timer is cleared after, so it never keeps the process alive.)
      if (this.#restarting !== undefined) {
        const bound = new AbortController();
        await Promise.race([this.#restarting, sleep(opts.timeout ?? OPTION_DEFAULTS.stopTimeoutMs, bound.signal).catch(() => {})]).finally(
          () => bound.abort(),
        );
      }
      if (this.#in) await this.#call('stop', opts);
    } finally {
      this.#running = false;
      this.#forget();
    }
  }

  /** Current position of the local WAL (zero before the database is opened). */
  get pos(): Pos {
    if (this.#inline) return this.#core.pos;
    return this.#status.pos ?? ZERO_POS;
  }

  /**
   * The replicator's state: the worker's latest report (sent with every event and reply), lag
   * advanced to now.
   */
  status(): ReplicatorStatus {
    if (this.#inline) return this.#core.status();
    const s = this.#status;
    const elapsed = Date.now() - this.#statusAt;
    return {
      ...s,
      replicas: s.replicas.map((r) => {
        const lagMs = r.lagMs > 0 ? r.lagMs + elapsed : 0;
        return {
          ...r,
          lagMs,
          healthy: s.waiting === undefined && r.lastError === undefined && lagMs <= r.syncIntervalMs + this.#monitorIntervalMs + 5000,
        };
      }),
    };
  }

  /** Forces a WAL checkpoint and restart now (e.g. before a backup of the database file). */
  async checkpoint(): Promise<boolean> {
    if (this.#inline) return this.#core.checkpoint();
    if (!this.#running) return false;
    return (await this.#callSurviving('checkpoint', Date.now() + 60_000)) as boolean;
  }
}

function raceAbort<T>(p: Promise<T>, signal: AbortSignal): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(signal.reason);
    signal.addEventListener('abort', onAbort, { once: true });
    p.then(resolve, reject).finally(() => signal.removeEventListener('abort', onAbort));
  });
}

/** Test hook: makes the engine worker die as a bug would (an uncaught error). Not public API. */
export function crashEngineWorkerForTest(): void {
  const host = EngineHost.shared();
  host.worker().wire.note('crash', null);
}
