import { randomBytes } from 'node:crypto';
import fsSync, { constants as fsc } from 'node:fs';
import fs from 'node:fs/promises';
import path from 'node:path';
import { getSystemErrorMap } from 'node:util';
import { isWalshipError } from '../errors.js';

/** What to do about a failed local file-system call, by error code. */
const FS_ADVICE: Readonly<Record<string, string>> = {
  ENOSPC: 'free space on that file system',
  EDQUOT: 'free space or raise the disk quota',
  EACCES: 'give the user running walship write access there',
  EPERM: 'give the user running walship write access there',
  EROFS: 'remount it read-write or choose a writable directory',
  EIO: 'check the disk (see the kernel log)',
  EMFILE: 'raise the open-file limit (ulimit -n)',
  ENFILE: 'raise the system-wide open-file limit',
};

/**
 * The problem and what to do, for a failed file-system call:
 * `no space left on device (ENOSPC): free space on that file system`.
 */
function describeFsError(err: unknown): string {
  const e = err as NodeJS.ErrnoException | null | undefined;
  const code = typeof e?.code === 'string' ? e.code : undefined;
  let problem = typeof e?.errno === 'number' ? getSystemErrorMap().get(e.errno)?.[1] : undefined;
  if (!problem) {
    // Node's own wording, without its code prefix and its ", syscall 'path'" suffix.
    const first = e instanceof Error ? (e.message.split('\n')[0] ?? '') : String(err);
    problem = first.replace(/^[A-Z][A-Z0-9_]+: /, '').replace(/, [a-z_]+(?: '[^']*')?(?: -> '[^']*')?$/, '') || 'unknown error';
  }
  const advice = code !== undefined ? FS_ADVICE[code] : undefined;
  return `${problem}${code !== undefined ? ` (${code})` : ''}${advice ? `: ${advice}` : ''}`;
}

const wrappedFsErrors = new WeakSet<object>();

/**
 * A failed file-system call as one line saying what failed, the problem and what to do:
 * `<what>: no space left on device (ENOSPC): free space on that file system`. The original
 * error is the `cause`, and its `code`, `errno`, `syscall` and `path` are kept, so callers that
 * match on `code` see no difference. walship's own errors, errors already described this way
 * and errors that are not system errors (no string `code`) are returned unchanged.
 */
export function fileSystemError(what: string, err: unknown): unknown {
  if (isWalshipError(err) || !(err instanceof Error) || wrappedFsErrors.has(err)) return err;
  const e = err as NodeJS.ErrnoException;
  if (typeof e.code !== 'string') return err;
  const out: NodeJS.ErrnoException = new Error(`${what}: ${describeFsError(err)}`, { cause: err });
  out.code = e.code;
  if (e.errno !== undefined) out.errno = e.errno;
  if (e.syscall !== undefined) out.syscall = e.syscall;
  if (e.path !== undefined) out.path = e.path;
  wrappedFsErrors.add(out);
  return out;
}

/** fsyncs a directory so a rename or create inside it is durable. */
export async function fsyncDir(dir: string): Promise<void> {
  let fh: fs.FileHandle | undefined;
  try {
    fh = await fs.open(dir, fsc.O_RDONLY | fsc.O_DIRECTORY);
    await fh.sync();
  } catch (err) {
    // Some file systems refuse fsync on directories; durability then rests on the file fsync.
    if ((err as NodeJS.ErrnoException).code !== 'EINVAL' && (err as NodeJS.ErrnoException).code !== 'EISDIR') throw err;
  } finally {
    await fh?.close();
  }
}

/**
 * Writes `data` to `file` atomically: temp file in the same directory, fsync, rename, fsync dir.
 * A crash leaves either the old or the new content, never a torn file.
 * @param what what the file holds, for the error message (`cannot write <what> to <file>: …`)
 * @param stillCurrent checked right before the rename: false drops this write (a newer one
 *   replaced the file meanwhile) and resolves false
 * @throws the file-system error, described by {@link fileSystemError}; the temp file is removed
 */
