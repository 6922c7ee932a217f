/**
 * LZ4 block compression in JavaScript (the "fast" algorithm of the reference implementation,
 * acceleration 1: a 4-byte hash table of recent positions, skipping ahead faster the longer no
 * match is found), writing into a caller-supplied output buffer.
 *
 * Why not lz4-napi: its `compress` allocates every output (worst-case size, about 4 MiB for a
 * 4 MiB block) with its own allocator (mimalloc) on a libuv thread, and V8 frees it on the main
 * thread whenever it gets to collecting the Buffer. mimalloc keeps almost all of that memory
 * committed: streaming 1 GiB of incompressible blocks through it leaves RSS at about 900 MiB
 * (`compressSync` grows too, by about 2.4 MiB per call until a collection). Compressing here
 * into buffers the caller reuses allocates nothing per block.
 */

/** log2 of the hash table size (4096 entries, 16 KiB: the reference implementation's default). */
const HASH_LOG = 12;
const HASH_SHIFT = 32 - HASH_LOG;
/** The last match must start at least this many bytes before the end of the block. */
const MFLIMIT = 12;
/** The last this-many bytes of a block are always literals. */
const LAST_LITERALS = 5;
const MIN_MATCH = 4;
const MAX_DISTANCE = 65535;
/** Failed match attempts before the search step grows by one (the reference's skip trigger). */
const SKIP_TRIGGER = 6;

/** The hash table an encoder reuses across blocks (16 KiB). */
export function createLz4HashTable(): Int32Array {
  return new Int32Array(1 << HASH_LOG);
}

/**
 * Compresses `src[srcStart, srcEnd)` as one independent raw LZ4 block into `dst` from
 * `dstStart`, using at most `dstLimit - dstStart` bytes. Returns the end of the written output,
 * or -1 when the block does not fit (then store it uncompressed). `table` is overwritten.
 * Allocates nothing. The input may be at most 2 GiB.
 */
export function encodeLz4Block(
  src: Uint8Array,
  srcStart: number,
  srcEnd: number,
  dst: Uint8Array,
  dstStart: number,
  dstLimit: number,
  table: Int32Array,
): number {
  let op = dstStart;
  const length = srcEnd - srcStart;
  const v = new DataView(src.buffer, src.byteOffset, src.byteLength);
  let anchor = srcStart;
  if (length >= MFLIMIT + 1) {
    table.fill(srcStart);
    const mflimitPlusOne = srcEnd - MFLIMIT + 1;
    const matchLimit = srcEnd - LAST_LITERALS;
    let ip = srcStart;
    table[hash(v, ip)] = ip;
    ip++;
    let forwardH = hash(v, ip);

    outer: for (;;) {
      // Find a match: positions whose 4 bytes hash alike, checked, at most 64 KiB back.
      let match: number;
      {
        let forwardIp = ip;
        let step = 1;
        let searchMatchNb = 1 << SKIP_TRIGGER;
        do {
          const h = forwardH;
          ip = forwardIp;
          forwardIp += step;
          step = searchMatchNb++ >>> SKIP_TRIGGER;
          if (forwardIp > mflimitPlusOne) break outer;
          match = table[h]!;
          forwardH = hash(v, forwardIp);
          table[h] = ip;
        } while (ip - match > MAX_DISTANCE || v.getInt32(match, true) !== v.getInt32(ip, true));
      }

      // Extend the match backwards over the pending literals.
      while (ip > anchor && match > srcStart && src[ip - 1] === src[match - 1]) {
        ip--;
        match--;
      }

      // Token and literals. Worst case from here: token, length bytes, literals, offset, and
      // the final literal run's token — checked once, before writing.
      const litLen = ip - anchor;
      if (op + 1 + litLen + ((litLen / 255) | 0) + 2 + 1 + LAST_LITERALS > dstLimit) return -1;
      let token = op++;
      if (litLen >= 15) {
        dst[token] = 15 << 4;
        let rest = litLen - 15;
        for (; rest >= 255; rest -= 255) dst[op++] = 255;
        dst[op++] = rest;
      } else {
        dst[token] = litLen << 4;
      }
      op = copy(src, anchor, ip, dst, op);

      for (;;) {
        // Offset.
        const offset = ip - match;
        dst[op++] = offset & 0xff;
        dst[op++] = offset >>> 8;

        // Match length.
        let s = ip + MIN_MATCH;
        let m = match + MIN_MATCH;
        for (;;) {
          if (s + 4 > matchLimit) {
            while (s < matchLimit && src[s] === src[m]) {
              s++;
              m++;
            }
            break;
          }
          const diff = v.getInt32(s, true) ^ v.getInt32(m, true);
          if (diff !== 0) {
            s += (31 - Math.clz32(diff & -diff)) >>> 3; // equal low bytes (little-endian read)
            break;
          }
          s += 4;
          m += 4;
        }
        const matchLen = s - ip - MIN_MATCH;
        ip = s;
        if (op + ((matchLen / 255) | 0) + 1 + 1 + LAST_LITERALS > dstLimit) return -1;
        if (matchLen >= 15) {
          dst[token] = dst[token]! | 15;
          let rest = matchLen - 15;
          for (; rest >= 255; rest -= 255) dst[op++] = 255;
          dst[op++] = rest;
        } else {
          dst[token] = dst[token]! | matchLen;
        }
        anchor = ip;

        if (ip >= mflimitPlusOne) break outer;

        // Fill the table, and test the next position for an immediate match (no literals).
        table[hash(v, ip - 2)] = ip - 2;
        const h = hash(v, ip);
        match = table[h]!;
        table[h] = ip;
        if (ip - match <= MAX_DISTANCE && v.getInt32(match, true) === v.getInt32(ip, true)) {
          token = op++;
          dst[token] = 0;
          continue;
        }
        ip++;
        forwardH = hash(v, ip);
        break;
      }
    }
  }

  // The last literals.
  const litLen = srcEnd - anchor;
  if (op + 2 + ((litLen / 255) | 0) + litLen > dstLimit) return -1;
  if (litLen >= 15) {
    dst[op++] = 15 << 4;
    let rest = litLen - 15;
    for (; rest >= 255; rest -= 255) dst[op++] = 255;
    dst[op++] = rest;
  } else {
    dst[op++] = litLen << 4;
  }
  return copy(src, anchor, srcEnd, dst, op);
}

function hash(v: DataView, i: number): number {
  return Math.imul(v.getInt32(i, true), 2654435761) >>> HASH_SHIFT;
}

function copy(src: Uint8Array, from: number, to: number, dst: Uint8Array, at: number): number {
  const n = to - from;
  if (n < 32) {
    for (let i = 0; i < n; i++) dst[at + i] = src[from + i]!;
  } else {
    dst.set(src.subarray(from, to), at);
  }
  return at + n;
}
