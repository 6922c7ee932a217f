import { CorruptDataError } from '../errors.js';

/**
 * Decodes one raw LZ4 block (the LZ4 block format: sequences of token, literals, offset, match)
 * from `src[srcStart, srcEnd)` into `dst` starting at `dstStart`, writing at most up to `dstLimit`.
 *
 * Matches may reach back into `dst[windowStart, dstStart)`, which holds earlier output (the
 * up-to-64 KiB history of linked blocks); pass `windowStart = dstStart` for independent blocks.
 *
 * Returns the end of the written output (exclusive). Throws `CorruptDataError` when the block is
 * malformed: truncated sequence, match offset 0 or before the window, or output that would exceed
 * `dstLimit` (the frame's maximum block size).
 */
export function decodeLz4Block(
  src: Uint8Array,
  srcStart: number,
  srcEnd: number,
  dst: Uint8Array,
  dstStart: number,
  dstLimit: number,
  windowStart: number,
): number {
  let s = srcStart;
  let d = dstStart;
  if (s >= srcEnd) throw new CorruptDataError('corrupt LZ4 block: empty compressed block');
  for (;;) {
    const token = src[s++]!;

    // Literals.
    let litLen = token >>> 4;
    if (litLen === 15) {
      let b: number;
      do {
        if (s >= srcEnd) throw truncated();
        b = src[s++]!;
        litLen += b;
      } while (b === 255);
    }
    if (litLen > 0) {
      if (s + litLen > srcEnd) throw truncated();
      if (d + litLen > dstLimit) throw tooLarge();
      if (litLen < 32) {
        for (let i = 0; i < litLen; i++) dst[d + i] = src[s + i]!;
      } else {
        dst.set(src.subarray(s, s + litLen), d);
      }
      s += litLen;
      d += litLen;
    }
    if (s === srcEnd) return d; // the last sequence carries literals only

    // Match.
    if (s + 2 > srcEnd) throw truncated();
    const offset = src[s]! | (src[s + 1]! << 8);
    s += 2;
    if (offset === 0 || d - offset < windowStart) {
      throw new CorruptDataError(`corrupt LZ4 block: match offset ${offset} points before the start of the available output`);
    }
    let matchLen = (token & 15) + 4;
    if (matchLen === 19) {
      let b: number;
      do {
        if (s >= srcEnd) throw truncated();
        b = src[s++]!;
        matchLen += b;
      } while (b === 255);
    }
    if (d + matchLen > dstLimit) throw tooLarge();
    let m = d - offset;
    if (offset >= matchLen) {
      // Source and destination do not overlap.
      if (matchLen < 32) {
        for (let i = 0; i < matchLen; i++) dst[d + i] = dst[m + i]!;
      } else {
        dst.copyWithin(d, m, m + matchLen);
      }
      d += matchLen;
    } else if (offset === 1) {
      dst.fill(dst[m]!, d, d + matchLen);
      d += matchLen;
    } else if (matchLen < 64) {
      // Short overlapping match: byte loop (each byte may be one just written).
      const end = d + matchLen;
      while (d < end) dst[d++] = dst[m++]!;
    } else {
      // Long overlapping match: the pattern of length `offset` repeats; copy it in doubling
      // non-overlapping chunks.
      const end = d + matchLen;
      let period = offset;
      while (d < end) {
        const n = Math.min(period, end - d);
        dst.copyWithin(d, m, m + n);
        d += n;
        period += n;
      }
    }
  }
}

/**
 * The decompressed size of the raw LZ4 block `src[srcStart, srcEnd)`, found by walking its
 * sequence headers without decoding (cost: one step per sequence). Throws `CorruptDataError`
 * when the block is truncated or its size would exceed `limit`. Match offsets are not checked.
 */
export function lz4BlockDecodedSize(src: Uint8Array, srcStart: number, srcEnd: number, limit: number): number {
  let s = srcStart;
  let size = 0;
  if (s >= srcEnd) throw new CorruptDataError('corrupt LZ4 block: empty compressed block');
  for (;;) {
    const token = src[s++]!;
    let litLen = token >>> 4;
    if (litLen === 15) {
      let b: number;
      do {
        if (s >= srcEnd) throw truncated();
        b = src[s++]!;
        litLen += b;
      } while (b === 255);
    }
    s += litLen;
    size += litLen;
    if (s >= srcEnd) {
      if (s > srcEnd) throw truncated();
      if (size > limit) throw tooLarge();
      return size;
    }
    s += 2;
    let matchLen = (token & 15) + 4;
    if (matchLen === 19) {
      let b: number;
      do {
        if (s >= srcEnd) throw truncated();
        b = src[s++]!;
        matchLen += b;
      } while (b === 255);
    }
    size += matchLen;
    if (size > limit) throw tooLarge();
  }
}

function truncated(): CorruptDataError {
  return new CorruptDataError('corrupt LZ4 block: compressed data ends inside a sequence');
}

function tooLarge(): CorruptDataError {
  return new CorruptDataError('corrupt LZ4 block: decompressed data exceeds the maximum block size');
}
