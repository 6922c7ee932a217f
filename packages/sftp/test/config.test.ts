/** Backend config/URL handling and known_hosts parsing (no server needed). */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { ConfigError } from '@walship/core';
import {
  SftpReplicaClient,
  checkKnownHosts,
  fingerprint,
  knownHostsName,
  parseKnownHosts,
  parsePublicKey,
  sftpBackend,
} from '../src/index.js';

const ED = 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl';
const ED2 = 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHmB0bxkbrbOUrBPTwwpfa6Zx3Ud1nN3lCq8B6GzLbW1';
const ctx = { env: {} };

function configError(fn: () => unknown, message: string): void {
  assert.throws(fn, (err: unknown) => {
    assert.ok(err instanceof ConfigError, `expected ConfigError, got ${String(err)}`);
    assert.equal(err.code, 'WALSHIP_CONFIG');
    assert.equal(err.message, message);
    return true;
  });
}

test('backend identity', () => {
  assert.equal(sftpBackend.type, 'sftp');
  assert.deepEqual(sftpBackend.schemes, ['sftp']);
  for (const k of [
    'host',
    'user',
    'password',
    'key-path',
    'path',
    'key-passphrase',
    'host-key',
    'known-hosts-path',
    'insecure-ignore-host-key',
  ]) {
    assert.ok(sftpBackend.configKeys.includes(k), k);
  }
});

test('parseUrl: user, password, host with port, absolute path', () => {
  assert.deepEqual(sftpBackend.parseUrl('sftp://bob:s%40cret@example.com:2222/backups/db'), {
    host: 'example.com:2222',
    user: 'bob',
    password: 's@cret',
    path: '/backups/db',
  });
  assert.deepEqual(sftpBackend.parseUrl('sftp://bob@example.com/db'), { host: 'example.com', user: 'bob', path: '/db' });
  assert.deepEqual(sftpBackend.parseUrl('sftp://bob@[::1]:22/x'), { host: '[::1]:22', user: 'bob', path: '/x' });
  assert.throws(() => sftpBackend.parseUrl('not a url'), ConfigError);
  assert.throws(() => sftpBackend.parseUrl('s3://bucket/x'), ConfigError);
});

test('parseUrl never leaks the password in its error', () => {
  assert.throws(
    () => sftpBackend.parseUrl('s3://bob:hunter2@host/x'),
    (err: unknown) => err instanceof ConfigError && !err.message.includes('hunter2'),
  );
});

test("createClient: Litestream's required-field and conflict messages", () => {
  configError(() => sftpBackend.createClient({ type: 'sftp', user: 'u' }, ctx), 'host required for sftp replica');
  configError(() => sftpBackend.createClient({ type: 'sftp', host: 'h' }, ctx), 'user required for sftp replica');
  const url = 'sftp://u@h:22/p';
  configError(
    () => sftpBackend.createClient({ url, ...sftpBackend.parseUrl(url), path: '/other' }, ctx),
    'cannot specify url & path for sftp replica',
  );
  configError(
    () => sftpBackend.createClient({ url, ...sftpBackend.parseUrl(url), host: 'other' }, ctx),
    'cannot specify url & host for sftp replica',
  );
  configError(() => sftpBackend.createClient({ url: 'sftp://h/p' }, ctx), 'user required for sftp replica');
});

test('createClient: port defaults to 22; path keeps its leading slash; explicit user wins over URL', () => {
  const a = sftpBackend.createClient({ host: 'example.com', user: 'u', path: '/srv/db', 'host-key': ED }, ctx) as SftpReplicaClient;
  assert.equal(a.type, 'sftp');
  assert.equal(a.host, 'example.com');
  assert.equal(a.port, 22);
  assert.equal(a.root, '/srv/db');
  const url = 'sftp://urluser:pw@example.com:2200/backups';
  const b = sftpBackend.createClient({ url, ...sftpBackend.parseUrl(url), user: 'explicit', 'host-key': ED }, ctx) as SftpReplicaClient;
  assert.equal(b.port, 2200);
  assert.equal(b.root, '/backups');
  const c = new SftpReplicaClient({ host: '[::1]:2022', user: 'u' });
  assert.equal(c.host, '::1');
  assert.equal(c.port, 2022);
  configError(() => sftpBackend.createClient({ host: 'h:99999', user: 'u' }, ctx), 'invalid port in sftp host: h:99999');
});

test('createClient: host-key options validated; insecure warns once', () => {
  configError(
    () => sftpBackend.createClient({ host: 'h', user: 'u', 'host-key': 'garbage' }, ctx),
    'invalid host-key for sftp replica: expected "<type> <base64>", e.g. "ssh-ed25519 AAAA..."',
  );
  configError(
    () => sftpBackend.createClient({ host: 'h', user: 'u', 'host-key': ED, 'known-hosts-path': '/k' }, ctx),
    'cannot specify host-key & known-hosts-path for sftp replica',
  );
  configError(
    () => sftpBackend.createClient({ host: 'h', user: 'u', 'host-key': ED, 'insecure-ignore-host-key': true }, ctx),
    'cannot specify insecure-ignore-host-key & host-key for sftp replica',
  );
  configError(
    () => sftpBackend.createClient({ host: 'h', user: 'u', 'insecure-ignore-host-key': 'yes' }, ctx),
    'insecure-ignore-host-key must be true or false for sftp replica',
  );
  const warnings: string[] = [];
  sftpBackend.createClient({ host: 'h', user: 'u', 'insecure-ignore-host-key': 'true' }, { env: {}, warn: (m) => warnings.push(m) });
  assert.equal(warnings.length, 1);
  assert.match(warnings[0]!, /^sftp: host key check disabled for h:22/);
  const none: string[] = [];
  sftpBackend.createClient({ host: 'h', user: 'u' }, { env: {}, warn: (m) => none.push(m) });
  assert.deepEqual(none, []);
});

