// Config and URL handling (no server needed), checked against Litestream v0.3.13's rules.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:net';
import { ConfigError, BackendError } from '@walship/core';
import {
  DEFAULT_REGION,
  S3ReplicaClient,
  S3_CONFIG_KEYS,
  deleteOutputError,
  parseHost,
  parseS3Url,
  resolveS3Options,
  s3Backend,
} from '../src/index.js';

test('parseHost: provider host table (Litestream ParseHost)', () => {
  const cases: Array<[string, ReturnType<typeof parseHost>]> = [
    ['foo', { bucket: 'foo', region: '', endpoint: '', forcePathStyle: false }],
    ['my.bucket.com', { bucket: 'my.bucket.com', region: '', endpoint: '', forcePathStyle: false }],
    ['my.bucket.com:9000', { bucket: 'my.bucket.com', region: '', endpoint: '', forcePathStyle: false }],
    ['localhost', { bucket: '', region: 'us-east-1', endpoint: 'http://localhost', forcePathStyle: true }],
    ['foo.localhost:9000', { bucket: 'foo', region: 'us-east-1', endpoint: 'http://localhost:9000', forcePathStyle: true }],
    ['a.b.localhost', { bucket: 'a.b', region: 'us-east-1', endpoint: 'http://localhost', forcePathStyle: true }],
    [
      'foo.s3.us-west-000.backblazeb2.com',
      { bucket: 'foo', region: 'us-west-000', endpoint: 'https://s3.us-west-000.backblazeb2.com', forcePathStyle: true },
    ],
    [
      's3.us-west-000.backblazeb2.com:443',
      { bucket: '', region: 'us-west-000', endpoint: 'https://s3.us-west-000.backblazeb2.com:443', forcePathStyle: true },
    ],
    ['foo.s3.filebase.com', { bucket: 'foo', region: '', endpoint: 'https://s3.filebase.com', forcePathStyle: true }],
    [
      'foo.nyc3.digitaloceanspaces.com',
      { bucket: 'foo', region: 'nyc3', endpoint: 'https://nyc3.digitaloceanspaces.com', forcePathStyle: true },
    ],
    ['foo.s3.fr-par.scw.cloud', { bucket: 'foo', region: 'fr-par', endpoint: 'https://s3.fr-par.scw.cloud', forcePathStyle: true }],
    [
      'foo.us-east-1.linodeobjects.com',
      { bucket: 'foo', region: 'us-east-1', endpoint: 'https://us-east-1.linodeobjects.com', forcePathStyle: true },
    ],
    // Upstream's unescaped dots: `s3` may be followed by any character.
    [
      'foo.s3-eu-central-003.backblazeb2.com',
      { bucket: 'foo', region: 'eu-central-003', endpoint: 'https://s3.eu-central-003.backblazeb2.com', forcePathStyle: true },
    ],
    // R2 and friends are not detected: the whole host is the bucket (use `endpoint`).
    ['acct.r2.cloudflarestorage.com', { bucket: 'acct.r2.cloudflarestorage.com', region: '', endpoint: '', forcePathStyle: false }],
  ];
  for (const [host, want] of cases) assert.deepEqual(parseHost(host), want, host);
});

test('parseUrl: Litestream main_test cases and path cleaning', () => {
  assert.deepEqual(s3Backend.parseUrl('s3://foo/bar'), { bucket: 'foo', path: 'bar' });
  assert.deepEqual(s3Backend.parseUrl('s3://foo.localhost:9000/bar'), {
    bucket: 'foo',
    path: 'bar',
    region: 'us-east-1',
    endpoint: 'http://localhost:9000',
    'force-path-style': true,
  });
  assert.deepEqual(s3Backend.parseUrl('s3://foo.s3.us-west-000.backblazeb2.com/bar'), {
    bucket: 'foo',
    path: 'bar',
    region: 'us-west-000',
    endpoint: 'https://s3.us-west-000.backblazeb2.com',
    'force-path-style': true,
  });
  assert.deepEqual(s3Backend.parseUrl('s3://bkt.localhost:9000/db'), {
    bucket: 'bkt',
    path: 'db',
    region: 'us-east-1',
    endpoint: 'http://localhost:9000',
    'force-path-style': true,
  });
  assert.deepEqual(parseS3Url('s3://foo'), { bucket: 'foo' });
  assert.deepEqual(parseS3Url('s3://foo/'), { bucket: 'foo' });
  assert.deepEqual(parseS3Url('s3://foo/a//b/../c/'), { bucket: 'foo', path: 'a/c' });
  assert.deepEqual(parseS3Url('s3://foo/a%20b'), { bucket: 'foo', path: 'a b' });
  assert.deepEqual(parseS3Url('S3://foo/x'), { bucket: 'foo', path: 'x' });
  assert.throws(() => s3Backend.parseUrl('gcs://foo/bar'), ConfigError);
  assert.throws(() => s3Backend.parseUrl('not a url'), ConfigError);
});

