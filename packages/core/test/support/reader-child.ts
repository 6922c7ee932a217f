/**
 * Child process for the emergency-truncate test: another process reading the database.
 *
 * `reader-child.ts <dbPath> <holdMs>` opens a read transaction that uses the WAL (so no
 * checkpoint can copy past it and nobody can restart the WAL), prints `reading`, then watches
 * the database's write lock from a second connection. Once the write lock has been held by
 * someone else continuously for `holdMs` — only walship's emergency checkpoint, which waits for
 * readers while blocking writers, holds it that long — it ends the read transaction and prints
 * `released <ms the lock was held>`. It exits on its own after two minutes.
 */
import Database from 'better-sqlite3';

const [dbPath, holdArg] = process.argv.slice(2);
const holdMs = Number(holdArg ?? '300');
const reader = new Database(dbPath!, { fileMustExist: true });
const probe = new Database(dbPath!, { fileMustExist: true });
probe.pragma('busy_timeout = 0');
reader.exec('BEGIN');
reader.prepare('SELECT COUNT(*) FROM t').get();
process.stdout.write('reading\n');

const giveUp = Date.now() + 120_000;
let busySince: number | undefined;
const timer = setInterval(() => {
  let busy = false;
  try {
    probe.exec('BEGIN IMMEDIATE');
    probe.exec('ROLLBACK');
  } catch (err) {
    if (!String((err as { code?: unknown }).code ?? '').startsWith('SQLITE_BUSY')) throw err;
    busy = true;
  }
  const now = Date.now();
  if (!busy) busySince = undefined;
  else busySince ??= now;
  if ((busySince !== undefined && now - busySince >= holdMs) || now > giveUp) {
    clearInterval(timer);
    reader.exec('COMMIT');
    process.stdout.write(`released ${busySince === undefined ? -1 : now - busySince}\n`);
    probe.close();
    reader.close();
  }
}, 5);
