import fs from 'node:fs/promises';
import { heldFileHandle } from '../util/held-files.js';

const MAGIC = Buffer.from('SQLite format 3\0', 'latin1');

/** What a candidate file holds, as far as directory replication is concerned. */
export type Probe =
  | { readonly kind: 'database'; readonly walMode: boolean }
  /** Empty or shorter than a header: being created; looked at again when it changes. */
  | { readonly kind: 'pending' }
  | { readonly kind: 'not-sqlite' }
  /** A symbolic link (not probed: SQLite writes the -wal beside the link's target). */
  | { readonly kind: 'symlink' }
  | { readonly kind: 'gone' };

/** Identity of one version of a file: a report is made once per version. */
export interface FileVersion {
  readonly key: string;
}

export async function fileVersion(file: string): Promise<FileVersion | undefined> {
  const st = await fs.stat(file).catch(() => undefined);
  if (!st?.isFile()) return undefined;
  return { key: `${st.dev}:${st.ino}:${st.size}:${st.mtimeMs}` };
}

/**
 * Reads a candidate's 100-byte header. The file is read through a shared descriptor that is
 * never closed (util/held-files.ts): closing a descriptor would drop the POSIX locks the
 * application's own SQLite connections in this process hold on it.
 */
export async function probeDatabase(file: string): Promise<Probe> {
  const st = await fs.stat(file).catch(() => undefined);
  if (!st?.isFile()) return { kind: 'gone' };
  if (st.size < 100) return { kind: 'pending' };
  let fh: fs.FileHandle;
  try {
    fh = await heldFileHandle(file);
  } catch {
    return { kind: 'gone' };
  }
  const header = Buffer.alloc(100);
  const { bytesRead } = await fh.read(header, 0, 100, 0);
  if (bytesRead < 100) return { kind: 'pending' };
  if (!header.subarray(0, 16).equals(MAGIC)) return { kind: 'not-sqlite' };
  // File format write/read versions: 2 in WAL mode, 1 in rollback-journal mode.
  return { kind: 'database', walMode: header[18] === 2 && header[19] === 2 };
}
