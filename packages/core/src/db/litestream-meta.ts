import fs from 'node:fs/promises';
import path from 'node:path';
import type { Logger } from '../logger.js';
import { isGenerationName } from '../naming.js';
import { readFullAt } from '../util/fs.js';
import { frameAlign, frameSize, WAL_HEADER_SIZE, type WalHeader } from '../wal/format.js';
import { scanCommittedFrames, tryParseWalHeader } from '../wal/wal-file.js';
import { type MetaState, type SpillRecord, spillFile } from './meta-state.js';

/**
 * Taking over from Litestream v0.3 without a new generation.
 *
 * Litestream keeps its state in `<dir>/.<db>-litestream` (or its `meta-path`): a `generation`
 * file and, per WAL index, a shadow WAL `generations/<gen>/wal/%08x.wal` — the committed prefix
 * of that index of the real WAL, header included, at the same offsets. Litestream sets
 * SQLITE_FCNTL_PERSIST_WAL, so the real `-wal` survives its shutdown with the same header.
 *
 * The generation continues when the newest shadow WAL is provably a prefix of the real WAL:
 * same 32-byte header (same salts: nobody restarted the WAL since), the real WAL at least as
 * long, and the shadow's last frame byte-identical at the same offset (its checksum field
 * chains over every earlier frame) — Litestream's own continuity test (format reference §1.5).
 * Every frame committed after Litestream stopped is then in the real WAL behind the shadow's
 * end, and the database file holds nothing newer than the WAL. Older shadow files still on disk
 * (indexes a replica has not finished) become walship's kept WAL tails ("spills").
 *
 * What the replicas hold is checked afterwards, by each replica: a replica position past the
 * local WAL means the local database lost commits the replica has, and starts a new generation
 * (see WalEngine.sourceFor and Replicator).
 */

/** Default Litestream v0.3 meta directory: `<dir>/.<base>-litestream`. */
export function defaultLitestreamMetaPath(dbPath: string): string {
  return path.join(path.dirname(dbPath), `.${path.basename(dbPath)}-litestream`);
}

export type LitestreamLookup =
  /** No Litestream generation there (no meta directory, no or an invalid `generation` file). */
  | { readonly kind: 'none' }
  /** A generation walship cannot continue, and why (logged as the new generation's reason). */
  | { readonly kind: 'rejected'; readonly generation: string; readonly reason: string }
  /** The state to continue from, and what to remove from Litestream's directory once it is recorded. */
  | { readonly kind: 'adopted'; readonly state: MetaState; readonly shadowEnd: number; readonly litestreamMetaPath: string };

interface Shadow {
  readonly index: number;
  readonly file: string;
}

const SHADOW_NAME = /^[0-9a-f]{8}\.wal$/;

async function readHeader(fh: fs.FileHandle): Promise<Buffer | undefined> {
  const buf = Buffer.alloc(WAL_HEADER_SIZE);
  return (await readFullAt(fh, buf, 0, WAL_HEADER_SIZE, 0)) === WAL_HEADER_SIZE ? buf : undefined;
}

/** End of the committed frames of a standalone WAL file (a closed shadow). */
async function committedEnd(fh: fs.FileHandle, header: WalHeader): Promise<number> {
  const r = await scanCommittedFrames((b, n, p) => readFullAt(fh, b, 0, n, p), header, WAL_HEADER_SIZE, header.checksum);
  return r.end;
}

async function listShadows(litestreamMetaPath: string, generation: string): Promise<Shadow[]> {
  const dir = path.join(litestreamMetaPath, 'generations', generation, 'wal');
  let names: string[];
  try {
    names = await fs.readdir(dir);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw err;
  }
  return names
    .filter((n) => SHADOW_NAME.test(n))
    .map((n) => ({ index: parseInt(n.slice(0, 8), 16), file: path.join(dir, n) }))
    .sort((a, b) => a.index - b.index);
}

export interface LookupOptions {
  readonly litestreamMetaPath: string;
  /** walship's meta directory (spill files are copied there; it may be the same directory). */
  readonly metaPath: string;
  readonly walPath: string;
  readonly dbDev: number;
  readonly dbIno: number;
  readonly logger: Logger;
}

/**
 * Looks at Litestream's meta directory and decides whether its generation continues.
 * Copies the closed shadow WAL files it adopts into walship's meta directory as spills
 * (not yet fsynced: the caller syncs them before recording the state that names them).
 * @throws file-system errors other than "not found"
 */
