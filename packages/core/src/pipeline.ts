import { PassThrough, pipeline, Readable, type Transform } from 'node:stream';
import { type ByteSource, CHUNK_RECYCLER, createLz4FrameDecoder, createLz4FrameEncoder, createLz4FrameSourceEncoder } from './lz4/index.js';

export type { ByteSource } from './lz4/index.js';

/**
 * One reversible stage of the object pipeline. Objects are written as
 * `raw bytes → stage[0].encode → stage[1].encode → … → storage` and read back in reverse.
 * LZ4 framing is the first stage; encryption (age) can be appended as another stage.
 */
export interface ObjectStage {
  readonly name: string;
  /** A fresh transform that encodes one object. */
  encoder(): Transform;
  /** A fresh transform that decodes one object; errors with CorruptDataError on bad input. */
  decoder(): Transform;
  /**
   * Optional, for a first stage: encodes one object read straight from `source`, without
   * chunks of its own in between (see {@link encodeSource}). Must produce the same bytes as
   * `encoder()` fed with the source's bytes.
   */
  sourceEncoder?(source: ByteSource): Readable;
}

/**
 * LZ4 framing as Litestream v0.3 writes it: one standard LZ4 frame per object, 4 MiB independent
 * blocks, xxHash32 content checksum (header `04 22 4D 18 64 70 B9`). The decoder reads any
 * standard LZ4 frame and fails with `CorruptDataError` on a bad one.
 */
export const lz4Stage: ObjectStage = {
  name: 'lz4',
  encoder: () => createLz4FrameEncoder(),
  decoder: () => createLz4FrameDecoder(),
  sourceEncoder: (source) => createLz4FrameSourceEncoder(source),
};

/** The stages of a replica without encryption: `[lz4Stage]`. Returns a new array each call. */
export function defaultStages(): ObjectStage[] {
  return [lz4Stage];
}

/**
 * Encodes one object for storage: `source` piped through each stage's encoder in order.
 *
 * Returns the readable end of the chain. An error anywhere (the source, a stage) destroys every
 * stream of the chain and is emitted as `'error'` on the returned stream; destroying the returned
 * stream destroys `source` as well. Memory is bounded by the stages (about three 4 MiB blocks
 * for LZ4).
 *
 * @param stages defaults to {@link defaultStages}; an empty list passes bytes through unchanged.
 */
export function encodeObject(source: Readable, stages: readonly ObjectStage[] = defaultStages()): Readable {
  return chain(
    source,
    stages.map((stage) => stage.encoder()),
  );
}

/**
 * Encodes one object whose bytes are read from `source` (a snapshot's database file), like
 * {@link encodeObject} of the same bytes. When the first stage has a `sourceEncoder` (LZ4 does)
 * it reads the source itself, into buffers it reuses; otherwise the source is read in fresh
 * 1 MiB chunks. When the stream is the last stage's (no stage follows LZ4), its consumer may
 * take up {@link chunkRecycler}.
 */
export function encodeSource(source: ByteSource, stages: readonly ObjectStage[] = defaultStages()): Readable {
  const [first, ...rest] = stages;
  if (first?.sourceEncoder) {
    const head = first.sourceEncoder(source);
    return rest.length === 0
      ? head
      : chain(
          head,
          rest.map((stage) => stage.encoder()),
        );
  }
  return encodeObject(Readable.from(readChunks(source), { objectMode: false }), stages);
}

async function* readChunks(source: ByteSource): AsyncGenerator<Buffer> {
  for (;;) {
    const buf = Buffer.allocUnsafe(SOURCE_CHUNK);
    const n = await source.read(buf, 0, SOURCE_CHUNK);
    if (n <= 0) return;
    yield n === SOURCE_CHUNK ? buf : buf.subarray(0, n);
  }
}

const SOURCE_CHUNK = 1024 * 1024;

/**
 * For the consumer of an object body (a replica client storing it, a stream crossing to
 * another thread): takes up the body's offer to recycle its chunks, when it makes one
 * ({@link encodeSource} with LZ4 last does). Returns `release`, or undefined when there is no
 * offer (then nothing changes). After taking it up, the consumer must call `release(chunk)`
 * once for every chunk it read, as soon as it no longer needs the chunk's bytes (e.g. once they
 * are written or copied); the body then writes later chunks into those same buffers. A chunk
 * must not be touched after its release. Never releasing is safe, only not economical. Until
 * its release the consumer owns the chunk's whole ArrayBuffer: it may transfer it to another
 * thread (postMessage), and release instead the buffer that comes back for it (a new object
 * over memory at least as large), which the body then adopts.
 *
 * Why: a snapshot streams the whole database; with a fresh buffer per block the garbage
 * collector lets some tens of MB of spent blocks pile up before it frees them, per thread.
 */
export function chunkRecycler(body: Readable): ((chunk: Uint8Array) => void) | undefined {
  const offer = (body as unknown as Record<typeof CHUNK_RECYCLER, unknown>)[CHUNK_RECYCLER];
  return typeof offer === 'function' ? (offer as () => (chunk: Uint8Array) => void).call(body) : undefined;
}

/**
 * Decodes one stored object: `stored` piped through each stage's decoder in reverse order.
 *
 * Returns the readable end of the chain, which yields the original bytes. Corrupt input is
 * reported as a `CorruptDataError` emitted as `'error'` on the returned stream (e.g. a bad LZ4
 * magic number, checksum mismatch or truncated frame); any error destroys the whole chain,
 * including `stored`.
 *
 * @param stages the stages the object was encoded with; defaults to {@link defaultStages}.
 */
export function decodeObject(stored: Readable, stages: readonly ObjectStage[] = defaultStages()): Readable {
  return chain(
    stored,
    [...stages].reverse().map((stage) => stage.decoder()),
  );
}

function chain(source: Readable, transforms: Transform[]): Readable {
  const streams: Transform[] = transforms.length > 0 ? transforms : [new PassThrough()];
  // pipeline() destroys every stream with the first error, so the returned (last) stream emits
  // it; its callback has nothing left to do.
  pipeline([source, ...streams], () => undefined);
  return streams[streams.length - 1]!;
}
