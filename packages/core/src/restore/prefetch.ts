import { addAbortSignal, type Readable } from 'node:stream';
import type { Logger } from '../logger.js';
import { formatPos } from '../pos.js';
import type { ReplicaClient, WALSegmentInfo } from '../replica-client.js';
import { resumableObject } from './retry.js';

/** Stored bytes buffered per prefetched segment before its download pauses. */
export const DEFAULT_SEGMENT_BUFFER_BYTES = 8 * 1024 * 1024;

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
  bufferBytes?: number;
  signal?: AbortSignal;
  logger: Logger;
}

/**
 * Downloads WAL segments ahead of the consumer: up to `parallelism` segments at once, each
 * buffered up to `bufferBytes` of stored bytes (larger objects pause until the consumer gets to
 * them), with retries and resume on transient errors. Segments must be taken in order with
 * {@link take}. Memory is bounded by `parallelism × bufferBytes` plus one chunk each.
 */
export class SegmentPrefetcher {
  private readonly buffers: Array<SegmentBuffer | undefined>;
  private next = 0;
  private head = 0;
  private readonly ac = new AbortController();
  private readonly cap: number;
  private readonly onParentAbort = () => this.ac.abort(this.opts.signal?.reason);

  constructor(private readonly opts: PrefetcherOptions) {
    this.buffers = new Array(opts.segments.length);
    this.cap = opts.bufferBytes ?? DEFAULT_SEGMENT_BUFFER_BYTES;
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
            this.opts.logger.warn('wal segment download failed, retrying', { pos: formatPos(pos), attempt, error: String(err) }),
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

  /** Stored bytes of segment `i` (must be the next one in order). */
  take(i: number): AsyncGenerator<Buffer, void, undefined> {
    if (i !== this.head) throw new Error(`segments must be taken in order (expected ${this.head}, got ${i})`);
    const buf = this.buffers[i];
    if (!buf) throw new Error(`segment ${i} was not started`);
    const self = this;
    return (async function* () {
      try {
        yield* buf.drain();
      } finally {
        self.buffers[i] = undefined;
        self.head = i + 1;
        self.fill();
      }
    })();
  }

  /** Stops every download. */
  close(): void {
    this.opts.signal?.removeEventListener('abort', this.onParentAbort);
    if (!this.ac.signal.aborted) this.ac.abort();
    for (const b of this.buffers) b?.notifyProducer();
  }
}
