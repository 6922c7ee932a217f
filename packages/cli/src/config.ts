import { readFileSync, statSync } from 'node:fs';
import { isAbsolute, relative } from 'node:path';
import type { ObjectStage, ReplicaClient } from '@walship/core';
import type { BackendContext, ReplicaBackend } from '@walship/core/backend';
import {
  ageStage,
  compilePattern,
  ConfigError,
  errorMessage,
  isWalshipError,
  lz4Stage,
  OPTION_DEFAULTS,
  parseAgeIdentity,
  parseAgeRecipient,
  parseGoDuration,
} from '@walship/core';
import { findTenant } from './directory.js';
import { ConfigErrors } from './errors.js';
import { expandEnv } from './expand-env.js';
import { parseLogLevel, type LogFormat, type LogLevel } from './logger.js';
import { absPath, looksLikeUrl } from './paths.js';
import { type BackendRegistry, LITESTREAM_BACKEND_KEYS } from './registry.js';
import { didYouMean, Locator, parseYamlTree, type YMap, type YNode } from './yaml-tree.js';

/** Litestream v0.3 defaults, in milliseconds: core's, which `Replicator` applies too. */
export const DEFAULTS = { ...OPTION_DEFAULTS, shutdownSyncTimeoutMs: OPTION_DEFAULTS.stopTimeoutMs } as const;

/** Config file names tried, in order, when neither `-config` nor an environment variable names one. */
export const DEFAULT_CONFIG_PATHS = ['/etc/walship.yml', '/etc/litestream.yml'] as const;

const TOP_LEVEL_KEYS = ['dbs', 'addr', 'exec', 'access-key-id', 'secret-access-key', 'logging', 'shutdown-sync-timeout'] as const;
const LOGGING_KEYS = ['level', 'type', 'stderr'] as const;
const DB_KEYS = [
  'path',
  'dir',
  'pattern',
  'recursive',
  'watch',
  'meta-path',
  'monitor-interval',
  'checkpoint-interval',
  'min-checkpoint-page-count',
  'max-checkpoint-page-count',
  'truncate-page-count',
  'truncate-page-n',
  'busy-timeout',
  'replicas',
  'replica',
] as const;
/** Keys of directory entries only (Litestream v0.5's `dir:` replication). */
const DIR_ONLY_KEYS = ['pattern', 'recursive', 'watch'] as const;
/** Replica keys every type accepts (handled by the CLI/engine, not the backend). */
const COMMON_REPLICA_KEYS = [
  'type',
  'name',
  'url',
  'path',
  'retention',
  'retention-check-interval',
  'snapshot-interval',
  'validation-interval',
  'sync-interval',
  'age',
  'lease-ttl',
  'takeover',
] as const;
const STRING_REPLICA_KEYS = new Set([
  'type',
  'name',
  'url',
  'path',
  'access-key-id',
  'secret-access-key',
  'region',
  'bucket',
  'endpoint',
  'account-name',
  'account-key',
  'host',
  'user',
  'password',
  'key-path',
]);
const BOOL_REPLICA_KEYS = new Set(['force-path-style', 'skip-verify', 'takeover']);
/** URL parts that may not also be given as keys (Litestream: `cannot specify url & path for s3 replica`). */
const URL_CONFLICT_KEYS = ['path', 'bucket', 'host'] as const;

/** One replica, validated, with its client built (no I/O done yet). */
export interface ReplicaSpec {
  readonly name: string;
  readonly type: string;
  /** Backend config: URL-derived keys merged with explicit keys (explicit win) and global credentials. */
  readonly config: Readonly<Record<string, unknown>>;
  readonly backend: ReplicaBackend;
  readonly client: ReplicaClient;
  readonly syncIntervalMs: number;
  readonly retentionMs: number;
  readonly retentionCheckIntervalMs: number;
  readonly snapshotIntervalMs: number;
  readonly validationIntervalMs: number;
  /** `lease-ttl` (walship's own; undefined: the default, 1m; 0: no lease). */
  readonly leaseTtlMs: number | undefined;
  /** `takeover` (walship's own): take over another walship's live lease. */
  readonly takeover: boolean;
  /** `file:line: key path` of the replica, for messages. */
  readonly where: string;
  /** Object stages when not the default LZ4 alone: `[lz4Stage, ageStage(…)]` with an `age:` block. */
  readonly stages?: readonly ObjectStage[];
  /** `age:` (encryption), as key counts (the keys themselves stay in `stages`). */
  readonly age?: { readonly identities: number; readonly recipients: number };
}

export interface DbSpec {
  /** Absolute database path. */
  readonly path: string;
  readonly metaPath: string | undefined;
  readonly monitorIntervalMs: number;
  readonly checkpointIntervalMs: number;
  readonly minCheckpointPageCount: number;
  readonly maxCheckpointPageCount: number;
  readonly truncatePageCount: number | undefined;
  readonly busyTimeoutMs: number | undefined;
  readonly replicas: readonly ReplicaSpec[];
  readonly where: string;
}

/**
 * A directory entry (`dir:` instead of `path:`): every database in `dir` whose file name
 * matches `pattern` is replicated with the entry's settings, each to its replicas' paths with
 * the database's path relative to `dir` appended (cli/src/directory.ts).
 */
