import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';
import { after, before, describe, test } from 'node:test';
import { CorruptDataError } from '../src/errors.js';
import { prng } from './support/prng.js';
import {
  createLz4FrameDecoder,
  createLz4FrameEncoder,
  lz4FrameHeader,
  XxHash32,
  xxh32,
  type Lz4FrameEncoderOptions,
} from '../src/lz4/index.js';

const MiB = 1024 * 1024;
const DEFAULT_HEADER = Buffer.from([0x04, 0x22, 0x4d, 0x18, 0x64, 0x70, 0xb9]);

// ---- helpers ------------------------------------------------------------------------------------

const haveLz4Cli = spawnSync('lz4', ['--version']).status === 0;
/** The lz4 CLI is required under CI; elsewhere its tests are skipped with a hint. */
const lz4Skip = haveLz4Cli || process.env.CI === 'true' ? false : 'lz4 CLI not found: install it (apt-get install lz4)';

function lz4Cli(args: string[], input?: Buffer): Buffer {
  return execFileSync('lz4', args, { input, maxBuffer: 256 * MiB });
}

const WORDS = 'select insert update page btree cell overflow freelist journal checkpoint wal frame salt'.split(' ');

/** SQLite-WAL-like data: 4 KiB pages, a random 24-byte header, some text, the rest zero. */
function walLike(length: number, seed = 1): Buffer {
  const rnd = prng(seed);
  const pages = Math.ceil(length / 4096);
  const b = Buffer.alloc(pages * 4096);
  for (let page = 0; page < pages; page++) {
    const base = page * 4096;
    for (let i = 0; i < 24; i += 4) b.writeUInt32LE(rnd(), base + i);
    let p = base + 24;
    const end = base + 24 + (rnd() % 1500);
    while (p < end) p += b.write(`${WORDS[rnd() % WORDS.length]} ${rnd() % 100000} `, p);
  }
  return b.subarray(0, length);
}

/** Mixed data: WAL-like stretches, random stretches and runs of one byte. */
function mixed(length: number, seed = 7): Buffer {
  const rnd = prng(seed);
  const parts: Buffer[] = [];
  let total = 0;
  while (total < length) {
    const n = 1 + (rnd() % (700 * 1024));
    const kind = rnd() % 3;
    const part = kind === 0 ? walLike(n, rnd()) : kind === 1 ? randomBytes(n) : Buffer.alloc(n, rnd() & 0xff);
    parts.push(part);
    total += n;
  }
  return Buffer.concat(parts).subarray(0, length);
}

/** A readable that yields `data` in the given chunk sizes (cycled). */
function chunked(data: Buffer, sizes: readonly number[] = [data.length || 1]): Readable {
  return Readable.from(
    (function* () {
      let p = 0;
      let k = 0;
      while (p < data.length) {
        const n = sizes[k++ % sizes.length]!;
        yield data.subarray(p, p + n);
        p += n;
      }
    })(),
  );
}

async function collect(readable: Readable): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const chunk of readable) parts.push(chunk as Buffer);
  return Buffer.concat(parts);
}

async function encode(data: Buffer, options?: Lz4FrameEncoderOptions, sizes?: readonly number[]): Promise<Buffer> {
  return collect(chunked(data, sizes).pipe(createLz4FrameEncoder(options)));
}

async function decode(frame: Buffer, sizes?: readonly number[]): Promise<Buffer> {
  return collect(chunked(frame, sizes).pipe(createLz4FrameDecoder()));
}

/** Asserts that decoding `frame` (whole and in small chunks) fails with a matching CorruptDataError. */
async function assertCorrupt(frame: Buffer, message: RegExp): Promise<void> {
  for (const sizes of [undefined, [1, 3, 4096]]) {
    await assert.rejects(decode(frame, sizes), (err: unknown) => {
      assert.ok(err instanceof CorruptDataError, `expected CorruptDataError, got ${String(err)}`);
      assert.equal(err.code, 'WALSHIP_CORRUPT');
      assert.match(err.message, message);
      return true;
    });
  }
}

