import type { Readable, Transform } from 'node:stream';

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
