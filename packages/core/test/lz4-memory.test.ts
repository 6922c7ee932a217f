import assert from 'node:assert/strict';
import { Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { describe, test } from 'node:test';
import { createLz4FrameDecoder, createLz4FrameEncoder, XxHash32 } from '../src/lz4/index.js';

// In a file of its own so that the test runner gives it a fresh process to measure.

const MiB = 1024 * 1024;

/** SQLite-WAL-like data: 4 KiB pages, a pseudo-random header, some text, the rest zero. */
function walLike(length: number): Buffer {
  let seed = 99;
  const rnd = (): number => {
    seed ^= seed << 13;
    seed ^= seed >>> 17;
    seed ^= seed << 5;
    return seed >>> 0;
  };
  const b = Buffer.alloc(length);
  for (let base = 0; base < length; base += 4096) {
    for (let i = 0; i < 24; i += 4) b.writeUInt32LE(rnd(), base + i);
    let p = base + 24;
    const end = base + 24 + (rnd() % 1500);
    while (p < end) p += b.write(`row ${rnd() % 100000} value ${rnd() % 997} `, p);
  }
  return b;
}

describe('LZ4 memory', () => {
  /** Streams `total` bytes of WAL-like data through encoder and decoder; returns peak RSS. */
  async function streamThrough(total: number): Promise<{ peakRss: number; produced: number; equal: boolean }> {
    const template = walLike(4 * MiB);
    const inHash = new XxHash32();
    const outHash = new XxHash32();
    let produced = 0;
    let peakRss = 0;
    const sample = (): void => {
      peakRss = Math.max(peakRss, process.memoryUsage.rss());
    };
    const source = Readable.from(
      (function* () {
        const size = 256 * 1024;
        for (let p = 0, i = 0; p < total; p += size, i++) {
          const chunk = Buffer.allocUnsafe(size); // a fresh chunk each time, like fs streams
          template.copy(chunk, 0, p % template.length, (p % template.length) + size);
          chunk.writeUInt32LE(i, 0); // vary the content between rounds of the template
          inHash.update(chunk);
          sample();
          yield chunk;
        }
      })(),
    );
    const sink = new Writable({
      write(chunk: Buffer, _encoding, callback) {
        produced += chunk.length;
        outHash.update(chunk);
        sample();
        callback();
      },
    });
    await pipeline(source, createLz4FrameEncoder(), createLz4FrameDecoder(), sink);
    sample();
    return { peakRss, produced, equal: inHash.digest() === outHash.digest() };
  }

  test('256 MiB through encoder and decoder: RSS growth stays well below 100 MB', async (t) => {
    // First use starts the libuv threadpool, lz4-napi's allocator heaps and the JIT; measure after.
    const warmup = await streamThrough(32 * MiB);
    assert.ok(warmup.equal);
    const baseline = process.memoryUsage.rss();
    const { peakRss, produced, equal } = await streamThrough(256 * MiB);
    assert.equal(produced, 256 * MiB);
    assert.ok(equal, 'output hashes like the input');
    const growth = peakRss - baseline;
    t.diagnostic(`peak RSS growth ${(growth / MiB).toFixed(1)} MiB`);
    assert.ok(growth < 80 * MiB, `peak RSS grew by ${(growth / MiB).toFixed(1)} MiB`);
  });
});
