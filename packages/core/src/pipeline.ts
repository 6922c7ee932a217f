import { PassThrough, pipeline, type Readable, type Transform } from 'node:stream';
import { createLz4FrameDecoder, createLz4FrameEncoder } from './lz4/index.js';

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
