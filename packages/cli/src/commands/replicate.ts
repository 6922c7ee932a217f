import { spawn, type ChildProcess } from 'node:child_process';
import type { EventEmitter } from 'node:events';
import { accessSync, constants, statSync } from 'node:fs';
import type { Server } from 'node:http';
import { constants as osConstants } from 'node:os';
import { delimiter, dirname, isAbsolute, join, resolve } from 'node:path';
import {
  childLogger,
  DirectoryReplicator,
  type DirectoryReplicatorOptions,
  errorMessage,
  formatGoDuration,
  parseGoDuration,
  type ReplicaOptions,
  Replicator,
  type ReplicatorOptions,
} from '@walship/core';
import { boolFlag, stringFlag } from '../args.js';
import { type Invocation, loadConfig } from '../invocation.js';
import { adHocConfig, splitAddr, type CliConfig, type DbSpec, type DirSpec, type ReplicaSpec } from '../config.js';
import { tenantReplicas } from '../directory.js';
import { CliError, UsageError } from '../errors.js';
import { createLogger, redactValue, type CliLogger } from '../logger.js';
import { Metrics, startMetricsServer } from '../metrics.js';
import { splitShellWords } from '../shellwords.js';
import { cliVersion } from '../version.js';

/** A repeat of the first signal within this many ms is the same signal delivered twice. */
const DUPLICATE_SIGNAL_MS = 250;

/** How often replica health is re-read to log recoveries (an in-memory `status()` call). */
const HEALTH_POLL_MS = 1_000;

type Signal = 'SIGINT' | 'SIGTERM';

/** `walship replicate [flags]` or `walship replicate [flags] DB_PATH REPLICA_URL...`. */
export async function replicateCommand(inv: Invocation): Promise<number> {
  const { args, io } = inv;
  const positionals = args.positionals;
  let config: CliConfig;
  if (positionals.length > 0) {
    if (stringFlag(args, 'config') !== undefined) throw new UsageError('cannot specify a replica URL and the -config flag');
    if (positionals.length === 1) throw new UsageError(`must specify at least one replica URL for ${positionals[0]}`);
    config = await adHocConfig(positionals[0]!, positionals.slice(1), { registry: io.registry, env: io.env, cwd: io.cwd });
  } else {
    config = await loadConfig(inv);
  }

  // Flags override the file.
  const execFlag = stringFlag(args, 'exec');
  const addrFlag = stringFlag(args, 'addr');
  const timeoutFlag = stringFlag(args, 'shutdown-sync-timeout');
  let shutdownSyncTimeoutMs = config.shutdownSyncTimeoutMs;
  if (timeoutFlag !== undefined) {
    try {
      shutdownSyncTimeoutMs = parseGoDuration(timeoutFlag);
    } catch {
      throw new UsageError(`invalid value ${JSON.stringify(timeoutFlag)} for -shutdown-sync-timeout: use a Go duration such as 30s or 1m`);
    }
    if (shutdownSyncTimeoutMs < 0) throw new UsageError('-shutdown-sync-timeout must not be negative');
  }
  const exec = execFlag !== undefined ? execFlag : config.exec;
  const addr = addrFlag !== undefined ? addrFlag : config.addr;
  const bind = addr ? splitAddrOrUsage(addr) : undefined;

  const dryRun = boolFlag(args, 'dry-run');
  // -force: every replica takes over a lease another walship still holds (planned failover).
  if (boolFlag(args, 'force')) {
    const takeover = <T extends { replicas: readonly ReplicaSpec[] }>(e: T): T => ({
      ...e,
      replicas: e.replicas.map((r) => ({ ...r, takeover: true })),
    });
    config = { ...config, dbs: config.dbs.map(takeover), dirs: config.dirs.map(takeover) };
  }
  const logger = createLogger({
    level: config.logging.level,
    format: config.logging.format,
    // A dry run prints JSON on stdout; keep logs off it.
    stream: config.logging.stderr || dryRun ? io.stderr : io.stdout,
  });
  for (const w of config.warnings) logger.warn(w);

  if (dryRun) {
    io.stdout.write(`${JSON.stringify(describeConfig(config, { exec, addr, shutdownSyncTimeoutMs }), null, 2)}\n`);
    return 0;
  }

  // --- Pre-flight: nothing has started yet; every failure here is a one-line user error.
  let execArgv: string[] | undefined;
  if (exec && exec.trim() !== '') {
    execArgv = splitShellWords(exec);
    if (execArgv.length === 0) execArgv = undefined;
    else execArgv[0] = findExecutable(execArgv[0]!, io.env, io.cwd);
  }
  for (const db of config.dbs) checkDatabaseDirectory(db);
  for (const dir of config.dirs) checkDirectoryEntry(dir);
  // Replicas are not contacted here: one that is unreachable or failing at start-up must not keep
  // the others (or the -exec child) from starting. The replicator retries it with backoff, it is
  // reported by status(), the metrics and /healthz, and it catches up when it returns.

  // Node.js process metrics only when they are served (their event-loop sampling costs CPU at idle).
  const metrics = new Metrics({ defaultMetrics: bind !== undefined });
  let server: Server | undefined;
  let metricsUrl: string | undefined;
  if (bind) {
    const started = await startMetricsServer(metrics, bind.host, bind.port);
    server = started.server;
    metricsUrl = started.url;
  }

  // --- Run.
  const run = new ReplicateRun(logger, config.dbs, config.dirs, shutdownSyncTimeoutMs, metrics, server);
  return run.start(execArgv, metricsUrl);
}

