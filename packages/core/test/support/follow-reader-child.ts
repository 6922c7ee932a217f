/**
 * A reader of a follower's output in its own process: `follow-reader-child.ts <db> <ms> <sum>`.
 * Queries in a loop for `<ms>`: in each read transaction the accounts' balances must sum to
 * `<sum>` (every writer transaction moves money between two accounts) and the log's row count
 * must never go down. Every 25th round runs `PRAGMA quick_check`. Prints one JSON line:
 * `{ reads, errors, badSums, wentBack, maxLog, firstError }`.
 */
import Database from 'better-sqlite3';

const [dbPath, msArg, sumArg] = process.argv.slice(2);
const until = Date.now() + Number(msArg);
const expected = Number(sumArg);
const db = new Database(dbPath!, { readonly: true, fileMustExist: true, timeout: 5000 });
const sum = db.prepare('SELECT SUM(bal) AS s FROM acct');
const logs = db.prepare('SELECT COUNT(*) AS n FROM log');
const read = db.transaction(() => [(sum.get() as { s: number }).s, (logs.get() as { n: number }).n] as const);
let reads = 0;
let errors = 0;
let badSums = 0;
let wentBack = 0;
let maxLog = 0;
let firstError: string | undefined;
while (Date.now() < until) {
  try {
    const [s, n] = read();
    if (s !== expected) badSums++;
    if (n < maxLog) wentBack++;
    maxLog = Math.max(maxLog, n);
    if (reads % 25 === 0) {
      const r = db.pragma('quick_check', { simple: true });
      if (r !== 'ok') throw new Error(`quick_check: ${String(r)}`);
    }
    reads++;
  } catch (err) {
    errors++;
    firstError ??= String(err);
  }
  await new Promise((r) => setImmediate(r));
}
db.close();
process.stdout.write(`${JSON.stringify({ reads, errors, badSums, wentBack, maxLog, firstError })}\n`);
