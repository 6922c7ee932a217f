// Summaries and the compact table, shared by bench/run.ts and bench/report.ts. The table also
// renders results files written before the Litestream arms existed (those rows are then absent).
import { dist, median } from './common.js';

const MiB = 1024 * 1024;

/** bounded = lag does not grow over the run (second-half max ≤ 1.5 × first-half max + 1 s) and the
 * replica catches up within 5 s once the writer stops. */
function isBounded(r: any): boolean {
  return r.drainOk && r.drainMs <= 5000 && r.txLagSecondHalf.max <= 1.5 * r.txLagFirstHalf.max + 1000;
}

const armOf = (r: any): string => r.arm ?? 'walship';

/** Lag levels of one arm (runs without an `arm` are walship's, as in results files before #12). */
export function summarizeLag(
  allRuns: any[],
  loads: number[],
  syncIntervalMs = 1000,
  arm = 'walship',
): { levels: any[]; highestSustained: any } {
  const runs = allRuns.filter((r) => armOf(r) === arm);
  for (const r of runs) {
    r.bounded = isBounded(r);
    r.meetsTarget = r.txLag.p99 <= syncIntervalMs + 500;
  }
  const levels = loads
    .map((rate) => {
      const rs = runs.filter((x: any) => x.offered === (rate || 'max'));
      if (!rs.length) return undefined;
      return {
        offered: rate || 'max',
        reps: rs.length,
        achievedTxPerSec: median(rs.map((x: any) => x.achievedTxPerSec)),
        achievedTxPerSecRange: [Math.min(...rs.map((x: any) => x.achievedTxPerSec)), Math.max(...rs.map((x: any) => x.achievedTxPerSec))],
        walMBps: median(rs.map((x: any) => x.walMBps)),
        lagP50Ms: median(rs.map((x: any) => x.txLag.p50)),
        lagP99Ms: median(rs.map((x: any) => x.txLag.p99)),
        lagP99MsRange: [Math.min(...rs.map((x: any) => x.txLag.p99)), Math.max(...rs.map((x: any) => x.txLag.p99))],
        lagMaxMs: Math.max(...rs.map((x: any) => x.txLag.max)),
        tapLagP99Ms: median(rs.map((x: any) => x.tap?.txLag?.p99 ?? NaN)),
        statusLagP99Ms: median(rs.map((x: any) => x.statusLag?.p99 ?? x.tap?.statusLag?.p99 ?? NaN)),
        walMaxBytes: Math.max(...rs.map((x: any) => x.walMaxBytes)),
        drainMsMax: Math.max(...rs.map((x: any) => (x.drainOk ? x.drainMs : Infinity))),
        drainOk: rs.every((x: any) => x.drainOk),
        writerMaxStallMs: Math.max(...rs.map((x: any) => x.writerMaxStallMs)),
        bounded: rs.every((x: any) => x.bounded),
        meetsP99Target: rs.every((x: any) => x.meetsTarget),
        replicatorCpuPct: median(rs.map((x: any) => x.sidecarCpuPct ?? x.replicatorCpuPct)),
        txCommitted: rs.reduce((a: number, x: any) => a + (x.txCommitted ?? 0), 0),
        txFound: rs.reduce((a: number, x: any) => a + (x.txFound ?? x.txDurableRecorded ?? 0), 0),
      };
    })
    .filter((l): l is NonNullable<typeof l> => !!l);
  const sustained = levels.filter((l) => l.bounded && (l.offered === 'max' || l.achievedTxPerSec >= 0.95 * (l.offered as number)));
  const best = [...sustained].sort((a, b) => b.achievedTxPerSec - a.achievedTxPerSec)[0];
  return { levels, highestSustained: best ? { txPerSec: best.achievedTxPerSec, walMBps: best.walMBps, offered: best.offered } : undefined };
}

/** Write-lock figures from walship's `checkpoint` events ({ mode, durationMs, lockHeldMs? }). */
export function lockStats(
  runs: { checkpointLog?: { mode: string; durationMs: number; lockHeldMs?: number; restarted?: boolean }[]; windowMs: number }[],
): any {
  const windowMs = runs.reduce((a, r) => a + r.windowMs, 0);
  const evs = runs.flatMap((r) => r.checkpointLog ?? []);
  const byMode: Record<string, number> = {};
  for (const e of evs) byMode[e.mode] = (byMode[e.mode] ?? 0) + 1;
  const holds = evs.filter((e) => typeof e.lockHeldMs === 'number').map((e) => e.lockHeldMs!);
  const perMin = (n: number): number => (windowMs > 0 ? (n / windowMs) * 60_000 : NaN);
  return {
    windowMs,
    checkpoints: evs.length,
    checkpointsPerMin: perMin(evs.length),
    byMode,
    checkpointDurationMs: dist(evs.map((e) => e.durationMs)),
    lockHeldReported: holds.length > 0,
    lockHolds: holds.length,
    lockHoldsPerMin: perMin(holds.length),
    lockHeldMs: holds.length ? dist(holds) : undefined,
    restartsReported: evs.some((e) => typeof e.restarted === 'boolean'),
    restarts: evs.filter((e) => e.restarted === true).length,
    restartsPerMin: perMin(evs.filter((e) => e.restarted === true).length),
  };
}

