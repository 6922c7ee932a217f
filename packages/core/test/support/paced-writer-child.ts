// An application in its own process, like writer-child.ts but at a bounded rate:
// `paced-writer-child.ts <db> <rowsPerSecond> [autocheckpoint]`. Inserts one row per
// transaction, at most `rowsPerSecond`, until SIGTERM; prints `committed <id>` every 50 rows
// and on exit. (writer-child.ts writes as fast as it can: while the replicator is stopped the
// WAL cannot be restarted, and at full speed it would grow by tens of MB a second.)
import Database from 'better-sqlite3';

const [dbPath, rate, autockpt] = process.argv.slice(2);
const perSecond = Number(rate ?? 1000);
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
const t0 = performance.now();
while (!stop) {
  last = Number(ins.run('y'.repeat(200)).lastInsertRowid);
  n++;
  if (n % 50 === 0) process.stdout.write(`committed ${last}\n`);
  const ahead = (n * 1000) / perSecond - (performance.now() - t0);
  if (ahead > 1) await new Promise((r) => setTimeout(r, ahead));
  else if (n % 50 === 0) await new Promise((r) => setImmediate(r));
}
process.stdout.write(`committed ${last}\n`);
db.close();
process.exit(0);
