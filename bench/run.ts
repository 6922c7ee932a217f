// walship benchmarks: `npm run bench` (full, ~24–26 min) or `npm run bench -- --quick` (~3 min).
// Each scenario is an A/B(/C) comparison run side by side on this machine, with the real
// Litestream v0.3.13 as one arm wherever the scenario applies ($LITESTREAM_BIN or
// ../shared/bin/litestream-v0.3.13; skipped with a message when absent). See BENCHMARKS.md for
// what is measured and how. Raw results go to bench/results/<timestamp>.json.
import { execFileSync, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import {
  BENCH_DIR,
  Child,
  dist,
  hwmSampler,
  killAllChildren,
  median,
  now,
  procCpuMs,
  runChild,
  sleep,
  spread,
  type Dist,
  type Spread,
} from './lib/common.js';
import { startS3, type S3Bench } from './lib/s3server.js';
import { lockStats, summarizeLag, table } from './lib/report.js';
import type { ReplicaSpec } from './lib/clients.js';
import { ReplicaWatcher, replicaLag, waitReplicaComplete, walSizeSampler } from './lib/replica-watch.js';
import {
  cliRestore,
  type ExtProc,
  litestreamInfo,
  litestreamRestore,
  replicaSnapshots,
  startLitestream,
  startWalshipCli,
  waitReplicaReady,
  writeYaml,
} from './lib/sidecar.js';
import { ageIdentityToRecipient, comparePos, generateAgeIdentity } from '@walship/core';
import { scale, scaleParams, scaleTable } from './lib/scale.js';

const args = new Set(process.argv.slice(2));
const QUICK = args.has('--quick');
const only = process.argv
  .find((a) => a.startsWith('--only='))
  ?.slice(7)
  .split(',');
const SCENARIOS = ['overhead', 'lag', 'restore', 'memory', 'idle', 'embedding', 'synclat', 'age', 'follow', 'scale'];
const MiB = 1024 * 1024;
const GiB = 1024 * MiB;

if (only) {
  const bad = only.filter((n) => !SCENARIOS.includes(n));
  if (bad.length) {
    process.stderr.write(`unknown scenario(s) ${bad.join(', ')}; --only= takes ${SCENARIOS.join(', ')}\n`);
    process.exit(1);
  }
}

const LS = litestreamInfo(args.has('--no-litestream'));
const useLs = LS.available;

type Arm = 'none' | 'walship' | 'litestream' | 'none-ac1000';
const withLs = <T extends string>(arms: T[]): T[] => arms.filter((a) => useLs || a !== 'litestream');

const P = QUICK
  ? {
      overhead: { durationMs: 2000, rounds: 2, arms: withLs<Arm>(['none', 'walship', 'litestream']) },
      lag: { loads: [20000, 0], durationMs: 2500, reps: 1, arms: withLs(['walship', 'litestream']), completeCapMs: 30_000 },
      restore: { baseBytes: 8 * MiB, walBytes: 32 * MiB, indexes: 10, pagesPerIndex: 256, rounds: 1 },
      idle: { ms: 15_000 },
      memory: { sizes: [16 * MiB, 64 * MiB] },
      embedding: { rates: [20000], durationMs: 3000, reps: 1, arms: withLs(['none', 'walship', 'litestream']) },
      synclat: { calls: 30 },
      follow: { rate: 1000, durationMs: 6000, idleMs: 15_000, backends: ['file', 's3'] as const },
      age: { dbBytes: 32 * MiB, rounds: 1 },
      scale: scaleParams(true, process.argv),
    }
  : {
      overhead: { durationMs: 5000, rounds: 4, arms: withLs<Arm>(['none', 'walship', 'litestream', 'none-ac1000']) },
      lag: { loads: [1000, 5000, 20000, 0], durationMs: 8000, reps: 2, arms: withLs(['walship', 'litestream']), completeCapMs: 60_000 },
      restore: { baseBytes: 64 * MiB, walBytes: 1100 * MiB, indexes: 300, pagesPerIndex: 256, rounds: 2 },
      idle: { ms: 300_000 },
      memory: { sizes: [1 * GiB, 4 * GiB] },
      embedding: { rates: [1000, 5000, 20000], durationMs: 5000, reps: 2, arms: withLs(['none', 'walship', 'litestream']) },
      synclat: { calls: 200 },
      follow: { rate: 1000, durationMs: 20_000, idleMs: 60_000, backends: ['file', 's3'] as const },
      age: { dbBytes: 256 * MiB, rounds: 2 },
      scale: scaleParams(false, process.argv),
    };

const SYNC_INTERVAL_MS = 1000; // walship's and Litestream's defaults: monitor interval 1 s, sync interval 1 s
const MONITOR_INTERVAL_MS = 1000;
const WATCH_POLL_MS = 25;

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

/** A Litestream sidecar replicating `db` to a file replica, started and ready (snapshot and first WAL segment on the replica). */
async function litestreamSidecar(
  dir: string,
  db: string,
  replicaDir: string,
  extra: { db?: Record<string, string | number> } = {},
): Promise<ExtProc> {
  const yml = join(dir, 'litestream.yml');
  writeYaml(yml, [{ path: db, replica: { type: 'file', path: replicaDir }, ...extra }]);
  const ls = startLitestream(yml);
  try {
    await waitReplicaReady(replicaDir, ls, 60_000);
  } catch (err) {
    ls.kill();
    throw err;
  }
  return ls;
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
      const replicaDir = join(dir, 'replica');
      createAppDb(db);
      // the writer starts up while the replicator does; it writes once both are ready
      const writer = new Child('writer.ts', { db, durationMs, rate: 0, autocheckpoint: arm === 'none-ac1000' ? 1000 : 0, waitGo: true });
      const loaded = writer.next('loaded', 60_000);
      let rep: Child | undefined;
      let ls: ExtProc | undefined;
      if (arm === 'walship') {
        rep = new Child('replicator.ts', { db, replica: { kind: 'file', path: replicaDir }, maxLifetimeMs: durationMs + 90_000 });
        await rep.next('ready', 60_000);
      } else if (arm === 'litestream') {
        ls = await litestreamSidecar(dir, db, replicaDir);
      }
      const sidecarPid = rep?.pid ?? ls?.pid;
      await loaded;
      writer.send({ type: 'go' });
      await writer.next('started', 30_000);
      const cpu0 = sidecarPid ? procCpuMs(sidecarPid) : NaN;
      const w = await writer.next('result', durationMs + 60_000);
      const cpu1 = sidecarPid ? procCpuMs(sidecarPid) : NaN;
      await writer.exited;
      let repResult: any;
      if (rep) {
        rep.send({ type: 'drain' });
        repResult = await rep.next('result', 120_000);
        rep.kill();
      }
      if (ls) {
        ls.kill();
        await ls.exited;
      }
      const sidecarCpuPct = sidecarPid ? ((cpu1 - cpu0) / w.elapsedMs) * 100 : undefined;
      runs.push({
        round: r,
        arm,
        txPerSec: w.txPerSec,
        txs: w.txs,
        walBytesAtEnd: w.walBytesAtEnd,
        writerMaxStallMs: w.maxStallMs,
        sidecarCpuPct,
        replicator: repResult && {
          cpuPct: repResult.cpuPct,
          drainMs: repResult.drainMs,
          walMaxBytes: repResult.walMaxBytes,
          checkpoints: repResult.checkpoints,
          checkpointLog: repResult.checkpointLog,
          errors: repResult.errors,
          errorMessages: repResult.errorMessages,
          eventLoopDelayMaxMs: repResult.eventLoopDelayMaxMs,
          walShippedBytes: repResult.walShippedBytes,
        },
        litestream: ls && { exit: ls.proc.exitCode ?? ls.proc.signalCode, syncErrors: ls.countLog(/level=ERROR/) },
      });
      log(
        `overhead round ${r + 1}/${rounds} ${arm}: ${Math.round(w.txPerSec)} tx/s${sidecarCpuPct !== undefined ? `, replicator CPU ${sidecarCpuPct.toFixed(0)}%` : ''}${repResult ? `, drain ${repResult.drainMs.toFixed(0)} ms` : ''}, WAL ${(w.walBytesAtEnd / MiB).toFixed(0)} MiB at end`,
      );
      rmSync(dir, { recursive: true, force: true });
    }
  }
  const by = (arm: string): Spread => spread(runs.filter((x) => x.arm === arm).map((x) => x.txPerSec));
  const perRound = (a: string, b: string): number[] =>
    Array.from(
      { length: rounds },
      (_, r) => runs.find((x) => x.round === r && x.arm === a)!.txPerSec / runs.find((x) => x.round === r && x.arm === b)!.txPerSec,
    );
  const none = by('none');
  const ws = by('walship');
  const hasLs = arms.includes('litestream');
  const lsS = hasLs ? by('litestream') : undefined;
  return {
    durationMs,
    rounds,
    none,
    walship: ws,
    litestream: lsS,
    noneAutocheckpoint1000: arms.includes('none-ac1000') ? by('none-ac1000') : undefined,
    ratioOfMedians: ws.median / none.median,
    perRoundRatio: spread(perRound('walship', 'none')),
    perRoundRatioLitestream: hasLs ? spread(perRound('litestream', 'none')) : undefined,
    perRoundRatioWalshipLitestream: hasLs ? spread(perRound('walship', 'litestream')) : undefined,
    runs,
  };
}

