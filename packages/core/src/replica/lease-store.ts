import { joinKey } from '../naming.js';
import type { StoredLease } from '../replica-client.js';

/**
 * Name of the lease object on object stores (S3, GCS, ABS), in the replica root beside
 * `generations/`. Litestream v0.3 only ever lists `<root>/generations/`, so it never sees it.
 */
export const LEASE_OBJECT_NAME = 'walship-lease.json';

/**
 * Name of the lease directory on file systems (file, SFTP), in the replica root beside
 * `generations/`: it holds `<sequence %016x>.json` entries, the highest being the lease
 * (see `writeSequencedLease`).
 */
export const LEASE_DIR_NAME = 'walship-lease';

/** Key of the lease object under a client's root (`<root>/walship-lease.json`). */
export function leaseObjectKey(root: string): string {
  return joinKey(root, LEASE_OBJECT_NAME);
}

/** Key of the lease directory under a client's root (`<root>/walship-lease`). */
export function leaseDirKey(root: string): string {
  return joinKey(root, LEASE_DIR_NAME);
}

/**
 * The lease directory of a file-system backend, as the sequenced lease needs it. Every method
 * acts on entries (plain names) of that one directory.
 */
export interface LeaseDirectory {
  /** Entry names in the directory; empty when it does not exist. */
  list(): Promise<string[]>;
  /** Contents of an entry, or undefined when it does not exist (any more). */
  read(name: string): Promise<string | undefined>;
  /**
   * Creates the entry with `body`, atomically and only if it does not exist (write a temporary
   * file, then `link` it, or `rename` it without replacing, onto the name; create the
   * directory as needed). Resolves false when the entry already exists.
   */
  createExclusive(name: string, body: string): Promise<boolean>;
  /** Removes an entry; succeeds when it does not exist. */
  remove(name: string): Promise<void>;
}

const ENTRY = /^([0-9a-f]{16})\.json$/;
const READ_ATTEMPTS = 5;

function entryName(seq: number): string {
  return `${seq.toString(16).padStart(16, '0')}.json`;
}

/** Sequence numbers of the lease entries, ascending (foreign and temporary names skipped). */
async function sequences(dir: LeaseDirectory): Promise<number[]> {
  const out: number[] = [];
  for (const name of await dir.list()) {
    const m = ENTRY.exec(name);
    if (m) out.push(parseInt(m[1]!, 16));
  }
  return out.sort((a, b) => a - b);
}

/**
 * `ReplicaClient.readLease` for a file system: the entry with the highest sequence number,
 * versioned by that number. An entry removed while it is read (the holder renewed) is retried.
 */
export async function readSequencedLease(dir: LeaseDirectory): Promise<StoredLease | undefined> {
  for (let attempt = 0; ; attempt++) {
    const seqs = await sequences(dir);
    const top = seqs[seqs.length - 1];
    if (top === undefined) return undefined;
    const body = await dir.read(entryName(top));
    if (body !== undefined) return { body, version: String(top) };
    if (attempt + 1 >= READ_ATTEMPTS) return undefined;
  }
}

/**
 * `ReplicaClient.writeLease` for a file system, with exclusive creates only: each new version of
 * the lease is a new entry numbered one above the version it replaces (1 when it replaces
 * nothing), created only if absent; older entries are removed afterwards. Two writers replacing
 * the same version race for the same name, so exactly one wins. After the create the directory
 * is listed again: a higher entry means another writer got there first (the entry this one
 * created had already been superseded and removed), and this write counts as failed.
 */
export async function writeSequencedLease(dir: LeaseDirectory, body: string, ifVersion: string | null): Promise<string | null> {
  const seqs = await sequences(dir);
  const top = seqs[seqs.length - 1];
  let next: number;
  if (ifVersion === null) {
    if (top !== undefined) return null;
    next = 1;
  } else {
    if (!/^\d+$/.test(ifVersion) || top === undefined || String(top) !== ifVersion) return null;
    next = top + 1;
  }
  if (!(await dir.createExclusive(entryName(next), body))) return null;
  const after = await sequences(dir);
  if (after[after.length - 1]! > next) {
    await dir.remove(entryName(next)).catch(() => {});
    return null;
  }
  for (const s of after) if (s < next) await dir.remove(entryName(s)).catch(() => {});
  return String(next);
}
