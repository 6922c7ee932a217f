// The writers of the scale scenario: one process, one better-sqlite3 connection per database,
// each database written at `rate` single-row transactions a second for `durationMs` (paced: every
// tick writes the transactions due so far on every connection, then sleeps ~2 ms). The payload is
// bench/proc/writer.ts's: "WSBM" + u32 seq + f64 commit-start time, so the replica-side lag method
// (bench/lib/replica-watch.ts) reads it. Database k's sequence numbers start at k × 1,000,000, so
// the segments of all databases can be decoded in one pass (database by database) and give one
// pooled distribution. Protocol:
//   → {type:'loaded'}   every database open
//   ← {type:'go'}
//   → {type:'result', perDb: [{db, txs, lastTxTs}], startedAt, endedAt, ...}
import { randomFillSync } from 'node:crypto';
import Database from 'better-sqlite3';
import { childConfig, hardDeadline, installChildErrorHandlers, now, send, waitForGo } from '../lib/common.js';

interface Config {
  dbs: string[];
  rate: number;
  durationMs: number;
}

const SEQ_STRIDE = 1_000_000;

installChildErrorHandlers();
const cfg = childConfig<Config>();
hardDeadline(cfg.durationMs + 180_000, 'scale-writers');

const conns = cfg.dbs.map((path, k) => {
  const db = new Database(path);
  db.pragma('journal_mode = WAL');
  db.pragma('synchronous = NORMAL');
  db.pragma('busy_timeout = 5000');
  db.pragma('wal_autocheckpoint = 0'); // walship checkpoints, as in the lag scenario
  const ins = db.prepare('INSERT INTO t(v) VALUES (?)');
  const payload = Buffer.alloc(100);
  randomFillSync(payload);
  payload.write('WSBM', 0, 'latin1');
  return { path, db, ins, payload, k, seq: 0, lastTxTs: NaN, maxLateMs: 0, busy: 0 };
});

const go = waitForGo();
await send({ type: 'loaded' });
await go;
const sab = new Int32Array(new SharedArrayBuffer(4));
const n = conns.length;
await send({ type: 'started' });
const t0 = now();
const end = t0 + cfg.durationMs;
let ticks = 0;
for (;;) {
  const t = now();
  if (t >= end) break;
  ticks++;
  for (const c of conns) {
    // database k is offset by k/n of one transaction interval, so the commits are spread out
    const due = Math.floor(((t - t0) / 1000) * cfg.rate + c.k / n);
    while (c.seq < due) {
      const ts = now();
      const dueAt = t0 + ((c.seq + 1 - c.k / n) / cfg.rate) * 1000;
      if (ts - dueAt > c.maxLateMs) c.maxLateMs = ts - dueAt;
      c.payload.writeUInt32LE(c.k * SEQ_STRIDE + c.seq, 4);
      c.payload.writeDoubleLE(ts, 8);
      try {
        c.ins.run(c.payload);
      } catch (err) {
        if ((err as { code?: string }).code !== 'SQLITE_BUSY') throw err;
        c.busy++;
        break;
      }
      c.lastTxTs = ts;
      c.seq++;
    }
  }
  Atomics.wait(sab, 0, 0, 2);
}
const endedAt = now();
const elapsedMs = endedAt - t0;
const cpu = process.cpuUsage();
const txs = conns.reduce((a, c) => a + c.seq, 0);
await send({
  type: 'result',
  startedAt: t0,
  endedAt,
  elapsedMs,
  ticks,
  txs,
  txPerSec: txs / (elapsedMs / 1000),
  perDb: conns.map((c) => ({
    db: c.path,
    k: c.k,
    txs: c.seq,
    firstSeq: c.k * SEQ_STRIDE,
    lastSeq: c.k * SEQ_STRIDE + c.seq - 1,
    lastTxTs: c.lastTxTs,
    maxLateMs: c.maxLateMs,
    busy: c.busy,
  })),
  maxLateMs: Math.max(...conns.map((c) => c.maxLateMs)),
  busy: conns.reduce((a, c) => a + c.busy, 0),
  cpuPct: ((cpu.user + cpu.system) / 1000 / elapsedMs) * 100,
});
// No close(): closing the last read-write connection would checkpoint the whole WAL.
process.exit(0);