function splitAddrOrUsage(addr: string): { host: string; port: number } {
  try {
    return splitAddr(addr);
  } catch (err) {
    throw new UsageError(errorMessage(err));
  }
}

/** The database's directory must exist (SQLite creates the file, not its directory). */
function checkDatabaseDirectory(db: DbSpec): void {
  const dir = dirname(db.path);
  let isDir = false;
  try {
    isDir = statSync(dir).isDirectory();
  } catch {
    throw new CliError(`database directory does not exist: ${dir} (create it or fix the path of ${db.path})`);
  }
  if (!isDir) throw new CliError(`database directory is not a directory: ${dir} (fix the path of ${db.path})`);
}

/** A directory entry's `dir` must exist and be a directory. */
function checkDirectoryEntry(dir: DirSpec): void {
  let isDir = false;
  try {
    isDir = statSync(dir.dir).isDirectory();
  } catch {
    throw new CliError(`directory does not exist: ${dir.dir} (create it or fix dir at ${dir.where})`);
  }
  if (!isDir) throw new CliError(`not a directory: ${dir.dir} (fix dir at ${dir.where})`);
}

/** Resolves the exec program like execvp, so a typo fails before anything starts. */
function findExecutable(cmd: string, env: Record<string, string | undefined>, cwd: string): string {
  const ok = (p: string) => {
    try {
      accessSync(p, constants.X_OK);
      return statSync(p).isFile();
    } catch {
      return false;
    }
  };
  if (cmd.includes('/')) {
    const p = isAbsolute(cmd) ? cmd : resolve(cwd, cmd);
    if (!ok(p)) throw new UsageError(`exec: command not found or not executable: ${cmd}`);
    return cmd;
  }
  for (const dir of (env.PATH ?? '').split(delimiter)) {
    if (ok(join(dir || '.', cmd))) return cmd;
  }
  throw new UsageError(`exec: command not found: ${cmd} (not in PATH)`);
}

function describeConfig(
  config: CliConfig,
  overrides: { exec: string | undefined; addr: string | undefined; shutdownSyncTimeoutMs: number },
) {
  const d = (ms: number) => formatGoDuration(ms);
  return {
    config: config.file ?? null,
    addr: overrides.addr ?? null,
    exec: overrides.exec ?? null,
    shutdownSyncTimeout: d(overrides.shutdownSyncTimeoutMs),
    logging: config.logging,
    dbs: config.dbs.map((db) => ({
      path: db.path,
      metaPath: db.metaPath ?? null,
      ...describeSettings(db),
    })),
    dirs: config.dirs.map((dir) => ({
      dir: dir.dir,
      pattern: dir.pattern,
      recursive: dir.recursive,
      watch: dir.watch,
      ...describeSettings(dir),
    })),
  };
}

