import { createCipheriv, createHash } from 'node:crypto';
import { Readable } from 'node:stream';

const DEFAULT_CHUNK = 1024 * 1024;

function keystream(seed: string): (n: number, zeros: Buffer) => Buffer {
  const material = createHash('sha256').update(`walship-conformance:${seed}`).digest();
  const cipher = createCipheriv('aes-128-ctr', material.subarray(0, 16), material.subarray(16, 32));
  return (n, zeros) => cipher.update(zeros.subarray(0, n));
}

/** `size` deterministic pseudo-random bytes derived from `seed` (for small bodies only). */
export function pseudoRandomBytes(seed: string, size: number): Buffer {
  return keystream(seed)(size, Buffer.alloc(size));
}

/**
 * A byte stream of `size` deterministic pseudo-random bytes derived from `seed`, produced on
 * demand in chunks of `chunkSize` bytes (AES-CTR keystream): memory stays at one chunk however
 * large `size` is. The same seed and size always give the same bytes.
 */
export function generatedBody(seed: string, size: number, chunkSize = DEFAULT_CHUNK): Readable {
  if (!Number.isSafeInteger(size) || size < 0) throw new RangeError(`invalid body size: ${size}`);
  if (!Number.isSafeInteger(chunkSize) || chunkSize < 1) throw new RangeError(`invalid chunk size: ${chunkSize}`);
  const next = keystream(seed);
  const zeros = Buffer.alloc(Math.min(chunkSize, Math.max(size, 1)));
  let remaining = size;
  return new Readable({
    highWaterMark: zeros.length,
    read() {
      if (remaining === 0) {
        this.push(null);
        return;
      }
      const n = Math.min(zeros.length, remaining);
      remaining -= n;
      this.push(next(n, zeros));
    },
  });
}

/** Byte count and SHA-256 (hex) of everything `stream` yields, consumed in a streaming way. */
export async function digestStream(stream: Readable): Promise<{ bytes: number; sha256: string }> {
  const hash = createHash('sha256');
  let bytes = 0;
  for await (const chunk of stream) {
    const buf = typeof chunk === 'string' ? Buffer.from(chunk) : (chunk as Uint8Array);
    bytes += buf.length;
    hash.update(buf);
  }
  return { bytes, sha256: hash.digest('hex') };
}

/** The digest `generatedBody(seed, size)` has, computed by streaming (bounded memory). */
export function generatedBodyDigest(seed: string, size: number): Promise<{ bytes: number; sha256: string }> {
  return digestStream(generatedBody(seed, size));
}

/** A byte-mode stream that yields `data` (possibly empty) in one chunk. */
export function bodyOf(data: Buffer): Readable {
  let done = false;
  return new Readable({
    read() {
      if (!done && data.length > 0) this.push(data);
      done = true;
      this.push(null);
    },
  });
}

/**
 * A byte stream that yields `goodBytes` bytes, then fails with an error (as a broken source
 * file or aborted pipeline would). Used to check that a failing body makes the write reject.
 */
export function failingBody(goodBytes: number, message = 'walship conformance: body failed on purpose'): Readable {
  let sent = 0;
  return new Readable({
    read() {
      if (sent < goodBytes) {
        const n = Math.min(16 * 1024, goodBytes - sent);
        sent += n;
        this.push(Buffer.alloc(n, 0x61));
        return;
      }
      // Fail asynchronously, after the consumer has seen the good bytes.
      setImmediate(() => this.destroy(new Error(message)));
    },
  });
}

/** Reads a (small) stream to one buffer. */
export async function readAll(stream: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream) {
    chunks.push(typeof chunk === 'string' ? Buffer.from(chunk) : Buffer.from(chunk as Uint8Array));
  }
  return Buffer.concat(chunks);
}
