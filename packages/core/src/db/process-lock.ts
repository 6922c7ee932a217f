import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import Database from 'better-sqlite3';
import { LockedError } from '../errors.js';
import { writeFileAtomic } from '../util/fs.js';

/** Who holds a database's replication lock, as recorded beside it (informational). */
interface LockOwner {
  readonly pid: number;
  readonly host: string;
  readonly startedAt: string;
}

const LOCK_FILE = 'lock';
const OWNER_FILE = 'lock.json';

/**
 * One replicator per database: an exclusive SQLite lock on `<meta>/lock`, held for as long as
 * the replicator runs.
 *
 * The lock is SQLite's own (POSIX advisory locks, which SQLite also tracks between connections
 * of one process), so a second walship — another process or another `Replicator` in the same
 * process — cannot take it, and the kernel drops it when its holder dies, even by `kill -9`:
 * a stale lock never needs cleaning up. `lock.json` beside it names the holder for the error
 * message only; it proves nothing.
 */
export class ProcessLock {
  readonly #db: Database.Database;
  readonly #dir: string;

  private constructor(db: Database.Database, dir: string) {
    this.#db = db;
    this.#dir = dir;
  }

  /**
   * Takes the lock (creating the meta directory if needed).
   * @param busyMessage the error's message when the lock is held, from who holds it (default: a replicator's)
   * @throws LockedError (`WALSHIP_LOCKED`) when another replicator holds it
   */
  static async acquire(metaPath: string, dbPath: string, busyMessage?: (who: string) => string): Promise<ProcessLock> {
    await fs.mkdir(metaPath, { recursive: true, mode: 0o700 });
    const db = new Database(path.join(metaPath, LOCK_FILE), { timeout: 0 });
    try {
      // Small pages for a new lock file: SQLite's page cache allocates 20 pages up front per
      // connection (~88 KiB at 4 KiB pages, ~14 KiB at 512 B), and every replicated database
      // holds this connection for as long as it runs. (No effect on an existing file.)
      db.pragma('page_size = 512');
      db.pragma('locking_mode = EXCLUSIVE');
      // Exclusive locking mode keeps the lock of the first write transaction until close.
      db.exec('BEGIN EXCLUSIVE; CREATE TABLE IF NOT EXISTS owner (pid INTEGER, host TEXT, started_at TEXT); DELETE FROM owner;');
      db.prepare('INSERT INTO owner VALUES (?, ?, ?)').run(process.pid, os.hostname(), new Date().toISOString());
      db.exec('COMMIT');
    } catch (err) {
      db.close();
      if (!String((err as { code?: unknown }).code ?? '').startsWith('SQLITE_BUSY')) throw err;
      const owner = await readOwner(metaPath);
      const who = owner ? `pid ${owner.pid} on ${owner.host}, since ${owner.startedAt}` : 'another process';
      throw new LockedError(
        busyMessage
          ? busyMessage(who)
          : `${dbPath} is already being replicated by another walship (${who}): stop it first, or give this one another database`,
        {
          cause: err,
        },
      );
    }
    const owner: LockOwner = { pid: process.pid, host: os.hostname(), startedAt: new Date().toISOString() };
    await writeFileAtomic(path.join(metaPath, OWNER_FILE), `${JSON.stringify(owner)}\n`);
    return new ProcessLock(db, metaPath);
  }

  /** Releases the lock (idempotent). */
  async release(): Promise<void> {
    if (!this.#db.open) return;
    await fs.rm(path.join(this.#dir, OWNER_FILE), { force: true });
    this.#db.close();
  }
}

async function readOwner(metaPath: string): Promise<LockOwner | undefined> {
  try {
    const o = JSON.parse(await fs.readFile(path.join(metaPath, OWNER_FILE), 'utf8')) as LockOwner;
    return typeof o.pid === 'number' && typeof o.host === 'string' ? o : undefined;
  } catch {
    return undefined;
  }
}
