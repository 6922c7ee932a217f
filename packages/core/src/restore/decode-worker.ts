/**
 * Decode worker (worker_threads): decodes one stored WAL segment at a time with walship's LZ4
 * frame decoder and verifies its frames with {@link SegmentVerifier}, so the restoring thread
 * only copies pages. Protocol (one job at a time):
 *
 *   main → worker  {t:'job', job, offset, pageSize, credit} · {t:'in', job, bufs, end} ·
 *                  {t:'ack', job, n} · {t:'cancel', job}
 *   worker → main  {t:'ready'} · {t:'need', job} · {t:'out', job, buf, badAt, bigEndian} ·
 *                  {t:'end', job} · {t:'err', job, message, corrupt}
 *
 * Input is pulled (`need`) in batches of about 1 MiB, so at most one batch waits here; output
 * stops when `credit` bytes are unacknowledged.
 */
import { parentPort } from 'node:worker_threads';
import type { Transform } from 'node:stream';
import { CorruptDataError } from '../errors.js';
import { lz4Stage } from '../pipeline.js';
import { SegmentVerifier } from './segment-verifier.js';

export type ToWorker =
  | { t: 'job'; job: number; offset: number; pageSize: number; credit: number }
  | { t: 'in'; job: number; bufs: Uint8Array[]; end: boolean }
  | { t: 'ack'; job: number; n: number }
  | { t: 'cancel'; job: number };

export type FromWorker =
  | { t: 'ready' }
  | { t: 'need'; job: number }
  | { t: 'out'; job: number; buf: Uint8Array; badAt: number; bigEndian: boolean | undefined }
  | { t: 'end'; job: number }
  | { t: 'err'; job: number; message: string; corrupt: boolean };

const port = parentPort;

class Job {
  private readonly decoder: Transform;
  private readonly verifier: SegmentVerifier;
  private outstanding = 0;
  private paused = false;
  /** Stored input not yet written to the decoder. */
  private readonly queue: Buffer[] = [];
  private queued = 0;
  private requested = false;
  private inputEnded = false;
  private blocked = false;
  private endedDecoder = false;
  private reportedBad = false;
  private done = false;

  constructor(
    readonly id: number,
    offset: number,
    pageSize: number,
    private readonly credit: number,
  ) {
    this.verifier = new SegmentVerifier(offset, pageSize);
    this.decoder = lz4Stage.decoder();
    this.decoder.on('data', (chunk: Buffer) => this.out(chunk));
    this.decoder.on('end', () => this.finish({ t: 'end', job: this.id }));
    this.decoder.on('error', (err: unknown) =>
      this.finish({
        t: 'err',
        job: this.id,
        message: err instanceof Error ? err.message : String(err),
        corrupt: err instanceof CorruptDataError,
      }),
    );
    this.maybeRequest();
  }

  private post(m: FromWorker, transfer?: ArrayBuffer[]): void {
    port!.postMessage(m, transfer ?? []);
  }

  private finish(m: FromWorker): void {
    if (this.done) return;
    this.done = true;
    this.post(m);
    if (current === this) current = undefined;
  }

  private out(chunk: Buffer): void {
    if (this.done) return;
    const copy = Buffer.allocUnsafeSlow(chunk.length);
    chunk.copy(copy);
    this.verifier.feed(copy);
    let badAt = -1;
    if (this.verifier.badAt >= 0 && !this.reportedBad) {
      badAt = this.verifier.badAt;
      this.reportedBad = true;
    }
    this.post({ t: 'out', job: this.id, buf: copy, badAt, bigEndian: this.verifier.bigEndian }, [copy.buffer as ArrayBuffer]);
    this.outstanding += copy.length;
    if (this.outstanding >= this.credit && !this.paused) {
      this.paused = true;
      this.decoder.pause();
    }
  }

  input(bufs: Uint8Array[], end: boolean): void {
    if (this.done) return;
    this.requested = false;
    for (const b of bufs) {
      this.queue.push(Buffer.from(b.buffer, b.byteOffset, b.byteLength));
      this.queued += b.byteLength;
    }
    if (end) this.inputEnded = true;
    this.pump();
  }

  /** Writes queued input to the decoder until it pushes back; ends it after the last input. */
  private pump(): void {
    while (!this.done && !this.blocked && this.queue.length > 0) {
      const b = this.queue.shift()!;
      this.queued -= b.length;
      if (!this.decoder.write(b)) {
        this.blocked = true;
        this.decoder.once('drain', () => {
          this.blocked = false;
          this.pump();
        });
      }
    }
    if (!this.done && this.queue.length === 0 && this.inputEnded && !this.blocked) {
      if (!this.endedDecoder) {
        this.endedDecoder = true;
        this.decoder.end();
      }
      return;
    }
    this.maybeRequest();
  }

  /** Asks for the next input batch while less than two batches are queued here. */
  private maybeRequest(): void {
    if (this.done || this.requested || this.inputEnded || this.queued >= 2 * 1024 * 1024) return;
    this.requested = true;
    this.post({ t: 'need', job: this.id });
  }

  ack(n: number): void {
    this.outstanding -= n;
    if (this.paused && this.outstanding < this.credit) {
      this.paused = false;
      this.decoder.resume();
    }
  }

  cancel(): void {
    this.done = true;
    this.decoder.destroy();
  }
}

let current: Job | undefined;

if (port) {
  port.on('message', (m: ToWorker) => {
    switch (m.t) {
      case 'job':
        current?.cancel();
        current = new Job(m.job, m.offset, m.pageSize, m.credit);
        break;
      case 'in':
        if (current?.id === m.job) current.input(m.bufs, m.end);
        break;
      case 'ack':
        if (current?.id === m.job) current.ack(m.n);
        break;
      case 'cancel':
        if (current?.id === m.job) {
          current.cancel();
          current = undefined;
        }
        break;
    }
  });
  port.postMessage({ t: 'ready' } satisfies FromWorker);
}
