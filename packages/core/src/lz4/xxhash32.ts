/**
 * xxHash32 (the checksum of the LZ4 frame format): a streaming class and a one-shot function.
 *
 * Pure JavaScript, 32-bit arithmetic with `Math.imul`. The stripe loop reads little-endian 32-bit
 * words through an aligned `Uint32Array` view; unaligned input is first copied in 64 KiB pieces
 * into an aligned scratch buffer (big-endian hosts use a byte-assembling fallback).
 */

const PRIME1 = 0x9e3779b1 | 0;
const PRIME2 = 0x85ebca77 | 0;
const PRIME3 = 0xc2b2ae3d | 0;
const PRIME4 = 0x27d4eb2f | 0;
const PRIME5 = 0x165667b1 | 0;

const LITTLE_ENDIAN = new Uint8Array(new Uint32Array([1]).buffer)[0] === 1;

/** Aligned scratch space for hashing unaligned input (a multiple of 16 bytes). */
const SCRATCH_BYTES = 64 * 1024;
const SCRATCH_WORDS = new Uint32Array(SCRATCH_BYTES / 4);
const SCRATCH = new Uint8Array(SCRATCH_WORDS.buffer);

function avalanche(h: number): number {
  h ^= h >>> 15;
  h = Math.imul(h, PRIME2);
  h ^= h >>> 13;
  h = Math.imul(h, PRIME3);
  h ^= h >>> 16;
  return h >>> 0;
}

/**
 * Streaming xxHash32. Feed bytes with {@link XxHash32.update} in any chunking and read the
 * hash with {@link XxHash32.digest} (which does not reset the state; more updates may follow).
 */
export class XxHash32 {
  private readonly seed: number;
  private v1 = 0;
  private v2 = 0;
  private v3 = 0;
  private v4 = 0;
  /** Total bytes hashed, modulo 2^32 (only the low 32 bits enter the hash). */
  private totalLen = 0;
  /** True once at least 16 bytes were hashed (the accumulators are in use). */
  private large = false;
  /** Up to 15 pending bytes that do not yet fill a 16-byte stripe. */
  private readonly mem = new Uint8Array(16);
  private memSize = 0;

  constructor(seed = 0) {
    this.seed = seed | 0;
    this.reset();
  }

  /** Restart hashing from the empty input with the same seed. */
  reset(): this {
    const seed = this.seed;
    this.v1 = (seed + PRIME1 + PRIME2) | 0;
    this.v2 = (seed + PRIME2) | 0;
    this.v3 = seed;
    this.v4 = (seed - PRIME1) | 0;
    this.totalLen = 0;
    this.large = false;
    this.memSize = 0;
    return this;
  }

  /** Hash more bytes. */
  update(input: Uint8Array): this {
    const len = input.length;
    if (len === 0) return this;
    this.totalLen = (this.totalLen + len) >>> 0;
    let p = 0;
    if (this.memSize + len < 16) {
      this.mem.set(input, this.memSize);
      this.memSize += len;
      return this;
    }
    this.large = true;
    if (this.memSize > 0) {
      p = 16 - this.memSize;
      this.mem.set(input.subarray(0, p), this.memSize);
      this.memSize = 0;
      this.stripes(this.mem, 0, 16);
    }
    const end = p + ((len - p) & ~15);
    if (end > p) this.stripes(input, p, end);
    if (end < len) {
      this.mem.set(input.subarray(end), 0);
      this.memSize = len - end;
    }
    return this;
  }

  /** The hash of everything fed so far, as an unsigned 32-bit integer. */
  digest(): number {
    let h: number;
    if (this.large) {
      h =
        (((this.v1 << 1) | (this.v1 >>> 31)) +
          ((this.v2 << 7) | (this.v2 >>> 25)) +
          ((this.v3 << 12) | (this.v3 >>> 20)) +
          ((this.v4 << 18) | (this.v4 >>> 14))) |
        0;
    } else {
      h = (this.seed + PRIME5) | 0;
    }
    h = (h + this.totalLen) | 0;
    return finish(h, this.mem, 0, this.memSize);
  }

