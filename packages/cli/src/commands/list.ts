import { statSync } from 'node:fs';
import {
  errorMessage,
  listGenerations,
  listSnapshots,
  listWalSegments,
  type GenerationInfo,
  type ReplicaSnapshotInfo,
  type ReplicaWALSegmentInfo,
  type RestoreReplica,
} from '@walship/core';
import { boolFlag, stringFlag } from '../args.js';
import { closeClients, commandLogger, loadConfig, resolveTarget, type Invocation, type Target } from '../invocation.js';
import type { ReplicaSpec } from '../config.js';
import { CliError, UsageError } from '../errors.js';
import { formatLag, formatTable, formatTime, hex8 } from '../format.js';
import type { CliLogger } from '../logger.js';
import { absPath, looksLikeUrl } from '../paths.js';

/** `walship databases`: the config's databases and their replica names. */
export async function databasesCommand(inv: Invocation): Promise<number> {
  if (inv.args.positionals.length > 0) throw new UsageError('too many arguments');
  const config = await loadConfig(inv);
  commandLogger(inv, config, { stream: 'stderr' });
  const rows: Array<{ path: string; replicas: string[]; pattern?: string }> = [
    ...config.dbs.map((db) => ({ path: db.path, replicas: db.replicas.map((r) => r.name) })),
    // Directory entries: the directory with its pattern (`/data/tenants/*.db`, `…/**/*.db` when recursive).
    ...config.dirs.map((d) => ({
      path: d.dir,
      pattern: d.recursive ? `**/${d.pattern}` : d.pattern,
      replicas: d.replicas.map((r) => r.name),
    })),
  ];
  await closeClients([...config.dbs.flatMap((d) => d.replicas), ...config.dirs.flatMap((d) => d.replicas)]);
  if (boolFlag(inv.args, 'json')) {
    inv.io.stdout.write(`${JSON.stringify(rows, null, 2)}\n`);
  } else {
    inv.io.stdout.write(
      formatTable([['path', 'replicas'], ...rows.map((r) => [r.pattern ? `${r.path}/${r.pattern}` : r.path, r.replicas.join(',')])]),
    );
  }
  return 0;
}

/**
 * Runs `fn` for each replica, logging and skipping failures like Litestream; fails (exit 1)
 * only when every replica failed.
 */
async function perReplica<T>(
  target: Target,
  logger: CliLogger,
  what: string,
  fn: (replica: RestoreReplica, spec: ReplicaSpec) => Promise<readonly T[]>,
): Promise<T[]> {
  const out: T[] = [];
  let failures = 0;
  let lastError = '';
  for (const spec of target.replicas) {
    try {
      out.push(...(await fn({ name: spec.name, client: spec.client }, spec)));
    } catch (err) {
      failures++;
      lastError = errorMessage(err);
      // With one replica the failure is the command's own error line; with several, log and go on.
      if (target.replicas.length > 1) logger.error(`cannot list ${what}`, { replica: spec.name, error: lastError });
    }
  }
  if (failures > 0 && failures === target.replicas.length) {
    throw new CliError(
      target.replicas.length === 1 ? `cannot list ${what}: ${lastError}` : `cannot list ${what} of any replica: ${lastError}`,
    );
  }
  return out;
}

/** Litestream's "now" for lag: the newer mtime of the database and its WAL, else the current time. */
function lastWriteTime(dbPath: string | undefined): Date {
  if (!dbPath) return new Date();
  let newest = 0;
  for (const p of [dbPath, `${dbPath}-wal`]) {
    try {
      newest = Math.max(newest, statSync(p).mtimeMs);
    } catch {
      // Missing file: ignore.
    }
  }
  return newest > 0 ? new Date(newest) : new Date();
}

/** How one listing command fetches, sorts and prints its rows. */
interface Listing<T> {
  readonly missing: string;
  readonly what: string;
  fetch(replica: RestoreReplica, target: Target): Promise<readonly T[]>;
  compare(a: T, b: T): number;
  readonly header: readonly string[];
  cells(row: T): string[];
  json(row: T): Record<string, unknown>;
}

