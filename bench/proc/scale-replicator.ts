// The replicator of the scale scenario: one DirectoryReplicator (`pattern: '*.db'`, `watch:
// true`, walship's defaults otherwise) over a directory of many databases, as an application
// serving many tenants would run it. Protocol over IPC:
//   → {type:'loaded', memFloor}      node + tsx + walship + the replica client loaded, nothing started
//   ← {type:'go'}                    start(), then sync() of every database
//   → {type:'caught-up', ...}        every database added and synced; replica pos = local pos checked in status()
//   ← {type:'mark'}                  reset the operation counters (start of a window)
//   ← {type:'sample', rels}          sample status() lagMs of these databases every second
//   ← {type:'query'}  → {type:'state', ...}   counters since the mark, events, lagMs samples
//   ← {type:'stop'}   → {type:'stopped', ms}  stop() (final syncs), then exit
import { comparePos, DirectoryReplicator, type Replicator } from '@walship/core';
import { childConfig, dist, hardDeadline, installChildErrorHandlers, now, procMem, send, waitForGo } from '../lib/common.js';
import { makeClient, type ReplicaSpec } from '../lib/clients.js';

interface Config {
  dir: string;
  replica: ReplicaSpec;
  maxLifetimeMs: number;
}

installChildErrorHandlers();
const cfg = childConfig<Config>();
hardDeadline(cfg.maxLifetimeMs + 30_000, 'scale-replicator');

const client = await makeClient(cfg.replica);
const memFloor = procMem();

const added: { relPath: string; t: number }[] = [];
const removed: { relPath: string; t: number }[] = [];
const dbErrors: { relPath: string; message: string; t: number }[] = [];
const skipped: { relPath: string; reason: string }[] = [];
let ops: Record<string, number> = {};
let opsTotal = 0;
let snapshots = 0;
let replicaErrors = 0;
const errorMessages: string[] = [];
let markT = now();
let markCpu = process.cpuUsage();

// the writes window (see 'sample'); declared first: the replicators' listeners use them
let sampler: NodeJS.Timeout | undefined;
let sampleT0 = 0;
// per second of the window: the largest lagMs of the sampled databases, and how many were > 2 s
const lagPerSecond: { s: number; maxLagMs: number; over2s: number }[] = [];
const uploadsPerSecond: number[] = [];
const checkpointLog: { t: number; durationMs: number; lockHeldMs?: number; mode: string }[] = [];

function watchReplicator(relPath: string, r: Replicator): void {
  r.on('operation', (e) => {
    ops[e.operation] = (ops[e.operation] ?? 0) + 1;
    opsTotal++;
  });
  r.on('snapshot', () => void snapshots++);
  r.on('checkpoint', (e) => {
    if (sampler) checkpointLog.push({ t: now() - sampleT0, durationMs: e.durationMs, lockHeldMs: e.lockHeldMs, mode: e.mode });
  });
  r.on('replica-sync', () => {
    if (!sampler) return;
    const k = Math.floor((now() - sampleT0) / 1000);
    uploadsPerSecond[k] = (uploadsPerSecond[k] ?? 0) + 1;
  });
  const onErr = (e: { error: Error }): void => {
    replicaErrors++;
    if (errorMessages.length < 10) errorMessages.push(`${relPath}: ${String(e.error?.message ?? e.error).slice(0, 300)}`);
  };
  r.on('replica-error', onErr);
  r.on('sync-error', onErr);
  r.on('checkpoint-error', onErr);
}

await send({ type: 'loaded', memFloor, pid: process.pid });
await waitForGo();

const t0 = now();
const dir = new DirectoryReplicator(cfg.dir, { pattern: '*.db', watch: true, replicas: [{ name: 'bench', client }] });
dir.on('database-added', (e) => {
  added.push({ relPath: e.relPath, t: now() });
  watchReplicator(e.relPath, e.replicator);
});
dir.on('database-removed', (e) => void removed.push({ relPath: e.relPath, t: now() }));
dir.on(
  'database-error',
  (e) => void dbErrors.push({ relPath: e.relPath, message: String(e.error?.message ?? e.error).slice(0, 300), t: now() }),
);
dir.on('database-skipped', (e) => void skipped.push({ relPath: e.relPath, reason: e.reason }));
await dir.start();
const tStarted = now();
const syncPos = await dir.sync({ timeout: 900_000 });
const tSynced = now();
// every database's replica at its local position (status() as reported after the sync)
const st = dir.status();
const behind = st.databases.filter((d) =>
  d.status.replicas.some((r) => r.pos.generation !== d.status.pos.generation || comparePos(r.pos, d.status.pos) < 0),
);
await send({
  type: 'caught-up',
  t0,
  tStarted,
  tSynced,
  startMs: tStarted - t0,
  catchUpMs: tSynced - t0,
  databases: st.databases.length,
  synced: syncPos.size,
  behind: behind.length,
  behindExamples: behind.slice(0, 3).map((d) => ({ relPath: d.relPath, pos: d.status.pos, replica: d.status.replicas[0]?.pos })),
  added: added.length,
  addedLastAt: added.length ? added[added.length - 1]!.t : NaN,
  failed: st.failed.length,
  skipped: st.skipped.length,
  events: st.events,
  snapshots,
  replicaErrors,
  errorMessages,
  dbErrors: dbErrors.slice(0, 5),
  ops: { ...ops },
  opsTotal,
  mem: procMem(),
  cpuMs: (() => {
    const c = process.cpuUsage();
    return (c.user + c.system) / 1000;
  })(),
});

