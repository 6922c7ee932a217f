import type { Worker } from 'node:worker_threads';
import { CorruptDataError } from '../errors.js';
import type { Logger } from '../logger.js';
import type { FromWorker, ToWorker } from './decode-worker.js';
import type { SegmentPrefetcher } from './prefetch.js';
import { spawnWorker } from '../util/spawn-worker.js';

/** Decoded bytes of a segment, with what the worker's verifier found. */
export interface DecodedChunk {
  readonly buf: Buffer;
  /** Index offset of the first frame that failed verification in the worker, or −1. */
  readonly badAt: number;
  /** Checksum byte order the worker verified with (undefined when it verified nothing yet). */
  readonly bigEndian: boolean | undefined;
}

/** Unacknowledged decoded bytes per segment before its worker pauses. */
const DEFAULT_CREDIT = 4 * 1024 * 1024;
/** Stored bytes sent to a worker per request. */
const INPUT_BATCH_BYTES = 1024 * 1024;

/**
 * Default number of decode workers: none. Measured on 2 cores (226 MB of WAL): main thread
 * 150–159 MB/s at 165 MB peak RSS; one worker 180 MB/s at ~210 MB; two 164–186 MB/s at ~275 MB
 * (each worker adds ~50 MB of RSS: an isolate, decoder buffers, transferred chunks), and under
 * CPU contention workers were slower. Enable with `RestoreInternals.workers`.
 */
export function defaultWorkerCount(): number {
  return 0;
}

function createWorker(): Worker {
  return spawnWorker('./decode-worker', import.meta.url);
}

interface SegState {
  readonly i: number;
  readonly offset: number;
  readonly chunks: DecodedChunk[];
  done: boolean;
  error: unknown;
  wake: (() => void) | undefined;
  slot: Slot | undefined;
  job: number;
  source: AsyncGenerator<Buffer, void, undefined> | undefined;
  storedBytes: number;
  consumed: boolean;
}

interface Slot {
  readonly worker: Worker;
  seg: SegState | undefined;
}

export interface WorkerPipelineOptions {
  prefetcher: SegmentPrefetcher;
  /** Segment offsets (within their index), in apply order. */
  offsets: readonly number[];
  workers: number;
  credit?: number;
  logger: Logger;
  /** Stored bytes pulled from the prefetcher for segment `i`. */
  onStoredBytes?: (i: number, n: number) => void;
}

/**
 * Decodes WAL segments in worker threads, a few segments ahead of the consumer, each worker
 * also verifying its segment's checksum chain ({@link SegmentVerifier}). Segments are consumed
 * in order with {@link take}. Memory: `(workers + 1) × credit` decoded bytes at most, plus the
 * prefetcher's stored bytes.
 */
export class WorkerDecodePipeline {
  private readonly slots: Slot[];
  private readonly segs: Array<SegState | undefined>;
  private nextAssign = 0;
  private consumerAt = 0;
  private nextJob = 1;
  private pageSize = 0;
  private closed = false;
  private broken: unknown;
  private readonly credit: number;

  private constructor(
    workers: Worker[],
    private readonly opts: WorkerPipelineOptions,
  ) {
    this.credit = opts.credit ?? DEFAULT_CREDIT;
    this.slots = workers.map((worker) => ({ worker, seg: undefined }));
    this.segs = new Array(opts.offsets.length);
    for (const slot of this.slots) {
      slot.worker.on('message', (m: FromWorker) => this.onMessage(slot, m));
      slot.worker.on('error', (err) => this.fail(new Error(`restore decode worker failed: ${err.message}`, { cause: err })));
      slot.worker.on('exit', (code) => {
        if (!this.closed) this.fail(new Error(`restore decode worker exited with code ${code}`));
      });
    }
  }

  /**
   * Starts `opts.workers` workers and waits until they are ready. Resolves undefined (after a
   * warning) when workers cannot be started here; the caller then decodes on its own thread.
   */
  static async start(opts: WorkerPipelineOptions): Promise<WorkerDecodePipeline | undefined> {
    const workers: Worker[] = [];
    try {
      for (let i = 0; i < opts.workers; i++) workers.push(createWorker());
      await Promise.all(
        workers.map(
          (w) =>
            new Promise<void>((resolve, reject) => {
              const onMsg = (m: FromWorker) => {
                if (m.t === 'ready') {
                  w.off('message', onMsg);
                  w.off('error', reject);
                  resolve();
                }
              };
              w.on('message', onMsg);
              w.once('error', reject);
              w.once('exit', (code) => reject(new Error(`worker exited with code ${code}`)));
            }),
        ),
      );
    } catch (err) {
      opts.logger.warn('cannot start restore decode workers, decoding on the main thread', { error: String(err) });
      await Promise.all(workers.map((w) => w.terminate().catch(() => 0)));
      return undefined;
    }
    for (const w of workers) w.removeAllListeners('exit');
    return new WorkerDecodePipeline(workers, opts);
  }

  /** Page size of the database; jobs start once it is set. */
  begin(pageSize: number): void {
    this.pageSize = pageSize;
    this.assign();
  }

