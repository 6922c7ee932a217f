// What every command gets and shares: the invocation (flags, io), the config it names, the
// target database and replicas it resolves to, its logger. cli.ts dispatches to the commands;
// the commands import from here, never from cli.ts, so the dependency runs one way.
import { errorMessage } from '@walship/core';
import { boolFlag, type ParsedArgs, stringFlag } from './args.js';
import { type CliConfig, type DbSpec, type DirSpec, loadConfigFile, locateConfig, type ReplicaSpec, replicaFromUrl } from './config.js';
import { findTenant, tenantDb } from './directory.js';
import { UsageError } from './errors.js';
import { type CliLogger, createLogger } from './logger.js';
import { absPath, looksLikeUrl } from './paths.js';
import { BackendRegistry } from './registry.js';
import type { CommandSpec } from './usage.js';

/** Everything a command touches outside itself (replaceable for embedding). */
export interface CliIo {
  readonly stdout: NodeJS.WritableStream & { isTTY?: boolean };
  readonly stderr: NodeJS.WritableStream & { isTTY?: boolean };
  readonly env: Record<string, string | undefined>;
  readonly cwd: string;
  readonly registry: BackendRegistry;
}

export function defaultIo(): CliIo {
  return {
    stdout: process.stdout,
    stderr: process.stderr,
    env: process.env,
    cwd: process.cwd(),
    registry: new BackendRegistry(),
  };
}

/** A parsed invocation of one command. */
export interface Invocation {
  readonly spec: CommandSpec;
  readonly args: ParsedArgs;
  readonly io: CliIo;
}

/** Litestream copies LITESTREAM_ACCESS_KEY_ID/LITESTREAM_SECRET_ACCESS_KEY into AWS_* when those are unset. */
export function copyLitestreamCredentials(env: Record<string, string | undefined>): void {
  if (!env.AWS_ACCESS_KEY_ID && env.LITESTREAM_ACCESS_KEY_ID) env.AWS_ACCESS_KEY_ID = env.LITESTREAM_ACCESS_KEY_ID;
  if (!env.AWS_SECRET_ACCESS_KEY && env.LITESTREAM_SECRET_ACCESS_KEY) env.AWS_SECRET_ACCESS_KEY = env.LITESTREAM_SECRET_ACCESS_KEY;
}

/** Loads the config file chosen by `-config`/environment/defaults. */
export async function loadConfig(inv: Invocation): Promise<CliConfig> {
  const { io, args } = inv;
  const file = locateConfig(stringFlag(args, 'config'), io.env, io.cwd);
  return loadConfigFile(file, { registry: io.registry, env: io.env, cwd: io.cwd, expandEnv: !boolFlag(args, 'no-expand-env') });
}

/** A database and replicas chosen by a positional DB_PATH (config mode) or REPLICA_URL. */
export interface Target {
  readonly config: CliConfig | undefined;
  /** The config database (config mode) or an ad-hoc one (URL mode). */
  readonly db: DbSpec | undefined;
  readonly dbPath: string | undefined;
  readonly replicas: readonly ReplicaSpec[];
  readonly urlMode: boolean;
  /** Remarks for the command's log (e.g. an ignored `-replica` in URL mode). */
  readonly warnings: readonly string[];
  /**
   * `-replica NAME` named no replica of the database (config mode, only with
   * `unknownReplica: 'empty'`): `replicas` is then empty.
   */
  readonly unknownReplica?: string;
  /** DB_PATH named a directory entry's `dir` (only with `allowDirectory`): `db` is then undefined. */
  readonly directory?: DirSpec;
}

export interface ResolveTargetOptions {
  /**
   * What `-replica NAME` naming no replica of the config's database does: `error` (default,
   * `replica "x" not found for database "…"`) or `empty` (no replicas; `restore
   * -if-replica-exists` then finds no backup and exits 0, as Litestream does).
   */
  readonly unknownReplica?: 'error' | 'empty';
  /** DB_PATH may name a directory entry's `dir` (restore of every database in it). */
  readonly allowDirectory?: boolean;
}

/**
 * Resolves the single positional argument of restore/generations/snapshots/wal: a replica URL
 * (then `-config` is an error) or a database path looked up in the config file.
 * `-replica NAME` restricts the replicas of the config's database; with a URL it is ignored
 * with a warning, as Litestream ignores it (the URL is the one replica there is).
 */
