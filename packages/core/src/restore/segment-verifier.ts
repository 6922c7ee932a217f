import { walChecksum, type Checksum } from '../wal/checksum.js';
import { parseWalHeader, WAL_FRAME_HEADER_SIZE, WAL_HEADER_SIZE } from '../wal/format.js';

/**
 * Verifies the frames of one WAL segment on its own, without the frames before it: every frame
 * whose predecessor is in the same segment is checked against that predecessor's *stored*
 * checksum and salts (the chain is valid iff each link is). For the segment at offset 0 the
 * header is checked too and the first frame is linked to it. The first frame of a later
 * segment cannot be checked here (its predecessor is elsewhere); the applier checks it.
 *
 * The checksum byte order comes from the header (offset 0) or, for later segments, is the
 * order under which the first checkable frame verifies (reported as `bigEndian` so the applier
 * can compare it with the index header).
 *
 * Used by the decode workers, so that the main thread only copies pages.
 */
export class SegmentVerifier {
  /** Index offset of the next byte fed. */
  private pos: number;
  private readonly frameSize: number;
  /** Frames are not on frame boundaries (segment not frame-aligned): nothing is verified. */
  private readonly disabled: boolean;
  private readonly carry: Buffer;
  private carryLen = 0;
  private headerDone: boolean;
  private seed: Checksum | undefined;
  private salt1 = 0;
  private salt2 = 0;
  /** undefined until known. */
  bigEndian: boolean | undefined;
  /** Offset of the first frame that failed, or -1. */
  badAt = -1;

  constructor(
    readonly segmentOffset: number,
    private readonly pageSize: number,
  ) {
    this.pos = segmentOffset;
    this.frameSize = WAL_FRAME_HEADER_SIZE + pageSize;
    this.disabled = segmentOffset !== 0 && (segmentOffset < WAL_HEADER_SIZE || (segmentOffset - WAL_HEADER_SIZE) % this.frameSize !== 0);
    this.headerDone = segmentOffset !== 0;
    this.carry = Buffer.allocUnsafeSlow(this.frameSize);
  }

  /**
   * First index offset from which frames are verified by this class (frames before it must be
   * verified by the applier); Infinity when the segment is not frame-aligned.
   */
  static trustedFrom(segmentOffset: number, pageSize: number): number {
    const fs = WAL_FRAME_HEADER_SIZE + pageSize;
    if (segmentOffset === 0) return WAL_HEADER_SIZE;
    if (segmentOffset < WAL_HEADER_SIZE || (segmentOffset - WAL_HEADER_SIZE) % fs !== 0) return Infinity;
    return segmentOffset + fs;
  }

  /** Feeds the next decoded bytes. */
  feed(chunk: Uint8Array): void {
    if (this.disabled || this.badAt >= 0) return;
    const buf = Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength);
    let p = 0;
    if (!this.headerDone) {
      const n = Math.min(WAL_HEADER_SIZE - this.carryLen, buf.length);
      buf.copy(this.carry, this.carryLen, 0, n);
      this.carryLen += n;
      this.pos += n;
      p = n;
      if (this.carryLen < WAL_HEADER_SIZE) return;
      this.carryLen = 0;
      this.headerDone = true;
      try {
        const h = parseWalHeader(this.carry.subarray(0, WAL_HEADER_SIZE));
        if (h.pageSize !== this.pageSize) throw new Error('page size');
        this.seed = h.checksum;
        this.salt1 = h.salt1;
        this.salt2 = h.salt2;
        this.bigEndian = h.bigEndian;
      } catch {
        this.badAt = 0;
        return;
      }
    }
    const fs = this.frameSize;
    while (p < buf.length && this.badAt < 0) {
      if (this.carryLen > 0 || buf.length - p < fs || (buf.byteOffset + p) % 4 !== 0) {
        const n = Math.min(fs - this.carryLen, buf.length - p);
        buf.copy(this.carry, this.carryLen, p, p + n);
        this.carryLen += n;
        p += n;
        if (this.carryLen < fs) continue;
        this.carryLen = 0;
        this.frame(this.carry, 0);
      } else {
        this.frame(buf, p);
        p += fs;
      }
    }
  }

  private frame(buf: Buffer, at: number): void {
    const offset = this.pos;
    this.pos += this.frameSize;
    const salt1 = buf.readUInt32BE(at + 8);
    const salt2 = buf.readUInt32BE(at + 12);
    const stored = { s0: buf.readUInt32BE(at + 16), s1: buf.readUInt32BE(at + 20) };
    if (this.seed === undefined) {
      // First frame of a later segment: becomes the seed.
      this.seed = stored;
      this.salt1 = salt1;
      this.salt2 = salt2;
      return;
    }
    if (salt1 !== this.salt1 || salt2 !== this.salt2) {
      this.badAt = offset;
      return;
    }
    const orders = this.bigEndian === undefined ? [false, true] : [this.bigEndian];
    for (const be of orders) {
      let c = walChecksum(buf, at, at + 8, be, this.seed);
      c = walChecksum(buf, at + WAL_FRAME_HEADER_SIZE, at + this.frameSize, be, c);
      if (c.s0 === stored.s0 && c.s1 === stored.s1) {
        this.bigEndian = be;
        this.seed = stored;
        return;
      }
    }
    this.badAt = offset;
  }
}
