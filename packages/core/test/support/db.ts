import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import Database from 'better-sqlite3';

export async function tempDir(prefix = 'walship-test-'): Promise<string> {
  return fs.mkdtemp(path.join(os.tmpdir(), prefix));
}

/** An application connection: WAL mode, a table `t(id INTEGER PRIMARY KEY, v TEXT)`. */
export function openApp(dbPath: string, opts: { autocheckpoint?: number } = {}): Database.Database {
  const db = new Database(dbPath);
  db.pragma('journal_mode = wal');
  db.pragma('synchronous = normal');
  db.pragma('busy_timeout = 5000');
  db.pragma(`wal_autocheckpoint = ${opts.autocheckpoint ?? 0}`);
  db.exec('CREATE TABLE IF NOT EXISTS t (id INTEGER PRIMARY KEY, v TEXT)');
  return db;
}

export function insertRows(db: Database.Database, n: number, size = 100): void {
  const st = db.prepare('INSERT INTO t (v) VALUES (?)');
  const tx = db.transaction((k: number) => {
    for (let i = 0; i < k; i++) st.run('x'.repeat(size));
  });
  tx(n);
}

export function until(cond: () => boolean | Promise<boolean>, timeoutMs = 10_000, what = 'condition'): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  return (async () => {
    while (!(await cond())) {
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
      await new Promise((r) => setTimeout(r, 20));
    }
  })();
}
