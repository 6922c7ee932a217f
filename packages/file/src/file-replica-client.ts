import { randomBytes } from 'node:crypto';
import type { Stats } from 'node:fs';
import { link, mkdir, open, readdir, readFile, rename, rm, stat, unlink } from 'node:fs/promises';
import type { FileHandle } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import type { Readable } from 'node:stream';
import { getSystemErrorMap } from 'node:util';
import { BackendError, ConfigError, NotFoundError, isWalshipError } from '@walship/core';
import {
  findDatabases,
  formatHex8,
  isGenerationName,
  layout,
  leaseDirKey,
  normalizeSubPath,
  readSequencedLease,
  writeSequencedLease,
  parseSnapshotFileName,
  parseWalSegmentFileName,
} from '@walship/core/backend';
import { chunkRecycler } from '@walship/core/format';
import type { Pos, ReplicaClient, ReplicaClientCapabilities, SnapshotInfo, StoredLease, WALSegmentInfo } from '@walship/core';
import type { LeaseDirectory } from '@walship/core/backend';

/** Options of {@link FileReplicaClient}. */
export interface FileReplicaClientOptions {
  /**
   * Directory holding the replica (`<path>/generations/…`). A leading `~` is expanded to the
   * home directory; a relative path is resolved against the working directory. Created on the
   * first write.
   */
  path: string;
}

/** Mode of directories the client creates (before umask), as Litestream without a DB to copy from. */
const DIR_MODE = 0o700;
/** Mode of files the client creates (before umask). */
const FILE_MODE = 0o600;
/** Concurrent stat/unlink calls while listing or deleting many files. */
const FS_CONCURRENCY = 32;

/** Error codes that retrying will not fix. */
const PERMANENT_CODES = new Set(['EACCES', 'EPERM', 'EROFS', 'ENOTDIR', 'EISDIR', 'ELOOP', 'ENAMETOOLONG', 'EEXIST', 'EINVAL']);

function errCode(err: unknown): string | undefined {
  const c = (err as { code?: unknown } | null)?.code;
  return typeof c === 'string' ? c : undefined;
}

/** What to do when a file-system call on the replica directory fails with this code. */
const ADVICE: Readonly<Record<string, string>> = {
  ENOSPC: 'free space on that file system',
  EDQUOT: 'free space or raise the disk quota',
  EACCES: 'give the user running walship access to the replica directory',
  EPERM: 'give the user running walship access to the replica directory',
  EROFS: 'remount it read-write or choose another replica path',
};

/**
 * `no space left on device (ENOSPC): free space on that file system` for a system error
 * (Node's own text minus its code prefix and syscall suffix); the first line of anything else.
 */
function describe(err: unknown): string {
  const first = err instanceof Error ? (err.message.split('\n')[0] ?? '') : String(err);
  const code = errCode(err);
  const errno = (err as { errno?: unknown } | null)?.errno;
  if (code === undefined || typeof errno !== 'number') return first;
  const problem = getSystemErrorMap().get(errno)?.[1] ?? first.replace(/^[A-Z0-9_]+: /, '').replace(/, [a-z_]+( '.*')?$/, '');
  const advice = ADVICE[code];
  return `${problem} (${code})${advice ? `: ${advice}` : ''}`;
}

function backendError(action: string, target: string, err: unknown): BackendError {
  if (isWalshipError(err, 'WALSHIP_BACKEND')) return err;
  const detail = describe(err);
  const code = errCode(err);
  return new BackendError(`file replica: cannot ${action} ${target}: ${detail}`, {
    cause: err,
    retryable: code === undefined || !PERMANENT_CODES.has(code),
  });
}

/** `~` and `~/…` expanded to the home directory, then made absolute. */
export function expandFileReplicaPath(p: string): string {
  let expanded = p;
  if (p === '~') expanded = os.homedir();
  else if (p.startsWith('~/') || p.startsWith(`~${path.sep}`)) expanded = path.join(os.homedir(), p.slice(2));
  return path.resolve(expanded);
}

/** Regular files and symlinks (resolved by the stat that follows); never directories. */
function isFileLike(entry: { isFile(): boolean; isSymbolicLink(): boolean }): boolean {
  return entry.isFile() || entry.isSymbolicLink();
}

async function mapLimit<T>(items: readonly T[], limit: number, fn: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  let failed = false;
  async function worker(): Promise<void> {
    while (!failed && next < items.length) {
      const item = items[next++]!;
      try {
        await fn(item);
      } catch (err) {
        failed = true;
        throw err;
      }
    }
  }
  const results = await Promise.allSettled(Array.from({ length: Math.min(limit, items.length) }, () => worker()));
  const rejected = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
  if (rejected) throw rejected.reason;
}

