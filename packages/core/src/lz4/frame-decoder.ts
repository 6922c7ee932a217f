import type { Transform } from 'node:stream';
import { AsyncTransform } from './async-transform.js';
import { uncompressSync } from 'lz4-napi';
import { AgeError, CorruptDataError } from '../errors.js';
import { NO_IDENTITY_MESSAGE } from '../age/stream.js';
import { lz4BlockDecodedSize } from './block.js';
import {
  BLOCK_UNCOMPRESSED_BIT,
  FLG_BLOCK_CHECKSUM,
  FLG_BLOCK_INDEPENDENCE,
  FLG_CONTENT_CHECKSUM,
  FLG_CONTENT_SIZE,
  FLG_DICT_ID,
  FLG_RESERVED,
  FLG_VERSION_01,
  FLG_VERSION_MASK,
  LZ4_BLOCK_SIZES,
  LZ4_FRAME_MAGIC,
  LZ4_LEGACY_MAGIC,
  LZ4_SKIPPABLE_MAGIC_MAX,
  LZ4_SKIPPABLE_MAGIC_MIN,
  LZ4_WINDOW_SIZE,
} from './frame.js';
import { XxHash32, xxh32 } from './xxhash32.js';

/** The first four bytes of an age file (`age-`), read as a little-endian u32. */
const AGE_MAGIC = 0x2d656761;

enum State {
  Magic,
  SkipSize,
  Skip,
  Descriptor,
  BlockSize,
  BlockData,
  ContentChecksum,
  Done,
}

/**
 * A transform that decodes one standard LZ4 frame, accepting everything pierrec/lz4 v4 (the
 * library Litestream v0.3 uses) reads:
 *
 * - block maximum sizes 64 KiB, 256 KiB, 1 MiB and 4 MiB;
 * - independent and linked blocks (matches reaching up to 64 KiB into earlier output);
 * - compressed and stored (uncompressed) blocks;
 * - optional block checksums, content size and content checksum, each verified when present;
 * - skippable frames (magic `0x184D2A50`–`0x184D2A5F`) before the frame.
 *
 * Exactly one frame is decoded; bytes after it are ignored. An empty input stream decodes to
 * empty output. Memory: the compressed block being assembled, one decoded block (allocated at its
 * exact size) and, for linked blocks, the 64 KiB window; decoding pauses while the readable side
 * is full (backpressure).
 *
 * Errors (emitted on the stream) are `CorruptDataError`s naming the problem: bad magic number,
 * legacy LZ4 format, unsupported version, reserved bits or dictionary, header checksum mismatch,
 * block larger than the declared maximum, malformed block, block checksum mismatch, content size
 * mismatch, content checksum mismatch, truncated frame.
 */
export function createLz4FrameDecoder(): Transform {
  return new Lz4FrameDecoder();
}

class Lz4FrameDecoder extends AsyncTransform {
  private state = State.Magic;

  /** Input not consumed yet: `chunks[0]` starting at `offset`, then the rest. */
  private chunks: Buffer[] = [];
  private offset = 0;
  private buffered = 0;

  private skipRemaining = 0;
  /** Frame descriptor. */
  private blockMax = 0;
  private independent = true;
  private blockChecksum = false;
  private contentSize: bigint | null = null;
  private contentHash: XxHash32 | null = null;
  private blockWord = 0;

  private produced = 0;
  /** Last up-to-64 KiB of output (linked blocks only), a private copy. */
  private history: Buffer = Buffer.alloc(0);
  /** Resolves the wait for the consumer to read (backpressure). */
  protected override async transformAsync(chunk: Buffer): Promise<void> {
    if (this.state === State.Done) return; // trailing bytes after the frame are ignored
    if (chunk.length > 0) {
      this.chunks.push(chunk);
      this.buffered += chunk.length;
    }
    await this.run();
  }

  protected override async flushAsync(): Promise<void> {
    await this.run();
    if (this.state === State.Done) return;
    if (this.state === State.Magic && this.buffered === 0) return; // empty stream (or only skippable frames)
    throw new CorruptDataError(`truncated LZ4 frame: input ended ${describe(this.state)}`);
  }

