import { randomBytes } from 'node:crypto';
import { InvalidArgumentError } from './errors.js';

/** Length of a generation name: 16 lowercase hex characters. */
export const GENERATION_NAME_LENGTH = 16;
/** Highest WAL index; a new generation starts when it is reached. */
export const MAX_INDEX = 0x7fffffff;

const GENERATION_RE = /^[0-9a-f]{16}$/;
// Litestream v0.3.13 writes at least 8 hex digits; offsets above 4 GiB need more. Parse 8–16.
const SNAPSHOT_RE = /^([0-9a-f]{8,16})\.snapshot\.lz4$/;
const SEGMENT_RE = /^([0-9a-f]{8,16})_([0-9a-f]{8,16})\.wal\.lz4$/;

/** True when `name` is a valid generation name (16 lowercase hex characters). */
export function isGenerationName(name: string): boolean {
  return GENERATION_RE.test(name);
}

/** A new random generation name. */
export function newGenerationName(): string {
  return randomBytes(8).toString('hex');
}

/** Lowercase hex, zero-padded to at least 8 digits (Go's `%08x`). */
export function formatHex8(n: number): string {
  if (!Number.isSafeInteger(n) || n < 0) throw new InvalidArgumentError(`invalid index or offset: ${n}`);
  return n.toString(16).padStart(8, '0');
}

export function snapshotFileName(index: number): string {
  return `${formatHex8(index)}.snapshot.lz4`;
}

export function walSegmentFileName(index: number, offset: number): string {
  return `${formatHex8(index)}_${formatHex8(offset)}.wal.lz4`;
}

/** Parses `<index>.snapshot.lz4`; undefined for any other name. */
export function parseSnapshotFileName(name: string): { index: number } | undefined {
  const m = SNAPSHOT_RE.exec(name);
  if (!m) return undefined;
  const index = parseInt(m[1]!, 16);
  return Number.isSafeInteger(index) ? { index } : undefined;
}

/** Parses `<index>_<offset>.wal.lz4`; undefined for any other name. */
export function parseWalSegmentFileName(name: string): { index: number; offset: number } | undefined {
  const m = SEGMENT_RE.exec(name);
  if (!m) return undefined;
  const index = parseInt(m[1]!, 16);
  const offset = parseInt(m[2]!, 16);
  if (!Number.isSafeInteger(index) || !Number.isSafeInteger(offset)) return undefined;
  return { index, offset };
}

/**
 * Joins key parts with `/` and cleans the result like Go's path.Join: empty and `.` parts
 * vanish, `..` pops. A leading `/` on the first non-empty part is kept (as upstream does for
 * S3 paths). Used by object-store backends to build keys under their root prefix.
 */
export function joinKey(...parts: string[]): string {
  const out: string[] = [];
  let absolute = false;
  let first = true;
  for (const part of parts) {
    if (part === '') continue;
    if (first && part.startsWith('/')) absolute = true;
    first = false;
    for (const seg of part.split('/')) {
      if (seg === '' || seg === '.') continue;
      if (seg === '..') {
        if (out.length > 0 && out[out.length - 1] !== '..') out.pop();
        else if (!absolute) out.push('..');
        continue;
      }
      out.push(seg);
    }
  }
  return (absolute ? '/' : '') + out.join('/');
}

function requireGeneration(generation: string, what: string): void {
  if (!generation) throw new InvalidArgumentError(`cannot determine ${what}: generation required`);
}

/**
 * Litestream v0.3 remote layout, relative to a replica's root. Each helper throws
 * `InvalidArgumentError` with Litestream's exact message when the generation is empty.
 */
export const layout = {
  generations(root: string): string {
    return joinKey(root, 'generations');
  },
  generation(root: string, generation: string): string {
    requireGeneration(generation, 'generation path');
    return joinKey(root, 'generations', generation);
  },
  snapshots(root: string, generation: string): string {
    requireGeneration(generation, 'snapshots path');
    return joinKey(root, 'generations', generation, 'snapshots');
  },
  snapshot(root: string, generation: string, index: number): string {
    requireGeneration(generation, 'snapshot path');
    return joinKey(root, 'generations', generation, 'snapshots', snapshotFileName(index));
  },
  wal(root: string, generation: string): string {
    requireGeneration(generation, 'wal path');
    return joinKey(root, 'generations', generation, 'wal');
  },
  walSegment(root: string, generation: string, index: number, offset: number): string {
    requireGeneration(generation, 'wal segment path');
    return joinKey(root, 'generations', generation, 'wal', walSegmentFileName(index, offset));
  },
} as const;

/**
 * Checks and cleans the relative path of a scoped client (`ReplicaClient.scoped`) or of a
 * database found by directory replication: `/`-separated, repeated
 * and trailing `/` dropped.
 * @throws InvalidArgumentError when it is empty, absolute, or has a `.` or `..` segment
 */
export function normalizeSubPath(subPath: string): string {
  const raw = typeof subPath === 'string' ? subPath : '';
  if (raw.startsWith('/'))
    throw new InvalidArgumentError(`invalid relative replica path ${JSON.stringify(subPath)}: must not start with "/"`);
  const segs = raw.split('/').filter((s) => s !== '');
  if (segs.length === 0) throw new InvalidArgumentError(`invalid relative replica path ${JSON.stringify(subPath)}: must not be empty`);
  if (segs.some((s) => s === '.' || s === '..'))
    throw new InvalidArgumentError(`invalid relative replica path ${JSON.stringify(subPath)}: must not contain "." or ".." segments`);
  return segs.join('/');
}

/** What {@link findDatabases} needs from a backend. */
export interface DatabaseWalk {
  /** Names of the child folders of `relPath` under the client's root ('' is the root itself); [] when absent. */
  listFolders(relPath: string): Promise<string[]>;
  /** True when `<root>/<relPath>/generations/` holds at least one valid generation. */
  hasGenerations(relPath: string): Promise<boolean>;
  /** Folders listed at once (default 8). */
  readonly concurrency?: number;
}

/**
 * Implements `ReplicaClient.databases()` over a backend's folder listing: walks the folders
 * under the root breadth-first (never into a `generations` folder) and reports each relative
 * path whose `generations/` holds a valid generation. A folder that holds a database may hold
 * further databases below it (`a.db/` and `a.db/x/b.db/` are both reported).
 */
export async function findDatabases(walk: DatabaseWalk): Promise<string[]> {
  const found: string[] = [];
  const limit = Math.max(1, walk.concurrency ?? 8);
  let queue: string[] = [''];
  while (queue.length > 0) {
    const next: string[] = [];
    for (let i = 0; i < queue.length; i += limit) {
      await Promise.all(
        queue.slice(i, i + limit).map(async (rel) => {
          const children = await walk.listFolders(rel);
          for (const name of children) {
            if (name === '' || name === '.' || name === '..') continue;
            const child = rel === '' ? name : `${rel}/${name}`;
            if (name === 'generations') {
              if (rel !== '' && (await walk.hasGenerations(rel))) found.push(rel);
            } else next.push(child);
          }
        }),
      );
    }
    queue = next;
  }
  return found.sort();
}