const f0 = (x: number): string => (Number.isFinite(x) ? Math.round(x).toLocaleString('en-US') : '–');
const f1 = (x: number): string => (Number.isFinite(x) ? x.toFixed(1) : '–');
const f2 = (x: number): string => (Number.isFinite(x) ? x.toFixed(2) : '–');
const mib = (x: number | undefined): string => (x === undefined || !Number.isFinite(x) ? '–' : `${(x / MiB).toFixed(0)} MiB`);
const ratio = (a: number, b: number): string => (Number.isFinite(a) && Number.isFinite(b) && b !== 0 ? `${(a / b).toFixed(2)}×` : '–');
const spr = (s: any, fmt = f0): string => (s ? `${fmt(s.median)} (${fmt(s.min)}–${fmt(s.max)})` : '–');
const rateName = (r: number | string): string => (r === 'max' || r === 0 ? 'max' : f0(r as number));

function lagValue(l: any): string {
  const complete = l.drainOk ? `complete ${f0(l.drainMsMax)} ms after stop` : 'NOT complete within the wait';
  return `${f0(l.achievedTxPerSec)} tx/s, ${f1(l.walMBps)} MiB/s WAL; lag p50/p99/max ${f0(l.lagP50Ms)}/${f0(l.lagP99Ms)}/${f0(l.lagMaxMs)} ms; WAL max ${mib(l.walMaxBytes)}; ${complete}; ${l.bounded ? 'bounded' : 'NOT bounded'}${Number.isFinite(l.tapLagP99Ms) ? ` (tap p99 ${f0(l.tapLagP99Ms)} ms)` : ''}`;
}

function lockValue(s: any): string {
  if (!s) return '–';
  const modes = Object.entries<number>(s.byMode)
    .map(([k, v]) => `${k} ${f1((v / s.windowMs) * 60_000)}`)
    .join(', ');
  const cp = `${f1(s.checkpointsPerMin)} checkpoint events/min${modes ? ` (${modes})` : ''}`;
  if (s.checkpoints === 0) return `no checkpoint events in ${f1(s.windowMs / 1000)} s`;
  if (!s.lockHeldReported) return `n/a (checkpoint events carry no lockHeldMs); ${cp}`;
  const rs = s.restartsReported ? `; WAL restarts ${f1(s.restartsPerMin)}/min` : '';
  return `${f1(s.lockHoldsPerMin)}/min; held p99 ${f1(s.lockHeldMs.p99)} ms, max ${f1(s.lockHeldMs.max)} ms (n ${s.lockHolds})${rs}; ${cp}`;
}

