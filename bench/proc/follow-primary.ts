// The primary of the follow scenario: an application writing `rate` bank transfers per second
// (every transaction moves money between two of 50 accounts and logs 200 bytes) with the walship
// library replicating it (default intervals: monitor 1 s, sync 1 s). Protocol over IPC:
//   → {type:'ready'}    after start() and the initial sync()
//   ← {type:'go'}       write for `durationMs`, then sync()
//   → {type:'result', uploads: [{pos, t}], txs, finalPos}   every upload to the replica (its
//                       'replica-sync' event: the position now on the replica, and when)
import Database from 'better-sqlite3';
import { Replicator } from '@walship/core';
import { childConfig, hardDeadline, installChildErrorHandlers, now, send, sleep, waitForGo } from '../lib/common.js';
import { makeClient, type ReplicaSpec } from '../lib/clients.js';

interface Config {
  db: string;
  replica: ReplicaSpec;
  rate: number;
  durationMs: number;
}

installChildErrorHandlers();
const cfg = childConfig<Config>();
hardDeadline(cfg.durationMs + 180_000, 'follow-primary');

const db = new Database(cfg.db);
db.pragma('journal_mode = WAL');
db.pragma('synchronous = NORMAL');
db.pragma('busy_timeout = 5000');
db.exec(
  'CREATE TABLE IF NOT EXISTS acct (id INTEGER PRIMARY KEY, bal INTEGER NOT NULL); CREATE TABLE IF NOT EXISTS log (id INTEGER PRIMARY KEY, v TEXT)',
);
const insAcct = db.prepare('INSERT OR IGNORE INTO acct (id, bal) VALUES (?, 1000)');
db.transaction(() => {
  for (let i = 1; i <= 50; i++) insAcct.run(i);
})();
const move = db.prepare('UPDATE acct SET bal = bal + ? WHERE id = ?');
const log = db.prepare('INSERT INTO log (v) VALUES (?)');
let seed = 1;
const rnd = (n: number): number => {
  seed = (seed * 1103515245 + 12345) & 0x7fffffff;
  return seed % n;
};
const tx = db.transaction(() => {
  const amt = 1 + rnd(50);
  move.run(-amt, 1 + rnd(50));
  move.run(amt, 1 + rnd(50));
  log.run('x'.repeat(200));
});

const rep = new Replicator(cfg.db, { replicas: [{ name: 'r', client: await makeClient(cfg.replica) }] });
const uploads: { pos: { generation: string; index: number; offset: number }; t: number }[] = [];
rep.on('replica-sync', (e) => uploads.push({ pos: e.pos, t: now() }));
await rep.start();
await rep.sync({ timeout: 60_000 });
await send({ type: 'ready' });
await waitForGo();
uploads.length = 0;
const t0 = now();
let txs = 0;
while (now() - t0 < cfg.durationMs) {
  const due = Math.floor(((now() - t0) / 1000) * cfg.rate);
  while (txs < due) {
    tx();
    txs++;
  }
  await sleep(5);
}
const finalPos = await rep.sync({ timeout: 60_000 });
await send({ type: 'result', uploads, txs, finalPos, achievedRate: txs / ((now() - t0) / 1000) });
await rep.stop();
db.close();
process.exit(0);