/** Resolves the target, lists every replica (sorted per replica), prints a table or `--json`. */
async function runListing<T>(inv: Invocation, listing: Listing<T>): Promise<number> {
  const target = await resolveTarget(inv, listing.missing);
  const logger = commandLogger(inv, target.config, { stream: 'stderr', warnings: target.warnings });
  try {
    const rows = await perReplica(target, logger, listing.what, async (replica) =>
      [...(await listing.fetch(replica, target))].sort((a, b) => listing.compare(a, b)),
    );
    if (boolFlag(inv.args, 'json'))
      inv.io.stdout.write(
        `${JSON.stringify(
          rows.map((r) => listing.json(r)),
          null,
          2,
        )}\n`,
      );
    else inv.io.stdout.write(formatTable([listing.header, ...rows.map((r) => listing.cells(r))]));
    return 0;
  } finally {
    await closeClients(target.replicas);
  }
}

const cmp = (a: string | number, b: string | number): number => (a < b ? -1 : a > b ? 1 : 0);

/** `walship generations DB|URL`: name, generation, lag, start, end. */
export function generationsCommand(inv: Invocation): Promise<number> {
  const now = lastWriteTime(
    inv.args.positionals[0] !== undefined && !looksLikeUrl(inv.args.positionals[0])
      ? absPath(inv.args.positionals[0], inv.io.cwd)
      : undefined,
  );
  return runListing<GenerationInfo>(inv, {
    missing: 'database path or replica URL required',
    what: 'generations',
    fetch: (replica) => listGenerations([replica], { replicaName: replica.name, now }),
    compare: (a, b) => cmp(a.generation, b.generation),
    header: ['name', 'generation', 'lag', 'start', 'end'],
    cells: (g) => [g.replicaName, g.generation, formatLag(g.lagMs), formatTime(g.createdAt), formatTime(g.updatedAt)],
    json: (g) => ({
      replica: g.replicaName,
      generation: g.generation,
      lag: formatLag(g.lagMs),
      lagMs: g.lagMs,
      start: formatTime(g.createdAt),
      end: formatTime(g.updatedAt),
    }),
  });
}

/**
 * `walship snapshots DB|URL`: replica, generation, index, size, created. The table prints the
 * index in decimal as Litestream v0.3.13 does; `--json` keeps it as 8-digit hex (file names).
 */
export function snapshotsCommand(inv: Invocation): Promise<number> {
  return runListing<ReplicaSnapshotInfo>(inv, {
    missing: 'database path required',
    what: 'snapshots',
    fetch: (replica) => listSnapshots([replica], { replicaName: replica.name }),
    compare: (a, b) => cmp(a.generation, b.generation) || a.index - b.index,
    header: ['replica', 'generation', 'index', 'size', 'created'],
    cells: (s) => [s.replicaName, s.generation, String(s.index), String(s.size), formatTime(s.createdAt)],
    json: (s) => ({
      replica: s.replicaName,
      generation: s.generation,
      index: hex8(s.index),
      size: s.size,
      created: formatTime(s.createdAt),
    }),
  });
}

/**
 * `walship wal DB|URL`: replica, generation, index, offset, size, created. The table prints
 * index and offset in decimal as Litestream v0.3.13 does; `--json` keeps 8-digit hex.
 */
export function walCommand(inv: Invocation): Promise<number> {
  const generation = stringFlag(inv.args, 'generation');
  return runListing<ReplicaWALSegmentInfo>(inv, {
    missing: 'database path required',
    what: 'WAL segments',
    fetch: async (replica) =>
      (await listWalSegments([replica], { replicaName: replica.name, ...(generation !== undefined ? { generation } : {}) })).filter(
        (s) => generation === undefined || s.generation === generation,
      ),
    compare: (a, b) => cmp(a.generation, b.generation) || a.index - b.index || a.offset - b.offset,
    header: ['replica', 'generation', 'index', 'offset', 'size', 'created'],
    cells: (s) => [s.replicaName, s.generation, String(s.index), String(s.offset), String(s.size), formatTime(s.createdAt)],
    json: (s) => ({
      replica: s.replicaName,
      generation: s.generation,
      index: hex8(s.index),
      offset: hex8(s.offset),
      size: s.size,
      created: formatTime(s.createdAt),
    }),
  });
}
