import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { PassThrough, Readable, Transform, type TransformCallback } from 'node:stream';
import { finished } from 'node:stream/promises';
import { describe, test } from 'node:test';
import { CorruptDataError } from '../src/errors.js';
import { decodeObject, defaultStages, encodeObject, lz4Stage, type ObjectStage } from '../src/pipeline.js';

const haveLz4Cli = spawnSync('lz4', ['--version']).status === 0;
const lz4Skip = haveLz4Cli || process.env.CI === 'true' ? false : 'lz4 CLI not found: install it (apt-get install lz4)';

async function collect(readable: Readable): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const chunk of readable) parts.push(chunk as Buffer);
  return Buffer.concat(parts);
}

function source(data: Buffer, chunkSize = 65536): Readable {
  return Readable.from(
    (function* () {
      for (let p = 0; p < data.length; p += chunkSize) yield data.subarray(p, p + chunkSize);
    })(),
  );
}

/** A reversible test stage: XOR with a key byte, and a tag prepended so the order is observable. */
function xorStage(name: string, key: number): ObjectStage {
  const xor = (tag: 'enc' | 'dec'): Transform => {
    let first = true;
    return new Transform({
      transform(chunk: Buffer, _encoding, callback: TransformCallback) {
        let data = chunk;
        if (first && tag === 'dec') {
          if (data[0] !== key) {
            callback(new CorruptDataError(`${name}: missing tag`));
            return;
          }
          data = data.subarray(1);
        }
        const out = Buffer.alloc(data.length);
        for (let i = 0; i < data.length; i++) out[i] = data[i]! ^ key;
        if (first && tag === 'enc') this.push(Buffer.from([key]));
        first = false;
        callback(null, out);
      },
      flush(callback) {
        if (first && tag === 'enc') this.push(Buffer.from([key])); // empty object still tagged
        callback();
      },
    });
  };
  return { name, encoder: () => xor('enc'), decoder: () => xor('dec') };
}

describe('object pipeline', () => {
  test('defaultStages is [lz4Stage], a fresh array each call', () => {
    assert.deepEqual(defaultStages(), [lz4Stage]);
    assert.notEqual(defaultStages(), defaultStages());
    assert.equal(lz4Stage.name, 'lz4');
  });

  test('encodeObject writes one Litestream-compatible LZ4 frame; decodeObject reads it back', async () => {
    const data = Buffer.concat([Buffer.alloc(5 * 1024 * 1024), randomBytes(100_000), Buffer.from('tail')]);
    const stored = await collect(encodeObject(source(data)));
    assert.deepEqual(stored.subarray(0, 7), Buffer.from([0x04, 0x22, 0x4d, 0x18, 0x64, 0x70, 0xb9]));
    assert.ok(stored.length < data.length / 4);
    assert.ok((await collect(decodeObject(source(stored, 1000)))).equals(data));
  });

  test('an empty object round-trips', async () => {
    const stored = await collect(encodeObject(Readable.from([])));
    assert.equal(stored.toString('hex'), '04224d186470b900000000055dcc02');
    assert.equal((await collect(decodeObject(source(stored)))).length, 0);
  });

  test('encoded objects decode with the lz4 CLI', { skip: lz4Skip }, async () => {
    const data = randomBytes(300_000);
    const stored = await collect(encodeObject(source(data)));
    const out = spawnSync('lz4', ['-d', '-c'], { input: stored, maxBuffer: 64 * 1024 * 1024 });
    assert.equal(out.status, 0);
    assert.ok(out.stdout.equals(data));
  });

  test('stages encode in order and decode in reverse order', async () => {
    const data = Buffer.from('hello, pipeline '.repeat(1000));
    const stages = [lz4Stage, xorStage('a', 0x11), xorStage('b', 0x22)];
    const stored = await collect(encodeObject(source(data, 777), stages));
    // Outermost is stage b: its tag first, then stage a's tag (both XORed by b).
    assert.equal(stored[0], 0x22);
    assert.equal(stored[1], 0x11 ^ 0x22);
    // Undoing b and a by hand leaves the LZ4 frame.
    const frame = Buffer.from(stored.subarray(2).map((x) => x ^ 0x22 ^ 0x11));
    assert.deepEqual(frame.subarray(0, 4), Buffer.from([0x04, 0x22, 0x4d, 0x18]));
    assert.ok((await collect(decodeObject(source(stored, 5), stages))).equals(data));
    // Decoding with the stages in the wrong order fails.
    await assert.rejects(collect(decodeObject(source(stored), [lz4Stage, xorStage('b', 0x22), xorStage('a', 0x11)])));
  });

  test('no stages: bytes pass through unchanged', async () => {
    const data = randomBytes(10_000);
    assert.ok((await collect(encodeObject(source(data), []))).equals(data));
    assert.ok((await collect(decodeObject(source(data), []))).equals(data));
  });

  test('corrupt stored data fails with CorruptDataError and destroys the source', async () => {
    const stored = source(Buffer.from('this is not an lz4 frame at all'));
    const decoded = decodeObject(stored);
    await assert.rejects(collect(decoded), (err: unknown) => {
      assert.ok(err instanceof CorruptDataError);
      assert.match(err.message, /bad LZ4 magic number/);
      return true;
    });
    assert.ok(stored.destroyed, 'source destroyed');

    const frame = await collect(encodeObject(source(randomBytes(50_000))));
    await assert.rejects(collect(decodeObject(source(frame.subarray(0, frame.length - 3)))), /truncated LZ4 frame/);
  });

  test('a source error propagates to the encoded stream and destroys every stage', async () => {
    const input = new PassThrough();
    const encoder = lz4Stage.encoder();
    const stage: ObjectStage = { name: 'spy', encoder: () => encoder, decoder: () => new PassThrough() };
    const encoded = encodeObject(input, [stage, xorStage('x', 0x01)]);
    const result = collect(encoded);
    input.write(randomBytes(1000));
    input.destroy(new Error('disk on fire'));
    await assert.rejects(result, /disk on fire/);
    assert.ok(encoder.destroyed, 'encoder destroyed');
    assert.ok(encoded.destroyed, 'output destroyed');
  });

  test('destroying the returned stream destroys the source', async () => {
    const input = new PassThrough();
    const decoded = decodeObject(input);
    decoded.destroy();
    await finished(input).catch(() => undefined);
    assert.ok(input.destroyed);
  });
});
