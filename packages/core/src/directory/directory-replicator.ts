import { EventEmitter } from 'node:events';
import fs from 'node:fs/promises';
import path from 'node:path';
import pLimit, { type LimitFunction } from 'p-limit';
import { toMillis } from '../duration.js';
import { ClosedError, ConfigError, errorMessage } from '../errors.js';
import { type Logger, silentLogger } from '../logger.js';
import type { ReplicaOptions, ReplicatorOptions } from '../options.js';
import type { Pos } from '../pos.js';
import { Replicator } from '../replicator-facade.js';
import { Mutex } from '../util/async.js';
import { releaseUnlinkedHeldFiles } from '../util/held-files.js';
import { DirWatch } from './dir-watch.js';
import { fileVersion, type Probe, probeDatabase } from './probe.js';
import { compilePattern, type FoundFile, type NameMatcher, scanDirectory } from './scan.js';
import type {
  DirectoryDatabase,
  DirectoryReplicatorEvents,
  DirectoryReplicatorOptions,
  DirectoryReplicatorStatus,
  DirectorySkipped,
} from './types.js';

/** A directory listed again at most this often while its files change (see dir-watch.ts). */
const EVENT_GAP_MS = 500;
/** A database whose start failed is tried again after this long (doubling up to RETRY_MAX_MS), changed or not. */
const RETRY_FAILED_MS = 30_000;
const RETRY_MAX_MS = 300_000;
/** The engine's safety scan of an idle, watched database (see `idleScanInterval`). */
const DIRECTORY_IDLE_SCAN_MS = 60_000;
let nextGroup = 1;

interface Running extends DirectoryDatabase {
  /** The file (`dev:ino`) it started on: two hard links of one file get one replicator. */
  readonly inode: string;
  state: 'starting' | 'running' | 'stopping';
  readonly replicator: Replicator;
  /** Settles when `start()` did. */
  started: Promise<void>;
  /** Set once stopping began; settles when the replicator stopped. */
  stopped?: Promise<void>;
}

interface Remembered extends DirectoryDatabase {
  /** File version (dev, inode, size, mtime) the verdict is about. */
  readonly version: string;
  readonly reason: string;
  readonly error?: Error;
  readonly at: number;
  /** Failed starts: attempts so far, and when the next may run. */
  readonly attempts?: number;
  readonly retryAt?: number;
}

/**
 * Replicates every SQLite database in a directory (Litestream v0.5's `dir:` entries): each
 * file whose name matches `pattern` (in subdirectories too with `recursive`) gets its own
 * `Replicator`, with replicas under `<replica>/<relative path>/` — ordinary Litestream v0.3
 * replicas, each restorable on its own.
 *
 * ```ts
 * const dir = new DirectoryReplicator('/data/tenants', {
 *   pattern: '*.db', watch: true,
 *   replicas: [{ client: new S3ReplicaClient({ bucket: 'backups', path: 'tenants' }) }],
 * });
 * dir.on('database-added', ({ relPath }) => console.log('replicating', relPath));
 * await dir.start();
 * ```
 *
 * What it costs: the replicators share the process's one engine worker and each replica
 * client's connections (`ReplicaClient.scoped`); an idle database costs no timer of its own
 * beyond the engine's slow safety scan, and no storage request. With `watch`, the directory is
 * watched with inotify (one-shot watches, so busy databases do not flood this thread: see
 * dir-watch.ts) and listed again after a change, polled where events do not work. Snapshots,
 * uploads and starts are limited across the whole directory (`concurrency`), so a thousand
 * first snapshots do not run at once.
 *
 * Files that match but are not SQLite databases are reported once (`database-skipped`) and
 * looked at again only when they change; files still empty (being created) wait silently. A
 * database in rollback-journal mode is switched to WAL mode, as `Replicator` does (and
 * Litestream). Databases are read through descriptors that are never closed, so the
 * application's own connections keep their locks.
 *
 * Errors: the constructor throws `ConfigError` for invalid options (a missing `pattern`, a
 * replica client without `scoped`); `start()` throws `ConfigError` when the directory does not
 * exist or is not a directory. Per-database failures are events (`database-error`), never
 * thrown; each `Replicator` retries its replicas as usual.
 */
