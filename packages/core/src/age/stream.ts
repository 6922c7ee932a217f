/**
 * age payload encryption as Node streams: STREAM (ChaCha20-Poly1305, 64 KiB plaintext chunks,
 * nonce = 11-byte big-endian chunk counter ‖ last-chunk flag) behind the header. Memory per
 * stream: one 64 KiB chunk buffer, plus the header while it is read (at most
 * {@link MAX_HEADER_BYTES}).
 */
import { createCipheriv } from 'node:crypto';
import { Transform, type TransformCallback } from 'node:stream';
import { AgeError, CorruptDataError } from '../errors.js';
import { MAX_HEADER_BYTES, newHeader, open, parseHeader, payloadKey, unwrapFileKey, type Header } from './format.js';
import type { AgeIdentity, AgeRecipient } from './keys.js';

const CHUNK_SIZE = 64 * 1024;
const TAG_SIZE = 16;
const SEALED_CHUNK = CHUNK_SIZE + TAG_SIZE;
const NONCE_SIZE = 16;

function chunkNonce(counter: number, last: boolean): Buffer {
  const n = Buffer.alloc(12);
  n.writeUIntBE(counter, 5, 6); // 11-byte counter; 2^48 chunks (16 EiB) is plenty
  if (last) n[11] = 1;
  return n;
}

function sealChunk(key: Buffer, counter: number, last: boolean, plaintext: Buffer): Buffer {
  const c = createCipheriv('chacha20-poly1305', key, chunkNonce(counter, last), { authTagLength: TAG_SIZE });
  const out = Buffer.allocUnsafe(plaintext.length + TAG_SIZE);
  const n = c.update(plaintext).copy(out, 0);
  c.final();
  c.getAuthTag().copy(out, n);
  return out;
}

/** Encrypts one object to `recipients` (binary age v1 file). */
export class AgeEncryptor extends Transform {
  readonly #recipients: readonly AgeRecipient[];
  #key: Buffer | undefined;
  readonly #buf = Buffer.allocUnsafe(CHUNK_SIZE);
  #used = 0;
  #counter = 0;

  constructor(recipients: readonly AgeRecipient[]) {
    super();
    this.#recipients = recipients;
  }

