import assert from 'node:assert/strict';
import { after, test } from 'node:test';
import { joinKey } from '@walship/core/backend';
import { leasePreconditionGaps, replicaClientSuite, replicaClientTestNames, type StoreBackdoor } from '@walship/replica-client-tests';
import type { Storage } from '@google-cloud/storage';
import { GcsReplicaClient, type GcsReplicaClientOptions } from '../src/index.js';
import { emulatorForTests, uniqueBucket } from './helpers/emulator.js';
import { startPreconditionProxy } from './helpers/precondition-proxy.js';

// 64 MiB: the emulator accepts at most 130 MB per request, and our resumable uploads without a
// chunkSize send the whole body in one PUT, so 64 MiB stays well below that limit while still
// being 8x the single-request threshold (8 MiB), i.e. exercising the streamed path.
const LARGE_OBJECT_BYTES = 64 * 1024 * 1024;

function isNotFound(err: unknown): boolean {
  return (err as { code?: unknown }).code === 404;
}

/** Raw-SDK access to one bucket/root, bypassing the client under test. */
function backdoor(storage: Storage, bucket: string, root: string): StoreBackdoor {
  const b = storage.bucket(bucket);
  const prefix = root ? `${root}/` : '';
  async function metadata(key: string): Promise<{ size: number; createdAt: Date } | undefined> {
    try {
      const [md] = await b.file(joinKey(root, key)).getMetadata();
      assert.ok(md.timeCreated, `getMetadata ${joinKey(root, key)}: no timeCreated`);
      return { size: Number(md.size), createdAt: new Date(String(md.timeCreated)) };
    } catch (err) {
      if (isNotFound(err)) return undefined;
      throw err;
    }
  }
  return {
    // timeCreated is RFC 3339 with milliseconds.
    timeResolutionMs: 1,
    statKey: metadata,
    async openKey(key) {
      if (!(await metadata(key))) return undefined;
      return b.file(joinKey(root, key)).createReadStream();
    },
    async listKeys() {
      const [files] = await b.getFiles({ prefix, autoPaginate: true });
      return files.map((f) => f.name.slice(prefix.length));
    },
    async readKey(key) {
      try {
        const [data] = await b.file(joinKey(root, key)).download();
        return data;
      } catch (err) {
        if (isNotFound(err)) return undefined;
        throw err;
      }
    },
    async writeKey(key, body) {
      await b.file(joinKey(root, key)).save(body, { resumable: false });
    },
    async cleanup() {
      await b.deleteFiles({ prefix, force: true });
    },
  };
}

const server = await emulatorForTests();
if (!server.ok) {
  test('gcs: conformance suite against the Firebase Storage emulator', { skip: server.fail ? false : server.message }, () => {
    assert.fail(server.message);
  });
} else {
  const emu = server.emulator;
  after(() => emu.stop());
  const raw = emu.storage();
  let n = 0;
  // Started before any test is registered: an await after registering lets the runner run (and
  // finish, stopping the emulator) the tests registered so far.
  const proxy = await startPreconditionProxy(emu.endpoint);
  after(() => proxy.close());

  const variants: Array<{
    prefix: string;
    options: Partial<GcsReplicaClientOptions>;
    root: () => string;
    skip?: string[];
  }> = [
    // Default production settings: resumable uploads (no chunkSize) for bodies over 8 MiB.
    { prefix: 'gcs: ', options: {}, root: () => `walship/run-${++n}` },
    // Forced single-request uploads, as used against services without resumable uploads,
    // with a small threshold so the streamed single-request path is exercised too; at the bucket root.
    {
      prefix: 'gcs (resumable: false): ',
      options: { resumable: false, singleRequestThreshold: 1024 * 1024 },
      root: () => '',
      // Listing does not depend on the upload mode and the 1,100-object runs take ~40 s; the
      // first variant covers them (generations pagination still runs here, at the bucket root).
      skip: ['pagination: WAL segments', 'pagination: snapshots'],
    },
  ];
  // The emulator ignores ifGenerationMatch (on save and delete alike: see test-servers.md), so
  // the lease's conditional writes cannot be checked against it: those cases run as declared
  // gaps (they must fail). Real GCS enforces generation preconditions; no emulator here does.
  const gaps = leasePreconditionGaps('the Firebase Storage emulator ignores ifGenerationMatch; not checkable here');
  for (const v of variants) {
    replicaClientSuite({
      test,
      prefix: v.prefix,
      gaps,
      largeObjectBytes: LARGE_OBJECT_BYTES,
      ...(v.skip ? { skip: v.skip } : {}),
      create: async () => {
        const bucket = uniqueBucket('conf');
        const root = v.root();
        const client = new GcsReplicaClient({ bucket, path: root, endpoint: emu.endpoint, ...v.options });
        return { client, store: backdoor(raw, bucket, root) };
      },
    });
  }

  // The lease cases once more, through a proxy that enforces ifGenerationMatch the way GCS does
  // (see precondition-proxy.ts): this checks the preconditions the client sends and how it
  // reads a 412, which the emulator alone cannot (a client that sent none would get past the
  // proxy, and the precondition cases would fail).
  replicaClientSuite({
    test,
    prefix: 'gcs (preconditions enforced by a proxy): ',
    skip: replicaClientTestNames.filter((n) => !n.startsWith('lease')),
    create: async () => {
      const bucket = uniqueBucket('conf');
      const root = `walship/run-${++n}`;
      return { client: new GcsReplicaClient({ bucket, path: root, endpoint: proxy.endpoint }), store: backdoor(raw, bucket, root) };
    },
  });
}
