/**
 * Fault injection around a real replica client (not a storage mock): reads go to the real
 * client, and chosen calls fail the way a network backend can (at open, or mid-stream).
 */
import { PassThrough, Readable } from 'node:stream';
import { BackendError, NotFoundError } from '../../src/errors.js';
import type { Pos } from '../../src/pos.js';
import type { ReplicaClient, SnapshotInfo, WALSegmentInfo, WalSegmentsOptions } from '../../src/replica-client.js';

export interface Faults {
  /** Fail the first N opens of every object with a retryable BackendError. */
  failOpens?: number;
  /** Break the stream of every object once, after this many bytes (retryable). */
  breakAfterBytes?: number;
  /** Snapshot indexes whose reader throws NotFoundError (vanished after listing). */
  missingSnapshots?: number[];
  /** Fail every open with a non-retryable BackendError. */
  permanent?: boolean;
  /** WAL segments for which this returns true are served with one stored byte flipped (mid-object). */
  corruptWal?: (pos: Pos) => boolean;
  /** WAL segments for which this returns true are left out of listings (not uploaded yet, as far as the reader knows). */
  hideWal?: (segment: WALSegmentInfo) => boolean;
}

export class FaultyClient implements ReplicaClient {
  readonly type: string;
  readonly opens = new Map<string, number>();
  readonly broken = new Set<string>();

  constructor(
    private readonly inner: ReplicaClient,
    private readonly faults: Faults,
  ) {
    this.type = inner.type;
  }

  generations(): Promise<string[]> {
    return this.inner.generations();
  }
  deleteGeneration(g: string): Promise<void> {
    return this.inner.deleteGeneration(g);
  }
  snapshots(g: string): Promise<SnapshotInfo[]> {
    return this.inner.snapshots(g);
  }
  writeSnapshot(g: string, i: number, body: Readable): Promise<SnapshotInfo> {
    return this.inner.writeSnapshot(g, i, body);
  }
  deleteSnapshot(g: string, i: number): Promise<void> {
    return this.inner.deleteSnapshot(g, i);
  }
  async walSegments(g: string, options?: WalSegmentsOptions): Promise<WALSegmentInfo[]> {
    const all = await this.inner.walSegments(g, options);
    const hide = this.faults.hideWal;
    return hide ? all.filter((s) => !hide(s)) : all;
  }
  writeWALSegment(pos: Pos, body: Readable): Promise<WALSegmentInfo> {
    return this.inner.writeWALSegment(pos, body);
  }
  deleteWALSegments(p: readonly Pos[]): Promise<void> {
    return this.inner.deleteWALSegments(p);
  }

  async snapshotReader(g: string, i: number): Promise<Readable> {
    if (this.faults.missingSnapshots?.includes(i)) throw new NotFoundError(`snapshot ${g}/${i} not found`);
    return this.wrap(`s:${g}:${i}`, () => this.inner.snapshotReader(g, i));
  }

  async walSegmentReader(pos: Pos): Promise<Readable> {
    if (this.faults.corruptWal?.(pos)) {
      const chunks: Buffer[] = [];
      for await (const c of await this.inner.walSegmentReader(pos)) chunks.push(c as Buffer);
      const buf = Buffer.concat(chunks);
      const mid = Math.floor(buf.length / 2);
      buf[mid] = buf[mid]! ^ 0xff;
      return Readable.from([buf]);
    }
    return this.wrap(`w:${pos.generation}:${pos.index}:${pos.offset}`, () => this.inner.walSegmentReader(pos));
  }

  private async wrap(key: string, open: () => Promise<Readable>): Promise<Readable> {
    const n = (this.opens.get(key) ?? 0) + 1;
    this.opens.set(key, n);
    if (this.faults.permanent) throw new BackendError(`access denied: ${key}`, { retryable: false });
    if (this.faults.failOpens && n <= this.faults.failOpens) throw new BackendError(`connection reset opening ${key}`, { retryable: true });
    const src = await open();
    const limit = this.faults.breakAfterBytes;
    if (limit === undefined || this.broken.has(key)) return src;
    this.broken.add(key);
    const out = new PassThrough();
    let seen = 0;
    src.on('data', (chunk: Buffer) => {
      if (out.destroyed) return;
      if (seen + chunk.length > limit) {
        out.write(chunk.subarray(0, Math.max(0, limit - seen)));
        src.destroy();
        out.destroy(new BackendError(`socket hang up reading ${key}`, { retryable: true }));
        return;
      }
      seen += chunk.length;
      out.write(chunk);
    });
    src.on('end', () => out.end());
    src.on('error', (e) => out.destroy(e));
    return out;
  }
}
