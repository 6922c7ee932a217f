// Summaries and the compact table, shared by bench/run.ts and bench/report.ts.
import { median } from './common.js';

const MiB = 1024 * 1024;

/** bounded = lag does not grow over the run (second-half max ≤ 1.5 × first-half max + 1 s) and the
 * replica catches up within 5 s once the writer stops. */
export function isBounded(r: any): boolean {
  return r.drainOk && r.drainMs <= 5000 && r.txLagSecondHalf.max <= 1.5 * r.txLagFirstHalf.max + 1000;
}

export function summarizeLag(runs: any[], loads: number[], syncIntervalMs = 1000): { levels: any[]; highestSustained: any } {
  for (const r of runs) {
    r.bounded = isBounded(r);
    r.meetsTarget = r.txLag.p99 <= syncIntervalMs + 500;
  }
  const levels = loads.map((rate) => {
    const rs = runs.filter((x: any) => x.offered === (rate || 'max'));
    return {
      offered: rate || 'max',
      reps: rs.length,
      achievedTxPerSec: median(rs.map((x: any) => x.achievedTxPerSec)),
      walMBps: median(rs.map((x: any) => x.walMBps)),
      lagP50Ms: median(rs.map((x: any) => x.txLag.p50)),
      lagP99Ms: median(rs.map((x: any) => x.txLag.p99)),
      lagP99MsRange: [Math.min(...rs.map((x: any) => x.txLag.p99)), Math.max(...rs.map((x: any) => x.txLag.p99))],
      lagMaxMs: Math.max(...rs.map((x: any) => x.txLag.max)),
      statusLagP99Ms: median(rs.map((x: any) => x.statusLag.p99)),
      walMaxBytes: Math.max(...rs.map((x: any) => x.walMaxBytes)),
      drainMsMax: Math.max(...rs.map((x: any) => x.drainMs)),
      writerMaxStallMs: Math.max(...rs.map((x: any) => x.writerMaxStallMs)),
      bounded: rs.every((x: any) => x.bounded),
      meetsP99Target: rs.every((x: any) => x.meetsTarget),
      replicatorCpuPct: median(rs.map((x: any) => x.replicatorCpuPct)),
    };
  });
  const sustained = levels.filter((l) => l.bounded && (l.offered === 'max' || l.achievedTxPerSec >= 0.95 * (l.offered as number)));
  const best = sustained.sort((a, b) => b.achievedTxPerSec - a.achievedTxPerSec)[0];
  return { levels, highestSustained: best ? { txPerSec: best.achievedTxPerSec, walMBps: best.walMBps, offered: best.offered } : undefined };
}

const f0 = (x: number): string => (Number.isFinite(x) ? Math.round(x).toLocaleString('en-US') : '–');
const f1 = (x: number): string => (Number.isFinite(x) ? x.toFixed(1) : '–');
const f2 = (x: number): string => (Number.isFinite(x) ? x.toFixed(2) : '–');
const mib = (x: number | undefined): string => (x === undefined || !Number.isFinite(x) ? '–' : `${(x / MiB).toFixed(0)} MiB`);