  /** Consumes as much buffered input as possible. */
  private async run(): Promise<void> {
    for (;;) {
      switch (this.state) {
        case State.Magic: {
          if (this.buffered < 4) return;
          const magic = this.readU32();
          if (magic === LZ4_FRAME_MAGIC) {
            this.state = State.Descriptor;
          } else if (magic >= LZ4_SKIPPABLE_MAGIC_MIN && magic <= LZ4_SKIPPABLE_MAGIC_MAX) {
            this.state = State.SkipSize;
          } else if (magic === AGE_MAGIC) {
            // 'age-' : an age-encrypted object read without an age stage (no identities).
            throw new AgeError('WALSHIP_AGE_NO_IDENTITY', NO_IDENTITY_MESSAGE);
          } else if (magic === LZ4_LEGACY_MAGIC) {
            throw new CorruptDataError('unsupported LZ4 legacy format (magic 02 21 4C 18): expected an LZ4 frame (magic 04 22 4D 18)');
          } else {
            throw new CorruptDataError(`bad LZ4 magic number 0x${hex32(magic)}: not an LZ4 frame (expected 04 22 4D 18)`);
          }
          break;
        }
        case State.SkipSize: {
          if (this.buffered < 4) return;
          this.skipRemaining = this.readU32();
          this.state = State.Skip;
          break;
        }
        case State.Skip: {
          this.skipRemaining -= this.discard(this.skipRemaining);
          if (this.skipRemaining > 0) return;
          this.state = State.Magic;
          break;
        }
        case State.Descriptor: {
          if (this.buffered < 2) return;
          const flg = this.peekByte(0);
          const length = 3 + (flg & FLG_CONTENT_SIZE ? 8 : 0) + (flg & FLG_DICT_ID ? 4 : 0);
          if (this.buffered < length) return;
          this.parseDescriptor(this.takeBytes(length));
          this.state = State.BlockSize;
          break;
        }
        case State.BlockSize: {
          if (this.buffered < 4) return;
          const word = this.readU32();
          if (word === 0) {
            this.checkContentSize();
            this.state = this.contentHash ? State.ContentChecksum : State.Done;
            break;
          }
          const size = word & ~BLOCK_UNCOMPRESSED_BIT;
          if (size > this.blockMax) {
            throw new CorruptDataError(
              `corrupt LZ4 frame: block of ${size} bytes is larger than the frame's maximum block size ${this.blockMax}`,
            );
          }
          this.blockWord = word;
          this.state = State.BlockData;
          break;
        }
        case State.BlockData: {
          const size = this.blockWord & ~BLOCK_UNCOMPRESSED_BIT;
          const stored = (this.blockWord & BLOCK_UNCOMPRESSED_BIT) !== 0;
          if (this.buffered < size + (this.blockChecksum ? 4 : 0)) return;
          // Native decoding wants the data behind a 4-byte size prefix, in a buffer of its own.
          const prefix = stored ? 0 : 4;
          const data = this.takeBytes(size, prefix);
          if (this.blockChecksum) {
            const expected = this.readU32();
            const actual = xxh32(data.subarray(prefix));
            if (actual !== expected) {
              throw new CorruptDataError(`LZ4 block checksum mismatch: stored 0x${hex32(expected)}, computed 0x${hex32(actual)}`);
            }
          }
          await this.block(data, stored);
          this.state = State.BlockSize;
          break;
        }
        case State.ContentChecksum: {
          if (this.buffered < 4) return;
          const expected = this.readU32();
          const actual = this.contentHash!.digest();
          if (actual !== expected) {
            throw new CorruptDataError(`LZ4 content checksum mismatch: stored 0x${hex32(expected)}, computed 0x${hex32(actual)}`);
          }
          this.state = State.Done;
          break;
        }
        case State.Done: {
          this.chunks = [];
          this.offset = 0;
          this.buffered = 0;
          return;
        }
      }
    }
  }

  private parseDescriptor(d: Buffer): void {
    const flg = d[0]!;
    const bd = d[1]!;
    if ((flg & FLG_VERSION_MASK) !== FLG_VERSION_01) {
      throw new CorruptDataError(`unsupported LZ4 frame version ${flg >>> 6} (expected 1)`);
    }
    if (flg & FLG_RESERVED || bd & 0x8f) {
      throw new CorruptDataError('corrupt LZ4 frame descriptor: reserved bits are set');
    }
    const index = (bd >>> 4) & 7;
    const blockMax = LZ4_BLOCK_SIZES[index - 4];
    if (blockMax === undefined) {
      throw new CorruptDataError(`corrupt LZ4 frame descriptor: invalid block maximum size index ${index}`);
    }
    const expected = d[d.length - 1]!;
    const actual = (xxh32(d.subarray(0, d.length - 1)) >>> 8) & 0xff;
    if (actual !== expected) {
      throw new CorruptDataError(`LZ4 frame header checksum mismatch: stored 0x${hex8(expected)}, computed 0x${hex8(actual)}`);
    }
    if (flg & FLG_DICT_ID) {
      // Neither Litestream nor pierrec/lz4 use dictionaries; without it the data cannot be decoded.
      const dictId = d.readUInt32LE(flg & FLG_CONTENT_SIZE ? 10 : 2);
      throw new CorruptDataError(`unsupported LZ4 frame: it needs dictionary 0x${hex32(dictId)}`);
    }
    this.blockMax = blockMax;
    this.independent = (flg & FLG_BLOCK_INDEPENDENCE) !== 0;
    this.blockChecksum = (flg & FLG_BLOCK_CHECKSUM) !== 0;
    this.contentSize = flg & FLG_CONTENT_SIZE ? d.readBigUInt64LE(2) : null;
    this.contentHash = flg & FLG_CONTENT_CHECKSUM ? new XxHash32() : null;
  }