// ---------------------------------------------------------------------------------------------
// 2. lag & keep-up
async function lagRun(arm: string, rate: number, rep: number): Promise<any> {
  const { durationMs, completeCapMs } = P.lag;
  const dir = freshDir('lag');
  const db = join(dir, 'app.db');
  const replicaDir = join(dir, 'replica');
  createAppDb(db);
  const writer = new Child('writer.ts', { db, durationMs, rate, autocheckpoint: 0, waitGo: true });
  const loaded = writer.next('loaded', 60_000);
  let rc: Child | undefined;
  let ls: ExtProc | undefined;
  if (arm === 'walship') {
    rc = new Child('replicator.ts', {
      db,
      replica: { kind: 'file', path: replicaDir },
      tap: true,
      sampleMs: 50,
      maxLifetimeMs: durationMs + completeCapMs + 120_000,
      drainTimeoutMs: completeCapMs + 30_000,
    });
    await rc.next('ready', 60_000);
  } else {
    ls = await litestreamSidecar(dir, db, replicaDir);
  }
  const pid = rc?.pid ?? ls!.pid;
  const watcher = new ReplicaWatcher(replicaDir, WATCH_POLL_MS).start();
  const wal = walSizeSampler(db, 50);
  await loaded;
  writer.send({ type: 'go' });
  await writer.next('started', 30_000);
  rc?.send({ type: 'mark' });
  const cpu0 = procCpuMs(pid);
  const w = await writer.next('result', durationMs + 60_000);
  const cpu1 = procCpuMs(pid);
  await writer.exited;
  // walship: sync() until caught up (its own catch-up figure), while the watcher waits for the last transaction
  rc?.send({ type: 'drain' });
  const drained = rc?.next('result', completeCapMs + 60_000);
  const complete = await waitReplicaComplete(watcher, w.txs - 1, w.lastTxTs, completeCapMs, w.startedAt - 60_000);
  const walStats = wal.stop();
  const r = drained !== undefined ? await drained : undefined;
  rc?.kill();
  let lsLog: any;
  if (ls) {
    lsLog = {
      errors: ls.countLog(/level=ERROR/),
      errorLines: ls
        .logTail(200_000)
        .split('\n')
        .filter((l) => /level=ERROR/.test(l))
        .slice(0, 5),
    };
    ls.kill();
    await ls.exited;
  }
  watcher.poll();
  watcher.stop();
  const rl = await replicaLag(watcher, {
    since: w.startedAt - 1000,
    writerEndedAt: w.endedAt,
    completeAt: complete.at,
    completeOk: complete.ok,
  });
  rmSync(dir, { recursive: true, force: true });
  return {
    arm,
    rep,
    offered: rate || 'max',
    achievedTxPerSec: w.txPerSec,
    writerMaxStallMs: w.maxStallMs,
    walMBps: rl.walBytesDecoded / MiB / (w.elapsedMs / 1000),
    // replica-side figures, measured the same way for both tools (bench/lib/replica-watch.ts)
    txLag: rl.txLag as Dist,
    txLagFirstHalf: rl.txLagFirstHalf,
    txLagSecondHalf: rl.txLagSecondHalf,
    drainMs: rl.drainMs,
    drainOk: rl.drainOk,
    walMaxBytes: walStats.maxBytes,
    walEndBytes: walStats.endBytes,
    txCommitted: w.txs,
    txFound: rl.txFound,
    replica: {
      segments: rl.segments,
      generations: rl.generations,
      walBytes: rl.walBytesDecoded,
      scanMs: rl.scanMs,
      rejectedMarkers: rl.rejectedMarkers,
      pollMs: rl.pollMs,
    },
    sidecarCpuPct: ((cpu1 - cpu0) / w.elapsedMs) * 100,
    windowMs: w.elapsedMs,
    // walship only: the in-process tap (commit → writeWALSegment resolved) and walship's own figures
    tap: r && {
      txLag: r.txLag,
      txLagFirstHalf: r.txLagFirstHalf,
      txLagSecondHalf: r.txLagSecondHalf,
      drainMs: r.drainMs,
      drainOk: r.drainOk,
      txSeenByTap: r.txSeen,
      txDurableRecorded: r.txDurableRecorded,
      statusLag: r.statusLag,
      statusLagSecondHalf: r.statusLagSecondHalf,
      statusWalMaxBytes: r.walMaxBytes,
      walShippedBytes: r.walShippedBytes,
    },
    replicatorCpuPct: r?.cpuPct,
    checkpoints: r?.checkpoints,
    checkpointLog: r?.checkpointLog,
    errors: r?.errors ?? lsLog?.errors,
    errorMessages: r?.errorMessages ?? lsLog?.errorLines,
    replicatorEventLoopDelayMaxMs: r?.eventLoopDelayMaxMs,
    perSecond: r?.perSecond,
  };
}

