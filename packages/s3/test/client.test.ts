// S3-specific behaviour against real servers: s3rver (always) and Ceph radosgw (when configured;
// required under CI=true). The raw SDK client is the backdoor for checking what landed.
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { Readable } from 'node:stream';
import { GetBucketLocationCommand, HeadObjectCommand, ListMultipartUploadsCommand } from '@aws-sdk/client-s3';
import { BackendError, InvalidArgumentError, NotFoundError, type Pos } from '@walship/core';
import { S3ReplicaClient } from '../src/index.js';
import {
  clientFor,
  createBucket,
  destroyBucket,
  listAllKeys,
  radosgwFromEnv,
  rawClient,
  readObject,
  startS3rver,
  uniqueBucketName,
  unavailableMode,
  writeObject,
  type ServerResult,
} from './helpers/servers.js';

const GEN = '0123456789abcdef';
const GEN2 = 'b16ddcf5c697540f';
const MiB = 1024 * 1024;

function bodyOf(buf: Buffer): Readable {
  return Readable.from([buf]);
}

/** `total` bytes in 64 KiB chunks, then an error when `failAfter` is given. */
function chunked(total: number, failAfter?: number): Readable {
  let sent = 0;
  return new Readable({
    read() {
      if (failAfter !== undefined && sent >= failAfter) {
        this.destroy(new Error('body failed on purpose'));
        return;
      }
      if (sent >= total) {
        this.push(null);
        return;
      }
      const n = Math.min(64 * 1024, total - sent);
      const chunk = Buffer.alloc(n, sent % 251);
      sent += n;
      this.push(chunk);
    },
  });
}

async function readAll(r: Readable): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const c of r) parts.push(c as Buffer);
  return Buffer.concat(parts);
}

async function rejection(p: Promise<unknown>): Promise<unknown> {
  return p.then(
    () => assert.fail('expected a rejection'),
    (e: unknown) => e,
  );
}

