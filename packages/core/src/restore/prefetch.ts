import { addAbortSignal, type Readable } from 'node:stream';
import type { Logger } from '../logger.js';
import { formatPos } from '../pos.js';
import type { ReplicaClient, WALSegmentInfo } from '../replica-client.js';
import { resumableObject } from './retry.js';

/** Stored bytes buffered by all prefetched segments together (split evenly among them). */
const PREFETCH_BUDGET_BYTES = 32 * 1024 * 1024;

/** The buffered stored bytes of one segment, filled by a producer and drained by the consumer. */
class SegmentBuffer {
  readonly chunks: Buffer[] = [];
  bytes = 0;
  done = false;
  error: unknown;
  private wakeConsumer: (() => void) | undefined;
  private wakeProducer: (() => void) | undefined;

  constructor(readonly cap: number) {}

  async push(chunk: Buffer, signal: AbortSignal): Promise<void> {
    this.chunks.push(chunk);
    this.bytes += chunk.length;
    this.notifyConsumer();
    while (this.bytes >= this.cap && !signal.aborted) {
      await new Promise<void>((resolve) => {
        this.wakeProducer = resolve;
      });
    }
  }

  finish(error?: unknown): void {
    this.done = true;
    if (error !== undefined) this.error = error;
    this.notifyConsumer();
  }

  notifyConsumer(): void {
    const w = this.wakeConsumer;
    this.wakeConsumer = undefined;
    w?.();
  }

  notifyProducer(): void {
    const w = this.wakeProducer;
    this.wakeProducer = undefined;
    w?.();
  }

  async *drain(): AsyncGenerator<Buffer, void, undefined> {
    for (;;) {
      const chunk = this.chunks.shift();
      if (chunk) {
        this.bytes -= chunk.length;
        this.notifyProducer();
        yield chunk;
        continue;
      }
      if (this.done) {
        if (this.error !== undefined) throw this.error;
        return;
      }
      await new Promise<void>((resolve) => {
        this.wakeConsumer = resolve;
      });
    }
  }
}

export interface PrefetcherOptions {
  client: ReplicaClient;
  segments: readonly WALSegmentInfo[];
  /** Downloads in flight / buffered at once (≥ 1). */
  parallelism: number;
  /** Per-segment buffer (default: 32 MiB / parallelism, at least 1 MiB). */
  bufferBytes?: number;
  signal?: AbortSignal;
  logger: Logger;
}

/**
 * Downloads WAL segments ahead of the consumer: up to `parallelism` segments at once, each
 * buffered up to `bufferBytes` of stored bytes (larger objects pause until the consumer gets to
 * them), with retries and resume on transient errors. Segments must be taken in order with
 * {@link take} (in order, or out of order within the window). Memory is bounded by `parallelism × bufferBytes` plus one chunk each.
 */
export class SegmentPrefetcher {
  private readonly buffers: Array<SegmentBuffer | undefined>;
  private readonly taken: boolean[];
  private readonly finished: boolean[];
  private next = 0;
  private head = 0;
  private readonly ac = new AbortController();
  private readonly cap: number;
  private readonly onParentAbort = () => this.ac.abort(this.opts.signal?.reason);

  constructor(private readonly opts: PrefetcherOptions) {
    this.buffers = new Array(opts.segments.length);
    this.taken = new Array<boolean>(opts.segments.length).fill(false);
    this.finished = new Array<boolean>(opts.segments.length).fill(false);
    this.cap = opts.bufferBytes ?? Math.max(1024 * 1024, Math.floor(PREFETCH_BUDGET_BYTES / opts.parallelism));
    if (opts.signal) {
      if (opts.signal.aborted) this.ac.abort(opts.signal.reason);
      else opts.signal.addEventListener('abort', this.onParentAbort, { once: true });
    }
    this.fill();
  }

  private fill(): void {
    while (this.next < this.opts.segments.length && this.next < this.head + this.opts.parallelism && !this.ac.signal.aborted) {
      const i = this.next++;
      const buf = new SegmentBuffer(this.cap);
      this.buffers[i] = buf;
      void this.produce(this.opts.segments[i]!, buf);
    }
  }

  private async produce(seg: WALSegmentInfo, buf: SegmentBuffer): Promise<void> {
    const signal = this.ac.signal;
    const pos = { generation: seg.generation, index: seg.index, offset: seg.offset };
    try {
      const source = resumableObject(
        async () => {
          const s = await this.opts.client.walSegmentReader(pos);
          return addAbortSignal(signal, s) as Readable;
        },
        {
          signal,
          onRetry: (err, attempt) =>
            this.opts.logger.warn('wal segment download failed, retrying', { position: formatPos(pos), attempt, error: String(err) }),
        },
      );
      for await (const chunk of source) {
        if (signal.aborted) break;
        await buf.push(chunk, signal);
      }
      buf.finish();
    } catch (err) {
      buf.finish(err);
    }
  }

  /**
   * Stored bytes of segment `i`. Segments may be taken out of order within the window of
   * started downloads (`i` below the first unfinished segment + `parallelism`); the window
   * moves when the lowest unfinished segment has been taken to its end (or abandoned).
   */
  take(i: number): AsyncGenerator<Buffer, void, undefined> {
    const buf = this.buffers[i];
    if (!buf || this.taken[i]) throw new Error(`segment ${i} is not available (window starts at ${this.head})`);
    this.taken[i] = true;
    const self = this;
    return (async function* () {
      try {
        yield* buf.drain();
      } finally {
        self.buffers[i] = undefined;
        self.finished[i] = true;
        while (self.head < self.finished.length && self.finished[self.head]) self.head++;
        self.fill();
      }
    })();
  }

  /** True when segment `i` has been started and not yet taken. */
  ready(i: number): boolean {
    return this.buffers[i] !== undefined && !this.taken[i];
  }

  /** Stops every download. */
  close(): void {
    this.opts.signal?.removeEventListener('abort', this.onParentAbort);
    if (!this.ac.signal.aborted) this.ac.abort();
    for (const b of this.buffers) b?.notifyProducer();
  }
}
