import fs from 'node:fs/promises';
import { readFullAt, readFullAtSync } from '../util/fs.js';
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

  /** Synchronous positional read (full length unless EOF). */
  readAtSync(buf: Uint8Array, offset: number, length: number, position: number): number {
    return readFullAtSync(this.handle.fd, buf, offset, length, position);
  }

  readHeaderBytesSync(): Buffer | undefined {
    const buf = Buffer.alloc(WAL_HEADER_SIZE);
    return this.readAtSync(buf, 0, WAL_HEADER_SIZE, 0) === WAL_HEADER_SIZE ? buf : undefined;
  }

  async close(): Promise<void> {
    const fh = this.#fh;
    this.#fh = undefined;
    this.#ino = -1;
    await fh?.close();
  }
}

/**
 * Incremental commit scanner: feed it whole frames from `start` (a frame boundary ≥ 32 whose
 * preceding cumulative checksum is `seed`); it verifies salts and the checksum chain and
 * remembers the end of the last commit frame. Frames after the last commit (a transaction still
 * being written, or rolled back) are not counted.
 */
class CommitScanner {
  readonly fsz: number;
  pos: number;
  #sum: Checksum;
  #commits = 0;
  result: ScanResult;
  constructor(
    readonly header: WalHeader,
    start: number,
    seed: Checksum,
  ) {
    this.fsz = frameSize(header.pageSize);
    this.pos = start;
    this.#sum = seed;
    this.result = { end: start, checksum: seed, dbPages: 0, commits: 0 };
  }
  /** Processes whole frames of buf[0, n); false when the chain ended inside. */
  feed(buf: Buffer, n: number): boolean {
    const whole = Math.floor(n / this.fsz);
    for (let i = 0; i < whole; i++) {
      const at = i * this.fsz;
      const next = verifyFrame(buf, at, this.header.pageSize, this.header, this.#sum);
      if (!next) return false;
      this.#sum = next;
      this.pos += this.fsz;
      const commit = buf.readUInt32BE(at + 4);
      if (commit !== 0) {
        this.#commits++;
        this.result = { end: this.pos, checksum: next, dbPages: commit, commits: this.#commits };
      }
    }
    return true;
  }
}

function chunkFor(header: WalHeader): Buffer {
  const fsz = frameSize(header.pageSize);
  return Buffer.allocUnsafe(Math.max(1, Math.floor(SCAN_CHUNK / fsz)) * fsz);
}

/** Scans committed frames from `start` (see CommitScanner), reading at most `limit` bytes. */
export async function scanCommittedFrames(
  read: (buf: Uint8Array, length: number, position: number) => Promise<number>,
  header: WalHeader,
  start: number,
  seed: Checksum,
  limit = Number.POSITIVE_INFINITY,
): Promise<ScanResult> {
  const sc = new CommitScanner(header, start, seed);
  // Probe one frame first: an idle database is scanned every second and usually has none.
  let buf: Buffer = Buffer.allocUnsafe(sc.fsz);
  for (;;) {
    const want = Math.min(buf.length, Math.floor(Math.max(0, start + limit - sc.pos) / sc.fsz) * sc.fsz);
    if (want <= 0) break;
    const n = await read(buf, want, sc.pos);
    if (!sc.feed(buf, n) || n < want) break;
    if (buf.length === sc.fsz) buf = chunkFor(header);
  }
  return sc.result;
}

/** Synchronous twin of scanCommittedFrames, for use while holding SQLite's write lock. */
export function scanCommittedFramesSync(
  read: (buf: Uint8Array, length: number, position: number) => number,
  header: WalHeader,
  start: number,
  seed: Checksum,
): ScanResult {
  const sc = new CommitScanner(header, start, seed);
  let buf: Buffer = Buffer.allocUnsafe(sc.fsz);
  for (;;) {
    const n = read(buf, buf.length, sc.pos);
    if (!sc.feed(buf, n) || n < buf.length) break;
    if (buf.length === sc.fsz) buf = chunkFor(header);
  }
  return sc.result;
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