export interface DirSpec extends Omit<DbSpec, 'path' | 'metaPath'> {
  /** Absolute directory path. */
  readonly dir: string;
  readonly pattern: string;
  readonly recursive: boolean;
  readonly watch: boolean;
}

export interface LoggingSpec {
  readonly level: LogLevel;
  readonly format: LogFormat;
  readonly stderr: boolean;
}

/** A fully validated configuration (from a file or from command-line URLs). */
export interface CliConfig {
  /** Absolute config file path; undefined in ad-hoc (URL) mode. */
  readonly file: string | undefined;
  readonly addr: string | undefined;
  readonly exec: string | undefined;
  readonly shutdownSyncTimeoutMs: number;
  readonly logging: LoggingSpec;
  readonly dbs: readonly DbSpec[];
  /** Directory entries (`dir:`). */
  readonly dirs: readonly DirSpec[];
  /** Non-fatal remarks to log once a logger exists. */
  readonly warnings: readonly string[];
}

export interface ConfigOptions {
  readonly registry: BackendRegistry;
  readonly env: Readonly<Record<string, string | undefined>>;
  readonly cwd: string;
  /** Default true; `-no-expand-env` turns it off. */
  readonly expandEnv?: boolean;
}

/**
 * Chooses the config file: `-config`, then `WALSHIP_CONFIG`, then `LITESTREAM_CONFIG`, then the
 * first of /etc/walship.yml and /etc/litestream.yml that exists.
 * @throws ConfigError `config file not found: <path>`
 */
export function locateConfig(flagPath: string | undefined, env: ConfigOptions['env'], cwd: string): string {
  const explicit = flagPath || env.WALSHIP_CONFIG || env.LITESTREAM_CONFIG;
  if (explicit) {
    const p = absPath(explicit, cwd);
    if (!isFile(p)) throw new ConfigError(`config file not found: ${p}`);
    return p;
  }
  for (const p of DEFAULT_CONFIG_PATHS) if (isFile(p)) return p;
  throw new ConfigError(`config file not found: tried ${DEFAULT_CONFIG_PATHS.join(' and ')}; pass -config FILE or set WALSHIP_CONFIG`);
}

function isFile(p: string): boolean {
  try {
    return statSync(p).isFile();
  } catch {
    return false;
  }
}

/**
 * Reads, expands (`$VAR`/`${VAR}` unless `expandEnv` is false) and validates a config file.
 * Every problem is a ConfigError `<file>:<line>: <key path>: <message>`; when the file has
 * several, they are all reported at once as a {@link ConfigErrors} (one line each).
 */
export async function loadConfigFile(file: string, options: ConfigOptions): Promise<CliConfig> {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new ConfigError(`cannot read config file ${file}: ${errorMessage(err)}`);
  }
  return parseConfigText(text, file, options);
}