  /** Decodes one block, verifies what can be verified so far and pushes its output. */
  private async block(data: Buffer, stored: boolean): Promise<void> {
    let output: Buffer;
    if (stored) {
      output = data;
    } else {
      // Walking the sequence headers first gives the exact output size: the output buffer is
      // allocated exactly (no 4 MiB buffer for a 4 KiB block) and oversized blocks fail early.
      const size = lz4BlockDecodedSize(data, 4, data.length, this.blockMax);
      if (size === 0) output = Buffer.alloc(0);
      else output = this.decodeNative(data, size);
    }
    if (!this.independent) this.updateHistory(output);
    await this.pushOutput(output);
  }

  /** `data` holds the compressed block after 4 spare bytes. */
  private decodeNative(data: Buffer, size: number): Buffer {
    data.writeUInt32LE(size, 0); // lz4-napi's size prefix: the exact output size
    let output: Buffer;
    try {
      output = this.independent ? uncompressSync(data) : uncompressSync(data, this.history);
    } catch (err) {
      throw new CorruptDataError(`corrupt LZ4 block: ${(err as Error).message}`, { cause: err });
    }
    if (output.length !== size) {
      throw new CorruptDataError(`corrupt LZ4 block: decoded ${output.length} bytes, expected ${size}`);
    }
    return output;
  }

  /** Keeps the last 64 KiB of output (history + `output`) as the window for the next block. */
  private updateHistory(output: Buffer): void {
    if (output.length >= LZ4_WINDOW_SIZE) {
      this.history = Buffer.from(output.subarray(output.length - LZ4_WINDOW_SIZE));
      return;
    }
    const keep = Math.min(this.history.length, LZ4_WINDOW_SIZE - output.length);
    this.history = Buffer.concat([this.history.subarray(this.history.length - keep), output]);
  }

  /** Accounts for one block's output (content size, checksum) and pushes it, with backpressure. */
  private async pushOutput(output: Buffer): Promise<void> {
    if (output.length === 0) return;
    this.produced += output.length;
    if (this.contentSize !== null && BigInt(this.produced) > this.contentSize) {
      throw new CorruptDataError(`LZ4 content size mismatch: frame declares ${this.contentSize} bytes but holds more`);
    }
    this.contentHash?.update(output);
    await this.pushAndWait(output);
  }

  private checkContentSize(): void {
    if (this.contentSize !== null && BigInt(this.produced) !== this.contentSize) {
      throw new CorruptDataError(`LZ4 content size mismatch: frame declares ${this.contentSize} bytes, decoded ${this.produced}`);
    }
  }

  // ---- input queue -------------------------------------------------------------------------

  private peekByte(i: number): number {
    let off = this.offset + i;
    for (const chunk of this.chunks) {
      if (off < chunk.length) return chunk[off]!;
      off -= chunk.length;
    }
    throw new Error('peekByte beyond buffered input');
  }

  private readU32(): number {
    const first = this.chunks[0]!;
    if (first.length - this.offset >= 4) {
      const v = first.readUInt32LE(this.offset);
      this.advance(4);
      return v;
    }
    return this.takeBytes(4).readUInt32LE(0);
  }

  /**
   * Removes `n` buffered bytes and returns them contiguous, after `prefix` spare bytes.
   * Without a prefix, bytes within one input chunk are returned as a view (no copy).
   */
  private takeBytes(n: number, prefix = 0): Buffer {
    const first = this.chunks[0];
    if (prefix === 0 && first !== undefined && first.length - this.offset >= n) {
      const view = first.subarray(this.offset, this.offset + n);
      this.advance(n);
      return view;
    }
    const out = Buffer.allocUnsafe(prefix + n);
    let p = prefix;
    while (p < out.length) {
      const chunk = this.chunks[0]!;
      const k = Math.min(chunk.length - this.offset, out.length - p);
      chunk.copy(out, p, this.offset, this.offset + k);
      p += k;
      this.advance(k);
    }
    return out;
  }

  /** Drops up to `n` buffered bytes; returns how many were dropped. */
  private discard(n: number): number {
    let dropped = 0;
    while (dropped < n && this.buffered > 0) {
      const chunk = this.chunks[0]!;
      const k = Math.min(chunk.length - this.offset, n - dropped);
      this.advance(k);
      dropped += k;
    }
    return dropped;
  }

  private advance(k: number): void {
    this.offset += k;
    this.buffered -= k;
    if (this.offset === this.chunks[0]!.length) {
      this.chunks.shift();
      this.offset = 0;
    }
  }
}

function describe(state: State): string {
  switch (state) {
    case State.Magic:
      return 'inside the magic number';
    case State.SkipSize:
    case State.Skip:
      return 'inside a skippable frame';
    case State.Descriptor:
      return 'inside the frame descriptor';
    case State.BlockSize:
      return 'before the end mark';
    case State.BlockData:
      return 'inside a data block';
    case State.ContentChecksum:
      return 'before the content checksum';
    default:
      return 'unexpectedly';
  }
}

function hex32(n: number): string {
  return (n >>> 0).toString(16).padStart(8, '0');
}

function hex8(n: number): string {
  return n.toString(16).padStart(2, '0');
}