function describeSettings(db: Omit<DbSpec, 'path' | 'metaPath'>) {
  const d = (ms: number) => formatGoDuration(ms);
  return {
    monitorInterval: d(db.monitorIntervalMs),
    checkpointInterval: d(db.checkpointIntervalMs),
    minCheckpointPageCount: db.minCheckpointPageCount,
    maxCheckpointPageCount: db.maxCheckpointPageCount,
    truncatePageCount: db.truncatePageCount ?? null,
    busyTimeout: db.busyTimeoutMs !== undefined ? d(db.busyTimeoutMs) : null,
    replicas: db.replicas.map((r) => ({
      name: r.name,
      type: r.type,
      syncInterval: d(r.syncIntervalMs),
      retention: d(r.retentionMs),
      retentionCheckInterval: d(r.retentionCheckIntervalMs),
      snapshotInterval: d(r.snapshotIntervalMs),
      validationInterval: d(r.validationIntervalMs),
      leaseTtl: r.leaseTtlMs !== undefined ? d(r.leaseTtlMs) : null,
      takeover: r.takeover,
      // Key counts only: identities are secrets.
      ...(r.age ? { age: { identities: r.age.identities, recipients: r.age.recipients } } : {}),
      config: redactValue('', r.config),
    })),
  };
}

function replicatorOptions(db: DbSpec, logger: CliLogger): ReplicatorOptions {
  return {
    ...databaseOptions(db),
    // Litestream keeps its own state in the same `meta-path` (default `.<db>-litestream`):
    // a generation it was replicating is continued there (core db/litestream-meta.ts).
    ...(db.metaPath !== undefined ? { metaPath: db.metaPath, litestreamMetaPath: db.metaPath } : {}),
    logger: childLogger(logger, { db: db.path }),
  };
}

/** The options of one database of a directory entry (`dir:`). */
function directoryOptions(dir: DirSpec, logger: CliLogger): DirectoryReplicatorOptions {
  return {
    ...databaseOptions(dir),
    pattern: dir.pattern,
    recursive: dir.recursive,
    watch: dir.watch,
    replicas: (db) => replicaOptions(tenantReplicas(dir, db.relPath)),
    logger: childLogger(logger, { dir: dir.dir }),
  };
}

/** Replicas and settings shared by database and directory entries. */
function databaseOptions(db: Omit<DbSpec, 'path' | 'metaPath'>): ReplicatorOptions {
  return {
    replicas: replicaOptions(db.replicas),
    monitorInterval: db.monitorIntervalMs,
    checkpointInterval: db.checkpointIntervalMs,
    minCheckpointPageCount: db.minCheckpointPageCount,
    maxCheckpointPageCount: db.maxCheckpointPageCount,
    ...(db.truncatePageCount !== undefined ? { truncatePageCount: db.truncatePageCount } : {}),
    ...(db.busyTimeoutMs !== undefined ? { busyTimeout: db.busyTimeoutMs } : {}),
  };
}

/** The library's replica options of the config's replicas. */
function replicaOptions(replicas: readonly ReplicaSpec[]): ReplicaOptions[] {
  return replicas.map((r) => ({
    client: r.client,
    name: r.name,
    syncInterval: r.syncIntervalMs,
    retention: r.retentionMs,
    retentionCheckInterval: r.retentionCheckIntervalMs,
    snapshotInterval: r.snapshotIntervalMs,
    validationInterval: r.validationIntervalMs,
    ...(r.leaseTtlMs !== undefined ? { leaseTtl: r.leaseTtlMs } : {}),
    ...(r.takeover ? { takeover: true } : {}),
    ...(r.stages ? { stages: r.stages } : {}),
  }));
}

