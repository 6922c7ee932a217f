// Scenario `scale` (issue #16): one DirectoryReplicator over 1,000 small databases, to a file
// replica and to s3rver. Litestream v0.3 has no directory mode: there is no Litestream arm.
// See BENCHMARKS.md ("Scale") for what is measured and how.
import { mkdirSync, readdirSync, readFileSync, readlinkSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { Child, clockTicksPerSecond, median, now, procCpuMs, procMem, sleep, type Dist } from './common.js';
import type { ReplicaSpec } from './clients.js';
import { replicaLag, waitReplicaComplete, type ReplicaWatcher } from './replica-watch.js';
import type { S3Bench } from './s3server.js';
import { FileSegWatch, PooledWatcher, RecordedWatcher, S3Recorder } from './scale-watch.js';

const MiB = 1024 * 1024;
const MB = 1_000_000;

export interface ScaleParams {
  dbs: number;
  writing: number;
  rate: number;
  writeMs: number;
  idleMs: number;
  /** quiet time between catch-up and the idle window */
  settleMs: number;
  newDbs: number;
  backends: readonly ('file' | 's3')[];
  /** smaller directories measured too (catch-up and idle only), for the per-database cost */
  extraCounts: number[];
  targets: { idleRssBytes: number; idleCpuPct: number; idleReqPerMin: number; lagP99Ms: number; writeRssBytes: number; newDbMs: number };
}

export function scaleParams(quick: boolean, argv: string[]): ScaleParams {
  const num = (name: string): number[] | undefined =>
    argv
      .find((a) => a.startsWith(`--${name}=`))
      ?.slice(name.length + 3)
      .split(',')
      .map(Number)
      .filter((x) => Number.isFinite(x) && x > 0);
  const backends = argv
    .find((a) => a.startsWith('--scale-backends='))
    ?.slice(17)
    .split(',')
    .filter((b): b is 'file' | 's3' => b === 'file' || b === 's3');
  return {
    dbs: num('scale-dbs')?.[0] ?? 1000,
    writing: 100,
    rate: 50,
    writeMs: quick ? 20_000 : 60_000,
    idleMs: quick ? 20_000 : 60_000,
    settleMs: quick ? 5_000 : 10_000,
    newDbs: 3,
    backends: backends?.length ? backends : ['file', 's3'],
    extraCounts: num('scale-extra') ?? (quick ? [] : [250, 500]),
    targets: { idleRssBytes: 256 * MB, idleCpuPct: 2, idleReqPerMin: 0, lagP99Ms: 2000, writeRssBytes: 512 * MB, newDbMs: 2000 },
  };
}

export interface ScaleContext {
  freshDir(name: string): string;
  log(msg: string): void;
  s3(): Promise<S3Bench>;
}

const dbName = (i: number): string => `t${String(i).padStart(4, '0')}.db`;

/** A small WAL-mode database: table t (the writers' table) with 20 rows, and a table with an index: 5 pages. */
function createSmallDb(path: string, rows = 20): void {
  const db = new Database(path);
  db.pragma('journal_mode = WAL');
  db.pragma('synchronous = OFF');
  db.exec(
    'CREATE TABLE IF NOT EXISTS t(id INTEGER PRIMARY KEY, v BLOB NOT NULL); CREATE TABLE IF NOT EXISTS kv(k TEXT NOT NULL, v TEXT); CREATE INDEX IF NOT EXISTS kv_k ON kv(k)',
  );
  const ins = db.prepare('INSERT INTO t(v) VALUES (?)');
  const kv = db.prepare('INSERT INTO kv(k, v) VALUES (?, ?)');
  db.transaction(() => {
    for (let i = 0; i < rows; i++) {
      ins.run(Buffer.alloc(100, i));
      kv.run(`key-${i}`, 'x'.repeat(50));
    }
  })();
  db.close();
}

/** VmRSS of a process every `everyMs`, with the time of each sample. */
function rssSampler(
  pid: number,
  everyMs: number,
): { samples: { t: number; rss: number }[]; between(a: number, b: number): number[]; stop(): void } {
  const samples: { t: number; rss: number }[] = [];
  const read = (): void => {
    const m = procMem(pid).rssBytes;
    if (Number.isFinite(m)) samples.push({ t: now(), rss: m });
  };
  read();
  const timer = setInterval(read, everyMs);
  return {
    samples,
    between: (a, b) => samples.filter((s) => s.t >= a && s.t <= b).map((s) => s.rss),
    stop: () => clearInterval(timer),
  };
}

/** CPU time (ms) of each thread of a process, by thread id, with its name (/proc/<pid>/task/<tid>/stat). */
function threadCpu(pid: number): Map<number, { comm: string; ms: number }> {
  const out = new Map<number, { comm: string; ms: number }>();
  for (const tid of ls(`/proc/${pid}/task`)) {
    try {
      const s = readFileSync(`/proc/${pid}/task/${tid}/stat`, 'utf8');
      const comm = s.slice(s.indexOf('(') + 1, s.lastIndexOf(')'));
      const f = s.slice(s.lastIndexOf(')') + 2).split(' ');
      out.set(Number(tid), { comm, ms: ((Number(f[11]) + Number(f[12])) / clockTicksPerSecond()) * 1000 });
    } catch {}
  }
  return out;
}

/** The busiest threads between two threadCpu() readings, in % of one core. */
function topThreads(
  a: Map<number, { comm: string; ms: number }>,
  b: Map<number, { comm: string; ms: number }>,
  windowMs: number,
  pid: number,
): { tid: number; comm: string; cpuPct: number }[] {
  return [...b.entries()]
    .map(([tid, x]) => ({
      tid,
      comm: tid === pid ? `${x.comm} (main)` : x.comm,
      cpuPct: ((x.ms - (a.get(tid)?.ms ?? 0)) / windowMs) * 100,
    }))
    .filter((x) => x.cpuPct >= 0.05)
    .sort((p, q) => q.cpuPct - p.cpuPct)
    .slice(0, 6);
}

// x86_64 system call numbers of what a replicator thread is seen waiting in
const SYSCALLS: Record<string, string> = {
  '0': 'read',
  '1': 'write',
  '3': 'close',
  '7': 'poll',
  '17': 'pread64',
  '18': 'pwrite64',
  '35': 'nanosleep',
  '74': 'fsync',
  '75': 'fdatasync',
  '82': 'rename',
  '202': 'futex',
  '217': 'getdents64',
  '230': 'clock_nanosleep',
  '232': 'epoll_wait',
  '257': 'openat',
  '262': 'newfstatat',
  '281': 'epoll_pwait',
  '332': 'statx',
};

/**
 * What one thread is doing, sampled every `everyMs` from /proc/<pid>/task/<tid>/syscall:
 * `running` (user space), or the system call it is in (blocked or running in the kernel).
 */
function syscallSampler(pid: number, tid: number, everyMs: number): { stop(): Record<string, number> } {
  const counts: Record<string, number> = {};
  let n = 0;
  const t = setInterval(() => {
    let s: string;
    try {
      s = readFileSync(`/proc/${pid}/task/${tid}/syscall`, 'utf8');
    } catch {
      return;
    }
    const first = s.split(' ')[0]!.trim();
    const name = first === 'running' ? 'running (user space)' : (SYSCALLS[first] ?? `syscall ${first}`);
    counts[name] = (counts[name] ?? 0) + 1;
    n++;
  }, everyMs);
  return {
    stop() {
      clearInterval(t);
      return Object.fromEntries(
        Object.entries(counts)
          .sort((a, b) => b[1] - a[1])
          .map(([k, v]) => [k, Math.round((v / n) * 1000) / 10]),
      );
    },
  };
}

/** Machine-wide busy CPU (all cores; 100 % = one core) from /proc/stat. */
function machineCpuMs(): number {
  const f = readFileSync('/proc/stat', 'utf8').split('\n')[0]!.trim().split(/\s+/).slice(1).map(Number);
  const idle = f[3]! + (f[4] ?? 0);
  return ((f.reduce((x, y) => x + y, 0) - idle) / clockTicksPerSecond()) * 1000;
}

/** Open descriptors of a process, and how many of them are on one database's files. */
function fdCount(pid: number, dbPath: string): { total: number; onDb: number } {
  let total = 0;
  let onDb = 0;
  for (const fd of ls(`/proc/${pid}/fd`)) {
    total++;
    try {
      const t = readlinkSync(`/proc/${pid}/fd/${fd}`);
      if (t === dbPath || t === `${dbPath}-wal` || t === `${dbPath}-shm`) onDb++;
    } catch {}
  }
  return { total, onDb };
}

/** Resets a process's VmHWM to its current RSS (Linux ≥ 4.0: `5` into /proc/<pid>/clear_refs). */
function resetHwm(pid: number): boolean {
  try {
    writeFileSync(`/proc/${pid}/clear_refs`, '5');
    return true;
  } catch {
    return false;
  }
}

const ls = (d: string): string[] => {
  try {
    return readdirSync(d);
  } catch {
    return [];
  }
};

/** A file replica has a snapshot and a WAL segment (in one generation). */
function fileReplicaComplete(root: string): boolean {
  for (const g of ls(join(root, 'generations'))) {
    if (
      ls(join(root, 'generations', g, 'snapshots')).some((f) => f.endsWith('.snapshot.lz4')) &&
      ls(join(root, 'generations', g, 'wal')).some((f) => f.endsWith('.wal.lz4'))
    )
      return true;
  }
  return false;
}

/** The newest modification time of any object of a file replica (the last one written). */
function fileReplicaLastWrite(root: string): number {
  let last = NaN;
  for (const g of ls(join(root, 'generations'))) {
    for (const sub of ['snapshots', 'wal']) {
      for (const f of ls(join(root, 'generations', g, sub))) {
        if (!f.endsWith('.lz4')) continue;
        try {
          const t = statSync(join(root, 'generations', g, sub, f)).mtimeMs;
          if (!(t <= last)) last = t;
        } catch {}
      }
    }
  }
  return last;
}

async function query(child: Child): Promise<any> {
  child.send({ type: 'query' });
  return child.next('state', 60_000);
}

async function runBackend(ctx: ScaleContext, P: ScaleParams, backend: 'file' | 's3', n: number, light: boolean): Promise<any> {
  const dir = ctx.freshDir(`scale-${backend}-${n}`);
  const dbDir = join(dir, 'dbs');
  mkdirSync(dbDir);
  const tc0 = now();
  for (let i = 0; i < n; i++) createSmallDb(join(dbDir, dbName(i)));
  const pageSize = 4096;
  const dbBytes = statSync(join(dbDir, dbName(0))).size;
  ctx.log(`scale ${backend}: ${n} databases of ${dbBytes / pageSize} pages created in ${((now() - tc0) / 1000).toFixed(1)} s`);
  const tag = Date.now().toString(36);
  const prefix = `scale-${backend}-${tag}`;
  const replicaDir = join(dir, 'replica');
  let s3: S3Bench | undefined;
  let rec: S3Recorder | undefined;
  let spec: ReplicaSpec;
  if (backend === 'file') spec = { kind: 'file', path: replicaDir };
  else {
    s3 = await ctx.s3();
    rec = new S3Recorder(s3.endpoint, s3.bucket, prefix, join(dir, 'mirror'));
    await rec.start();
    spec = { kind: 's3', endpoint: rec.endpoint, bucket: s3.bucket, path: prefix };
  }
  const complete = (rel: string): boolean =>
    rec ? rec.complete(rel).snapshotAt !== undefined && rec.complete(rel).walAt !== undefined : fileReplicaComplete(join(replicaDir, rel));
  const s3Count = (): number => s3?.byPrefix[prefix] ?? 0;
  const out: any = { backend, databases: n, dbBytes, light };
  const child = new Child('scale-replicator.ts', { dir: dbDir, replica: spec, maxLifetimeMs: 1_800_000 });
  let writer: Child | undefined;
  const watchers: ReplicaWatcher[] = [];
  let rss: ReturnType<typeof rssSampler> | undefined;
  try {
    const loaded = await child.next('loaded', 120_000);
    const pid = child.pid;
    out.memFloorRssBytes = loaded.memFloor.rssBytes;
    rss = rssSampler(pid, 250);

    // ---- 1. catch-up: start → every database added and synced --------------------------------
    const tGo = now();
    const cpuGo = procCpuMs(pid);
    child.send({ type: 'go' });
    const cu = await child.next('caught-up', 900_000);
    const tCu = now();
    const cpuCu = procCpuMs(pid);
    const memCu = procMem(pid);
    const rels = Array.from({ length: n }, (_, i) => dbName(i));
    const completeCount = rels.filter(complete).length;
    const lastObjectAt = rec
      ? rec.lastPutAt
      : Math.max(...rels.map((r) => fileReplicaLastWrite(join(replicaDir, r))).filter(Number.isFinite));
    out.catchUp = {
      startMs: cu.startMs,
      catchUpMs: cu.catchUpMs,
      externalLastObjectMs: lastObjectAt - tGo,
      added: cu.added,
      synced: cu.synced,
      behind: cu.behind,
      behindExamples: cu.behindExamples,
      replicasComplete: completeCount,
      failed: cu.failed,
      skipped: cu.skipped,
      inotify: cu.events,
      snapshots: cu.snapshots,
      replicaErrors: cu.replicaErrors,
      errorMessages: cu.errorMessages,
      dbErrors: cu.dbErrors,
      ops: cu.ops,
      peakRssBytes: memCu.hwmBytes,
      rssAtEndBytes: memCu.rssBytes,
      cpuPct: ((cpuCu - cpuGo) / (tCu - tGo)) * 100,
      s3rverRequests: s3 ? s3Count() : undefined,
    };
    ctx.log(
      `scale ${backend} ${n}: caught up in ${(cu.catchUpMs / 1000).toFixed(1)} s (start() ${(cu.startMs / 1000).toFixed(1)} s; last object ${((lastObjectAt - tGo) / 1000).toFixed(1)} s after go), ${completeCount}/${n} replicas complete, ${cu.behind} behind, peak RSS ${(memCu.hwmBytes / MiB).toFixed(0)} MiB, ${cu.replicaErrors} errors`,
    );

    // ---- 2. idle --------------------------------------------------------------------------------
    await sleep(P.settleMs);
    const idleMs = light ? Math.min(P.idleMs, 20_000) : P.idleMs;
    child.send({ type: 'mark' });
    const s3Before = s3Count();
    const recBefore = rec?.requests ?? 0;
    const cpu0 = procCpuMs(pid);
    const th0 = threadCpu(pid);
    const ti0 = now();
    ctx.log(`scale ${backend} ${n}: idle window ${idleMs / 1000} s…`);
    await sleep(idleMs);
    const cpu1 = procCpuMs(pid);
    const ti1 = now();
    const idleThreads = topThreads(th0, threadCpu(pid), ti1 - ti0, pid);
    const idleState = await query(child);
    const windowMs = ti1 - ti0;
    const idleRss = rss.between(ti0, ti1);
    out.idle = {
      windowMs,
      cpuPct: ((cpu1 - cpu0) / windowMs) * 100,
      cpuPctSelf: idleState.cpuPctSelf,
      rssMedianBytes: median(idleRss),
      rssMaxBytes: Math.max(...idleRss),
      rssSamples: idleRss.length,
      operationEvents: idleState.opsTotal,
      operationsByKind: idleState.ops,
      operationsPerMin: (idleState.opsTotal / windowMs) * 60_000,
      s3rverRequests: s3 ? s3Count() - s3Before : undefined,
      s3rverRequestsPerMin: s3 ? ((s3Count() - s3Before) / windowMs) * 60_000 : undefined,
      recorderRequests: rec ? rec.requests - recBefore : undefined,
      unhealthy: idleState.unhealthy,
      replicaErrors: idleState.replicaErrors,
      threads: idleThreads,
      fds: fdCount(pid, join(dbDir, dbName(0))),
      mainIsolate: idleState.memoryUsage,
    };
    out.perDatabaseRssBytes = (out.idle.rssMedianBytes - out.memFloorRssBytes) / n;
    ctx.log(
      `scale ${backend} ${n}: idle RSS ${(out.idle.rssMedianBytes / MiB).toFixed(0)} MiB (max ${(out.idle.rssMaxBytes / MiB).toFixed(0)}; floor ${(out.memFloorRssBytes / MiB).toFixed(0)} MiB → ${(out.perDatabaseRssBytes / 1024).toFixed(0)} KiB per database), CPU ${out.idle.cpuPct.toFixed(2)} %, ${out.idle.operationEvents} operation events${s3 ? `, ${out.idle.s3rverRequests} requests at s3rver` : ''}`,
    );
    if (light) return out;

    // ---- 3. writes: `writing` databases at `rate` tx/s each ----------------------------------
    const wrels = rels.slice(0, P.writing);
    for (const rel of wrels) watchers.push(rec ? new RecordedWatcher(rec, rel) : new FileSegWatch(join(replicaDir, rel)).start());
    writer = new Child('scale-writers.ts', { dbs: wrels.map((r) => join(dbDir, r)), rate: P.rate, durationMs: P.writeMs });
    await writer.next('loaded', 60_000);
    await sleep(1500); // the writers' opening of the databases is seen and settled
    child.send({ type: 'mark' });
    const hwmReset = resetHwm(pid);
    const s3w0 = s3Count();
    writer.send({ type: 'go' });
    await writer.next('started', 30_000);
    child.send({ type: 'sample', rels: wrels });
    const wCpu0 = procCpuMs(writer.pid);
    const cpuW0 = procCpuMs(pid);
    const thW0 = threadCpu(pid);
    const mcpu0 = machineCpuMs();
    const ocpu0 = process.cpuUsage();
    const tw0 = now();
    ctx.log(`scale ${backend}: ${P.writing} databases writing ${P.rate} tx/s each for ${P.writeMs / 1000} s…`);
    // after 3 s, the busiest thread other than the main one (the engine worker) and the main
    // thread are sampled: where do they wait?
    let engineSampler: ReturnType<typeof syscallSampler> | undefined;
    let mainSampler: ReturnType<typeof syscallSampler> | undefined;
    let engineTid: number | undefined;
    const probe = sleep(3000).then(() => {
      const top = topThreads(thW0, threadCpu(pid), now() - tw0, pid).find((x) => x.tid !== pid);
      if (top) {
        engineTid = top.tid;
        engineSampler = syscallSampler(pid, top.tid, 5);
      }
      mainSampler = syscallSampler(pid, pid, 5);
    });
    const w = await writer.next('result', P.writeMs + 60_000);
    await probe;
    const engineSyscalls = engineSampler?.stop();
    const mainSyscalls = mainSampler?.stop();
    const tw1 = now();
    const cpuW1 = procCpuMs(pid);
    const wCpu1 = procCpuMs(writer.pid);
    const writeThreads = topThreads(thW0, threadCpu(pid), tw1 - tw0, pid);
    const machinePct = ((machineCpuMs() - mcpu0) / (tw1 - tw0)) * 100;
    const oc = process.cpuUsage(ocpu0);
    const orchestratorPct = ((oc.user + oc.system) / 1000 / (tw1 - tw0)) * 100;
    const memW = procMem(pid);
    const s3w1 = s3Count();
    await writer.exited;
    const writeRss = rss.between(tw0, tw1);
    const completes = await Promise.all(
      w.perDb.map((d: any, i: number) =>
        waitReplicaComplete(watchers[i]!, d.txs ? d.lastSeq : -1, d.lastTxTs, 60_000, w.startedAt - 60_000),
      ),
    );
    const wState = await query(child);
    child.send({ type: 'sample', rels: [] });
    for (const x of watchers) {
      x.poll();
      x.stop();
    }
    const completeAt = completes.every((c) => c.ok) ? Math.max(...completes.map((c) => c.at!)) : undefined;
    const rl = await replicaLag(new PooledWatcher(watchers), {
      since: w.startedAt - 1000,
      writerEndedAt: w.endedAt,
      completeAt,
      completeOk: completeAt !== undefined,
    });
    const fileEvents = watchers.reduce((a, x) => a + ((x as FileSegWatch).eventsSeen ?? 0), 0);
    out.writes = {
      writing: P.writing,
      offeredPerDb: P.rate,
      windowMs: w.elapsedMs,
      txCommitted: w.txs,
      txFound: rl.txFound,
      achievedTxPerSec: w.txPerSec,
      writerMaxLateMs: w.maxLateMs,
      writerBusy: w.busy,
      lagMethod:
        backend === 'file'
          ? 'replica-watch: segment first seen by inotify on the replica directories, markers decoded after the run'
          : 'replica-watch: segment seen when s3rver acknowledged its PUT (recording proxy), markers decoded after the run',
      txLag: rl.txLag,
      txLagFirstHalf: rl.txLagFirstHalf,
      txLagSecondHalf: rl.txLagSecondHalf,
      completeMsAfterStop: rl.drainMs,
      completeOk: rl.drainOk,
      incomplete: completes.filter((c) => !c.ok).length,
      segments: rl.segments,
      generations: rl.generations,
      walBytesDecoded: rl.walBytesDecoded,
      scanMs: rl.scanMs,
      rejectedMarkers: rl.rejectedMarkers,
      fileWatchEvents: backend === 'file' ? fileEvents : undefined,
      statusLag: wState.statusLag as Dist,
      statusLagSamples: wState.statusLagSamples,
      peakRssBytes: hwmReset ? memW.hwmBytes : undefined,
      peakRssMethod: hwmReset ? 'VmHWM, reset (clear_refs 5) before the writes' : 'VmRSS sampled every 250 ms',
      rssSampledMaxBytes: Math.max(...writeRss),
      rssSampledMedianBytes: median(writeRss),
      replicatorCpuPct: ((cpuW1 - cpuW0) / (tw1 - tw0)) * 100,
      writersCpuPct: ((wCpu1 - wCpu0) / (tw1 - tw0)) * 100,
      replicatorThreads: writeThreads,
      engineThread: { tid: engineTid, percentOfSamples: engineSyscalls },
      mainThreadSyscalls: mainSyscalls,
      lagPerSecond: wState.lagPerSecond,
      uploadsPerSecond: wState.uploadsPerSecond,
      checkpoints: wState.checkpoints,
      orchestratorCpuPct: orchestratorPct,
      machineCpuPct: machinePct,
      operationEvents: wState.opsTotal,
      operationsByKind: wState.ops,
      s3rverRequestsPerMin: s3 ? ((s3w1 - s3w0) / (tw1 - tw0)) * 60_000 : undefined,
      replicaErrors: wState.replicaErrors,
      errorMessages: wState.errorMessages,
      undecodablePuts: rec?.undecodable,
    };
    const l = rl.txLag;
    ctx.log(
      `scale ${backend}: ${Math.round(w.txPerSec)} tx/s over ${P.writing} databases; lag p50/p99/max ${l.p50.toFixed(0)}/${l.p99.toFixed(0)}/${l.max.toFixed(0)} ms (status lagMs p99 ${wState.statusLag.p99.toFixed(0)}), found ${rl.txFound}/${w.txs} tx, ${rl.drainOk ? `complete ${rl.drainMs.toFixed(0)} ms after stop` : `NOT complete (${out.writes.incomplete} databases)`}; RSS peak ${(((hwmReset ? memW.hwmBytes : out.writes.rssSampledMaxBytes) as number) / MiB).toFixed(0)} MiB; CPU replicator ${out.writes.replicatorCpuPct.toFixed(0)} %, writers ${out.writes.writersCpuPct.toFixed(0)} %`,
    );

    // ---- 4. a database created, one deleted, while watching --------------------------------
    await sleep(3000);
    const created: any[] = [];
    for (let i = 0; i < P.newDbs; i++) {
      const rel = `new-${i}.db`;
      const tc = now();
      createSmallDb(join(dbDir, rel), 1);
      const tMade = now();
      let seenAt = NaN;
      while (now() - tc < 30_000) {
        if (complete(rel)) {
          seenAt = now();
          break;
        }
        await sleep(10);
      }
      const st = await query(child);
      const ev = (st.added as { relPath: string; t: number }[]).find((a) => a.relPath === rel);
      created.push({ rel, createMs: tMade - tc, replicatedMs: seenAt - tc, addedMs: ev ? ev.t - tc : NaN });
      ctx.log(
        `scale ${backend}: new database ${rel}: database-added after ${(ev ? ev.t - tc : NaN).toFixed(0)} ms, replica (snapshot + WAL segment) after ${(seenAt - tc).toFixed(0)} ms`,
      );
      await sleep(2000);
    }
    const deleted: any[] = [];
    for (let i = 0; i < P.newDbs; i++) {
      const rel = dbName(n - 1 - i); // not one of the writing databases
      const td = now();
      for (const sfx of ['', '-wal', '-shm']) rmSync(join(dbDir, rel + sfx), { force: true });
      let ev: { relPath: string; t: number } | undefined;
      while (!ev && now() - td < 30_000) {
        await sleep(50);
        ev = ((await query(child)).removed as { relPath: string; t: number }[]).find((r) => r.relPath === rel);
      }
      deleted.push({ rel, removedMs: ev ? ev.t - td : NaN });
      ctx.log(`scale ${backend}: deleted ${rel}: database-removed after ${(ev ? ev.t - td : NaN).toFixed(0)} ms`);
      await sleep(1000);
    }
    out.created = created;
    out.deleted = deleted;
    const fin = await query(child);
    out.final = {
      databases: fin.databases,
      running: fin.running,
      failed: fin.failed,
      dbErrors: fin.dbErrors,
      skipped: fin.skipped,
      inotify: fin.events,
      mem: fin.mem,
    };
    child.send({ type: 'stop' });
    const stopped = await child.next('stopped', 180_000);
    out.stopMs = stopped.ms;
    return out;
  } finally {
    rss?.stop();
    for (const x of watchers) x.stop();
    writer?.kill();
    child.kill();
    await rec?.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

export async function scale(ctx: ScaleContext, P: ScaleParams): Promise<any> {
  const res: any = {
    params: P,
    litestream: 'none: Litestream v0.3 has no directory mode',
    backends: {} as Record<string, any>,
    extra: [] as any[],
  };
  for (const backend of P.backends) {
    res.backends[backend] = await runBackend(ctx, P, backend, P.dbs, false);
  }
  // the per-database cost: smaller directories, file replica only (catch-up and idle only)
  for (const n of P.extraCounts) res.extra.push(await runBackend(ctx, P, 'file', n, true));
  const pts = [...res.extra, res.backends.file].filter((r) => r?.idle).map((r) => ({ n: r.databases, rss: r.idle.rssMedianBytes }));
  if (pts.length > 1) {
    const lo = pts.reduce((a, b) => (b.n < a.n ? b : a));
    const hi = pts.reduce((a, b) => (b.n > a.n ? b : a));
    res.marginalRssPerDbBytes = (hi.rss - lo.rss) / (hi.n - lo.n);
    res.marginalRssPoints = pts;
  }
  return res;
}

// ---- table ---------------------------------------------------------------------------------
const f0 = (x: number | undefined): string => (x !== undefined && Number.isFinite(x) ? Math.round(x).toLocaleString('en-US') : '–');
const f1 = (x: number | undefined): string => (x !== undefined && Number.isFinite(x) ? x.toFixed(1) : '–');
const f2 = (x: number | undefined): string => (x !== undefined && Number.isFinite(x) ? x.toFixed(2) : '–');
const mb = (x: number | undefined): string => (x !== undefined && Number.isFinite(x) ? `${(x / MB).toFixed(0)} MB` : '–');
const verdict = (ok: boolean | undefined, target: string): string => `${target}: ${ok === undefined ? 'n/a' : ok ? 'PASS' : 'FAIL'}`;

export function scaleTable(S: any): string {
  if (!S?.backends) return '';
  const T: ScaleParams['targets'] = S.params.targets;
  const rows: string[][] = [];
  const add = (metric: string, value: string, target = ''): void => void rows.push(['10 scale', metric, value, target]);
  add('Litestream arm', 'none: Litestream v0.3 has no directory mode (no Litestream column for this scenario)');
  for (const [backend, r] of Object.entries<any>(S.backends)) {
    const b = backend === 'file' ? 'file' : 's3rver';
    const c = r.catchUp;
    add(
      `${b}: ${f0(r.databases)} dbs (${f0(r.dbBytes / 4096)} pages): start → all added / all synced (last object)`,
      `${f1(c.startMs / 1000)} s / ${f1(c.catchUpMs / 1000)} s (${f1(c.externalLastObjectMs / 1000)} s); ${c.replicasComplete}/${r.databases} replicas complete, ${c.behind} behind, ${c.replicaErrors} errors`,
    );
    add(`${b}: peak RSS during catch-up (VmHWM); CPU`, `${mb(c.peakRssBytes)}; ${f0(c.cpuPct)} % of one core`);
    const i = r.idle;
    add(
      `${b}: idle RSS over ${f0(i.windowMs / 1000)} s, median / max (floor before start)`,
      `${mb(i.rssMedianBytes)} / ${mb(i.rssMaxBytes)} (${mb(r.memFloorRssBytes)}; ${f0(r.perDatabaseRssBytes / 1024)} KiB per db above it)`,
      verdict(i.rssMaxBytes <= T.idleRssBytes, '≤ 256 MB'),
    );
    add(
      `${b}: idle CPU (/proc, all threads)${i.threads ? '; busiest threads' : ''}`,
      `${f2(i.cpuPct)} % of one core${
        i.threads
          ? `; ${i.threads
              .slice(0, 3)
              .map((t: any) => `${t.comm} ${f2(t.cpuPct)} %`)
              .join(', ')}`
          : ''
      }`,
      verdict(i.cpuPct <= T.idleCpuPct, `≤ ${T.idleCpuPct} %`),
    );
    const reqs = i.s3rverRequestsPerMin ?? i.operationsPerMin;
    add(
      `${b}: idle storage requests/min (${i.s3rverRequestsPerMin !== undefined ? 'at s3rver; operation events' : 'operation events'})`,
      i.s3rverRequestsPerMin !== undefined ? `${f1(i.s3rverRequestsPerMin)}; ${f1(i.operationsPerMin)}` : f1(i.operationsPerMin),
      verdict(reqs <= T.idleReqPerMin && i.operationsPerMin <= T.idleReqPerMin, '0'),
    );
    const w = r.writes;
    if (w) {
      const l = w.txLag;
      add(
        `${b}: ${w.writing} dbs × ${w.offeredPerDb} tx/s for ${f0(w.windowMs / 1000)} s: rate; lag p50 / p99 / max (replica side)`,
        `${f0(w.achievedTxPerSec)} tx/s; ${f0(l.p50)} / ${f0(l.p99)} / ${f0(l.max)} ms; found ${f0(w.txFound)}/${f0(w.txCommitted)} tx; ${w.completeOk ? `complete ${f0(w.completeMsAfterStop)} ms after stop` : 'NOT complete'}`,
        verdict(l.p99 <= T.lagP99Ms && w.completeOk, 'p99 ≤ 2 s'),
      );
      add(
        `${b}:   status().lagMs sampled each second, p50 / p99 / max (n)`,
        `${f0(w.statusLag.p50)} / ${f0(w.statusLag.p99)} / ${f0(w.statusLag.max)} ms (${f0(w.statusLag.n)})`,
      );
      const peak = w.peakRssBytes ?? w.rssSampledMaxBytes;
      add(
        `${b}:   RSS during the writes, peak / median`,
        `${mb(peak)} / ${mb(w.rssSampledMedianBytes)}`,
        verdict(peak <= T.writeRssBytes, '≤ 512 MB'),
      );
      add(
        `${b}:   CPU: replicator / writers process`,
        `${f0(w.replicatorCpuPct)} % / ${f0(w.writersCpuPct)} % of one core; ${w.replicaErrors} replica errors`,
      );
      if (w.engineThread?.percentOfSamples)
        add(
          `${b}:   busiest non-main thread (engine worker), % of 5 ms samples`,
          Object.entries<number>(w.engineThread.percentOfSamples)
            .slice(0, 4)
            .map(([k, v]) => `${k} ${f0(v)} %`)
            .join(', '),
        );
      if (w.checkpoints)
        add(
          `${b}:   checkpoints in the window: n; lock held p99 / max`,
          `${f0(w.checkpoints.n)}; ${f0(w.checkpoints.lockHeldMs.p99)} / ${f0(w.checkpoints.lockHeldMs.max)} ms`,
        );
      if (w.replicatorThreads)
        add(
          `${b}:   busiest replicator threads; whole machine (of 200 %)`,
          `${w.replicatorThreads
            .slice(0, 3)
            .map((t: any) => `${t.comm} ${f0(t.cpuPct)} %`)
            .join(', ')}; ${f0(w.machineCpuPct)} %`,
        );
    }
    if (r.created?.length) {
      const ms = r.created.map((x: any) => x.replicatedMs);
      add(
        `${b}: new database → replica with snapshot + WAL segment (database-added)`,
        `${r.created.map((x: any) => `${f0(x.replicatedMs)} (${f0(x.addedMs)})`).join(', ')} ms`,
        verdict(
          ms.every((x: number) => x <= T.newDbMs),
          '≤ 2 s',
        ),
      );
    }
    if (r.deleted?.length) add(`${b}: deleted database → database-removed`, `${r.deleted.map((x: any) => f0(x.removedMs)).join(', ')} ms`);
  }
  for (const r of S.extra ?? []) {
    add(
      `${r.backend === 'file' ? 'file' : 's3rver'}: ${f0(r.databases)} dbs: caught up; idle RSS median (per db above the floor); idle CPU`,
      `${f1(r.catchUp.catchUpMs / 1000)} s; ${mb(r.idle.rssMedianBytes)} (${f0(r.perDatabaseRssBytes / 1024)} KiB); ${f2(r.idle.cpuPct)} %`,
    );
  }
  if (S.marginalRssPerDbBytes !== undefined)
    add(
      `file: marginal idle RSS per database (${S.marginalRssPoints.map((p: any) => p.n).join(' / ')} dbs)`,
      `${f0(S.marginalRssPerDbBytes / 1024)} KiB`,
    );
  const wd = [0, 1, 2, 3].map((c) => Math.max(...rows.map((r) => r[c]!.length), ['scenario', 'metric', 'value', 'target'][c]!.length));
  const line = (r: string[]): string => `| ${r.map((x, k) => x.padEnd(wd[k]!)).join(' | ')} |`;
  return [line(['scenario', 'metric', 'value', 'target']), line(wd.map((x) => '-'.repeat(x))), ...rows.map(line)].join('\n');
}
