import { test } from 'node:test';
import assert from 'node:assert/strict';
import { BackendError, ConfigError } from '@walship/core';
import { AzureReplicaClient, azureBackend, azureOptionsFromConfig } from '../src/index.js';

const KEY = Buffer.from('not a real key, only base64').toString('base64');

function configError(fn: () => unknown, message: string): void {
  assert.throws(fn, (err: unknown) => {
    assert.ok(err instanceof ConfigError, `expected ConfigError, got ${String(err)}`);
    assert.equal(err.code, 'WALSHIP_CONFIG');
    assert.equal(err.message, message);
    return true;
  });
}

test('backend identity', () => {
  assert.equal(azureBackend.type, 'abs');
  assert.deepEqual(azureBackend.schemes, ['abs']);
  for (const k of ['account-name', 'account-key', 'sas-token', 'bucket', 'path', 'endpoint']) {
    assert.ok(azureBackend.configKeys.includes(k), k);
  }
});

test('parseUrl: account, container, path', () => {
  assert.deepEqual(azureBackend.parseUrl('abs://acct@mycontainer/db/main'), {
    'account-name': 'acct',
    bucket: 'mycontainer',
    path: 'db/main',
  });
  assert.deepEqual(azureBackend.parseUrl('abs://mycontainer/'), { bucket: 'mycontainer', path: '' });
  assert.deepEqual(azureBackend.parseUrl('abs://mycontainer/a/./b/../c'), { bucket: 'mycontainer', path: 'a/c' });
  assert.deepEqual(azureBackend.parseUrl('abs://mycontainer'), { bucket: 'mycontainer', path: '' });
  configError(() => azureBackend.parseUrl('s3://bkt/db'), 'invalid abs replica url scheme: s3');
  configError(() => azureBackend.parseUrl('::nope'), 'cannot parse abs replica url: ::nope');
});

test('config errors use Litestream messages', () => {
  const env = {};
  configError(() => azureBackend.createClient({ 'account-name': 'a' }, { env }), 'bucket required for abs replica');
  configError(() => azureBackend.createClient({ url: 'abs:///db' }, { env }), 'bucket required for abs replica');
  configError(
    () => azureBackend.createClient({ url: 'abs://a@c/db', path: 'other' }, { env }),
    'cannot specify url & path for abs replica',
  );
  configError(
    () => azureBackend.createClient({ url: 'abs://a@c/db', bucket: 'other' }, { env }),
    'cannot specify url & bucket for abs replica',
  );
  configError(
    () => azureBackend.createClient({ bucket: 'c', 'account-name': 'a', 'account-key': KEY, 'sas-token': 'sv=x' }, { env }),
    'cannot specify account-key & sas-token for abs replica',
  );
  configError(() => azureBackend.createClient({ bucket: 'c' }, { env }), 'account-name required for abs replica');
  configError(
    () => azureBackend.createClient({ bucket: 'c', endpoint: 'http://127.0.0.1:1/x', 'account-key': KEY }, { env }),
    'account-name required for abs replica when an account key is set',
  );
  configError(
    () => azureBackend.createClient({ bucket: 'c', endpoint: 'ftp://x' }, { env }),
    'invalid endpoint for abs replica: ftp://x (want http:// or https://)',
  );
  configError(() => azureBackend.createClient({ bucket: ['c'] }, { env }), 'invalid bucket for abs replica: expected a string');
});

test('url keys merge under explicit keys (already-merged config is accepted)', () => {
  const env = {};
  const merged = { url: 'abs://acct@c/db', bucket: 'c', path: 'db', 'account-name': 'other' };
  const client = azureBackend.createClient(merged, { env }) as AzureReplicaClient;
  assert.equal(client.container, 'c');
  assert.equal(client.path, 'db');
  assert.equal(client.endpoint, 'https://other.blob.core.windows.net');
  const fromUrl = azureBackend.createClient({ url: 'abs://acct@c/db' }, { env }) as AzureReplicaClient;
  assert.equal(fromUrl.endpoint, 'https://acct.blob.core.windows.net');
  assert.equal(fromUrl.type, 'abs');
});

