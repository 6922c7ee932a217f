import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readdir, rm } from 'node:fs/promises';
import type { Socket } from 'node:net';
import path from 'node:path';
import type { Logger } from '../logger.js';

/** Who owns temporary files beside an output: a restore, or a follower (`Follower`). */
export type TempKind = 'restore' | 'follow';

/**
 * Temporary files of a restore all start with `.<base>.walship-restore-<pid>-<random>` in the
 * output's directory: the database being built, its `-wal`/`-shm` while it is verified, and the
 * spill file of large transactions; a follower's with `.<base>.walship-follow-<pid>-<random>`
 * (the restored copy, the batch file). The pid lets a later restore or follower recognise
 * leftovers of a dead one.
 */
export function tempPrefix(outputPath: string, kind: TempKind = 'restore'): string {
  return `.${path.basename(outputPath)}.walship-${kind}-${process.pid}-${randomBytes(6).toString('hex')}`;
}

const STALE_RE = /^\.(.+)\.walship-(restore|follow)-(\d+)-[0-9a-f]+/;

function processAlive(pid: number): boolean {
  if (pid === process.pid) return true;
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as { code?: string }).code === 'EPERM';
  }
}

/**
 * Removes `.<base>.walship-<kind>-<pid>-*` files in `dir` left by restores (or followers) whose
 * process no longer exists (a restore's janitor normally removes them; this covers a janitor
 * that died too, and followers, which have none). Returns the names removed.
 */
export async function removeStaleTempFiles(outputPath: string, logger?: Logger, kind: TempKind = 'restore'): Promise<string[]> {
  const dir = path.dirname(outputPath);
  const base = path.basename(outputPath);
  let names: string[];
  try {
    names = await readdir(dir);
  } catch {
    return [];
  }
  const removed: string[] = [];
  for (const name of names) {
    const m = STALE_RE.exec(name);
    if (!m || m[1] !== base || m[2] !== kind) continue;
    if (processAlive(Number(m[3]))) continue;
    try {
      await rm(path.join(dir, name), { force: true, recursive: true });
      removed.push(name);
    } catch (err) {
      logger?.warn(`cannot remove stale ${kind === 'restore' ? 'restore' : 'follower'} file`, {
        file: path.join(dir, name),
        error: String(err),
      });
    }
  }
  if (removed.length > 0)
    logger?.info(`removed files of an interrupted ${kind === 'restore' ? 'restore' : 'follower'}`, { dir, files: removed });
  return removed;
}

/** Removes every file in `dir` whose name starts with `prefix`. */
export async function removeTempFiles(dir: string, prefix: string): Promise<void> {
  let names: string[];
  try {
    names = await readdir(dir);
  } catch {
    return;
  }
  await Promise.all(
    names.filter((n) => n.startsWith(prefix)).map((n) => rm(path.join(dir, n), { force: true, recursive: true }).catch(() => {})),
  );
}

// The janitor: a detached node process holding a pipe to the parent. When the pipe closes
// without "done" (the parent died, even by SIGKILL), it deletes the temp files and exits.
const JANITOR_SCRIPT = `
const fs = require('fs'), path = require('path');
const dir = process.argv[1], prefix = process.argv[2];
let buf = '';
let finished = false;
function clean() {
  if (finished) return;
  finished = true;
  for (let attempt = 0; attempt < 3; attempt++) {
    let left = 0;
    try {
      for (const n of fs.readdirSync(dir)) {
        if (!n.startsWith(prefix)) continue;
        try { fs.rmSync(path.join(dir, n), { force: true, recursive: true }); } catch { left++; }
      }
    } catch {}
    if (left === 0) break;
  }
  process.exit(0);
}
process.stdin.on('data', (d) => { buf += d; if (buf.includes('done')) { finished = true; process.exit(0); } });
process.stdin.on('end', clean);
process.stdin.on('close', clean);
process.stdin.on('error', clean);
process.on('SIGTERM', clean);
process.on('SIGINT', () => {});
process.on('SIGHUP', () => {});
`;

/** Handle of a running janitor. */
export interface Janitor {
  /** Tells the janitor the parent cleaned up itself; it exits without deleting anything. */
  release(): void;
}

/**
 * Starts the janitor for temp files `dir/prefix*`. Resolves once it is running; on failure
 * logs a warning and returns a no-op handle (the stale-file sweep at the next restore remains).
 */
export async function startJanitor(dir: string, prefix: string, logger: Logger): Promise<Janitor> {
  let child: ChildProcess;
  try {
    child = spawn(process.execPath, ['-e', JANITOR_SCRIPT, dir, prefix], {
      detached: true,
      stdio: ['pipe', 'ignore', 'ignore'],
      windowsHide: true,
      env: { PATH: process.env.PATH ?? '' },
    });
  } catch (err) {
    logger.warn('cannot start restore janitor', { error: String(err) });
    return { release() {} };
  }
  const ok = await new Promise<boolean>((resolve) => {
    child.once('spawn', () => resolve(true));
    child.once('error', (err) => {
      logger.warn('cannot start restore janitor', { error: String(err) });
      resolve(false);
    });
  });
  if (!ok) return { release() {} };
  child.unref();
  const stdin = child.stdin as (Socket & NodeJS.WritableStream) | null;
  stdin?.on('error', () => {});
  stdin?.unref?.();
  let released = false;
  return {
    release() {
      if (released) return;
      released = true;
      try {
        stdin?.end('done\n');
      } catch {
        // The janitor is gone; nothing to tell.
      }
    },
  };
}
