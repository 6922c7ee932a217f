// A separate process that replicates a database with the walship library (what an application
// would run next to itself, or what `walship replicate` does). Protocol over IPC:
//   → {type:'ready', ...}   after start() and the initial sync()
//   ← {type:'mark'}         reset counters (start of a measured window)
//   ← {type:'drain'}        writer finished: sync() until caught up, stop(), report, exit
// Samples status() every `sampleMs`. With `tap`, a pass-through object stage in front of LZ4
// reads the writer's payload markers (seq + commit time) out of every uploaded WAL segment; a
// transaction is durable when the replica client's write of the object containing it resolves.
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { Transform } from 'node:stream';
import { Replicator, lz4Stage, type ObjectStage, type ReplicaClient } from '@walship/core';
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
} from '../lib/common.js';
import { makeClient, type ReplicaSpec } from '../lib/clients.js';

interface Config {
  db: string;
  replica: ReplicaSpec;
  monitorInterval?: number | string;
  syncInterval?: number | string;
  options?: Record<string, unknown>;
  tap?: boolean;
  sampleMs?: number;
  maxLifetimeMs: number;
  drainTimeoutMs?: number;
}

installChildErrorHandlers();
const cfg = childConfig<Config>();
hardDeadline(cfg.maxLifetimeMs + 30_000, 'replicator');

// ---- tap: per-transaction durability times -------------------------------------------------
const MAGIC = Buffer.from('WSBM', 'latin1');
let maxSeq = -1;
let settledMaxSeq = -1;
let tapRejected = 0;
const tapSince = now() - 60_000;
let pendingSeqTs: number[] = []; // ts of seqs seen in objects fully read but not yet stored
let streamSeqTs: number[] = [];
const durable: { ts: number; lag: number }[] = [];

function tapEncoder(): Transform {
  let carry = Buffer.alloc(0);
  const local: number[] = [];
  return new Transform({
    transform(chunk: Buffer, _enc, cb) {
      const buf = carry.length ? Buffer.concat([carry, chunk]) : chunk;
      let i = buf.indexOf(MAGIC);
      while (i !== -1 && i + 16 <= buf.length) {
        const seq = buf.readUInt32LE(i + 4);
        if (seq > maxSeq && seq < maxSeq + 10_000_000) {
          const ts = buf.readDoubleLE(i + 8);
          // a plausible commit time (guards against a chance "WSBM" in other bytes)
          if (ts > tapSince && ts < now() + 1000) {
            maxSeq = seq;
            local.push(ts);
          } else tapRejected++;
        }
        i = buf.indexOf(MAGIC, i + 4);
      }
      carry = Buffer.from(buf.subarray(Math.max(0, buf.length - 15)));
      cb(null, chunk);
    },
    flush(cb) {
      for (const ts of local) streamSeqTs.push(ts);
      cb();
    },
  });
}
const tapStage: ObjectStage = {
  name: 'bench-tap',
  encoder: tapEncoder,
  decoder: () => new Transform({ transform: (c, _e, cb) => cb(null, c) }),
};

function wrapClient(inner: ReplicaClient): ReplicaClient {
  const settle = (): void => {
    const t = now();
    pendingSeqTs = streamSeqTs;
    streamSeqTs = [];
    settledMaxSeq = maxSeq;
    for (const ts of pendingSeqTs) durable.push({ ts, lag: t - ts });
  };
  // a failed upload: its transactions are not durable; the retry reads them again
  const discard = (): void => {
    streamSeqTs = [];
    maxSeq = settledMaxSeq;
  };
  return new Proxy(inner, {
    get(target, prop, receiver) {
      if (prop === 'writeWALSegment' || prop === 'writeSnapshot') {
        return async (...args: unknown[]) => {
          let r: unknown;
          try {
            r = await (target as any)[prop](...args);
          } catch (err) {
            discard();
            throw err;
          }
          settle();
          return r;
        };
      }
      const v = Reflect.get(target, prop, receiver);
      return typeof v === 'function' ? v.bind(target) : v;
    },
  });
}

// ---- replicator ----------------------------------------------------------------------------
const baseClient = await makeClient(cfg.replica);
const client = cfg.tap ? wrapClient(baseClient) : baseClient;
const rep = new Replicator(cfg.db, {
  ...(cfg.monitorInterval !== undefined ? { monitorInterval: cfg.monitorInterval } : {}),
  ...(cfg.options ?? {}),
  replicas: [
    {
      name: 'bench',
      client,
      ...(cfg.syncInterval !== undefined ? { syncInterval: cfg.syncInterval } : {}),
      ...(cfg.tap ? { stages: [tapStage, lz4Stage] } : {}),
    },
  ],
} as any);