export async function lookForLitestream(o: LookupOptions): Promise<LitestreamLookup> {
  let text: string;
  try {
    text = await fs.readFile(path.join(o.litestreamMetaPath, 'generation'), 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT' || (err as NodeJS.ErrnoException).code === 'ENOTDIR') return { kind: 'none' };
    throw err;
  }
  const generation = text.trim();
  if (!isGenerationName(generation)) return { kind: 'none' };
  const reject = (reason: string): LitestreamLookup => ({
    kind: 'rejected',
    generation,
    reason: `litestream generation ${generation} cannot be continued: ${reason}`,
  });

  const shadows = await listShadows(o.litestreamMetaPath, generation);
  const newest = shadows[shadows.length - 1];
  if (!newest) return reject('no shadow wal');
  const name = path.basename(newest.file);

  const shadowFh = await fs.open(newest.file, 'r');
  let headerBytes: Buffer;
  let header: WalHeader;
  let shadowEnd: number;
  let lastFrame: Buffer | undefined;
  try {
    const hb = await readHeader(shadowFh);
    const h = tryParseWalHeader(hb);
    if (!hb || !h) return reject(`short or invalid shadow wal ${name}`);
    headerBytes = hb;
    header = h;
    shadowEnd = frameAlign((await shadowFh.stat()).size, h.pageSize);
    const fsz = frameSize(h.pageSize);
    if (shadowEnd > WAL_HEADER_SIZE) {
      lastFrame = Buffer.alloc(fsz);
      if ((await readFullAt(shadowFh, lastFrame, 0, fsz, shadowEnd - fsz)) !== fsz) return reject(`short read of shadow wal ${name}`);
    }
  } finally {
    await shadowFh.close();
  }

  let walFh: fs.FileHandle;
  try {
    walFh = await fs.open(o.walPath, 'r');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT')
      return reject('no primary wal (the -wal file was removed after litestream stopped)');
    throw err;
  }
  try {
    const real = await readHeader(walFh);
    if (!real?.equals(headerBytes))
      return reject(`the wal was restarted after litestream stopped (its header differs from shadow wal ${name})`);
    const realSize = frameAlign((await walFh.stat()).size, header.pageSize);
    if (realSize < shadowEnd) return reject(`wal truncated (${realSize} bytes, shadow wal ${name} has ${shadowEnd})`);
    if (lastFrame) {
      const got = Buffer.alloc(lastFrame.length);
      const n = await readFullAt(walFh, got, 0, got.length, shadowEnd - got.length);
      if (n !== got.length || !got.equals(lastFrame))
        return reject(`wal overwritten (its frame at ${shadowEnd - got.length} differs from shadow wal ${name})`);
    }
  } finally {
    await walFh.close();
  }

  // Closed indexes right below the newest one whose shadow is still there: kept tails for
  // replicas that have not finished them (Litestream deletes a shadow once every replica has it).
  const spills: SpillRecord[] = [];
  let prevIndexEnd: number | undefined;
  for (let i = shadows.length - 2, want = newest.index - 1; i >= 0 && shadows[i]!.index === want; i--, want--) {
    const s = shadows[i]!;
    const fh = await fs.open(s.file, 'r');
    let end: number;
    try {
      const h = tryParseWalHeader(await readHeader(fh));
      if (!h || h.pageSize !== header.pageSize) break;
      end = await committedEnd(fh, h);
      if (end !== frameAlign((await fh.stat()).size, h.pageSize)) {
        o.logger.warn('litestream shadow wal does not end on a commit; not kept', { file: s.file, end });
        break;
      }
    } finally {
      await fh.close();
    }
    const dest = spillFile(o.metaPath, generation, s.index);
    if (path.resolve(dest) !== path.resolve(s.file)) {
      await fs.mkdir(path.dirname(dest), { recursive: true, mode: 0o700 });
      await fs.copyFile(s.file, dest);
    }
    spills.unshift({ index: s.index, start: 0, end });
    if (s.index === newest.index - 1) prevIndexEnd = end;
  }

  const state: MetaState = {
    version: 1,
    generation,
    index: newest.index,
    walHeader: headerBytes.toString('hex'),
    pageSize: header.pageSize,
    dbDev: o.dbDev,
    dbIno: o.dbIno,
    spills,
    prevIndexEnd,
  };
  return { kind: 'adopted', state, shadowEnd, litestreamMetaPath: o.litestreamMetaPath };
}

/**
 * After walship recorded the adopted state: Litestream's `generation` file is removed (as
 * Litestream itself does when it cannot continue a generation), so a Litestream started on the
 * database later begins a new generation instead of continuing one walship has moved on.
 * When both tools share one meta directory, walship's own files replace Litestream's and only
 * the newest shadow WAL (not a walship file) is removed.
 */
export async function retireLitestreamMeta(adopted: Extract<LitestreamLookup, { kind: 'adopted' }>, metaPath: string): Promise<void> {
  const shared = path.resolve(adopted.litestreamMetaPath) === path.resolve(metaPath);
  const { generation, index } = adopted.state;
  if (shared) {
    await fs.rm(spillFile(metaPath, generation, index), { force: true });
    return;
  }
  await fs.rm(path.join(adopted.litestreamMetaPath, 'generation'), { force: true });
}

/**
 * On a start with walship state: a Litestream `generation` file (in a meta directory of its
 * own) still naming walship's generation means walship took it over and was killed before
 * {@link retireLitestreamMeta}; it is removed now.
 */
export async function retireLeftoverLitestreamGeneration(litestreamMetaPath: string, metaPath: string, generation: string): Promise<void> {
  if (path.resolve(litestreamMetaPath) === path.resolve(metaPath)) return;
  const file = path.join(litestreamMetaPath, 'generation');
  const text = await fs.readFile(file, 'utf8').catch(() => undefined);
  if (text?.trim() === generation) await fs.rm(file, { force: true });
}
