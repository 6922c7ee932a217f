import assert from 'node:assert/strict';
import { mkdtemp, rm, utimes } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, test } from 'node:test';
import {
  describeStoreKeys,
  digestStream,
  fileSystemBackdoor,
  generatedBody,
  generatedBodyDigest,
  pseudoRandomBytes,
  readAll,
  snapshotKey,
  walSegmentKey,
} from '../src/index.js';

const base = await mkdtemp(path.join(os.tmpdir(), 'walship-rct-'));
after(() => rm(base, { recursive: true, force: true }));

test("keys follow Litestream's layout", () => {
  assert.equal(snapshotKey('0123456789abcdef', 1000), 'generations/0123456789abcdef/snapshots/000003e8.snapshot.lz4');
  assert.equal(
    walSegmentKey({ generation: '0123456789abcdef', index: 1000, offset: 1001 }),
    'generations/0123456789abcdef/wal/000003e8_000003e9.wal.lz4',
  );
  assert.equal(
    walSegmentKey({ generation: '0123456789abcdef', index: 1, offset: 0x1_0000_0020 }),
    'generations/0123456789abcdef/wal/00000001_100000020.wal.lz4',
  );
});

test('generated bodies are deterministic, sized and chunked', async () => {
  const a = await readAll(generatedBody('seed', 100_000, 777));
  const b = await readAll(generatedBody('seed', 100_000));
  assert.equal(a.length, 100_000);
  assert.ok(a.equals(b), 'chunk size does not change the bytes');
  assert.ok(a.equals(pseudoRandomBytes('seed', 100_000)));
  assert.ok(!a.equals(await readAll(generatedBody('other', 100_000))));
  assert.deepEqual(await digestStream(generatedBody('seed', 100_000, 777)), await generatedBodyDigest('seed', 100_000));
  assert.equal((await readAll(generatedBody('seed', 0))).length, 0);
});

test('fileSystemBackdoor', async () => {
  const root = path.join(base, 'root');
  const store = fileSystemBackdoor(root);
  assert.deepEqual(await store.listKeys(), [], 'missing root');
  assert.equal(await describeStoreKeys(store), 'store is empty');
  await store.writeKey('generations/0123456789abcdef/wal/x.bin', Buffer.from('x'));
  await store.writeKey('top.txt', Buffer.from('top'));
  assert.deepEqual((await store.listKeys()).sort(), ['generations/0123456789abcdef/wal/x.bin', 'top.txt']);
  assert.equal((await store.readKey('top.txt'))?.toString(), 'top');
  assert.equal(await store.readKey('missing'), undefined);
  assert.equal(await store.readKey('top.txt/below'), undefined);
  await assert.rejects(store.writeKey('../escape', Buffer.from('x')), RangeError);
  assert.equal(store.timeResolutionMs, 1);
  assert.equal(fileSystemBackdoor(root, { timeResolutionMs: 1000 }).timeResolutionMs, 1000);
  const when = new Date('2021-02-03T04:05:06.789Z');
  await utimes(path.join(root, 'top.txt'), when, when);
  assert.deepEqual(await store.statKey('top.txt'), { size: 3, createdAt: when }, 'statKey gives size and mtime');
  assert.equal(await store.statKey('missing'), undefined);
  assert.equal(await store.statKey('generations'), undefined, 'a folder is not a key');
  assert.equal((await readAll((await store.openKey('top.txt'))!)).toString(), 'top');
  assert.equal(await store.openKey('missing'), undefined);
  assert.equal(await store.openKey('top.txt/below'), undefined);
  assert.match(await describeStoreKeys(store), /^store holds 2 keys: generations\//);
  await store.cleanup();
  assert.deepEqual(await store.listKeys(), []);
  await store.cleanup();
});