test('describe: no credentials', () => {
  const d = sftpBackend.describe!({ url: 'sftp://bob:hunter2@h:2222/db', 'key-passphrase': 'pp', 'key-path': '/k' });
  assert.deepEqual(d, { host: 'h:2222', user: 'bob', path: '/db', 'key-path': '/k', 'host-key-check': 'known_hosts ~/.ssh/known_hosts' });
  assert.ok(!JSON.stringify(d).includes('hunter2'));
  assert.ok(!JSON.stringify(d).includes('pp'));
});

test('parsePublicKey and fingerprint match ssh-keygen', async () => {
  assert.equal(parsePublicKey('ssh-ed25519'), undefined);
  assert.equal(parsePublicKey(`ssh-rsa ${ED.split(' ')[1]}`), undefined, 'type must match the blob');
  const key = parsePublicKey(`${ED} comment here`);
  assert.ok(key);
  assert.equal(key.type, 'ssh-ed25519');
  const r = spawnSync('ssh-keygen', ['-l', '-E', 'sha256', '-f', '/dev/stdin'], { input: `${ED}\n`, encoding: 'utf8' });
  if (r.status === 0) assert.equal(fingerprint(key.blob), r.stdout.split(/\s+/)[1]);
  assert.match(fingerprint(key.blob), /^SHA256:[A-Za-z0-9+/]{43}$/);
});

test('known_hosts: plain, [host]:port, wildcard, negation, markers, comments', () => {
  const [, b1] = ED.split(' ');
  const [, b2] = ED2.split(' ');
  const entries = parseKnownHosts(
    [
      '# comment',
      '',
      `example.com,10.0.0.1 ssh-ed25519 ${b1}`,
      `[example.com]:2222 ssh-ed25519 ${b2}`,
      `*.corp.example,!bad.corp.example ssh-ed25519 ${b1}`,
      `@cert-authority *.example.com ssh-ed25519 ${b2}`,
      'malformed line',
    ].join('\n'),
  );
  assert.equal(entries.length, 4);
  const k1 = parsePublicKey(ED)!.blob;
  const k2 = parsePublicKey(ED2)!.blob;
  assert.deepEqual(checkKnownHosts(entries, knownHostsName('example.com', 22), k1), { ok: true });
  assert.deepEqual(checkKnownHosts(entries, knownHostsName('EXAMPLE.com', 22), k1), { ok: true });
  assert.deepEqual(checkKnownHosts(entries, knownHostsName('example.com', 22), k2), { ok: false, reason: 'mismatch' });
  assert.deepEqual(checkKnownHosts(entries, knownHostsName('example.com', 2222), k2), { ok: true });
  assert.deepEqual(checkKnownHosts(entries, knownHostsName('example.com', 2222), k1), { ok: false, reason: 'mismatch' });
  assert.deepEqual(checkKnownHosts(entries, knownHostsName('other.com', 22), k1), { ok: false, reason: 'unknown' });
  assert.deepEqual(checkKnownHosts(entries, knownHostsName('a.corp.example', 22), k1), { ok: true });
  assert.deepEqual(checkKnownHosts(entries, knownHostsName('bad.corp.example', 22), k1), { ok: false, reason: 'unknown' });
  const revoked = parseKnownHosts(`example.com ssh-ed25519 ${b1}\n@revoked * ssh-ed25519 ${b1}\n`);
  assert.deepEqual(checkKnownHosts(revoked, 'example.com', k1), { ok: false, reason: 'revoked' });
});

test('known_hosts: entries hashed by ssh-keygen -H are matched', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'walship-kh-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const file = join(dir, 'known_hosts');
  const [, b1] = ED.split(' ');
  await writeFile(file, `example.com ssh-ed25519 ${b1}\n[10.1.2.3]:2200 ssh-ed25519 ${b1}\n`);
  const r = spawnSync('ssh-keygen', ['-H', '-f', file], { encoding: 'utf8' });
  if (r.error || r.status !== 0) {
    if (process.env.CI === 'true') assert.fail(`ssh-keygen -H failed: ${r.error ?? r.stderr}`);
    t.skip('ssh-keygen not available (apt-get install openssh-client)');
    return;
  }
  const text = await readFile(file, 'utf8');
  assert.ok(!text.includes('example.com'), 'hashed');
  const entries = parseKnownHosts(text);
  const k1 = parsePublicKey(ED)!.blob;
  assert.deepEqual(checkKnownHosts(entries, knownHostsName('example.com', 22), k1), { ok: true });
  assert.deepEqual(checkKnownHosts(entries, knownHostsName('10.1.2.3', 2200), k1), { ok: true });
  assert.deepEqual(checkKnownHosts(entries, knownHostsName('10.1.2.3', 22), k1), { ok: false, reason: 'unknown' });
});
