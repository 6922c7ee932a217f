import { Transform, type TransformCallback } from 'node:stream';

/**
 * A Transform whose work is asynchronous. Subclasses implement `transformAsync` and
 * `flushAsync` and emit through `pushAndWait`, which waits for the consumer to read when the
 * readable side is full — so a stage never runs more than its buffers ahead of a slow reader.
 */
export abstract class AsyncTransform extends Transform {
  #readWaiter: (() => void) | null = null;

  protected abstract transformAsync(chunk: Buffer): Promise<void>;
  protected abstract flushAsync(): Promise<void>;

  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    this.transformAsync(chunk).then(() => callback(), callback);
  }

  override _flush(callback: TransformCallback): void {
    this.flushAsync().then(() => callback(), callback);
  }

  override _read(size: number): void {
    const waiter = this.#readWaiter;
    if (waiter !== null) {
      this.#readWaiter = null;
      waiter();
    }
    super._read(size);
  }

  /** Pushes `chunk`; when the readable side is full, resolves once the consumer reads. */
  protected async pushAndWait(chunk: Buffer): Promise<void> {
    if (this.push(chunk)) return;
    await new Promise<void>((resolve) => {
      this.#readWaiter = resolve;
    });
  }
}