function signalExitCode(signal: NodeJS.Signals | null): number {
  const n = signal ? (osConstants.signals as Record<string, number>)[signal] : undefined;
  return n ? 128 + n : 1;
}

interface FailingReplica {
  readonly db: string;
  readonly name: string;
  readonly type: string;
  /** When the first failure of this outage was seen (ms since the epoch). */
  readonly since: number;
  failures: number;
  readonly replicator: Replicator;
}

/** The running state of `replicate`: replicators, optional child, signals and shutdown. */
class ReplicateRun {
  readonly #replicators: { db: DbSpec; replicator: Replicator }[] = [];
  readonly #directories: { dir: DirSpec; directory: DirectoryReplicator }[] = [];
  #child: ChildProcess | undefined;
  #childExited = false;
  #signal: Signal | undefined;
  #signalAt = 0;
  #shuttingDown = false;
  #resolveExit: (code: number) => void = () => {};
  #keepAlive: NodeJS.Timeout | undefined;
  #healthTimer: NodeJS.Timeout | undefined;
  /** Replicas currently failing (key: db path + NUL + replica name), to log state changes once. */
  readonly #failing = new Map<string, FailingReplica>();
  readonly #handlers = new Map<Signal, () => void>();

  constructor(
    private readonly logger: CliLogger,
    private readonly dbs: readonly DbSpec[],
    private readonly dirs: readonly DirSpec[],
    private readonly shutdownSyncTimeoutMs: number,
    private readonly metrics: Metrics,
    private readonly server: Server | undefined,
  ) {}

