import { CorruptDataError } from '../errors.js';
import { type Checksum, walChecksum, ZERO_CHECKSUM } from './checksum.js';

/** Size of the WAL header. */
export const WAL_HEADER_SIZE = 32;
/** Size of a WAL frame header (the page follows). */
export const WAL_FRAME_HEADER_SIZE = 24;
/** Magic for little-endian checksum words. */
export const WAL_MAGIC_LE = 0x377f0682;
/** Magic for big-endian checksum words. */
export const WAL_MAGIC_BE = 0x377f0683;
export const WAL_FORMAT_VERSION = 3007000;

/** The 32-byte WAL header (all fields are big-endian on disk). */
export interface WalHeader {
  readonly magic: number;
  /** Checksum words are big-endian (magic ...83). */
  readonly bigEndian: boolean;
  readonly version: number;
  readonly pageSize: number;
  readonly checkpointSeq: number;
  readonly salt1: number;
  readonly salt2: number;
  readonly checksum: Checksum;
}

/** Parses and verifies a WAL header. Throws CorruptDataError on a bad magic or checksum. */
export function parseWalHeader(buf: Uint8Array): WalHeader {
  if (buf.length < WAL_HEADER_SIZE) throw new CorruptDataError(`wal header too short: ${buf.length} bytes`);
  const dv = new DataView(buf.buffer, buf.byteOffset, WAL_HEADER_SIZE);
  const magic = dv.getUint32(0);
  if (magic !== WAL_MAGIC_LE && magic !== WAL_MAGIC_BE) {
    throw new CorruptDataError(`invalid wal header magic: ${magic.toString(16)}`);
  }
  const bigEndian = magic === WAL_MAGIC_BE;
  const stored = { s0: dv.getUint32(24), s1: dv.getUint32(28) };
  const computed = walChecksum(buf, 0, 24, bigEndian, ZERO_CHECKSUM);
  if (computed.s0 !== stored.s0 || computed.s1 !== stored.s1) {
    throw new CorruptDataError(
      `invalid header checksum: (${computed.s0.toString(16)},${computed.s1.toString(16)}) != (${stored.s0.toString(16)},${stored.s1.toString(16)})`,
    );
  }
  const rawPageSize = dv.getUint32(8);
  const pageSize = rawPageSize === 1 ? 65536 : rawPageSize;
  if (pageSize < 512 || pageSize > 65536 || (pageSize & (pageSize - 1)) !== 0) {
    throw new CorruptDataError(`invalid wal page size: ${rawPageSize}`);
  }
  return {
    magic,
    bigEndian,
    version: dv.getUint32(4),
    pageSize,
    checkpointSeq: dv.getUint32(12),
    salt1: dv.getUint32(16),
    salt2: dv.getUint32(20),
    checksum: stored,
  };
}

/** Builds a valid 32-byte WAL header (used by tests and restore). */
export function encodeWalHeader(h: { bigEndian?: boolean; pageSize: number; checkpointSeq: number; salt1: number; salt2: number }): Buffer {
  const buf = Buffer.alloc(WAL_HEADER_SIZE);
  const bigEndian = h.bigEndian ?? false;
  buf.writeUInt32BE(bigEndian ? WAL_MAGIC_BE : WAL_MAGIC_LE, 0);
  buf.writeUInt32BE(WAL_FORMAT_VERSION, 4);
  buf.writeUInt32BE(h.pageSize === 65536 ? 1 : h.pageSize, 8);
  buf.writeUInt32BE(h.checkpointSeq >>> 0, 12);
  buf.writeUInt32BE(h.salt1 >>> 0, 16);
  buf.writeUInt32BE(h.salt2 >>> 0, 20);
  const c = walChecksum(buf, 0, 24, bigEndian, ZERO_CHECKSUM);
  buf.writeUInt32BE(c.s0, 24);
  buf.writeUInt32BE(c.s1, 28);
  return buf;
}

/** Header fields of one frame. */
export interface FrameHeader {
  readonly pgno: number;
  /** Database size in pages after the commit for a commit frame; 0 otherwise. */
  readonly commit: number;
  readonly salt1: number;
  readonly salt2: number;
  readonly checksum: Checksum;
}

export function parseFrameHeader(buf: Uint8Array, at = 0): FrameHeader {
  const dv = new DataView(buf.buffer, buf.byteOffset + at, WAL_FRAME_HEADER_SIZE);
  return {
    pgno: dv.getUint32(0),
    commit: dv.getUint32(4),
    salt1: dv.getUint32(8),
    salt2: dv.getUint32(12),
    checksum: { s0: dv.getUint32(16), s1: dv.getUint32(20) },
  };
}

/** Size of one frame (header + page). */
export function frameSize(pageSize: number): number {
  return WAL_FRAME_HEADER_SIZE + pageSize;
}

/** Byte size of a WAL holding `n` frames: `32 + (24 + pageSize) * n`. */
export function calcWalSize(pageSize: number, n: number): number {
  return WAL_HEADER_SIZE + frameSize(pageSize) * n;
}

/** Rounds `offset` down to a frame boundary (0 when below the header). */
export function frameAlign(offset: number, pageSize: number): number {
  if (offset < WAL_HEADER_SIZE) return 0;
  const fs = frameSize(pageSize);
  return WAL_HEADER_SIZE + Math.floor((offset - WAL_HEADER_SIZE) / fs) * fs;
}

/** True when two parsed headers describe the same WAL epoch (byte-identical fields). */
export function sameWalHeader(a: WalHeader, b: WalHeader): boolean {
  return (
    a.magic === b.magic &&
    a.pageSize === b.pageSize &&
    a.checkpointSeq === b.checkpointSeq &&
    a.salt1 === b.salt1 &&
    a.salt2 === b.salt2 &&
    a.checksum.s0 === b.checksum.s0 &&
    a.checksum.s1 === b.checksum.s1
  );
}

/**
 * Verifies one frame against the running checksum and the epoch's salts.
 * Returns the frame's checksum when valid, or undefined when the frame does not continue the
 * chain (wrong salts or checksum), i.e. the end of valid data.
 */
export function verifyFrame(buf: Uint8Array, at: number, pageSize: number, header: WalHeader, prev: Checksum): Checksum | undefined {
  const dv = new DataView(buf.buffer, buf.byteOffset + at, WAL_FRAME_HEADER_SIZE);
  if (dv.getUint32(8) !== header.salt1 || dv.getUint32(12) !== header.salt2) return undefined;
  let c = walChecksum(buf, at, at + 8, header.bigEndian, prev);
  c = walChecksum(buf, at + WAL_FRAME_HEADER_SIZE, at + WAL_FRAME_HEADER_SIZE + pageSize, header.bigEndian, c);
  if (c.s0 !== dv.getUint32(16) || c.s1 !== dv.getUint32(20)) return undefined;
  return c;
}
