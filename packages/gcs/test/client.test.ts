import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';
import { after, before, describe, test } from 'node:test';
import { BackendError, InvalidArgumentError, NotFoundError } from '@walship/core';
import { GcsReplicaClient, gcsBackend, type GcsReplicaClientOptions } from '../src/index.js';
import { emulatorForTests, uniqueBucket, type GcsEmulator } from './helpers/emulator.js';
import { startFaultProxy, type FaultProxy } from './helpers/fault-proxy.js';

const GEN = '0123456789abcdef';
const GEN2 = 'fedcba9876543210';
const MiB = 1024 * 1024;

const server = await emulatorForTests();

async function readAll(r: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const c of r) chunks.push(c as Buffer);
  return Buffer.concat(chunks);
}

/** A deterministic pseudo-random body of `size` bytes, produced in 64 KiB chunks. */
function bodyOf(size: number, seed = 1): { stream: () => Readable; md5: string } {
  const block = createHash('sha256').update(String(seed)).digest();
  const chunk = Buffer.alloc(64 * 1024);
  for (let i = 0; i < chunk.length; i += block.length) block.copy(chunk, i);
  const md5 = createHash('md5');
  for (let left = size; left > 0; left -= chunk.length) md5.update(chunk.subarray(0, Math.min(left, chunk.length)));
  return {
    md5: md5.digest('hex'),
    stream: () =>
      Readable.from(
        (function* () {
          for (let left = size; left > 0; left -= chunk.length) yield Buffer.from(chunk.subarray(0, Math.min(left, chunk.length)));
        })(),
      ),
  };
}

/** A body that yields `before` bytes, then errors. */
function failingBody(before: number): Readable {
  return Readable.from(
    (async function* () {
      const chunk = randomBytes(64 * 1024);
      for (let sent = 0; sent < before; sent += chunk.length) yield chunk;
      await new Promise((r) => setTimeout(r, 20));
      throw new Error('body exploded');
    })(),
  );
}