const ops: Record<string, number> = { GET: 0, PUT: 0, DELETE: 0, LIST: 0 };
const opLog: { t: number; op: string; bytes: number }[] = [];
rep.on('operation', (e: { operation: string; bytes: number }) => {
  ops[e.operation] = (ops[e.operation] ?? 0) + 1;
  if (opLog.length < 10_000) opLog.push({ t: now(), op: e.operation, bytes: e.bytes });
});
let checkpoints = 0;
// checkpoint events; `lockHeldMs` (how long walship held SQLite's write lock) when the engine reports it
const checkpointLog: CheckpointRecord[] = [];
recordCheckpoints(rep, checkpointLog, () => checkpoints++);
let walShippedBytes = 0;
rep.on('replica-sync', (e: { bytes: number }) => (walShippedBytes += e.bytes));
let errors = 0;
const errorMessages: string[] = [];
const onError = (e: { error: Error }): void => {
  errors++;
  if (errorMessages.length < 5) errorMessages.push(String(e.error?.message ?? e.error).slice(0, 300));
};
rep.on('replica-error', onError);
rep.on('sync-error', onError);
rep.on('checkpoint-error', onError);
// event-loop delay of the replicator process (not in the idle scenario: its timer would add CPU)
const loopDelay = monitorEventLoopDelay({ resolution: 10 });
if (cfg.sampleMs !== 0) loopDelay.enable();

const tStart = now();
await rep.start();
await rep.sync();
const initialSyncMs = now() - tStart;
const memAfterStart = procMem();

// samples
const samples: { t: number; lagMs: number; walBytes: number }[] = [];
let markT = now();
let markCpu = process.cpuUsage();
const sampler =
  cfg.sampleMs === 0
    ? undefined
    : setInterval(() => {
        const s = rep.status();
        samples.push({ t: now(), lagMs: s.replicas[0]?.lagMs ?? 0, walBytes: s.walSizeBytes });
      }, cfg.sampleMs ?? 50);

function resetCounters(): void {
  for (const k of Object.keys(ops)) ops[k] = 0;
  opLog.length = 0;
  samples.length = 0;
  durable.length = 0;
  checkpoints = 0;
  checkpointLog.length = 0;
  walShippedBytes = 0;
  loopDelay.reset();
  markT = now();
  markCpu = process.cpuUsage();
}

let finishing = false;
async function finish(reason: string): Promise<void> {
  if (finishing) return;
  finishing = true;
  const windowMs = now() - markT;
  const cpu = process.cpuUsage(markCpu);
  const opsInWindow = { ...ops };
  const opLogWindow = opLog.slice();
  const checkpointsInWindow = checkpointLog.map((c) => ({ ...c, t: c.t - markT }));
  const tDrain = now();
  let drainOk = true;
  try {
    await rep.sync({ timeout: cfg.drainTimeoutMs ?? 60_000 });
  } catch {
    drainOk = false;
  }
  const drainMs = now() - tDrain;
  clearInterval(sampler);
  const lagSamples = samples.map((s) => s.lagMs);
  const walSamples = samples.map((s) => s.walBytes);
  const half = samples.length ? samples[0]!.t + (samples[samples.length - 1]!.t - samples[0]!.t) / 2 : 0;
  // per-transaction lag, overall and for the second half of the window (boundedness)
  const lags = durable.map((d) => d.lag);
  const tsMid = durable.length ? (durable[0]!.ts + durable[durable.length - 1]!.ts) / 2 : 0;
  const lagsFirst = durable.filter((d) => d.ts < tsMid).map((d) => d.lag);
  const lagsSecond = durable.filter((d) => d.ts >= tsMid).map((d) => d.lag);
  const perSecond: { s: number; maxLagMs: number; maxWalBytes: number }[] = [];
  for (const s of samples) {
    const k = Math.floor((s.t - markT) / 1000);
    const e = (perSecond[k] ??= { s: k, maxLagMs: 0, maxWalBytes: 0 });
    e.maxLagMs = Math.max(e.maxLagMs, s.lagMs);
    e.maxWalBytes = Math.max(e.maxWalBytes, s.walBytes);
  }
  const st = rep.status();
  await rep.stop({ timeout: 30_000 }).catch(() => {});
  await send({
    type: 'result',
    reason,
    initialSyncMs,
    windowMs,
    cpuPct: ((cpu.user + cpu.system) / 1000 / windowMs) * 100,
    cpuMs: (cpu.user + cpu.system) / 1000,
    ops: opsInWindow,
    opsTotal: Object.values(opsInWindow).reduce((a, b) => a + b, 0),
    opLog: opLogWindow.slice(0, 50).map((o) => ({ ...o, t: o.t - markT })),
    checkpoints,
    checkpointLog: checkpointsInWindow,
    errors,
    errorMessages,
    eventLoopDelayMaxMs: loopDelay.max / 1e6,
    eventLoopDelayP99Ms: loopDelay.percentile(99) / 1e6,
    walShippedBytes,
    drainMs,
    drainOk,
    statusLag: dist(lagSamples),
    statusLagSecondHalf: dist(samples.filter((s) => s.t >= half).map((s) => s.lagMs)),
    walMaxBytes: walSamples.length ? Math.max(...walSamples) : st.walSizeBytes,
    walEndBytes: st.walSizeBytes,
    txLag: dist(lags),
    txLagFirstHalf: dist(lagsFirst),
    txLagSecondHalf: dist(lagsSecond),
    txSeen: maxSeq + 1,
    tapRejected,
    txDurableRecorded: durable.length,
    perSecond,
    memAfterStart,
    mem: procMem(),
  });
  process.exit(0);
}

process.on('message', (m: any) => {
  if (m?.type === 'mark') resetCounters();
  else if (m?.type === 'drain') void finish('drain');
});
setTimeout(() => void finish('max-lifetime'), cfg.maxLifetimeMs).unref();
await send({ type: 'ready', initialSyncMs, pid: process.pid, memAfterStart });
// keep the process alive until told to drain
setInterval(() => {}, 1 << 30);
