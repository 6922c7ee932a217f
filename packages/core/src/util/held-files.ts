import fsSync from 'node:fs';
import fs from 'node:fs/promises';

/**
 * Read-only descriptors on files SQLite locks (the database file, its `-shm`), opened once per
 * file (device and inode) and never closed while the process runs.
 *
 * POSIX advisory locks belong to the process: closing any descriptor of a file drops every lock
 * the process holds on it — also those of the application's own SQLite connections in the same
 * process, which walship cannot see. So walship never closes such a descriptor: a stopped and
 * restarted replicator reuses the one it had, and a file that was replaced gets a new one (the
 * old one stays open too, since a connection may still lock the old file).
 */
const handles = new Map<string, Promise<fs.FileHandle>>();
const fds = new Map<string, number>();

function keyOf(st: { dev: number | bigint; ino: number | bigint }): string {
  return `${st.dev}:${st.ino}`;
}

/** A shared, never-closed read-only handle on `path` (do not close it). */
export function heldFileHandle(path: string): Promise<fs.FileHandle> {
  return held(handles, path, 'r');
}

async function held(registry: Map<string, Promise<fs.FileHandle>>, path: string, flags: 'r' | 'r+'): Promise<fs.FileHandle> {
  const key = keyOf(await fs.stat(path));
  let h = registry.get(key);
  if (!h) {
    h = fs.open(path, flags);
    registry.set(key, h);
    h.catch(() => registry.delete(key));
  }
  const fh = await h;
  // The path may have been replaced between the stat and the open: make sure it is this file.
  if (keyOf(await fh.stat()) !== key) return held(registry, path, flags);
  return fh;
}

/** A shared, never-closed read-only descriptor on `path` (do not close it). */
export function heldFd(path: string): number {
  const key = keyOf(fsSync.statSync(path));
  let fd = fds.get(key);
  if (fd === undefined) {
    fd = fsSync.openSync(path, 'r');
    if (keyOf(fsSync.fstatSync(fd)) !== key) {
      fsSync.closeSync(fd); // not the file we looked at; it was replaced in between (no lock of ours on it yet)
      return heldFd(path);
    }
    fds.set(key, fd);
  }
  return fd;
}

const writable = new Map<string, Promise<fs.FileHandle>>();

/**
 * A shared, never-closed read-write handle on `path` (do not close it), for writing a database
 * file that SQLite connections of this process may lock (a follower's output). Same rules as
 * {@link heldFileHandle}.
 */
export function heldWritableFileHandle(path: string): Promise<fs.FileHandle> {
  return held(writable, path, 'r+');
}

/**
 * Closes the held descriptors of files that no longer have a name (deleted, `nlink` 0), so
 * their disk space is freed: no connection can open such a file again, and a connection that
 * still has it open uses a database nobody can reach. Called once a replicator of a deleted
 * database stopped (directory replication deletes and creates databases all the time).
 * Resolves with the number closed.
 */
export async function releaseUnlinkedHeldFiles(): Promise<number> {
  let closed = 0;
  for (const registry of [handles, writable]) {
    for (const [key, p] of [...registry]) {
      const fh = await p.catch(() => undefined);
      const st = fh ? await fh.stat().catch(() => undefined) : undefined;
      if (!fh || !st || st.nlink > 0) continue;
      if (registry.get(key) !== p) continue;
      registry.delete(key);
      await fh.close().catch(() => {});
      closed++;
    }
  }
  for (const [key, fd] of [...fds]) {
    let nlink = 1;
    try {
      nlink = fsSync.fstatSync(fd).nlink;
    } catch {
      continue;
    }
    if (nlink > 0) continue;
    fds.delete(key);
    try {
      fsSync.closeSync(fd);
    } catch {
      // already closed
    }
    closed++;
  }
  return closed;
}
