// Replica-side lag measurement that works the same for walship and Litestream: watch a file
// replica's WAL segment objects appear, then read the writer's payload markers out of them.
//
// Both tools write a segment object to a temporary name, fsync it and rename it into
// generations/<gen>/wal/<index>_<offset>.wal.lz4, so the moment a name appears the segment is
// durable and complete. The watcher polls the replica directory (readdir, every `intervalMs`) and
// records when each name was first seen. After the run (the replicator stopped, so decoding
// costs nothing to the measurement) every segment is decoded in (generation, index, offset) order
// and each writer transaction's marker ("WSBM", u32 seq, f64 commit-start time) is attributed to
// the first segment that contains it: its lag = first-seen time of that segment − its start time.
// The poll adds 0–`intervalMs` to every figure.
import { spawn, spawnSync } from 'node:child_process';
import { createReadStream, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { createLz4FrameDecoder } from '@walship/core/format';
import { dist, now, sleep, type Dist } from './common.js';

export interface Segment {
  gen: string;
  index: number;
  offset: number;
  file: string;
  seenAt: number;
}

const SEG_RE = /^([0-9a-f]{8,16})_([0-9a-f]{8,16})\.wal\.lz4$/;

export class ReplicaWatcher {
  readonly #seen = new Map<string, Segment>();
  readonly #genSeen = new Map<string, number>();
  #timer: NodeJS.Timeout | undefined;
  #busy = false;
  polls = 0;

  constructor(
    readonly root: string,
    readonly intervalMs = 25,
  ) {}

  start(): this {
    this.poll();
    this.#timer = setInterval(() => this.poll(), this.intervalMs);
    return this;
  }

  stop(): void {
    clearInterval(this.#timer);
    this.#timer = undefined;
  }

  poll(): void {
    if (this.#busy) return;
    this.#busy = true;
    try {
      const t = now();
      this.polls++;
      let gens: string[] = [];
      try {
        gens = readdirSync(join(this.root, 'generations'));
      } catch {}
      for (const g of gens) {
        if (!this.#genSeen.has(g)) this.#genSeen.set(g, t);
        let files: string[] = [];
        try {
          files = readdirSync(join(this.root, 'generations', g, 'wal'));
        } catch {}
        for (const f of files) {
          const key = `${g}/${f}`;
          if (this.#seen.has(key)) continue;
          const m = SEG_RE.exec(f);
          if (!m) continue;
          this.#seen.set(key, {
            gen: g,
            index: parseInt(m[1]!, 16),
            offset: parseInt(m[2]!, 16),
            file: join(this.root, 'generations', g, 'wal', f),
            seenAt: t,
          });
        }
      }
    } finally {
      this.#busy = false;
    }
  }

  /** Every segment seen so far, in replication order. */
  segments(): Segment[] {
    return [...this.#seen.values()].sort(
      (a, b) =>
        this.#genSeen.get(a.gen)! - this.#genSeen.get(b.gen)! ||
        (a.gen < b.gen ? -1 : a.gen > b.gen ? 1 : 0) ||
        a.index - b.index ||
        a.offset - b.offset,
    );
  }

  get generations(): number {
    return this.#genSeen.size;
  }
}

let lz4Cli: boolean | undefined;
function haveLz4Cli(): boolean {
  lz4Cli ??= spawnSync('lz4', ['--version'], { stdio: 'ignore' }).status === 0;
  return lz4Cli;
}

/** The decompressed bytes of one LZ4 segment object: the lz4 CLI when installed (fast, C), else walship's decoder. */
async function* decode(file: string): AsyncGenerator<Buffer> {
  if (haveLz4Cli()) {
    const p = spawn('lz4', ['-dc', file], { stdio: ['ignore', 'pipe', 'pipe'] });
    let err = '';
    p.stderr!.on('data', (d: Buffer) => (err += d.toString()));
    const exited = new Promise<number | null>((r) => p.once('close', (code) => r(code)));
    for await (const c of p.stdout!) yield c as Buffer;
    const code = await exited;
    if (code !== 0) throw new Error(`lz4 -dc ${file} exited ${code}: ${err.trim()}`);
    return;
  }
  const src = createReadStream(file, { highWaterMark: 1 << 20 });
  const dec = createLz4FrameDecoder();
  src.on('error', (e) => dec.destroy(e));
  src.pipe(dec);
  for await (const c of dec) yield c as Buffer;
}

/**
 * Calls `onMarker(seq, ts)` for each writer transaction whose marker appears for the first time
 * in this segment, in order. The segment's decoded bytes are WAL frames (after the 32-byte WAL
 * header when the segment starts at offset 0). Each single-row INSERT rewrites the table's
 * rightmost leaf page, whose last cell (the cell pointer array is in rowid order) is the row just
 * inserted: so reading the marker of each frame's last cell finds every transaction's first
 * occurrence without scanning the page bytes. Frames of other pages (interior pages, the schema,
 * Litestream's _litestream_seq table, a leaf left behind by a split) have no newer marker there.
 */
async function scanFile(
  seg: { file: string; offset: number },
  pageSizes: Map<string, number>,
  key: string,
  state: { maxSeq: number; since: number; until: number; rejected: number },
  onMarker: (seq: number, ts: number) => void,
): Promise<number> {
  let bytes = 0;
  let needHeader = seg.offset === 0;
  let pageSize = pageSizes.get(key) ?? 4096;
  const frame = (buf: Buffer, o: number): void => {
    if (buf[o] !== 0x0d) return; // not a table b-tree leaf
    const n = buf.readUInt16BE(o + 3);
    if (n === 0) return;
    const ptr = buf.readUInt16BE(o + 8 + 2 * (n - 1));
    if (ptr < 8 || ptr + 40 > pageSize) return;
    const c = o + ptr;
    for (let j = c; j < c + 24; j++) {
      if (buf[j] !== 0x57 || buf[j + 1] !== 0x53 || buf[j + 2] !== 0x42 || buf[j + 3] !== 0x4d) continue; // "WSBM"
      const seq = buf.readUInt32LE(j + 4);
      if (seq <= state.maxSeq || seq >= state.maxSeq + 10_000_000) return;
      const ts = buf.readDoubleLE(j + 8);
      if (ts > state.since && ts < state.until) {
        state.maxSeq = seq;
        onMarker(seq, ts);
      } else state.rejected++;
      return;
    }
  };
  // frames are processed in place; only a frame split across two chunks is copied
  let partial: Buffer | undefined; // a frame's first bytes (or the WAL header's)
  let partialLen = 0;
  for await (const chunk of decode(seg.file)) {
    bytes += chunk.length;
    let p = 0;
    if (needHeader) {
      partial ??= Buffer.alloc(32);
      const n = Math.min(32 - partialLen, chunk.length);
      chunk.copy(partial, partialLen, 0, n);
      partialLen += n;
      p = n;
      if (partialLen < 32) continue;
      const ps = partial.readUInt32BE(8);
      pageSize = ps === 1 ? 65536 : ps || 4096;
      pageSizes.set(key, pageSize);
      needHeader = false;
      partial = undefined;
      partialLen = 0;
    }
    const fs = 24 + pageSize;
    if (partialLen > 0) {
      const n = Math.min(fs - partialLen, chunk.length - p);
      chunk.copy(partial!, partialLen, p, p + n);
      partialLen += n;
      p += n;
      if (partialLen < fs) continue;
      frame(partial!, 24);
      partialLen = 0;
    }
    for (; p + fs <= chunk.length; p += fs) frame(chunk, p + 24);
    if (p < chunk.length) {
      if (!partial || partial.length !== fs) partial = Buffer.alloc(fs);
      chunk.copy(partial, 0, p);
      partialLen = chunk.length - p;
    }
  }
  return bytes;
}

export interface ReplicaLag {
  /** per-transaction commit → visible on the replica (first-seen time of the segment holding it) */
  txLag: Dist;
  txLagFirstHalf: Dist;
  txLagSecondHalf: Dist;
  /** transactions found in the replica's WAL segments */
  txFound: number;
  /** replica complete (last transaction visible) this long after the writer stopped */
  drainMs: number;
  drainOk: boolean;
  segments: number;
  generations: number;
  walBytesDecoded: number;
  scanMs: number;
  rejectedMarkers: number;
  pollMs: number;
}

/**
 * After the writer stopped: polls until the writer's last transaction (`lastSeq`, started at
 * `lastTs`) is in a segment on the replica, or `capMs` passed. Only segments seen at or after
 * `lastTs` can hold it (a segment is seen after everything in it was committed). Returns the
 * first-seen time of that segment.
 */
export async function waitReplicaComplete(
  w: ReplicaWatcher,
  lastSeq: number,
  lastTs: number,
  capMs: number,
  since: number,
): Promise<{ ok: boolean; at?: number }> {
  if (lastSeq < 0) return { ok: true, at: lastTs };
  const deadline = now() + capMs;
  const checked = new Set<string>();
  const pageSizes = new Map<string, number>();
  for (;;) {
    w.poll();
    for (const s of w.segments()) {
      if (s.seenAt < lastTs || checked.has(s.file)) continue;
      checked.add(s.file);
      let found = false;
      const state = { maxSeq: lastSeq - 1, since, until: now() + 1000, rejected: 0 };
      try {
        await scanFile(s, pageSizes, `${s.gen}/${s.index}`, state, (seq) => {
          if (seq === lastSeq) found = true;
        });
      } catch {
        checked.delete(s.file); // e.g. removed by retention meanwhile; try again
        continue;
      }
      if (found) return { ok: true, at: s.seenAt };
    }
    if (now() > deadline) return { ok: false };
    await sleep(50);
  }
}

/** Decodes every segment the watcher saw and computes the per-transaction lag. */
export async function replicaLag(
  w: ReplicaWatcher,
  o: { since: number; writerEndedAt: number; completeAt?: number; completeOk: boolean },
): Promise<ReplicaLag> {
  const t0 = now();
  const durable: { ts: number; lag: number }[] = [];
  const state = { maxSeq: -1, since: o.since, until: now() + 1000, rejected: 0 };
  let bytes = 0;
  const segs = w.segments();
  const pageSizes = new Map<string, number>();
  for (const s of segs) {
    try {
      bytes += await scanFile(s, pageSizes, `${s.gen}/${s.index}`, state, (_seq, ts) => durable.push({ ts, lag: s.seenAt - ts }));
    } catch {
      // a segment removed since (walship/Litestream retention): its transactions count as not found
    }
  }
  const lags = durable.map((d) => d.lag);
  const tsMid = durable.length ? (durable[0]!.ts + durable[durable.length - 1]!.ts) / 2 : 0;
  return {
    txLag: dist(lags),
    txLagFirstHalf: dist(durable.filter((d) => d.ts < tsMid).map((d) => d.lag)),
    txLagSecondHalf: dist(durable.filter((d) => d.ts >= tsMid).map((d) => d.lag)),
    txFound: durable.length,
    drainMs: o.completeAt !== undefined ? Math.max(0, o.completeAt - o.writerEndedAt) : NaN,
    drainOk: o.completeOk,
    segments: segs.length,
    generations: w.generations,
    walBytesDecoded: bytes,
    scanMs: now() - t0,
    rejectedMarkers: state.rejected,
    pollMs: w.intervalMs,
  };
}

/** Samples the size of `<db>-wal` (stat) every `everyMs`; the same for both tools. */
export function walSizeSampler(db: string, everyMs = 50): { stop(): { maxBytes: number; endBytes: number; samples: number } } {
  let max = 0;
  let last = 0;
  let n = 0;
  const read = (): void => {
    try {
      last = statSync(`${db}-wal`).size;
      n++;
      if (last > max) max = last;
    } catch {}
  };
  read();
  const t = setInterval(read, everyMs);
  return {
    stop() {
      read();
      clearInterval(t);
      return { maxBytes: max, endBytes: last, samples: n };
    },
  };
}
