import type { Dirent } from 'node:fs';
import fs from 'node:fs/promises';
import path from 'node:path';
import picomatch from 'picomatch';
import { ConfigError } from '../errors.js';

/** Files SQLite and walship keep beside a database, never databases themselves. */
const SIDE_FILE = /(-wal|-shm|-journal|\.tmp)$/;
/** Meta directories (`.<db>-walship`, `.<db>-litestream`) and restore/follow temp folders. */
const META_DIR = /^\..*-(walship|litestream)$/;

/** Matches a database file's base name against the `pattern` glob. */
export type NameMatcher = (name: string) => boolean;

/**
 * Compiles a `pattern` (a glob on file names, e.g. `*.db`, `tenant-*.sqlite`; no `/`).
 * @throws ConfigError when it is empty or holds a `/`
 */
export function compilePattern(pattern: unknown): NameMatcher {
  if (typeof pattern !== 'string' || pattern.trim() === '') {
    throw new ConfigError('pattern required for directory replication: add a glob on file names, e.g. pattern: "*.db"');
  }
  if (pattern.includes('/')) {
    throw new ConfigError(
      `invalid pattern ${JSON.stringify(pattern)}: it matches file names, so it cannot hold "/" (use recursive: true for subdirectories)`,
    );
  }
  const match = picomatch(pattern, { dot: false });
  return (name) => !SIDE_FILE.test(name) && match(name);
}

/** One candidate database found by a scan. */
export interface FoundFile {
  /** Path relative to the scanned root, `/`-separated. */
  readonly relPath: string;
  readonly path: string;
  /** A symbolic link to a regular file (reported, not replicated). */
  readonly symlink?: boolean;
}

/** What one scan saw. */
export interface ScanResult {
  readonly files: Map<string, FoundFile>;
  /** Every directory listed (relative, '' for the root), for watches. */
  readonly dirs: string[];
  /** Directories that could not be read (relative path → error code). */
  readonly unreadable: Map<string, string>;
}

/**
 * Lists the files under `root` whose names match (in subdirectories too with `recursive`),
 * skipping SQLite's and walship's side files, hidden meta directories, and symbolic links to
 * directories (no loops). Regular files count; links to regular files are found and marked
 * (`symlink`), to be reported rather than replicated.
 * @throws the error of reading `root` itself (ENOENT when it is gone)
 */
export async function scanDirectory(root: string, match: NameMatcher, recursive: boolean): Promise<ScanResult> {
  const files = new Map<string, FoundFile>();
  const dirs: string[] = [];
  const unreadable = new Map<string, string>();
  let queue = [''];
  while (queue.length > 0) {
    const next: string[] = [];
    for (const rel of queue) {
      const abs = rel === '' ? root : path.join(root, rel);
      let entries: Dirent[];
      try {
        entries = await fs.readdir(abs, { withFileTypes: true });
      } catch (err) {
        if (rel === '') throw err;
        unreadable.set(rel, (err as NodeJS.ErrnoException).code ?? 'EIO');
        continue;
      }
      dirs.push(rel);
      for (const e of entries) {
        const childRel = rel === '' ? e.name : `${rel}/${e.name}`;
        if (e.isDirectory()) {
          if (recursive && !META_DIR.test(e.name)) next.push(childRel);
          continue;
        }
        if (!match(e.name)) continue;
        if (e.isFile()) files.set(childRel, { relPath: childRel, path: path.join(root, childRel) });
        else if (e.isSymbolicLink()) {
          const st = await fs.stat(path.join(root, childRel)).catch(() => undefined);
          if (st?.isFile()) files.set(childRel, { relPath: childRel, path: path.join(root, childRel), symlink: true });
        }
      }
    }
    queue = next;
  }
  return { files, dirs, unreadable };
}
