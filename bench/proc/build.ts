// Builds benchmark fixtures with the walship library (application and replicator in one process):
//  - 'bigwal':  a snapshot plus a WAL tail of >= walBytes in ONE WAL index (huge min checkpoint
//               page count, no forced restarts);
//  - 'manyidx': a snapshot plus `indexes` WAL indexes (a controlled checkpoint after each batch);
//  - 'bigdb':   a plain database file of about dbBytes (no replication), half-compressible rows;
//  - 'base':    only the base database of 'bigwal' (for a replica built by a Litestream sidecar);
//  - 'updates': `txs` of the same update transactions as 'bigwal' on an existing base database,
//               without replication in this process (the Litestream sidecar replicates them).
import { randomBytes } from 'node:crypto';
import { statSync } from 'node:fs';
import Database from 'better-sqlite3';
import { Replicator } from '@walship/core';
import { childConfig, hardDeadline, installChildErrorHandlers, now, send } from '../lib/common.js';
import { makeClient, type ReplicaSpec } from '../lib/clients.js';

interface Config {
  mode: 'bigwal' | 'manyidx' | 'bigdb' | 'base' | 'updates';
  txs?: number;
  db: string;
  replica?: ReplicaSpec;
  baseBytes?: number;
  walBytes?: number;
  indexes?: number;
  pagesPerIndex?: number;
  dbBytes?: number;
  maxMs: number;
}

installChildErrorHandlers();
const cfg = childConfig<Config>();
hardDeadline(cfg.maxMs, `build ${cfg.mode}`);

const ROW = 1000;
const pool = randomBytes(1 << 20);
function rowValue(): Buffer {
  // 500 random bytes + 500 bytes of a repeating pattern: about 2:1 under LZ4.
  const b = Buffer.allocUnsafe(ROW);
  const off = Math.floor(Math.random() * (pool.length - 500));
  pool.copy(b, 0, off, off + 500);
  b.fill('walship-bench ', 500);
  return b;
}

function createBase(db: Database.Database, bytes: number): number {
  db.exec('CREATE TABLE IF NOT EXISTS r(id INTEGER PRIMARY KEY, v BLOB NOT NULL)');
  const ins = db.prepare('INSERT INTO r(v) VALUES (?)');
  const rows = Math.ceil(bytes / (ROW + 40));
  const batch = db.transaction((n: number) => {
    for (let i = 0; i < n; i++) ins.run(rowValue());
  });
  for (let done = 0; done < rows; done += 10_000) batch(Math.min(10_000, rows - done));
  return rows;
}

const yieldLoop = (): Promise<void> => new Promise((r) => setImmediate(r));
const t0 = now();

if (cfg.mode === 'bigdb') {
  const db = new Database(cfg.db);
  db.pragma('journal_mode = OFF');
  db.pragma('synchronous = OFF');
  db.pragma('cache_size = -65536');
  const rows = createBase(db, cfg.dbBytes!);
  db.pragma('journal_mode = WAL');
  db.close();
  await send({ type: 'result', rows, dbBytes: statSync(cfg.db).size, buildMs: now() - t0 });
  process.exit(0);
}

if (cfg.mode === 'updates') {
  const db = new Database(cfg.db);
  db.pragma('synchronous = NORMAL');
  db.pragma('busy_timeout = 5000');
  db.pragma('wal_autocheckpoint = 0');
  const maxId = (db.prepare('SELECT max(id) AS m FROM r').get() as { m: number }).m;
  const upd = db.prepare('UPDATE r SET v = ? WHERE id = ?');
  const tx = db.transaction(() => {
    for (let i = 0; i < 32; i++) upd.run(rowValue(), 1 + Math.floor(Math.random() * maxId));
  });
  for (let i = 0; i < cfg.txs!; i++) tx();
  // no db.close(): the sidecar's connection stays; closing could checkpoint
  await send({ type: 'result', txs: cfg.txs, buildMs: now() - t0 });
  process.exit(0);
}

// base database, then replication
{
  const db = new Database(cfg.db);
  db.pragma('journal_mode = WAL');
  db.pragma('synchronous = OFF');
  createBase(db, cfg.baseBytes!);
  db.close();
}
if (cfg.mode === 'base') {
  await send({ type: 'result', dbBytes: statSync(cfg.db).size, buildMs: now() - t0 });
  process.exit(0);
}
const client = await makeClient(cfg.replica!);
const options =
  cfg.mode === 'bigwal'
    ? { minCheckpointPageCount: 1_000_000_000, maxCheckpointPageCount: 0, truncatePageCount: 0, checkpointInterval: 0 }
    : {
        minCheckpointPageCount: 1_000_000_000,
        maxCheckpointPageCount: 0,
        truncatePageCount: 0,
        checkpointInterval: 0,
        monitorInterval: 60_000,
      };
const rep = new Replicator(cfg.db, { ...options, replicas: [{ name: 'bench', client, retention: 0 }] } as any);
await rep.start();
await rep.sync();
const db = new Database(cfg.db);
db.pragma('synchronous = NORMAL');
db.pragma('busy_timeout = 5000');
db.pragma('wal_autocheckpoint = 0');
const maxId = (db.prepare('SELECT max(id) AS m FROM r').get() as { m: number }).m;
const upd = db.prepare('UPDATE r SET v = ? WHERE id = ?');
// one transaction = 32 random row updates (about 30 distinct pages)
const tx = db.transaction(() => {
  for (let i = 0; i < 32; i++) upd.run(rowValue(), 1 + Math.floor(Math.random() * maxId));
});
const walSize = (): number => {
  try {
    return statSync(`${cfg.db}-wal`).size;
  } catch {
    return 0;
  }
};
let txs = 0;
let walWritten = 0;
if (cfg.mode === 'bigwal') {
  let lastYield = now();
  while (walSize() < cfg.walBytes!) {
    tx();
    txs++;
    if (now() - lastYield > 20) {
      await yieldLoop();
      lastYield = now();
    }
  }
  walWritten = walSize();
  await rep.sync();
} else {
  const txPerIndex = Math.max(1, Math.ceil(cfg.pagesPerIndex! / 30));
  for (let k = 0; k < cfg.indexes!; k++) {
    for (let i = 0; i < txPerIndex; i++) {
      tx();
      txs++;
    }
    const p = await rep.sync();
    walWritten += p.offset;
    await rep.checkpoint();
  }
  await rep.sync();
}
const pos = rep.pos;
await rep.stop();
db.close();
const gens = await client.generations();
const gen = gens[gens.length - 1]!;
const segs = await client.walSegments(gen);
const snaps = await client.snapshots(gen);
const indexes = new Set(segs.map((s) => s.index));
await send({
  type: 'result',
  buildMs: now() - t0,
  txs,
  walWrittenBytes: walWritten,
  generation: gen,
  pos,
  snapshots: snaps.length,
  snapshotStoredBytes: snaps.reduce((a, s) => a + s.size, 0),
  walSegments: segs.length,
  walIndexes: indexes.size,
  walStoredBytes: segs.reduce((a, s) => a + s.size, 0),
  dbBytes: statSync(cfg.db).size,
});
process.exit(0);