function suite(name: string, result: ServerResult): void {
  if (!result.server) {
    const m = unavailableMode(result.unavailable);
    if ('skip' in m) test(`${name}: s3 client`, { skip: m.skip }, () => {});
    else test(`${name}: s3 client`, () => assert.fail(m.fail));
    return;
  }
  const server = result.server;
  const raw = rawClient(server);
  const buckets: string[] = [];
  const clients: S3ReplicaClient[] = [];
  after(async () => {
    await Promise.all(clients.map((c) => c.close()));
    for (const b of buckets) await destroyBucket(raw, b).catch(() => {});
    raw.destroy();
    await server.stop();
  });
  async function fresh(path = 'db', overrides = {}): Promise<{ bucket: string; client: S3ReplicaClient }> {
    const bucket = uniqueBucketName('c');
    await createBucket(raw, bucket);
    buckets.push(bucket);
    const client = clientFor(server, bucket, { path, ...overrides });
    clients.push(client);
    return { bucket, client };
  }

  test(`${name}: keys follow Litestream's layout under path, bucket root when path is empty`, async () => {
    const { bucket, client } = await fresh('');
    await client.writeSnapshot(GEN, 1, bodyOf(Buffer.from('snap')));
    await client.writeWALSegment({ generation: GEN, index: 1, offset: 4152 }, bodyOf(Buffer.from('seg')));
    assert.deepEqual((await listAllKeys(raw, bucket)).sort(), [
      `generations/${GEN}/snapshots/00000001.snapshot.lz4`,
      `generations/${GEN}/wal/00000001_00001038.wal.lz4`,
    ]);
    const { bucket: b2, client: c2 } = await fresh('a/./b/../db/');
    await c2.writeSnapshot(GEN, 0x3e8, bodyOf(Buffer.from('x')));
    assert.deepEqual(await listAllKeys(raw, b2), [`a/db/generations/${GEN}/snapshots/000003e8.snapshot.lz4`]);
  });

  test(`${name}: write returns bytes written and the upload start time; listings use LastModified`, async () => {
    const { bucket, client } = await fresh();
    const before = Date.now();
    const info = await client.writeSnapshot(GEN, 7, bodyOf(Buffer.alloc(1234, 1)));
    assert.equal(info.size, 1234);
    assert.ok(info.createdAt.getTime() >= before - 1 && info.createdAt.getTime() <= Date.now());
    const [listed] = await client.snapshots(GEN);
    const head = await raw.send(new HeadObjectCommand({ Bucket: bucket, Key: `db/generations/${GEN}/snapshots/00000007.snapshot.lz4` }));
    assert.equal(listed!.size, 1234);
    // HEAD's Last-Modified has whole seconds; listings may carry milliseconds.
    assert.equal(Math.floor(listed!.createdAt.getTime() / 1000), Math.floor(head.LastModified!.getTime() / 1000));
  });

  test(`${name}: large snapshot goes through multipart upload in bounded parts`, async () => {
    const { bucket, client } = await fresh();
    const size = 12 * MiB + 77;
    const info = await client.writeSnapshot(GEN, 2, chunked(size));
    assert.equal(info.size, size);
    const key = `db/generations/${GEN}/snapshots/00000002.snapshot.lz4`;
    const head = await raw.send(new HeadObjectCommand({ Bucket: bucket, Key: key }));
    assert.equal(head.ContentLength, size);
    if (server.kind === 'radosgw') assert.match(head.ETag ?? '', /-3"?$/, 'multipart ETag has the part count');
    const back = await readAll(await client.snapshotReader(GEN, 2));
    assert.equal(back.length, size);
    assert.ok(back.equals(await readAll(chunked(size))));
  });

  test(`${name}: a body failing mid-multipart leaves no object and no pending upload`, async () => {
    const { bucket, client } = await fresh();
    const err = await rejection(client.writeSnapshot(GEN, 3, chunked(20 * MiB, 11 * MiB)));
    assert.ok(err instanceof Error);
    assert.deepEqual(await listAllKeys(raw, bucket), []);
    if (server.kind === 'radosgw') {
      const uploads = await raw.send(new ListMultipartUploadsCommand({ Bucket: bucket }));
      assert.deepEqual(uploads.Uploads ?? [], [], 'multipart upload aborted');
    }
  });

  test(`${name}: missing key is NotFoundError; missing bucket is a non-retryable BackendError`, async () => {
    const { client } = await fresh();
    const nf = await rejection(client.snapshotReader(GEN, 1));
    assert.ok(nf instanceof NotFoundError, String(nf));
    assert.equal((nf as NotFoundError).code, 'WALSHIP_NOT_FOUND');
    const missing = clientFor(server, uniqueBucketName('missing'), { path: 'db' });
    clients.push(missing);
    for (const call of [
      () => missing.snapshotReader(GEN, 1),
      () => missing.generations(),
      () => missing.writeSnapshot(GEN, 1, bodyOf(Buffer.from('x'))),
      () => missing.deleteSnapshot(GEN, 1),
    ]) {
      const e = await rejection(call());
      assert.ok(e instanceof BackendError, `expected BackendError, got ${String(e)}`);
      assert.ok(!(e instanceof NotFoundError));
      assert.equal((e as BackendError).retryable, false, (e as Error).message);
      assert.match((e as Error).message, /NoSuchBucket/);
    }
  });

  test(`${name}: wrong credentials fail fast with a non-retryable BackendError`, async () => {
    const { client: ok } = await fresh();
    await ok.writeSnapshot(GEN, 1, bodyOf(Buffer.from('x')));
    const bucket = ok.bucket;
    // s3rver checks only the access key id; radosgw verifies the SigV4 signature.
    const bad =
      server.kind === 'radosgw'
        ? clientFor(server, bucket, { path: 'db', secretAccessKey: 'wrong-secret-wrong-secret-wrong-secret00' })
        : clientFor(server, bucket, { path: 'db', accessKeyId: 'NOSUCHKEY' });
    clients.push(bad);
    const want = server.kind === 'radosgw' ? /SignatureDoesNotMatch/ : /InvalidAccessKeyId/;
    for (const call of [
      () => bad.generations(),
      () => bad.snapshots(GEN),
      () => bad.snapshotReader(GEN, 1),
      () => bad.writeSnapshot(GEN, 2, bodyOf(Buffer.from('y'))),
      () => bad.deleteSnapshot(GEN, 1),
    ]) {
      const e = await rejection(call());
      assert.ok(e instanceof BackendError, `expected BackendError, got ${String(e)}`);
      assert.equal(e.retryable, false);
      assert.equal(e.code, 'WALSHIP_BACKEND');
      assert.match(e.message, want);
      assert.ok(!e.message.includes('\n'), 'one-line message');
    }
  });

  test(`${name}: deleteWALSegments batches over 1000 keys and validates before deleting`, async () => {
    const { bucket, client } = await fresh();
    const positions: Pos[] = [];
    for (let i = 0; i < 1003; i++) positions.push({ generation: i % 2 ? GEN : GEN2, index: i, offset: 0 });
    const limit = 64;
    for (let i = 0; i < positions.length; i += limit) {
      await Promise.all(
        positions
          .slice(i, i + limit)
          .map((p) =>
            writeObject(
              raw,
              bucket,
              `db/generations/${p.generation}/wal/${p.index.toString(16).padStart(8, '0')}_00000000.wal.lz4`,
              Buffer.from('w'),
            ),
          ),
      );
    }
    const bad = await rejection(client.deleteWALSegments([...positions, { generation: '', index: 1, offset: 0 }]));
    assert.ok(bad instanceof InvalidArgumentError);
    assert.equal((bad as Error).message, 'cannot determine wal segment path: generation required');
    assert.equal((await listAllKeys(raw, bucket)).length, 1003, 'nothing deleted when a position is invalid');
    const extra = { generation: GEN, index: 99999, offset: 0 }; // missing: ignored
    await client.deleteWALSegments([...positions.slice(0, 1002), extra]);
    assert.deepEqual(await listAllKeys(raw, bucket), [
      `db/generations/${GEN2}/wal/${(1002).toString(16).padStart(8, '0')}_00000000.wal.lz4`,
    ]);
  });

  test(`${name}: deleteGeneration leaves a generation sharing the name prefix alone`, async () => {
    const { bucket, client } = await fresh();
    await client.writeSnapshot(GEN, 1, bodyOf(Buffer.from('a')));
    await writeObject(raw, bucket, `db/generations/${GEN}-other/keep`, Buffer.from('k'));
    await writeObject(raw, bucket, `db/generations/${GEN}/foreign.txt`, Buffer.from('f'));
    await client.deleteGeneration(GEN);
    assert.deepEqual(await listAllKeys(raw, bucket), [`db/generations/${GEN}-other/keep`]);
  });

  test(`${name}: bytes are stored exactly (no aws-chunked framing with a custom endpoint)`, async () => {
    const { bucket, client } = await fresh();
    const body = Buffer.alloc(300 * 1024, 7);
    // A multi-chunk stream, the case s3rver silently corrupts under WHEN_SUPPORTED.
    await client.writeWALSegment({ generation: GEN, index: 1, offset: 0 }, Readable.from([body.subarray(0, 1000), body.subarray(1000)]));
    const stored = await readObject(raw, bucket, `db/generations/${GEN}/wal/00000001_00000000.wal.lz4`);
    assert.ok(stored?.equals(body), 'stored bytes equal the body');
  });

  test(`${name}: region lookup happens lazily on first use (GetBucketLocation)`, async () => {
    const { bucket } = await fresh();
    // No `endpoint` option (so the client looks the region up) but the SDK is pointed at the server.
    const client = new S3ReplicaClient({
      bucket,
      path: 'db',
      accessKeyId: server.accessKeyId,
      secretAccessKey: server.secretAccessKey,
      requestChecksumCalculation: 'WHEN_REQUIRED',
      responseChecksumValidation: 'WHEN_REQUIRED',
      clientConfig: { endpoint: server.endpoint, forcePathStyle: true },
    });
    clients.push(client);
    await client.writeSnapshot(GEN, 1, bodyOf(Buffer.from('r')));
    const sdk = await client.sdkClient();
    // s3rver answers an empty constraint (= us-east-1); radosgw answers its zonegroup name.
    const loc = await raw.send(new GetBucketLocationCommand({ Bucket: bucket }));
    assert.equal(await sdk.config.region(), loc.LocationConstraint || 'us-east-1');
    assert.equal((await client.snapshots(GEN)).length, 1);
  });

  test(`${name}: unreachable endpoint is a retryable BackendError`, async () => {
    const client = new S3ReplicaClient({
      bucket: 'b',
      endpoint: 'http://127.0.0.1:1',
      accessKeyId: 'a',
      secretAccessKey: 'b',
      maxAttempts: 1,
    });
    clients.push(client);
    const e = await rejection(client.snapshots(GEN));
    assert.ok(e instanceof BackendError);
    assert.equal(e.retryable, true);
  });
}

suite('s3rver', await startS3rver());
suite('radosgw', radosgwFromEnv());