  async start(execArgv: string[] | undefined, metricsUrl: string | undefined): Promise<number> {
    const exited = new Promise<number>((resolve) => {
      this.#resolveExit = resolve;
    });
    this.#keepAlive = setInterval(() => {}, 1 << 30);
    for (const sig of ['SIGINT', 'SIGTERM'] as const) {
      const h = () => this.#onSignal(sig);
      this.#handlers.set(sig, h);
      process.on(sig, h);
    }
    const { logger } = this;
    // Litestream logs `msg=litestream version=v0.3.13`: the same field, Go's `v` version style.
    logger.info('walship', { version: cliVersion() });
    if (this.dbs.length === 0 && this.dirs.length === 0) logger.error('no databases specified in configuration');
    for (const db of this.dbs) {
      if (this.#shuttingDown) break;
      const replicator = new Replicator(db.path, replicatorOptions(db, logger));
      this.metrics.watch(db.path, replicator, new Map(db.replicas.map((r) => [r.name, r.type])));
      (replicator as EventEmitter).on('error', (err: unknown) =>
        logger.error('replicator error', { db: db.path, error: errorMessage(err) }),
      );
      this.#trackReplicaHealth(db.path, db.replicas, replicator);
      this.#replicators.push({ db, replicator });
      try {
        await replicator.start();
      } catch (err) {
        this.#replicators.pop();
        await this.#stopAll(this.shutdownSyncTimeoutMs);
        this.#cleanup();
        throw new CliError(`cannot start replication of ${db.path}: ${errorMessage(err)}`, { cause: err });
      }
      logger.info('initialized db', { path: db.path });
      this.#logReplicas(db.replicas);
    }
    for (const dir of this.dirs) {
      if (this.#shuttingDown) break;
      await this.#startDirectory(dir);
    }
    if (metricsUrl) logger.info('serving metrics on', { url: metricsUrl });
    this.#healthTimer = setInterval(() => this.#checkRecovered(), HEALTH_POLL_MS);
    if (execArgv && !this.#shuttingDown) this.#startChild(execArgv);
    if (this.#signal && !this.#shuttingDown) void this.#shutdown(0);
    return exited;
  }

  #logReplicas(replicas: readonly ReplicaSpec[], extra: Record<string, string> = {}): void {
    for (const r of replicas) {
      let described: Record<string, string> = {};
      try {
        described = r.backend.describe?.(r.config) ?? {};
      } catch {
        // describe is cosmetic.
      }
      this.logger.info('replicating to', {
        name: r.name,
        type: r.type,
        'sync-interval': formatGoDuration(r.syncIntervalMs),
        ...described,
        ...extra,
      });
    }
  }

  /**
   * A directory entry: one DirectoryReplicator, each database it finds watched by the metrics
   * and the health log like a database entry. A database failing to start is logged (and
   * retried by the directory replicator), never fatal: the others keep replicating.
   */
  async #startDirectory(dir: DirSpec): Promise<void> {
    const { logger } = this;
    const directory = new DirectoryReplicator(dir.dir, directoryOptions(dir, logger));
    const types = new Map(dir.replicas.map((r) => [r.name, r.type]));
    directory.on('database-added', (e) => {
      this.metrics.watch(e.path, e.replicator, types);
      (e.replicator as EventEmitter).on('error', (err: unknown) =>
        logger.error('replicator error', { db: e.path, error: errorMessage(err) }),
      );
      this.#trackReplicaHealth(e.path, dir.replicas, e.replicator);
    });
    directory.on('database-removed', (e) => {
      void this.metrics
        .unwatch(e.replicator)
        .catch((err: unknown) => logger.warn('cannot drop the metrics of a removed database', { db: e.path, error: errorMessage(err) }));
      for (const key of this.#failing.keys()) if (key.startsWith(`${e.path}\0`)) this.#failing.delete(key);
    });
    this.#directories.push({ dir, directory });
    this.metrics.watchDirectory(dir.dir, directory);
    try {
      await directory.start();
    } catch (err) {
      this.#directories.pop();
      await this.#stopAll(this.shutdownSyncTimeoutMs);
      this.#cleanup();
      throw new CliError(`cannot start replication of directory ${dir.dir}: ${errorMessage(err)}`, { cause: err });
    }
    logger.info('initialized dir', {
      dir: dir.dir,
      pattern: dir.pattern,
      recursive: dir.recursive,
      watch: dir.watch,
      databases: directory.databases().length,
    });
    this.#logReplicas(dir.replicas, { 'path-suffix': '<relative path of each database>' });
  }

  /**
   * Logs a replica's state changes (once when it starts failing, once when it works again);
   * the replicator itself retries it with backoff and logs each failed attempt.
   */
  #trackReplicaHealth(dbPath: string, replicas: readonly ReplicaSpec[], replicator: Replicator): void {
    const types = new Map(replicas.map((r) => [r.name, r.type]));
    replicator.on('replica-error', (e) => {
      const key = `${dbPath}\0${e.replica}`;
      const known = this.#failing.get(key);
      if (known) {
        known.failures++;
        return;
      }
      this.#failing.set(key, { db: dbPath, name: e.replica, type: types.get(e.replica) ?? '', since: Date.now(), failures: 1, replicator });
      this.logger.warn('replica unavailable, retrying with backoff', {
        db: dbPath,
        name: e.replica,
        type: types.get(e.replica),
        error: errorMessage(e.error),
      });
    });
  }

  /** Logs `replica available again` for every failing replica whose last attempt succeeded. */
  #checkRecovered(): void {
    for (const [key, f] of this.#failing) {
      let status;
      try {
        status = f.replicator.status().replicas.find((r) => r.name === f.name);
      } catch {
        continue;
      }
      if (!status || status.lastError !== undefined) continue;
      this.#failing.delete(key);
      this.logger.info('replica available again', {
        db: f.db,
        name: f.name,
        type: f.type,
        'failed-for': formatGoDuration(Math.round((Date.now() - f.since) / 1000) * 1000),
        'failed-attempts': f.failures,
      });
    }
  }

  #startChild(argv: string[]): void {
    const [cmd, ...rest] = argv;
    this.logger.debug('starting exec process', { command: cmd });
    const child = spawn(cmd!, rest, { stdio: 'inherit', env: process.env });
    this.#child = child;
    child.on('error', (err) => {
      if (this.#childExited) return;
      this.#childExited = true;
      this.logger.error('cannot run exec process', { error: errorMessage(err) });
      void this.#shutdown(1);
    });
    child.on('exit', (code, signal) => {
      this.#childExited = true;
      let exitCode: number;
      if (code !== null) exitCode = code;
      else if (this.#signal && signal === this.#signal)
        exitCode = 0; // ended by the signal we forwarded, as Litestream
      else exitCode = signalExitCode(signal);
      if (!this.#signal) this.logger.info('subprocess exited, walship shutting down', { code: code ?? signal });
      else this.logger.info('exec process exited', { code: code ?? signal });
      void this.#shutdown(exitCode);
    });
  }

  #onSignal(sig: Signal): void {
    // One Ctrl-C often arrives twice within a millisecond: from the terminal (to the whole
    // process group) and forwarded by a wrapper (`npm run`, a launcher script). That repeat is
    // not a request to exit at once, which would skip the final sync.
    if (sig === this.#signal && performance.now() - this.#signalAt < DUPLICATE_SIGNAL_MS) {
      this.logger.debug('repeated signal ignored (delivered twice)', { signal: sig });
      return;
    }
    if (this.#signal || this.#shuttingDown) {
      this.logger.warn('second signal received, exiting immediately', { signal: sig });
      if (this.#child && !this.#childExited) this.#child.kill(sig);
      this.#cleanup();
      process.exit(sig === 'SIGINT' ? 130 : 143);
    }
    this.#signal = sig;
    this.#signalAt = performance.now();
    this.logger.info('signal received, walship shutting down', { signal: sig });
    if (this.#child && !this.#childExited) {
      this.#child.kill(sig);
      this.logger.info('waiting for exec process to close');
      return; // the child's exit triggers the shutdown
    }
    if (this.#replicators.length > 0 || this.#directories.length > 0 || (this.dbs.length === 0 && this.dirs.length === 0))
      void this.#shutdown(0);
    // else: still starting; start() shuts down once the current replicator is up.
  }

  async #stopAll(timeoutMs: number): Promise<number> {
    let failures = 0;
    await Promise.all([
      ...this.#directories.map(async ({ dir, directory }) => {
        try {
          await directory.stop({ timeout: timeoutMs });
        } catch (err) {
          failures++;
          this.logger.error('final sync failed', { dir: dir.dir, error: errorMessage(err) });
        }
      }),
      ...this.#replicators.map(async ({ db, replicator }) => {
        let timer: NodeJS.Timeout | undefined;
        try {
          await Promise.race([
            replicator.stop({ timeout: timeoutMs }),
            new Promise((_, reject) => {
              timer = setTimeout(
                () => reject(new Error(`stop did not finish within ${formatGoDuration(timeoutMs + 5000)}`)),
                timeoutMs + 5000,
              );
            }),
          ]);
        } catch (err) {
          failures++;
          this.logger.error('final sync failed', { db: db.path, error: errorMessage(err) });
        } finally {
          clearTimeout(timer);
        }
      }),
    ]);
    return failures;
  }

  async #shutdown(code: number): Promise<void> {
    if (this.#shuttingDown) return;
    this.#shuttingDown = true;
    const failures = await this.#stopAll(this.shutdownSyncTimeoutMs);
    if (this.server) {
      this.server.closeAllConnections?.();
      await new Promise<void>((resolve) => this.server!.close(() => resolve()));
    }
    this.logger.info('walship shut down');
    this.#cleanup();
    this.#resolveExit(code === 0 && failures > 0 ? 1 : code);
  }

  #cleanup(): void {
    for (const [sig, h] of this.#handlers) process.off(sig, h);
    this.#handlers.clear();
    if (this.#keepAlive) clearInterval(this.#keepAlive);
    this.#keepAlive = undefined;
    if (this.#healthTimer) clearInterval(this.#healthTimer);
    this.#healthTimer = undefined;
  }
}