/** Splits a frame into its header, block list and trailer (for building malformed frames). */
function parseFrame(frame: Buffer): { headerLength: number; blocks: { at: number; word: number }[]; end: number } {
  const flg = frame[4]!;
  let p = 4 + 3 + (flg & 0x08 ? 8 : 0) + (flg & 0x01 ? 4 : 0);
  const headerLength = p;
  const blocks: { at: number; word: number }[] = [];
  for (;;) {
    const word = frame.readUInt32LE(p);
    if (word === 0) break;
    blocks.push({ at: p, word });
    p += 4 + (word & 0x7fffffff) + (flg & 0x10 ? 4 : 0);
  }
  return { headerLength, blocks, end: p };
}

function sha(b: Buffer): string {
  return createHash('sha256').update(b).digest('hex');
}

let tmp = '';
before(() => {
  tmp = mkdtempSync(path.join(os.tmpdir(), 'walship-lz4-'));
});
after(() => {
  rmSync(tmp, { recursive: true, force: true });
});

// ---- xxHash32 -----------------------------------------------------------------------------------

describe('xxHash32', () => {
  test('known vectors', () => {
    assert.equal(xxh32(Buffer.alloc(0)), 0x02cc5d05);
    assert.equal(xxh32(Buffer.from('a')), 0x550d7456);
    assert.equal(xxh32(Buffer.from('abc')), 0x32d153ff);
    assert.equal(xxh32(Buffer.from('Nobody inspects the spammish repetition')), 0xe2293b2f);
    // Header checksum byte of Litestream's descriptor `64 70` is the second byte of its hash.
    assert.equal((xxh32(Buffer.from([0x64, 0x70])) >>> 8) & 0xff, 0xb9);
  });

  test('a seed changes the hash', () => {
    assert.notEqual(xxh32(Buffer.from('abc'), 1), xxh32(Buffer.from('abc')));
    assert.equal(new XxHash32(1).update(Buffer.from('abc')).digest(), xxh32(Buffer.from('abc'), 1));
  });

  test('streaming in any chunking and unaligned input equals one-shot', () => {
    const data = randomBytes(200_003);
    const want = xxh32(data);
    for (const step of [1, 3, 15, 16, 17, 4095, 65536]) {
      const h = new XxHash32();
      for (let p = 0; p < data.length; p += step) h.update(data.subarray(p, p + step));
      assert.equal(h.digest(), want, `chunk size ${step}`);
    }
    const shifted = Buffer.alloc(data.length + 3);
    data.copy(shifted, 3);
    assert.equal(xxh32(shifted.subarray(3)), want);
    // digest() does not reset; reset() does.
    const h = new XxHash32().update(data);
    assert.equal(h.digest(), h.digest());
    assert.equal(h.reset().digest(), 0x02cc5d05);
  });

  test('matches the content checksum the lz4 CLI writes', { skip: lz4Skip }, () => {
    for (const n of [0, 1, 3, 4, 15, 16, 17, 31, 32, 33, 1000, 65537, 1_000_003]) {
      const data = randomBytes(n);
      const frame = lz4Cli(['-c', '-q'], data);
      assert.equal(xxh32(data), frame.readUInt32LE(frame.length - 4), `length ${n}`);
    }
  });
});

// ---- encoder ------------------------------------------------------------------------------------

