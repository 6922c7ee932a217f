// Small pieces every storage backend needs, kept in one place so the backends agree.
import { InvalidArgumentError } from './errors.js';

/**
 * Whether an HTTP status from an object store is worth retrying after backoff: 408 (request
 * timeout), 429 (throttling) and the 5xx server failures — except 501 (not implemented) and 505
 * (HTTP version not supported), which no retry changes. Every other status is final (a
 * backend may still treat specific service error codes as transient on top of this).
 */
export function isRetryableHttpStatus(status: number): boolean {
  if (status === 408 || status === 429) return true;
  return status >= 500 && status <= 599 && status !== 501 && status !== 505;
}

/**
 * A chunk of an upload body as a Buffer without copying (a Uint8Array becomes a view of the same
 * memory, a string is UTF-8 encoded). Throws `InvalidArgumentError`
 * (`<backend>: upload body must yield Buffer, Uint8Array or string chunks`) for anything else.
 */
export function bodyChunkToBuffer(chunk: unknown, backend: string): Buffer {
  if (Buffer.isBuffer(chunk)) return chunk;
  if (chunk instanceof Uint8Array) return Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength);
  if (typeof chunk === 'string') return Buffer.from(chunk);
  throw new InvalidArgumentError(`${backend}: upload body must yield Buffer, Uint8Array or string chunks`);
}
