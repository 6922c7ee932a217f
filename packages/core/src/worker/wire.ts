import { Readable } from 'node:stream';
import { chunkRecycler } from '../pipeline.js';
import { CHUNK_RECYCLER } from '../lz4/index.js';
import {
  AgeError,
  BackendError,
  ClosedError,
  ConfigError,
  CorruptDataError,
  EngineWorkerError,
  InvalidArgumentError,
  LeaseError,
  LockedError,
  NotFoundError,
  WalshipError,
  type WalshipErrorCode,
} from '../errors.js';

/** The two ends a wire runs over: a `Worker` on the application's side, `parentPort` in the worker. */
export interface WirePort {
  postMessage(value: unknown, transfer?: readonly ArrayBuffer[]): void;
  on(event: 'message', fn: (msg: unknown) => void): unknown;
}

/** An error as it crosses the thread boundary (classes and own fields do not survive cloning). */
export interface WireError {
  readonly name: string;
  readonly message: string;
  readonly code?: string;
  readonly retryable?: boolean;
  readonly errno?: number;
  readonly syscall?: string;
  readonly path?: string;
  readonly stack?: string;
  /** The error's `cause`, when it is an error too (a few levels deep). */
  readonly cause?: WireError;
}

/** Bytes a stream sender may have in flight before the receiver grants more. */
const STREAM_WINDOW = 4 * 1024 * 1024;

type Msg =
  | { w: 'req'; id: number; kind: string; args: unknown }
  | { w: 'res'; id: number; ok: true; value: unknown }
  | { w: 'res'; id: number; ok: false; error: WireError }
  | { w: 'note'; kind: string; args: unknown }
  | { w: 'chunk'; sid: number; buf: Uint8Array }
  | { w: 'end'; sid: number }
  | { w: 'serr'; sid: number; error: WireError }
  | { w: 'credit'; sid: number; n: number }
  | { w: 'cancel'; sid: number }
  | { w: 'back'; sid: number; buf: ArrayBuffer }
  | { w: 'recycle'; sid: number };

/** A handle naming a stream that the other side pumps over the wire (see `Wire.sendStream`). */
export interface StreamRef {
  readonly $stream: number;
}

interface Outgoing {
  readonly source: Readable;
  inflight: number;
  wake: (() => void) | undefined;
  cancelled: boolean;
  release?: ((chunk: Uint8Array) => void) | undefined;
  lent: number;
  /** The receiver's consumer returns buffers (it took up chunkRecycler): bound what is lent out. */
  recycled: boolean;
}

interface Incoming {
  readonly stream: Readable;
  readonly queue: Buffer[];
  wanted: boolean;
  ended: boolean;
}

/**
 * Requests, one-way notes and byte streams between the application's thread and the engine
 * worker, over one message port. Streams are flow-controlled: a sender stops after
 * `STREAM_WINDOW` unacknowledged bytes, and the receiver acknowledges what its reader
 * consumed, so a slow storage client bounds the memory of a snapshot of any size.
 */
export class Wire {
  readonly #port: WirePort;
  #nextId = 1;
  readonly #pending = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void }>();
  readonly #handlers = new Map<string, (args: unknown) => unknown>();
  readonly #notes = new Map<string, (args: unknown) => void>();
  readonly #out = new Map<number, Outgoing>();
  readonly #in = new Map<number, Incoming>();
  /** Stream ids: odd on the side that spawned the worker, even inside it, so they never clash. */
  #nextSid: number;
  #closed: Error | undefined;