/** Validates config text as if read from `file` (see loadConfigFile). */
export async function parseConfigText(text: string, file: string, options: ConfigOptions): Promise<CliConfig> {
  const expanded = options.expandEnv === false ? text : expandEnv(text, options.env);
  // A YAML syntax error, or a file that is not a mapping, stops at once; every other problem is
  // collected, so that one run reports all of them.
  const root = parseYamlTree(expanded, file);
  const loc = new Locator(file);
  const warnings: string[] = [];
  const problems = new Problems();
  const top = root === undefined ? undefined : asMap(loc, root, 'the top level of the config');
  if (top) checkKeys(loc, top, TOP_LEVEL_KEYS, 'top-level key', problems);

  const addr = problems.try(() => optString(loc, top, 'addr'));
  if (addr) problems.try(() => validateAddr(loc, top!.entries.get('addr')!.node, addr));
  const exec = problems.try(() => optString(loc, top, 'exec'));
  const accessKeyId = problems.try(() => optString(loc, top, 'access-key-id'));
  const secretAccessKey = problems.try(() => optString(loc, top, 'secret-access-key'));
  const shutdownSyncTimeoutMs =
    problems.try(() => optDuration(loc, top, 'shutdown-sync-timeout', warnings)) ?? DEFAULTS.shutdownSyncTimeoutMs;

  let logging: LoggingSpec = { level: 'INFO', format: 'text', stderr: false };
  const logNode = top?.entries.get('logging')?.node;
  const lm = logNode && !isNull(logNode) ? problems.try(() => asMap(loc, logNode, 'logging')) : undefined;
  if (lm) {
    checkKeys(loc, lm, LOGGING_KEYS, 'logging key', problems);
    const levelStr = problems.try(() => optString(loc, lm, 'level'));
    let level: LogLevel = 'INFO';
    if (levelStr) {
      const parsed = parseLogLevel(levelStr);
      if (parsed) level = parsed;
      else
        warnings.push(
          `${loc.where('logging.level', lm.entries.get('level')!.node.line)}: unknown level ${JSON.stringify(levelStr)}, using INFO (use DEBUG, INFO, WARN or ERROR)`,
        );
    }
    const typeStr = problems.try(() => optString(loc, lm, 'type'));
    if (typeStr && typeStr !== 'text' && typeStr !== 'json') {
      problems.add(loc.error(lm.entries.get('type')!.node, `unknown log type ${JSON.stringify(typeStr)}: use text or json`));
    }
    logging = { level, format: typeStr === 'json' ? 'json' : 'text', stderr: problems.try(() => optBool(loc, lm, 'stderr')) ?? false };
  }

  const pc: ParseContext = {
    loc,
    options,
    context: backendContext(options.env, warnings),
    globals: { accessKeyId, secretAccessKey },
    warnings,
    problems,
  };
  const dbs: DbSpec[] = [];
  const dirs: DirSpec[] = [];
  const dbsNode = top?.entries.get('dbs')?.node;
  if (dbsNode && !isNull(dbsNode)) {
    if (dbsNode.kind !== 'seq')
      problems.add(loc.error(dbsNode, 'dbs must be a list of databases (each item starting with "- path:" or "- dir:")'));
    else {
      for (const item of dbsNode.items) {
        const db = await parseDb(pc, item);
        if (!db) continue;
        if ('dir' in db) {
          const dup = dirs.find((d) => d.dir === db.dir);
          if (dup) problems.add(loc.error(item, `duplicate directory ${db.dir} (also at ${dup.where}): list each directory once`));
          else dirs.push(db);
          continue;
        }
        const dup = dbs.find((d) => d.path === db.path);
        if (dup) problems.add(loc.error(item, `duplicate database path ${db.path} (also at ${dup.where}): list each database once`));
        else dbs.push(db);
      }
    }
  }
  // Two entries covering one database would run two replicators on it.
  for (const d of dirs) {
    for (const db of dbs) {
      if (findTenant({ dirs: [d] }, db.path))
        problems.add(
          new ConfigError(`${db.where}: database ${db.path} is also covered by the dir entry at ${d.where}: remove it from one of them`),
        );
    }
    for (const other of dirs) {
      if (other === d) continue;
      const rel = relative(d.dir, other.dir);
      if (rel !== '' && !rel.startsWith('..') && !isAbsolute(rel) && d.recursive) {
        problems.add(
          new ConfigError(
            `${other.where}: directory ${other.dir} is inside the recursive dir entry at ${d.where}: remove one, or make the outer one non-recursive`,
          ),
        );
      }
    }
  }
  problems.throwIfAny();
  return { file, addr, exec, shutdownSyncTimeoutMs, logging, dbs, dirs, warnings };
}

/** The config problems found so far (each a ConfigError naming file, line and key). */
class Problems {
  readonly #list: ConfigError[] = [];

  get count(): number {
    return this.#list.length;
  }

  add(err: ConfigError): void {
    this.#list.push(err);
  }

  /** Runs `fn`; a ConfigError it throws is recorded and `undefined` returned instead. */
  try<T>(fn: () => T): T | undefined {
    try {
      return fn();
    } catch (err) {
      if (!isWalshipError(err, 'WALSHIP_CONFIG')) throw err;
      this.#list.push(err);
      return undefined;
    }
  }