describe('LZ4 frame encoder', () => {
  test('default header is exactly 04 22 4D 18 64 70 B9 (Litestream v0.3)', async () => {
    assert.deepEqual(lz4FrameHeader(), DEFAULT_HEADER);
    const frame = await encode(walLike(10_000));
    assert.deepEqual(frame.subarray(0, 7), DEFAULT_HEADER);
  });

  test('empty input produces a valid empty frame', async () => {
    const frame = await encode(Buffer.alloc(0));
    // header, end mark, xxh32("") little-endian
    assert.equal(frame.toString('hex'), '04224d186470b900000000055dcc02');
    assert.equal((await decode(frame)).length, 0);
  });

  test('options: block size and content checksum are reflected in the descriptor', async () => {
    const data = walLike(300_000);
    const frame = await encode(data, { blockSize: 65536, contentChecksum: false });
    assert.deepEqual(frame.subarray(4, 6), Buffer.from([0x60, 0x40]));
    assert.equal(frame[6], (xxh32(Buffer.from([0x60, 0x40])) >>> 8) & 0xff);
    const { blocks, end } = parseFrame(frame);
    assert.equal(blocks.length, Math.ceil(data.length / 65536));
    assert.equal(end + 4, frame.length, 'no content checksum after the end mark');
    assert.deepEqual(await decode(frame), data);
    assert.throws(() => createLz4FrameEncoder({ blockSize: 1000 as 65536 }), /invalid LZ4 block size 1000/);
  });

  test('incompressible blocks are stored uncompressed, compressible ones compressed', async () => {
    const data = Buffer.concat([randomBytes(65536), Buffer.alloc(65536, 0x61)]);
    const frame = await encode(data, { blockSize: 65536 });
    const { blocks } = parseFrame(frame);
    assert.equal(blocks.length, 2);
    assert.equal(blocks[0]!.word, (0x80000000 | 65536) >>> 0, 'random block stored');
    assert.ok(blocks[1]!.word < 1000, 'run of "a" compressed');
    assert.deepEqual(await decode(frame), data);
  });

  test('output respects backpressure: one huge input chunk is not compressed ahead', async () => {
    const data = randomBytes(40 * MiB); // incompressible: output as large as the input
    const encoder = createLz4FrameEncoder();
    encoder.end(data);
    await new Promise((resolve) => setTimeout(resolve, 200));
    assert.ok(encoder.readableLength <= 4 * MiB + 64, `${encoder.readableLength} bytes compressed ahead`);
    const frame = await collect(encoder);
    assert.equal(parseFrame(frame).blocks.length, 10);
    assert.ok((await decode(frame)).equals(data));
  });

  test('frames decode with the lz4 CLI byte-identically', { skip: lz4Skip }, async () => {
    const cases: [string, Buffer, Lz4FrameEncoderOptions][] = [
      ['empty', Buffer.alloc(0), {}],
      ['wal 9 MiB', walLike(9 * MiB + 123), {}],
      ['mixed 64K blocks', mixed(3 * MiB), { blockSize: 65536 }],
      ['random 1M blocks, no checksum', randomBytes(2 * MiB + 5), { blockSize: 1048576, contentChecksum: false }],
    ];
    for (const [name, data, options] of cases) {
      const frame = await encode(data, options, [65536 + 3]);
      const out = lz4Cli(['-d', '-c'], frame);
      assert.equal(out.length, data.length, name);
      assert.ok(out.equals(data), name);
    }
  });
});

// ---- round trips --------------------------------------------------------------------------------

describe('LZ4 round trips', () => {
  const B = 4 * MiB;
  const cases: [string, () => Buffer][] = [
    ['empty', () => Buffer.alloc(0)],
    ['1 byte', () => Buffer.from([0x2a])],
    ['exactly one block', () => walLike(B, 3)],
    ['one block + 1', () => walLike(B + 1, 4)],
    ['random one block + 1', () => randomBytes(B + 1)],
  ];
  for (const [name, make] of cases) {
    test(name, async () => {
      const data = make();
      const frame = await encode(data);
      const out = await decode(frame);
      assert.equal(out.length, data.length);
      assert.ok(out.equals(data), name);
    });
  }

  test('20 MiB of mixed data streamed in odd chunk sizes', async () => {
    const data = mixed(20 * MiB);
    const frame = await encode(data, undefined, [1, 7, 4093, 65537, 999_999, 3 * MiB + 1]);
    assert.ok(frame.length < data.length, 'mixed data compresses');
    assert.equal(parseFrame(frame).blocks.length, 5);
    const out = await decode(frame, [1, 5, 8191, 100_003, 2 * MiB + 7]);
    assert.equal(sha(out), sha(data));
  });

  test('every block size round-trips', async () => {
    const data = mixed(5 * MiB + 17, 11);
    for (const blockSize of [65536, 262144, 1048576, 4194304] as const) {
      const frame = await encode(data, { blockSize });
      assert.equal(parseFrame(frame).blocks.length, Math.ceil(data.length / blockSize));
      assert.equal(sha(await decode(frame)), sha(data));
    }
  });
});

