// The "embedding" application: one Node process that writes single-row transactions (100-byte
// payload) at a fixed offered rate from its event loop, as a server handling requests would, and
// measures its own event-loop delay (perf_hooks.monitorEventLoopDelay). With `embed`, walship's
// Replicator runs inside this process (library mode, file replica, walship's defaults), exactly as
// an application embeds it:
//   new Replicator(db, { replicas: [{ client: new FileReplicaClient({ path }) }] })
// Without it the app runs alone (no replication, or with a Litestream sidecar started by the
// orchestrator — the app cannot tell).
//
// The writer loop: every tick writes the transactions due so far (offered rate × elapsed time),
// in slices of at most `sliceMs` of work, then yields (setImmediate when still behind, a 1 ms timer
// otherwise). So the app's own work adds at most a few ms to the loop delay; anything above that
// is time the loop could not run (the replicator's work on this thread, the write lock, GC).
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { randomFillSync } from 'node:crypto';
import { statSync } from 'node:fs';
import Database from 'better-sqlite3';
import { Replicator } from '@walship/core';
import { FileReplicaClient } from '@walship/file';
import {
  type CheckpointRecord,
  childConfig,
  dist,
  hardDeadline,
  installChildErrorHandlers,
  now,
  procMem,
  recordCheckpoints,
  send,
  waitForGo,
} from '../lib/common.js';

interface Config {
  db: string;
  rate: number;
  durationMs: number;
  /** run walship's Replicator in this process, replicating to this file replica */
  embed?: { replicaPath: string };
  sliceMs?: number;
  eldResolutionMs?: number;
  maxMs: number;
  /** send {type:'loaded'} when set up (replicator started), then wait for {type:'go'} */
  waitGo?: boolean;
}

installChildErrorHandlers();
const cfg = childConfig<Config>();
hardDeadline(cfg.maxMs, 'app');

const db = new Database(cfg.db);
db.pragma('journal_mode = WAL');
db.pragma('synchronous = NORMAL');
db.pragma('busy_timeout = 5000');
db.pragma('wal_autocheckpoint = 0');
db.exec('CREATE TABLE IF NOT EXISTS t(id INTEGER PRIMARY KEY, v BLOB NOT NULL)');
const ins = db.prepare('INSERT INTO t(v) VALUES (?)');
const payload = Buffer.alloc(100);
randomFillSync(payload);
payload.write('WSBM', 0, 'latin1');

let rep: Replicator | undefined;
const checkpointLog: CheckpointRecord[] = [];
let replicaErrors = 0;
const errorMessages: string[] = [];
let initialSyncMs = NaN;
if (cfg.embed) {
  rep = new Replicator(cfg.db, { replicas: [{ name: 'bench', client: new FileReplicaClient({ path: cfg.embed.replicaPath }) }] });
  recordCheckpoints(rep, checkpointLog);
  const onError = (e: { error: Error }): void => {
    replicaErrors++;
    if (errorMessages.length < 5) errorMessages.push(String(e.error?.message ?? e.error).slice(0, 300));
  };
  rep.on('replica-error', onError);
  rep.on('sync-error', onError);
  rep.on('checkpoint-error', onError);
  const t = now();
  await rep.start();
  await rep.sync();
  initialSyncMs = now() - t;
}

const sliceMs = cfg.sliceMs ?? 5;
const resolution = cfg.eldResolutionMs ?? 10;
const eld = monitorEventLoopDelay({ resolution });
const expected = Math.ceil((cfg.rate * cfg.durationMs) / 1000) + 16;
const lateness = new Float64Array(expected); // due time of each transaction → its commit
let seq = 0;
let walMax = 0;
const walSampler = setInterval(() => {
  try {
    walMax = Math.max(walMax, statSync(`${cfg.db}-wal`).size);
  } catch {}
}, 50);

if (cfg.waitGo) {
  const go = waitForGo();
  await send({ type: 'loaded' });
  await go;
}
await send({ type: 'started' });
const cpu0 = process.cpuUsage();
eld.enable();
const t0 = now();
const end = t0 + cfg.durationMs;
const intervalMs = 1000 / cfg.rate;
await new Promise<void>((resolve) => {
  const tick = (): void => {
    const t = now();
    if (t >= end) {
      resolve();
      return;
    }
    const due = Math.min(expected, Math.floor(((t - t0) / 1000) * cfg.rate));
    const sliceEnd = t + sliceMs;
    while (seq < due) {
      const ts = now();
      payload.writeUInt32LE(seq, 4);
      payload.writeDoubleLE(ts, 8);
      ins.run(payload);
      lateness[seq] = now() - (t0 + seq * intervalMs);
      seq++;
      if ((seq & 7) === 0 && now() >= sliceEnd) break;
    }
    if (seq < due) setImmediate(tick);
    else setTimeout(tick, 1);
  };
  tick();
});
const elapsedMs = now() - t0;
eld.disable();
const cpu = process.cpuUsage(cpu0);
clearInterval(walSampler);
const memEnd = procMem();

let drainMs = NaN;
let drainOk = true;
if (rep) {
  const t = now();
  try {
    await rep.sync({ timeout: 60_000 });
  } catch {
    drainOk = false;
  }
  drainMs = now() - t;
  await rep.stop({ timeout: 30_000 }).catch(() => {});
}
const ms = (ns: number): number => ns / 1e6;
await send({
  type: 'result',
  rate: cfg.rate,
  embedded: !!rep,
  txs: seq,
  elapsedMs,
  txPerSec: seq / (elapsedMs / 1000),
  eventLoopDelay: {
    resolutionMs: resolution,
    n: eld.count,
    p50: ms(eld.percentile(50)),
    p99: ms(eld.percentile(99)),
    max: ms(eld.max),
    mean: ms(eld.mean),
    min: ms(eld.min),
  },
  /** how late each transaction was committed after it was due (ms) */
  txLateness: dist(lateness.subarray(0, seq)),
  cpuPct: ((cpu.user + cpu.system) / 1000 / elapsedMs) * 100,
  walMaxBytes: walMax,
  initialSyncMs,
  drainMs,
  drainOk,
  // only the checkpoints while the app was writing (not the start-up sync nor the final drain)
  checkpointLog: checkpointLog.filter((c) => c.t >= t0 && c.t <= t0 + elapsedMs).map((c) => ({ ...c, t: c.t - t0 })),
  checkpointsOutsideWindow: checkpointLog.filter((c) => c.t < t0 || c.t > t0 + elapsedMs).length,
  replicaErrors,
  errorMessages,
  mem: memEnd,
});
process.exit(0);
