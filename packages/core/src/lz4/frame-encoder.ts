import type { Transform } from 'node:stream';
import { AsyncTransform } from './async-transform.js';
import { createLz4HashTable, encodeLz4Block } from './block-encoder.js';
import { InvalidArgumentError } from '../errors.js';
import {
  BLOCK_UNCOMPRESSED_BIT,
  FLG_BLOCK_INDEPENDENCE,
  FLG_CONTENT_CHECKSUM,
  FLG_VERSION_01,
  LZ4_BLOCK_SIZES,
  LZ4_FRAME_MAGIC,
  type Lz4BlockSize,
} from './frame.js';
import { XxHash32, xxh32 } from './xxhash32.js';

/** Options of {@link createLz4FrameEncoder}. */
export interface Lz4FrameEncoderOptions {
  /**
   * Maximum uncompressed size of one block: 64 KiB, 256 KiB, 1 MiB or 4 MiB.
   * Default 4 MiB (what Litestream v0.3 writes). Memory use is about three blocks.
   */
  blockSize?: Lz4BlockSize;
  /** Append the xxHash32 of the uncompressed content after the end mark. Default true. */
  contentChecksum?: boolean;
}

/**
 * The 7-byte header of the frames this encoder writes: magic, FLG, BD, header checksum.
 * With the defaults it is `04 22 4D 18 64 70 B9`, byte-identical to Litestream v0.3.
 */
export function lz4FrameHeader(blockSize: Lz4BlockSize = 4194304, contentChecksum = true): Buffer {
  const bd = LZ4_BLOCK_SIZES.indexOf(blockSize) + 4;
  if (bd < 4) {
    throw new InvalidArgumentError(`invalid LZ4 block size ${String(blockSize)}: use 65536, 262144, 1048576 or 4194304`);
  }
  const header = Buffer.alloc(7);
  header.writeUInt32LE(LZ4_FRAME_MAGIC, 0);
  header[4] = FLG_VERSION_01 | FLG_BLOCK_INDEPENDENCE | (contentChecksum ? FLG_CONTENT_CHECKSUM : 0);
  header[5] = bd << 4;
  header[6] = (xxh32(header.subarray(4, 6)) >>> 8) & 0xff;
  return header;
}

/**
 * A transform that compresses its input into exactly one standard LZ4 frame (magic
 * `0x184D2204`, version 01, independent blocks, no block checksums, no content size, content
 * checksum on by default) — the format Litestream v0.3 (pierrec/lz4 v4) reads and writes.
 *
 * Input is cut into blocks of `blockSize` bytes; each block is compressed on the calling thread
 * by walship's own LZ4 block compressor (`block-encoder.ts`, about half the speed of lz4-napi's
 * native one, the same ratio) and is stored uncompressed when compression does not shrink it.
 * Each block goes out as one Buffer of its exact size (size word plus payload), and output
 * respects backpressure. Memory: the block being filled and one compression buffer, both reused,
 * plus the output block the consumer has not read yet — about three blocks, whatever the input
 * size. Nothing is allocated outside the JavaScript heap's view (lz4-napi's `compress` is not
 * used: its worst-case-sized outputs, allocated by mimalloc on libuv threads and freed on the
 * main thread, stayed resident — RSS reached ~900 MiB after 1 GiB of incompressible input).
 * Empty input yields a valid empty frame.
 *
 * @throws InvalidArgumentError (synchronously) when `blockSize` is not one of the four allowed sizes.
 */
export function createLz4FrameEncoder(options: Lz4FrameEncoderOptions = {}): Transform {
  return new Lz4FrameEncoder(options);
}

class Lz4FrameEncoder extends AsyncTransform {
  private readonly blockSize: number;
  private readonly header: Buffer;
  private readonly hash: XxHash32 | null;
  private headerWritten = false;
  /** Block being filled (reused), and how many bytes it holds. */
  private block: Buffer | null = null;
  private fill = 0;
  /** Compressed output of one block (reused; copied out at its exact size). */
  private scratch: Buffer | null = null;
  private table: Int32Array | null = null;

  constructor(options: Lz4FrameEncoderOptions) {
    super();
    const blockSize = options.blockSize ?? 4194304;
    const contentChecksum = options.contentChecksum ?? true;
    this.header = lz4FrameHeader(blockSize, contentChecksum);
    this.blockSize = blockSize;
    this.hash = contentChecksum ? new XxHash32() : null;
  }

  protected override async transformAsync(chunk: Buffer): Promise<void> {
    this.writeHeader();
    const blockSize = this.blockSize;
    let p = 0;
    while (p < chunk.length) {
      if (this.fill === 0 && chunk.length - p >= blockSize) {
        // A whole block in the chunk: compress it from there, without copying it first.
        await this.emitBlock(chunk, p, p + blockSize);
        p += blockSize;
        continue;
      }
      this.block ??= Buffer.allocUnsafe(blockSize);
      const n = Math.min(blockSize - this.fill, chunk.length - p);
      chunk.copy(this.block, this.fill, p, p + n);
      this.fill += n;
      p += n;
      if (this.fill === blockSize) {
        this.fill = 0;
        await this.emitBlock(this.block, 0, blockSize);
      }
    }
  }

  protected override async flushAsync(): Promise<void> {
    this.writeHeader();
    if (this.fill > 0) {
      const n = this.fill;
      this.fill = 0;
      await this.emitBlock(this.block!, 0, n);
    }
    this.block = null;
    this.scratch = null;
    this.table = null;
    const trailer = Buffer.alloc(this.hash ? 8 : 4); // end mark 00000000 (+ content checksum)
    if (this.hash) trailer.writeUInt32LE(this.hash.digest(), 4);
    this.push(trailer);
  }

  override _destroy(err: Error | null, callback: (error?: Error | null) => void): void {
    this.block = null;
    this.scratch = null;
    this.table = null;
    super._destroy(err, callback);
  }

  private writeHeader(): void {
    if (this.headerWritten) return;
    this.headerWritten = true;
    this.push(this.header);
  }

  /**
   * Compresses `src[start, end)` (one block) and pushes it as a size word plus payload, stored
   * uncompressed when compression does not make it smaller. `src` may be reused once this
   * returns: the pushed Buffer is a copy.
   */
  private async emitBlock(src: Buffer, start: number, end: number): Promise<void> {
    const length = end - start;
    this.hash?.update(src.subarray(start, end));
    this.scratch ??= Buffer.allocUnsafe(this.blockSize);
    this.table ??= createLz4HashTable();
    // At most length - 1 bytes: a block that does not shrink is stored.
    const compressed = encodeLz4Block(src, start, end, this.scratch, 0, length - 1, this.table);
    let out: Buffer;
    if (compressed > 0) {
      out = Buffer.allocUnsafe(4 + compressed);
      out.writeUInt32LE(compressed, 0);
      this.scratch.copy(out, 4, 0, compressed);
    } else {
      out = Buffer.allocUnsafe(4 + length);
      out.writeUInt32LE((length | BLOCK_UNCOMPRESSED_BIT) >>> 0, 0);
      src.copy(out, 4, start, end);
    }
    await this.pushAndWait(out);
  }
}
