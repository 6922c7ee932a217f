import type fs from 'node:fs/promises';
import Database from 'better-sqlite3';
import { ConfigError, WalshipError } from '../errors.js';
import { sleepSync } from '../util/fs.js';
import { heldFd, heldFileHandle } from '../util/held-files.js';

type Db = Database.Database;

export interface CheckpointResult {
  readonly busy: number;
  readonly log: number;
  readonly checkpointed: number;
}

/**
 * walship's SQLite connections to one database, all from the one better-sqlite3 (and so the one
 * SQLite library) in the process, so SQLite's own per-inode lock bookkeeping covers them all.
 *
 * - `writer`: read-write; takes the write lock (BEGIN IMMEDIATE) for controlled WAL restarts,
 *   writes `_litestream_seq`. `journal_size_limit` makes its restarting commit truncate the WAL.
 * - `checkpointer`: read-write; runs PASSIVE checkpoints while `writer` may hold the write lock.
 * - `pin`: read-only; holds the long-lived read transaction that stops anyone else from
 *   restarting the WAL. There are two such connections: moving the pin begins a read
 *   transaction on the other one before it ends the current one, so the WAL is never left
 *   unpinned (a process frozen between the two — SIGSTOP, a long GC pause — would otherwise let
 *   the application checkpoint and restart the WAL, and continuity would be lost). Closed
 *   last, so closing never checkpoints or deletes the `-wal`.
 * - `snapshotReader`: read-only; holds a read transaction while a snapshot streams.
 * - `dbFile`: a descriptor on the database file for reading snapshots, and `shmFd` one on the
 *   `-shm` for reading the wal-index. Both are never closed (see `util/held-files.ts`): closing
 *   a descriptor drops every POSIX lock the process holds on the file, the application's too.
 *
 * Every connection but the pin holding the read transaction is opened when first needed and
 * closed again by `shed()` (an idle database keeps one: each costs ~65 KiB, ~150–190 KiB once
 * it has read the database, most of it SQLite's page cache). Closing the read-write ones while
 * the pin is held in the same process never checkpoints or deletes the `-wal` (SQLite cannot
 * take the exclusive lock that needs).
 */
export class DbConnections {
  readonly #path: string;
  readonly #busyTimeoutMs: number;
  #writer: Db | undefined;
  #checkpointer: Db | undefined;
  #snapshotReader: Db | undefined;
  /** The two read-only pin connections; `#active` is the one holding the pin when `#pinned`. */
  readonly #pins: [Db | undefined, Db | undefined] = [undefined, undefined];
  #active: 0 | 1 = 0;
  readonly dbFile: fs.FileHandle;
  /** Read-only descriptor on the `-shm` file, for `readWalIndexSync`; never closed (-1: no `-shm`). */
  readonly shmFd: number;
  #seqPage = 0;
  #pinned = false;
  #closed = false;
  #journalSizeLimit = 0;
  #truncating = true;
  #upsert: Database.Statement | undefined;

  private constructor(dbPath: string, busyTimeoutMs: number, dbFile: fs.FileHandle, shmFd: number) {
    this.#path = dbPath;
    this.#busyTimeoutMs = busyTimeoutMs;
    this.dbFile = dbFile;
    this.shmFd = shmFd;
  }

