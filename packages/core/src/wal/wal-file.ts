import fs from 'node:fs/promises';
import { readFullAt } from '../util/fs.js';
import type { Checksum } from './checksum.js';
import { frameSize, parseWalHeader, verifyFrame, WAL_HEADER_SIZE, type WalHeader } from './format.js';

const SCAN_CHUNK = 4 * 1024 * 1024;

/** Result of scanning a WAL for committed frames. */
export interface ScanResult {
  /** Offset just past the last valid commit frame (or the start offset when none was found). */
  readonly end: number;
  /** Cumulative checksum at `end`. */
  readonly checksum: Checksum;
  /** Database size in pages from the last commit frame (0 when no commit was found). */
  readonly dbPages: number;
  /** Number of commit frames found. */
  readonly commits: number;
}

/**
 * A `-wal` file opened for reading. Opening and closing WAL descriptors is safe while SQLite
 * connections are open: SQLite holds no POSIX locks on the `-wal` file (they live on `-shm`).
 */
export class WalFile {
  readonly path: string;
  #fh: fs.FileHandle | undefined;
  #ino = -1;

  constructor(walPath: string) {
    this.path = walPath;
  }

  /**
   * (Re)opens the WAL when it is not open or its inode changed. Returns false when the file
   * does not exist.
   */
  async ensureOpen(): Promise<boolean> {
    let st;
    try {
      st = await fs.stat(this.path);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') {
        await this.close();
        return false;
      }
      throw err;
    }
    if (this.#fh && st.ino === this.#ino) return true;
    await this.close();
    this.#fh = await fs.open(this.path, 'r');
    this.#ino = (await this.#fh.stat()).ino;
    return true;
  }

  get handle(): fs.FileHandle {
    if (!this.#fh) throw new Error(`wal file not open: ${this.path}`);
    return this.#fh;
  }

  async size(): Promise<number> {
    return (await this.handle.stat()).size;
  }

  /** Raw 32 header bytes, or undefined when the file is shorter than a header. */
  async readHeaderBytes(): Promise<Buffer | undefined> {
    const buf = Buffer.alloc(WAL_HEADER_SIZE);
    const n = await readFullAt(this.handle, buf, 0, WAL_HEADER_SIZE, 0);
    return n === WAL_HEADER_SIZE ? buf : undefined;
  }

  async readAt(buf: Uint8Array, offset: number, length: number, position: number): Promise<number> {
    return readFullAt(this.handle, buf, offset, length, position);
  }

  async close(): Promise<void> {
    const fh = this.#fh;
    this.#fh = undefined;
    this.#ino = -1;
    await fh?.close();
  }
}

/**
 * Scans frames from `start` (a frame boundary ≥ 32 whose preceding cumulative checksum is
 * `seed`) while they carry the epoch's salts and continue the checksum chain, and returns the
 * end of the last commit frame. Reads at most `limit` bytes past `start` when given. Frames
 * after the last commit (a transaction still being written, or rolled back) are not counted.
 */
export async function scanCommittedFrames(
  read: (buf: Uint8Array, length: number, position: number) => Promise<number>,
  header: WalHeader,
  start: number,
  seed: Checksum,
  limit = Number.POSITIVE_INFINITY,
): Promise<ScanResult> {
  const fsz = frameSize(header.pageSize);
  const framesPerChunk = Math.max(1, Math.floor(SCAN_CHUNK / fsz));
  const buf = Buffer.allocUnsafe(framesPerChunk * fsz);
  let pos = start;
  let sum = seed;
  let result: ScanResult = { end: start, checksum: seed, dbPages: 0, commits: 0 };
  let commits = 0;
  for (;;) {
    const want = Math.min(buf.length, Math.floor(Math.max(0, start + limit - pos) / fsz) * fsz);
    if (want <= 0) break;
    const n = await read(buf, want, pos);
    const whole = Math.floor(n / fsz);
    let i = 0;
    for (; i < whole; i++) {
      const at = i * fsz;
      const next = verifyFrame(buf, at, header.pageSize, header, sum);
      if (!next) return result;
      sum = next;
      pos += fsz;
      const commit = buf.readUInt32BE(at + 4);
      if (commit !== 0) {
        commits++;
        result = { end: pos, checksum: sum, dbPages: commit, commits };
      }
    }
    if (n < want) break;
  }
  return result;
}

/** Reads and parses a WAL header from raw bytes; undefined for a missing/invalid header. */
export function tryParseWalHeader(bytes: Buffer | undefined): WalHeader | undefined {
  if (!bytes) return undefined;
  try {
    return parseWalHeader(bytes);
  } catch {
    return undefined;
  }
}

export { WAL_HEADER_SIZE };