  /** Throws the only problem as it is, or several as one {@link ConfigErrors} in line order. */
  throwIfAny(): void {
    if (this.#list.length === 1) throw this.#list[0]!;
    if (this.#list.length > 1) {
      const line = (e: ConfigError) => Number(/^.*?:(\d+): /.exec(e.message)?.[1] ?? Infinity);
      throw new ConfigErrors([...this.#list].sort((a, b) => line(a) - line(b)));
    }
  }
}

/** Thrown by a replica's key check when its problems are already recorded (nothing more to add). */
class AlreadyReported extends Error {}

/**
 * Builds the configuration of ad-hoc mode (`walship replicate DB URL…`): one database with one
 * replica per URL, all with default settings. A plain path is a file replica.
 */
export async function adHocConfig(dbPath: string, urls: readonly string[], options: ConfigOptions): Promise<CliConfig> {
  const warnings: string[] = [];
  const context = backendContext(options.env, warnings);
  const path = absPath(dbPath, options.cwd);
  const replicas: ReplicaSpec[] = [];
  for (const url of urls) {
    let r = await replicaFromUrl(url, options, context);
    // URLs cannot carry names: the second replica of a type is "<type>-2", and so on.
    for (let n = 2; replicas.some((x) => x.name === r.name); n++) r = { ...r, name: `${r.type}-${n}` };
    replicas.push(r);
  }
  return {
    file: undefined,
    addr: undefined,
    exec: undefined,
    shutdownSyncTimeoutMs: DEFAULTS.shutdownSyncTimeoutMs,
    logging: { level: 'INFO', format: 'text', stderr: false },
    dbs: [dbWithDefaults(path, replicas, `database ${path}`)],
    dirs: [],
    warnings,
  };
}

/**
 * One replica from a command-line URL (`s3://bkt/db`, `file:///backups/db`, or a plain path),
 * with default settings and the name of its type.
 * @throws ConfigError `replica URL "<url>": <problem>`
 */
export async function replicaFromUrl(url: string, options: ConfigOptions, context?: BackendContext): Promise<ReplicaSpec> {
  const where = `replica URL ${JSON.stringify(url)}`;
  const raw: Record<string, unknown> = looksLikeUrl(url) ? { url } : { path: url };
  try {
    return await resolveReplica(raw, { where, options, context: context ?? backendContext(options.env, []) });
  } catch (err) {
    if (isWalshipError(err, 'WALSHIP_CONFIG') && !err.message.startsWith(where)) throw new ConfigError(`${where}: ${err.message}`);
    throw err;
  }
}

function backendContext(env: ConfigOptions['env'], warnings: string[]): BackendContext {
  return { env, warn: (message: string) => warnings.push(message) };
}

function dbWithDefaults(path: string, replicas: ReplicaSpec[], where: string): DbSpec {
  return {
    path,
    metaPath: undefined,
    monitorIntervalMs: DEFAULTS.monitorIntervalMs,
    checkpointIntervalMs: DEFAULTS.checkpointIntervalMs,
    minCheckpointPageCount: DEFAULTS.minCheckpointPageCount,
    maxCheckpointPageCount: DEFAULTS.maxCheckpointPageCount,
    truncatePageCount: undefined,
    busyTimeoutMs: undefined,
    replicas,
    where,
  };
}

/** What parsing one database or replica entry needs. */
interface ParseContext {
  readonly loc: Locator;
  readonly options: ConfigOptions;
  readonly context: BackendContext;
  readonly globals: { accessKeyId: string | undefined; secretAccessKey: string | undefined };
  readonly warnings: string[];
  readonly problems: Problems;
}

/**
 * One database entry (`path:`) or directory entry (`dir:`); undefined when it has problems
 * (recorded in `pc.problems`).
 */
async function parseDb(pc: ParseContext, node: YNode): Promise<DbSpec | DirSpec | undefined> {
  const { loc, options, warnings, problems } = pc;
  const m = problems.try(() => asMap(loc, node, 'a database entry'));
  if (!m) return undefined;
  const before = problems.count;
  checkKeys(loc, m, DB_KEYS, 'database key', problems);
  const beforePath = problems.count;
  const rawPath = problems.try(() => optString(loc, m, 'path'));
  const rawDir = problems.try(() => optString(loc, m, 'dir'));
  if (rawPath && rawDir)
    problems.add(
      loc.error(
        m.entries.get('dir')!.node,
        'a database entry takes either path (one database) or dir (every database in a directory), not both',
      ),
    );
  else if (!rawPath && !rawDir && problems.count === beforePath) {
    problems.add(
      loc.error(m, 'database path required: add "path: /path/to/db.sqlite" (or "dir: /path/to/dbs" with a pattern) to this entry'),
    );
  }
  const path = rawPath ? absPath(rawPath, options.cwd) : undefined;
  const dir = rawDir && !rawPath ? absPath(rawDir, options.cwd) : undefined;
  let pattern: string | undefined;
  let recursive = false;
  let watch = false;
  if (dir !== undefined) {
    pattern = problems.try(() => optString(loc, m, 'pattern'));
    const patternNode = m.entries.get('pattern')?.node;
    if (pattern === undefined || pattern.trim() === '') {
      if (!patternNode || isNull(patternNode) || pattern !== undefined)
        problems.add(
          loc.error(
            patternNode && !isNull(patternNode) ? patternNode : m,
            'pattern required for dir: add a glob on file names, e.g. pattern: "*.db"',
          ),
        );
    } else {
      const node = m.entries.get('pattern')!.node;
      problems.try(() => {
        try {
          compilePattern(pattern);
        } catch (err) {
          throw loc.error(node, errorMessage(err));
        }
      });
    }
    recursive = problems.try(() => optBool(loc, m, 'recursive')) ?? false;
    watch = problems.try(() => optBool(loc, m, 'watch')) ?? false;
    if (m.entries.has('meta-path'))
      problems.add(
        loc.error(
          m.entries.get('meta-path')!.node,
          'meta-path does not apply to dir entries: each database found keeps its state beside itself (.<name>-walship)',
        ),
      );
  } else if (!rawDir) {
    for (const key of DIR_ONLY_KEYS) {
      if (m.entries.has(key))
        problems.add(
          loc.error(
            m.entries.get(key)!.node,
            `${key} applies only to dir entries (replace path with dir to replicate every matching database in a directory)`,
          ),
        );
    }
  }
  const where = loc.where(m.path, m.line);
  const metaPathStr = problems.try(() => optString(loc, m, 'meta-path'));
  if (m.entries.has('truncate-page-count') && m.entries.has('truncate-page-n')) {
    problems.add(
      loc.error(m.entries.get('truncate-page-n')!.node, 'truncate-page-n is another name for truncate-page-count: keep only one'),
    );
  }
  const minPages = problems.try(() => optInt(loc, m, 'min-checkpoint-page-count') ?? DEFAULTS.minCheckpointPageCount);
  const maxPages = problems.try(() => optInt(loc, m, 'max-checkpoint-page-count') ?? DEFAULTS.maxCheckpointPageCount);
  if (minPages !== undefined && maxPages !== undefined && minPages > maxPages && m.entries.has('max-checkpoint-page-count')) {
    problems.add(
      loc.error(
        m.entries.get('max-checkpoint-page-count')!.node,
        `max-checkpoint-page-count (${maxPages}) must not be below min-checkpoint-page-count (${minPages})`,
      ),
    );
  }
  const monitorIntervalMs = problems.try(() => optDuration(loc, m, 'monitor-interval', warnings, true));
  const checkpointIntervalMs = problems.try(() => optDuration(loc, m, 'checkpoint-interval', warnings));
  const truncatePageCount = problems.try(() => optInt(loc, m, 'truncate-page-count') ?? optInt(loc, m, 'truncate-page-n'));
  const busyTimeoutMs = problems.try(() => optDuration(loc, m, 'busy-timeout', warnings));
  const replicas: ReplicaSpec[] = [];
  const repNode = m.entries.get('replicas')?.node;
  // Litestream v0.5 spells a single replica `replica:` (a mapping).
  const oneNode = m.entries.get('replica')?.node;
  if (repNode && oneNode && !isNull(repNode) && !isNull(oneNode))
    problems.add(loc.error(oneNode, 'use either replica (one replica) or replicas (a list), not both'));
  const items =
    repNode && !isNull(repNode) ? (repNode.kind === 'seq' ? repNode.items : undefined) : oneNode && !isNull(oneNode) ? [oneNode] : [];
  if (items === undefined) problems.add(loc.error(repNode!, 'replicas must be a list (each item starting with "- url:" or "- type:")'));
  else {
    for (const item of items) {
      const r = await parseReplica(pc, item);
      if (!r) continue;
      const dup = replicas.find((x) => x.name === r.name);
      if (dup) {
        problems.add(
          loc.error(
            item,
            `duplicate replica name ${JSON.stringify(r.name)} for db ${path ?? where}: give each replica a unique name: key (e.g. "name: ${r.name}-2")`,
          ),
        );
      } else replicas.push(r);
    }
  }
  if (problems.count > before || (path === undefined && dir === undefined)) return undefined;
  if (replicas.length === 0)
    warnings.push(`${where}: ${dir !== undefined ? `directory ${dir}` : `database ${path}`} has no replicas; nothing will be replicated`);
  const settings = {
    monitorIntervalMs: monitorIntervalMs ?? DEFAULTS.monitorIntervalMs,
    checkpointIntervalMs: checkpointIntervalMs ?? DEFAULTS.checkpointIntervalMs,
    minCheckpointPageCount: minPages ?? DEFAULTS.minCheckpointPageCount,
    maxCheckpointPageCount: maxPages ?? DEFAULTS.maxCheckpointPageCount,
    truncatePageCount,
    busyTimeoutMs,
    replicas,
    where,
  };
  if (dir !== undefined) return { dir, pattern: pattern!, recursive, watch, ...settings };
  return { path: path!, metaPath: metaPathStr ? absPath(metaPathStr, options.cwd) : undefined, ...settings };
}

/**
 * One replica entry; undefined when it has problems (recorded in `pc.problems`). Every key's
 * problem is recorded; the backend's own checks (`bucket required …`) run only when the keys
 * themselves are fine, since a misspelt key would make them report a consequence.
 */
async function parseReplica(pc: ParseContext, node: YNode): Promise<ReplicaSpec | undefined> {
  const { loc, options, context, globals, warnings, problems } = pc;
  const m = problems.try(() => asMap(loc, node, 'a replica entry'));
  if (!m) return undefined;
  const before = problems.count;
  const raw: Record<string, unknown> = {};
  for (const [key, entry] of m.entries) {
    if (isNull(entry.node)) continue;
    if (STRING_REPLICA_KEYS.has(key)) raw[key] = problems.try(() => optString(loc, m, key));
    else if (BOOL_REPLICA_KEYS.has(key)) raw[key] = problems.try(() => optBool(loc, m, key));
    else if (key !== 'age') raw[key] = toPlain(entry.node);
  }
  const ageNode = m.entries.get('age')?.node;
  const age = ageNode && !isNull(ageNode) ? parseAge(loc, ageNode, options.cwd, problems) : undefined;
  const durations: Record<string, number | undefined> = {};
  for (const key of ['sync-interval', 'retention', 'retention-check-interval', 'snapshot-interval', 'validation-interval', 'lease-ttl']) {
    durations[key] = problems.try(() => optDuration(loc, m, key, warnings, key === 'sync-interval'));
  }
  const leaseTtl = durations['lease-ttl'];
  if (leaseTtl !== undefined && leaseTtl !== 0 && leaseTtl < 1000) {
    problems.add(loc.error(m.entries.get('lease-ttl')!.node, `lease-ttl must be at least 1s, or 0 to turn the lease off`));
  }
  const where = loc.where(m.path, m.line);
  try {
    const spec = await resolveReplica(raw, {
      where,
      options,
      context,
      globals,
      durations,
      checkKey: (key, allowed, type) => {
        if (allowed.has(key)) return;
        const entry = m.entries.get(key)!;
        const elsewhere = Object.entries(LITESTREAM_BACKEND_KEYS)
          .filter(([, keys]) => keys.includes(key))
          .map(([t]) => t);
        if (elsewhere.length > 0) {
          warnings.push(
            `${loc.where(entry.node.path, entry.keyLine)}: key ${JSON.stringify(key)} does not apply to ${type} replicas (only ${elsewhere.join(', ')}); ignored`,
          );
          return;
        }
        problems.add(unknownKey(loc, m.path, key, entry.keyLine, allowed, 'replica key'));
      },
      keysChecked: () => {
        if (problems.count > before) throw new AlreadyReported();
      },
    });
    return age ? { ...spec, stages: [lz4Stage, age.stage], age: { identities: age.identities, recipients: age.recipients } } : spec;
  } catch (err) {
    if (err instanceof AlreadyReported) return undefined;
    if (isWalshipError(err, 'WALSHIP_CONFIG')) {
      problems.add(err.message.startsWith(loc.file) ? err : loc.error(m, err.message));
      return undefined;
    }
    throw err;
  }
}

interface ResolveContext {
  readonly where: string;
  readonly options: ConfigOptions;
  readonly context: BackendContext;
  readonly globals?: { accessKeyId: string | undefined; secretAccessKey: string | undefined };
  readonly durations?: Record<string, number | undefined>;
  /** Called for each explicit key with the set of keys the type accepts. */
  readonly checkKey?: (key: string, allowed: ReadonlySet<string>, type: string) => void;
  /** Called once every key went through `checkKey`, before the backend's own checks. */
  readonly keysChecked?: () => void;
}

/**
 * Turns explicit replica keys into a ReplicaSpec: type from the URL scheme (else `type`, else
 * `file`), URL keys merged under explicit keys, Litestream's conflict and path checks, global
 * credentials, then `backend.createClient`.
 */
async function resolveReplica(raw: Record<string, unknown>, rc: ResolveContext): Promise<ReplicaSpec> {
  const { registry } = rc.options;
  const url = typeof raw.url === 'string' && raw.url !== '' ? raw.url : undefined;
  const explicitPath = typeof raw.path === 'string' ? raw.path : undefined;
  if (explicitPath && looksLikeUrl(explicitPath)) {
    throw new ConfigError(`replica path cannot be a url, please use the 'url' field instead: ${explicitPath}`);
  }
  const explicitType = typeof raw.type === 'string' && raw.type !== '' ? raw.type : undefined;
  let type = explicitType ?? 'file';
  let urlKeys: Record<string, unknown> = {};
  let schemeless = false;
  if (url) {
    const m = /^([A-Za-z][A-Za-z0-9+.-]*):\/\//.exec(url);
    if (m) {
      const scheme = m[1]!.toLowerCase();
      const t = registry.typeForScheme(scheme);
      if (!t) throw new ConfigError(`unknown replica type in config: ${JSON.stringify(scheme)} (use one of ${registry.types.join(', ')})`);
      type = t;
    } else {
      schemeless = true;
      if (type !== 'file') throw new ConfigError(`invalid replica url ${JSON.stringify(url)}: expected ${type}://…`);
    }
  }
  if (!registry.isKnownType(type)) {
    throw new ConfigError(`unknown replica type in config: ${JSON.stringify(type)} (use one of ${registry.types.join(', ')})`);
  }
  const backend = await registry.load(type);
  const allowed = new Set<string>([...COMMON_REPLICA_KEYS, ...backend.configKeys]);
  for (const key of Object.keys(raw)) {
    if (rc.checkKey) rc.checkKey(key, allowed, type);
  }
  rc.keysChecked?.();
  if (url) {
    urlKeys = schemeless ? { path: url } : { ...backendCall(() => backend.parseUrl(url)) };
    for (const key of URL_CONFLICT_KEYS) {
      if (allowed.has(key) && raw[key] !== undefined && raw[key] !== '')
        throw new ConfigError(`cannot specify url & ${key} for ${type} replica`);
    }
  }
  const config: Record<string, unknown> = { ...urlKeys };
  for (const [k, v] of Object.entries(raw)) {
    if (v === undefined) continue;
    if (!allowed.has(k)) continue;
    config[k] = v;
  }
  // Litestream: a URL can switch path-style addressing on, never off.
  if (urlKeys['force-path-style'] === true) config['force-path-style'] = true;
  config.type = type;
  if (type === 'file' && typeof config.path === 'string' && config.path !== '') {
    config.path = absPath(config.path, rc.options.cwd);
  }
  if (rc.globals) {
    if (rc.globals.accessKeyId && config['access-key-id'] === undefined && allowed.has('access-key-id')) {
      config['access-key-id'] = rc.globals.accessKeyId;
    }
    if (rc.globals.secretAccessKey && config['secret-access-key'] === undefined && allowed.has('secret-access-key')) {
      config['secret-access-key'] = rc.globals.secretAccessKey;
    }
  }
  const name = typeof raw.name === 'string' && raw.name !== '' ? raw.name : type;
  const client = backendCall(() => backend.createClient(config, rc.context));
  const d = rc.durations ?? {};
  return {
    name,
    type,
    config,
    backend,
    client,
    syncIntervalMs: d['sync-interval'] ?? DEFAULTS.syncIntervalMs,
    retentionMs: d['retention'] ?? DEFAULTS.retentionMs,
    retentionCheckIntervalMs: d['retention-check-interval'] ?? DEFAULTS.retentionCheckIntervalMs,
    snapshotIntervalMs: d['snapshot-interval'] ?? DEFAULTS.snapshotIntervalMs,
    validationIntervalMs: d['validation-interval'] ?? DEFAULTS.validationIntervalMs,
    leaseTtlMs: d['lease-ttl'],
    takeover: raw['takeover'] === true,
    where: rc.where,
  };
}

const AGE_KEYS = ['identities', 'recipients'] as const;

/**
 * A replica's `age:` block, as Litestream v0.3 reads it: `identities` (to read) and
 * `recipients` (to write), each a list of strings holding one key or the text of a key file
 * (one key per line, blank lines and `#` comments ignored). walship also takes an entry that is
 * a path (`/…`, `./…`, `../…`) to such a file. Problems are recorded in `problems`, naming the
 * config file and line of the key (or the key file and its line); undefined then.
 */
function parseAge(
  loc: Locator,
  node: YNode,
  cwd: string,
  problems: Problems,
): { stage: ObjectStage; identities: number; recipients: number } | undefined {
  const m = problems.try(() => asMap(loc, node, 'age (identities: and recipients: lists)'));
  if (!m) return undefined;
  const before = problems.count;
  checkKeys(loc, m, AGE_KEYS, 'age key', problems);
  const texts: Record<'identities' | 'recipients', string[]> = { identities: [], recipients: [] };
  let keys = { identities: 0, recipients: 0 };
  for (const field of AGE_KEYS) {
    const list = m.entries.get(field)?.node;
    if (!list || isNull(list)) continue;
    if (list.kind !== 'seq') {
      problems.add(
        loc.error(
          list,
          `age.${field} must be a list of ${field === 'identities' ? 'AGE-SECRET-KEY-1… identities' : 'age1… recipients'} (each item starting with "- ")`,
        ),
      );
      continue;
    }
    const parse = field === 'identities' ? parseAgeIdentity : parseAgeRecipient;
    for (const item of list.items) {
      const value = item.kind === 'scalar' ? scalarText(item) : undefined;
      if (value === undefined) {
        problems.add(
          loc.error(
            item,
            `expected a string: one ${field === 'identities' ? 'identity' : 'recipient'}, the text of a key file, or a key file's path`,
          ),
        );
        continue;
      }
      // A key file named by its path (walship's own; Litestream takes key text only).
      let text = value;
      let file: string | undefined;
      const trimmed = value.trim();
      if (!trimmed.includes('\n') && /^(\/|\.\.?\/)/.test(trimmed)) {
        file = absPath(trimmed, cwd);
        try {
          text = readFileSync(file, 'utf8');
        } catch (err) {
          problems.add(
            loc.error(item, `cannot read ${field === 'identities' ? 'identity' : 'recipients'} file ${file}: ${errorMessage(err)}`),
          );
          continue;
        }
      }
      let found = 0;
      const lines = text.split('\n');
      for (let i = 0; i < lines.length; i++) {
        const line = lines[i]!.trim();
        if (line === '' || line.startsWith('#')) continue;
        try {
          parse(line);
          found++;
        } catch (err) {
          // The file and line of the bad key: the key file's, or the config's own.
          const at = file
            ? `${loc.where(item.path, item.line)}: ${file}:${i + 1}`
            : loc.where(item.path, item.line === undefined ? undefined : item.line + i + (item.kind === 'scalar' && item.block ? 1 : 0));
          problems.add(new ConfigError(`${at}: ${errorMessage(err)}`));
          found = -1;
          break;
        }
      }
      if (found === 0) {
        const what =
          field === 'identities' ? 'no secret keys found (expected AGE-SECRET-KEY-1… lines)' : 'no recipients found (expected age1… lines)';
        problems.add(loc.error(item, file ? `${file}: ${what}` : what));
      }
      if (found > 0) {
        texts[field].push(text);
        keys = { ...keys, [field]: keys[field] + found };
      }
    }
  }
  if (problems.count > before) return undefined;
  if (keys.identities === 0 && keys.recipients === 0) {
    problems.add(
      loc.error(m, 'age needs keys: add recipients (age1…, to write encrypted objects) and identities (AGE-SECRET-KEY-1…, to read them)'),
    );
    return undefined;
  }
  return { stage: ageStage(texts), identities: keys.identities, recipients: keys.recipients };
}

/** Runs a backend hook, turning any failure into a one-line ConfigError. */
function backendCall<T>(fn: () => T): T {
  try {
    return fn();
  } catch (err) {
    if (isWalshipError(err, 'WALSHIP_CONFIG')) throw err;
    throw new ConfigError(errorMessage(err), { cause: err });
  }
}

// ---------------------------------------------------------------------------------------------
// Typed accessors over the located YAML tree.

function isNull(node: YNode): boolean {
  return node.kind === 'scalar' && (node.value === null || node.value === undefined);
}

function asMap(loc: Locator, node: YNode, what: string): YMap {
  if (node.kind !== 'map') throw loc.error(node, `expected key: value pairs for ${what}`);
  return node;
}

function unknownKey(
  loc: Locator,
  parentPath: string,
  key: string,
  line: number | undefined,
  allowed: Iterable<string>,
  what: string,
): ConfigError {
  const suggestion = didYouMean(key, allowed);
  const path = parentPath ? `${parentPath}.${key}` : key;
  const fix = suggestion ? `did you mean ${JSON.stringify(suggestion)}?` : `remove it or check the spelling`;
  return new ConfigError(`${loc.where(path, line)}: unknown ${what} ${JSON.stringify(key)}: ${fix}`);
}

/** Records every key of `m` that is not in `allowed`. */
function checkKeys(loc: Locator, m: YMap, allowed: readonly string[], what: string, problems: Problems): void {
  for (const [key, entry] of m.entries) {
    if (!allowed.includes(key)) problems.add(unknownKey(loc, m.path, key, entry.keyLine, allowed, what));
  }
}

function scalarText(node: YNode): string | undefined {
  if (node.kind !== 'scalar') return undefined;
  const v = node.value;
  if (v === null || v === undefined) return undefined;
  if (typeof v === 'string') return v;
  // A non-string scalar used where a string is expected: keep it as written (yaml.v2 does).
  return node.source ?? String(v);
}

function optString(loc: Locator, m: YMap | undefined, key: string): string | undefined {
  const node = m?.entries.get(key)?.node;
  if (!node || isNull(node)) return undefined;
  if (node.kind !== 'scalar') throw loc.error(node, `expected a string value`);
  return scalarText(node);
}

function optBool(loc: Locator, m: YMap | undefined, key: string): boolean | undefined {
  const node = m?.entries.get(key)?.node;
  if (!node || isNull(node)) return undefined;
  if (node.kind !== 'scalar' || typeof node.value !== 'boolean') {
    throw loc.error(node, `expected true or false, got ${JSON.stringify(scalarText(node) ?? node.kind)}`);
  }
  return node.value;
}

function optInt(loc: Locator, m: YMap | undefined, key: string): number | undefined {
  const node = m?.entries.get(key)?.node;
  if (!node || isNull(node)) return undefined;
  const v = node.kind === 'scalar' ? node.value : undefined;
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0) {
    throw loc.error(node, `expected a whole number ≥ 0, got ${JSON.stringify(scalarText(node) ?? node.kind)}`);
  }
  return v;
}

/**
 * A Go duration string (`10s`, `1h30m`), or a bare integer read as nanoseconds like Litestream
 * (with a warning unless 0). Negative durations are rejected.
 */
function optDuration(loc: Locator, m: YMap | undefined, key: string, warnings: string[], positive = false): number | undefined {
  const node = m?.entries.get(key)?.node;
  if (!node || isNull(node)) return undefined;
  const bad = (why: string) => loc.error(node, why);
  if (node.kind !== 'scalar') throw bad('expected a duration such as 10s, 5m or 24h');
  let ms: number;
  if (typeof node.value === 'number') {
    if (!Number.isSafeInteger(node.value)) {
      throw bad(`invalid duration ${JSON.stringify(scalarText(node))}: use a Go duration such as 10s, 5m or 24h`);
    }
    ms = node.value / 1e6;
    if (node.value !== 0) {
      warnings.push(
        `${loc.where(node.path, node.line)}: bare number ${node.value} is read as nanoseconds (as Litestream does); write a unit, e.g. ${node.value}s`,
      );
    }
  } else {
    const text = scalarText(node) ?? '';
    try {
      ms = parseGoDuration(text);
    } catch {
      throw bad(`invalid duration ${JSON.stringify(text)}: use a Go duration such as 10s, 5m or 24h (units ns, us, ms, s, m, h)`);
    }
  }
  if (ms < 0) throw bad(`duration must not be negative: ${JSON.stringify(scalarText(node))}`);
  if (positive && ms === 0) throw bad(`duration must be greater than 0: ${JSON.stringify(scalarText(node))}`);
  return ms;
}

function validateAddr(loc: Locator, node: YNode, addr: string): void {
  const m = /^(\[[^\]]*\]|[^:]*):([^:]*)$/.exec(addr);
  if (!m || m[2] === '')
    throw loc.error(node, `must specify port for bind address: ${JSON.stringify(addr)} (e.g. ":9090" or "127.0.0.1:9090")`);
  const port = Number(m[2]);
  if (!/^\d+$/.test(m[2]!) || port > 65535) throw loc.error(node, `invalid port in bind address: ${JSON.stringify(addr)}`);
}

/** Splits a `host:port` bind address (host may be empty or a bracketed IPv6 address). */
export function splitAddr(addr: string): { host: string; port: number } {
  const m = /^(\[[^\]]*\]|[^:]*):(\d+)$/.exec(addr);
  if (!m) throw new ConfigError(`must specify port for bind address: ${JSON.stringify(addr)}`);
  return { host: m[1]!.replace(/^\[|\]$/g, ''), port: Number(m[2]) };
}

function toPlain(node: YNode): unknown {
  if (node.kind === 'scalar') {
    const v = node.value;
    if (v instanceof Date || typeof v === 'symbol' || typeof v === 'bigint') return node.source ?? String(v);
    return v;
  }
  if (node.kind === 'seq') return node.items.map(toPlain);
  const out: Record<string, unknown> = {};
  for (const [k, e] of node.entries) out[k] = toPlain(e.node);
  return out;
}
