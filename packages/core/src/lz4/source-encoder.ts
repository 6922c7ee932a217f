import { Readable } from 'node:stream';
import { createLz4HashTable, encodeLz4Block } from './block-encoder.js';
import { lz4FrameHeader, type Lz4FrameEncoderOptions } from './frame-encoder.js';
import { BLOCK_UNCOMPRESSED_BIT } from './frame.js';
import { XxHash32 } from './xxhash32.js';

/**
 * Bytes that can be read, in order, straight into a caller's buffer (e.g. the database file
 * during a snapshot). Reading into the encoder's own block buffer spares a chunk allocation
 * and a copy per block.
 */
export interface ByteSource {
  /**
   * Reads up to `length` next bytes into `buf` at `offset`; resolves the number read, which is
   * `length` except at the end; 0 means the end.
   */
  read(buf: Buffer, offset: number, length: number): Promise<number>;
}

/**
 * The key of a stream's chunk-recycling offer (see `chunkRecycler` in pipeline.ts). A stream
 * with a function under this key lets its consumer opt in to handing every chunk back once it
 * no longer needs its bytes; the stream then reuses those buffers instead of allocating new
 * ones. `Symbol.for`, so that every copy of walship (and a client package) agrees on it.
 */
export const CHUNK_RECYCLER: unique symbol = Symbol.for('walship.chunkRecycler') as never;

/**
 * One LZ4 frame, exactly as `createLz4FrameEncoder` writes it, of everything `source` reads.
 * Blocks are read straight into a reused buffer and compressed with walship's block compressor.
 *
 * Memory, whatever the size of the source: the block buffer, one compression buffer and the
 * output the consumer has not taken yet (the stream reads ahead by at most one block). Each
 * output block is a Buffer of its own, of its exact size, unless the consumer opted in to
 * recycling (`chunkRecycler`): then blocks are compressed straight into a few reused buffers and
 * nothing is allocated per block — no garbage for the collector to catch up with. A recycling
 * consumer owns each chunk's whole ArrayBuffer until it releases the chunk, so it may transfer
 * the buffer to another thread and release the one that comes back in its place (at least as
 * large; it is adopted into the pool).
 */
export function createLz4FrameSourceEncoder(source: ByteSource, options: Lz4FrameEncoderOptions = {}): Readable {
  return new Lz4SourceEncoder(source, options);
}

/**
 * Free output buffers a recycling encoder keeps at most. It needs two or three in all (one being
 * filled, one or two the consumer holds), a few more while the consumer is slow to release. Spares
 * are kept rather than dropped: a dropped buffer is garbage, and one that came back from another
 * thread is garbage the collector does not even count (V8 does not account transferred-in memory),
 * so it can pile up.
 */
const MAX_FREE = 6;

class Lz4SourceEncoder extends Readable {
  readonly #source: ByteSource;
  readonly #blockSize: number;
  readonly #header: Buffer;
  readonly #hash: XxHash32 | null;
  #started = false;
  #busy = false;
  /** `_read` was called while a block was being produced. */
  #wanted = false;
  #ended = false;
  #block: Buffer | null = null;
  #scratch: Buffer | null = null;
  #table: Int32Array | null = null;
  /** Recycling: on once the consumer opted in; free output buffers; every buffer of the pool. */
  #recycling = false;
  readonly #free: Buffer[] = [];
  readonly #pool = new Map<ArrayBufferLike, Buffer>();

  constructor(source: ByteSource, options: Lz4FrameEncoderOptions) {
    // One byte of high-water mark: a block is produced only once the previous one was taken.
    super({ highWaterMark: 1 });
    const blockSize = options.blockSize ?? 4194304;
    const contentChecksum = options.contentChecksum ?? true;
    this.#header = lz4FrameHeader(blockSize, contentChecksum);
    this.#blockSize = blockSize;
    this.#hash = contentChecksum ? new XxHash32() : null;
    this.#source = source;
  }

