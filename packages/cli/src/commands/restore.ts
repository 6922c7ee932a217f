import { lstat } from 'node:fs/promises';
import { stringFlag, boolFlag } from '../args.js';
import { closeClients, commandLogger, resolveTarget, type Invocation } from '../invocation.js';
import { Follower, formatPos, parseGoDuration, restore, type RestoreOptions, type RestoreProgress } from '@walship/core';
import { JsonProgress, LineProgress, type ProgressSink, TerminalProgress } from '../progress.js';
import { CliError, UsageError } from '../errors.js';
import { absPath } from '../paths.js';
import { restoreDirectory } from './restore-directory.js';

const RFC3339 = /^(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(\.\d+)?([Zz]|[+-](\d{2}):(\d{2}))$/;

/**
 * Parses an RFC 3339 time as Go's time.Parse(time.RFC3339) accepts it.
 * @throws UsageError `invalid -timestamp, must specify in ISO 8601 format (e.g. 2000-01-01T00:00:00Z)`
 */
export function parseTimestamp(s: string): Date {
  const bad = () => new UsageError('invalid -timestamp, must specify in ISO 8601 format (e.g. 2000-01-01T00:00:00Z)');
  const m = RFC3339.exec(s);
  if (!m) throw bad();
  const [, y, mo, d, h, mi, sec, , , oh, om] = m;
  const month = Number(mo);
  const day = Number(d);
  const daysInMonth = new Date(Date.UTC(Number(y), month, 0)).getUTCDate();
  if (month < 1 || month > 12 || day < 1 || day > daysInMonth || Number(h) > 23 || Number(mi) > 59 || Number(sec) > 59) throw bad();
  if (oh !== undefined && (Number(oh) > 23 || Number(om) > 59)) throw bad();
  const date = new Date(s.toUpperCase());
  if (Number.isNaN(date.getTime())) throw bad();
  return date;
}

/**
 * Parses `-index` as Go's strconv.ParseInt(s, 16, 32): hex digits, no `0x`; negative values
 * are rejected too.
 * @throws UsageError `invalid hexadecimal format`
 */
export function parseHexIndex(s: string): number {
  if (!/^\+?[0-9a-fA-F]+$/.test(s)) throw new UsageError('invalid hexadecimal format');
  const n = parseInt(s.replace(/^\+/, ''), 16);
  if (!Number.isSafeInteger(n) || n > 0x7fffffff) throw new UsageError('invalid hexadecimal format');
  return n;
}

/** `walship restore [flags] DB_PATH|REPLICA_URL`. */
export async function restoreCommand(inv: Invocation): Promise<number> {
  const { args, io } = inv;
  // Validate every flag before touching config or storage.
  const indexStr = stringFlag(args, 'index');
  const timestampStr = stringFlag(args, 'timestamp');
  const index = indexStr !== undefined ? parseHexIndex(indexStr) : undefined;
  const timestamp = timestampStr !== undefined ? parseTimestamp(timestampStr) : undefined;
  if (index !== undefined && timestamp !== undefined) throw new UsageError('cannot specify index & timestamp to restore');
  let parallelism: number | undefined;
  const parStr = stringFlag(args, 'parallelism');
  if (parStr !== undefined) {
    if (!/^[+-]?\d+$/.test(parStr))
      throw new UsageError(`invalid value ${JSON.stringify(parStr)} for -parallelism: use a whole number such as 8`);
    parallelism = Math.max(1, Number(parStr));
  }
  const verify = stringFlag(args, 'verify');
  if (verify !== undefined && verify !== 'integrity' && verify !== 'quick' && verify !== 'none') {
    throw new UsageError(`invalid value ${JSON.stringify(verify)} for -verify: use integrity, quick or none`);
  }
  const overwrite = boolFlag(args, 'overwrite');
  const ifDbNotExists = boolFlag(args, 'if-db-not-exists');
  if (overwrite && ifDbNotExists) throw new UsageError('cannot combine -overwrite and -if-db-not-exists: choose one');
  const generation = stringFlag(args, 'generation');
  const outputFlag = stringFlag(args, 'output');
  if (outputFlag === '') throw new UsageError('output path required');
  const ifReplicaExists = boolFlag(args, 'if-replica-exists');
  const follow = boolFlag(args, 'follow');
  const followIntervalStr = stringFlag(args, 'follow-interval');
  let followIntervalMs: number | undefined;
  if (followIntervalStr !== undefined) {
    if (!follow) throw new UsageError('-follow-interval needs -f (follow)');
    try {
      followIntervalMs = parseGoDuration(followIntervalStr);
    } catch {
      throw new UsageError(`invalid value ${JSON.stringify(followIntervalStr)} for -follow-interval: use a duration such as 1s or 500ms`);
    }
    if (!(followIntervalMs > 0))
      throw new UsageError(`invalid value ${JSON.stringify(followIntervalStr)} for -follow-interval: it must be more than 0`);
  }
  if (follow) {
    for (const [flag, set] of [
      ['index', index !== undefined],
      ['timestamp', timestamp !== undefined],
      ['partial', boolFlag(args, 'partial')],
      ['if-db-not-exists', ifDbNotExists],
      ['generation', generation !== undefined],
    ] as const) {
      if (set) throw new UsageError(`cannot combine -f (follow) with -${flag}: a follower restores the latest state and keeps it current`);
    }
  }
  // With -if-replica-exists, a -replica naming no replica of the database, or a database
  // without replicas, is "no backup" (exit 0), as in Litestream; without it, the error says so.
  const target = await resolveTarget(inv, 'database path or replica URL required', {
    unknownReplica: ifReplicaExists ? 'empty' : 'error',
    allowDirectory: true,
  });
  if (target.directory) {
    for (const [flag, set] of [
      ['f (follow)', follow],
      ['index', index !== undefined],
      ['generation', generation !== undefined],
    ] as const) {
      if (set)
        throw new UsageError(
          `cannot combine a directory (${target.dbPath}) with -${flag}: it applies to one database; name one (e.g. ${target.dbPath}/<name>)`,
        );
    }
  }
  if (target.replicas.length === 0 && !ifReplicaExists) {
    throw new UsageError(`database ${target.dbPath} has no replicas in ${target.config?.file}: nothing to restore from`);
  }
  try {
    let outputPath: string;
    if (outputFlag !== undefined) outputPath = absPath(outputFlag, io.cwd);
    else if (target.dbPath) outputPath = target.dbPath;
    else throw new UsageError('output path required');
    // With --json, stdout carries only JSON lines: the log goes to stderr.
    const logger = commandLogger(inv, target.config, {
      debug: boolFlag(args, 'verbose'),
      warnings: target.warnings,
      ...(boolFlag(args, 'json') ? { stream: 'stderr' as const } : {}),
    });
    // Options of every restore (one database, or each of a directory).
    const perDatabase = {
      ...(timestamp !== undefined ? { timestamp } : {}),
      ...(parallelism !== undefined ? { parallelism } : {}),
      ...(overwrite ? { overwrite } : {}),
      ...(ifDbNotExists ? { ifDbNotExists } : {}),
      ...(ifReplicaExists ? { ifReplicaExists: true } : {}),
      ...(verify !== undefined ? { verify: verify as RestoreOptions['verify'] } : {}),
      ...(boolFlag(args, 'partial') ? { partial: true } : {}),
    };
    if (target.directory && target.replicas.length === 0) {
      // Only with -if-replica-exists (see above): no replica, no backup.
      logger.info('no matching backups found', { dir: target.dbPath });
      return 0;
    }
    if (target.directory) {
      const abort = new AbortController();
      const onSignal = (sig: NodeJS.Signals) => abort.abort(new CliError(`restore interrupted by ${sig}`));
      process.on('SIGINT', onSignal);
      process.on('SIGTERM', onSignal);
      try {
        return await restoreDirectory({
          dir: target.directory,
          replicas: target.replicas,
          outputDir: outputPath,
          logger,
          json: boolFlag(args, 'json') ? new JsonProgress(io.stdout) : undefined,
          signal: abort.signal,
          options: perDatabase,
        });
      } finally {
        process.off('SIGINT', onSignal);
        process.off('SIGTERM', onSignal);
      }
    }
    if (target.replicas.length === 0) {
      // Only with -if-replica-exists (see above), in Litestream's order: an existing output with
      // -if-db-not-exists is skipped first, otherwise there is no backup to restore.
      if (ifDbNotExists && (await pathExists(outputPath))) {
        logger.info('database already exists, skipping', { path: outputPath });
        return 0;
      }
      if (target.unknownReplica !== undefined) {
        logger.warn(`replica ${JSON.stringify(target.unknownReplica)} not found for database ${JSON.stringify(target.dbPath)}`, {
          replicas: target.db?.replicas.map((r) => r.name).join(','),
        });
      }
      logger.info('no matching backups found');
      return 0;
    }
    const progressFlag = args.flags['progress'];
    const json = boolFlag(args, 'json') ? new JsonProgress(io.stdout) : undefined;
    const onTerminal = Boolean((io.stderr as { isTTY?: boolean }).isTTY);
    const showProgress = progressFlag === undefined ? onTerminal && !json : progressFlag === true;
    const sinks: ProgressSink[] = [
      ...(json ? [json] : []),
      ...(showProgress ? [onTerminal ? new TerminalProgress(io.stderr) : new LineProgress(io.stderr)] : []),
    ];
    const progress: ProgressSink | undefined =
      sinks.length > 0
        ? {
            update: (p) => {
              for (const s of sinks) s.update(p);
            },
            finish: () => {
              for (const s of sinks) s.finish();
            },
          }
        : undefined;
    const options: RestoreOptions = {
      outputPath,
      replicas: target.replicas.map((r) => ({ name: r.name, client: r.client, ...(r.stages ? { stages: r.stages } : {}) })),
      logger,
      ...(generation !== undefined ? { generation } : {}),
      ...(index !== undefined ? { index } : {}),
      ...perDatabase,
      ...(progress ? { onProgress: (p: RestoreProgress) => progress.update(p) } : {}),
    };
    if (follow) {
      return await followCommand({
        outputPath,
        options,
        ...(followIntervalMs !== undefined ? { intervalMs: followIntervalMs } : {}),
        ...(json ? { json } : {}),
        ...(progress ? { progress } : {}),
      });
    }
    // Ctrl-C aborts cleanly: restore removes its temporary files, then we exit 130/143.
    const abort = new AbortController();
    let interrupted: NodeJS.Signals | undefined;
    const onSignal = (sig: NodeJS.Signals) => {
      if (interrupted) process.exit(sig === 'SIGINT' ? 130 : 143);
      interrupted = sig;
      abort.abort(new CliError(`restore interrupted by ${sig}`));
    };
    process.on('SIGINT', onSignal);
    process.on('SIGTERM', onSignal);
    try {
      // Core logs the outcome through `logger`: `database already exists, skipping`,
      // `no matching backups found`, `restore finished`, damage warnings.
      const result = await restore({ ...options, signal: abort.signal });
      json?.result(result);
    } catch (err) {
      if (interrupted) {
        progress?.finish();
        logger.error('restore interrupted; no output written', { signal: interrupted });
        return interrupted === 'SIGINT' ? 130 : 143;
      }
      if ((err as { code?: unknown }).code === 'WALSHIP_RESTORE_OUTPUT_EXISTS') {
        // Same error, in the command line's words.
        throw new CliError(
          `cannot restore, output path already exists: ${outputPath} (use --overwrite to replace it or -if-db-not-exists to skip)`,
          { cause: err },
        );
      }
      throw err;
    } finally {
      progress?.finish();
      process.off('SIGINT', onSignal);
      process.off('SIGTERM', onSignal);
    }
    return 0;
  } finally {
    await closeClients(target.replicas);
  }
}

/**
 * `restore -f`: restores, then follows the replica until SIGINT/SIGTERM (exit 0: the output is
 * consistent whenever the follower stops).
 */
async function followCommand(run: {
  outputPath: string;
  options: RestoreOptions;
  intervalMs?: number;
  json?: JsonProgress;
  progress?: ProgressSink;
}): Promise<number> {
  const { options, json, progress } = run;
  const logger = options.logger!;
  const follower = new Follower(run.outputPath, {
    replicas: options.replicas,
    logger,
    ...(options.overwrite ? { overwrite: true } : {}),
    ...(options.verify !== undefined ? { verify: options.verify } : {}),
    ...(options.parallelism !== undefined ? { parallelism: options.parallelism } : {}),
    ...(run.intervalMs !== undefined ? { intervalMs: run.intervalMs } : {}),
    ...(options.onProgress ? { onProgress: options.onProgress } : {}),
  });
  if (json) {
    follower.on('restored', (e) =>
      json.event('restored', {
        replica: e.replicaName,
        generation: e.generation,
        position: e.pos,
        reason: e.reason,
        durationMs: Math.round(e.durationMs),
      }),
    );
    follower.on('applied', (e) =>
      json.event('applied', { position: e.pos, commits: e.commits, pages: e.pages, durationMs: Math.round(e.durationMs) }),
    );
    follower.on('damage', (e) => json.event('damage', { ...e.damage, index: e.damage.index.toString(16).padStart(8, '0') }));
  }
  let stopping: NodeJS.Signals | undefined;
  let wake: () => void = () => {};
  const stopped = new Promise<void>((resolve) => (wake = resolve));
  const onSignal = (sig: NodeJS.Signals) => {
    if (stopping) process.exit(sig === 'SIGINT' ? 130 : 143);
    stopping = sig;
    wake();
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  try {
    const started = follower.start();
    // Follows until a signal; a signal during the initial restore stops it too (the restore
    // removes its temporary files, and start() then rejects: not an error here).
    const first = await Promise.race([started.then(() => 'started' as const), stopped.then(() => 'signal' as const)]);
    progress?.finish();
    if (first === 'started') await stopped;
    await follower.stop();
    await started.catch(() => {});
    const pos = follower.status().pos;
    logger.info('follow stopped', { signal: stopping, ...(pos ? { position: formatPos(pos) } : {}) });
    return 0;
  } catch (err) {
    const code = (err as { code?: unknown }).code;
    if (code === 'WALSHIP_RESTORE_NO_BACKUPS' && options.ifReplicaExists) {
      logger.info('no matching backups found');
      return 0;
    }
    if (code === 'WALSHIP_FOLLOW_OUTPUT_EXISTS')
      throw new CliError(`${(err as Error).message.replace('use overwrite', 'use --overwrite')}`, { cause: err });
    throw err;
  } finally {
    progress?.finish();
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  }
}

/** As Litestream's -if-db-not-exists: anything but "not found" counts as existing. */
async function pathExists(p: string): Promise<boolean> {
  try {
    await lstat(p);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code !== 'ENOENT';
  }
}
