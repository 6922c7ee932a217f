// A reader of the follower's output: queries in a loop for `durationMs`, checking in every read
// transaction that the balances sum to 50 000 and that the log never shrinks; quick_check every
// 100th round. → {type:'result', reads, errors, badSums, wentBack, firstError}
import Database from 'better-sqlite3';
import { childConfig, installChildErrorHandlers, send, sleep } from '../lib/common.js';

installChildErrorHandlers();
const cfg = childConfig<{ db: string; durationMs: number }>();
const db = new Database(cfg.db, { readonly: true, fileMustExist: true, timeout: 5000 });
const sum = db.prepare('SELECT SUM(bal) AS s FROM acct');
const logs = db.prepare('SELECT COUNT(*) AS n FROM log');
const read = db.transaction(() => [(sum.get() as { s: number }).s, (logs.get() as { n: number }).n] as const);
const until = Date.now() + cfg.durationMs;
let reads = 0;
let errors = 0;
let badSums = 0;
let wentBack = 0;
let maxLog = 0;
let firstError: string | undefined;
while (Date.now() < until) {
  try {
    const [s, n] = read();
    if (s !== 50_000) badSums++;
    if (n < maxLog) wentBack++;
    maxLog = Math.max(maxLog, n);
    if (reads % 100 === 0 && db.pragma('quick_check', { simple: true }) !== 'ok') throw new Error('quick_check failed');
    reads++;
  } catch (err) {
    errors++;
    firstError ??= String(err);
  }
  await sleep(1);
}
db.close();
await send({ type: 'result', reads, errors, badSums, wentBack, maxLog, firstError });
process.exit(0);
