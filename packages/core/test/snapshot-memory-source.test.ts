import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { Readable, Transform } from 'node:stream';
import { describe, test } from 'node:test';
import { type ByteSource, chunkRecycler, decodeObject, encodeObject, encodeSource, lz4Stage, type ObjectStage } from '../src/pipeline.js';
import { createLz4HashTable, encodeLz4Block } from '../src/lz4/block-encoder.js';
import { uncompressSync } from 'lz4-napi';
import { prng } from './support/prng.js';

// The snapshot path of issue #12 §3: the database read straight into the LZ4 encoder's block
// (encodeSource), optionally with its output buffers recycled by the consumer (chunkRecycler),
// and walship's own block compressor. The frames must be exactly those of the stream encoder.

const MiB = 1024 * 1024;
const haveLz4Cli = spawnSync('lz4', ['--version']).status === 0;
const lz4Skip = haveLz4Cli || process.env.CI === 'true' ? false : 'lz4 CLI not found: install it (apt-get install lz4)';

/** Database-like data: 4 KiB pages, some random, some text, some zero. */
function mixed(length: number, seed = 1): Buffer {
  const rnd = prng(seed);
  const b = Buffer.alloc(length);
  for (let base = 0; base < length; base += 4096) {
    const kind = rnd() % 3;
    const end = Math.min(length, base + 4096);
    if (kind === 0) for (let i = base; i < end; i++) b[i] = rnd() & 0xff;
    else if (kind === 1) for (let p = base; p < end; ) p += b.write(`row ${rnd() % 1000} value ${rnd() % 97}; `, p);
  }
  return b;
}

/** A ByteSource over `data`, answering at most `maxRead` bytes per call. */
function bytes(data: Buffer, maxRead = Infinity): ByteSource & { reads: number } {
  let off = 0;
  const src = {
    reads: 0,
    async read(buf: Buffer, offset: number, length: number): Promise<number> {
      src.reads++;
      await new Promise((r) => setImmediate(r));
      const n = Math.min(length, data.length - off, maxRead);
      data.copy(buf, offset, off, off + n);
      off += n;
      return n;
    },
  };
  return src;
}

async function collect(
  body: Readable,
  recycle: 'no' | 'release' | 'keep' = 'no',
): Promise<{ data: Buffer; buffers: Set<ArrayBufferLike>; chunks: number }> {
  const release = recycle === 'no' ? undefined : chunkRecycler(body);
  const parts: Buffer[] = [];
  const buffers = new Set<ArrayBufferLike>();
  let chunks = 0;
  for await (const chunk of body as AsyncIterable<Buffer>) {
    chunks++;
    buffers.add(chunk.buffer);
    parts.push(Buffer.from(chunk)); // a copy: the chunk may be reused once released
    if (recycle === 'release') {
      release!(chunk);
      release!(chunk); // a second release of the same chunk is harmless
    }
  }
  return { data: Buffer.concat(parts), buffers, chunks };
}

async function decode(frame: Buffer): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const c of decodeObject(Readable.from([frame]))) parts.push(c as Buffer);
  return Buffer.concat(parts);
}