export async function writeFileAtomic(
  file: string,
  data: string | Uint8Array,
  mode = 0o600,
  what?: string,
  stillCurrent?: () => boolean,
): Promise<boolean> {
  const dir = path.dirname(file);
  const tmp = path.join(dir, `.${path.basename(file)}.${randomBytes(4).toString('hex')}.tmp`);
  try {
    const fh = await fs.open(tmp, 'w', mode);
    try {
      await fh.writeFile(data);
      await fh.sync();
    } catch (err) {
      await fh.close().catch(() => {});
      await fs.rm(tmp, { force: true }).catch(() => {});
      throw err;
    }
    await fh.close();
    // Superseded while it was being written (a newer write of the same file went first): the
    // newer content stays. The check and the rename run with no await between them.
    if (stillCurrent && !stillCurrent()) {
      await fs.rm(tmp, { force: true }).catch(() => {});
      return false;
    }
    try {
      fsSync.renameSync(tmp, file);
    } catch (err) {
      await fs.rm(tmp, { force: true }).catch(() => {});
      throw err;
    }
    await fsyncDir(dir);
    return true;
  } catch (err) {
    throw fileSystemError(`cannot write ${what ? `${what} to ` : ''}${file}`, err);
  }
}

/** Writes `length` bytes of `buf` from `offset` at `position`, however many calls that takes. */
export async function writeFullAt(fh: fs.FileHandle, buf: Uint8Array, offset: number, length: number, position: number): Promise<void> {
  let done = 0;
  while (done < length) done += (await fh.write(buf, offset + done, length - done, position + done)).bytesWritten;
}

/** Reads exactly `length` bytes at `position` unless EOF comes first; returns bytes read. */
export async function readFullAt(fh: fs.FileHandle, buf: Uint8Array, offset: number, length: number, position: number): Promise<number> {
  let done = 0;
  while (done < length) {
    const { bytesRead } = await fh.read(buf, offset + done, length - done, position + done);
    if (bytesRead === 0) break;
    done += bytesRead;
  }
  return done;
}

export async function statOrUndefined(p: string): Promise<import('node:fs').Stats | undefined> {
  try {
    return await fs.stat(p);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
}

/** Synchronous {@link writeFullAt} on a descriptor (for worker threads and short synchronous steps). */
export function writeFullAtSync(fd: number, buf: Uint8Array, offset: number, length: number, position: number): void {
  let done = 0;
  while (done < length) done += fsSync.writeSync(fd, buf, offset + done, length - done, position + done);
}

/** Synchronous {@link readFullAt} on a descriptor: exactly `length` bytes unless EOF comes first; returns bytes read. */
export function readFullAtSync(fd: number, buf: Uint8Array, offset: number, length: number, position: number): number {
  let done = 0;
  while (done < length) {
    const n = fsSync.readSync(fd, buf, offset + done, length - done, position + done);
    if (n === 0) break;
    done += n;
  }
  return done;
}

/** True unless `p` is known not to exist (an lstat error other than ENOENT counts as existing, as Litestream's checks do). */
export async function pathExists(p: string): Promise<boolean> {
  try {
    await fs.lstat(p);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code !== 'ENOENT';
  }
}

/** Synchronous directory fsync (see fsyncDir). */
export function fsyncDirSync(dir: string): void {
  let fd: number | undefined;
  try {
    fd = fsSync.openSync(dir, fsc.O_RDONLY | fsc.O_DIRECTORY);
    fsSync.fsyncSync(fd);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code !== 'EINVAL' && code !== 'EISDIR') throw err;
  } finally {
    if (fd !== undefined) fsSync.closeSync(fd);
  }
}

const SLEEP_CELL = new Int32Array(new SharedArrayBuffer(4));

/** Blocks the thread for `ms` (only for short waits where an await is not allowed). */
export function sleepSync(ms: number): void {
  Atomics.wait(SLEEP_CELL, 0, 0, ms);
}
