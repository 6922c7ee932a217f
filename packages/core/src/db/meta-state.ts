import fsSync from 'node:fs';
import fs from 'node:fs/promises';
import path from 'node:path';
import { isGenerationName } from '../naming.js';
import { fileSystemError, writeFileAtomic } from '../util/fs.js';

/** A closed WAL index whose tail is kept locally because a replica had not sent it yet. */
export interface SpillRecord {
  readonly index: number;
  /** First byte kept (a frame boundary, or 0 when the header is included). */
  readonly start: number;
  /** End of the index (end of its last commit frame). */
  readonly end: number;
}

/** Identity and content fingerprint of the database file, for proving continuity. */
export interface DbFingerprint {
  readonly dev: number;
  readonly ino: number;
  readonly size: number;
  readonly mtimeNs: string;
}

/**
 * Durable local state, kept in `<meta>/state.json` and replaced atomically.
 * Everything else the engine knows is derived at start-up from the WAL and the replicas.
 */
export interface MetaState {
  readonly version: 1;
  readonly generation: string;
  /** WAL index of the current epoch of the real WAL. */
  readonly index: number;
  /** Hex of the 32-byte header of the current epoch. */
  readonly walHeader: string;
  readonly pageSize: number;
  /** Database file identity when the generation started (dev/ino). */
  readonly dbDev: number;
  readonly dbIno: number;
  readonly spills: readonly SpillRecord[];
  /**
   * Written just before walship's own restarting write: the WAL (header `walHeader`) ends at
   * `end`, fully copied into the database, and the write that may restart it changes only
   * page `seqPage`. A kill -9 before the restart is recorded leaves this, and the next start
   * recognises the restarted WAL as the next index (see the engine's continuity rules).
   */
  readonly restartIntent?: { readonly end: number; readonly seqPage: number } | undefined;
  /** End of index `index - 1`, when known: a replica standing there continues at `index`. */
  readonly prevIndexEnd?: number | undefined;
  /**
   * Set by a clean stop that checkpointed every frame of `index` (which ended at `end`) into
   * the database file and recorded the file's fingerprint: if the file is unchanged at the next
   * start, the database equals the state at (index, end) and the next WAL is index + 1.
   */
  readonly cleanStop?: { readonly end: number; readonly fingerprint: DbFingerprint } | undefined;
}

/** Default meta directory: `<dir>/.<base>-walship`. */
export function defaultMetaPath(dbPath: string): string {
  return path.join(path.dirname(dbPath), `.${path.basename(dbPath)}-walship`);
}

function stateFile(metaPath: string): string {
  return path.join(metaPath, 'state.json');
}

export function spillFile(metaPath: string, generation: string, index: number): string {
  return path.join(metaPath, 'generations', generation, 'wal', `${index.toString(16).padStart(8, '0')}.wal`);
}

/** Reads the state; undefined when absent or unreadable (treated as "no generation"). */
export async function readMetaState(metaPath: string): Promise<MetaState | undefined> {
  let text: string;
  try {
    text = await fs.readFile(stateFile(metaPath), 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
  try {
    const s = JSON.parse(text) as MetaState;
    if (s.version !== 1 || !isGenerationName(s.generation) || typeof s.walHeader !== 'string') return undefined;
    return { ...s, spills: Array.isArray(s.spills) ? s.spills : [] };
  } catch {
    return undefined;
  }
}

/**
 * Replaces the state (and the plain-text `generation` file) atomically and durably.
 * @throws the file-system error as one line naming the file, the problem and what to do
 *   (`cannot write walship state to <meta>/state.json: no space left on device (ENOSPC): …`),
 *   with `code` kept and the original error as `cause`
 */
export async function writeMetaState(metaPath: string, state: MetaState, stillCurrent?: () => boolean): Promise<void> {
  try {
    await fs.mkdir(metaPath, { recursive: true, mode: 0o700 });
  } catch (err) {
    throw fileSystemError(`cannot create the walship meta directory ${metaPath}`, err);
  }
  // A newer state written meanwhile (synchronously, around a WAL restart) must not be replaced
  // by this older one: `stillCurrent` says whether this one is still the newest.
  if (!(await writeFileAtomic(stateFile(metaPath), `${JSON.stringify(state, null, 2)}\n`, 0o600, 'walship state', stillCurrent))) return;
  // A plain-text copy of the generation, as Litestream keeps one, for people inspecting the dir.
  await writeFileAtomic(path.join(metaPath, 'generation'), `${state.generation}\n`, 0o600, 'walship generation name');
}

/**
 * Replaces the state synchronously by a rename, without fsync: for the microseconds right
 * after a WAL restart, so a `kill -9` cannot leave a state that names the previous WAL
 * header. (A power loss may still lose it; the next start then begins a new generation, which
 * is safe.) The asynchronous `writeMetaState` that follows makes it durable.
 * @throws like `writeMetaState` (the temporary file is removed first)
 */
export function writeMetaStateSync(metaPath: string, state: MetaState): void {
  const file = stateFile(metaPath);
  const tmp = `${file}.sync.tmp`;
  try {
    fsSync.writeFileSync(tmp, `${JSON.stringify(state, null, 2)}\n`, { mode: 0o600 });
    fsSync.renameSync(tmp, file);
  } catch (err) {
    try {
      fsSync.rmSync(tmp, { force: true });
    } catch {
      // the error that matters is the write's
    }
    throw fileSystemError(`cannot write walship state to ${file}`, err);
  }
}

/** Removes leftovers of interrupted writes (`*.tmp`) anywhere under the meta dir. */
export async function removeTempFiles(dir: string): Promise<void> {
  let entries;
  try {
    entries = await fs.readdir(dir, { withFileTypes: true });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
    throw err;
  }
  for (const e of entries) {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) await removeTempFiles(p);
    else if (e.name.endsWith('.tmp')) await fs.rm(p, { force: true });
  }
}

/** Deletes local generation directories other than `keep`. */
export async function removeOtherGenerations(metaPath: string, keep: string): Promise<void> {
  const dir = path.join(metaPath, 'generations');
  let names: string[];
  try {
    names = await fs.readdir(dir);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
    throw err;
  }
  for (const n of names) if (n !== keep) await fs.rm(path.join(dir, n), { recursive: true, force: true });
}

export async function fingerprintOf(fh: fs.FileHandle): Promise<DbFingerprint> {
  const st = await fh.stat({ bigint: true });
  return { dev: Number(st.dev), ino: Number(st.ino), size: Number(st.size), mtimeNs: st.mtimeNs.toString() };
}

export function sameFingerprint(a: DbFingerprint, b: DbFingerprint): boolean {
  return a.dev === b.dev && a.ino === b.ino && a.size === b.size && a.mtimeNs === b.mtimeNs;
}
