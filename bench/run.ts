// walship benchmarks: `npm run bench` (full, ~15 min) or `npm run bench -- --quick` (< 2 min).
// Six scenarios, each an A/B (or A/B/C) comparison run side by side on this machine; see
// BENCHMARKS.md for what is measured and how. Raw results go to bench/results/<timestamp>.json.
import { execFileSync, spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { BENCH_DIR, Child, killAllChildren, median, now, runChild, sleep, spread, type Dist, type Spread } from './lib/common.js';
import { startS3, type S3Bench } from './lib/s3server.js';
import { isBounded, summarizeLag, table } from './lib/report.js';
import type { ReplicaSpec } from './lib/clients.js';

const args = new Set(process.argv.slice(2));
const QUICK = args.has('--quick');
const only = process.argv.find((a) => a.startsWith('--only='))?.slice(7).split(',');
const MiB = 1024 * 1024;
const GiB = 1024 * MiB;

const P = QUICK
  ? {
      overhead: { durationMs: 2000, rounds: 2, arms: ['none', 'walship'] as const },
      lag: { loads: [1000, 20000, 0], durationMs: 2500, reps: 1 },
      restore: { baseBytes: 8 * MiB, walBytes: 64 * MiB, indexes: 20, pagesPerIndex: 256, rounds: 1 },
      idle: { ms: 20_000 },
      memory: { sizes: [64 * MiB, 256 * MiB] },
      synclat: { calls: 50 },
    }
  : {
      overhead: { durationMs: 6000, rounds: 5, arms: ['none', 'walship', 'none-ac1000'] as const },
      lag: { loads: [1000, 5000, 20000, 50000, 0], durationMs: 12_000, reps: 2 },
      restore: { baseBytes: 64 * MiB, walBytes: 1100 * MiB, indexes: 300, pagesPerIndex: 256, rounds: 3 },
      idle: { ms: 300_000 },
      memory: { sizes: [1 * GiB, 4 * GiB] },
      synclat: { calls: 200 },
    };

const SYNC_INTERVAL_MS = 1000; // walship defaults: monitorInterval 1s, syncInterval 1s
const MONITOR_INTERVAL_MS = 1000;

const tmpRoot = mkdtempSync(join(os.tmpdir(), 'walship-bench-'));
let s3: S3Bench | undefined;
const cleanup = (): void => {
  killAllChildren();
  rmSync(tmpRoot, { recursive: true, force: true });
};
process.on('exit', cleanup);
for (const sig of ['SIGINT', 'SIGTERM'] as const)
  process.on(sig, () => {
    cleanup();
    process.exit(130);
  });

const log = (msg: string): void => {
  process.stderr.write(`[bench ${new Date().toISOString().slice(11, 19)}] ${msg}\n`);
};

function freshDir(name: string): string {
  const d = join(tmpRoot, name);
  rmSync(d, { recursive: true, force: true });
  mkdirSync(d, { recursive: true });
  return d;
}

function createAppDb(path: string): void {
  const db = new Database(path);
  db.pragma('journal_mode = WAL');
  db.exec('CREATE TABLE IF NOT EXISTS t(id INTEGER PRIMARY KEY, v BLOB NOT NULL)');
  db.close();
}

function dirBytes(d: string): number {
  let n = 0;
  for (const e of readdirSync(d, { withFileTypes: true, recursive: true } as any) as any[]) {
    if (e.isFile()) n += statSync(join(e.parentPath ?? e.path, e.name)).size;
  }
  return n;
}

function machine(): Record<string, unknown> {
  let sqlite = '';
  try {
    const db = new Database(':memory:');
    sqlite = (db.prepare('select sqlite_version() v').get() as { v: string }).v;
    db.close();
  } catch {}
  const cpus = os.cpus();
  let lz4 = '';
  try {
    lz4 = execFileSync('lz4', ['--version'], { encoding: 'utf8' }).trim();
  } catch {}
  return {
    nproc: cpus.length,
    cpuModel: cpus[0]?.model,
    memTotalBytes: os.totalmem(),
    memFreeBytes: os.freemem(),
    loadavgAtStart: os.loadavg(),
    kernel: os.release(),
    node: process.version,
    sqlite,
    betterSqlite3: JSON.parse(readFileSync(join(BENCH_DIR, '..', 'node_modules', 'better-sqlite3', 'package.json'), 'utf8')).version,
    lz4,
    tmpdir: os.tmpdir(),
  };
}

// ---------------------------------------------------------------------------------------------
// 1. overhead
async function overhead(): Promise<any> {
  const { durationMs, rounds, arms } = P.overhead;
  const runs: any[] = [];
  for (let r = 0; r < rounds; r++) {
    // rotate the order each round so no arm always runs first
    const order = arms.map((_, i) => arms[(i + r) % arms.length]!);
    for (const arm of order) {
      const dir = freshDir('overhead');
      const db = join(dir, 'app.db');
      createAppDb(db);
      let rep: Child | undefined;
      if (arm === 'walship') {
        rep = new Child('replicator.ts', { db, replica: { kind: 'file', path: join(dir, 'replica') }, maxLifetimeMs: durationMs + 90_000 });
        await rep.next('ready', 60_000);
      }
      const w = await runChild('writer.ts', { db, durationMs, rate: 0, autocheckpoint: arm === 'none-ac1000' ? 1000 : 0 }, durationMs + 60_000);
      let repResult: any;
      if (rep) {
        rep.send({ type: 'drain' });
        repResult = await rep.next('result', 120_000);
        rep.kill();
      }
      runs.push({ round: r, arm, txPerSec: w.txPerSec, txs: w.txs, walBytesAtEnd: w.walBytesAtEnd, writerMaxStallMs: w.maxStallMs, replicator: repResult && { cpuPct: repResult.cpuPct, drainMs: repResult.drainMs, walMaxBytes: repResult.walMaxBytes, checkpoints: repResult.checkpoints, errors: repResult.errors, errorMessages: repResult.errorMessages, eventLoopDelayMaxMs: repResult.eventLoopDelayMaxMs, walShippedBytes: repResult.walShippedBytes } });
      log(`overhead round ${r + 1}/${rounds} ${arm}: ${Math.round(w.txPerSec)} tx/s${repResult ? `, replicator CPU ${repResult.cpuPct.toFixed(0)}%, drain ${repResult.drainMs.toFixed(0)} ms` : ''}`);
      rmSync(dir, { recursive: true, force: true });
    }
  }
  const by = (arm: string): Spread => spread(runs.filter((x) => x.arm === arm).map((x) => x.txPerSec));
  const perRoundRatio = Array.from({ length: rounds }, (_, r) => {
    const a = runs.find((x) => x.round === r && x.arm === 'none')!;
    const b = runs.find((x) => x.round === r && x.arm === 'walship')!;
    return b.txPerSec / a.txPerSec;
  });
  const none = by('none');
  const ws = by('walship');
  return {
    durationMs,
    rounds,
    none,
    walship: ws,
    noneAutocheckpoint1000: arms.includes('none-ac1000' as never) ? by('none-ac1000') : undefined,
    ratioOfMedians: ws.median / none.median,
    perRoundRatio: spread(perRoundRatio),
    runs,
  };
}

// ---------------------------------------------------------------------------------------------
// 2. lag & keep-up
async function lag(): Promise<any> {
  const { loads, durationMs, reps } = P.lag;
  const runs: any[] = [];
  for (let rep = 0; rep < reps; rep++) {
    const order = rep % 2 === 0 ? loads : [...loads].reverse();
    for (const rate of order) {
      const dir = freshDir('lag');
      const db = join(dir, 'app.db');
      createAppDb(db);
      const rc = new Child('replicator.ts', { db, replica: { kind: 'file', path: join(dir, 'replica') }, tap: true, sampleMs: 50, maxLifetimeMs: durationMs + 120_000, drainTimeoutMs: 90_000 });
      await rc.next('ready', 60_000);
      const writer = new Child('writer.ts', { db, durationMs, rate, autocheckpoint: 0 });
      await writer.next('started', 30_000);
      rc.send({ type: 'mark' });
      const w = await writer.next('result', durationMs + 60_000);
      await writer.exited;
      rc.send({ type: 'drain' });
      const r = await rc.next('result', 150_000);
      rc.kill();
      const walMBps = r.walShippedBytes / MiB / (w.elapsedMs / 1000);
      const bounded = isBounded(r);
      const meetsTarget = r.txLag.p99 <= SYNC_INTERVAL_MS + 500;
      const run = {
        rep,
        offered: rate || 'max',
        achievedTxPerSec: w.txPerSec,
        writerMaxStallMs: w.maxStallMs,
        walMBps,
        txLag: r.txLag as Dist,
        txLagFirstHalf: r.txLagFirstHalf,
        txLagSecondHalf: r.txLagSecondHalf,
        statusLag: r.statusLag,
        statusLagSecondHalf: r.statusLagSecondHalf,
        walMaxBytes: r.walMaxBytes,
        drainMs: r.drainMs,
        drainOk: r.drainOk,
        bounded,
        meetsTarget,
        txCommitted: w.txs,
        txSeenByTap: r.txSeen,
        txDurableRecorded: r.txDurableRecorded,
        replicatorCpuPct: r.cpuPct,
        checkpoints: r.checkpoints,
        errors: r.errors,
        errorMessages: r.errorMessages,
        replicatorEventLoopDelayMaxMs: r.eventLoopDelayMaxMs,
        perSecond: r.perSecond,
      };
      runs.push(run);
      log(
        `lag ${rate || 'max'} tx/s (rep ${rep + 1}): achieved ${Math.round(w.txPerSec)} tx/s, ${walMBps.toFixed(1)} MiB/s WAL, lag p50/p99/max ${r.txLag.p50.toFixed(0)}/${r.txLag.p99.toFixed(0)}/${r.txLag.max.toFixed(0)} ms, WAL max ${(r.walMaxBytes / MiB).toFixed(1)} MiB, drain ${r.drainMs.toFixed(0)} ms, ${bounded ? 'bounded' : 'NOT bounded'}`,
      );
      rmSync(dir, { recursive: true, force: true });
    }
  }
  const { levels, highestSustained } = summarizeLag(runs, loads);
  return {
    durationMs,
    syncIntervalMs: SYNC_INTERVAL_MS,
    monitorIntervalMs: MONITOR_INTERVAL_MS,
    target20kP99Ms: SYNC_INTERVAL_MS + 500,
    levels,
    highestSustained,
    runs,
  };
}

// ---------------------------------------------------------------------------------------------
// 3. restore
function segmentFiles(replicaDir: string, generation: string): string[] {
  const d = join(replicaDir, 'generations', generation, 'wal');
  return readdirSync(d)
    .filter((f) => f.endsWith('.wal.lz4'))
    .sort((a, b) => {
      const [ai, ao] = a.split(/[_.]/).map((x) => parseInt(x, 16));
      const [bi, bo] = b.split(/[_.]/).map((x) => parseInt(x, 16));
      return ai! - bi! || ao! - bo!;
    })
    .map((f) => join(d, f));
}

async function timeLz4Cli(files: string[], out: string): Promise<number> {
  const t = now();
  await new Promise<void>((resolve, reject) => {
    const p = spawn('sh', ['-c', 'out="$1"; shift; cat "$@" | lz4 -dc > "$out"', 'sh', out, ...files], { stdio: 'inherit' });
    const timer = setTimeout(() => p.kill('SIGKILL'), 600_000);
    p.on('exit', (code) => {
      clearTimeout(timer);
      code === 0 ? resolve() : reject(new Error(`lz4 -dc exited ${code}`));
    });
  });
  return now() - t;
}

async function restoreScenario(): Promise<any> {
  const R = P.restore;
  const fixtures: Record<string, any> = {};
  const specs: Record<string, { spec: ReplicaSpec; dir: string; gen: string; segs: string[] }> = {};
  for (const mode of ['bigwal', 'manyidx'] as const) {
    const dir = freshDir(`restore-${mode}`);
    const replicaDir = join(dir, 'replica');
    const spec: ReplicaSpec = { kind: 'file', path: replicaDir };
    log(`restore: building ${mode} replica…`);
    const b = await runChild('build.ts', { mode, db: join(dir, 'src.db'), replica: spec, baseBytes: R.baseBytes, walBytes: R.walBytes, indexes: R.indexes, pagesPerIndex: R.pagesPerIndex, maxMs: 900_000 }, 900_000);
    fixtures[mode] = b;
    log(`restore: ${mode}: ${(b.walWrittenBytes / MiB).toFixed(0)} MiB WAL in ${b.walIndexes} index(es), ${b.walSegments} segments, ${(b.walStoredBytes / MiB).toFixed(0)} MiB stored, built in ${(b.buildMs / 1000).toFixed(1)} s`);
    rmSync(join(dir, 'src.db'), { force: true });
    rmSync(join(dir, 'src.db-wal'), { force: true });
    rmSync(join(dir, 'src.db-shm'), { force: true });
    specs[mode] = { spec, dir, gen: b.generation, segs: segmentFiles(replicaDir, b.generation) };
  }
  const runs: any[] = [];
  for (let r = 0; r < R.rounds; r++) {
    const steps = ['walship:bigwal', 'lz4cli:bigwal', 'decoder:bigwal', 'walship:manyidx', 'lz4cli:manyidx'];
    const order = steps.map((_, i) => steps[(i + r) % steps.length]!);
    for (const step of order) {
      const [method, mode] = step.split(':') as [string, 'bigwal' | 'manyidx'];
      const s = specs[mode]!;
      const out = join(s.dir, 'out.db');
      rmSync(out, { force: true });
      let run: any;
      if (method === 'walship') {
        const res = await runChild('restore.ts', { mode: 'restore', replica: s.spec, outputPath: out, verify: 'none', maxMs: 900_000 }, 900_000);
        run = { ms: res.ms, walBytes: res.walBytes, peakRssBytes: res.mem.hwmBytes, rssBeforeBytes: res.memBefore.rssBytes, outBytes: statSync(out).size };
      } else if (method === 'lz4cli') {
        try {
          const ms = await timeLz4Cli(s.segs, out);
          run = { ms, walBytes: statSync(out).size };
        } catch (err) {
          log(`restore: lz4 CLI unavailable or failed (${(err as Error).message}); physical-limit line skipped (Debian: apt-get install lz4)`);
          continue;
        }
      } else {
        const res = await runChild('restore.ts', { mode: 'decode', replica: s.spec, outputPath: out, files: s.segs, maxMs: 900_000 }, 900_000);
        run = { ms: res.ms, walBytes: res.walBytes, peakRssBytes: res.mem.hwmBytes };
      }
      run.mbps = run.walBytes / MiB / (run.ms / 1000);
      runs.push({ round: r, method, mode, ...run });
      log(`restore round ${r + 1} ${method} ${mode}: ${(run.ms / 1000).toFixed(2)} s, ${run.mbps.toFixed(0)} MiB/s of WAL${run.peakRssBytes ? `, peak RSS ${(run.peakRssBytes / MiB).toFixed(0)} MiB` : ''}`);
      rmSync(out, { force: true });
      for (const sfx of ['-wal', '-shm']) rmSync(out + sfx, { force: true });
    }
  }
  const agg = (method: string, mode: string) => {
    const rs = runs.filter((x) => x.method === method && x.mode === mode);
    if (!rs.length) return undefined;
    return {
      seconds: spread(rs.map((x) => x.ms / 1000)),
      mbps: spread(rs.map((x) => x.mbps)),
      walBytes: rs[0].walBytes,
      peakRssBytes: rs[0].peakRssBytes !== undefined ? Math.max(...rs.map((x) => x.peakRssBytes)) : undefined,
    };
  };
  const result = {
    fixtures,
    bigwal: { walship: agg('walship', 'bigwal'), lz4cli: agg('lz4cli', 'bigwal'), decoder: agg('decoder', 'bigwal') },
    manyidx: { walship: agg('walship', 'manyidx'), lz4cli: agg('lz4cli', 'manyidx') },
    runs,
  };
  for (const s of Object.values(specs)) rmSync(s.dir, { recursive: true, force: true });
  return result;
}

// ---------------------------------------------------------------------------------------------
// 4. idle
async function idle(): Promise<any> {
  s3 ??= await startS3();
  const dir = freshDir('idle');
  const db = join(dir, 'app.db');
  {
    const d = new Database(db);
    d.pragma('journal_mode = WAL');
    d.exec('CREATE TABLE t(id INTEGER PRIMARY KEY, v BLOB NOT NULL)');
    const ins = d.prepare('INSERT INTO t(v) VALUES (?)');
    d.transaction(() => {
      for (let i = 0; i < 10_000; i++) ins.run(Buffer.alloc(100, i & 255));
    })();
    d.close();
  }
  const rc = new Child('replicator.ts', { db, replica: { kind: 's3', endpoint: s3.endpoint, bucket: s3.bucket, path: 'idle' }, sampleMs: 0, maxLifetimeMs: P.idle.ms + 120_000 });
  const ready = await rc.next('ready', 60_000);
  // one write after start so the WAL is not empty, then its sync; the window starts after that
  {
    const d = new Database(db);
    d.pragma('busy_timeout = 5000');
    d.pragma('wal_autocheckpoint = 0');
    d.prepare('INSERT INTO t(v) VALUES (?)').run(Buffer.alloc(100, 1));
    d.close();
  }
  await sleep(3000); // one monitor + sync interval: the write above is shipped
  const reqBefore = s3.requests;
  const byMethodBefore = s3.byMethod;
  rc.send({ type: 'mark' });
  log(`idle: measuring ${P.idle.ms / 1000} s with no writes…`);
  await sleep(P.idle.ms);
  const reqAfter = s3.requests;
  const byMethodAfter = s3.byMethod;
  rc.send({ type: 'drain' });
  const r = await rc.next('result', 120_000);
  rc.kill();
  rmSync(dir, { recursive: true, force: true });
  const byMethod: Record<string, number> = {};
  for (const [k, v] of Object.entries(byMethodAfter)) if (v - (byMethodBefore[k] ?? 0)) byMethod[k] = v - (byMethodBefore[k] ?? 0);
  return {
    windowMs: r.windowMs,
    initialSyncMs: ready.initialSyncMs,
    operationEvents: r.opsTotal,
    operationsByKind: r.ops,
    operationLog: r.opLog,
    s3rverRequests: reqAfter - reqBefore,
    s3rverRequestsByMethod: byMethod,
    cpuPct: r.cpuPct,
    cpuMs: r.cpuMs,
    checkpoints: r.checkpoints,
  };
}

// ---------------------------------------------------------------------------------------------
// 5. memory
async function memory(): Promise<any> {
  const out: any[] = [];
  for (const size of P.memory.sizes) {
    const dir = freshDir('memory');
    const db = join(dir, 'big.db');
    log(`memory: building a ${(size / MiB).toFixed(0)} MiB database…`);
    const b = await runChild('build.ts', { mode: 'bigdb', db, dbBytes: size, maxMs: 900_000 }, 900_000);
    const spec: ReplicaSpec = { kind: 'file', path: join(dir, 'replica') };
    const t = now();
    const rc = new Child('replicator.ts', { db, replica: spec, maxLifetimeMs: 900_000 });
    const ready = await rc.next('ready', 900_000);
    const snapMs = now() - t;
    rc.send({ type: 'drain' });
    const rr = await rc.next('result', 120_000);
    rc.kill();
    const stored = dirBytes(join(dir, 'replica'));
    const outDb = join(dir, 'restored.db');
    const res = await runChild('restore.ts', { mode: 'restore', replica: spec, outputPath: outDb, verify: 'quick', maxMs: 900_000 }, 900_000);
    const entry = {
      dbBytes: b.dbBytes,
      storedBytes: stored,
      snapshot: { initialSyncMs: ready.initialSyncMs, wallMsInclStartup: snapMs, peakRssBytes: ready.memAfterStart.hwmBytes, peakRssAtStopBytes: rr.mem.hwmBytes },
      restore: { ms: res.ms, peakRssBytes: res.mem.hwmBytes, rssBeforeBytes: res.memBefore.rssBytes, rssSampledMaxBytes: res.rssSampledMax, verify: 'quick' },
    };
    out.push(entry);
    log(`memory ${(size / MiB).toFixed(0)} MiB: snapshot ${(ready.initialSyncMs / 1000).toFixed(1)} s peak RSS ${(entry.snapshot.peakRssBytes / MiB).toFixed(0)} MiB; restore ${(res.ms / 1000).toFixed(1)} s peak RSS ${(entry.restore.peakRssBytes / MiB).toFixed(0)} MiB`);
    rmSync(dir, { recursive: true, force: true });
  }
  // what an idle child (node + tsx + walship sources loaded) holds before any work: the floor of the figures above
  const floor = await runChild('floor.ts', {}, 60_000);
  log(`memory: RSS floor of a child with tsx + walship loaded: ${(floor.mem.rssBytes / MiB).toFixed(0)} MiB`);
  return { sizes: out, childFloorRssBytes: floor.mem.rssBytes };
}

// ---------------------------------------------------------------------------------------------
// 6. sync() latency
async function synclat(): Promise<any> {
  s3 ??= await startS3();
  const res: Record<string, any> = {};
  const targets: Array<[string, (d: string) => ReplicaSpec]> = [
    ['file', (d) => ({ kind: 'file', path: join(d, 'replica') })],
    ['s3rver', () => ({ kind: 's3', endpoint: s3!.endpoint, bucket: s3!.bucket, path: `synclat-${Date.now()}` })],
  ];
  for (const [name, mk] of targets) {
    const dir = freshDir('synclat');
    const r = await runChild('synclat.ts', { db: join(dir, 'app.db'), replica: mk(dir), calls: P.synclat.calls, gapMs: 5, maxMs: 300_000 }, 300_000);
    res[name] = r;
    log(`sync() to ${name}: p50 ${r.latencyMs.p50.toFixed(1)} ms, p99 ${r.latencyMs.p99.toFixed(1)} ms, max ${r.latencyMs.max.toFixed(1)} ms (${r.latencyMs.n} calls)`);
    rmSync(dir, { recursive: true, force: true });
  }
  return res;
}

// ---------------------------------------------------------------------------------------------
async function main(): Promise<void> {
  const started = new Date();
  const t0 = now();
  const results: any = { command: `npm run bench${QUICK ? ' -- --quick' : ''}`, argv: process.argv.slice(2), quick: QUICK, startedAt: started.toISOString(), machine: machine(), params: P };
  log(`walship bench (${QUICK ? 'quick' : 'full'}), temp dir ${tmpRoot}`);
  const scenarios: Array<[string, () => Promise<any>]> = [
    ['overhead', overhead],
    ['lag', lag],
    ['restore', restoreScenario],
    ['memory', memory],
    ['synclat', synclat],
    ['idle', idle],
  ];
  const resultsDir = join(BENCH_DIR, 'results');
  mkdirSync(resultsDir, { recursive: true });
  const file = join(resultsDir, `${started.toISOString().replace(/[:.]/g, '-')}${QUICK ? '-quick' : ''}.json`);
  for (const [name, fn] of scenarios) {
    if (only && !only.includes(name)) continue;
    const ts = now();
    try {
      results[name] = await fn();
    } catch (err) {
      results[name + 'Error'] = String((err as Error).stack ?? err);
      log(`${name} FAILED: ${(err as Error).message}`);
    }
    results.durationsS ??= {};
    results.durationsS[name] = (now() - ts) / 1000;
    writeFileSync(file, JSON.stringify(results, null, 2));
  }
  if (s3) await s3.stop();
  results.totalSeconds = (now() - t0) / 1000;
  results.loadavgAtEnd = os.loadavg();
  results.table = table(results);
  writeFileSync(file, JSON.stringify(results, null, 2));
  process.stdout.write(`\n${results.table}\n\nmachine: ${results.machine.nproc} cores, ${(results.machine.memTotalBytes / GiB).toFixed(1)} GiB, node ${results.machine.node}, SQLite ${results.machine.sqlite}; load ${os.loadavg().map((x) => x.toFixed(2)).join(' ')}\ntotal ${results.totalSeconds.toFixed(0)} s; raw results: ${file}\n`);
}

await main();
process.exit(0);