  private post(slot: Slot, m: ToWorker): void {
    slot.worker.postMessage(m);
  }

  private assign(): void {
    if (this.closed || this.broken !== undefined || this.pageSize === 0) return;
    for (const slot of this.slots) {
      if (slot.seg) continue;
      const i = this.nextAssign;
      if (i >= this.opts.offsets.length || i > this.consumerAt + this.slots.length) return;
      if (!this.opts.prefetcher.ready(i)) return;
      this.nextAssign++;
      const seg: SegState = {
        i,
        offset: this.opts.offsets[i]!,
        chunks: [],
        done: false,
        error: undefined,
        wake: undefined,
        slot,
        job: this.nextJob++,
        source: undefined,
        storedBytes: 0,
        consumed: false,
      };
      this.segs[i] = seg;
      slot.seg = seg;
      this.post(slot, { t: 'job', job: seg.job, offset: seg.offset, pageSize: this.pageSize, credit: this.credit });
    }
  }

  private onMessage(slot: Slot, m: FromWorker): void {
    const seg = slot.seg;
    if (m.t === 'ready' || !seg || m.job !== seg.job) return;
    switch (m.t) {
      case 'need':
        void this.feed(slot, seg);
        break;
      case 'out':
        seg.chunks.push({ buf: Buffer.from(m.buf.buffer, m.buf.byteOffset, m.buf.byteLength), badAt: m.badAt, bigEndian: m.bigEndian });
        this.wakeSeg(seg);
        break;
      case 'end':
        this.release(slot, seg);
        seg.done = true;
        this.wakeSeg(seg);
        this.assign();
        break;
      case 'err':
        this.release(slot, seg);
        seg.done = true;
        seg.error = m.corrupt ? new CorruptDataError(m.message) : new Error(m.message);
        this.wakeSeg(seg);
        this.assign();
        break;
    }
  }

  private release(slot: Slot, seg: SegState): void {
    if (slot.seg === seg) slot.seg = undefined;
    seg.slot = undefined;
    void seg.source?.return(undefined);
    seg.source = undefined;
  }

  private async feed(slot: Slot, seg: SegState): Promise<void> {
    try {
      seg.source ??= this.opts.prefetcher.take(seg.i);
      const bufs: Uint8Array[] = [];
      let bytes = 0;
      let end = false;
      while (bytes < INPUT_BATCH_BYTES) {
        const r = await seg.source.next();
        if (slot.seg !== seg || this.closed) return;
        if (r.done) {
          end = true;
          break;
        }
        bufs.push(r.value);
        bytes += r.value.length;
        seg.storedBytes += r.value.length;
        this.opts.onStoredBytes?.(seg.i, r.value.length);
      }
      this.post(slot, { t: 'in', job: seg.job, bufs, end });
    } catch (err) {
      if (slot.seg !== seg) return;
      this.post(slot, { t: 'cancel', job: seg.job });
      this.release(slot, seg);
      seg.done = true;
      seg.error = err;
      this.wakeSeg(seg);
      this.assign();
    }
  }

  private wakeSeg(seg: SegState): void {
    const w = seg.wake;
    seg.wake = undefined;
    w?.();
  }

  private fail(err: unknown): void {
    if (this.broken !== undefined) return;
    this.broken = err;
    for (const seg of this.segs) {
      if (seg && !seg.done) {
        seg.done = true;
        seg.error = err;
        this.wakeSeg(seg);
      }
    }
  }

  /** Stored bytes read so far for segment `i`. */
  storedBytes(i: number): number {
    return this.segs[i]?.storedBytes ?? 0;
  }

  /** Decoded chunks of segment `i`; segments must be taken in order. */
  async *take(i: number): AsyncGenerator<DecodedChunk, void, undefined> {
    this.consumerAt = i;
    this.assign();
    let seg = this.segs[i];
    try {
      for (;;) {
        if (this.broken !== undefined) throw this.broken;
        seg = this.segs[i];
        if (!seg) {
          // Not assigned yet (workers busy or its download not started): wait for a change.
          await new Promise<void>((resolve) => setTimeout(resolve, 1));
          this.assign();
          continue;
        }
        const chunk = seg.chunks.shift();
        if (chunk) {
          const slot = seg.slot;
          yield chunk;
          if (slot && slot.seg === seg) this.post(slot, { t: 'ack', job: seg.job, n: chunk.buf.length });
          continue;
        }
        if (seg.done) {
          if (seg.error !== undefined) throw seg.error;
          return;
        }
        await new Promise<void>((resolve) => {
          seg!.wake = resolve;
        });
      }
    } finally {
      if (seg) {
        seg.consumed = true;
        seg.chunks.length = 0;
        if (seg.slot) {
          this.post(seg.slot, { t: 'cancel', job: seg.job });
          this.release(seg.slot, seg);
        }
        this.segs[i] = undefined;
      }
      this.consumerAt = i + 1;
      this.assign();
    }
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    for (const seg of this.segs) if (seg?.source) void seg.source.return(undefined);
    await Promise.all(this.slots.map((s) => s.worker.terminate().catch(() => 0)));
  }
}
