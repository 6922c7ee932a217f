import { after, before, test } from 'node:test';
import { createServer, request, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';
import { buffer as readAll } from 'node:stream/consumers';
import {
  AccountSASPermissions,
  AccountSASResourceTypes,
  AccountSASServices,
  BlobBatchClient,
  ContainerSASPermissions,
  generateAccountSASQueryParameters,
  generateBlobSASQueryParameters,
  StorageSharedKeyCredential,
} from '@azure/storage-blob';
import { BackendError, ConfigError, InvalidArgumentError, NotFoundError, type Pos } from '@walship/core';
import { AzureReplicaClient, azureBackend, type AzureReplicaClientOptions } from '../src/index.js';
import { startAzuriteOrSkip, type AzuriteServer } from './helpers/azurite.js';

const started = await startAzuriteOrSkip();
const skip = typeof started === 'string' ? started : false;
const server = typeof started === 'string' ? undefined : started;
if (skip) console.log(`# skipping Azurite tests: ${skip}`);

let container = '';
const GEN = '0123456789abcdef';
const GEN2 = 'fedcba9876543210';

function srv(): AzuriteServer {
  assert.ok(server);
  return server;
}

function client(opts: Partial<AzureReplicaClientOptions> = {}): AzureReplicaClient {
  const s = srv();
  return new AzureReplicaClient({
    container,
    path: 'db',
    accountName: s.accountName,
    accountKey: s.accountKey,
    endpoint: s.endpoint,
    retry: { maxTries: 2, retryDelayInMs: 50, maxRetryDelayInMs: 200 },
    ...opts,
  });
}

async function blobNames(prefix = ''): Promise<string[]> {
  const names: string[] = [];
  for await (const b of srv().service.getContainerClient(container).listBlobsFlat({ prefix })) names.push(b.name);
  return names.sort();
}

/**
 * A loopback HTTP proxy in front of Azurite that records every request it forwards (method,
 * path and query, response status): what the client really sent, seen from the wire.
 */
async function recordingProxy(
  target: string,
): Promise<{ endpoint: string; requests: Array<{ line: string; status: number }>; close(): Promise<void> }> {
  const t = new URL(target);
  const requests: Array<{ line: string; status: number }> = [];
  const server = createServer((req: IncomingMessage, res: ServerResponse) => {
    const up = request(
      { host: t.hostname, port: t.port, method: req.method, path: req.url, headers: { ...req.headers, host: t.host } },
      (upRes) => {
        requests.push({ line: `${req.method} ${req.url}`, status: upRes.statusCode ?? 0 });
        res.writeHead(upRes.statusCode ?? 502, upRes.headers);
        upRes.pipe(res);
      },
    );
    up.on('error', (err) => {
      requests.push({ line: `${req.method} ${req.url}`, status: 0 });
      res.destroy(err);
    });
    req.pipe(up);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  return {
    endpoint: `http://127.0.0.1:${port}${t.pathname}`,
    requests,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

/** Runs `fn` and counts blobs deleted through successful batch requests meanwhile. */
async function countBatchedDeletes(fn: () => Promise<unknown>): Promise<number> {
  const proto = BlobBatchClient.prototype;
  const original = proto.submitBatch;
  let n = 0;
  proto.submitBatch = async function (this: BlobBatchClient, ...args: Parameters<BlobBatchClient['submitBatch']>) {
    const res = await original.apply(this, args);
    n += res.subResponses.length;
    return res;
  };
  try {
    await fn();
  } finally {
    proto.submitBatch = original;
  }
  return n;
}

before(async () => {
  if (server) container = await server.createContainer('abs');
});
after(async () => {
  await server?.stop();
});

test('write, list and read snapshots and WAL segments', { skip }, async () => {
  const c = client();
  const before = Date.now();
  const info = await c.writeSnapshot(GEN, 1, Readable.from([Buffer.from('snap')]));
  assert.equal(info.size, 4);
  assert.equal(info.generation, GEN);
  assert.equal(info.index, 1);
  assert.ok(info.createdAt.getTime() >= before - 1000);
  const seg = await c.writeWALSegment({ generation: GEN, index: 1, offset: 32 }, Readable.from([Buffer.from('ab'), Buffer.from('cd')]));
  assert.deepEqual([seg.size, seg.offset], [4, 32]);
  await c.writeWALSegment({ generation: GEN2, index: 0, offset: 0 }, Readable.from([]));

  assert.deepEqual(await blobNames(), [
    `db/generations/${GEN}/snapshots/00000001.snapshot.lz4`,
    `db/generations/${GEN}/wal/00000001_00000020.wal.lz4`,
    `db/generations/${GEN2}/wal/00000000_00000000.wal.lz4`,
  ]);
  const props = await srv()
    .service.getContainerClient(container)
    .getBlobClient(`db/generations/${GEN}/snapshots/00000001.snapshot.lz4`)
    .getProperties();
  assert.equal(props.contentType, 'application/octet-stream');
  assert.equal(props.blobType, 'BlockBlob');

  assert.deepEqual(await c.generations(), [GEN, GEN2]);
  const snaps = await c.snapshots(GEN);
  assert.equal(snaps.length, 1);
  assert.deepEqual({ ...snaps[0], createdAt: undefined }, { generation: GEN, index: 1, size: 4, createdAt: undefined });
  assert.ok(snaps[0]!.createdAt instanceof Date);
  const segs = await c.walSegments(GEN);
  assert.deepEqual(
    segs.map((s) => [s.index, s.offset, s.size]),
    [[1, 32, 4]],
  );
  assert.equal((await c.walSegments(GEN2))[0]!.size, 0);

  assert.equal((await readAll(await c.snapshotReader(GEN, 1))).toString(), 'snap');
  assert.equal((await readAll(await c.walSegmentReader({ generation: GEN, index: 1, offset: 32 }))).toString(), 'abcd');
  assert.equal((await readAll(await c.walSegmentReader({ generation: GEN2, index: 0, offset: 0 }))).length, 0);

  await c.deleteGeneration(GEN);
  await c.deleteGeneration(GEN2);
  await c.deleteGeneration(GEN2);
  assert.deepEqual(await c.generations(), []);
  assert.deepEqual(await blobNames(), []);
});

test('listed createdAt is the blob creation time Azure stores, not the listing time', { skip }, async () => {
  const c = client({ path: 'times' });
  const blobs = srv().service.getContainerClient(container);
  const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
  const pos = { generation: GEN, index: 1, offset: 0 };
  await c.writeSnapshot(GEN, 1, Readable.from([Buffer.from('older')]));
  await sleep(1100); // creation times are whole seconds: the next blob gets a later one
  await c.writeWALSegment(pos, Readable.from([Buffer.from('newer')]));
  // Planted with the raw SDK: the client never saw it written.
  await blobs.getBlockBlobClient(`times/generations/${GEN}/snapshots/00000002.snapshot.lz4`).upload('planted', 7);
  const created = async (name: string): Promise<number> => {
    const props = await blobs.getBlobClient(`times/generations/${GEN}/${name}`).getProperties();
    assert.ok(props.createdOn instanceof Date, `${name}: Azurite reports no creation time`);
    return props.createdOn.getTime();
  };
  const stored = {
    snap1: await created('snapshots/00000001.snapshot.lz4'),
    snap2: await created('snapshots/00000002.snapshot.lz4'),
    seg: await created('wal/00000001_00000000.wal.lz4'),
  };
  assert.ok(stored.seg > stored.snap1 && stored.snap2 > stored.snap1, `creation times must differ: ${JSON.stringify(stored)}`);
  const list = async () => {
    const snaps = await c.snapshots(GEN);
    const segs = await c.walSegments(GEN);
    return {
      snap1: snaps.find((x) => x.index === 1)?.createdAt.getTime(),
      snap2: snaps.find((x) => x.index === 2)?.createdAt.getTime(),
      seg: segs[0]?.createdAt.getTime(),
    };
  };
  const listed = await list();
  assert.deepEqual(listed, stored, 'listed createdAt must equal the stored x-ms-creation-time');
  await sleep(1100);
  assert.deepEqual(await list(), stored, 'listed again later: the same createdAt');
  await c.deleteGeneration(GEN);
});

test('missing objects: NotFoundError for readers, empty lists, idempotent deletes', { skip }, async () => {
  const c = client({ path: 'missing' });
  await assert.rejects(c.snapshotReader(GEN, 7), (err: unknown) => err instanceof NotFoundError && err.code === 'WALSHIP_NOT_FOUND');
  await assert.rejects(c.walSegmentReader({ generation: GEN, index: 7, offset: 0 }), NotFoundError);
  assert.deepEqual(await c.generations(), []);
  assert.deepEqual(await c.snapshots(GEN), []);
  assert.deepEqual(await c.walSegments(GEN), []);
  await c.deleteSnapshot(GEN, 7);
  await c.deleteWALSegments([{ generation: GEN, index: 7, offset: 0 }]);
  await c.deleteWALSegments([
    { generation: GEN, index: 7, offset: 0 },
    { generation: GEN, index: 8, offset: 0 },
  ]);
  await c.deleteGeneration(GEN);
});

test('empty generation: InvalidArgumentError with Litestream messages, nothing deleted', { skip }, async () => {
  const c = client({ path: 'emptygen' });
  await c.writeWALSegment({ generation: GEN, index: 0, offset: 0 }, Readable.from([Buffer.from('x')]));
  const cases: [() => Promise<unknown>, string][] = [
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
    await assert.rejects(fn(), (err: unknown) => err instanceof InvalidArgumentError && err.message === message, message);
  }
  assert.equal((await c.walSegments(GEN)).length, 1);
  await c.deleteGeneration(GEN);
});

test('foreign and malformed names are skipped', { skip }, async () => {
  const c = client({ path: 'foreign' });
  const cc = srv().service.getContainerClient(container);
  for (const name of [
    `foreign/generations/${GEN}/snapshots/00000002.snapshot.lz4`,
    `foreign/generations/${GEN}/snapshots/README`,
    `foreign/generations/${GEN}/snapshots/0000000g.snapshot.lz4`,
    `foreign/generations/${GEN}/wal/0000000000000003_0000000000001000.wal.lz4`,
    `foreign/generations/${GEN}/wal/00000003.wal.lz4`,
    `foreign/generations/${GEN}/wal/sub/00000001_00000000.wal.lz4`,
    `foreign/generations/NOT-A-GEN/snapshots/00000001.snapshot.lz4`,
    `foreign/generations/ABCDEF0123456789/wal/00000001_00000000.wal.lz4`,
    `foreign/generations/file-at-top`,
    `foreign-other/generations/${GEN2}/wal/00000001_00000000.wal.lz4`,
  ]) {
    await cc.getBlockBlobClient(name).upload('x', 1);
  }
  assert.deepEqual(await c.generations(), [GEN]);
  assert.deepEqual(
    (await c.snapshots(GEN)).map((s) => s.index),
    [2],
  );
  assert.deepEqual(
    (await c.walSegments(GEN)).map((s) => [s.index, s.offset]),
    [[3, 0x1000]],
  );
  await c.deleteGeneration(GEN);
  assert.equal((await blobNames('foreign/')).length, 3); // non-generation entries survive
});

test('large bodies stream as blocks with bounded buffers and round-trip exactly', { skip }, async () => {
  const c = client({ path: 'large', blockSize: 256 * 1024, uploadConcurrency: 2 });
  const total = 5 * 1024 * 1024 + 123;
  const hash = createHash('sha256');
  let produced = 0;
  const body = new Readable({
    read() {
      if (produced >= total) return void this.push(null);
      const n = Math.min(64 * 1024 + 7, total - produced);
      const chunk = randomBytes(n);
      hash.update(chunk);
      produced += n;
      this.push(chunk);
    },
  });
  const info = await c.writeSnapshot(GEN, 0x7fffffff, body);
  assert.equal(info.size, total);
  const got = createHash('sha256');
  let size = 0;
  for await (const chunk of await c.snapshotReader(GEN, 0x7fffffff)) {
    got.update(chunk as Buffer);
    size += (chunk as Buffer).length;
  }
  assert.equal(size, total);
  const expected = hash.digest('hex');
  assert.equal(got.digest('hex'), expected);
  const raw = srv().service.getContainerClient(container).getBlockBlobClient(`large/generations/${GEN}/snapshots/7fffffff.snapshot.lz4`);
  const blocks = await raw.getBlockList('committed');
  assert.ok((blocks.committedBlocks?.length ?? 0) > 1, 'expected a multi-block upload');
  // What landed, read with the raw SDK (not the client under test).
  assert.equal((await raw.getProperties()).contentLength, total, 'stored blob size');
  const stored = createHash('sha256');
  let storedSize = 0;
  for await (const chunk of (await raw.download()).readableStreamBody!) {
    stored.update(chunk as Buffer);
    storedSize += (chunk as Buffer).length;
  }
  assert.equal(storedSize, total, 'bytes stored');
  assert.equal(stored.digest('hex'), expected, 'SHA-256 of the bytes stored');
  assert.equal((await c.snapshots(GEN))[0]!.size, total);
  await c.deleteGeneration(GEN);
});

test('a failing body stores nothing (small and large)', { skip }, async () => {
  const c = client({ path: 'failing', blockSize: 64 * 1024 });
  for (const bytesBeforeError of [10, 300 * 1024]) {
    let sent = 0;
    const body = new Readable({
      read() {
        if (sent >= bytesBeforeError) return void this.destroy(new Error('source broke'));
        sent += 16 * 1024;
        this.push(Buffer.alloc(16 * 1024, 1));
      },
    });
    await assert.rejects(c.writeWALSegment({ generation: GEN, index: 0, offset: 0 }, body), /source broke/);
  }
  assert.deepEqual(await c.walSegments(GEN), []);
  assert.deepEqual(await blobNames('failing/'), []);
});

test('overwrite replaces the object', { skip }, async () => {
  const c = client({ path: 'overwrite' });
  await c.writeSnapshot(GEN, 1, Readable.from([Buffer.from('first version')]));
  await c.writeSnapshot(GEN, 1, Readable.from([Buffer.from('second')]));
  assert.equal((await readAll(await c.snapshotReader(GEN, 1))).toString(), 'second');
  assert.equal((await c.snapshots(GEN))[0]!.size, 6);
  await c.deleteSnapshot(GEN, 1);
  assert.deepEqual(await c.snapshots(GEN), []);
});

test('batch deletes (> 256 blobs, mixed generations, missing ones) and paginated listing', { skip }, async () => {
  const c = client({ path: 'batch', listPageSize: 100 });
  const positions: Pos[] = [];
  for (let i = 0; i < 300; i++) positions.push({ generation: i % 3 === 0 ? GEN2 : GEN, index: i, offset: i * 8 });
  for (let i = 0; i < positions.length; i += 50) {
    await Promise.all(positions.slice(i, i + 50).map((p) => c.writeWALSegment(p, Readable.from([Buffer.from('w')]))));
  }
  assert.equal((await c.walSegments(GEN)).length, 200);
  assert.equal((await c.walSegments(GEN2)).length, 100);
  const doomed = positions.slice(0, 280);
  doomed.push({ generation: GEN, index: 9999, offset: 0 }); // does not exist
  assert.equal(await countBatchedDeletes(() => c.deleteWALSegments(doomed)), doomed.length, 'expected batch deletes');
  const left = [...(await c.walSegments(GEN)), ...(await c.walSegments(GEN2))].map((s) => s.index).sort((a, b) => a - b);
  assert.deepEqual(
    left,
    positions.slice(280).map((p) => p.index),
  );
  // deleteGeneration pages through more blobs than one listing page holds.
  for (let i = 0; i < 250; i += 50) {
    await Promise.all(Array.from({ length: 50 }, (_, j) => c.writeSnapshot(GEN, i + j, Readable.from([Buffer.from('s')]))));
  }
  assert.equal((await c.snapshots(GEN)).length, 250);
  await c.deleteGeneration(GEN);
  await c.deleteGeneration(GEN2);
  assert.deepEqual(await blobNames('batch/'), []);
});

test('single deletes when batchDelete is off', { skip }, async () => {
  const c = client({ path: 'nobatch', batchDelete: false });
  assert.equal(c.capabilities.batchDelete, false);
  const ps: Pos[] = [0, 1, 2].map((i) => ({ generation: GEN, index: i, offset: 0 }));
  for (const p of ps) await c.writeWALSegment(p, Readable.from([Buffer.from('x')]));
  await c.deleteWALSegments([...ps, { generation: GEN, index: 50, offset: 0 }]);
  assert.deepEqual(await c.walSegments(GEN), []);
});

test('wrong account key: non-retryable BackendError, each 403 sent once', { skip, timeout: 120_000 }, async () => {
  const wrong = Buffer.from(randomBytes(64)).toString('base64');
  const proxy = await recordingProxy(srv().endpoint);
  try {
    // Retries enabled (and quick), so a retried 403 would show up as a repeated request.
    const c = client({ accountKey: wrong, endpoint: proxy.endpoint, retry: { maxTries: 3, retryDelayInMs: 50, maxRetryDelayInMs: 100 } });
    const ops: Array<[string, () => Promise<unknown>]> = [
      ['generations', () => c.generations()],
      ['snapshotReader', () => c.snapshotReader(GEN, 1)],
      ['writeSnapshot', () => c.writeSnapshot(GEN, 1, Readable.from([Buffer.from('x')]))],
      ['deleteSnapshot', () => c.deleteSnapshot(GEN, 1)],
    ];
    for (const [name, op] of ops) {
      const seen = proxy.requests.length;
      const err = await op().then(
        () => assert.fail(`${name} must reject with a wrong account key`),
        (e: unknown) => e,
      );
      const sent = proxy.requests.slice(seen);
      assert.ok(sent.length >= 1, `${name}: no request reached the server`);
      assert.deepEqual(
        sent.map((r) => r.status),
        sent.map(() => 403),
        `${name}: every request must get 403: ${JSON.stringify(sent)}`,
      );
      assert.equal(
        new Set(sent.map((r) => r.line)).size,
        sent.length,
        `${name}: a 403 must not be retried, but was sent again: ${JSON.stringify(sent)}`,
      );
      assert.ok(err instanceof BackendError, `${name}: expected BackendError, got ${String(err)}`);
      assert.equal(err.code, 'WALSHIP_BACKEND');
      assert.equal(err.retryable, false);
      assert.match(err.message, /^abs: \w+ .*: 403 \w+: access denied/);
      assert.ok(!err.message.includes(wrong));
    }
  } finally {
    await proxy.close();
  }
});

test('missing container: non-retryable BackendError, not NotFoundError', { skip }, async () => {
  const c = client({ container: `does-not-exist-${randomBytes(4).toString('hex')}` });
  await assert.rejects(
    c.generations(),
    (err: unknown) => err instanceof BackendError && !err.retryable && /ContainerNotFound/.test(err.message),
  );
  await assert.rejects(
    c.snapshotReader(GEN, 1),
    (err: unknown) => err instanceof BackendError && !(err instanceof NotFoundError) && !err.retryable,
  );
  await assert.rejects(
    c.writeSnapshot(GEN, 1, Readable.from([Buffer.from('x')])),
    (err: unknown) => err instanceof BackendError && !err.retryable,
  );
});

test('unreachable endpoint: retryable BackendError', { skip }, async () => {
  const c = client({ endpoint: 'http://127.0.0.1:9/devstoreaccount1', retry: { maxTries: 1 } });
  await assert.rejects(c.generations(), (err: unknown) => err instanceof BackendError && err.retryable);
});

test('SAS token authentication (account SAS), via the backend config', { skip }, async () => {
  const s = srv();
  const sas = generateAccountSASQueryParameters(
    {
      expiresOn: new Date(Date.now() + 3600_000),
      permissions: AccountSASPermissions.parse('rwdlc'),
      resourceTypes: AccountSASResourceTypes.parse('sco').toString(),
      services: AccountSASServices.parse('b').toString(),
    },
    new StorageSharedKeyCredential(s.accountName, s.accountKey),
  ).toString();
  const c = azureBackend.createClient(
    { url: `abs://${s.accountName}@${container}/sas`, endpoint: s.endpoint },
    { env: { AZURE_STORAGE_SAS_TOKEN: sas } },
  ) as AzureReplicaClient;
  for (let i = 0; i < 3; i++) await c.writeWALSegment({ generation: GEN, index: i, offset: 0 }, Readable.from([Buffer.from('s')]));
  assert.equal((await c.walSegments(GEN)).length, 3);
  assert.deepEqual(await c.generations(), [GEN]);
  assert.equal((await readAll(await c.walSegmentReader({ generation: GEN, index: 0, offset: 0 }))).toString(), 's');
  await c.deleteWALSegments([{ generation: GEN, index: 0, offset: 0 }]);
  assert.equal((await c.walSegments(GEN)).length, 2);
  // Azurite answers a batch under an account SAS with 500; the client falls back to single deletes.
  const fast = client({ accountKey: undefined, sasToken: sas, path: 'sas', retry: { maxTries: 1 } });
  await fast.deleteGeneration(GEN);
  assert.deepEqual(await blobNames('sas/'), []);

  // A container SAS (service SAS) supports container-scoped batch deletes.
  const containerSas = generateBlobSASQueryParameters(
    { containerName: container, permissions: ContainerSASPermissions.parse('rwdl'), expiresOn: new Date(Date.now() + 3600_000) },
    new StorageSharedKeyCredential(s.accountName, s.accountKey),
  ).toString();
  const cs = client({ accountKey: undefined, sasToken: `?${containerSas}`, path: 'csas' });
  for (let i = 0; i < 3; i++) await cs.writeWALSegment({ generation: GEN, index: i, offset: 0 }, Readable.from([Buffer.from('s')]));
  const batched = await countBatchedDeletes(() => cs.deleteWALSegments([0, 1, 2].map((i) => ({ generation: GEN, index: i, offset: 0 }))));
  assert.equal(batched, 3);
  assert.deepEqual(await blobNames('csas/'), []);

  // A read-only SAS cannot write: non-retryable.
  const ro = generateAccountSASQueryParameters(
    {
      expiresOn: new Date(Date.now() + 3600_000),
      permissions: AccountSASPermissions.parse('rl'),
      resourceTypes: AccountSASResourceTypes.parse('sco').toString(),
      services: AccountSASServices.parse('b').toString(),
    },
    new StorageSharedKeyCredential(s.accountName, s.accountKey),
  ).toString();
  const r = client({ accountKey: undefined, sasToken: ro, path: 'sas' });
  await assert.rejects(
    r.writeSnapshot(GEN, 1, Readable.from([Buffer.from('x')])),
    (err: unknown) => err instanceof BackendError && !err.retryable,
  );
});

test('account key from LITESTREAM_AZURE_ACCOUNT_KEY', { skip }, async () => {
  const s = srv();
  const c = azureBackend.createClient(
    { bucket: container, path: 'envkey', 'account-name': s.accountName, endpoint: s.endpoint },
    { env: { LITESTREAM_AZURE_ACCOUNT_KEY: s.accountKey } },
  );
  await c.writeSnapshot(GEN, 3, Readable.from([Buffer.from('k')]));
  assert.deepEqual(
    (await c.snapshots(GEN)).map((x) => x.index),
    [3],
  );
  await c.deleteGeneration(GEN);
  await c.close?.();
});

test('no account key over plain http: a config error naming the key and where to set it, never the SDK bearer-token error', {
  skip,
}, async () => {
  const s = srv();
  assert.ok(s.endpoint.startsWith('http://'), s.endpoint);
  const keys = { bucket: container, path: 'nokey', 'account-name': s.accountName, endpoint: s.endpoint };
  const missing = (err: unknown) => {
    assert.ok(err instanceof ConfigError, String(err));
    assert.equal(
      err.message,
      `account key missing for abs replica at ${s.endpoint}: plain http needs a shared key (Azure AD tokens require https); set account-key in the config or the LITESTREAM_AZURE_ACCOUNT_KEY environment variable (or a sas-token / AZURE_STORAGE_SAS_TOKEN)`,
    );
    assert.doesNotMatch(err.message, /Bearer/);
    return true;
  };
  // Through the backend (litestream.yml keys, no key anywhere) and the client (no credential).
  assert.throws(() => azureBackend.createClient(keys, { env: {} }), missing);
  assert.throws(() => new AzureReplicaClient({ container, accountName: s.accountName, endpoint: s.endpoint }), missing);
  // The fix the message names works against the same server: the key from the config, or from
  // the environment variable.
  for (const [config, env] of [
    [{ ...keys, 'account-key': s.accountKey }, {}],
    [keys, { LITESTREAM_AZURE_ACCOUNT_KEY: s.accountKey }],
  ] as const) {
    const c = azureBackend.createClient(config, { env });
    assert.deepEqual(await c.generations(), []);
    await c.close?.();
  }
});
