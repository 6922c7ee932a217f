/**
 * SFTP-specific behaviour against a real OpenSSH sshd: authentication, host-key verification,
 * atomic writes, not-found mapping, reconnecting after a server restart.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readdir, readFile, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { after, before, describe, test } from 'node:test';
import { BackendError, NotFoundError } from '@walship/core';
import { SftpReplicaClient, sftpBackend, type SftpReplicaClientOptions } from '../src/index.js';
import { knownHostsLine, requireSshd, startSshd, type SshdServer } from './helpers/sshd.js';

const GEN = '0123456789abcdef';
const skip = requireSshd();
const IS_ROOT = process.getuid?.() === 0;

async function readAll(r: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const c of r) chunks.push(c as Buffer);
  return Buffer.concat(chunks);
}

async function collectWarnings<T>(fn: () => Promise<T>): Promise<{ result: T; warnings: string[] }> {
  const warnings: string[] = [];
  const onWarning = (w: Error) => warnings.push(`${w.name}: ${w.message}`);
  process.on('warning', onWarning);
  try {
    const result = await fn();
    await new Promise((r) => setImmediate(r));
    return { result, warnings };
  } finally {
    process.off('warning', onWarning);
  }
}

describe('sftp client against OpenSSH sshd', { skip }, () => {
  let server: SshdServer;
  let n = 0;
  const clients: SftpReplicaClient[] = [];

  before(async () => {
    server = await startSshd();
  });
  after(async () => {
    await Promise.all(clients.map((c) => c.close()));
    await server?.stop();
  });

  function makeClient(extra: Partial<SftpReplicaClientOptions> = {}): SftpReplicaClient {
    const client = new SftpReplicaClient({
      host: `127.0.0.1:${server.port}`,
      user: server.user,
      keyPath: server.clientKeyPath,
      hostKey: server.hostKeyLine,
      path: join(server.dataDir, `t${++n}`),
      ...extra,
    });
    clients.push(client);
    return client;
  }

  test('key auth: write, list, read, delete; files land at the Litestream paths', async () => {
    const client = makeClient();
    const body = Buffer.from('snapshot bytes');
    const info = await client.writeSnapshot(GEN, 1, Readable.from([body]));
    assert.equal(info.size, body.length);
    assert.ok(info.createdAt instanceof Date);
    const onDisk = join(client.root, 'generations', GEN, 'snapshots', '00000001.snapshot.lz4');
    assert.deepEqual(await readFile(onDisk), body);
    assert.deepEqual(await client.generations(), [GEN]);
    const snaps = await client.snapshots(GEN);
    assert.equal(snaps.length, 1);
    assert.equal(snaps[0]!.size, body.length);
    assert.deepEqual(await readAll(await client.snapshotReader(GEN, 1)), body);

    await client.writeWALSegment({ generation: GEN, index: 2, offset: 4152 }, Readable.from([Buffer.from('seg')]));
    assert.ok((await stat(join(client.root, 'generations', GEN, 'wal', '00000002_00001038.wal.lz4'))).isFile());
    await client.deleteGeneration(GEN);
    assert.deepEqual(await client.generations(), []);
    await client.deleteGeneration(GEN); // idempotent
  });

  test('not found: readers throw NotFoundError, listings are empty, deletes succeed', async () => {
    const client = makeClient();
    await assert.rejects(client.snapshotReader(GEN, 7), NotFoundError);
    await assert.rejects(client.walSegmentReader({ generation: GEN, index: 1, offset: 0 }), (err: unknown) => {
      assert.ok(err instanceof NotFoundError);
      assert.equal(err.code, 'WALSHIP_NOT_FOUND');
      return true;
    });
    assert.deepEqual(await client.generations(), []);
    assert.deepEqual(await client.snapshots(GEN), []);
    assert.deepEqual(await client.walSegments(GEN), []);
    await client.deleteSnapshot(GEN, 3);
    await client.deleteWALSegments([{ generation: GEN, index: 1, offset: 0 }]);
  });

  test('writes are atomic: temp file then rename; overwrite replaces; no temp files left', async () => {
    const client = makeClient();
    await client.writeSnapshot(GEN, 5, Readable.from([Buffer.from('first version')]));
    await client.writeSnapshot(GEN, 5, Readable.from([Buffer.from('v2')]));
    assert.deepEqual(await readAll(await client.snapshotReader(GEN, 5)), Buffer.from('v2'));
    const dir = join(client.root, 'generations', GEN, 'snapshots');
    assert.deepEqual(await readdir(dir), ['00000005.snapshot.lz4']);
  });

  test('a failing body leaves no object and no temp file', async () => {
    const client = makeClient();
    async function* failing() {
      yield Buffer.alloc(100_000, 1);
      throw new Error('source broke');
    }
    await assert.rejects(client.writeSnapshot(GEN, 9, Readable.from(failing())), /source broke/);
    await assert.rejects(client.snapshotReader(GEN, 9), NotFoundError);
    assert.deepEqual(await readdir(join(client.root, 'generations', GEN, 'snapshots')), []);
    // the connection is still usable
    await client.writeSnapshot(GEN, 9, Readable.from([Buffer.from('ok')]));
  });

  test('large streamed upload and download (20 MB) is fast (setNoDelay) and intact', async () => {
    const client = makeClient();
    const chunk = Buffer.alloc(64 * 1024);
    for (let i = 0; i < chunk.length; i++) chunk[i] = (i * 31) & 0xff;
    const count = 320; // 20 MiB
    const t0 = Date.now();
    async function* gen() {
      for (let i = 0; i < count; i++) yield chunk;
    }
    const info = await client.writeSnapshot(GEN, 1, Readable.from(gen()));
    assert.equal(info.size, chunk.length * count);
    const back = await client.snapshotReader(GEN, 1);
    let total = 0;
    for await (const c of back) {
      const b = c as Buffer;
      for (let i = 0; i < b.length; i += 4099) assert.equal(b[i], chunk[(total + i) % chunk.length]);
      total += b.length;
    }
    assert.equal(total, chunk.length * count);
    const ms = Date.now() - t0;
    assert.ok(ms < 10_000, `20 MiB round trip took ${ms} ms`);
  });

  test('many concurrent operations on one connection, no MaxListeners warning', async () => {
    const client = makeClient();
    const { warnings } = await collectWarnings(async () => {
      await Promise.all(
        Array.from({ length: 60 }, (_, i) =>
          client.writeWALSegment({ generation: GEN, index: 1, offset: i * 100 }, Readable.from([Buffer.from(`s${i}`)])),
        ),
      );
      const segs = await client.walSegments(GEN);
      assert.equal(segs.length, 60);
      await client.deleteWALSegments(segs.map((s) => ({ generation: GEN, index: s.index, offset: s.offset })));
      assert.deepEqual(await client.walSegments(GEN), []);
    });
    assert.deepEqual(
      warnings.filter((w) => w.includes('MaxListeners')),
      [],
    );
  });

  test('encrypted private key with key-passphrase', async () => {
    const client = makeClient({ keyPath: server.encryptedKeyPath, keyPassphrase: server.encryptedKeyPassphrase });
    assert.deepEqual(await client.generations(), []);
    const noPass = makeClient({ keyPath: server.encryptedKeyPath, maxRetries: 0 });
    await assert.rejects(noPass.generations(), (err: unknown) => {
      assert.ok(err instanceof BackendError);
      assert.equal(err.retryable, false);
      assert.match(err.message, /key-passphrase/);
      return true;
    });
  });

  test('wrong credentials are refused, not retried', async () => {
    const client = makeClient({ keyPath: undefined, password: 'wrong' });
    const t0 = Date.now();
    await assert.rejects(client.generations(), (err: unknown) => {
      assert.ok(err instanceof BackendError);
      assert.equal(err.retryable, false);
      assert.match(err.message, /authentication failed/);
      return true;
    });
    assert.ok(Date.now() - t0 < 5000);
  });

  test('password authentication (temporary system user)', { skip: IS_ROOT ? false : 'needs root' }, async () => {
    const pw = await server.addPasswordUser();
    const client = makeClient({ user: pw.user, password: pw.password, keyPath: undefined, path: join(pw.dataDir, 'r') });
    await client.writeSnapshot(GEN, 1, Readable.from([Buffer.from('by password')]));
    assert.deepEqual(await client.generations(), [GEN]);
    assert.deepEqual(await readAll(await client.snapshotReader(GEN, 1)), Buffer.from('by password'));
  });

  test('a wrong host-key is refused with the server key fingerprint', async () => {
    const other = join(server.dir, 'other_key');
    spawnSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', other]);
    const wrong = (await readFile(`${other}.pub`, 'utf8')).trim();
    const client = makeClient({ hostKey: wrong });
    await assert.rejects(client.generations(), (err: unknown) => {
      assert.ok(err instanceof BackendError);
      assert.equal(err.retryable, false);
      assert.ok(err.message.includes(server.hostKeyFingerprint), err.message);
      assert.match(err.message, /host-key/);
      assert.doesNotMatch(err.message, /\n/);
      return true;
    });
  });

  test('known_hosts: [host]:port entry accepted; hashed entry accepted; unknown and mismatch refused', async () => {
    const plain = join(server.dir, 'known_hosts_plain');
    await writeFile(plain, `# comment\n${knownHostsLine(server)}\n`);
    assert.deepEqual(await makeClient({ hostKey: undefined, knownHostsPath: plain }).generations(), []);

    const hashed = join(server.dir, 'known_hosts_hashed');
    await writeFile(hashed, `${knownHostsLine(server)}\n`);
    const r = spawnSync('ssh-keygen', ['-H', '-f', hashed], { encoding: 'utf8' });
    assert.equal(r.status, 0, r.stderr);
    assert.match(await readFile(hashed, 'utf8'), /^\|1\|/);
    assert.deepEqual(await makeClient({ hostKey: undefined, knownHostsPath: hashed }).generations(), []);

    const unknown = join(server.dir, 'known_hosts_unknown');
    await writeFile(unknown, knownHostsLine(server).replace(`:${server.port}`, `:${server.port + 1}`) + '\n');
    await assert.rejects(makeClient({ hostKey: undefined, knownHostsPath: unknown }).generations(), (err: unknown) => {
      assert.ok(err instanceof BackendError);
      assert.equal(err.retryable, false);
      assert.ok(err.message.includes(server.hostKeyFingerprint), err.message);
      assert.match(err.message, /not in .*known_hosts_unknown/);
      return true;
    });

    const mismatch = join(server.dir, 'known_hosts_mismatch');
    const other = join(server.dir, 'other_key2');
    spawnSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', other]);
    const [t, b] = (await readFile(`${other}.pub`, 'utf8')).split(/\s+/);
    await writeFile(mismatch, `[127.0.0.1]:${server.port} ${t} ${b}\n`);
    await assert.rejects(makeClient({ hostKey: undefined, knownHostsPath: mismatch }).generations(), (err: unknown) => {
      assert.ok(err instanceof BackendError);
      assert.ok(err.message.includes(server.hostKeyFingerprint), err.message);
      assert.match(err.message, /does not match/);
      return true;
    });

    const missing = join(server.dir, 'no_such_known_hosts');
    await assert.rejects(makeClient({ hostKey: undefined, knownHostsPath: missing }).generations(), /file not found/);
  });

  test('insecure-ignore-host-key connects and warns', async () => {
    const warnings: string[] = [];
    const client = sftpBackend.createClient(
      {
        type: 'sftp',
        host: `127.0.0.1:${server.port}`,
        user: server.user,
        'key-path': server.clientKeyPath,
        path: join(server.dataDir, 'insecure'),
        'insecure-ignore-host-key': true,
      },
      { env: {}, warn: (m) => warnings.push(m) },
    );
    try {
      assert.equal(warnings.length, 1);
      assert.match(warnings[0]!, /host key check disabled/);
      assert.deepEqual(await client.generations(), []);
    } finally {
      await client.close?.();
    }
  });

  test('backend: URL config connects (sftp://user@host:port/path)', async () => {
    const url = `sftp://${server.user}@127.0.0.1:${server.port}${join(server.dataDir, 'via-url')}`;
    const client = sftpBackend.createClient(
      { url, ...sftpBackend.parseUrl(url), 'key-path': server.clientKeyPath, 'host-key': server.hostKeyLine },
      { env: {} },
    );
    try {
      await client.writeSnapshot(GEN, 1, Readable.from([Buffer.from('x')]));
      assert.ok((await stat(join(server.dataDir, 'via-url', 'generations', GEN, 'snapshots', '00000001.snapshot.lz4'))).isFile());
    } finally {
      await client.close?.();
    }
  });

  test('a write in flight when sshd dies rejects (retryable, no hang); the next write succeeds', async () => {
    const client = makeClient();
    await client.generations(); // connected
    let sent = 0;
    async function* slow() {
      for (let i = 0; i < 200; i++) {
        sent++;
        yield Buffer.alloc(16 * 1024, i);
        await new Promise((r) => setTimeout(r, 10));
      }
    }
    const write = client.writeSnapshot(GEN, 1, Readable.from(slow())).then(
      () => undefined,
      (err: unknown) => err,
    );
    while (sent < 20) await new Promise((r) => setTimeout(r, 5));
    await server.kill();
    const err = await write;
    assert.ok(err instanceof BackendError, `expected a BackendError, got ${String(err)}`);
    assert.equal(err.retryable, true);
    assert.match(err.message, /connection to 127\.0\.0\.1:\d+ lost/);
    await server.start();
    await client.writeSnapshot(GEN, 1, Readable.from([Buffer.from('complete')]));
    assert.deepEqual(await readAll(await client.snapshotReader(GEN, 1)), Buffer.from('complete'));
    const names = await readdir(join(client.root, 'generations', GEN, 'snapshots'));
    assert.ok(names.includes('00000001.snapshot.lz4'));
  });

  test('survives an sshd restart: connection lost, redialled, operations succeed', async () => {
    const client = makeClient();
    await client.writeSnapshot(GEN, 1, Readable.from([Buffer.from('before')]));
    await server.kill();
    // While the server is down, operations fail as retryable after the retries run out.
    const down = makeClient({ maxRetries: 1 });
    await assert.rejects(down.generations(), (err: unknown) => err instanceof BackendError && err.retryable);
    // Restart shortly, while an operation is already retrying.
    const restarted = new Promise<void>((resolve, reject) => setTimeout(() => server.start().then(resolve, reject), 300));
    const [gens] = await Promise.all([client.generations(), restarted]);
    assert.deepEqual(gens, [GEN]);
    await client.writeWALSegment({ generation: GEN, index: 1, offset: 0 }, Readable.from([Buffer.from('after')]));
    assert.deepEqual(await readAll(await client.snapshotReader(GEN, 1)), Buffer.from('before'));
    // Kill again between operations (no retry wait needed: the server comes straight back).
    await server.kill();
    await server.start();
    assert.equal((await client.walSegments(GEN)).length, 1);
  });
});