/**
 * A walship replica stored in a local directory, in Litestream v0.3's layout:
 *
 *     <path>/generations/<generation>/snapshots/<index %08x>.snapshot.lz4
 *     <path>/generations/<generation>/wal/<index %08x>_<offset %08x>.wal.lz4
 *
 * Writes are atomic: the body is streamed to `<final>.tmp-<random>` in the same directory,
 * fsynced, closed, renamed onto the final name, and the directory is fsynced; on any error the
 * temporary file is removed. Listings report size = bytes on disk and createdAt = mtime, and
 * skip anything whose name does not parse (temporary files included).
 *
 * Errors: `InvalidArgumentError` for an empty generation (Litestream's messages),
 * `NotFoundError` from the readers when the file does not exist, `BackendError` for every
 * other file-system failure (`retryable` is false for EACCES, EPERM, EROFS, ENOTDIR, …).
 */
export class FileReplicaClient implements ReplicaClient {
  readonly type = 'file';
  readonly capabilities: ReplicaClientCapabilities = { batchDelete: false, maxConcurrency: 16, leases: true };
  /** Absolute replica directory. */
  readonly path: string;

  /** @throws ConfigError `file replica path required` when `path` is empty */
  constructor(options: FileReplicaClientOptions) {
    const p = options?.path;
    if (typeof p !== 'string' || p === '') throw new ConfigError('file replica path required');
    this.path = expandFileReplicaPath(p);
  }

  // -- path helpers (OS paths; each throws InvalidArgumentError for an empty generation) ----

  private resolve(key: string): string {
    return path.join(this.path, ...key.split('/'));
  }

  /** `<path>/generations` */
  generationsDir(): string {
    return this.resolve(layout.generations(''));
  }

  /** `<path>/generations/<generation>` */
  generationDir(generation: string): string {
    return this.resolve(layout.generation('', generation));
  }

  /** `<path>/generations/<generation>/snapshots` */
  snapshotsDir(generation: string): string {
    return this.resolve(layout.snapshots('', generation));
  }

  /** `<path>/generations/<generation>/snapshots/<index %08x>.snapshot.lz4` */
  snapshotPath(generation: string, index: number): string {
    return this.resolve(layout.snapshot('', generation, index));
  }

  /** `<path>/generations/<generation>/wal` */
  walDir(generation: string): string {
    return this.resolve(layout.wal('', generation));
  }

  /** `<path>/generations/<generation>/wal/<index %08x>_<offset %08x>.wal.lz4` */
  walSegmentPath(generation: string, index: number, offset: number): string {
    return this.resolve(layout.walSegment('', generation, index, offset));
  }

  // -- ReplicaClient ------------------------------------------------------------------------

  async generations(): Promise<string[]> {
    const dir = this.generationsDir();
    const entries = await this.readDir(dir);
    return entries
      .filter((e) => e.isDirectory() && isGenerationName(e.name))
      .map((e) => e.name)
      .sort();
  }

  async deleteGeneration(generation: string): Promise<void> {
    const dir = this.generationDir(generation);
    try {
      await rm(dir, { recursive: true, force: true });
    } catch (err) {
      throw backendError('delete generation', dir, err);
    }
  }

  async snapshots(generation: string): Promise<SnapshotInfo[]> {
    const dir = this.snapshotsDir(generation);
    const found: Array<{ name: string; index: number }> = [];
    for (const entry of await this.readDir(dir)) {
      const parsed = isFileLike(entry) ? parseSnapshotFileName(entry.name) : undefined;
      if (parsed) found.push({ name: entry.name, index: parsed.index });
    }
    const out: SnapshotInfo[] = [];
    await mapLimit(found, FS_CONCURRENCY, async ({ name, index }) => {
      const st = await this.statListed(path.join(dir, name));
      if (st) out.push({ generation, index, size: st.size, createdAt: st.mtime });
    });
    return out.sort((a, b) => a.index - b.index);
  }

  async writeSnapshot(generation: string, index: number, body: Readable): Promise<SnapshotInfo> {
    const file = this.snapshotPath(generation, index);
    // A snapshot streams the whole database: hand every chunk back once written, so the
    // encoder reuses its buffers instead of allocating a new one per block.
    const st = await this.writeAtomic(file, body, chunkRecycler(body));
    return { generation, index, size: st.size, createdAt: st.mtime };
  }

  async snapshotReader(generation: string, index: number): Promise<Readable> {
    const file = this.snapshotPath(generation, index);
    return this.openReader(file, `snapshot ${generation}/${formatHex8(index)}`);
  }

  async deleteSnapshot(generation: string, index: number): Promise<void> {
    await this.removeFile(this.snapshotPath(generation, index));
  }

