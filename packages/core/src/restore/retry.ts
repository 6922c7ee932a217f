import type { Readable } from 'node:stream';
import { CorruptDataError, isNotFoundError, isWalshipError } from '../errors.js';
import { sleep } from '../util/async.js';

/** Attempts per request (1 + 3 retries) and the first backoff delay; delays double with jitter. */
const RETRY_ATTEMPTS = 4;
const RETRY_BASE_DELAY_MS = 200;

/**
 * True when retrying may help: BackendError with `retryable`, and plain (non-walship) errors
 * such as network resets. Not-found, corrupt data, invalid arguments and aborts are final.
 */
export function isTransientError(err: unknown): boolean {
  if (isNotFoundError(err)) return false;
  if (isWalshipError(err, 'WALSHIP_BACKEND')) return err.retryable;
  if (isWalshipError(err)) return false; // corrupt data, invalid arguments, …
  if ((err as { name?: unknown } | null)?.name === 'AbortError') return false;
  return true;
}

export function throwIfAborted(signal: AbortSignal | undefined): void {
  if (signal?.aborted) throw signal.reason ?? abortError();
}

function abortError(): Error {
  const e = new Error('The operation was aborted');
  e.name = 'AbortError';
  return e;
}

function backoffDelay(attempt: number): number {
  const base = RETRY_BASE_DELAY_MS * 2 ** Math.max(0, attempt - 1);
  return base / 2 + Math.random() * base;
}

/** Runs `fn`, retrying transient failures with exponential backoff. */
export async function withRetry<T>(
  fn: () => Promise<T>,
  opts: { signal?: AbortSignal; attempts?: number; onRetry?: (err: unknown, attempt: number) => void } = {},
): Promise<T> {
  const attempts = opts.attempts ?? RETRY_ATTEMPTS;
  for (let attempt = 1; ; attempt++) {
    throwIfAborted(opts.signal);
    try {
      return await fn();
    } catch (err) {
      if (attempt >= attempts || !isTransientError(err) || opts.signal?.aborted) throw err;
      opts.onRetry?.(err, attempt);
      await sleep(backoffDelay(attempt), opts.signal);
    }
  }
}

/**
 * The stored bytes of one object, read through `open()`. A transient failure (at open or in
 * the middle of the stream) re-opens the object and skips the bytes already delivered, up to
 * `attempts` consecutive failures. Errors that are not transient (NotFoundError, …) are thrown
 * as they are. `onBytes` sees every delivered chunk's length.
 */
export async function* resumableObject(
  open: () => Promise<Readable>,
  opts: {
    signal?: AbortSignal;
    attempts?: number;
    onRetry?: (err: unknown, attempt: number) => void;
    onBytes?: (n: number) => void;
  } = {},
): AsyncGenerator<Buffer, void, undefined> {
  const attempts = opts.attempts ?? RETRY_ATTEMPTS;
  let delivered = 0;
  let failures = 0;
  for (;;) {
    throwIfAborted(opts.signal);
    let stream: Readable | undefined;
    try {
      stream = await open();
      let skip = delivered;
      for await (const raw of stream) {
        let chunk: Buffer = typeof raw === 'string' ? Buffer.from(raw) : Buffer.isBuffer(raw) ? raw : Buffer.from(raw as Uint8Array);
        if (skip > 0) {
          if (chunk.length <= skip) {
            skip -= chunk.length;
            continue;
          }
          chunk = chunk.subarray(skip);
          skip = 0;
        }
        if (chunk.length === 0) continue;
        delivered += chunk.length;
        failures = 0;
        opts.onBytes?.(chunk.length);
        yield chunk;
      }
      if (skip > 0)
        throw new CorruptDataError(`object shrank while it was read again after an error (${delivered - skip} of ${delivered} bytes)`);
      return;
    } catch (err) {
      stream?.destroy();
      failures++;
      if (failures >= attempts || !isTransientError(err) || opts.signal?.aborted) throw err;
      opts.onRetry?.(err, failures);
      await sleep(backoffDelay(failures), opts.signal);
    }
  }
}
