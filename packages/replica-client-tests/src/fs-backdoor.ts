import { mkdir, open, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import type { StoreBackdoor } from './types.js';

function code(err: unknown): unknown {
  return (err as { code?: unknown } | null)?.code;
}

function isMissing(err: unknown): boolean {
  return code(err) === 'ENOENT' || code(err) === 'ENOTDIR';
}

function toFsPath(root: string, key: string): string {
  const parts = key.split('/');
  if (key === '' || parts.some((p) => p === '' || p === '.' || p === '..')) {
    throw new RangeError(`invalid store key: ${JSON.stringify(key)}`);
  }
  return path.join(root, ...parts);
}

/** Options of {@link fileSystemBackdoor}. */
export interface FileSystemBackdoorOptions {
  /**
   * Resolution of the creation times the client reports, in ms (see
   * `StoreBackdoor.timeResolutionMs`). Default `1`: the client reports the file's mtime as
   * `node:fs` does. Use `1000` when the client reads mtimes through a protocol with whole
   * seconds (SFTP).
   */
  timeResolutionMs?: number;
}

/**
 * A {@link StoreBackdoor} over a local directory with plain `node:fs`: for clients that store
 * objects as files (walship's `file` backend, an SFTP server serving a local directory, …).
 * Keys map to files under `root` (OS separators); folders are not keys. `root` need not exist.
 * `statKey` reports the file's size and mtime.
 */
export function fileSystemBackdoor(root: string, options: FileSystemBackdoorOptions = {}): StoreBackdoor {
  const base = path.resolve(root);

  async function walk(dir: string, prefix: string, out: string[]): Promise<void> {
    let entries;
    try {
      entries = await readdir(dir, { withFileTypes: true });
    } catch (err) {
      if (code(err) === 'ENOENT' && prefix === '') return;
      throw err;
    }
    for (const entry of entries) {
      const key = prefix + entry.name;
      if (entry.isDirectory()) await walk(path.join(dir, entry.name), `${key}/`, out);
      else out.push(key);
    }
  }

  return {
    timeResolutionMs: options.timeResolutionMs ?? 1,
    async listKeys() {
      const out: string[] = [];
      await walk(base, '', out);
      return out;
    },
    async readKey(key) {
      try {
        return await readFile(toFsPath(base, key));
      } catch (err) {
        if (isMissing(err)) return undefined;
        throw err;
      }
    },
    async openKey(key) {
      try {
        const handle = await open(toFsPath(base, key), 'r');
        return handle.createReadStream();
      } catch (err) {
        if (isMissing(err)) return undefined;
        throw err;
      }
    },
    async statKey(key) {
      try {
        const st = await stat(toFsPath(base, key));
        return st.isFile() ? { size: st.size, createdAt: st.mtime } : undefined;
      } catch (err) {
        if (isMissing(err)) return undefined;
        throw err;
      }
    },
    async writeKey(key, body) {
      const file = toFsPath(base, key);
      await mkdir(path.dirname(file), { recursive: true });
      await writeFile(file, body);
    },
    async cleanup() {
      await rm(base, { recursive: true, force: true });
    },
  };
}