// ---- decoder: frames from the reference implementation -----------------------------------------

describe('LZ4 frame decoder reads frames written by the lz4 CLI', { skip: lz4Skip }, () => {
  let data: Buffer;
  let input: string;
  before(() => {
    data = Buffer.concat([walLike(3 * MiB), randomBytes(300_000), walLike(MiB + 333, 5), Buffer.alloc(200_000)]);
    input = path.join(tmp, 'input.bin');
    writeFileSync(input, data);
  });

  const variants: [string, string[], number][] = [
    // name, CLI flags, expected FLG byte
    ['-B4 (64 KiB blocks)', ['-B4'], 0x64],
    ['-B5 (256 KiB blocks)', ['-B5'], 0x64],
    ['-B6 (1 MiB blocks)', ['-B6'], 0x64],
    ['-B7 (4 MiB blocks)', ['-B7'], 0x64],
    ['-BD (linked blocks)', ['-BD', '-B4'], 0x44],
    ['-BD -B7 (linked 4 MiB blocks)', ['-BD', '-B7'], 0x44],
    ['--no-frame-crc', ['--no-frame-crc'], 0x60],
    ['-BX (block checksums)', ['-BX', '-B5'], 0x74],
    ['--content-size', ['--content-size'], 0x6c],
    ['all options', ['-BD', '-BX', '--content-size', '-B4'], 0x5c],
    ['level 9 (HC)', ['-9', '-BD', '-B4'], 0x44],
  ];
  for (const [name, flags, flg] of variants) {
    test(name, async () => {
      const frame = lz4Cli(['-c', '-q', ...flags, input]);
      assert.equal(frame[4], flg, 'descriptor flags');
      for (const sizes of [undefined, [1, 4099, 65536 + 7]]) {
        const out = await decode(frame, sizes);
        assert.equal(sha(out), sha(data), name);
      }
    });
  }

  test('skippable frames before the frame are skipped', async () => {
    const frame = lz4Cli(['-c', '-q', '-BD', '-B4', input]);
    const skip1 = Buffer.alloc(8 + 10, 0xee);
    skip1.writeUInt32LE(0x184d2a50, 0);
    skip1.writeUInt32LE(10, 4);
    const skip2 = Buffer.alloc(8);
    skip2.writeUInt32LE(0x184d2a5f, 0);
    skip2.writeUInt32LE(0, 4);
    const out = await decode(Buffer.concat([skip1, skip2, frame]), [3, 5, 100]);
    assert.equal(sha(out), sha(data));
  });

  test('stored (uncompressed) blocks from the CLI', async () => {
    const random = randomBytes(300_000);
    for (const flags of [['-B4'], ['-BD', '-B4']]) {
      const frame = lz4Cli(['-c', '-q', ...flags], random);
      assert.ok(
        parseFrame(frame).blocks.every((b) => b.word >>> 31 === 1),
        'all blocks stored',
      );
      assert.ok((await decode(frame)).equals(random));
    }
  });
});

// ---- decoder: edge cases and corrupt input -----------------------------------------------------

