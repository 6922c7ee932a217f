import type { Transform } from 'node:stream';
import { AsyncTransform } from './async-transform.js';
import { compress } from 'lz4-napi';
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

/** Blocks compressing on the libuv threadpool at once; more gains nothing on 2 cores. */
const MAX_IN_FLIGHT = 2;

interface PendingBlock {
  /** The uncompressed block; kept until its compression finished. */
  readonly block: Buffer;
  readonly length: number;
  /** lz4-napi output: 4-byte LE uncompressed size, then the raw LZ4 block. */
  readonly compressed: Promise<Buffer>;
}

/**
 * The 7-byte header of the frames this encoder writes: magic, FLG, BD, header checksum.
 * With the defaults it is `04 22 4D 18 64 70 B9`, byte-identical to Litestream v0.3.
 */
export function lz4FrameHeader(blockSize: Lz4BlockSize = 4194304, contentChecksum = true): Buffer {
  const bd = LZ4_BLOCK_SIZES.indexOf(blockSize) + 4;
  if (bd < 4) {
    throw new InvalidArgumentError(
      `invalid LZ4 block size ${String(blockSize)}: use 65536, 262144, 1048576 or 4194304`,
    );
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
 * Input is cut into blocks of `blockSize` bytes; each block is compressed with lz4-napi's async
 * `compress` on the libuv threadpool (at most two at once) while the main thread hashes it, and is
 * stored uncompressed when compression does not shrink it. Output order always follows input
 * order, and output respects backpressure. Memory: three input blocks (reused) plus up to two
 * compressed outputs. (lz4-napi's outputs keep a worst-case-sized allocation that V8 does not see,
 * so RSS runs some tens of MB above that until the garbage collector frees them.) Empty input
 * yields a valid empty frame.
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
  /** Block being filled, and how many bytes it holds. */
  private current: Buffer | null = null;
  private fill = 0;
  /** Blocks submitted for compression, oldest first. */
  private readonly pending: PendingBlock[] = [];
  /** Block buffers whose compression finished and that can be reused. */
  private readonly free: Buffer[] = [];

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
    let p = 0;
    while (p < chunk.length) {
      if (this.current === null) {
        this.current = this.free.pop() ?? Buffer.allocUnsafe(this.blockSize);
        this.fill = 0;
      }
      const n = Math.min(this.blockSize - this.fill, chunk.length - p);
      chunk.copy(this.current, this.fill, p, p + n);
      this.fill += n;
      p += n;
      if (this.fill === this.blockSize) {
        this.submit();
        if (this.pending.length >= MAX_IN_FLIGHT) await this.emitOldest();
      }
    }
  }

  protected override async flushAsync(): Promise<void> {
    this.writeHeader();
    if (this.current !== null && this.fill > 0) this.submit();
    this.current = null;
    while (this.pending.length > 0) await this.emitOldest();
    const trailer = Buffer.alloc(this.hash ? 8 : 4); // end mark 00000000 (+ content checksum)
    if (this.hash) trailer.writeUInt32LE(this.hash.digest(), 4);
    this.push(trailer);
  }

  private writeHeader(): void {
    if (this.headerWritten) return;
    this.headerWritten = true;
    this.push(this.header);
  }

  /** Starts compressing the current block on the threadpool and hashes it meanwhile. */
  private submit(): void {
    const block = this.current!;
    const length = this.fill;
    const data = length === block.length ? block : block.subarray(0, length);
    const compressed = compress(data);
    // The rejection is observed in emitOldest; this only avoids an unhandled rejection when the
    // stream is destroyed before that.
    compressed.catch(() => undefined);
    this.pending.push({ block, length, compressed });
    this.current = null;
    this.fill = 0;
    this.hash?.update(data);
  }

  /** Waits for the oldest pending block and pushes it as a size word plus payload. */
  private async emitOldest(): Promise<void> {
    const { block, length, compressed } = this.pending[0]!;
    const out = await compressed;
    this.pending.shift();
    const compressedLength = out.length - 4;
    if (compressedLength < length) {
      out.writeUInt32LE(compressedLength, 0); // replaces lz4-napi's uncompressed-size prefix
      this.free.push(block);
      await this.pushAndWait(out);
    } else {
      // Incompressible: store it. The block buffer is handed downstream and not reused.
      const word = Buffer.allocUnsafe(4);
      word.writeUInt32LE((length | BLOCK_UNCOMPRESSED_BIT) >>> 0, 0);
      this.push(word);
      await this.pushAndWait(block.subarray(0, length));
    }
  }
}