describe('encodeSource (LZ4 read from a ByteSource)', () => {
  const sizes = [0, 1, 13, 4 * MiB - 1, 4 * MiB, 4 * MiB + 1, 9 * MiB + 12345];
  for (const size of sizes) {
    test(`${size} bytes: the same frame as encodeObject, with and without recycling`, async () => {
      const data = mixed(size, size + 7);
      const expected = (await collect(encodeObject(Readable.from([data])))).data;
      for (const mode of ['no', 'release', 'keep'] as const) {
        const got = await collect(encodeSource(bytes(data, 1_000_003)), mode);
        assert.ok(got.data.equals(expected), `recycling ${mode}: frame differs`);
      }
      assert.ok((await decode(expected)).equals(data));
    });
  }

  test('released chunks are reused: a 40 MiB source needs only a few output buffers', async () => {
    const data = randomBytes(40 * MiB); // incompressible: every block stored, 4 MiB + 4 bytes
    const recycled = await collect(encodeSource(bytes(data)), 'release');
    const fresh = await collect(encodeSource(bytes(data)), 'no');
    assert.ok(recycled.data.equals(fresh.data));
    assert.ok((await decode(recycled.data)).equals(data));
    // header + 10 blocks + trailer; the blocks share at most 3 buffers when each is released.
    assert.equal(recycled.chunks, 12);
    assert.ok(recycled.buffers.size <= 3 + 2, `${recycled.buffers.size} distinct buffers`);
    assert.ok(fresh.buffers.size >= 10, 'without recycling every block is a Buffer of its own');
  });

  test('a recycling consumer may transfer chunk buffers away and release the ones that come back', async () => {
    const data = Buffer.concat([randomBytes(18 * MiB), mixed(7 * MiB, 5)]);
    const body = encodeSource(bytes(data));
    const release = chunkRecycler(body)!;
    const parts: Buffer[] = [];
    let detached = 0;
    for await (const chunk of body as AsyncIterable<Buffer>) {
      // What a thread hop does: the ArrayBuffer moves (the original is detached), and the
      // other side's buffer comes back as a new object over the same memory.
      const { byteOffset, length } = chunk;
      const moved = structuredClone(chunk.buffer, { transfer: [chunk.buffer as ArrayBuffer] });
      if (chunk.buffer.byteLength === 0) detached++;
      parts.push(Buffer.from(new Uint8Array(moved, byteOffset, length)));
      release(new Uint8Array(moved));
    }
    assert.ok(detached >= 7, 'the chunks were transferred');
    const frame = Buffer.concat(parts);
    assert.ok(frame.equals((await collect(encodeObject(Readable.from([data])))).data));
    assert.ok((await decode(frame)).equals(data));
  });

  test('reads ahead by at most one block (backpressure)', async () => {
    const data = mixed(40 * MiB);
    const src = bytes(data);
    const body = encodeSource(src);
    await new Promise((r) => setTimeout(r, 200));
    assert.ok(src.reads <= 2, `${src.reads} reads before anything was consumed`);
    assert.ok(body.readableLength <= 4 * MiB + 16, `${body.readableLength} bytes encoded ahead`);
    body.destroy();
  });

  test('a source error fails the stream', async () => {
    const body = encodeSource({
      async read() {
        throw new Error('disk on fire');
      },
    });
    await assert.rejects(collect(body), /disk on fire/);
  });

  test('stages after LZ4 run on its output; a first stage without sourceEncoder reads chunks', async () => {
    const data = mixed(6 * MiB, 3);
    const upper: ObjectStage = {
      name: 'not',
      encoder: () => new Transform({ transform: (c: Buffer, _e, cb) => cb(null, Buffer.from(c.map((x) => 255 - x))) }),
      decoder: () => new Transform({ transform: (c: Buffer, _e, cb) => cb(null, Buffer.from(c.map((x) => 255 - x))) }),
    };
    for (const stages of [[lz4Stage, upper], [upper, lz4Stage], [upper], []]) {
      const expected = (await collect(encodeObject(Readable.from([data]), stages))).data;
      const body = encodeSource(bytes(data), stages);
      if (stages.length !== 1 || stages[0] !== lz4Stage) assert.equal(chunkRecycler(body), undefined, 'no offer when LZ4 is not last');
      assert.ok((await collect(body)).data.equals(expected), stages.map((s) => s.name).join('+'));
    }
  });

  test('frames of the source encoder decode with the lz4 CLI', { skip: lz4Skip }, async () => {
    const data = mixed(9 * MiB, 11);
    const frame = (await collect(encodeSource(bytes(data)), 'release')).data;
    const out = execFileSync('lz4', ['-dc'], { input: frame, maxBuffer: 64 * MiB });
    assert.ok(out.equals(data));
  });
});

describe('walship LZ4 block compressor', () => {
  test('round-trips many small and patterned inputs; respects the output limit', () => {
    const table = createLz4HashTable();
    const dst = Buffer.alloc(70_000);
    for (let t = 0; t < 2000; t++) {
      const rnd = prng(t + 1);
      const len = t % 7 === 0 ? rnd() % 65536 : rnd() % 400;
      const alphabet = 1 + (t % 6);
      const src = Buffer.alloc(len);
      for (let i = 0; i < len; i++) src[i] = t % 11 === 0 ? rnd() & 0xff : 97 + (rnd() % alphabet);
      const end = encodeLz4Block(src, 0, len, dst, 0, dst.length, table);
      assert.ok(end > 0);
      const out = decodeBlock(dst.subarray(0, end), len);
      assert.equal(out.length, len);
      assert.ok(out.equals(src), `input ${t}`);
      // Any limit below the compressed size is refused, never overrun.
      if (end > 1) {
        const guard = Buffer.alloc(end + 16, 0xee);
        assert.equal(encodeLz4Block(src, 0, len, guard, 0, end - 1, table), -1);
        assert.ok(
          guard.subarray(end - 1).every((b) => b === 0xee),
          'nothing written at or past the limit',
        );
      }
    }
  });

  test('compresses within a window of a larger buffer (offsets), and refuses incompressible data', () => {
    const table = createLz4HashTable();
    const big = Buffer.concat([randomBytes(1000), Buffer.from('abcabcabc'.repeat(5000)), randomBytes(1000)]);
    const start = 1000;
    const end = 1000 + 45000;
    const dst = Buffer.alloc(50000, 0xee);
    const stop = encodeLz4Block(big, start, end, dst, 100, dst.length, table);
    assert.ok(stop > 100 && stop < 1000, `compressed to ${stop - 100} bytes`);
    const out = decodeBlock(dst.subarray(100, stop), 45000);
    assert.ok(out.equals(big.subarray(start, end)));
    const random = randomBytes(65536);
    assert.equal(encodeLz4Block(random, 0, random.length, dst, 0, random.length - 1, table), -1);
  });
});

/** Decodes one raw LZ4 block of `size` bytes with lz4-napi (which wants the size as a 4-byte prefix). */
function decodeBlock(block: Buffer, size: number): Buffer {
  const prefixed = Buffer.alloc(4 + block.length);
  prefixed.writeUInt32LE(size, 0);
  block.copy(prefixed, 4);
  return uncompressSync(prefixed);
}
