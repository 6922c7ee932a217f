import { CorruptDataError } from '../errors.js';

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