test('createClient: Litestream config errors', () => {
  const ctx = { env: {} };
  assert.throws(() => s3Backend.createClient({}, ctx), { name: 'ConfigError', message: 'bucket required for s3 replica' });
  assert.throws(() => s3Backend.createClient({ url: 's3://foo/bar', path: 'other' }, ctx), {
    name: 'ConfigError',
    message: 'cannot specify url & path for s3 replica',
  });
  assert.throws(() => s3Backend.createClient({ url: 's3://foo/bar', bucket: 'other' }, ctx), {
    name: 'ConfigError',
    message: 'cannot specify url & bucket for s3 replica',
  });
  assert.throws(() => s3Backend.createClient({ url: 's3:///bar' }, ctx), {
    message: 'bucket required for s3 replica',
  });
  assert.throws(() => s3Backend.createClient({ bucket: 'b', 'force-path-style': 'maybe' }, ctx), ConfigError);
  assert.throws(() => s3Backend.createClient({ bucket: 'b', 'request-checksum-calculation': 'always' }, ctx), {
    name: 'ConfigError',
    message: /request-checksum-calculation.*when_supported or when_required/,
  });
  assert.throws(() => s3Backend.createClient({ bucket: 'b', endpoint: 'ftp://x' }, ctx), ConfigError);
  // URL keys already merged by a composer (same values) are accepted.
  const merged = { url: 's3://foo/bar', ...s3Backend.parseUrl('s3://foo/bar') };
  assert.ok(s3Backend.createClient(merged, ctx) instanceof S3ReplicaClient);
});

test('createClient: precedence of explicit keys, URL and path style', () => {
  const env = {};
  // Explicit keys win over URL-derived ones.
  assert.deepEqual(resolveS3Options({ url: 's3://foo.localhost:9000/db', region: 'eu-west-3', endpoint: 'http://127.0.0.1:1234' }, env), {
    bucket: 'foo',
    path: 'db',
    region: 'eu-west-3',
    endpoint: 'http://127.0.0.1:1234',
    forcePathStyle: true,
  });
  // force-path-style: default true with an endpoint, explicit false overrides...
  assert.equal(resolveS3Options({ bucket: 'b', endpoint: 'http://x:1' }, env).forcePathStyle, true);
  assert.equal(resolveS3Options({ bucket: 'b', endpoint: 'http://x:1', 'force-path-style': false }, env).forcePathStyle, false);
  assert.equal(resolveS3Options({ bucket: 'b' }, env).forcePathStyle, false);
  assert.equal(resolveS3Options({ bucket: 'b', 'force-path-style': 'true' }, env).forcePathStyle, true);
  // ...but a provider URL can only switch it on.
  assert.equal(resolveS3Options({ url: 's3://b.localhost/x', 'force-path-style': false }, env).forcePathStyle, true);
  assert.equal(resolveS3Options({ url: 's3://b/x', endpoint: 'http://x:1' }, env).forcePathStyle, true);
  assert.equal(resolveS3Options({ url: 's3://b/x' }, env).forcePathStyle, false);
});

test('createClient: checksum defaults and credentials from the environment', () => {
  assert.equal(resolveS3Options({ bucket: 'b' }, {}).requestChecksumCalculation, undefined);
  assert.equal(
    resolveS3Options({ bucket: 'b', 'request-checksum-calculation': 'When_Supported' }, {}).requestChecksumCalculation,
    'WHEN_SUPPORTED',
  );
  assert.equal(
    resolveS3Options({ bucket: 'b', endpoint: 'http://x:1', 'response-checksum-validation': 'when_supported' }, {})
      .responseChecksumValidation,
    'WHEN_SUPPORTED',
  );
  assert.equal(
    resolveS3Options({ bucket: 'b', endpoint: 'http://x:1' }, { AWS_REQUEST_CHECKSUM_CALCULATION: 'when_supported' })
      .requestChecksumCalculation,
    'WHEN_SUPPORTED',
  );
  const fromLitestream = resolveS3Options({ bucket: 'b' }, { LITESTREAM_ACCESS_KEY_ID: 'AK', LITESTREAM_SECRET_ACCESS_KEY: 'SK' });
  assert.equal(fromLitestream.accessKeyId, 'AK');
  assert.equal(fromLitestream.secretAccessKey, 'SK');
  const awsWins = resolveS3Options(
    { bucket: 'b' },
    { LITESTREAM_ACCESS_KEY_ID: 'AK', LITESTREAM_SECRET_ACCESS_KEY: 'SK', AWS_ACCESS_KEY_ID: 'X' },
  );
  assert.equal(awsWins.accessKeyId, undefined, 'AWS_* set: default chain');
  const explicit = resolveS3Options({ bucket: 'b', 'access-key-id': 'K', 'secret-access-key': 'S' }, { LITESTREAM_ACCESS_KEY_ID: 'AK' });
  assert.equal(explicit.accessKeyId, 'K');
});