  async walSegments(generation: string): Promise<WALSegmentInfo[]> {
    const dir = this.walDir(generation);
    const found: Array<{ name: string; index: number; offset: number }> = [];
    for (const entry of await this.readDir(dir)) {
      const parsed = isFileLike(entry) ? parseWalSegmentFileName(entry.name) : undefined;
      if (parsed) found.push({ name: entry.name, ...parsed });
    }
    const out: WALSegmentInfo[] = [];
    await mapLimit(found, FS_CONCURRENCY, async ({ name, index, offset }) => {
      const st = await this.statListed(path.join(dir, name));
      if (st) out.push({ generation, index, offset, size: st.size, createdAt: st.mtime });
    });
    return out.sort((a, b) => a.index - b.index || a.offset - b.offset);
  }

  async writeWALSegment(pos: Pos, body: Readable): Promise<WALSegmentInfo> {
    const file = this.walSegmentPath(pos.generation, pos.index, pos.offset);
    const st = await this.writeAtomic(file, body);
    return { generation: pos.generation, index: pos.index, offset: pos.offset, size: st.size, createdAt: st.mtime };
  }

  async walSegmentReader(pos: Pos): Promise<Readable> {
    const file = this.walSegmentPath(pos.generation, pos.index, pos.offset);
    return this.openReader(file, `wal segment ${pos.generation}/${formatHex8(pos.index)}:${pos.offset}`);
  }

  async deleteWALSegments(positions: readonly Pos[]): Promise<void> {
    // Validate every position before deleting anything.
    const files = positions.map((p) => this.walSegmentPath(p.generation, p.index, p.offset));
    await mapLimit(files, FS_CONCURRENCY, (f) => this.removeFile(f));
  }

  /** `<path>/walship-lease`: the lease's entries (see `writeSequencedLease`). */
  leaseDir(): string {
    return this.resolve(leaseDirKey(''));
  }

  /** The replica's lease: the highest `<path>/walship-lease/<seq>.json`. */
  async readLease(): Promise<StoredLease | undefined> {
    return readSequencedLease(this.leaseDirectory());
  }

  /** Conditional lease write by exclusive create (`link`) of the next sequence number. */
  async writeLease(body: string, ifVersion: string | null): Promise<string | null> {
    return writeSequencedLease(this.leaseDirectory(), body, ifVersion);
  }

  /**
   * A client rooted at `<path>/<subPath>` (checked and cleaned with `normalizeSubPath`), for
   * directory replication. No I/O; the directory is created on the first write.
   * @throws InvalidArgumentError when `subPath` is empty, absolute, or has `.`/`..` segments
   */
  scoped(subPath: string): FileReplicaClient {
    return new FileReplicaClient({ path: path.join(this.path, ...normalizeSubPath(subPath).split('/')) });
  }

  /**
   * Relative paths `P` (`/`-separated) whose `<path>/P/generations/` holds a valid generation,
   * sorted; [] when the directory does not exist. Symbolic links are not followed.
   */
  async databases(): Promise<string[]> {
    return findDatabases({
      listFolders: async (rel) => (await this.readDir(this.resolve(rel))).filter((e) => e.isDirectory()).map((e) => e.name),
      hasGenerations: async (rel) => (await this.scoped(rel).generations()).length > 0,
      concurrency: FS_CONCURRENCY,
    });
  }

  /** Nothing to release; present for symmetry. Idempotent. */
  async close(): Promise<void> {}

  // -- internals ----------------------------------------------------------------------------

  private leaseDirectory(): LeaseDirectory {
    const dir = this.leaseDir();
    return {
      list: async () => (await this.readDir(dir)).filter(isFileLike).map((e) => e.name),
      read: async (name) => {
        const file = path.join(dir, name);
        try {
          return await readFile(file, 'utf8');
        } catch (err) {
          if (errCode(err) === 'ENOENT') return undefined;
          throw backendError('read', file, err);
        }
      },
      createExclusive: (name, body) => this.createExclusive(path.join(dir, name), body),
      remove: (name) => this.removeFile(path.join(dir, name)),
    };
  }

  /**
   * Creates `file` with `body` only if it does not exist: the body goes to a fsynced temporary
   * file, which is then hard-linked onto the name (link fails with EEXIST, atomically, when the
   * name exists). File systems without hard links get an exclusive open instead (`wx`), whose
   * content a concurrent reader may see half-written. Resolves false when `file` exists.
   */
  private async createExclusive(file: string, body: string): Promise<boolean> {
    const dir = path.dirname(file);
    try {
      await mkdir(dir, { recursive: true, mode: DIR_MODE });
    } catch (err) {
      throw backendError('create directory', dir, err);
    }
    const tmp = `${file}.tmp-${randomBytes(6).toString('hex')}`;
    const writeFile = async (target: string, flags: string): Promise<void> => {
      const fh = await open(target, flags, FILE_MODE);
      try {
        await this.writeFully(fh, Buffer.from(body), target);
        await fh.sync();
      } finally {
        await fh.close();
      }
    };
    try {
      await writeFile(tmp, 'wx');
      try {
        await link(tmp, file);
      } catch (err) {
        const code = errCode(err);
        if (code === 'EEXIST') return false;
        if (code !== 'EPERM' && code !== 'ENOTSUP' && code !== 'EOPNOTSUPP' && code !== 'ENOSYS') throw err;
        try {
          await writeFile(file, 'wx');
        } catch (err2) {
          if (errCode(err2) === 'EEXIST') return false;
          throw err2;
        }
      }
    } catch (err) {
      throw backendError('write', file, err);
    } finally {
      await rm(tmp, { force: true }).catch(() => {});
    }
    await this.syncDir(dir);
    return true;
  }