export async function resolveTarget(inv: Invocation, missingMessage: string, options: ResolveTargetOptions = {}): Promise<Target> {
  const { args, io } = inv;
  if (args.positionals.length === 0) throw new UsageError(missingMessage);
  if (args.positionals.length > 1) throw new UsageError('too many arguments');
  const arg = args.positionals[0]!;
  const replicaName = stringFlag(args, 'replica');
  if (looksLikeUrl(arg)) {
    if (stringFlag(args, 'config') !== undefined) throw new UsageError('cannot specify a replica URL and the -config flag');
    const replica = await replicaFromUrl(arg, { registry: io.registry, env: io.env, cwd: io.cwd });
    const warnings: string[] = [];
    if (replicaName !== undefined && replicaName !== replica.name) {
      warnings.push(
        `-replica ${JSON.stringify(replicaName)} ignored: the replica URL ${JSON.stringify(arg)} is the only replica (named ${JSON.stringify(replica.name)}); drop -replica or use a config file`,
      );
    }
    return { config: undefined, db: undefined, dbPath: undefined, replicas: [replica], urlMode: true, warnings };
  }
  let config: CliConfig;
  try {
    config = await loadConfig(inv);
  } catch (err) {
    if (
      stringFlag(args, 'config') === undefined &&
      !io.env.WALSHIP_CONFIG &&
      !io.env.LITESTREAM_CONFIG &&
      /^config file not found/.test(errorMessage(err))
    ) {
      throw new UsageError(`${errorMessage(err)} (to read a replica directly, pass its URL, e.g. file:///backups/db)`);
    }
    throw err;
  }
  const dbPath = absPath(arg, io.cwd);
  const directory = config.dirs.find((d) => d.dir === dbPath);
  if (directory) {
    if (!options.allowDirectory)
      throw new UsageError(`${dbPath} is a directory entry in ${config.file}: name one of its databases (e.g. ${dbPath}/<name>)`);
    let replicas = directory.replicas;
    if (replicaName !== undefined) {
      replicas = replicas.filter((r) => r.name === replicaName);
      if (replicas.length === 0) {
        if (options.unknownReplica === 'empty')
          return { config, db: undefined, dbPath, replicas, urlMode: false, warnings: [], directory, unknownReplica: replicaName };
        throw new UsageError(`replica ${JSON.stringify(replicaName)} not found for directory ${JSON.stringify(dbPath)}`);
      }
    }
    return { config, db: undefined, dbPath, replicas, urlMode: false, warnings: [], directory };
  }
  // A database of a directory entry, as an entry of its own (its replicas under <replica>/<relative path>).
  const tenant = config.dbs.some((d) => d.path === dbPath) ? undefined : findTenant(config, dbPath);
  const db = config.dbs.find((d) => d.path === dbPath) ?? (tenant ? tenantDb(tenant.dir, tenant.relPath) : undefined);
  if (!db) throw new UsageError(`database not found in config: ${dbPath}`);
  let replicas = db.replicas;
  if (replicaName !== undefined) {
    replicas = replicas.filter((r) => r.name === replicaName);
    if (replicas.length === 0) {
      if (options.unknownReplica === 'empty')
        return { config, db, dbPath, replicas, urlMode: false, warnings: [], unknownReplica: replicaName };
      throw new UsageError(`replica ${JSON.stringify(replicaName)} not found for database ${JSON.stringify(dbPath)}`);
    }
  }
  return { config, db, dbPath, replicas, urlMode: false, warnings: [] };
}

/** Logger for commands other than replicate: config settings, but stderr unless configured otherwise. */
export function commandLogger(
  inv: Invocation,
  config: CliConfig | undefined,
  options: { stream?: 'stdout' | 'stderr'; debug?: boolean; warnings?: readonly string[] } = {},
): CliLogger {
  const logging = config?.logging;
  const stream = options.stream ?? (logging?.stderr ? 'stderr' : 'stdout');
  const logger = createLogger({
    level: options.debug ? 'DEBUG' : (logging?.level ?? 'INFO'),
    format: logging?.format ?? 'text',
    stream: stream === 'stderr' ? inv.io.stderr : inv.io.stdout,
  });
  for (const w of [...(config?.warnings ?? []), ...(options.warnings ?? [])]) logger.warn(w);
  return logger;
}

/** Closes every replica client (best effort). */
export async function closeClients(replicas: readonly ReplicaSpec[]): Promise<void> {
  await Promise.allSettled(replicas.map((r) => r.client.close?.()));
}