test('backend: type, schemes, config keys, describe without secrets', () => {
  assert.equal(s3Backend.type, 's3');
  assert.deepEqual(s3Backend.schemes, ['s3']);
  for (const k of ['bucket', 'path', 'region', 'endpoint', 'force-path-style', 'skip-verify', 'access-key-id', 'secret-access-key']) {
    assert.ok(S3_CONFIG_KEYS.includes(k as (typeof S3_CONFIG_KEYS)[number]), k);
  }
  const d = s3Backend.describe!({
    url: 's3://foo.localhost:9000/db',
    'access-key-id': 'AKIASECRET',
    'secret-access-key': 'topsecret',
  });
  assert.deepEqual(d, {
    bucket: 'foo',
    path: 'db',
    region: 'us-east-1',
    endpoint: 'http://localhost:9000',
    'force-path-style': 'true',
  });
  assert.ok(!JSON.stringify(d).includes('SECRET') && !JSON.stringify(d).includes('topsecret'));
  assert.equal(s3Backend.describe!({ bucket: 'b' })['region'], '(lookup)');
});

test('createClient: skip-verify warns', () => {
  const warnings: string[] = [];
  s3Backend.createClient({ bucket: 'b', endpoint: 'https://x:1', 'skip-verify': true }, { env: {}, warn: (m) => warnings.push(m) });
  assert.equal(warnings.length, 1);
  assert.match(warnings[0]!, /TLS certificate verification disabled/);
});

test('createClient and idle clients do no network I/O', async () => {
  let connections = 0;
  const server: Server = createServer((sock) => {
    connections++;
    sock.destroy();
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  const port = (server.address() as { port: number }).port;
  try {
    const client = s3Backend.createClient(
      { bucket: 'b', endpoint: `http://127.0.0.1:${port}`, 'access-key-id': 'a', 'secret-access-key': 'b' },
      { env: {} },
    ) as S3ReplicaClient;
    // No endpoint and no region: the region lookup must also wait for the first request.
    const lazy = new S3ReplicaClient({
      bucket: 'b',
      accessKeyId: 'a',
      secretAccessKey: 'b',
      clientConfig: { endpoint: `http://127.0.0.1:${port}` },
    });
    await new Promise((r) => setTimeout(r, 300));
    assert.equal(connections, 0, 'no connection before the first call');
    const err = await client.generations().then(
      () => undefined,
      (e: unknown) => e,
    );
    assert.ok(err instanceof BackendError, 'a reset connection is a BackendError');
    assert.equal(err.retryable, true, 'network errors are retryable');
    assert.ok(connections >= 1);
    await client.close();
    await lazy.close();
  } finally {
    server.close();
  }
});

test('deleteOutputError: Litestream message formats', () => {
  const one = deleteOutputError([{ Key: 'db/generations/x', Code: 'AccessDenied', Message: 'Access Denied' }]);
  assert.equal(one.message, 'deleting object db/generations/x: AccessDenied - Access Denied');
  assert.equal(one.retryable, false);
  const many = deleteOutputError([
    { Key: 'k1', Code: 'InternalError', Message: 'We encountered an internal error' },
    { Key: 'k2', Code: 'InternalError', Message: 'again' },
    { Key: 'k3', Code: 'SlowDown', Message: 'slow' },
  ]);
  assert.equal(many.message, '3 errors occurred deleting objects, k1: InternalError - (We encountered an internal error (and 2 others)');
  assert.equal(many.retryable, true);
  assert.equal(many.code, 'WALSHIP_BACKEND');
});

test('S3ReplicaClient: constructor validation', () => {
  assert.throws(() => new S3ReplicaClient({ bucket: '' }), { message: 'bucket required for s3 replica' });
  assert.throws(() => new S3ReplicaClient({ bucket: 'b', partSize: 1024 }), ConfigError);
  assert.throws(() => new S3ReplicaClient({ bucket: 'b', queueSize: 0 }), ConfigError);
  assert.throws(() => new S3ReplicaClient({ bucket: 'b', maxAttempts: 0 }), ConfigError);
  const c = new S3ReplicaClient({ bucket: 'b', endpoint: 'http://127.0.0.1:9' });
  assert.equal(c.type, 's3');
  assert.equal(c.forcePathStyle, true);
  assert.equal(DEFAULT_REGION, 'us-east-1');
});