  #start(): Buffer {
    if (!this.#key) {
      const h = newHeader(this.#recipients);
      this.#key = h.payloadKey;
      this.push(h.bytes);
    }
    return this.#key;
  }

  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    try {
      const key = this.#start();
      let at = 0;
      while (at < chunk.length) {
        if (this.#used === CHUNK_SIZE) {
          // More data follows, so the buffered chunk is not the last one.
          this.push(sealChunk(key, this.#counter++, false, this.#buf));
          this.#used = 0;
        }
        const n = chunk.copy(this.#buf, this.#used, at, Math.min(chunk.length, at + CHUNK_SIZE - this.#used));
        this.#used += n;
        at += n;
      }
      callback();
    } catch (err) {
      callback(err as Error);
    }
  }

  override _flush(callback: TransformCallback): void {
    try {
      const key = this.#start();
      this.push(sealChunk(key, this.#counter++, true, this.#buf.subarray(0, this.#used)));
      callback();
    } catch (err) {
      callback(err as Error);
    }
  }
}

const LZ4_MAGIC = Buffer.from([0x04, 0x22, 0x4d, 0x18]);

function looksLikeLz4(b: Buffer): boolean {
  if (b.length < 4) return false;
  if (b.subarray(0, 4).equals(LZ4_MAGIC)) return true;
  return (b[0]! & 0xf0) === 0x50 && b[1] === 0x2a && b[2] === 0x4d && b[3] === 0x18; // skippable frame
}

const NOT_ENCRYPTED_MESSAGE =
  'object is not age-encrypted (it is a plain LZ4 frame) but age identities are configured: the replica was written without encryption; read it without age, or write encrypted replicas to a new path';
export const NO_IDENTITY_MESSAGE =
  'object is age-encrypted but no age identity is configured to read it: add the identity (AGE-SECRET-KEY-1…) of one of its recipients to age.identities';

/** Decrypts one binary age v1 file with the first of `identities` that opens it. */
export class AgeDecryptor extends Transform {
  readonly #identities: readonly AgeIdentity[];
  /** Header bytes while the header is incomplete. */
  #head: Buffer | undefined = Buffer.alloc(0);
  #header: Header | undefined;
  #nonce: Buffer | undefined;
  #key: Buffer | undefined;
  readonly #buf = Buffer.allocUnsafe(SEALED_CHUNK);
  #used = 0;
  #counter = 0;
  #done = false;

  constructor(identities: readonly AgeIdentity[]) {
    super();
    this.#identities = identities;
  }

  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    try {
      this.#take(chunk);
      callback();
    } catch (err) {
      callback(err as Error);
    }
  }

  override _flush(callback: TransformCallback): void {
    try {
      this.#finish();
      callback();
    } catch (err) {
      callback(err as Error);
    }
  }

  #take(chunk: Buffer): void {
    if (this.#key === undefined) {
      const rest = this.#takeHeader(chunk);
      if (rest === undefined) return;
      chunk = rest;
    }
    this.#takePayload(chunk);
  }

  /** Consumes header and nonce; returns the payload bytes that followed, or undefined if more header is needed. */
  #takeHeader(chunk: Buffer): Buffer | undefined {
    let data = this.#head!.length === 0 ? chunk : Buffer.concat([this.#head!, chunk]);
    if (!this.#header) {
      let header: Header | undefined;
      try {
        header = parseHeader(data);
      } catch (err) {
        if (looksLikeLz4(data)) throw new AgeError('WALSHIP_AGE_NOT_ENCRYPTED', NOT_ENCRYPTED_MESSAGE);
        throw err;
      }
      if (!header) {
        if (data.length > MAX_HEADER_BYTES) throw new CorruptDataError(`age: header larger than ${MAX_HEADER_BYTES} bytes`);
        this.#head = Buffer.from(data); // copy: the chunk's buffer may be reused by its producer
        return undefined;
      }
      if (this.#identities.length === 0) throw new AgeError('WALSHIP_AGE_NO_IDENTITY', NO_IDENTITY_MESSAGE);
      const r = unwrapFileKey(header, this.#identities);
      if ('noMatch' in r) {
        throw new AgeError(
          'WALSHIP_AGE_NO_MATCH',
          `no identity matched: none of the ${this.#identities.length} configured age identities opens this object (its stanzas: ${r.noMatch}); add the identity of a recipient it was encrypted to (keep old identities after a key rotation)`,
        );
      }
      this.#header = header;
      this.#nonce = r.fileKey; // the file key, until the nonce is read
      data = data.subarray(header.length);
    }
    if (data.length < NONCE_SIZE) {
      this.#head = Buffer.from(data);
      return undefined;
    }
    this.#key = payloadKey(this.#nonce!, data.subarray(0, NONCE_SIZE));
    this.#nonce = undefined;
    this.#head = undefined;
    return data.subarray(NONCE_SIZE);
  }

  #takePayload(chunk: Buffer): void {
    let at = 0;
    while (at < chunk.length) {
      if (this.#done) throw new CorruptDataError('age: trailing data after the end of the encrypted payload');
      if (this.#used === SEALED_CHUNK) {
        // A full chunk with more data after it: not the last chunk (unless it is, with garbage after it).
        this.#openChunk(this.#buf, false);
        this.#used = 0;
      } else if (this.#used === 0 && chunk.length - at > SEALED_CHUNK) {
        // Fast path: a whole chunk straight from the input, more data after it.
        this.#openChunk(chunk.subarray(at, at + SEALED_CHUNK), false);
        at += SEALED_CHUNK;
        continue;
      }
      const n = chunk.copy(this.#buf, this.#used, at, Math.min(chunk.length, at + SEALED_CHUNK - this.#used));
      this.#used += n;
      at += n;
    }
  }

  #openChunk(sealed: Buffer, atEnd: boolean): void {
    const key = this.#key!;
    if (!atEnd) {
      const out = open(key, chunkNonce(this.#counter, false), sealed);
      if (out) {
        this.#counter++;
        this.push(out);
        return;
      }
      // A full-size final chunk followed by more bytes?
      const last = open(key, chunkNonce(this.#counter, true), sealed);
      if (!last)
        throw new CorruptDataError(`age: payload chunk ${this.#counter} failed authentication (the object was modified or damaged)`);
      this.push(last);
      this.#done = true;
      throw new CorruptDataError('age: trailing data after the end of the encrypted payload');
    }
    if (sealed.length < TAG_SIZE) throw new CorruptDataError('age: truncated payload (missing final chunk)');
    const out = open(key, chunkNonce(this.#counter, true), sealed);
    if (!out) {
      const full = sealed.length === SEALED_CHUNK ? open(key, chunkNonce(this.#counter, false), sealed) : undefined;
      if (full) {
        // A whole chunk that is not marked last, then the end: released (it is authentic), then
        // the truncation reported, as age does.
        this.#counter++;
        this.push(full);
        throw new CorruptDataError('age: truncated payload (missing final chunk)');
      }
      throw new CorruptDataError(
        `age: payload chunk ${this.#counter} failed authentication (the object was modified, damaged or truncated)`,
      );
    }
    if (out.length === 0 && this.#counter > 0) throw new CorruptDataError('age: final payload chunk is empty');
    this.#counter++;
    this.#done = true;
    this.push(out);
  }

  #finish(): void {
    if (this.#key === undefined) {
      const data = this.#head ?? Buffer.alloc(0);
      if (data.length === 0 && !this.#header) throw new CorruptDataError('age: empty object (expected an age header)');
      if (!this.#header) {
        if (looksLikeLz4(data)) throw new AgeError('WALSHIP_AGE_NOT_ENCRYPTED', NOT_ENCRYPTED_MESSAGE);
        throw new CorruptDataError('age: truncated header');
      }
      throw new CorruptDataError('age: truncated header (missing nonce)');
    }
    if (this.#done) return;
    this.#openChunk(this.#buf.subarray(0, this.#used), true);
  }
}
