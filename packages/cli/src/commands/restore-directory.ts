import path from 'node:path';
import pLimit from 'p-limit';
import { compilePattern, errorMessage, restore, type RestoreOptions } from '@walship/core';
import type { DirSpec, ReplicaSpec } from '../config.js';
import { tenantReplicas } from '../directory.js';
import { CliError } from '../errors.js';
import type { CliLogger } from '../logger.js';
import type { JsonProgress } from '../progress.js';

/** Databases restored at once (each restore uses its own download parallelism). */
const DATABASES_AT_ONCE = 4;

export interface DirectoryRestore {
  readonly dir: DirSpec;
  /** The entry's replicas (after `-replica`). */
  readonly replicas: readonly ReplicaSpec[];
  /** Where the databases go: `-o`, else the entry's `dir`. */
  readonly outputDir: string;
  /** Options applied to each database's restore (`outputPath` and `replicas` are set per database). */
  readonly options: Omit<RestoreOptions, 'outputPath' | 'replicas'>;
  readonly logger: CliLogger;
  readonly json: JsonProgress | undefined;
  readonly signal: AbortSignal;
}

/**
 * `walship restore DIR` for a directory entry: every database found in the replicas (through
 * `ReplicaClient.databases()`) whose path the entry covers is restored to `<output>/<relative
 * path>`, four at a time, each from the replica that is intact (as a single restore chooses).
 * One database failing does not stop the others; the summary names each failure. Resolves the
 * exit code: 0 when none failed, 1 otherwise.
 * @throws CliError when no replica can list its databases, or none holds any
 */
export async function restoreDirectory(run: DirectoryRestore): Promise<number> {
  const { dir, logger } = run;
  const matches = compilePattern(dir.pattern);
  const found = new Set<string>();
  let listed = 0;
  /** Replicas that could not say what they hold: a database only they have would be missed. */
  const unlisted: string[] = [];
  for (const r of run.replicas) {
    if (typeof r.client.databases !== 'function') {
      logger.warn('replica cannot list its databases; skipped for discovery', { name: r.name, type: r.type });
      unlisted.push(`${r.name} (its backend cannot list databases)`);
      continue;
    }
    try {
      for (const rel of await r.client.databases()) {
        const parts = rel.split('/');
        if (parts.length > 1 && !dir.recursive) continue;
        if (matches(parts[parts.length - 1]!)) found.add(rel);
      }
      listed++;
    } catch (err) {
      logger.warn('cannot list the databases of a replica', { name: r.name, type: r.type, error: errorMessage(err) });
      unlisted.push(`${r.name} (${errorMessage(err)})`);
    }
  }
  if (listed === 0)
    throw new CliError(`cannot list the databases of directory ${dir.dir}: no replica could be listed (see the warnings above)`);
  const rels = [...found].sort();
  if (rels.length === 0) {
    if (run.options.ifReplicaExists) {
      logger.info('no matching backups found', { dir: dir.dir });
      return 0;
    }
    throw new CliError(`no matching backups found for directory ${dir.dir} (use -if-replica-exists to exit 0 when there are none)`);
  }
  logger.info('restoring directory', { dir: dir.dir, output: run.outputDir, databases: rels.length });
  const counts = { restored: 0, skipped: 0, failed: 0 };
  const failures: string[] = [];
  const limit = pLimit(DATABASES_AT_ONCE);
  const names = new Set(run.replicas.map((r) => r.name));
  const t0 = performance.now();
  await Promise.all(
    rels.map((rel) =>
      limit(async () => {
        if (run.signal.aborted) return;
        const outputPath = path.join(run.outputDir, ...rel.split('/'));
        const replicas = tenantReplicas(dir, rel).filter((r) => names.has(r.name));
        try {
          const result = await restore({
            ...run.options,
            outputPath,
            replicas: replicas.map((r) => ({ name: r.name, client: r.client, ...(r.stages ? { stages: r.stages } : {}) })),
            // Per database: only warnings and errors (damage, a replica skipped); the outcome is one line below.
            logger: {
              debug: () => {},
              info: () => {},
              warn: (m, f) => logger.warn(m, { path: outputPath, ...f }),
              error: (m, f) => logger.error(m, { path: outputPath, ...f }),
            },
            signal: run.signal,
          });
          if (result.status === 'restored') {
            counts.restored++;
            logger.info('restored', {
              path: outputPath,
              replica: result.replicaName,
              ...(result.durationMs !== undefined ? { elapsed: `${Math.round(result.durationMs)}ms` } : {}),
            });
          } else {
            counts.skipped++;
            logger.info(result.status === 'skipped-db-exists' ? 'database already exists, skipping' : 'no matching backups found', {
              path: outputPath,
            });
          }
          run.json?.event('database', {
            relPath: rel,
            path: outputPath,
            status: result.status,
            ...(result.replicaName ? { replica: result.replicaName } : {}),
          });
        } catch (err) {
          if (run.signal.aborted) return;
          counts.failed++;
          const message =
            (err as { code?: unknown }).code === 'WALSHIP_RESTORE_OUTPUT_EXISTS'
              ? `output path already exists (use --overwrite or -if-db-not-exists)`
              : errorMessage(err);
          failures.push(`${rel}: ${message}`);
          logger.error('restore failed', { path: outputPath, error: message });
          run.json?.event('database', { relPath: rel, path: outputPath, status: 'failed', error: message });
        }
      }),
    ),
  );
  if (run.signal.aborted) throw run.signal.reason;
  const elapsed = `${Math.round(performance.now() - t0)}ms`;
  run.json?.event('directory', { dir: dir.dir, output: run.outputDir, ...counts });
  if (counts.failed > 0 || unlisted.length > 0) {
    logger.error('directory restore incomplete', {
      dir: dir.dir,
      ...counts,
      elapsed,
      ...(failures.length > 0 ? { errors: failures.join('; ') } : {}),
      ...(unlisted.length > 0 ? { unlisted: unlisted.join('; ') } : {}),
    });
    return 1;
  }
  logger.info('directory restore finished', { dir: dir.dir, ...counts, elapsed });
  return 0;
}