// status() lagMs samples of some databases, every second
// (no timer at all outside the writes window: the idle CPU figure has none of the bench's own)
let sampled: string[] = [];
const lagSamples: number[] = [];
function sampleLag(): void {
  let max = 0;
  let over = 0;
  for (const rel of sampled) {
    const r = dir.replicator(rel);
    if (!r) continue;
    for (const rs of r.status().replicas) {
      lagSamples.push(rs.lagMs);
      if (rs.lagMs > max) max = rs.lagMs;
      if (rs.lagMs > 2000) over++;
    }
  }
  lagPerSecond.push({ s: Math.round((now() - sampleT0) / 1000), maxLagMs: max, over2s: over });
}

function state(): Record<string, unknown> {
  const windowMs = now() - markT;
  const cpu = process.cpuUsage(markCpu);
  const s = dir.status();
  return {
    type: 'state',
    windowMs,
    cpuPctSelf: ((cpu.user + cpu.system) / 1000 / windowMs) * 100,
    ops: { ...ops },
    opsTotal,
    snapshots,
    replicaErrors,
    errorMessages: errorMessages.slice(),
    added: added.slice(-20),
    addedCount: added.length,
    removed: removed.slice(),
    dbErrors: dbErrors.slice(-5),
    skipped: skipped.slice(-5),
    databases: s.databases.length,
    running: s.databases.filter((d) => d.state === 'running').length,
    unhealthy: s.databases.filter((d) => d.status.replicas.some((r) => !r.healthy)).length,
    failed: s.failed.length,
    events: s.events,
    statusLag: dist(lagSamples),
    statusLagSamples: lagSamples.length,
    lagPerSecond: lagPerSecond.slice(),
    uploadsPerSecond: Array.from(uploadsPerSecond, (x) => x ?? 0),
    checkpoints: {
      n: checkpointLog.length,
      byMode: checkpointLog.reduce<Record<string, number>>((a, c) => {
        a[c.mode] = (a[c.mode] ?? 0) + 1;
        return a;
      }, {}),
      durationMs: dist(checkpointLog.map((c) => c.durationMs)),
      lockHeldMs: dist(checkpointLog.filter((c) => typeof c.lockHeldMs === 'number').map((c) => c.lockHeldMs!)),
      perSecond: checkpointLog
        .reduce<number[]>((a, c) => {
          const s = Math.floor(c.t / 1000);
          a[s] = (a[s] ?? 0) + 1;
          return a;
        }, [])
        .map((x) => x ?? 0),
    },
    mem: procMem(),
    memoryUsage: process.memoryUsage(), // the main thread's isolate (the engine worker's heap is not in it)
  };
}

process.on('message', (m: any) => {
  if (m?.type === 'mark') {
    ops = {};
    opsTotal = 0;
    snapshots = 0;
    replicaErrors = 0;
    errorMessages.length = 0;
    markT = now();
    markCpu = process.cpuUsage();
  } else if (m?.type === 'sample') {
    sampled = m.rels ?? [];
    clearInterval(sampler);
    sampler = undefined;
    if (sampled.length) {
      lagSamples.length = 0;
      lagPerSecond.length = 0;
      uploadsPerSecond.length = 0;
      checkpointLog.length = 0;
      sampleT0 = now();
      sampler = setInterval(sampleLag, 1000);
    }
  } else if (m?.type === 'query') {
    void send(state());
  } else if (m?.type === 'stop') {
    clearInterval(sampler);
    const ts = now();
    void dir
      .stop({ timeout: 30_000 })
      .catch(() => {})
      .then(() => send({ type: 'stopped', ms: now() - ts }))
      .then(() => process.exit(0));
  }
});
setTimeout(() => process.exit(0), cfg.maxLifetimeMs).unref();
setInterval(() => {}, 1 << 30);