test('credential selection: explicit key, explicit sas, env key, env sas, Azure AD', () => {
  const base = { bucket: 'c', 'account-name': 'acct' };
  assert.equal(azureOptionsFromConfig({ ...base, 'account-key': KEY }, { LITESTREAM_AZURE_ACCOUNT_KEY: 'env' }).accountKey, KEY);
  const sas = azureOptionsFromConfig({ ...base, 'sas-token': '?sv=1' }, { LITESTREAM_AZURE_ACCOUNT_KEY: 'env' });
  assert.equal(sas.sasToken, '?sv=1');
  assert.equal(sas.accountKey, undefined);
  const envKey = azureOptionsFromConfig(base, { LITESTREAM_AZURE_ACCOUNT_KEY: KEY, AZURE_STORAGE_SAS_TOKEN: 'sv=2' });
  assert.equal(envKey.accountKey, KEY);
  assert.equal(envKey.sasToken, undefined);
  assert.equal(azureOptionsFromConfig(base, { AZURE_STORAGE_SAS_TOKEN: 'sv=2' }).sasToken, 'sv=2');
  const aad = azureOptionsFromConfig(base, {});
  assert.equal(aad.accountKey, undefined);
  assert.equal(aad.sasToken, undefined);
  // No network I/O: building a client for an unreachable endpoint succeeds.
  const client = azureBackend.createClient({ ...base, endpoint: 'https://127.0.0.1:9/acct' }, { env: {} }) as AzureReplicaClient;
  assert.equal(client.endpoint, 'https://127.0.0.1:9/acct');
  // Over plain http an Azure AD token is never sent: without a key or SAS token that is a config
  // error naming the missing key (not the SDK's "Bearer token authentication is not permitted").
  configError(
    () => azureBackend.createClient({ ...base, endpoint: 'http://127.0.0.1:9/acct' }, { env: {} }),
    'account key missing for abs replica at http://127.0.0.1:9/acct: plain http needs a shared key (Azure AD tokens require https); set account-key in the config or the LITESTREAM_AZURE_ACCOUNT_KEY environment variable (or a sas-token / AZURE_STORAGE_SAS_TOKEN)',
  );
  assert.equal(
    (
      azureBackend.createClient(
        { ...base, endpoint: 'http://127.0.0.1:9/acct' },
        { env: { LITESTREAM_AZURE_ACCOUNT_KEY: KEY } },
      ) as AzureReplicaClient
    ).endpoint,
    'http://127.0.0.1:9/acct',
  );
});

test('path: leading slash removed, trailing kept clean', () => {
  const c = new AzureReplicaClient({ container: 'c', accountName: 'a', path: '/db/x' });
  assert.equal(c.path, 'db/x');
});

test('invalid numeric options', () => {
  configError(
    () => new AzureReplicaClient({ container: 'c', accountName: 'a', blockSize: 0 }),
    `invalid block size for abs replica: 0 (want an integer from 1 to ${4000 * 1024 * 1024})`,
  );
  configError(
    () => new AzureReplicaClient({ container: 'c', accountName: 'a', listPageSize: 6000 }),
    'invalid list page size for abs replica: 6000 (want an integer from 1 to 5000)',
  );
});

test('describe never includes credentials', () => {
  const d = azureBackend.describe!({ url: 'abs://acct@c/db', 'account-key': KEY, 'sas-token': 'sv=secret' });
  assert.deepEqual(d, { bucket: 'c', path: 'db', 'account-name': 'acct', endpoint: 'https://acct.blob.core.windows.net' });
});

test('token credential without a usable identity: non-retryable BackendError', async () => {
  let asked = 0;
  const credential = {
    async getToken(): Promise<null> {
      asked++;
      const err = new Error('EnvironmentCredential is unavailable.');
      err.name = 'CredentialUnavailableError';
      throw err;
    },
  };
  const c = new AzureReplicaClient({ container: 'c', endpoint: 'https://127.0.0.1:9/acct', credential, retry: { maxTries: 1 } });
  await assert.rejects(c.generations(), (err: unknown) => {
    assert.ok(err instanceof BackendError, String(err));
    assert.equal(err.retryable, false);
    assert.match(err.message, /^abs: LIST c\/generations\/: no Azure credential available/);
    return true;
  });
  assert.ok(asked >= 1, 'the credential was consulted');
});
