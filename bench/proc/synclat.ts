// sync() latency as an application sees it: in the application's process, insert one row
// (one transaction), then time `await replicator.sync()`; repeated `calls` times.
import Database from 'better-sqlite3';
import { Replicator } from '@walship/core';
import { childConfig, dist, hardDeadline, installChildErrorHandlers, now, send, sleep } from '../lib/common.js';
import { makeClient, type ReplicaSpec } from '../lib/clients.js';

interface Config {
  db: string;
  replica: ReplicaSpec;
  calls: number;
  gapMs: number;
  maxMs: number;
}

installChildErrorHandlers();
const cfg = childConfig<Config>();
hardDeadline(cfg.maxMs, 'synclat');
const db = new Database(cfg.db);
db.pragma('journal_mode = WAL');
db.pragma('synchronous = NORMAL');
db.pragma('busy_timeout = 5000');
db.pragma('wal_autocheckpoint = 0');
db.exec('CREATE TABLE IF NOT EXISTS t(id INTEGER PRIMARY KEY, v BLOB NOT NULL)');
const ins = db.prepare('INSERT INTO t(v) VALUES (?)');
const client = await makeClient(cfg.replica);
const rep = new Replicator(cfg.db, { replicas: [{ name: 'bench', client }] });
await rep.start();
await rep.sync();
const payload = Buffer.alloc(100, 7);
const lat: number[] = [];
const deadline = Date.now() + cfg.maxMs - 20_000;
for (let i = 0; i < cfg.calls && Date.now() < deadline; i++) {
  ins.run(payload);
  const t = now();
  await rep.sync({ timeout: 10_000 });
  lat.push(now() - t);
  await sleep(cfg.gapMs);
}
await rep.stop();
db.close();
await send({ type: 'result', latencyMs: dist(lat), raw: lat.map((x) => Math.round(x * 1000) / 1000) });
process.exit(0);