  constructor(port: WirePort, side: 'app' | 'worker') {
    this.#port = port;
    this.#nextSid = side === 'app' ? 1 : 2;
    port.on('message', (m) => this.#receive(m as Msg));
  }

  /** Serves requests of `kind`; the handler's result (or thrown error) is the reply. */
  handle(kind: string, fn: (args: unknown) => unknown): void {
    this.#handlers.set(kind, fn);
  }

  /** Handles one-way notes of `kind`. */
  onNote(kind: string, fn: (args: unknown) => void): void {
    this.#notes.set(kind, fn);
  }

  request<T>(kind: string, args: unknown): Promise<T> {
    if (this.#closed) return Promise.reject(this.#closed);
    const id = this.#nextId++;
    return new Promise<T>((resolve, reject) => {
      this.#pending.set(id, { resolve: resolve as (v: unknown) => void, reject });
      this.#post({ w: 'req', id, kind, args });
    });
  }

  note(kind: string, args: unknown): void {
    if (!this.#closed) this.#post({ w: 'note', kind, args });
  }

  /** Starts pumping `source` to the other side, which opens it with `receiveStream(ref)`. */
  sendStream(source: Readable): StreamRef {
    const sid = this.#nextSid;
    this.#nextSid += 2;
    const o: Outgoing = { source, inflight: STREAM_WINDOW, wake: undefined, cancelled: false, lent: 0, recycled: false };
    this.#out.set(sid, o);
    void this.#pump(sid, o);
    return { $stream: sid };
  }

  /** The stream the other side sends under `ref`. Destroying it cancels the sender. */
  receiveStream(ref: StreamRef): Readable {
    const sid = ref.$stream;
    const entry: Incoming = {
      queue: [],
      wanted: false,
      ended: false,
      stream: new (class extends Readable {
        [CHUNK_RECYCLER]() {
          // Tell the sender its chunks come back, so it may bound how many it lends out.
          post({ w: 'recycle', sid });
          return (chunk: Uint8Array) => postBack(chunk.buffer as ArrayBuffer);
        }
      })({
        read: () => {
          entry.wanted = true;
          this.#drain(sid, entry);
        },
        destroy: (err, cb) => {
          if (this.#in.delete(sid) && !entry.ended) this.#post({ w: 'cancel', sid });
          cb(err);
        },
      }),
    };
    const post = (m: Msg, transfer?: ArrayBuffer[]) => this.#post(m, transfer);
    // Only buffers that crossed the wire are worth sending back (small ones are copies).
    const postBack = (ab: ArrayBuffer) => {
      if (ab.byteLength >= 65536) post({ w: 'back', sid, buf: ab }, [ab]);
    };
    this.#in.set(sid, entry);
    this.#post({ w: 'credit', sid, n: STREAM_WINDOW });
    return entry.stream;
  }

  /** Fails every pending request and stream (the other side is gone). */
  close(err: Error): void {
    if (this.#closed) return;
    this.#closed = err;
    for (const p of this.#pending.values()) p.reject(err);
    this.#pending.clear();
    for (const i of this.#in.values()) i.stream.destroy(err);
    this.#in.clear();
    for (const o of this.#out.values()) {
      o.cancelled = true;
      o.source.destroy();
      o.wake?.();
    }
    this.#out.clear();
  }

  #post(m: Msg, transfer?: ArrayBuffer[]): void {
    if (!this.#closed) this.#port.postMessage(m, transfer);
  }

  async #pump(sid: number, o: Outgoing): Promise<void> {
    // Nothing moves before the receiver opened the stream (its first credit): no chunk can
    // arrive before the other side knows the stream, and a stream never opened costs nothing.
    const room = async (): Promise<boolean> => {
      while ((o.inflight >= STREAM_WINDOW || (o.recycled && o.lent >= 2)) && !o.cancelled) await new Promise<void>((r) => (o.wake = r));
      return !o.cancelled;
    };
    try {
      if (!(await room())) return;
      o.release = chunkRecycler(o.source);
      for await (const chunk of o.source as AsyncIterable<Buffer | string>) {
        if (!(await room())) return;
        // With recycling the chunk's own ArrayBuffer moves (it is ours until released);
        // otherwise a copy the receiver owns (pooled Buffers share their ArrayBuffer).
        const buf =
          o.release && typeof chunk !== 'string'
            ? new Uint8Array(chunk.buffer, chunk.byteOffset, chunk.length)
            : new Uint8Array(typeof chunk === 'string' ? Buffer.from(chunk) : chunk);
        o.inflight += buf.byteLength;
        if (o.release && buf.buffer.byteLength >= 65536) o.lent++;
        this.#post({ w: 'chunk', sid, buf }, [buf.buffer as ArrayBuffer]);
      }
      if (!o.cancelled) this.#post({ w: 'end', sid });
    } catch (err) {
      if (!o.cancelled) this.#post({ w: 'serr', sid, error: toWireError(err) });
    } finally {
      this.#out.delete(sid);
    }
  }

  /** Stops a stream this side sends (e.g. its request failed before the other side opened it). */
  cancelStream(ref: StreamRef): void {
    const o = this.#out.get(ref.$stream);
    if (!o) return;
    o.cancelled = true;
    o.source.destroy();
    o.wake?.();
  }

  #drain(sid: number, entry: Incoming): void {
    let n = 0;
    while (entry.wanted && entry.queue.length > 0) {
      const b = entry.queue.shift()!;
      n += b.length;
      entry.wanted = entry.stream.push(b);
    }
    if (n > 0 && this.#in.has(sid)) this.#post({ w: 'credit', sid, n });
    if (entry.ended && entry.queue.length === 0) {
      this.#in.delete(sid);
      entry.stream.push(null);
    }
  }

  #receive(m: Msg): void {
    switch (m.w) {
      case 'req':
        void this.#serve(m.id, m.kind, m.args);
        return;
      case 'res': {
        const p = this.#pending.get(m.id);
        if (!p) return;
        this.#pending.delete(m.id);
        if (m.ok) p.resolve(m.value);
        else p.reject(fromWireError(m.error));
        return;
      }
      case 'note':
        this.#notes.get(m.kind)?.(m.args);
        return;
      case 'chunk': {
        const entry = this.#in.get(m.sid);
        if (!entry) return;
        entry.queue.push(Buffer.from(m.buf.buffer, m.buf.byteOffset, m.buf.byteLength));
        this.#drain(m.sid, entry);
        return;
      }
      case 'end': {
        const entry = this.#in.get(m.sid);
        if (!entry) return;
        entry.ended = true;
        this.#drain(m.sid, entry);
        return;
      }
      case 'serr': {
        const entry = this.#in.get(m.sid);
        if (!entry) return;
        this.#in.delete(m.sid);
        entry.stream.destroy(fromWireError(m.error));
        return;
      }
      case 'credit': {
        const o = this.#out.get(m.sid);
        if (!o) return;
        o.inflight -= m.n;
        o.wake?.();
        o.wake = undefined;
        return;
      }
      case 'recycle': {
        const o = this.#out.get(m.sid);
        if (o) o.recycled = true;
        return;
      }
      case 'back': {
        const o = this.#out.get(m.sid);
        if (!o) return;
        o.lent--;
        o.release?.(new Uint8Array(m.buf));
        o.wake?.();
        o.wake = undefined;
        return;
      }
      case 'cancel':
        this.cancelStream({ $stream: m.sid });
        return;
    }
  }

  async #serve(id: number, kind: string, args: unknown): Promise<void> {
    let reply: Msg;
    try {
      const fn = this.#handlers.get(kind);
      if (!fn) throw new WalshipError('WALSHIP_INTERNAL', `no handler for ${kind}`);
      reply = { w: 'res', id, ok: true, value: await fn(args) };
    } catch (err) {
      reply = { w: 'res', id, ok: false, error: toWireError(err) };
    }
    try {
      this.#post(reply);
    } catch (err) {
      // A value that cannot be cloned: reply with the reason instead.
      this.#post({ w: 'res', id, ok: false, error: toWireError(err) });
    }
  }
}

export function toWireError(err: unknown, depth = 0): WireError {
  if (!(err instanceof Error)) return { name: 'Error', message: String(err) };
  const e = err as Error & { code?: unknown; retryable?: unknown; errno?: unknown; syscall?: unknown; path?: unknown };
  return {
    name: e.name,
    message: e.message,
    ...(typeof e.code === 'string' ? { code: e.code } : {}),
    ...(typeof e.retryable === 'boolean' ? { retryable: e.retryable } : {}),
    ...(typeof e.errno === 'number' ? { errno: e.errno } : {}),
    ...(typeof e.syscall === 'string' ? { syscall: e.syscall } : {}),
    ...(typeof e.path === 'string' ? { path: e.path } : {}),
    ...(e.stack ? { stack: e.stack } : {}),
    ...(e.cause instanceof Error && depth < 3 ? { cause: toWireError(e.cause, depth + 1) } : {}),
  };
}

/** Rebuilds walship's error classes by code (so `instanceof` and `code` work on both sides). */
export function fromWireError(w: WireError): Error {
  let err: Error;
  switch (w.code) {
    case 'WALSHIP_NOT_FOUND':
      err = new NotFoundError(w.message);
      break;
    case 'WALSHIP_INVALID_ARGUMENT':
      err = new InvalidArgumentError(w.message);
      break;
    case 'WALSHIP_CONFIG':
      err = new ConfigError(w.message);
      break;
    case 'WALSHIP_CORRUPT':
      err = new CorruptDataError(w.message);
      break;
    case 'WALSHIP_BACKEND':
      err = new BackendError(w.message, { retryable: w.retryable ?? true });
      break;
    case 'WALSHIP_CLOSED':
      err = new ClosedError(w.message);
      break;
    case 'WALSHIP_LOCKED':
      err = new LockedError(w.message);
      break;
    case 'WALSHIP_ENGINE_WORKER':
      err = new EngineWorkerError(w.message);
      break;
    case 'WALSHIP_LEASE_HELD':
    case 'WALSHIP_LEASE_LOST':
      err = new LeaseError(w.code, w.message);
      break;
    case 'WALSHIP_AGE_KEY':
    case 'WALSHIP_AGE_NO_MATCH':
    case 'WALSHIP_AGE_NO_IDENTITY':
    case 'WALSHIP_AGE_NOT_ENCRYPTED':
      err = new AgeError(w.code, w.message);
      break;
    default:
      if (w.code?.startsWith('WALSHIP_'))
        err = new WalshipError(w.code as WalshipErrorCode, w.message); // a code from this same core, across the thread boundary
      else {
        err = new Error(w.message);
        err.name = w.name;
        const extra = err as Error & Record<string, unknown>;
        for (const k of ['code', 'errno', 'syscall', 'path'] as const) if (w[k] !== undefined) extra[k] = w[k];
      }
  }
  if (w.stack) err.stack = w.stack;
  if (w.cause) err.cause = fromWireError(w.cause);
  return err;
}
