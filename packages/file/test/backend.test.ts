import assert from 'node:assert/strict';
import os from 'node:os';
import path from 'node:path';
import { describe, test } from 'node:test';
import { ConfigError } from '@walship/core';
import { FileReplicaClient, fileBackend } from '../src/index.js';

const ctx = { env: {} };

function configError(message?: string | RegExp) {
  return (err: unknown) => {
    assert.ok(err instanceof ConfigError, `expected ConfigError, got ${String(err)}`);
    assert.equal(err.code, 'WALSHIP_CONFIG');
    if (typeof message === 'string') assert.equal(err.message, message);
    else if (message) assert.match(err.message, message);
    return true;
  };
}

describe('fileBackend', { skip: process.platform === 'win32' ? 'POSIX paths' : false }, () => {
  test('identity', () => {
    assert.equal(fileBackend.type, 'file');
    assert.deepEqual(fileBackend.schemes, ['file']);
    assert.deepEqual(fileBackend.configKeys, ['path']);
  });

  test('parseUrl: local file URLs', () => {
    assert.deepEqual(fileBackend.parseUrl('file:///var/lib/db'), { path: '/var/lib/db' });
    assert.deepEqual(fileBackend.parseUrl('file://localhost/var/lib/db'), { path: '/var/lib/db' });
    assert.deepEqual(fileBackend.parseUrl('file:///backups/my%20db'), { path: '/backups/my db' });
    assert.deepEqual(fileBackend.parseUrl('file:///'), { path: '/' });
  });

  test('parseUrl: rejects non-local hosts, other schemes, garbage and missing paths', () => {
    assert.throws(() => fileBackend.parseUrl('file://host/var/lib/db'), configError(/local path.*"host"/));
    assert.throws(() => fileBackend.parseUrl('s3://bucket/db'), configError(/file:\/\//));
    assert.throws(() => fileBackend.parseUrl('not a url'), configError(/invalid file replica url/));
    assert.throws(() => fileBackend.parseUrl('file://'), configError('file replica path required'));
  });

  test('createClient', () => {
    const client = fileBackend.createClient({ path: '/srv/replica' }, ctx);
    assert.ok(client instanceof FileReplicaClient);
    assert.equal(client.type, 'file');
    assert.equal(client.path, '/srv/replica');
    assert.equal((fileBackend.createClient({ path: '~/r' }, ctx) as FileReplicaClient).path, path.join(os.homedir(), 'r'));
    assert.equal(
      (fileBackend.createClient({ ...fileBackend.parseUrl('file:///from/url'), type: 'file', name: 'x' }, ctx) as FileReplicaClient).path,
      '/from/url',
    );
  });

  test('createClient: path required', () => {
    assert.throws(() => fileBackend.createClient({}, ctx), configError('file replica path required'));
    assert.throws(() => fileBackend.createClient({ path: '' }, ctx), configError('file replica path required'));
    assert.throws(() => fileBackend.createClient({ path: 42 }, ctx), configError('file replica path must be a string, got number'));
  });

  test('describe', () => {
    assert.deepEqual(fileBackend.describe?.({ path: '/srv/replica' }), { path: '/srv/replica' });
    assert.deepEqual(fileBackend.describe?.({ path: '~/r' }), { path: path.join(os.homedir(), 'r') });
    assert.deepEqual(fileBackend.describe?.({}), {});
  });
});
