import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ConfigError } from '@walship/core';
import { GcsReplicaClient, gcsBackend } from '../src/index.js';

const env = { env: {} };

test('backend identity', () => {
  assert.equal(gcsBackend.type, 'gcs');
  assert.deepEqual([...gcsBackend.schemes], ['gcs', 'gs']);
  assert.deepEqual([...gcsBackend.configKeys], ['bucket', 'path', 'endpoint']);
});

test('parseUrl: gcs:// and gs:// give bucket and cleaned path without a leading slash', () => {
  assert.deepEqual(gcsBackend.parseUrl('gcs://mybkt/db'), { bucket: 'mybkt', path: 'db' });
  assert.deepEqual(gcsBackend.parseUrl('gs://mybkt/a/b/../c/'), { bucket: 'mybkt', path: 'a/c' });
  assert.deepEqual(gcsBackend.parseUrl('gs://my.bkt_1'), { bucket: 'my.bkt_1', path: '' });
  assert.deepEqual(gcsBackend.parseUrl('gcs://mybkt/'), { bucket: 'mybkt', path: '' });
  assert.deepEqual(gcsBackend.parseUrl('gcs://mybkt//x//y'), { bucket: 'mybkt', path: 'x/y' });
});

test('parseUrl: malformed URLs throw ConfigError', () => {
  const bad: Array<[string, RegExp]> = [
    ['not a url', /^invalid gcs replica url: not a url$/],
    ['s3://bkt/db', /^invalid gcs replica url scheme: s3:\/\//],
    ['gcs:///db', /^bucket required for gcs replica$/],
    ['gcs://user:pw@bkt/db', /^invalid gcs replica url/],
    ['gcs://bkt:443/db', /^invalid gcs replica url/],
    ['gcs://bkt/%zz', /^invalid gcs replica url/],
  ];
  for (const [url, re] of bad) {
    assert.throws(
      () => gcsBackend.parseUrl(url),
      (e: unknown) => e instanceof ConfigError && e.code === 'WALSHIP_CONFIG' && re.test(e.message),
      url,
    );
  }
});

test('createClient: bucket required, with Litestream message', () => {
  for (const config of [{}, { bucket: '' }, { path: 'db' }]) {
    assert.throws(
      () => gcsBackend.createClient(config, env),
      (e: unknown) => e instanceof ConfigError && e.message === 'bucket required for gcs replica',
    );
  }
  assert.throws(
    () => gcsBackend.createClient({ bucket: 5 }, env),
    (e: unknown) => e instanceof ConfigError && /bucket must be a string/.test(e.message),
  );
  assert.throws(() => gcsBackend.createClient({ bucket: 'b', endpoint: 'ftp://x' }, env), ConfigError);
});

test('createClient: builds a client from merged URL keys without network I/O', () => {
  const c = gcsBackend.createClient({ ...gcsBackend.parseUrl('gs://bkt/some/db'), type: 'gcs', name: 'r1', retention: '24h' }, env);
  assert.ok(c instanceof GcsReplicaClient);
  assert.equal(c.type, 'gcs');
  assert.equal(c.bucketName, 'bkt');
  assert.equal(c.root, 'some/db');
  assert.equal(c.capabilities.batchDelete, false);
  assert.equal(c.capabilities.maxConcurrency, 8);
});

test('createClient: endpoint key, then STORAGE_EMULATOR_HOST from the context', () => {
  const a = gcsBackend.createClient(
    { bucket: 'b', endpoint: 'http://127.0.0.1:1234/' },
    { env: { STORAGE_EMULATOR_HOST: 'http://127.0.0.1:9' } },
  );
  assert.equal((a as GcsReplicaClient).storage.apiEndpoint, 'http://127.0.0.1:1234');
  const b = gcsBackend.createClient({ bucket: 'b' }, { env: { STORAGE_EMULATOR_HOST: 'http://127.0.0.1:4443' } });
  assert.equal((b as GcsReplicaClient).storage.apiEndpoint, 'http://127.0.0.1:4443');
  const c = gcsBackend.createClient({ bucket: 'b' }, env);
  assert.match((c as GcsReplicaClient).storage.apiEndpoint, /^https:\/\/storage\.googleapis\.com$/);
});

test('describe: bucket, path, endpoint only', () => {
  assert.deepEqual(gcsBackend.describe!({ bucket: 'b', path: 'p', endpoint: 'http://e', type: 'gcs', 'secret-access-key': 'x' }), {
    bucket: 'b',
    path: 'p',
    endpoint: 'http://e',
  });
  assert.deepEqual(gcsBackend.describe!({ bucket: 'b' }), { bucket: 'b' });
});

test('client options are validated', () => {
  const ok = { bucket: 'b' };
  assert.throws(() => new GcsReplicaClient({ bucket: '' }), /^ConfigError: bucket required for gcs replica$/);
  assert.throws(() => new GcsReplicaClient({ bucket: 'a/b' }), ConfigError);
  assert.throws(() => new GcsReplicaClient({ ...ok, pageSize: 0 }), ConfigError);
  assert.throws(() => new GcsReplicaClient({ ...ok, pageSize: 1001 }), ConfigError);
  assert.throws(() => new GcsReplicaClient({ ...ok, maxConcurrency: 0 }), ConfigError);
  assert.throws(() => new GcsReplicaClient({ ...ok, chunkSize: 1000 }), /multiple of 262144/);
  assert.throws(() => new GcsReplicaClient({ ...ok, singleRequestThreshold: -1 }), ConfigError);
  const c = new GcsReplicaClient({ ...ok, path: '/abs/./x', chunkSize: 512 * 1024, maxConcurrency: 3 });
  assert.equal(c.root, '/abs/x');
  assert.equal(c.capabilities.maxConcurrency, 3);
});

test('close is idempotent', async () => {
  const c = new GcsReplicaClient({ bucket: 'b' });
  await c.close();
  await c.close();
});
