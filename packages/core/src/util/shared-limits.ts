import pLimit, { type LimitFunction } from 'p-limit';
import { ConfigError } from '../errors.js';

/**
 * Concurrency limits shared by every replicator that names the same `key` (in one engine
 * thread: the process's engine worker, or the calling thread with `thread: 'inline'`).
 * Directory replication gives all its databases one key, so a thousand first snapshots do not
 * run at once.
 */
export interface ConcurrencyLimits {
  /** Replicators passing the same key share the limits (the first one's numbers win). */
  readonly key: string;
  /** Snapshots written at once across the group (default 2). */
  readonly snapshots?: number;
  /** WAL segment uploads in flight at once across the group (default 32). */
  readonly uploads?: number;
}

export interface SharedLimiters {
  readonly snapshots: LimitFunction;
  readonly uploads: LimitFunction;
}

const DEFAULT_SHARED_SNAPSHOTS = 2;
const DEFAULT_SHARED_UPLOADS = 32;

/**
 * Held weakly: a group lives as long as a replicator that uses it (its replicas hold the
 * limiters), and its entry goes once the last one is garbage — a process that creates and drops
 * directory replicators all day does not accumulate them.
 */
const groups = new Map<string, WeakRef<SharedLimiters>>();
const forget = new FinalizationRegistry<string>((key) => {
  if (groups.get(key)?.deref() === undefined) groups.delete(key);
});

function count(v: unknown, fallback: number, what: string): number {
  if (v === undefined) return fallback;
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 1)
    throw new ConfigError(`invalid concurrency.${what}: ${JSON.stringify(v)}: expected a whole number ≥ 1`);
  return v;
}

/**
 * Checks a `concurrency` option.
 * @throws ConfigError naming the bad field
 */
export function checkConcurrency(v: unknown): ConcurrencyLimits | undefined {
  if (v === undefined) return undefined;
  const c = v as Partial<ConcurrencyLimits> | null;
  if (!c || typeof c !== 'object' || typeof c.key !== 'string' || c.key === '') {
    throw new ConfigError('invalid concurrency: expected { key: string, snapshots?: number, uploads?: number }');
  }
  return {
    key: c.key,
    snapshots: count(c.snapshots, DEFAULT_SHARED_SNAPSHOTS, 'snapshots'),
    uploads: count(c.uploads, DEFAULT_SHARED_UPLOADS, 'uploads'),
  };
}

/** The limiters of a group, created on first use. */
export function sharedLimiters(limits: ConcurrencyLimits): SharedLimiters {
  let g = groups.get(limits.key)?.deref();
  if (!g) {
    g = {
      snapshots: pLimit(limits.snapshots ?? DEFAULT_SHARED_SNAPSHOTS),
      uploads: pLimit(limits.uploads ?? DEFAULT_SHARED_UPLOADS),
    };
    groups.set(limits.key, new WeakRef(g));
    forget.register(g, limits.key);
  }
  return g;
}

/** How many groups are alive (for tests). */
export function sharedLimiterGroups(): number {
  return groups.size;
}
