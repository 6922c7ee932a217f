// An application in its own process: `writer-child.ts <db> <autocheckpoint> <truncateEveryN>`.
// Inserts rows one transaction at a time until stdin closes or SIGTERM; prints the last
// committed id every 50 rows and on exit.
import Database from 'better-sqlite3';

const [dbPath, autockpt, truncEvery] = process.argv.slice(2);
const db = new Database(dbPath!);
db.pragma('journal_mode = wal');
db.pragma('synchronous = normal');
db.pragma('busy_timeout = 5000');
db.pragma(`wal_autocheckpoint = ${Number(autockpt ?? 1000)}`);
db.exec('CREATE TABLE IF NOT EXISTS t (id INTEGER PRIMARY KEY, v TEXT)');
const ins = db.prepare('INSERT INTO t (v) VALUES (?)');
let stop = false;
process.on('SIGTERM', () => (stop = true));
let last = 0;
let n = 0;
const every = Number(truncEvery ?? 0);
while (!stop) {
  last = Number(ins.run('y'.repeat(200)).lastInsertRowid);
  n++;
  if (every > 0 && n % every === 0) {
    db.pragma('busy_timeout = 20');
    try {
      db.pragma('wal_checkpoint(TRUNCATE)');
    } catch {
      /* busy */
    }
    db.pragma('busy_timeout = 5000');
  }
  if (n % 50 === 0) {
    process.stdout.write(`committed ${last}\n`);
    await new Promise((r) => setImmediate(r));
  }
}
process.stdout.write(`committed ${last}\n`);
db.close();
process.exit(0);