  /**
   * Opens the descriptors and the writer, switches the database to WAL mode and creates the
   * helper tables (`_litestream_seq`, `_litestream_lock`, as Litestream names them) if missing.
   * @throws ConfigError when the database cannot be put in WAL mode
   */
  static async open(dbPath: string, opts: { busyTimeoutMs: number; journalSizeLimit: number }): Promise<DbConnections> {
    const dbFile = await heldFileHandle(dbPath);
    const first = new Database(dbPath, { fileMustExist: true, timeout: opts.busyTimeoutMs });
    let conns: DbConnections | undefined;
    try {
      const mode = String(await retryBusy(() => first.pragma('journal_mode = wal', { simple: true }), opts.busyTimeoutMs)).toLowerCase();
      if (mode !== 'wal') throw new ConfigError(`enable wal failed, mode=${JSON.stringify(mode)}: the database must be in WAL mode`);
      // WAL mode is on, so the -shm normally exists (not with an application in exclusive
      // locking mode: then -1, and walship reads no wal-index).
      let shmFd = -1;
      try {
        shmFd = heldFd(`${dbPath}-shm`);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
      }
      conns = new DbConnections(dbPath, opts.busyTimeoutMs, dbFile, shmFd);
      conns.#journalSizeLimit = Math.max(0, Math.floor(opts.journalSizeLimit));
      conns.#adoptWriter(first);
      await retryBusy(() => ensureHelperTables(first), opts.busyTimeoutMs);
      conns.#seqPage = Number(
        first.prepare(`SELECT rootpage FROM sqlite_master WHERE type = 'table' AND name = '_litestream_seq'`).pluck().get(),
      );
      return conns;
    } catch (err) {
      if (conns) await conns.close();
      else closeQuietly(first);
      throw err;
    }
  }

  /** Read-write connection for walship's restarting writes (opened on first use). */
  get writer(): Db {
    if (this.#writer) return this.#writer;
    return this.#adoptWriter(this.#openConnection(false));
  }

  /** Read-write connection for checkpoints (opened on first use). */
  get checkpointer(): Db {
    if (this.#checkpointer) return this.#checkpointer;
    const d = this.#openConnection(false);
    d.pragma('wal_autocheckpoint = 0');
    this.#checkpointer = d;
    return d;
  }

  /** Read-only connection for a snapshot's read transaction (opened on first use). */
  get snapshotReader(): Db {
    this.#snapshotReader ??= this.#openConnection(true);
    return this.#snapshotReader;
  }

  /** How many SQLite connections are open now (for tests and diagnostics). */
  get openCount(): number {
    return [this.#writer, this.#checkpointer, this.#snapshotReader, ...this.#pins].filter((d) => d !== undefined).length;
  }

  #pin(i: 0 | 1): Db {
    this.#pins[i] ??= this.#openConnection(true);
    return this.#pins[i];
  }

  #openConnection(readonly: boolean): Db {
    if (this.#closed) throw new WalshipError('WALSHIP_NOT_OPEN', 'database connections are closed');
    return new Database(this.#path, { readonly, fileMustExist: true, timeout: this.#busyTimeoutMs });
  }

  #adoptWriter(d: Db): Db {
    d.pragma('wal_autocheckpoint = 0');
    // The writer only writes `_litestream_seq`, to restart the WAL. Without fsyncs in its
    // commit, the moment between SQLite rewriting the WAL header and walship recording the
    // restart (which a kill -9 there would turn into a new generation) lasts microseconds.
    d.pragma('synchronous = NORMAL');
    this.#applyJournalSizeLimit(d);
    this.#writer = d;
    this.#upsert = undefined;
    return d;
  }

  /**
   * Closes every connection not needed now: all but the one holding the pin, skipping any in
   * a transaction (a snapshot's, a held write lock). Read-write ones first. Returns how many
   * it closed.
   */
  shed(): number {
    let n = 0;
    const idle = (d: Db | undefined): d is Db => d !== undefined && !d.inTransaction;
    if (idle(this.#writer)) {
      closeQuietly(this.#writer);
      this.#writer = undefined;
      this.#upsert = undefined;
      n++;
    }
    if (idle(this.#checkpointer)) {
      closeQuietly(this.#checkpointer);
      this.#checkpointer = undefined;
      n++;
    }
    if (idle(this.#snapshotReader)) {
      closeQuietly(this.#snapshotReader);
      this.#snapshotReader = undefined;
      n++;
    }
    // The active pin connection stays (pinned: it holds the pin; unpinned: the next pin uses it).
    const spare = this.#active === 0 ? 1 : 0;
    if (idle(this.#pins[spare])) {
      closeQuietly(this.#pins[spare]);
      this.#pins[spare] = undefined;
      n++;
    }
    return n;
  }

  /** Page number of `_litestream_seq`'s root (its only page): what walship's restarting write changes. */
  get seqPage(): number {
    return this.#seqPage;
  }

  get pinned(): boolean {
    return this.#pinned;
  }

  /** Starts the long-lived read transaction (a no-op when already pinned). */
  pinRead(): void {
    if (this.#pinned) return;
    beginRead(this.#pin(this.#active));
    this.#pinned = true;
  }

  /** Ends the pin: the WAL may then be restarted by anyone. */
  unpin(): void {
    if (!this.#pinned) return;
    this.#pinned = false;
    this.#pin(this.#active).exec('COMMIT');
  }

  /**
   * Moves the pin to the newest snapshot without ever releasing it: the other pin connection
   * begins its read transaction first, then the current one ends. When the new read cannot
   * begin (SQLITE_BUSY: a checkpoint or recovery elsewhere) the old pin stays and this returns
   * false; other errors are thrown, the old pin still held. Pins when not pinned.
   */
  repin(): boolean {
    if (!this.#pinned) {
      this.pinRead();
      return true;
    }
    const next = this.#active === 0 ? 1 : 0;
    try {
      beginRead(this.#pin(next));
    } catch (err) {
      if (isBusy(err)) return false;
      throw err;
    }
    this.#pin(this.#active).exec('COMMIT');
    this.#active = next;
    return true;
  }

  /**
   * Inside the writer's open transaction, with the WAL fully copied into the database file:
   * writes `_litestream_seq` and commits, which restarts the WAL. The current pin's read mark
   * would stop that restart, so it ends first — but only once the other pin connection holds a
   * read transaction of its own. That one began with everything copied, so SQLite gives it read
   * mark 0, which does not stop a restart yet keeps every other connection from copying frames
   * into the database file (and so from restarting the WAL) until `repin()` moves the pin onto
   * the new WAL. Falls back to a plain unpin when the bridge cannot begin.
   */
  commitRestartingWrite(): void {
    if (this.#pinned) {
      const next = this.#active === 0 ? 1 : 0;
      let bridged = false;
      try {
        beginRead(this.#pin(next));
        bridged = true;
      } catch (err) {
        if (!isBusy(err)) throw err;
      }
      this.#pin(this.#active).exec('COMMIT');
      if (bridged) this.#active = next;
      else this.#pinned = false;
    }
    this.commitSeqWrite();
  }

  /**
   * BEGIN IMMEDIATE on the writer, polling for up to `waitMs`; false when another writer kept
   * the lock. SQLite's busy handler sleeps in steps of milliseconds, which almost never catches
   * the microsecond gap between a busy writer's transactions; polling every ~50 µs does.
   */
  tryLockWrites(waitMs: number): boolean {
    const writer = this.writer;
    writer.pragma('busy_timeout = 0');
    const deadline = performance.now() + Math.max(0, waitMs);
    for (let i = 0; ; i++) {
      try {
        writer.exec('BEGIN IMMEDIATE');
        return true;
      } catch (err) {
        if (writer.inTransaction) writer.exec('ROLLBACK');
        if (!isBusy(err)) throw err;
      }
      if (performance.now() >= deadline) return false;
      if (i > 200) sleepSync(0.05);
    }
  }

  unlockWrites(): void {
    if (this.#writer?.inTransaction) this.#writer.exec('ROLLBACK');
  }

  /**
   * Whether the writer's next WAL-restarting commit truncates the `-wal` file to the journal
   * size limit. Truncating a large file frees its blocks under the write lock (measured: 240–
   * 280 ms for a WAL of ~150 MB), so under load the file keeps its size, as SQLite does by
   * default, and is truncated by a restart while the database is quiet.
   */
  truncateOnRestart(on: boolean): void {
    if (on === this.#truncating) return;
    this.#truncating = on;
    if (this.#writer) this.#applyJournalSizeLimit(this.#writer);
  }

  /** The writer's journal_size_limit: the limit while truncating, none (-1) otherwise. */
  #applyJournalSizeLimit(writer: Db): void {
    writer.pragma(`journal_size_limit = ${this.#truncating ? this.#journalSizeLimit : -1}`);
  }

  /** Writes `_litestream_seq` inside the writer's open transaction and commits. */
  commitSeqWrite(): void {
    const writer = this.writer;
    this.#upsert ??= writer.prepare('INSERT INTO _litestream_seq (id, seq) VALUES (1, 1) ON CONFLICT (id) DO UPDATE SET seq = seq + 1');
    this.#upsert.run();
    writer.exec('COMMIT');
  }

  checkpoint(mode: 'PASSIVE' | 'FULL' | 'RESTART' | 'TRUNCATE'): CheckpointResult {
    const row = this.checkpointer.pragma(`wal_checkpoint(${mode})`) as Array<{ busy: number; log: number; checkpointed: number }>;
    const r = row[0] ?? { busy: 1, log: -1, checkpointed: -1 };
    return { busy: r.busy, log: r.log, checkpointed: r.checkpointed };
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    // Read-write connections first, the pins last (keeps the -wal in place).
    for (const d of [this.#writer, this.#checkpointer, this.#snapshotReader]) {
      if (!d) continue;
      try {
        if (d.inTransaction) d.exec('ROLLBACK');
      } catch {
        /* best effort */
      }
      closeQuietly(d);
    }
    for (const d of this.#pins) {
      if (!d) continue;
      try {
        if (d.inTransaction) d.exec('COMMIT');
      } catch {
        /* best effort */
      }
      closeQuietly(d);
    }
    this.#writer = this.#checkpointer = this.#snapshotReader = this.#upsert = undefined;
    this.#pins[0] = this.#pins[1] = undefined;
    this.#pinned = false;
  }
}

function closeQuietly(d: Db): void {
  try {
    d.close();
  } catch {
    /* closing is best effort */
  }
}

/** Begins a read transaction on `db` (BEGIN alone defers it; the SELECT takes the read mark). */
function beginRead(db: Db): void {
  db.exec('BEGIN');
  try {
    db.prepare('SELECT COUNT(1) FROM _litestream_seq').get();
  } catch (err) {
    db.exec('ROLLBACK');
    throw err;
  }
}

function isBusy(err: unknown): boolean {
  return String((err as { code?: unknown }).code ?? '').startsWith('SQLITE_BUSY');
}

/**
 * Runs a short synchronous statement, retrying SQLITE_BUSY with async pauses (never blocking
 * the thread for long, so an application in the same thread can finish its transaction).
 */
async function retryBusy<T>(fn: () => T, busyTimeoutMs: number, totalMs = Math.max(30_000, busyTimeoutMs * 10)): Promise<T> {
  const deadline = Date.now() + totalMs;
  for (let attempt = 0; ; attempt++) {
    try {
      return fn();
    } catch (err) {
      if (!isBusy(err) || Date.now() > deadline) throw err;
      await new Promise((r) => setTimeout(r, Math.min(200, 5 * 2 ** Math.min(attempt, 6))));
    }
  }
}

function ensureHelperTables(db: Db): void {
  const have = db
    .prepare(`SELECT name FROM sqlite_master WHERE type = 'table' AND name IN ('_litestream_seq', '_litestream_lock')`)
    .all() as Array<{ name: string }>;
  if (have.length === 2) return;
  db.exec(
    'BEGIN IMMEDIATE; CREATE TABLE IF NOT EXISTS _litestream_seq (id INTEGER PRIMARY KEY, seq INTEGER); CREATE TABLE IF NOT EXISTS _litestream_lock (id INTEGER); COMMIT;',
  );
}