if (!server.ok) {
  test('gcs client against the Firebase Storage emulator', { skip: server.fail ? false : server.message }, () => {
    assert.fail(server.message);
  });
} else {
  const emu: GcsEmulator = server.emulator;
  after(() => emu.stop());
  const raw = emu.storage();

  function client(opts: Partial<GcsReplicaClientOptions> = {}): GcsReplicaClient {
    return new GcsReplicaClient({ bucket: uniqueBucket('t'), path: 'db', endpoint: emu.endpoint, ...opts });
  }
  async function keys(c: GcsReplicaClient): Promise<string[]> {
    const [files] = await raw.bucket(c.bucketName).getFiles();
    return files.map((f) => f.name).sort();
  }

  describe('layout and round trips', () => {
    test('writes snapshots and WAL segments at Litestream v0.3 keys', async () => {
      const c = client();
      const s = await c.writeSnapshot(GEN, 1, Readable.from([Buffer.from('snap')]));
      assert.equal(s.size, 4);
      assert.ok(s.createdAt instanceof Date && !Number.isNaN(s.createdAt.getTime()));
      const w = await c.writeWALSegment({ generation: GEN, index: 2, offset: 4152 }, Readable.from([Buffer.from('wal!!')]));
      assert.deepEqual({ ...w, createdAt: undefined }, { generation: GEN, index: 2, offset: 4152, size: 5, createdAt: undefined });
      assert.deepEqual(await keys(c), [
        `db/generations/${GEN}/snapshots/00000001.snapshot.lz4`,
        `db/generations/${GEN}/wal/00000002_00001038.wal.lz4`,
      ]);
      assert.equal((await readAll(await c.snapshotReader(GEN, 1))).toString(), 'snap');
      assert.equal((await readAll(await c.walSegmentReader({ generation: GEN, index: 2, offset: 4152 }))).toString(), 'wal!!');
      const snaps = await c.snapshots(GEN);
      assert.equal(snaps.length, 1);
      assert.equal(snaps[0]!.size, 4);
      assert.equal(snaps[0]!.createdAt.getTime(), s.createdAt.getTime());
      const segs = await c.walSegments(GEN);
      assert.deepEqual(
        segs.map((x) => [x.index, x.offset, x.size]),
        [[2, 4152, 5]],
      );
    });

    test('empty root puts generations/ at the bucket root; nested paths are cleaned', async () => {
      const a = client({ path: '' });
      await a.writeSnapshot(GEN, 0, Readable.from([Buffer.from('x')]));
      assert.deepEqual(await keys(a), [`generations/${GEN}/snapshots/00000000.snapshot.lz4`]);
      const b = client({ path: 'a/./b//c/' });
      await b.writeSnapshot(GEN, 0, Readable.from([Buffer.from('x')]));
      assert.deepEqual(await keys(b), [`a/b/c/generations/${GEN}/snapshots/00000000.snapshot.lz4`]);
      assert.deepEqual(await b.generations(), [GEN]);
    });

    test('empty body is stored as an empty object', async () => {
      const c = client();
      const s = await c.writeSnapshot(GEN, 3, Readable.from([]));
      assert.equal(s.size, 0);
      assert.equal((await readAll(await c.snapshotReader(GEN, 3))).length, 0);
    });

    test('overwrite replaces the object', async () => {
      const c = client();
      await c.writeSnapshot(GEN, 1, Readable.from([Buffer.from('one')]));
      await c.writeSnapshot(GEN, 1, Readable.from([Buffer.from('three')]));
      assert.equal((await readAll(await c.snapshotReader(GEN, 1))).toString(), 'three');
    });
  });

  describe('listing', () => {
    test('generations: only valid names, foreign objects ignored, sorted, paginated', async () => {
      const c = client({ pageSize: 3 });
      const gens = Array.from({ length: 8 }, (_, i) => `${i}`.repeat(16));
      for (const g of gens) await c.writeSnapshot(g, 0, Readable.from([Buffer.from('s')]));
      const b = raw.bucket(c.bucketName);
      await b.file('db/generations/not-a-generation/x').save('x');
      await b.file('db/generations/ABCDEF0123456789/x').save('x');
      await b.file('db/generations/loose-file').save('x');
      await b.file('db/other/0123456789abcdee/x').save('x');
      assert.deepEqual(await c.generations(), gens);
    });

    test('missing root and missing generation list as empty', async () => {
      const c = client();
      assert.deepEqual(await c.generations(), []);
      assert.deepEqual(await c.snapshots(GEN), []);
      assert.deepEqual(await c.walSegments(GEN), []);
    });

    test('snapshots and WAL segments paginate and skip foreign names', async () => {
      const c = client({ pageSize: 7 });
      for (let i = 0; i < 20; i++) {
        await c.writeWALSegment({ generation: GEN, index: i >> 2, offset: (i & 3) * 4096 }, Readable.from([Buffer.from('w')]));
      }
      for (let i = 0; i < 9; i++) await c.writeSnapshot(GEN, i, Readable.from([Buffer.alloc(i)]));
      const b = raw.bucket(c.bucketName);
      await b.file(`db/generations/${GEN}/wal/garbage.txt`).save('x');
      await b.file(`db/generations/${GEN}/wal/sub/00000001_00000000.wal.lz4`).save('x');
      await b.file(`db/generations/${GEN}/snapshots/00000001.snapshot`).save('x');
      await b.file(`db/generations/${GEN}/snapshots/0000000000000010.snapshot.lz4`).save('x16');
      const segs = await c.walSegments(GEN);
      assert.equal(segs.length, 20);
      const snaps = (await c.snapshots(GEN)).sort((x, y) => x.index - y.index);
      assert.deepEqual(
        snaps.map((s) => s.index),
        [0, 1, 2, 3, 4, 5, 6, 7, 8, 16],
      );
      assert.deepEqual(
        snaps.slice(0, 9).map((s) => s.size),
        [0, 1, 2, 3, 4, 5, 6, 7, 8],
      );
    });
  });

  describe('errors', () => {
    test('readers throw NotFoundError for missing objects', async () => {
      const c = client();
      await assert.rejects(c.snapshotReader(GEN, 9), (e: unknown) => e instanceof NotFoundError && e.code === 'WALSHIP_NOT_FOUND');
      await assert.rejects(c.walSegmentReader({ generation: GEN, index: 1, offset: 0 }), NotFoundError);
    });

    test('empty generation throws InvalidArgumentError with Litestream messages, before any I/O', async () => {
      const c = client({ endpoint: 'http://127.0.0.1:9' });
      const cases: Array<[() => Promise<unknown>, string]> = [
        [() => c.deleteGeneration(''), 'cannot determine generation path: generation required'],
        [() => c.snapshots(''), 'cannot determine snapshots path: generation required'],
        [() => c.writeSnapshot('', 0, Readable.from([])), 'cannot determine snapshot path: generation required'],
        [() => c.snapshotReader('', 0), 'cannot determine snapshot path: generation required'],
        [() => c.deleteSnapshot('', 0), 'cannot determine snapshot path: generation required'],
        [() => c.walSegments(''), 'cannot determine wal path: generation required'],
        [
          () => c.writeWALSegment({ generation: '', index: 0, offset: 0 }, Readable.from([])),
          'cannot determine wal segment path: generation required',
        ],
        [() => c.walSegmentReader({ generation: '', index: 0, offset: 0 }), 'cannot determine wal segment path: generation required'],
        [
          () =>
            c.deleteWALSegments([
              { generation: GEN, index: 0, offset: 0 },
              { generation: '', index: 0, offset: 0 },
            ]),
          'cannot determine wal segment path: generation required',
        ],
      ];
      for (const [fn, message] of cases) {
        await assert.rejects(fn(), (e: unknown) => e instanceof InvalidArgumentError && e.message === message);
      }
    });

    test('deleteWALSegments validates every position before deleting anything', async () => {
      const c = client();
      await c.writeWALSegment({ generation: GEN, index: 0, offset: 0 }, Readable.from([Buffer.from('w')]));
      await assert.rejects(
        c.deleteWALSegments([
          { generation: GEN, index: 0, offset: 0 },
          { generation: '', index: 0, offset: 0 },
        ]),
        InvalidArgumentError,
      );
      assert.equal((await c.walSegments(GEN)).length, 1);
    });

    test('connection refused is a retryable BackendError', async () => {
      const c = client({ endpoint: 'http://127.0.0.1:9', retry: { autoRetry: false } });
      await assert.rejects(c.generations(), (e: unknown) => e instanceof BackendError && e.retryable && /gs:\/\//.test(e.message));
      await assert.rejects(c.snapshotReader(GEN, 0), (e: unknown) => e instanceof BackendError && e.retryable);
      await assert.rejects(
        c.writeSnapshot(GEN, 0, Readable.from([Buffer.from('x')])),
        (e: unknown) => e instanceof BackendError && e.retryable,
      );
    });
  });

  describe('deletes', () => {
    test('deleteGeneration removes everything under it (paged, parallel) and is idempotent', async () => {
      const c = client({ pageSize: 5, maxConcurrency: 4 });
      for (let i = 0; i < 23; i++) await c.writeWALSegment({ generation: GEN, index: i, offset: 0 }, Readable.from([Buffer.from('w')]));
      await c.writeSnapshot(GEN, 0, Readable.from([Buffer.from('s')]));
      await raw.bucket(c.bucketName).file(`db/generations/${GEN}/foreign`).save('x');
      await c.writeSnapshot(GEN2, 0, Readable.from([Buffer.from('s')]));
      await c.deleteGeneration(GEN);
      assert.deepEqual(await keys(c), [`db/generations/${GEN2}/snapshots/00000000.snapshot.lz4`]);
      await c.deleteGeneration(GEN);
      assert.deepEqual(await c.generations(), [GEN2]);
    });

    test('deleteSnapshot and deleteWALSegments ignore missing objects', async () => {
      const c = client({ maxConcurrency: 3 });
      const positions = Array.from({ length: 12 }, (_, i) => ({ generation: i % 2 ? GEN : GEN2, index: i, offset: 0 }));
      for (const p of positions.slice(0, 6)) await c.writeWALSegment(p, Readable.from([Buffer.from('w')]));
      await c.writeSnapshot(GEN, 1, Readable.from([Buffer.from('s')]));
      await c.deleteWALSegments(positions);
      await c.deleteWALSegments([]);
      await c.deleteSnapshot(GEN, 1);
      await c.deleteSnapshot(GEN, 1);
      assert.deepEqual(await keys(c), []);
    });
  });

  describe('uploads', () => {
    for (const resumable of [true, false]) {
      test(`20 MiB streamed upload (resumable: ${resumable}) round-trips byte for byte`, async () => {
        const c = client({ resumable });
        const body = bodyOf(20 * MiB + 123, 7);
        const info = await c.writeSnapshot(GEN, 5, body.stream());
        assert.equal(info.size, 20 * MiB + 123);
        const got = createHash('md5');
        for await (const chunk of await c.snapshotReader(GEN, 5)) got.update(chunk as Buffer);
        assert.equal(got.digest('hex'), body.md5);
        const [md] = await raw.bucket(c.bucketName).file(`db/generations/${GEN}/snapshots/00000005.snapshot.lz4`).getMetadata();
        assert.equal(Number(md.size), 20 * MiB + 123);
      });

      test(`a failing body leaves no object (resumable: ${resumable}, streamed path)`, async () => {
        const c = client({ resumable, singleRequestThreshold: 256 * 1024 });
        await assert.rejects(c.writeSnapshot(GEN, 6, failingBody(3 * MiB)), /body exploded/);
        await new Promise((r) => setTimeout(r, 300));
        await assert.rejects(c.snapshotReader(GEN, 6), NotFoundError);
        assert.deepEqual(await keys(c), []);
      });
    }

    test('a failing body leaves no object (buffered path)', async () => {
      const c = client();
      await assert.rejects(c.writeSnapshot(GEN, 6, failingBody(100 * 1024)), /body exploded/);
      await assert.rejects(c.snapshotReader(GEN, 6), NotFoundError);
    });

    test('a failing body does not replace an existing object', async () => {
      const c = client({ singleRequestThreshold: 0 });
      await c.writeSnapshot(GEN, 7, Readable.from([Buffer.from('old')]));
      await assert.rejects(c.writeSnapshot(GEN, 7, failingBody(2 * MiB)), /body exploded/);
      assert.equal((await readAll(await c.snapshotReader(GEN, 7))).toString(), 'old');
    });

    test('threshold boundary: exactly threshold bytes and one byte more', async () => {
      const c = client({ singleRequestThreshold: 100_000 });
      for (const size of [100_000, 100_001, 64 * 1024, 64 * 1024 + 1]) {
        const data = randomBytes(size);
        const info = await c.writeWALSegment(
          { generation: GEN, index: 1, offset: size },
          Readable.from([data.subarray(0, 5000), data.subarray(5000)]),
        );
        assert.equal(info.size, size);
        const back = await readAll(await c.walSegmentReader({ generation: GEN, index: 1, offset: size }));
        assert.ok(back.equals(data));
      }
    });

    test('concurrent writes and reads', async () => {
      const c = client();
      await Promise.all(
        Array.from({ length: 16 }, (_, i) =>
          c.writeWALSegment({ generation: GEN, index: i, offset: 0 }, Readable.from([Buffer.from(`seg-${i}`)])),
        ),
      );
      const bodies = await Promise.all(
        Array.from({ length: 16 }, async (_, i) =>
          (await readAll(await c.walSegmentReader({ generation: GEN, index: i, offset: 0 }))).toString(),
        ),
      );
      assert.deepEqual(
        bodies,
        Array.from({ length: 16 }, (_, i) => `seg-${i}`),
      );
    });
  });

  describe('retries and error mapping through a fault-injecting proxy', () => {
    let proxy: FaultProxy;
    before(async () => {
      proxy = await startFaultProxy(emu.endpoint);
    });
    after(() => proxy.close());
    const fast = { maxRetries: 3, retryDelayMultiplier: 1.01, maxRetryDelay: 1, totalTimeout: 30 };

    test('transient 503s are retried: list, write, read, delete', async () => {
      const c = client({ endpoint: proxy.endpoint, retry: fast });
      proxy.failNext(2, 503);
      await c.writeSnapshot(GEN, 1, Readable.from([Buffer.from('hello')]));
      proxy.failNext(2, 503);
      assert.deepEqual(await c.generations(), [GEN]);
      proxy.failNext(2, 503);
      assert.equal((await readAll(await c.snapshotReader(GEN, 1))).toString(), 'hello');
      proxy.failNext(2, 503);
      await c.deleteSnapshot(GEN, 1);
      assert.deepEqual(await c.snapshots(GEN), []);
      assert.ok(proxy.failed >= 8, `proxy injected ${proxy.failed} failures`);
    });

    test('persistent 503 becomes a retryable BackendError; 403 a permanent one', async () => {
      const c = client({ endpoint: proxy.endpoint, retry: { ...fast, maxRetries: 1 } });
      proxy.failNext(100, 503);
      await assert.rejects(c.generations(), (e: unknown) => e instanceof BackendError && e.retryable && e.code === 'WALSHIP_BACKEND');
      proxy.failNext(100, 403);
      await assert.rejects(c.generations(), (e: unknown) => e instanceof BackendError && !e.retryable);
      await assert.rejects(c.snapshotReader(GEN, 1), (e: unknown) => e instanceof BackendError && !e.retryable);
      await assert.rejects(
        c.writeSnapshot(GEN, 1, Readable.from([Buffer.from('x')])),
        (e: unknown) => e instanceof BackendError && !e.retryable,
      );
      proxy.failNext(0, 503);
    });
  });

  describe('backend', () => {
    test('createClient honours STORAGE_EMULATOR_HOST from the context env and does no I/O', async () => {
      const bucket = uniqueBucket('env');
      const c = gcsBackend.createClient({ bucket, path: 'p' }, { env: { STORAGE_EMULATOR_HOST: emu.endpoint } });
      assert.equal(c.type, 'gcs');
      await c.writeSnapshot(GEN, 1, Readable.from([Buffer.from('via env')]));
      const [files] = await raw.bucket(bucket).getFiles();
      assert.deepEqual(
        files.map((f) => f.name),
        [`p/generations/${GEN}/snapshots/00000001.snapshot.lz4`],
      );
    });

    test('an explicit endpoint key wins over STORAGE_EMULATOR_HOST', async () => {
      const bucket = uniqueBucket('ep');
      const c = gcsBackend.createClient(
        { ...gcsBackend.parseUrl(`gs://${bucket}/x/y`), endpoint: emu.endpoint },
        { env: { STORAGE_EMULATOR_HOST: 'http://127.0.0.1:9' } },
      );
      await c.writeWALSegment({ generation: GEN, index: 0, offset: 0 }, Readable.from([Buffer.from('w')]));
      const [files] = await raw.bucket(bucket).getFiles();
      assert.deepEqual(
        files.map((f) => f.name),
        [`x/y/generations/${GEN}/wal/00000000_00000000.wal.lz4`],
      );
    });
  });
}
