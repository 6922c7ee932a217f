// The "application": writes single-row transactions (100-byte payload) into a database at max
// rate or at a fixed offered rate, for a fixed time, then exits by itself.
// Each payload starts with a marker: "WSBM" + u32 seq + f64 commit-start time (ms, epoch), so a
// tap on the replica's upload stream can tell when each transaction became durable.
import { randomFillSync } from 'node:crypto';
import { statSync } from 'node:fs';
import Database from 'better-sqlite3';
import { childConfig, hardDeadline, installChildErrorHandlers, now, send, waitForGo } from '../lib/common.js';

interface Config {
  db: string;
  durationMs: number;
  /** offered tx/s; 0 = max rate */
  rate: number;
  autocheckpoint: number;
  payloadBytes?: number;
  /** send {type:'loaded'} once the database is open, then wait for {type:'go'} */
  waitGo?: boolean;
}

installChildErrorHandlers();
const cfg = childConfig<Config>();
hardDeadline(cfg.durationMs + (cfg.waitGo ? 180_000 : 60_000), 'writer');

const db = new Database(cfg.db);
db.pragma('journal_mode = WAL');
db.pragma('synchronous = NORMAL');
db.pragma('busy_timeout = 5000');
db.pragma(`wal_autocheckpoint = ${cfg.autocheckpoint}`);
db.exec('CREATE TABLE IF NOT EXISTS t(id INTEGER PRIMARY KEY, v BLOB NOT NULL)');
const ins = db.prepare('INSERT INTO t(v) VALUES (?)');
const payload = Buffer.alloc(cfg.payloadBytes ?? 100);
randomFillSync(payload);
payload.write('WSBM', 0, 'latin1');

if (cfg.waitGo) {
  const go = waitForGo();
  await send({ type: 'loaded' });
  await go;
}
const sab = new Int32Array(new SharedArrayBuffer(4));
let seq = 0;
let maxStallMs = 0;
let lastTxTs = NaN;
await send({ type: 'started' });
const t0 = now();
const end = t0 + cfg.durationMs;
let last = t0;
if (cfg.rate <= 0) {
  for (;;) {
    for (let i = 0; i < 64; i++) {
      payload.writeUInt32LE(seq, 4);
      lastTxTs = now();
      payload.writeDoubleLE(lastTxTs, 8);
      ins.run(payload);
      seq++;
    }
    const t = now();
    if (t - last > maxStallMs) maxStallMs = t - last;
    last = t;
    if (t >= end) break;
  }
} else {
  for (;;) {
    const t = now();
    if (t >= end) break;
    const target = Math.floor(((t - t0) / 1000) * cfg.rate);
    if (seq >= target) {
      Atomics.wait(sab, 0, 0, 0.2); // sub-millisecond sleep
      continue;
    }
    while (seq < target) {
      const ts = now();
      payload.writeUInt32LE(seq, 4);
      payload.writeDoubleLE(ts, 8);
      ins.run(payload);
      lastTxTs = ts;
      seq++;
      if (ts - last > maxStallMs) maxStallMs = ts - last;
      last = ts;
    }
  }
}
const endedAt = now();
const elapsedMs = endedAt - t0;
let walBytes = 0;
try {
  walBytes = statSync(`${cfg.db}-wal`).size;
} catch {}
const cpu = process.cpuUsage();
await send({
  type: 'result',
  txs: seq,
  elapsedMs,
  startedAt: t0,
  endedAt,
  /** start time of the last transaction (the marker written into it) */
  lastTxTs,
  txPerSec: seq / (elapsedMs / 1000),
  walBytesAtEnd: walBytes,
  maxStallMs,
  cpuPct: ((cpu.user + cpu.system) / 1000 / elapsedMs) * 100,
});
// No db.close(): closing the last read-write connection would checkpoint the whole WAL.
process.exit(0);