export class DirectoryReplicator extends EventEmitter<DirectoryReplicatorEvents> {
  readonly dir: string;
  readonly #match: NameMatcher;
  readonly #recursive: boolean;
  readonly #watch: boolean;
  readonly #replicasFor: (db: DirectoryDatabase) => readonly ReplicaOptions[];
  readonly #base: Omit<ReplicatorOptions, 'replicas'>;
  readonly #log: Logger;
  readonly #pollMs: number;
  readonly #rescanMs: number;
  readonly #starting: LimitFunction;
  readonly #running = new Map<string, Running>();
  readonly #skipped = new Map<string, Remembered>();
  readonly #failed = new Map<string, Remembered>();
  readonly #watches = new Map<string, DirWatch>();
  readonly #scanMutex = new Mutex();
  #scanQueued = false;
  #state: 'new' | 'starting' | 'running' | 'stopping' | 'stopped' = 'new';
  #starting_: Promise<void> | undefined;
  #timer: NodeJS.Timeout | undefined;
  /** Watch events coalesce into one listing at most every EVENT_GAP_MS for the whole tree. */
  #eventTimer: NodeJS.Timeout | undefined;
  #lastScanStart = 0;
  #lastScanAt: Date | undefined;
  #scanFailing = false;

  constructor(dir: string, options: DirectoryReplicatorOptions) {
    super();
    if (typeof dir !== 'string' || dir === '') throw new ConfigError('directory required: pass the directory that holds the databases');
    this.dir = path.resolve(dir);
    const o = options ?? ({} as DirectoryReplicatorOptions);
    const { pattern, recursive, watch, replicas, concurrency, pollInterval, rescanInterval, ...base } = o;
    this.#match = compilePattern(pattern);
    this.#recursive = recursive === true;
    this.#watch = watch === true;
    this.#pollMs = toMillis(pollInterval, 5_000, 'poll-interval');
    this.#rescanMs = toMillis(rescanInterval, 60_000, 'rescan-interval');
    if (this.#pollMs <= 0) throw new ConfigError('poll-interval must be positive');
    this.#log = base.logger ?? silentLogger;
    if (typeof replicas === 'function') this.#replicasFor = replicas;
    else if (Array.isArray(replicas)) {
      for (const r of replicas) {
        if (!r?.client || typeof r.client.scoped !== 'function') {
          throw new ConfigError(
            `replica client of type ${JSON.stringify(r?.client?.type)} cannot be scoped to each database's path (it has no scoped()): pass replicas as a function of the database`,
          );
        }
      }
      this.#replicasFor = (db) => replicas.map((r) => ({ ...r, client: r.client.scoped!(db.relPath) }));
    } else throw new ConfigError('replicas must be a list, or a function returning the replicas of one database');
    const starting = concurrency?.starting ?? 8;
    if (!Number.isInteger(starting) || starting < 1)
      throw new ConfigError(`invalid concurrency.starting: ${JSON.stringify(starting)}: expected a whole number ≥ 1`);
    this.#starting = pLimit(starting);
    this.#base = {
      // A thousand idle databases: one safety scan a minute each, not every 10 s.
      idleScanInterval: DIRECTORY_IDLE_SCAN_MS,
      ...base,
      concurrency: {
        key: `directory-${process.pid}-${nextGroup++}`,
        ...(concurrency?.snapshots !== undefined ? { snapshots: concurrency.snapshots } : {}),
        ...(concurrency?.uploads !== undefined ? { uploads: concurrency.uploads } : {}),
      },
    };
    // Fail on bad database options now, not once per database found.
    new Replicator(path.join(this.dir, '.walship-options-check'), { ...this.#base, replicas: [] });
  }

  /**
   * Lists the directory and starts replicating every database found (waiting for their starts);
   * with `watch`, keeps watching until `stop()`.
   * @throws ConfigError when the directory does not exist or is not a directory
   */
  start(): Promise<void> {
    if (this.#state === 'running') return Promise.resolve();
    if (this.#state === 'starting') return this.#starting_!;
    if (this.#state !== 'new') return Promise.reject(new ClosedError('directory replicator stopped'));
    this.#state = 'starting';
    this.#starting_ = this.#start();
    return this.#starting_;
  }

  async #start(): Promise<void> {
    const fail = (why: string) => {
      if (this.#state === 'starting') this.#state = 'new';
      return new ConfigError(`cannot replicate directory ${this.dir}: ${why}`);
    };
    const st = await fs.stat(this.dir).catch((err: NodeJS.ErrnoException) => {
      throw fail(`${err.code === 'ENOENT' ? 'it does not exist' : errorMessage(err)}: create it or fix dir`);
    });
    if (!st.isDirectory()) throw fail('it is not a directory: fix dir');
    // The first listing must work (a directory that cannot be read is a setup error).
    await fs.readdir(this.dir).catch((err: unknown) => {
      throw fail(`cannot list it: ${errorMessage(err)}`);
    });
    if (this.#state !== 'starting') return; // stopped meanwhile
    this.#state = 'running';
    await this.rescan();
    await Promise.all([...this.#running.values()].map((r) => r.started));
    if (this.#watch && this.#state === 'running') this.#schedule();
  }

  /**
   * Lists the directory now: starts databases that appeared, stops those deleted. Runs by
   * itself with `watch`; call it after creating databases without `watch`.
   */
  rescan(): Promise<void> {
    if (this.#state !== 'running') return Promise.resolve();
    if (this.#scanMutex.locked) {
      // One more listing after the current one covers every request made meanwhile.
      if (this.#scanQueued) return this.#scanMutex.run(() => {});
      this.#scanQueued = true;
    }
    return this.#scanMutex.run(async () => {
      this.#scanQueued = false;
      if (this.#state === 'running') await this.#scan();
    });
  }

  /** Waits until every database replicated now is synced to every replica (see `Replicator.sync`). */
  async sync(opts: { timeout?: number } = {}): Promise<Map<string, Pos>> {
    const out = new Map<string, Pos>();
    await Promise.all(
      [...this.#running.values()].map(async (r) => {
        await r.started;
        if (r.state !== 'running') return;
        out.set(r.relPath, await r.replicator.sync(opts));
      }),
    );
    return out;
  }

  /** `await using dir = new DirectoryReplicator(…)`: `stop()` with its defaults when the scope ends. */
  async [Symbol.asyncDispose](): Promise<void> {
    await this.stop();
  }

  /** Stops watching and stops every replicator (each with its final sync, bounded by `timeout`). */
  async stop(opts: { timeout?: number } = {}): Promise<void> {
    if (this.#state === 'stopped' || this.#state === 'stopping') return;
    const wasStarting = this.#state === 'starting';
    this.#state = 'stopping';
    if (wasStarting) await this.#starting_?.catch(() => {});
    this.#closeWatches();
    // Starts not yet begun are dropped (their limiter callback sees the state); a scan under way
    // ends without starting anything more.
    await Promise.all([...this.#running.values()].map((r) => this.#stopOne(r, undefined, opts)));
    await this.#scanMutex.run(() => {});
    await Promise.all([...this.#running.values()].map((r) => this.#stopOne(r, undefined, opts)));
    this.#closeWatches();
    this.#state = 'stopped';
  }

  #closeWatches(): void {
    if (this.#timer) clearTimeout(this.#timer);
    if (this.#eventTimer) clearTimeout(this.#eventTimer);
    this.#timer = undefined;
    this.#eventTimer = undefined;
    for (const w of this.#watches.values()) w.close();
    this.#watches.clear();
  }

  /** The started replicator of one database (by relative or absolute path), if it is replicated now. */
  replicator(dbPath: string): Replicator | undefined {
    const rel = path.isAbsolute(dbPath) ? path.relative(this.dir, dbPath).split(path.sep).join('/') : dbPath;
    const r = this.#running.get(rel);
    return r?.state === 'running' ? r.replicator : undefined;
  }

  /** The databases replicated now (started; `status()` also lists those starting and stopping). */
  databases(): DirectoryDatabase[] {
    return [...this.#running.values()].filter((r) => r.state === 'running').map(({ path: p, relPath }) => ({ path: p, relPath }));
  }

  status(): DirectoryReplicatorStatus {
    const skipped = (m: Remembered): DirectorySkipped => ({ path: m.path, relPath: m.relPath, reason: m.reason });
    return {
      dir: this.dir,
      watching: this.#watch && this.#state === 'running',
      events: this.#watches.size > 0 && [...this.#watches.values()].every((w) => w.active),
      databases: [...this.#running.values()].map((r) => ({
        path: r.path,
        relPath: r.relPath,
        state: r.state,
        status: r.replicator.status(),
      })),
      skipped: [...this.#skipped.values()].map(skipped),
      failed: [...this.#failed.values()].map((m) => ({ ...skipped(m), error: m.error! })),
      lastScanAt: this.#lastScanAt,
    };
  }

  /** The next listing: after a change (events), every poll interval (no events), or the safety rescan. */
  #schedule(): void {
    if (this.#timer) clearTimeout(this.#timer);
    if (this.#state !== 'running') return;
    const events = this.#watches.size > 0 && [...this.#watches.values()].every((w) => w.active);
    this.#timer = setTimeout(
      () => {
        this.#timer = undefined;
        void this.#rescanLogged().finally(() => this.#schedule());
      },
      events && !this.#scanFailing ? this.#rescanMs : this.#pollMs,
    );
    this.#timer.unref();
  }

  /** A watch saw a change: one listing of the tree, at most every EVENT_GAP_MS however many directories fire. */
  #onWatchEvent(): void {
    if (this.#eventTimer || this.#state !== 'running') return;
    const wait = Math.max(0, this.#lastScanStart + EVENT_GAP_MS - performance.now());
    this.#eventTimer = setTimeout(() => {
      this.#eventTimer = undefined;
      void this.#rescanLogged();
    }, wait);
    this.#eventTimer.unref();
  }

  /** rescan() from a timer or an event: a failure is logged, never an unhandled rejection. */
  #rescanLogged(): Promise<void> {
    return this.rescan().catch((err: unknown) => this.#log.error('directory listing failed', { dir: this.dir, error: errorMessage(err) }));
  }

  /** Emits an event; a listener that throws is logged, and never breaks a scan or a start. */
  #emitSafe<K extends keyof DirectoryReplicatorEvents>(name: K, ...args: DirectoryReplicatorEvents[K]): void {
    try {
      (this.emit as (n: string, ...a: unknown[]) => boolean)(name, ...args);
    } catch (err) {
      this.#log.error('directory event listener threw', { event: name, error: errorMessage(err) });
    }
  }

  async #scan(): Promise<void> {
    this.#lastScanStart = performance.now();
    // Re-arm the watches before listing: the listing then sees everything before the next event.
    for (const w of this.#watches.values()) w.arm();
    let found;
    try {
      found = await scanDirectory(this.dir, this.#match, this.#recursive);
    } catch (err) {
      if (!this.#scanFailing) {
        this.#scanFailing = true;
        this.#log.error('cannot list directory', { dir: this.dir, error: errorMessage(err) });
        this.#emitSafe('scan-error', { dir: this.dir, error: err as Error });
      }
      // The directory itself is gone: so are its databases.
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') {
        await Promise.all([...this.#running.values()].map((r) => this.#stopOne(r, 'deleted')));
        this.#skipped.clear();
        this.#failed.clear();
      }
      if (this.#watch) this.#schedule();
      return;
    }
    if (this.#scanFailing) {
      this.#scanFailing = false;
      this.#log.info('directory listed again', { dir: this.dir });
      if (this.#watch) this.#schedule();
    }
    if (this.#state !== 'running') return;
    this.#lastScanAt = new Date();
    // A watch made now misses what its directory got before: list once more after this.
    if (this.#watch && this.#updateWatches(found.dirs)) this.#onWatchEvent();

    // A subdirectory that could not be listed (EMFILE, EIO, …) is not a deleted one.
    const unreadable = [...found.unreadable.keys()];
    const gone = (rel: string) => !found.files.has(rel) && !unreadable.some((u) => rel.startsWith(`${u}/`));
    for (const [rel, r] of this.#running) {
      if (gone(rel) && r.state !== 'stopping') void this.#stopOne(r, 'deleted');
    }
    for (const m of [this.#skipped, this.#failed]) for (const rel of m.keys()) if (gone(rel)) m.delete(rel);
    if (unreadable.length > 0)
      this.#log.warn('cannot list subdirectories; their databases are left as they are', {
        dir: this.dir,
        subdirectories: unreadable.join(','),
      });

    const todo = [...found.files.values()].filter((f) => !this.#running.has(f.relPath));
    await Promise.all(todo.map((f) => this.#consider(f)));
  }

  /** Watches the listed directories (closing those gone); true when a watch was added. */
  #updateWatches(dirs: readonly string[]): boolean {
    let added = false;
    const want = new Set(dirs);
    for (const [rel, w] of this.#watches) {
      if (!want.has(rel)) {
        w.close();
        this.#watches.delete(rel);
      }
    }
    let failedBefore = false;
    for (const w of this.#watches.values()) if (!w.active) failedBefore = true;
    for (const rel of dirs) {
      if (this.#watches.has(rel)) continue;
      const w = new DirWatch(rel === '' ? this.dir : path.join(this.dir, rel), () => this.#onWatchEvent());
      this.#watches.set(rel, w);
      w.arm();
      if (rel !== '' || this.#watches.size > 1) added = true;
      if (!w.active && !failedBefore) {
        failedBefore = true;
        this.#log.warn('directory events unavailable, polling instead', { dir: w.dir, 'poll-interval': `${this.#pollMs}ms` });
        this.#schedule();
      }
    }
    return added;
  }

  /** A matching file not replicated yet: start it, or remember why not. */
  async #consider(f: FoundFile): Promise<void> {
    const version = (await fileVersion(f.path))?.key;
    if (version === undefined) return; // gone meanwhile
    const skipped = this.#skipped.get(f.relPath);
    if (skipped?.version === version) return;
    // A failed start is tried again after its backoff, whatever the database wrote meanwhile.
    const failed = this.#failed.get(f.relPath);
    if (failed && Date.now() < (failed.retryAt ?? 0)) return;
    let probe: Probe;
    try {
      probe = f.symlink ? { kind: 'symlink' } : await probeDatabase(f.path);
    } catch (err) {
      this.#fail(f, version, err as Error);
      return;
    }
    if (probe.kind === 'gone' || probe.kind === 'pending') return;
    if (probe.kind !== 'database') {
      this.#skip(
        f,
        version,
        probe.kind === 'symlink'
          ? 'a symbolic link (SQLite writes its -wal beside the target): replicate the target instead'
          : 'not a SQLite database',
      );
      return;
    }
    // Two names of one file (hard links): one replicator, or their checkpoints would fight.
    const inode = inodeOf(version);
    const twin = [...this.#running.values()].find((r) => r.inode === inode);
    if (twin) {
      this.#skip(f, version, `the same file as ${twin.relPath} (a hard link), which is replicated`);
      return;
    }
    this.#skipped.delete(f.relPath);
    if (this.#state !== 'running' || this.#running.has(f.relPath)) return;
    let replicator: Replicator;
    try {
      replicator = new Replicator(f.path, { ...this.#base, replicas: this.#replicasFor(f) });
    } catch (err) {
      this.#fail(f, version, err as Error);
      return;
    }
    const entry: Running = { relPath: f.relPath, path: f.path, inode, state: 'starting', replicator, started: Promise.resolve() };
    this.#running.set(f.relPath, entry);
    entry.started = this.#starting(async () => {
      // Stopped (the directory or this database) before its turn came: never started.
      if (entry.state !== 'starting' || this.#state !== 'running') {
        if (this.#running.get(f.relPath) === entry && entry.state === 'starting') this.#running.delete(f.relPath);
        return;
      }
      try {
        await replicator.start();
      } catch (err) {
        if (this.#running.get(f.relPath) === entry) this.#running.delete(f.relPath);
        this.#fail(f, version, err as Error);
        return;
      }
      if (entry.state !== 'starting') return; // stopped meanwhile
      entry.state = 'running';
      this.#failed.delete(f.relPath);
      this.#log.info('replicating database', { path: f.path, 'wal-mode': probe.walMode });
      this.#emitSafe('database-added', { path: f.path, relPath: f.relPath, replicator, walMode: probe.walMode });
    });
    await entry.started;
  }

  #skip(f: DirectoryDatabase, version: string, reason: string): void {
    this.#skipped.set(f.relPath, { path: f.path, relPath: f.relPath, version, reason, at: Date.now() });
    this.#log.warn(`skipping file: ${reason}`, { path: f.path });
    this.#emitSafe('database-skipped', { path: f.path, relPath: f.relPath, reason });
  }

  #fail(f: DirectoryDatabase, version: string, error: Error): void {
    const known = this.#failed.get(f.relPath);
    const attempts = (known?.attempts ?? 0) + 1;
    const backoff = Math.min(RETRY_MAX_MS, RETRY_FAILED_MS * 2 ** (attempts - 1));
    const reason = errorMessage(error);
    this.#failed.set(f.relPath, {
      path: f.path,
      relPath: f.relPath,
      version,
      reason,
      error,
      at: Date.now(),
      attempts,
      retryAt: Date.now() + backoff,
    });
    if (known?.reason === reason) return; // reported already (once per reason)
    this.#log.error('cannot replicate database', { path: f.path, error: reason, retry: `${Math.round(backoff / 1000)}s` });
    this.#emitSafe('database-error', { path: f.path, relPath: f.relPath, error });
  }

  #stopOne(r: Running, reason: 'deleted' | undefined, opts: { timeout?: number } = {}): Promise<void> {
    r.stopped ??= this.#stopNow(r, reason, opts);
    return r.stopped;
  }

  async #stopNow(r: Running, reason: 'deleted' | undefined, opts: { timeout?: number }): Promise<void> {
    const wasRunning = r.state === 'running';
    r.state = 'stopping';
    await r.started.catch(() => {});
    try {
      // A deleted database has nothing left to sync: its replicas already hold what was committed.
      await r.replicator.stop(reason === 'deleted' ? { timeout: 1_000 } : opts);
    } catch (err) {
      this.#log.warn('stopping replication failed', { path: r.path, error: errorMessage(err) });
    } finally {
      if (this.#running.get(r.relPath) === r) this.#running.delete(r.relPath);
    }
    // Its header was probed through a held descriptor: free the deleted file's space.
    if (reason === 'deleted') await releaseUnlinkedHeldFiles().catch(() => 0);
    if (reason && wasRunning) {
      this.#log.info('database removed, replication stopped', { path: r.path, reason });
      this.#emitSafe('database-removed', { path: r.path, relPath: r.relPath, reason, replicator: r.replicator });
    }
    // A database created again under the same name while this one stopped: pick it up now.
    if (reason === 'deleted' && this.#state === 'running') this.#onWatchEvent();
  }
}

/** `dev:ino` of a file version key (`dev:ino:size:mtime`, probe.ts). */
function inodeOf(version: string): string {
  return version.split(':').slice(0, 2).join(':');
}
