import fs from 'node:fs';
import { parentPort } from 'node:worker_threads';
import type { Database as SqliteDatabase } from 'better-sqlite3';
import type { FromApplyWorker, ToApplyWorker } from './apply-protocol.js';
import { sleepSync } from '../util/fs.js';
import { applyJournaled, type PageSource, readPage, rollBackJournal } from './rollback-journal.js';

/**
 * The follower's apply worker: takes SQLite's EXCLUSIVE lock on the followed database through
 * its own connection (waiting for readers, which would block the application's thread if done
 * there), writes a batch with {@link applyJournaled}, releases the lock. All of it synchronous,
 * in this thread.
 *
 * The lock is tried in short attempts (`ATTEMPT_MS` each, a pause between them) until the lock
 * timeout: while an attempt waits for the readers already inside, SQLite's PENDING lock keeps new
 * read transactions out, so one attempt at a time keeps their wait short too.
 */

/** SQLite busy timeout of one attempt at the EXCLUSIVE lock. */
const ATTEMPT_MS = 100;
/** Pause between attempts: readers that queued behind the PENDING lock get in. */
const PAUSE_MS = 20;

type SqliteCtor = typeof import('better-sqlite3');

/**
 * Test hook (fault injection): with `WALSHIP_TEST_APPLY_DELAY_MS` set, each batch pauses that long
 * after its pages are written and before its commit, and creates the file named by
 * `WALSHIP_TEST_APPLY_MARK` (if set) for the pause, so a test's kill -9 lands inside a batch.
 */
const testDelayMs = Number(process.env['WALSHIP_TEST_APPLY_DELAY_MS'] ?? 0);
const testMark = process.env['WALSHIP_TEST_APPLY_MARK'];
const beforeCommit =
  testDelayMs > 0
    ? () => {
        if (testMark) fs.writeFileSync(testMark, '');
        sleepSync(testDelayMs);
        if (testMark) fs.rmSync(testMark, { force: true });
      }
    : undefined;

let db: SqliteDatabase | undefined;
let dbPath = '';
let dbFd = -1;
let lockTimeout = 5000;

function post(m: FromApplyWorker): void {
  parentPort!.postMessage(m);
}

function isBusy(err: unknown): boolean {
  return String((err as { code?: unknown }).code ?? '').startsWith('SQLITE_BUSY');
}

/**
 * Runs `fn` under SQLite's EXCLUSIVE lock. Returns how long the lock took to get.
 * @throws SQLITE_BUSY after the lock timeout
 */
function underExclusiveLock(fn: () => void): number {
  const t0 = performance.now();
  for (;;) {
    try {
      db!.exec('BEGIN EXCLUSIVE');
      break;
    } catch (err) {
      if (!isBusy(err) || performance.now() - t0 + PAUSE_MS + ATTEMPT_MS > lockTimeout) throw err;
      sleepSync(PAUSE_MS);
    }
  }
  const waited = performance.now() - t0;
  try {
    fn();
  } catch (err) {
    // A batch that failed half-way: put the old pages back before anyone else gets the lock
    // (read-only readers cannot play a journal back). If that fails too, the journal stays hot
    // and the next read-write connection (the follower's at its next batch) plays it back.
    try {
      rollBackJournal(dbFd, dbPath);
    } catch {
      // left for SQLite
    }
    throw err;
  } finally {
    db!.exec('COMMIT');
  }
  return waited;
}

async function open(path: string, fd: number, lockTimeoutMs: number): Promise<void> {
  const mod = (await import('better-sqlite3')) as unknown as { default?: SqliteCtor } & SqliteCtor;
  const Database = mod.default ?? mod;
  db = new Database(path, { fileMustExist: true, timeout: ATTEMPT_MS });
  dbPath = path;
  dbFd = fd;
  lockTimeout = lockTimeoutMs;
  // A hot journal left by a crash is played back by SQLite when it first locks the database.
  underExclusiveLock(() => {});
}

function diffSource(fromPath: string, pageSize: number): { source: PageSource; pageCount: number; close: () => void } {
  const from = fs.openSync(fromPath, 'r');
  try {
    const fromSize = fs.fstatSync(from).size;
    if (fromSize % pageSize !== 0) throw new Error(`restored copy size ${fromSize} is not a multiple of the page size ${pageSize}`);
    const pageCount = fromSize / pageSize;
    const curPages = Math.floor(fs.fstatSync(dbFd).size / pageSize);
    const a = Buffer.allocUnsafe(pageSize);
    const b = Buffer.allocUnsafe(pageSize);
    const pgnos: number[] = [];
    for (let p = 1; p <= pageCount; p++) {
      readPage(from, a, (p - 1) * pageSize);
      if (p > curPages) {
        pgnos.push(p);
        continue;
      }
      readPage(dbFd, b, (p - 1) * pageSize);
      if (p === 1 || !a.equals(b)) pgnos.push(p);
    }
    return {
      pageCount,
      source: { pgnos, read: (pgno, buf) => readPage(from, buf, (pgno - 1) * pageSize) },
      close: () => fs.closeSync(from),
    };
  } catch (err) {
    fs.closeSync(from);
    throw err;
  }
}

function handle(m: ToApplyWorker): Promise<FromApplyWorker> | FromApplyWorker {
  switch (m.op) {
    case 'open':
      return open(m.dbPath, m.fd, m.lockTimeoutMs).then(() => ({ id: m.id, ok: true }));
    case 'apply': {
      const t0 = performance.now();
      const spill = fs.openSync(m.spillPath, 'r');
      try {
        const at = new Map<number, number>();
        for (let i = 0; i < m.pgnos.length; i++) at.set(m.pgnos[i]!, m.offsets[i]!);
        const source: PageSource = { pgnos: [...m.pgnos], read: (pgno, buf) => readPage(spill, buf, at.get(pgno)!) };
        const lockWaitMs = underExclusiveLock(() => applyJournaled(dbFd, dbPath, m.pageSize, m.pageCount, source, beforeCommit));
        return { id: m.id, ok: true, pages: m.pgnos.length, lockWaitMs, durationMs: performance.now() - t0 };
      } finally {
        fs.closeSync(spill);
      }
    }
    case 'swap': {
      const t0 = performance.now();
      // Compared before the lock: only this follower writes the database, readers do not.
      const { source, pageCount, close } = diffSource(m.fromPath, m.pageSize);
      try {
        const lockWaitMs = underExclusiveLock(() => applyJournaled(dbFd, dbPath, m.pageSize, pageCount, source));
        return { id: m.id, ok: true, pages: source.pgnos.length, lockWaitMs, durationMs: performance.now() - t0 };
      } finally {
        close();
      }
    }
    case 'close':
      db?.close();
      db = undefined;
      return { id: m.id, ok: true };
  }
}

parentPort!.on('message', (m: ToApplyWorker) => {
  void (async () => {
    try {
      post(await handle(m));
    } catch (err) {
      const code = (err as { code?: unknown }).code;
      post({
        id: m.id,
        ok: false,
        busy: code === 'SQLITE_BUSY',
        message: err instanceof Error ? err.message : String(err),
        ...(typeof code === 'string' ? { code } : {}),
      });
    }
  })();
});