export function table(R: any): string {
  const rows: string[][] = [];
  const add = (scenario: string, metric: string, value: string, target = ''): void => void rows.push([scenario, metric, value, target]);
  if (R.overhead) {
    const o = R.overhead;
    add('1 overhead', 'no replication, tx/s (median, range)', `${f0(o.none.median)} (${f0(o.none.min)}–${f0(o.none.max)})`);
    add('1 overhead', 'walship → file, tx/s', `${f0(o.walship.median)} (${f0(o.walship.min)}–${f0(o.walship.max)})`);
    if (o.noneAutocheckpoint1000) add('1 overhead', 'no replication, autocheckpoint 1000, tx/s', `${f0(o.noneAutocheckpoint1000.median)} (${f0(o.noneAutocheckpoint1000.min)}–${f0(o.noneAutocheckpoint1000.max)})`);
    add('1 overhead', 'ratio (median of per-round ratios, range)', `${f2(o.perRoundRatio.median)} (${f2(o.perRoundRatio.min)}–${f2(o.perRoundRatio.max)})`, '≥ 0.80');
    const wr = o.runs.filter((x: any) => x.arm === 'walship');
    add('1 overhead', 'replicator process CPU (median)', `${f0(median(wr.map((x: any) => x.replicator.cpuPct)))} % of one core`);
  }
  if (R.lag) {
    for (const l of R.lag.levels) {
      add('2 lag', `offered ${l.offered === 'max' ? 'max' : f0(l.offered)} tx/s`, `${f0(l.achievedTxPerSec)} tx/s, ${f1(l.walMBps)} MiB/s WAL; lag p50/p99/max ${f0(l.lagP50Ms)}/${f0(l.lagP99Ms)}/${f0(l.lagMaxMs)} ms; WAL max ${mib(l.walMaxBytes)}; catch-up ${f0(l.drainMsMax)} ms; ${l.bounded ? 'bounded' : 'NOT bounded'}`, l.offered === 20000 ? `p99 ≤ ${R.lag.target20kP99Ms} ms` : '');
    }
    const h = R.lag.highestSustained;
    add('2 lag', 'highest sustained (bounded) rate', h ? `${f0(h.txPerSec)} tx/s, ${f1(h.walMBps)} MiB/s WAL (level ${h.offered})` : 'none');
  }
  if (R.restore) {
    const r = R.restore;
    const bw = r.bigwal;
    add('3 restore', `1 index, ${mib(r.fixtures.bigwal.walWrittenBytes)} WAL: walship restore`, `${f2(bw.walship.seconds.median)} s (${f2(bw.walship.seconds.min)}–${f2(bw.walship.seconds.max)}), ${f0(bw.walship.mbps.median)} MiB/s, peak RSS ${mib(bw.walship.peakRssBytes)}`);
    if (bw.lz4cli) add('3 restore', '  physical limit: lz4 -dc of the segments to a file', `${f2(bw.lz4cli.seconds.median)} s, ${f0(bw.lz4cli.mbps.median)} MiB/s`);
    add('3 restore', '  walship LZ4 decoder only, to a file', `${f2(bw.decoder.seconds.median)} s, ${f0(bw.decoder.mbps.median)} MiB/s, peak RSS ${mib(bw.decoder.peakRssBytes)}`);
    const mi = r.manyidx;
    add('3 restore', `${r.fixtures.manyidx.walIndexes} indexes, ${mib(r.fixtures.manyidx.walWrittenBytes)} WAL: walship restore`, `${f2(mi.walship.seconds.median)} s (${f2(mi.walship.seconds.min)}–${f2(mi.walship.seconds.max)}), ${f0(mi.walship.mbps.median)} MiB/s, peak RSS ${mib(mi.walship.peakRssBytes)}`);
    if (mi.lz4cli) add('3 restore', '  physical limit: lz4 -dc', `${f2(mi.lz4cli.seconds.median)} s, ${f0(mi.lz4cli.mbps.median)} MiB/s`);
  }
  if (R.idle) {
    const i = R.idle;
    add('4 idle', `storage requests in ${f0(i.windowMs / 1000)} s idle (operation events / at s3rver)`, `${i.operationEvents} / ${i.s3rverRequests}`, '0');
    add('4 idle', 'replicator CPU', `${f2(i.cpuPct)} %`, '≤ 0.5 %');
  }
  if (R.memory) {
    for (const m of R.memory.sizes) {
      add('5 memory', `${mib(m.dbBytes)} db: snapshot / restore peak RSS (VmHWM)`, `${mib(m.snapshot.peakRssBytes)} / ${mib(m.restore.peakRssBytes)} (snapshot ${f1(m.snapshot.initialSyncMs / 1000)} s, restore ${f1(m.restore.ms / 1000)} s)`, '≤ 256 MB');
    }
  }
  if (R.memory) add('5 memory', 'RSS floor of an idle child (node + tsx + walship sources)', mib(R.memory.childFloorRssBytes));
  if (R.synclat) {
    for (const [k, v] of Object.entries<any>(R.synclat)) add('6 sync()', `after 1 tx → ${k}: p50 / p99 / max (n)`, `${f1(v.latencyMs.p50)} / ${f1(v.latencyMs.p99)} / ${f1(v.latencyMs.max)} ms (${v.latencyMs.n})`);
  }
  const w = [0, 1, 2, 3].map((c) => Math.max(...rows.map((r) => r[c]!.length), ['scenario', 'metric', 'value', 'target'][c]!.length));
  const line = (r: string[]): string => `| ${r.map((x, i) => x.padEnd(w[i]!)).join(' | ')} |`;
  return [line(['scenario', 'metric', 'value', 'target']), line(w.map((n) => '-'.repeat(n))), ...rows.map(line)].join('\n');
}