async function lag(): Promise<any> {
  const { loads, durationMs, reps, arms } = P.lag;
  const runs: any[] = [];
  for (let rep = 0; rep < reps; rep++) {
    const order = rep % 2 === 0 ? loads : [...loads].reverse();
    for (let li = 0; li < order.length; li++) {
      const rate = order[li]!;
      const armOrder = (li + rep) % 2 === 0 ? arms : [...arms].reverse();
      for (const arm of armOrder) {
        const run = await lagRun(arm, rate, rep);
        runs.push(run);
        const l = run.txLag;
        log(
          `lag ${arm} ${rate || 'max'} tx/s (rep ${rep + 1}): achieved ${Math.round(run.achievedTxPerSec)} tx/s, ${run.walMBps.toFixed(1)} MiB/s WAL, lag p50/p99/max ${l.p50.toFixed(0)}/${l.p99.toFixed(0)}/${l.max.toFixed(0)} ms${run.tap ? ` (tap p99 ${run.tap.txLag.p99.toFixed(0)})` : ''}, WAL max ${(run.walMaxBytes / MiB).toFixed(1)} MiB, ${run.drainOk ? `complete ${run.drainMs.toFixed(0)} ms after stop` : 'NOT complete'}, found ${run.txFound}/${run.txCommitted} tx (scan ${(run.replica.scanMs / 1000).toFixed(1)} s)`,
        );
      }
    }
  }
  const ws = summarizeLag(runs, loads, SYNC_INTERVAL_MS, 'walship');
  const lsSum = arms.includes('litestream') ? summarizeLag(runs, loads, SYNC_INTERVAL_MS, 'litestream') : undefined;
  return {
    durationMs,
    syncIntervalMs: SYNC_INTERVAL_MS,
    monitorIntervalMs: MONITOR_INTERVAL_MS,
    lagMethod: 'replica-watch',
    watchPollMs: WATCH_POLL_MS,
    levels: ws.levels,
    highestSustained: ws.highestSustained,
    litestreamLevels: lsSum?.levels,
    litestreamHighestSustained: lsSum?.highestSustained,
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

type RestoreMode = 'bigwal' | 'manyidx' | 'lsfix';

/** sha256 over every row of the fixtures' table r, in id order. */
function tableDigest(path: string): string {
  const d = new Database(path, { readonly: true });
  try {
    const h = createHash('sha256');
    for (const row of d.prepare('SELECT id, v FROM r ORDER BY id').iterate() as IterableIterator<{ id: number; v: Buffer }>) {
      h.update(String(row.id));
      h.update(row.v);
    }
    return h.digest('hex');
  } finally {
    d.close();
  }
}

/**
 * A replica written by a Litestream sidecar: the same base database and the same number of
 * update transactions as 'bigwal', and like it in one WAL index (Litestream's checkpoints off:
 * min-checkpoint-page-count 10⁹, max-checkpoint-page-count 0, checkpoint-interval 0; its
 * TRUNCATE threshold, 500 000 pages, is not reached).
 */
async function buildLitestreamFixture(dir: string, replicaDir: string, txs: number): Promise<any> {
  const R = P.restore;
  const t0 = now();
  const src = join(dir, 'src.db');
  await runChild('build.ts', { mode: 'base', db: src, baseBytes: R.baseBytes, maxMs: 900_000 }, 900_000);
  const ls = await litestreamSidecar(dir, src, replicaDir, {
    db: { 'min-checkpoint-page-count': 1_000_000_000, 'max-checkpoint-page-count': 0, 'checkpoint-interval': '0s' },
  });
  await runChild('build.ts', { mode: 'updates', db: src, txs, maxMs: 900_000 }, 900_000);
  // Caught up = a sentinel transaction committed after the updates is in a WAL segment on the
  // replica. (Not a SIGTERM: Litestream's shutdown checkpoint can fail and end it with exit 1.)
  const watcher = new ReplicaWatcher(replicaDir, WATCH_POLL_MS).start();
  const sentinelTs = now();
  {
    const d = new Database(src);
    d.pragma('busy_timeout = 5000');
    d.pragma('wal_autocheckpoint = 0');
    const payload = Buffer.alloc(100, 0);
    payload.write('WSBM', 0, 'latin1');
    payload.writeUInt32LE(1, 4);
    payload.writeDoubleLE(sentinelTs, 8);
    d.exec('CREATE TABLE IF NOT EXISTS bench_sentinel(v BLOB NOT NULL)');
    d.prepare('INSERT INTO bench_sentinel(v) VALUES (?)').run(payload);
    d.close();
  }
  const done = await waitReplicaComplete(watcher, 1, sentinelTs, 600_000, sentinelTs - 1000);
  watcher.stop();
  ls.kill();
  await ls.exited;
  if (!done.ok) throw new Error(`the Litestream sidecar did not catch up within 600 s:\n${ls.logTail()}`);
  const gens = readdirSync(join(replicaDir, 'generations'));
  const gen = gens.sort().at(-1)!;
  const segs = segmentFiles(replicaDir, gen);
  const indexes = new Set(segs.map((f) => parseInt(f.split('/').at(-1)!.split('_')[0]!, 16)));
  return {
    buildMs: now() - t0,
    txs,
    generation: gen,
    generations: gens.length,
    snapshots: replicaSnapshots(replicaDir).length,
    walSegments: segs.length,
    walIndexes: indexes.size,
    walStoredBytes: segs.reduce((a, f) => a + statSync(f).size, 0),
    litestreamErrors: ls.countLog(/level=ERROR/),
  };
}

async function restoreScenario(): Promise<any> {
  const R = P.restore;
  const fixtures: Record<string, any> = {};
  const specs: Partial<Record<RestoreMode, { spec: ReplicaSpec; dir: string; gen: string; segs: string[] }>> = {};
  // the two walship-written fixtures are built at the same time (fixtures, not measurements)
  log('restore: building the bigwal and manyidx replicas…');
  await Promise.all(
    (['bigwal', 'manyidx'] as const).map(async (mode) => {
      const dir = freshDir(`restore-${mode}`);
      const replicaDir = join(dir, 'replica');
      const spec: ReplicaSpec = { kind: 'file', path: replicaDir };
      const b = await runChild(
        'build.ts',
        {
          mode,
          db: join(dir, 'src.db'),
          replica: spec,
          baseBytes: R.baseBytes,
          walBytes: R.walBytes,
          indexes: R.indexes,
          pagesPerIndex: R.pagesPerIndex,
          maxMs: 900_000,
        },
        900_000,
      );
      fixtures[mode] = b;
      log(
        `restore: ${mode}: ${(b.walWrittenBytes / MiB).toFixed(0)} MiB WAL in ${b.walIndexes} index(es), ${b.walSegments} segments, ${(b.walStoredBytes / MiB).toFixed(0)} MiB stored, built in ${(b.buildMs / 1000).toFixed(1)} s`,
      );
      for (const sfx of ['', '-wal', '-shm']) rmSync(join(dir, `src.db${sfx}`), { force: true });
      specs[mode] = { spec, dir, gen: b.generation, segs: segmentFiles(replicaDir, b.generation) };
    }),
  );
  if (useLs) {
    const dir = freshDir('restore-lsfix');
    const replicaDir = join(dir, 'replica');
    log(`restore: building a replica with the Litestream sidecar (${fixtures.bigwal.txs} update transactions, as bigwal)…`);
    const b = await buildLitestreamFixture(dir, replicaDir, fixtures.bigwal.txs);
    fixtures.lsfix = b;
    log(
      `restore: lsfix: ${b.walIndexes} index(es), ${b.walSegments} segments, ${(b.walStoredBytes / MiB).toFixed(0)} MiB stored, built in ${(b.buildMs / 1000).toFixed(1)} s`,
    );
    for (const sfx of ['', '-wal', '-shm']) rmSync(join(dir, `src.db${sfx}`), { force: true });
    rmSync(join(dir, '.src.db-litestream'), { recursive: true, force: true });
    specs.lsfix = { spec: { kind: 'file', path: replicaDir }, dir, gen: b.generation, segs: segmentFiles(replicaDir, b.generation) };
  }
  const runs: any[] = [];
  const steps = [
    'walship:bigwal',
    'litestream:bigwal',
    'lz4cli:bigwal',
    'decoder:bigwal',
    'walship:manyidx',
    'litestream:manyidx',
    'lz4cli:manyidx',
    'walship:lsfix',
    'litestream:lsfix',
  ].filter((s) => {
    const [method, mode] = s.split(':') as [string, RestoreMode];
    return specs[mode] && (useLs || method !== 'litestream');
  });
  for (let r = 0; r < R.rounds; r++) {
    // the physical limits (lz4 CLI, walship's bare decoder) vary little: measured in round 1 only
    const roundSteps = r === 0 ? steps : steps.filter((x) => x.startsWith('walship:') || x.startsWith('litestream:'));
    const order = roundSteps.map((_, i) => roundSteps[(i + r) % roundSteps.length]!);
    for (const step of order) {
      const [method, mode] = step.split(':') as [string, RestoreMode];
      const s = specs[mode]!;
      const out = join(s.dir, 'out.db');
      const clean = (): void => {
        for (const f of readdirSync(s.dir)) if (f.startsWith('out.db')) rmSync(join(s.dir, f), { force: true, recursive: true });
      };
      clean();
      let run: any;
      if (method === 'walship') {
        const res = await runChild(
          'restore.ts',
          { mode: 'restore', replica: s.spec, outputPath: out, verify: 'none', maxMs: 900_000 },
          900_000,
        );
        run = {
          ms: res.ms,
          walBytes: res.walBytes,
          peakRssBytes: res.mem.hwmBytes,
          rssBeforeBytes: res.memBefore.rssBytes,
          outBytes: statSync(out).size,
        };
      } else if (method === 'litestream') {
        const res = await litestreamRestore((s.spec as { path: string }).path, out);
        run = { ms: res.ms, peakRssBytes: res.peakRssBytes, peakRssMethod: 'VmHWM sampled every 20 ms', outBytes: statSync(out).size };
      } else if (method === 'lz4cli') {
        try {
          const ms = await timeLz4Cli(s.segs, out);
          run = { ms, walBytes: statSync(out).size };
        } catch (err) {
          log(
            `restore: lz4 CLI unavailable or failed (${(err as Error).message}); physical-limit line skipped (Debian: apt-get install lz4)`,
          );
          continue;
        }
      } else {
        const res = await runChild(
          'restore.ts',
          { mode: 'decode', replica: s.spec, outputPath: out, files: s.segs, maxMs: 900_000 },
          900_000,
        );
        run = { ms: res.ms, walBytes: res.walBytes, peakRssBytes: res.mem.hwmBytes };
      }
      // round 1: a digest of the restored table, so both tools are seen to restore the same content
      if (r === 0 && (method === 'walship' || method === 'litestream')) run.contentHash = tableDigest(out);
      runs.push({ round: r, method, mode, ...run });
      log(
        `restore round ${r + 1} ${method} ${mode}: ${(run.ms / 1000).toFixed(2)} s${run.peakRssBytes ? `, peak RSS ${(run.peakRssBytes / MiB).toFixed(0)} MiB` : ''}`,
      );
      clean();
    }
  }
  const sameContent: Record<string, boolean | undefined> = {};
  for (const mode of Object.keys(specs)) {
    const h = runs.filter((x) => x.mode === mode && x.contentHash).map((x) => x.contentHash);
    sameContent[mode] = h.length > 1 ? h.every((x) => x === h[0]) : undefined;
    if (sameContent[mode] === false) log(`restore: WARNING: walship and Litestream restored different contents from the ${mode} replica`);
  }
  // MiB/s of WAL: the WAL bytes walship's restore applied from that replica (Litestream reports none)
  const walBytesOf = (mode: string): number =>
    Math.max(0, ...runs.filter((x) => x.mode === mode && x.method === 'walship').map((x) => x.walBytes ?? 0));
  for (const x of runs) {
    x.walBytes ??= walBytesOf(x.mode);
    x.mbps = x.walBytes / MiB / (x.ms / 1000);
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
    sameContent,
    bigwal: {
      walship: agg('walship', 'bigwal'),
      litestream: agg('litestream', 'bigwal'),
      lz4cli: agg('lz4cli', 'bigwal'),
      decoder: agg('decoder', 'bigwal'),
    },
    manyidx: { walship: agg('walship', 'manyidx'), litestream: agg('litestream', 'manyidx'), lz4cli: agg('lz4cli', 'manyidx') },
    lsfix: specs.lsfix ? { walship: agg('walship', 'lsfix'), litestream: agg('litestream', 'lsfix') } : undefined,
    runs,
  };
  for (const s of Object.values(specs)) rmSync(s!.dir, { recursive: true, force: true });
  return result;
}

// ---------------------------------------------------------------------------------------------
// 4. memory: peak RSS of `walship replicate` and `litestream replicate` while snapshotting
async function snapshotArm(arm: 'walship' | 'litestream', dir: string, db: string): Promise<any> {
  const replicaDir = join(dir, `replica-${arm}`);
  const yml = join(dir, `${arm}.yml`);
  writeYaml(yml, [{ path: db, replica: { type: 'file', path: replicaDir } }]);
  const p = arm === 'walship' ? startWalshipCli(yml) : startLitestream(yml);
  const hwm = hwmSampler(p.pid, 20);
  let seenAt: number;
  try {
    seenAt = await waitReplicaReady(replicaDir, p, 900_000, false, 20);
  } finally {
    hwm.stop();
  }
  const peak = p.mem().hwmBytes;
  const rssAtEnd = p.mem().rssBytes;
  p.kill();
  await p.exited;
  return {
    replicaDir,
    snapshotMs: seenAt - p.startedAt,
    peakRssBytes: Number.isFinite(peak) ? peak : hwm.maxBytes,
    rssAtSnapshotBytes: rssAtEnd,
    storedBytes: dirBytes(replicaDir),
  };
}

/** Puts the database back as it was before a replicator ran: WAL checkpointed away, meta directories removed. */
function resetDb(db: string): void {
  const d = new Database(db);
  d.pragma('wal_checkpoint(TRUNCATE)');
  d.close();
  const dir = join(db, '..');
  const base = db.split('/').at(-1)!;
  for (const m of [`.${base}-walship`, `.${base}-litestream`]) rmSync(join(dir, m), { recursive: true, force: true });
}

async function memory(): Promise<any> {
  const out: any[] = [];
  let i = 0;
  for (const size of P.memory.sizes) {
    const dir = freshDir('memory');
    const db = join(dir, 'big.db');
    log(`memory: building a ${(size / MiB).toFixed(0)} MiB database…`);
    const b = await runChild('build.ts', { mode: 'bigdb', db, dbBytes: size, maxMs: 900_000 }, 900_000);
    const arms: Array<'walship' | 'litestream'> = useLs
      ? i++ % 2 === 0
        ? ['walship', 'litestream']
        : ['litestream', 'walship']
      : ['walship'];
    const cli: Record<string, any> = {};
    for (const arm of arms) {
      cli[arm] = await snapshotArm(arm, dir, db);
      log(
        `memory ${(size / MiB).toFixed(0)} MiB: ${arm} replicate: snapshot after ${(cli[arm].snapshotMs / 1000).toFixed(1)} s, peak RSS ${(cli[arm].peakRssBytes / MiB).toFixed(0)} MiB`,
      );
      resetDb(db);
    }
    const spec: ReplicaSpec = { kind: 'file', path: cli.walship.replicaDir };
    const outDb = join(dir, 'restored.db');
    const res = await runChild(
      'restore.ts',
      { mode: 'restore', replica: spec, outputPath: outDb, verify: 'quick', maxMs: 900_000 },
      900_000,
    );
    const entry = {
      dbBytes: b.dbBytes,
      cli,
      restore: {
        ms: res.ms,
        peakRssBytes: res.mem.hwmBytes,
        rssBeforeBytes: res.memBefore.rssBytes,
        rssSampledMaxBytes: res.rssSampledMax,
        verify: 'quick',
      },
    };
    out.push(entry);
    log(
      `memory ${(size / MiB).toFixed(0)} MiB: walship restore (library) ${(res.ms / 1000).toFixed(1)} s peak RSS ${(entry.restore.peakRssBytes / MiB).toFixed(0)} MiB`,
    );
    rmSync(dir, { recursive: true, force: true });
  }
  // what an idle child (node + tsx + walship sources loaded) holds before any work: the floor of the figures above
  const floor = await runChild('floor.ts', {}, 60_000);
  log(`memory: RSS floor of a child with tsx + walship loaded: ${(floor.mem.rssBytes / MiB).toFixed(0)} MiB`);
  // and of `walship replicate` itself, started on a database that does not exist yet (it waits for it)
  let cliFloorRssBytes = NaN;
  {
    const dir = freshDir('memory-floor');
    const yml = join(dir, 'walship.yml');
    writeYaml(yml, [{ path: join(dir, 'absent.db'), replica: { type: 'file', path: join(dir, 'replica') } }]);
    const p = startWalshipCli(yml);
    try {
      await p.waitLog(/waiting for database|initialized db|replicating to/, 60_000);
      await sleep(2000);
      cliFloorRssBytes = p.mem().hwmBytes;
    } catch (err) {
      log(`memory: walship replicate floor not measured: ${(err as Error).message.split('\n')[0]}`);
    }
    p.kill();
    await p.exited;
    rmSync(dir, { recursive: true, force: true });
    log(`memory: peak RSS of an idle walship replicate (no database yet): ${(cliFloorRssBytes / MiB).toFixed(0)} MiB`);
  }
  return { sizes: out, childFloorRssBytes: floor.mem.rssBytes, cliFloorRssBytes };
}

// ---------------------------------------------------------------------------------------------
// 9. age: snapshot (replication) and restore throughput of one database, plain and age-encrypted,
//    walship CLI and Litestream CLI side by side, from the same litestream.yml
async function ageScenario(): Promise<any> {
  const A = P.age;
  const dir = freshDir('age');
  const db = join(dir, 'big.db');
  log(`age: building a ${(A.dbBytes / MiB).toFixed(0)} MiB database…`);
  const b = await runChild('build.ts', { mode: 'bigdb', db, dbBytes: A.dbBytes, maxMs: 900_000 }, 900_000);
  const identity = generateAgeIdentity();
  const age = { identities: [identity], recipients: [ageIdentityToRecipient(identity)] };
  const arms: Array<'walship' | 'litestream'> = useLs ? ['walship', 'litestream'] : ['walship'];
  const runs: any[] = [];
  for (let round = 0; round < A.rounds; round++) {
    for (const arm of round % 2 === 0 ? arms : [...arms].reverse()) {
      for (const encrypted of [false, true]) {
        const replicaDir = join(dir, `replica-${arm}-${encrypted ? 'age' : 'plain'}`);
        const yml = join(dir, `${arm}-${encrypted ? 'age' : 'plain'}.yml`);
        writeYaml(yml, [{ path: db, replica: { type: 'file', path: replicaDir }, ...(encrypted ? { age } : {}) }]);
        const p = arm === 'walship' ? startWalshipCli(yml) : startLitestream(yml);
        let seenAt: number;
        try {
          seenAt = await waitReplicaReady(replicaDir, p, 900_000, false, 20);
        } finally {
          p.kill();
          await p.exited;
        }
        resetDb(db);
        const out = join(dir, `restored-${arm}.db`);
        rmSync(out, { force: true });
        const res = await cliRestore(arm, yml, db, out);
        const run = {
          round,
          arm,
          encrypted,
          snapshotMs: seenAt - p.startedAt,
          storedBytes: dirBytes(replicaDir),
          restoreMs: res.ms,
          restorePeakRssBytes: res.peakRssBytes,
        };
        runs.push(run);
        log(
          `age round ${round + 1} ${arm} ${encrypted ? 'age' : 'plain'}: snapshot ${(run.snapshotMs / 1000).toFixed(2)} s (incl. start-up), restore ${(run.restoreMs / 1000).toFixed(2)} s (${(b.dbBytes / MiB / (run.restoreMs / 1000)).toFixed(0)} MiB/s), restore peak RSS ${(run.restorePeakRssBytes / MiB).toFixed(0)} MiB`,
        );
        rmSync(replicaDir, { recursive: true, force: true });
        rmSync(out, { force: true });
      }
    }
  }
  const agg = (arm: string, encrypted: boolean) => {
    const rs = runs.filter((r) => r.arm === arm && r.encrypted === encrypted);
    if (!rs.length) return undefined;
    return {
      snapshotMs: median(rs.map((r) => r.snapshotMs)),
      restoreMs: median(rs.map((r) => r.restoreMs)),
      restorePeakRssBytes: Math.max(...rs.map((r) => r.restorePeakRssBytes)),
      storedBytes: rs[0].storedBytes,
    };
  };
  rmSync(dir, { recursive: true, force: true });
  return {
    dbBytes: b.dbBytes,
    walship: { plain: agg('walship', false), age: agg('walship', true) },
    litestream: useLs ? { plain: agg('litestream', false), age: agg('litestream', true) } : undefined,
    runs,
  };
}

// ---------------------------------------------------------------------------------------------
// 5. idle: walship (library process), walship replicate (CLI) and litestream replicate at once,
//    each on its own database, to s3rver under its own prefix
async function idle(): Promise<any> {
  s3 ??= await startS3();
  const dir = freshDir('idle');
  const mkDb = (name: string): string => {
    const db = join(dir, name);
    const d = new Database(db);
    d.pragma('journal_mode = WAL');
    d.exec('CREATE TABLE t(id INTEGER PRIMARY KEY, v BLOB NOT NULL)');
    const ins = d.prepare('INSERT INTO t(v) VALUES (?)');
    d.transaction(() => {
      for (let i = 0; i < 10_000; i++) ins.run(Buffer.alloc(100, i & 255));
    })();
    d.close();
    return db;
  };
  const tag = Date.now().toString(36);
  const tools: Array<{ name: string; db: string; prefix: string; pid?: number; child?: Child; proc?: ExtProc }> = [
    { name: 'walship library', db: mkDb('lib.db'), prefix: `idle-lib-${tag}` },
    { name: 'walship CLI', db: mkDb('cli.db'), prefix: `idle-cli-${tag}` },
  ];
  if (useLs) tools.push({ name: 'Litestream', db: mkDb('ls.db'), prefix: `idle-ls-${tag}` });
  const ready: Promise<unknown>[] = [];
  for (const t of tools) {
    if (t.name === 'walship library') {
      t.child = new Child('replicator.ts', {
        db: t.db,
        replica: { kind: 's3', endpoint: s3.endpoint, bucket: s3.bucket, path: t.prefix },
        sampleMs: 0,
        maxLifetimeMs: P.idle.ms + 180_000,
      });
      t.pid = t.child.pid;
      ready.push(t.child.next('ready', 60_000));
    } else {
      const yml = join(dir, `${t.prefix}.yml`);
      writeYaml(yml, [{ path: t.db, replica: { type: 's3', bucket: s3.bucket, path: t.prefix, endpoint: s3.endpoint } }]);
      t.proc = t.name === 'Litestream' ? startLitestream(yml) : startWalshipCli(yml);
      t.pid = t.proc.pid;
      ready.push(t.proc.waitLog(/snapshot written/, 60_000));
    }
  }
  // node + tsx + the walship sources loaded and nothing else: the CPU floor of the two walship processes above
  const floor = new Child('floor.ts', { stay: true });
  tools.push({ name: 'node+tsx floor', db: '', prefix: `idle-floor-${tag}`, child: floor, pid: floor.pid });
  ready.push(floor.next('ready', 60_000));
  await Promise.all(ready);
  // a few writes after start so each WAL has new frames, then their sync; the window starts after that
  for (const t of tools) {
    if (!t.db) continue;
    const d = new Database(t.db);
    d.pragma('busy_timeout = 5000');
    d.pragma('wal_autocheckpoint = 0');
    const ins = d.prepare('INSERT INTO t(v) VALUES (?)');
    for (let k = 0; k < 3; k++) ins.run(Buffer.alloc(100, k + 1));
    d.close();
  }
  await sleep(5000); // monitor + sync interval (1 s each) with margin: the writes above are shipped
  const before = s3.byPrefix;
  const cpu0 = tools.map((t) => procCpuMs(t.pid!));
  const t0 = now();
  for (const t of tools) if (t.db) t.child?.send({ type: 'mark' });
  log(`idle: measuring ${P.idle.ms / 1000} s with no writes (${tools.map((t) => t.name).join(', ')} at once)…`);
  await sleep(P.idle.ms);
  const cpu1 = tools.map((t) => procCpuMs(t.pid!));
  const windowMs = now() - t0;
  const after = s3.byPrefix;
  const res: Record<string, any> = {};
  for (const [k, t] of tools.entries()) {
    const reqs = (after[t.prefix] ?? 0) - (before[t.prefix] ?? 0);
    res[t.name] = { s3rverRequests: reqs, cpuMs: cpu1[k]! - cpu0[k]!, cpuPct: ((cpu1[k]! - cpu0[k]!) / windowMs) * 100 };
  }
  floor.kill();
  const lib = tools.find((t) => t.name === 'walship library')!;
  lib.child!.send({ type: 'drain' });
  const r = await lib.child!.next('result', 120_000);
  lib.child!.kill();
  Object.assign(res['walship library'], {
    operationEvents: r.opsTotal,
    operationsByKind: r.ops,
    operationLog: r.opLog,
    cpuPctSelf: r.cpuPct,
    checkpoints: r.checkpoints,
  });
  for (const t of tools) {
    if (!t.proc) continue;
    res[t.name].log = t.proc.logTail(4000);
    await t.proc.stop('SIGTERM', 15_000);
  }
  rmSync(dir, { recursive: true, force: true });
  for (const [name, v] of Object.entries(res)) log(`idle ${name}: ${v.s3rverRequests} requests, CPU ${v.cpuPct.toFixed(2)} %`);
  return { windowMs, tools: res, cpuMethod: '/proc/<pid>/stat utime+stime over the window' };
}

// ---------------------------------------------------------------------------------------------
// follow: a walship Follower (its own process) behind a primary writing 1k tx/s, a reader
// querying the follower's output the whole time, then the follower idle. Litestream v0.3 has
// no follow mode: there is no second arm.
type Posn = { generation: string; index: number; offset: number };
const atOrPast = (a: Posn, b: Posn): boolean => a.generation === b.generation && comparePos(a, b) >= 0;

async function follow(): Promise<any> {
  const { rate, durationMs, idleMs, backends } = P.follow;
  const out: Record<string, any> = {};
  for (const backend of backends) {
    if (backend === 's3') s3 ??= await startS3();
    const dir = freshDir(`follow-${backend}`);
    const prefix = `follow-${Date.now().toString(36)}`;
    const replica: ReplicaSpec =
      backend === 'file'
        ? { kind: 'file', path: join(dir, 'replica') }
        : { kind: 's3', endpoint: s3!.endpoint, bucket: s3!.bucket, path: prefix };
    const primary = new Child('follow-primary.ts', { db: join(dir, 'primary.db'), replica, rate, durationMs });
    let follower: Child | undefined;
    let reader: Child | undefined;
    try {
      await primary.next('ready', 60_000);
      const standby = join(dir, 'standby.db');
      follower = new Child('follower.ts', { out: standby, replica, maxLifetimeMs: durationMs + idleMs + 300_000 });
      const ready = await follower.next('ready', 120_000);
      reader = new Child('follow-reader.ts', { db: standby, durationMs: durationMs + 4000 });
      primary.send({ type: 'go' });
      const written = await primary.next('result', durationMs + 120_000);
      // The follower's last poll comes at most one interval after the last upload.
      const deadline = now() + 15_000;
      const applied: { pos: Posn; t: number }[] = [];
      for (;;) {
        follower.send({ type: 'report' });
        const r = await follower.next('report', 30_000);
        applied.push(...r.applied);
        if (applied.some((a) => atOrPast(a.pos, written.finalPos)) || now() > deadline) break;
        await sleep(250);
      }
      const lags: number[] = [];
      let unmatched = 0;
      for (const u of written.uploads as { pos: Posn; t: number }[]) {
        const a = applied.find((x) => atOrPast(x.pos, u.pos));
        if (a) lags.push(Math.max(0, a.t - u.t));
        else unmatched++;
      }
      const reads = await reader.next('result', 60_000);
      // Idle: the primary has stopped; the follower keeps polling. 35 s first, so the window
      // measures the steady idle state (polls every 2 s after 30 quiet polls), not the end of the
      // burst (JIT, GC) nor the first 30 s at 1 s.
      await primary.exited;
      await sleep(35_000);
      const s3Before = backend === 's3' ? (s3!.byPrefix[prefix] ?? 0) : 0;
      follower.send({ type: 'mark' });
      const cpu0 = procCpuMs(follower.pid);
      const t0 = now();
      log(`follow ${backend}: ${written.txs} tx at ${Math.round(written.achievedRate)} tx/s; idle ${idleMs / 1000} s…`);
      await sleep(idleMs);
      const cpuMs = procCpuMs(follower.pid) - cpu0;
      const windowMs = now() - t0;
      follower.send({ type: 'report' });
      const idleReport = await follower.next('report', 30_000);
      const res = {
        achievedRate: written.achievedRate,
        uploads: written.uploads.length,
        batchesApplied: applied.length,
        lagBehindReplicaMs: dist(lags),
        unmatchedUploads: unmatched,
        initialRestoreMs: ready.restoreMs,
        reader: reads,
        idle: {
          windowMs,
          requests: idleReport.requests,
          requestsPerMinute: (idleReport.requests / windowMs) * 60_000,
          ...(backend === 's3' ? { s3rverRequestsPerMinute: (((s3!.byPrefix[prefix] ?? 0) - s3Before) / windowMs) * 60_000 } : {}),
          cpuPct: (cpuMs / windowMs) * 100,
        },
        followerMem: idleReport.mem,
        state: idleReport.status.state,
      };
      out[backend] = res;
      const d = res.lagBehindReplicaMs;
      log(
        `follow ${backend}: lag behind the replica p50 ${d.p50.toFixed(0)} ms, p99 ${d.p99.toFixed(0)} ms, max ${d.max.toFixed(0)} ms (${lags.length} uploads, ${unmatched} unmatched); reader ${reads.reads} reads, ${reads.errors} errors, ${reads.badSums} bad sums, ${reads.wentBack} went back; idle ${res.idle.requestsPerMinute.toFixed(1)} requests/min, CPU ${res.idle.cpuPct.toFixed(2)} %`,
      );
    } finally {
      reader?.kill();
      follower?.kill();
      primary.kill();
      rmSync(dir, { recursive: true, force: true });
    }
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// 6. embedding: the app's own event loop with walship inside it, alone, or beside Litestream
async function embedding(): Promise<any> {
  const { rates, durationMs, reps, arms } = P.embedding;
  const runs: any[] = [];
  for (let rep = 0; rep < reps; rep++) {
    const order = rep % 2 === 0 ? rates : [...rates].reverse();
    for (let ri = 0; ri < order.length; ri++) {
      const rate = order[ri]!;
      const armOrder = arms.map((_, i) => arms[(i + ri + rep) % arms.length]!);
      for (const arm of armOrder) {
        const dir = freshDir('embedding');
        const db = join(dir, 'app.db');
        const replicaDir = join(dir, 'replica');
        createAppDb(db);
        const app = new Child('app.ts', {
          db,
          rate,
          durationMs,
          embed: arm === 'walship' ? { replicaPath: replicaDir } : undefined,
          maxMs: durationMs + 180_000,
          waitGo: true,
        });
        const loaded = app.next('loaded', 120_000);
        const ls = arm === 'litestream' ? await litestreamSidecar(dir, db, replicaDir) : undefined;
        await loaded;
        app.send({ type: 'go' });
        await app.next('started', 30_000);
        const cpu0 = ls ? ls.cpuMs() : NaN;
        const r = await app.next('result', durationMs + 120_000);
        const cpu1 = ls ? ls.cpuMs() : NaN;
        await app.exited;
        if (ls) {
          ls.kill();
          await ls.exited;
        }
        const run = { rep, rate, arm, ...r, sidecarCpuPct: ls ? ((cpu1 - cpu0) / r.elapsedMs) * 100 : undefined, windowMs: r.elapsedMs };
        runs.push(run);
        const e = r.eventLoopDelay;
        log(
          `embedding ${rate} tx/s ${arm} (rep ${rep + 1}): loop delay p50/p99/max ${e.p50.toFixed(1)}/${e.p99.toFixed(1)}/${e.max.toFixed(0)} ms, ${Math.round(r.txPerSec)} tx/s, app CPU ${r.cpuPct.toFixed(0)} %${run.sidecarCpuPct !== undefined ? `, sidecar ${run.sidecarCpuPct.toFixed(0)} %` : ''}${r.embedded ? `, drain ${r.drainMs.toFixed(0)} ms` : ''}`,
        );
        rmSync(dir, { recursive: true, force: true });
      }
    }
  }
  const levels = rates.map((rate) => {
    const lv: any = { rate };
    for (const arm of arms) {
      const rs = runs.filter((x) => x.rate === rate && x.arm === arm);
      if (!rs.length) continue;
      lv[arm] = {
        reps: rs.length,
        eldP50Ms: median(rs.map((x) => x.eventLoopDelay.p50)),
        eldP99Ms: median(rs.map((x) => x.eventLoopDelay.p99)),
        eldP99MsRange: [Math.min(...rs.map((x) => x.eventLoopDelay.p99)), Math.max(...rs.map((x) => x.eventLoopDelay.p99))],
        eldMaxMs: Math.max(...rs.map((x) => x.eventLoopDelay.max)),
        txPerSec: median(rs.map((x) => x.txPerSec)),
        txPerSecRange: [Math.min(...rs.map((x) => x.txPerSec)), Math.max(...rs.map((x) => x.txPerSec))],
        latenessP99Ms: median(rs.map((x) => x.txLateness.p99)),
        latenessMaxMs: Math.max(...rs.map((x) => x.txLateness.max)),
        appCpuPct: median(rs.map((x) => x.cpuPct)),
        sidecarCpuPct: arm === 'litestream' ? median(rs.map((x) => x.sidecarCpuPct)) : undefined,
        walMaxBytes: Math.max(...rs.map((x) => x.walMaxBytes)),
      };
    }
    return lv;
  });
  return { durationMs, eldResolutionMs: 10, levels, runs };
}

// ---------------------------------------------------------------------------------------------
// 8. sync() latency
async function synclat(): Promise<any> {
  s3 ??= await startS3();
  const res: Record<string, any> = {};
  const targets: Array<[string, (d: string) => ReplicaSpec]> = [
    ['file', (d) => ({ kind: 'file', path: join(d, 'replica') })],
    ['s3rver', () => ({ kind: 's3', endpoint: s3!.endpoint, bucket: s3!.bucket, path: `synclat-${Date.now()}` })],
  ];
  for (const [name, mk] of targets) {
    const dir = freshDir('synclat');
    const r = await runChild(
      'synclat.ts',
      { db: join(dir, 'app.db'), replica: mk(dir), calls: P.synclat.calls, gapMs: 5, maxMs: 300_000 },
      300_000,
    );
    res[name] = r;
    log(
      `sync() to ${name}: p50 ${r.latencyMs.p50.toFixed(1)} ms, p99 ${r.latencyMs.p99.toFixed(1)} ms, max ${r.latencyMs.max.toFixed(1)} ms (${r.latencyMs.n} calls)`,
    );
    rmSync(dir, { recursive: true, force: true });
  }
  return res;
}

// ---------------------------------------------------------------------------------------------
// 7. write lock: from walship's checkpoint events in the lag (sidecar) and embedding runs
function lockSection(results: any): any {
  const out: any = {};
  if (results.lag) {
    out.lag = P.lag.loads.map((rate) => ({
      offered: rate || 'max',
      stats: lockStats(results.lag.runs.filter((r: any) => r.arm === 'walship' && r.offered === (rate || 'max'))),
    }));
  }
  if (results.embedding) {
    out.embedding = P.embedding.rates.map((rate) => ({
      rate,
      stats: lockStats(results.embedding.runs.filter((r: any) => r.arm === 'walship' && r.rate === rate)),
    }));
  }
  return out.lag || out.embedding ? out : undefined;
}

// ---------------------------------------------------------------------------------------------
async function main(): Promise<void> {
  const started = new Date();
  const t0 = now();
  const results: any = {
    command: `npm run bench${QUICK ? ' -- --quick' : ''}`,
    argv: process.argv.slice(2),
    quick: QUICK,
    startedAt: started.toISOString(),
    machine: machine(),
    litestream: LS,
    params: P,
  };
  log(`walship bench (${QUICK ? 'quick' : 'full'}), temp dir ${tmpRoot}`);
  if (useLs) log(`Litestream arms: ${LS.version} (${LS.bin})`);
  else log(`Litestream arms SKIPPED: ${LS.reason}`);
  const scenarios: Array<[string, () => Promise<any>]> = [
    ['overhead', overhead],
    ['lag', lag],
    ['restore', restoreScenario],
    ['memory', memory],
    ['embedding', embedding],
    ['synclat', synclat],
    ['idle', idle],
    ['age', ageScenario],
    ['follow', follow],
    ['scale', () => scale({ freshDir, log, s3: async () => (s3 ??= await startS3()) }, P.scale)],
  ];
  const resultsDir = join(BENCH_DIR, 'results');
  mkdirSync(resultsDir, { recursive: true });
  const file = join(resultsDir, `${started.toISOString().replace(/[:.]/g, '-')}${QUICK ? '-quick' : ''}.json`);
  for (const [name, fn] of scenarios) {
    if (only && !only.includes(name)) continue;
    const ts = now();
    log(`${name}…`);
    try {
      results[name] = await fn();
    } catch (err) {
      results[`${name}Error`] = String((err as Error).stack ?? err);
      log(`${name} FAILED: ${(err as Error).message}`);
      killAllChildren();
    }
    results.durationsS ??= {};
    results.durationsS[name] = (now() - ts) / 1000;
    writeFileSync(file, JSON.stringify(results, null, 2));
  }
  results.lock = lockSection(results);
  if (s3) await s3.stop();
  results.totalSeconds = (now() - t0) / 1000;
  results.loadavgAtEnd = os.loadavg();
  results.table = [table(results), scaleTable(results.scale)].filter(Boolean).join('\n\n');
  writeFileSync(file, JSON.stringify(results, null, 2));
  const failed = Object.keys(results).filter((k) => k.endsWith('Error'));
  process.stdout.write(
    `\n${results.table}\n\n${useLs ? '' : `Litestream arms skipped: ${LS.reason}\n`}${failed.length ? `FAILED scenarios: ${failed.map((k) => k.slice(0, -5)).join(', ')} (stack in the JSON)\n` : ''}machine: ${results.machine.nproc} cores, ${(results.machine.memTotalBytes / GiB).toFixed(1)} GiB, node ${results.machine.node}, SQLite ${results.machine.sqlite}; load ${os
      .loadavg()
      .map((x) => x.toFixed(2))
      .join(' ')}\ntotal ${results.totalSeconds.toFixed(0)} s (${Object.entries<number>(results.durationsS ?? {})
      .map(([k, v]) => `${k} ${v.toFixed(0)} s`)
      .join(', ')}); raw results: ${file}\n`,
  );
}

await main();
process.exit(0);
