/**
 * SQLite's WAL checksum (format reference §1.3): a running pair (s0, s1) of unsigned 32-bit
 * integers over 8-byte chunks, each read as two 32-bit words in the byte order chosen by the
 * WAL magic (`bigEndian`). Input length must be a multiple of 8.
 */
export interface Checksum {
  s0: number;
  s1: number;
}

const HOST_LITTLE_ENDIAN = new Uint8Array(new Uint32Array([1]).buffer)[0] === 1;

function bswap(x: number): number {
  return (((x & 0xff) << 24) | ((x & 0xff00) << 8) | ((x >>> 8) & 0xff00) | (x >>> 24)) >>> 0;
}

/**
 * Continues the checksum `seed` over `buf[start, end)` and returns the new pair (a fresh
 * object; `seed` is not modified). Throws if the length is not a multiple of 8.
 */
export function walChecksum(buf: Uint8Array, start: number, end: number, bigEndian: boolean, seed: Checksum): Checksum {
  const len = end - start;
  if (len < 0 || len % 8 !== 0) throw new RangeError(`wal checksum input must be a multiple of 8 bytes, got ${len}`);
  let s0 = seed.s0 | 0;
  let s1 = seed.s1 | 0;
  const abs = buf.byteOffset + start;
  const nativeOrder = bigEndian !== HOST_LITTLE_ENDIAN;
  if (abs % 4 === 0) {
    const w = new Int32Array(buf.buffer, abs, len >>> 2);
    const n = w.length;
    if (nativeOrder) {
      for (let i = 0; i < n; i += 2) {
        s0 = (s0 + w[i]! + s1) | 0;
        s1 = (s1 + w[i + 1]! + s0) | 0;
      }
    } else {
      for (let i = 0; i < n; i += 2) {
        s0 = (s0 + bswap(w[i]!) + s1) | 0;
        s1 = (s1 + bswap(w[i + 1]!) + s0) | 0;
      }
    }
  } else {
    const dv = new DataView(buf.buffer, abs, len);
    const le = !bigEndian;
    for (let i = 0; i < len; i += 8) {
      s0 = (s0 + dv.getUint32(i, le) + s1) | 0;
      s1 = (s1 + dv.getUint32(i + 4, le) + s0) | 0;
    }
  }
  return { s0: s0 >>> 0, s1: s1 >>> 0 };
}

export const ZERO_CHECKSUM: Readonly<Checksum> = Object.freeze({ s0: 0, s1: 0 });

export function checksumEquals(a: Checksum, b: Checksum): boolean {
  return a.s0 === b.s0 && a.s1 === b.s1;
}