  /** Runs the 16-byte stripe rounds over `buf[start, end)`; `end - start` is a multiple of 16. */
  private stripes(buf: Uint8Array, start: number, end: number): void {
    const abs = buf.byteOffset + start;
    if (!LITTLE_ENDIAN) {
      this.stripesBytes(buf, start, end);
    } else if ((abs & 3) === 0) {
      this.stripesWords(new Uint32Array(buf.buffer, abs, (end - start) >>> 2));
    } else {
      // Unaligned input: copying through an aligned scratch buffer (memcpy speed) and reading
      // words is about twice as fast as assembling words from bytes.
      for (let p = start; p < end; p += SCRATCH_BYTES) {
        const n = Math.min(SCRATCH_BYTES, end - p);
        SCRATCH.set(buf.subarray(p, p + n));
        this.stripesWords(n === SCRATCH_BYTES ? SCRATCH_WORDS : SCRATCH_WORDS.subarray(0, n >>> 2));
      }
    }
  }

  private stripesWords(words: Uint32Array): void {
    let v1 = this.v1;
    let v2 = this.v2;
    let v3 = this.v3;
    let v4 = this.v4;
    const n = words.length;
    for (let i = 0; i < n; i += 4) {
      v1 = (v1 + Math.imul(words[i]!, PRIME2)) | 0;
      v1 = Math.imul((v1 << 13) | (v1 >>> 19), PRIME1);
      v2 = (v2 + Math.imul(words[i + 1]!, PRIME2)) | 0;
      v2 = Math.imul((v2 << 13) | (v2 >>> 19), PRIME1);
      v3 = (v3 + Math.imul(words[i + 2]!, PRIME2)) | 0;
      v3 = Math.imul((v3 << 13) | (v3 >>> 19), PRIME1);
      v4 = (v4 + Math.imul(words[i + 3]!, PRIME2)) | 0;
      v4 = Math.imul((v4 << 13) | (v4 >>> 19), PRIME1);
    }
    this.v1 = v1;
    this.v2 = v2;
    this.v3 = v3;
    this.v4 = v4;
  }

  /** Endian-neutral fallback for big-endian hosts. */
  private stripesBytes(buf: Uint8Array, start: number, end: number): void {
    let v1 = this.v1;
    let v2 = this.v2;
    let v3 = this.v3;
    let v4 = this.v4;
    for (let i = start; i < end; i += 16) {
      v1 = (v1 + Math.imul(readU32(buf, i), PRIME2)) | 0;
      v1 = Math.imul((v1 << 13) | (v1 >>> 19), PRIME1);
      v2 = (v2 + Math.imul(readU32(buf, i + 4), PRIME2)) | 0;
      v2 = Math.imul((v2 << 13) | (v2 >>> 19), PRIME1);
      v3 = (v3 + Math.imul(readU32(buf, i + 8), PRIME2)) | 0;
      v3 = Math.imul((v3 << 13) | (v3 >>> 19), PRIME1);
      v4 = (v4 + Math.imul(readU32(buf, i + 12), PRIME2)) | 0;
      v4 = Math.imul((v4 << 13) | (v4 >>> 19), PRIME1);
    }
    this.v1 = v1;
    this.v2 = v2;
    this.v3 = v3;
    this.v4 = v4;
  }
}

function readU32(buf: Uint8Array, i: number): number {
  return buf[i]! | (buf[i + 1]! << 8) | (buf[i + 2]! << 16) | (buf[i + 3]! << 24);
}

/** Mixes the final `< 16` bytes `buf[p, end)` into `h` and applies the avalanche. */
function finish(h: number, buf: Uint8Array, p: number, end: number): number {
  while (p + 4 <= end) {
    h = (h + Math.imul(readU32(buf, p), PRIME3)) | 0;
    h = Math.imul((h << 17) | (h >>> 15), PRIME4);
    p += 4;
  }
  while (p < end) {
    h = (h + Math.imul(buf[p]!, PRIME5)) | 0;
    h = Math.imul((h << 11) | (h >>> 21), PRIME1);
    p++;
  }
  return avalanche(h);
}

/** xxHash32 of `input` (seed 0 unless given), as an unsigned 32-bit integer. */
export function xxh32(input: Uint8Array, seed = 0): number {
  return new XxHash32(seed).update(input).digest();
}
