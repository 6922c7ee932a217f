import path from 'node:path';
import { compilePattern, errorMessage, type ReplicaClient } from '@walship/core';
import { joinKey, normalizeSubPath } from '@walship/core/backend';
import type { CliConfig, DbSpec, DirSpec, ReplicaSpec } from './config.js';
import { CliError } from './errors.js';

/**
 * The replicas of one database of a directory entry: each of the entry's replicas with the
 * database's relative path appended to its path (`<replica>/<relPath>/generations/…`).
 * The backend's `scoped()` shares the entry's client (one SDK client, one SSH session); a
 * third-party backend without it gets a client of its own, built from its config.
 */
export function tenantReplicas(dir: DirSpec, relPath: string): ReplicaSpec[] {
  const rel = normalizeSubPath(relPath);
  return dir.replicas.map((r) => ({ ...r, client: scopedClient(r, rel), where: `${r.where} (${rel})` }));
}

function scopedClient(r: ReplicaSpec, rel: string): ReplicaClient {
  if (typeof r.client.scoped === 'function') return r.client.scoped(rel);
  const base = typeof r.config.path === 'string' ? r.config.path : '';
  const joined = r.type === 'file' ? path.join(base, ...rel.split('/')) : joinKey(base, rel);
  try {
    return r.backend.createClient({ ...r.config, path: joined }, { env: process.env });
  } catch (err) {
    throw new CliError(`cannot build the ${r.type} replica ${JSON.stringify(r.name)} of ${rel}: ${errorMessage(err)}`, { cause: err });
  }
}

/**
 * The database of a directory entry at `relPath`, as a database entry of its own. For one-shot
 * commands (restore, generations, …): closing one of its clients closes the entry's client too.
 */
export function tenantDb(dir: DirSpec, relPath: string): DbSpec {
  const { dir: root, pattern: _p, recursive: _r, watch: _w, ...settings } = dir;
  const replicas = tenantReplicas(dir, relPath).map((r, i) => ({ ...r, client: closingParent(r.client, dir.replicas[i]!.client) }));
  return { ...settings, path: path.join(root, ...relPath.split('/')), metaPath: undefined, replicas };
}

function closingParent(client: ReplicaClient, parent: ReplicaClient): ReplicaClient {
  if (client === parent) return client;
  return new Proxy(client, {
    get(target, prop) {
      if (prop === 'close') {
        return async () => {
          await target.close?.();
          await parent.close?.();
        };
      }
      const v = Reflect.get(target, prop, target) as unknown;
      return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v;
    },
  });
}

/**
 * The directory entry that covers `dbPath` (inside its `dir`, in a subdirectory only with
 * `recursive`, its file name matching `pattern`) and the path relative to it; undefined when
 * none does.
 */
export function findTenant(config: Pick<CliConfig, 'dirs'>, dbPath: string): { dir: DirSpec; relPath: string } | undefined {
  for (const dir of config.dirs) {
    const rel = path.relative(dir.dir, dbPath);
    if (rel === '' || rel.startsWith('..') || path.isAbsolute(rel)) continue;
    const parts = rel.split(path.sep);
    if (parts.length > 1 && !dir.recursive) continue;
    if (!compilePattern(dir.pattern)(parts[parts.length - 1]!)) continue;
    return { dir, relPath: parts.join('/') };
  }
  return undefined;
}