describe('LZ4 frame decoder', () => {
  test('an empty stream (or one holding only skippable frames) decodes to empty output', async () => {
    const skippable = Buffer.alloc(8 + 3);
    skippable.writeUInt32LE(0x184d2a52, 0);
    skippable.writeUInt32LE(3, 4);
    assert.equal((await decode(Buffer.alloc(0))).length, 0);
    assert.equal((await decode(skippable, [1])).length, 0);
  });

  test('output respects backpressure: input that expands a lot is not decoded ahead', async () => {
    const frame = await encode(Buffer.alloc(64 * MiB)); // 16 blocks in a few hundred KB
    assert.ok(frame.length < MiB);
    const decoder = createLz4FrameDecoder();
    decoder.end(frame);
    await new Promise((resolve) => setTimeout(resolve, 50));
    assert.ok(decoder.readableLength <= 4 * MiB, `${decoder.readableLength} bytes decoded ahead`);
    const out = await collect(decoder);
    assert.equal(out.length, 64 * MiB);
    assert.ok(out.equals(Buffer.alloc(64 * MiB)));
  });

  test('trailing bytes after the frame are ignored', async () => {
    const data = walLike(5 * MiB);
    const frame = await encode(data);
    const trailing = Buffer.concat([frame, Buffer.from('trailing garbage'), randomBytes(100_000)]);
    for (const sizes of [undefined, [7, 65536]]) {
      assert.equal(sha(await decode(trailing, sizes)), sha(data));
    }
    // A second frame is not read.
    const second = await encode(Buffer.from('second'));
    assert.ok((await decode(Buffer.concat([frame, second]))).equals(data));
  });

  test('bad magic number', async () => {
    await assertCorrupt(Buffer.from('SQLite format 3\0 and more'), /bad LZ4 magic number 0x694c5153/);
    const frame = await encode(Buffer.from('hello'));
    frame[0] = 0x05;
    await assertCorrupt(frame, /bad LZ4 magic number/);
  });

  test('legacy format (lz4 -l) is rejected', { skip: lz4Skip }, async () => {
    const legacy = lz4Cli(['-c', '-q', '-l'], walLike(100_000));
    assert.equal(legacy.readUInt32LE(0), 0x184c2102);
    await assertCorrupt(legacy, /legacy format/);
  });

  test('header checksum mismatch, bad version, reserved bits, bad block size index', async () => {
    const frame = await encode(Buffer.from('hello hello hello'));
    const badChecksum = Buffer.from(frame);
    badChecksum[6] = badChecksum[6]! ^ 0xff;
    await assertCorrupt(badChecksum, /header checksum mismatch/);

    const withDescriptor = (flg: number, bd: number): Buffer => {
      const f = Buffer.from(frame);
      f[4] = flg;
      f[5] = bd;
      f[6] = (xxh32(f.subarray(4, 6)) >>> 8) & 0xff;
      return f;
    };
    await assertCorrupt(withDescriptor(0xa4, 0x70), /unsupported LZ4 frame version 2/);
    await assertCorrupt(withDescriptor(0x66, 0x70), /reserved bits/);
    await assertCorrupt(withDescriptor(0x64, 0x71), /reserved bits/);
    await assertCorrupt(withDescriptor(0x64, 0x30), /invalid block maximum size index 3/);
  });

  test('frames that need a dictionary are rejected', async () => {
    const header = Buffer.from([0x04, 0x22, 0x4d, 0x18, 0x65, 0x70, 0x78, 0x56, 0x34, 0x12, 0x00]);
    header[10] = (xxh32(header.subarray(4, 10)) >>> 8) & 0xff;
    await assertCorrupt(Buffer.concat([header, Buffer.alloc(8)]), /needs dictionary 0x12345678/);
  });

  test('content checksum mismatch', async () => {
    const frame = await encode(walLike(5 * MiB));
    frame[frame.length - 1] = frame[frame.length - 1]! ^ 0x01;
    await assertCorrupt(frame, /content checksum mismatch/);
  });

  test('block checksum mismatch', { skip: lz4Skip }, async () => {
    const frame = lz4Cli(['-c', '-q', '-BX', '-B4'], walLike(200_000));
    const { blocks } = parseFrame(frame);
    const corrupt = Buffer.from(frame);
    const at = blocks[1]!.at + 4 + 10; // inside the second block's data
    corrupt[at] = corrupt[at]! ^ 0x55;
    await assertCorrupt(corrupt, /block checksum mismatch/);
  });

  test('content size mismatch', { skip: lz4Skip }, async () => {
    const input = path.join(tmp, 'size.bin');
    writeFileSync(input, walLike(100_000));
    const frame = lz4Cli(['-c', '-q', '--content-size', input]);
    assert.equal(frame.readBigUInt64LE(6), 100_000n);
    for (const size of [99_999n, 100_001n]) {
      const f = Buffer.from(frame);
      f.writeBigUInt64LE(size, 6);
      f[14] = (xxh32(f.subarray(4, 14)) >>> 8) & 0xff;
      await assertCorrupt(f, /content size mismatch/);
    }
  });

  test('truncated frame at every kind of position', async () => {
    const frame = await encode(Buffer.concat([walLike(300_000), randomBytes(70_000)]), { blockSize: 65536 });
    const { blocks, end } = parseFrame(frame);
    const cuts = [2, 5, 7, blocks[0]!.at + 2, blocks[1]!.at + 100, end, end + 2, frame.length - 1];
    for (const cut of cuts) await assertCorrupt(frame.subarray(0, cut), /truncated LZ4 frame/);
    const skippable = Buffer.alloc(8 + 20);
    skippable.writeUInt32LE(0x184d2a51, 0);
    skippable.writeUInt32LE(20, 4);
    await assertCorrupt(skippable.subarray(0, 15), /truncated LZ4 frame: input ended inside a skippable frame/);
  });

  test('block larger than the declared maximum', async () => {
    const frame = await encode(Buffer.alloc(100, 1), { blockSize: 65536 });
    const f = Buffer.from(frame);
    f.writeUInt32LE(65537, 7);
    await assertCorrupt(f, /block of 65537 bytes is larger than the frame's maximum block size 65536/);
    f.writeUInt32LE((0x80000000 | 65537) >>> 0, 7);
    await assertCorrupt(f, /larger than the frame's maximum block size/);
  });

  test('malformed compressed blocks', async () => {
    const frameWithBlock = (block: Buffer): Buffer => {
      const word = Buffer.alloc(4);
      word.writeUInt32LE(block.length);
      return Buffer.concat([lz4FrameHeader(65536, false), word, block, Buffer.alloc(4)]);
    };
    // match offset pointing before the start of the output
    await assertCorrupt(frameWithBlock(Buffer.from([0x10, 0x61, 0x05, 0x00, 0x00])), /corrupt LZ4 block/);
    // literal run longer than the block data
    await assertCorrupt(frameWithBlock(Buffer.from([0xf0, 0x20, 0x61])), /corrupt LZ4 block/);
    // a sequence cut inside its offset
    await assertCorrupt(frameWithBlock(Buffer.from([0x14, 0x61, 0x01])), /corrupt LZ4 block/);
    // decompresses to more than the maximum block size: 'a' then a 70000-byte match at offset 1
    const long = [0x1f, 0x61, 0x01, 0x00, ...Array<number>(274).fill(255), 0x00, 0x10, 0x61];
    await assertCorrupt(frameWithBlock(Buffer.from(long)), /corrupt LZ4 block/);
    // garbage from a valid frame's block region
    const frame = await encode(walLike(200_000), { blockSize: 65536, contentChecksum: false });
    const { blocks } = parseFrame(frame);
    const garbage = Buffer.from(frame);
    randomBytes(200).copy(garbage, blocks[0]!.at + 4);
    await assertCorrupt(garbage, /corrupt LZ4 block|match offset|truncated|exceeds/);
  });

  test('both block decoders agree on hand-made overlapping matches', async () => {
    // 'abc' + 100-byte match at offset 3 (long overlap), 70-byte match at offset 1 (run),
    // 'pq' + 9-byte match at offset 2 (short overlap), then the literals 'xyz1'.
    const block = Buffer.from([
      0x3f,
      0x61,
      0x62,
      0x63,
      0x03,
      0x00,
      100 - 19,
      0x0f,
      0x01,
      0x00,
      70 - 19,
      0x25,
      0x70,
      0x71,
      0x02,
      0x00,
      0x40,
      0x78,
      0x79,
      0x7a,
      0x31,
    ]);
    const word = Buffer.alloc(4);
    word.writeUInt32LE(block.length);
    const frame = Buffer.concat([lz4FrameHeader(65536, false), word, block, Buffer.alloc(4)]);
    const want = `abc${'abc'.repeat(34).slice(0, 100)}${'a'.repeat(70)}pqpqpqpqpqpxyz1`;
    assert.equal((await decode(frame)).toString(), want);
  });
});