  /** Directory entries; empty when the directory does not exist. */
  private async readDir(dir: string) {
    try {
      return await readdir(dir, { withFileTypes: true });
    } catch (err) {
      if (errCode(err) === 'ENOENT') return [];
      throw backendError('list', dir, err);
    }
  }

  /** stat of a listed file; undefined when it vanished since the directory was read or is not a file. */
  private async statListed(file: string): Promise<Stats | undefined> {
    try {
      const st = await stat(file);
      return st.isFile() ? st : undefined;
    } catch (err) {
      if (errCode(err) === 'ENOENT') return undefined;
      throw backendError('stat', file, err);
    }
  }

  private async removeFile(file: string): Promise<void> {
    try {
      await unlink(file);
    } catch (err) {
      if (errCode(err) === 'ENOENT') return;
      throw backendError('delete', file, err);
    }
  }

  private async openReader(file: string, what: string): Promise<Readable> {
    let fh: FileHandle;
    try {
      fh = await open(file, 'r');
    } catch (err) {
      if (errCode(err) === 'ENOENT') throw new NotFoundError(`${what} not found: ${file}`, { cause: err });
      throw backendError('open', file, err);
    }
    try {
      const st = await fh.stat();
      if (!st.isFile()) throw new BackendError(`file replica: cannot read ${file}: not a regular file`, { retryable: false });
    } catch (err) {
      await fh.close().catch(() => {});
      throw backendError('stat', file, err);
    }
    return fh.createReadStream({ autoClose: true, highWaterMark: 1024 * 1024 });
  }

  /**
   * Streams `body` to a temporary file next to `file`, fsyncs and renames it onto `file`, then
   * fsyncs the directory. Returns the stats of the written file. `release`, when given, gets
   * every chunk back once its bytes are written (see `chunkRecycler`).
   */
  private async writeAtomic(file: string, body: Readable, release?: (chunk: Uint8Array) => void): Promise<Stats> {
    const dir = path.dirname(file);
    try {
      await mkdir(dir, { recursive: true, mode: DIR_MODE });
    } catch (err) {
      throw backendError('create directory', dir, err);
    }
    const tmp = `${file}.tmp-${randomBytes(6).toString('hex')}`;
    let fh: FileHandle;
    try {
      fh = await open(tmp, 'wx', FILE_MODE);
    } catch (err) {
      throw backendError('write', file, err);
    }
    let closed = false;
    try {
      // Errors of the body are rethrown as they are; file-system errors become BackendError.
      for await (const chunk of body) {
        const buf: Uint8Array = typeof chunk === 'string' ? Buffer.from(chunk) : (chunk as Uint8Array);
        await this.writeFully(fh, buf, file);
        release?.(buf);
      }
      let st: Stats;
      try {
        await fh.sync();
        st = await fh.stat();
        closed = true;
        await fh.close();
        await rename(tmp, file);
      } catch (err) {
        throw backendError('write', file, err);
      }
      await this.syncDir(dir);
      return st;
    } catch (err) {
      if (!closed) await fh.close().catch(() => {});
      await rm(tmp, { force: true }).catch(() => {});
      throw err;
    }
  }

  private async writeFully(fh: FileHandle, buf: Uint8Array, target: string): Promise<void> {
    let offset = 0;
    while (offset < buf.length) {
      let written: number;
      try {
        ({ bytesWritten: written } = await fh.write(buf, offset, buf.length - offset));
      } catch (err) {
        throw backendError('write', target, err);
      }
      offset += written;
    }
  }

  /** fsync a directory so a rename survives a crash. Platforms that cannot open directories skip it. */
  private async syncDir(dir: string): Promise<void> {
    let fh: FileHandle | undefined;
    try {
      fh = await open(dir, 'r');
      await fh.sync();
    } catch (err) {
      const code = errCode(err);
      if (code !== 'EISDIR' && code !== 'EPERM' && code !== 'EINVAL' && code !== 'ENOTSUP' && code !== 'EBADF') {
        throw backendError('sync directory', dir, err);
      }
    } finally {
      await fh?.close().catch(() => {});
    }
  }
}