export function table(R: any): string {
  const rows: string[][] = [];
  const add = (scenario: string, metric: string, value: string, target = ''): void => void rows.push([scenario, metric, value, target]);
  const LS = R.litestream;
  if (LS) add('0 setup', 'Litestream arms', LS.available ? `${LS.version} (${LS.bin})` : `SKIPPED: ${LS.reason}`);

  if (R.overhead) {
    const o = R.overhead;
    add('1 overhead', 'no replication, tx/s (median, range)', spr(o.none));
    add('1 overhead', 'walship → file, tx/s', spr(o.walship));
    if (o.litestream) add('1 overhead', 'Litestream → file, tx/s', spr(o.litestream));
    if (o.noneAutocheckpoint1000) add('1 overhead', 'no replication, autocheckpoint 1000, tx/s', spr(o.noneAutocheckpoint1000));
    add('1 overhead', 'walship / no replication (median of per-round ratios, range)', spr(o.perRoundRatio, f2), '≥ 0.80');
    if (o.perRoundRatioLitestream) {
      add('1 overhead', 'Litestream / no replication (per-round)', spr(o.perRoundRatioLitestream, f2));
      add('1 overhead', 'walship / Litestream (per-round)', spr(o.perRoundRatioWalshipLitestream, f2), '≥ 1.00');
    }
    const cpu = (arm: string): number =>
      median(o.runs.filter((x: any) => x.arm === arm).map((x: any) => x.sidecarCpuPct ?? x.replicator?.cpuPct ?? NaN));
    add(
      '1 overhead',
      `replicator process CPU (median)${o.litestream ? ': walship / Litestream' : ''}`,
      `${f0(cpu('walship'))}${o.litestream ? ` / ${f0(cpu('litestream'))}` : ''} % of one core`,
    );
    const stall = (arm: string): number => Math.max(...o.runs.filter((x: any) => x.arm === arm).map((x: any) => x.writerMaxStallMs ?? NaN));
    add(
      '1 overhead',
      `writer's longest gap between transactions: none / walship${o.litestream ? ' / Litestream' : ''}`,
      `${f0(stall('none'))} / ${f0(stall('walship'))}${o.litestream ? ` / ${f0(stall('litestream'))}` : ''} ms`,
    );
  }

  if (R.lag) {
    const L = R.lag;
    const ls = L.litestreamLevels as any[] | undefined;
    for (const l of L.levels) {
      const name = `offered ${rateName(l.offered)} tx/s`;
      if (!ls) {
        add('2 lag', name, lagValue(l), l.offered === 20000 && L.target20kP99Ms ? `p99 ≤ ${L.target20kP99Ms} ms` : '');
        continue;
      }
      const tgt = l.offered === 20000 ? '≥ 19,000 tx/s; complete ≤ 3 s' : l.offered === 'max' ? 'complete ≤ 3 s; WAL ≤ 256 MB' : '';
      add('2 lag', `${name}: walship`, lagValue(l), tgt);
      const m = ls.find((x) => x.offered === l.offered);
      if (m) {
        add('2 lag', `${name}: Litestream`, lagValue(m));
        add(
          '2 lag',
          `${name}: walship / Litestream`,
          `rate ${ratio(l.achievedTxPerSec, m.achievedTxPerSec)}, lag p99 ${ratio(l.lagP99Ms, m.lagP99Ms)}, WAL max ${ratio(l.walMaxBytes, m.walMaxBytes)}, replicator CPU ${f0(l.replicatorCpuPct)} % / ${f0(m.replicatorCpuPct)} %`,
          l.offered === 'max' ? 'rate ≥ 0.90×' : '',
        );
      }
    }
    const hs = (h: any): string => (h ? `${f0(h.txPerSec)} tx/s, ${f1(h.walMBps)} MiB/s WAL (level ${h.offered})` : 'none');
    add('2 lag', `highest sustained (bounded) rate${ls ? ': walship' : ''}`, hs(L.highestSustained));
    if (ls) add('2 lag', 'highest sustained (bounded) rate: Litestream', hs(L.litestreamHighestSustained));
  }

  if (R.restore) {
    const r = R.restore;
    const wsRow = (a: any): string =>
      a
        ? `${f2(a.seconds.median)} s (${f2(a.seconds.min)}–${f2(a.seconds.max)}), ${f0(a.mbps.median)} MiB/s, peak RSS ${mib(a.peakRssBytes)}`
        : '–';
    const lsPair = (w: any, l: any, target = ''): void => {
      if (!l) return;
      add('3 restore', '  the same replica: Litestream restore', wsRow(l));
      add('3 restore', '  walship / Litestream restore time', ratio(w?.seconds.median, l.seconds.median), target);
    };
    const bw = r.bigwal;
    add('3 restore', `1 index, ${mib(r.fixtures.bigwal.walWrittenBytes)} WAL (written by walship): walship restore`, wsRow(bw.walship));
    lsPair(bw.walship, bw.litestream);
    if (bw.lz4cli)
      add(
        '3 restore',
        '  physical limit: lz4 -dc of the segments to a file',
        `${f2(bw.lz4cli.seconds.median)} s, ${f0(bw.lz4cli.mbps.median)} MiB/s`,
      );
    if (bw.decoder)
      add(
        '3 restore',
        '  walship LZ4 decoder only, to a file',
        `${f2(bw.decoder.seconds.median)} s, ${f0(bw.decoder.mbps.median)} MiB/s, peak RSS ${mib(bw.decoder.peakRssBytes)}`,
      );
    const mi = r.manyidx;
    add(
      '3 restore',
      `${r.fixtures.manyidx.walIndexes} indexes, ${mib(r.fixtures.manyidx.walWrittenBytes)} WAL (written by walship): walship restore`,
      wsRow(mi.walship),
    );
    lsPair(mi.walship, mi.litestream, '≤ 0.30× (#14)');
    if (mi.lz4cli) add('3 restore', '  physical limit: lz4 -dc', `${f2(mi.lz4cli.seconds.median)} s, ${f0(mi.lz4cli.mbps.median)} MiB/s`);
    if (r.lsfix) {
      const f = r.fixtures.lsfix;
      add(
        '3 restore',
        `written by Litestream (${f.walIndexes} ${f.walIndexes === 1 ? 'index' : 'indexes'}, ${f.walSegments} segments, ${mib(r.lsfix.walship?.walBytes)} WAL): walship restore`,
        wsRow(r.lsfix.walship),
      );
      if (r.lsfix.litestream) {
        add('3 restore', '  the same replica: Litestream restore', wsRow(r.lsfix.litestream));
        add(
          '3 restore',
          '  walship / Litestream restore time',
          ratio(r.lsfix.walship?.seconds.median, r.lsfix.litestream.seconds.median),
          f.walIndexes === 1 ? '≤ 0.30× (#14)' : '',
        );
      }
    }
  }

  if (R.restore?.sameContent && Object.values(R.restore.sameContent).some((v) => v !== undefined)) {
    const names: Record<string, string> = { bigwal: '1 index', manyidx: 'many indexes', lsfix: 'Litestream-written' };
    add(
      '3 restore',
      'walship and Litestream restored the same rows (sha256 of table r)',
      Object.entries<boolean | undefined>(R.restore.sameContent)
        .map(([k, v]) => `${names[k] ?? k}: ${v === undefined ? '–' : v ? 'yes' : 'NO'}`)
        .join(', '),
    );
  }

  if (R.memory) {
    for (const m of R.memory.sizes) {
      if (m.cli) {
        const w = m.cli.walship;
        const l = m.cli.litestream;
        add(
          '4 memory',
          `${mib(m.dbBytes)} db: snapshot peak RSS (VmHWM): walship replicate${l ? ' / litestream replicate' : ''}`,
          `${mib(w?.peakRssBytes)}${l ? ` / ${mib(l.peakRssBytes)} (${ratio(w?.peakRssBytes, l.peakRssBytes)})` : ''}; snapshot ${f1((w?.snapshotMs ?? NaN) / 1000)} s${l ? ` / ${f1(l.snapshotMs / 1000)} s` : ''} incl. start-up`,
          '≤ 128 MB',
        );
        add(
          '4 memory',
          `${mib(m.dbBytes)} db: walship restore (library) peak RSS`,
          `${mib(m.restore.peakRssBytes)} (restore ${f1(m.restore.ms / 1000)} s, verify quick)`,
        );
      } else {
        add(
          '4 memory',
          `${mib(m.dbBytes)} db: snapshot / restore peak RSS (VmHWM)`,
          `${mib(m.snapshot.peakRssBytes)} / ${mib(m.restore.peakRssBytes)} (snapshot ${f1(m.snapshot.initialSyncMs / 1000)} s, restore ${f1(m.restore.ms / 1000)} s)`,
          '≤ 256 MB',
        );
      }
    }
    add('4 memory', 'RSS floor of an idle child (node + tsx + walship sources)', mib(R.memory.childFloorRssBytes));
    if (R.memory.cliFloorRssBytes !== undefined)
      add('4 memory', 'peak RSS of an idle walship replicate (no database yet; node + tsx)', mib(R.memory.cliFloorRssBytes));
  }

  if (R.age) {
    const a = R.age;
    const rate = (ms: number | undefined) => (ms ? `${f0(a.dbBytes / MiB / (ms / 1000))} MiB/s` : 'n/a');
    for (const enc of ['plain', 'age'] as const) {
      const w = a.walship?.[enc];
      const l = a.litestream?.[enc];
      if (!w) continue;
      add(
        '9 age',
        `${mib(a.dbBytes)} db, ${enc}: snapshot (incl. start-up), walship${l ? ' / litestream' : ''}`,
        `${f1(w.snapshotMs / 1000)} s${l ? ` / ${f1(l.snapshotMs / 1000)} s` : ''}`,
      );
      add(
        '9 age',
        `${mib(a.dbBytes)} db, ${enc}: CLI restore, walship${l ? ' / litestream' : ''}`,
        `${f1(w.restoreMs / 1000)} s, ${rate(w.restoreMs)}, peak RSS ${mib(w.restorePeakRssBytes)}${l ? ` / ${f1(l.restoreMs / 1000)} s, ${rate(l.restoreMs)}, peak RSS ${mib(l.restorePeakRssBytes)}` : ''}`,
      );
    }
  }
  if (R.idle) {
    const i = R.idle;
    if (i.tools) {
      const all = Object.keys(i.tools);
      const names = all.filter((k) => k !== 'node+tsx floor');
      add(
        '5 idle',
        `storage requests in ${f0(i.windowMs / 1000)} s idle (at s3rver): ${names.join(' / ')}`,
        names.map((k) => String(i.tools[k].s3rverRequests)).join(' / '),
        '0',
      );
      add(
        '5 idle',
        `CPU (/proc/<pid>/stat): ${all.join(' / ')}`,
        all.map((k) => `${f2(i.tools[k].cpuPct)} %`).join(' / '),
        '≤ 0.1 % and ≤ Litestream',
      );
      if (i.tools['walship library'])
        add('5 idle', '  walship library: operation events in the window', String(i.tools['walship library'].operationEvents));
    } else {
      add(
        '5 idle',
        `storage requests in ${f0(i.windowMs / 1000)} s idle (operation events / at s3rver)`,
        `${i.operationEvents} / ${i.s3rverRequests}`,
        '0',
      );
      add('5 idle', 'replicator CPU', `${f2(i.cpuPct)} %`, '≤ 0.5 %');
    }
  }

  if (R.embedding) {
    const E = R.embedding;
    const armLabel: Record<string, string> = { none: 'no replication', walship: 'walship embedded', litestream: 'Litestream sidecar' };
    for (const lv of E.levels) {
      for (const arm of ['none', 'walship', 'litestream']) {
        const a = lv[arm];
        if (!a) continue;
        const noise = a.reps > 1 ? ` (p99 ${f1(a.eldP99MsRange[0])}–${f1(a.eldP99MsRange[1])})` : '';
        add(
          '6 embedding',
          `app at ${f0(lv.rate)} tx/s, ${armLabel[arm]}: loop delay p50/p99/max; rate reached`,
          `${f1(a.eldP50Ms)}/${f1(a.eldP99Ms)}/${f0(a.eldMaxMs)} ms${noise}; ${f0(a.txPerSec)} tx/s; tx late p99 ${f1(a.latenessP99Ms)} ms; app CPU ${f0(a.appCpuPct)} %${a.sidecarCpuPct !== undefined ? ` + sidecar ${f0(a.sidecarCpuPct)} %` : ''}`,
        );
      }
      if (lv.walship && lv.none) {
        const lim = Math.max(2 * lv.none.eldP99Ms, 50);
        const met = lv.walship.eldP99Ms <= lim;
        add(
          '6 embedding',
          `app at ${f0(lv.rate)} tx/s: walship p99 vs no replication${lv.litestream ? ' / vs Litestream' : ''}`,
          `${ratio(lv.walship.eldP99Ms, lv.none.eldP99Ms)}${lv.litestream ? ` / ${ratio(lv.walship.eldP99Ms, lv.litestream.eldP99Ms)}` : ''}; ${lv.rate === 20000 ? `target ${f1(lim)} ms ${met ? 'met' : 'NOT met'}` : ''}`,
          lv.rate === 20000 ? 'p99 ≤ max(2 × none, 50 ms)' : '',
        );
      }
    }
  }

  if (R.lock) {
    for (const s of R.lock.lag ?? [])
      add('7 write lock', `lag ${rateName(s.offered)} tx/s (walship sidecar): write-lock holds/min; held p99/max`, lockValue(s.stats));
    for (const s of R.lock.embedding ?? [])
      add('7 write lock', `embedding ${f0(s.rate)} tx/s (walship in the app): write-lock holds/min; held p99/max`, lockValue(s.stats));
  }

  if (R.synclat) {
    for (const [k, v] of Object.entries<any>(R.synclat))
      add(
        `${R.litestream ? '8' : '6'} sync()`,
        `after 1 tx → ${k}: p50 / p99 / max (n)`,
        `${f1(v.latencyMs.p50)} / ${f1(v.latencyMs.p99)} / ${f1(v.latencyMs.max)} ms (${v.latencyMs.n})`,
      );
  }
  const w = [0, 1, 2, 3].map((c) => Math.max(...rows.map((r) => r[c]!.length), ['scenario', 'metric', 'value', 'target'][c]!.length));
  const line = (r: string[]): string => `| ${r.map((x, i) => x.padEnd(w[i]!)).join(' | ')} |`;
  return [line(['scenario', 'metric', 'value', 'target']), line(w.map((n) => '-'.repeat(n))), ...rows.map(line)].join('\n');
}