  /** The offer `chunkRecycler` takes up: switches to pooled outputs and returns the release function. */
  [CHUNK_RECYCLER](): (chunk: Uint8Array) => void {
    this.#recycling = true;
    const size = 4 + this.#blockSize;
    return (chunk) => {
      if (this.destroyed) return;
      const ab = chunk.buffer;
      if (this.#free.length >= MAX_FREE) {
        this.#pool.delete(ab); // enough spares: let this one go
        return;
      }
      let buf = this.#pool.get(ab);
      if (buf === undefined) {
        // A buffer that stands in for one the consumer transferred away (to another thread)
        // and got back as a new object: adopt it, and forget the detached originals.
        if (ab.byteLength < size) return;
        for (const key of this.#pool.keys()) if (key.byteLength === 0) this.#pool.delete(key);
        buf = Buffer.from(ab, 0, size);
        this.#pool.set(ab, buf);
      }
      // Each pooled buffer is handed out once at a time; a chunk released twice is not pooled twice.
      if (!this.#free.includes(buf)) this.#free.push(buf);
    };
  }

  override _read(): void {
    if (this.#busy) {
      this.#wanted = true;
      return;
    }
    void this.#run();
  }

  async #run(): Promise<void> {
    this.#busy = true;
    try {
      do {
        this.#wanted = false;
        await this.#produce();
      } while (this.#wanted && !this.#ended && !this.destroyed);
    } catch (err) {
      this.destroy(err as Error);
    } finally {
      this.#busy = false;
    }
  }

  override _destroy(err: Error | null, callback: (error?: Error | null) => void): void {
    this.#block = this.#scratch = null;
    this.#table = null;
    this.#free.length = 0;
    this.#pool.clear();
    callback(err);
  }

  /** Produces blocks until the consumer has enough (push returns false) or the source ends. */
  async #produce(): Promise<void> {
    if (this.#ended) return;
    if (!this.#started) {
      this.#started = true;
      if (!this.push(this.#header)) return;
    }
    const blockSize = this.#blockSize;
    for (;;) {
      this.#block ??= Buffer.allocUnsafe(blockSize);
      const block = this.#block;
      let fill = 0;
      while (fill < blockSize) {
        const n = await this.#source.read(block, fill, blockSize - fill);
        if (this.destroyed) return;
        if (n <= 0) break;
        fill += n;
      }
      const more = fill > 0 ? this.push(this.#encode(block, fill)) : true;
      if (fill < blockSize) {
        const trailer = Buffer.alloc(this.#hash ? 8 : 4); // end mark 00000000 (+ content checksum)
        if (this.#hash) trailer.writeUInt32LE(this.#hash.digest(), 4);
        this.#ended = true;
        this.push(trailer);
        this.push(null);
        this.#block = this.#scratch = null;
        this.#table = null;
        return;
      }
      if (!more) return;
    }
  }

  /** One block as its size word plus payload, stored uncompressed when compression does not shrink it. */
  #encode(block: Buffer, length: number): Buffer {
    this.#hash?.update(block.subarray(0, length));
    this.#table ??= createLz4HashTable();
    if (this.#recycling) {
      let out = this.#free.pop();
      if (out === undefined) {
        out = Buffer.allocUnsafe(4 + this.#blockSize);
        this.#pool.set(out.buffer, out);
      }
      // At most length - 1 bytes of payload: a block that does not shrink is stored.
      const end = encodeLz4Block(block, 0, length, out, 4, 4 + length - 1, this.#table);
      if (end > 0) {
        out.writeUInt32LE(end - 4, 0);
        return out.subarray(0, end);
      }
      out.writeUInt32LE((length | BLOCK_UNCOMPRESSED_BIT) >>> 0, 0);
      block.copy(out, 4, 0, length);
      return out.subarray(0, 4 + length);
    }
    this.#scratch ??= Buffer.allocUnsafe(this.#blockSize);
    const compressed = encodeLz4Block(block, 0, length, this.#scratch, 0, length - 1, this.#table);
    if (compressed > 0) {
      const out = Buffer.allocUnsafe(4 + compressed);
      out.writeUInt32LE(compressed, 0);
      this.#scratch.copy(out, 4, 0, compressed);
      return out;
    }
    const out = Buffer.allocUnsafe(4 + length);
    out.writeUInt32LE((length | BLOCK_UNCOMPRESSED_BIT) >>> 0, 0);
    block.copy(out, 4, 0, length);
    return out;
  }
}
