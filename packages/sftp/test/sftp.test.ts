/**
 * SFTP-specific behaviour against a real OpenSSH sshd: authentication, host-key verification,
 * atomic writes, not-found mapping, reconnecting after a server restart.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { readdir, readFile, stat, utimes, writeFile } from 'node:fs/promises';
import { connect, createServer, Socket, type AddressInfo } from 'node:net';
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

/** A loopback TCP proxy to `port` that counts the connections made through it. */
async function countingProxy(port: number): Promise<{ port: number; connections(): number; close(): Promise<void> }> {
  let n = 0;
  const sockets = new Set<Socket>();
  const server = createServer((down) => {
    n++;
    const up = connect(port, '127.0.0.1');
    for (const s of [down, up]) {
      sockets.add(s);
      s.on('close', () => sockets.delete(s));
      s.on('error', () => {});
    }
    down.pipe(up).pipe(down);
    up.on('close', () => down.destroy());
    down.on('close', () => up.destroy());
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    port: (server.address() as AddressInfo).port,
    connections: () => n,
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}

/** Records every `setNoDelay` call made on a TCP socket to `port` while `fn` runs. */
async function recordNoDelay<T>(port: number, fn: () => Promise<T>): Promise<{ result: T; calls: boolean[] }> {
  const proto = Socket.prototype;
  const original = proto.setNoDelay;
  const calls: boolean[] = [];
  proto.setNoDelay = function (this: Socket, noDelay?: boolean) {
    if (this.remotePort === port) calls.push(noDelay ?? true);
    return original.call(this, noDelay);
  };
  try {
    return { result: await fn(), calls };
  } finally {
    proto.setNoDelay = original;
  }
}

/** Counts TCP connects to `port` that fail with ECONNREFUSED until `stop()` (server down). */
function watchRefusedDials(port: number): { count(): number; stop(): void } {
  const proto = Socket.prototype as unknown as { connect: (...args: unknown[]) => Socket };
  const original = proto.connect;
  let n = 0;
  proto.connect = function (this: Socket, ...args: unknown[]) {
    const a0 = args[0];
    const target = typeof a0 === 'object' && a0 !== null ? (a0 as { port?: unknown }).port : a0;
    if (Number(target) === port) {
      this.once('error', (err: NodeJS.ErrnoException) => {
        if (err.code === 'ECONNREFUSED') n++;
      });
    }
    return original.apply(this, args);
  };
  return {
    count: () => n,
    stop: () => {
      proto.connect = original;
    },
  };
}

/** Polls `cond` every 10 ms; fails after `ms` (a bound on a hang, not a timing claim). */
async function waitFor(what: string, cond: () => boolean, ms = 60_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > deadline) assert.fail(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

async function fileDigest(path: string): Promise<{ bytes: number; sha256: string }> {
  const hash = createHash('sha256');
  let bytes = 0;
  for await (const c of createReadStream(path)) {
    hash.update(c as Buffer);
    bytes += (c as Buffer).length;
  }
  return { bytes, sha256: hash.digest('hex') };
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

  test('large streamed upload and download (20 MB): Nagle off (setNoDelay), intact on the server and read back', {
    timeout: 120_000,
  }, async () => {
    const client = makeClient();
    const chunk = Buffer.alloc(64 * 1024);
    for (let i = 0; i < chunk.length; i++) chunk[i] = (i * 31) & 0xff;
    const count = 320; // 20 MiB
    const expected = createHash('sha256');
    for (let i = 0; i < count; i++) expected.update(chunk);
    const sha256 = expected.digest('hex');
    async function* gen() {
      for (let i = 0; i < count; i++) yield chunk;
    }
    // Without TCP_NODELAY a streamed put stalls on delayed ACKs (20 MiB: ~12 s instead of ~0.1 s),
    // so the behaviour to check is that the client's connection turns Nagle off.
    const { result: info, calls } = await recordNoDelay(server.port, () => client.writeSnapshot(GEN, 1, Readable.from(gen())));
    assert.ok(
      calls.length > 0 && calls.every((v) => v === true),
      `the SFTP connection must set TCP_NODELAY; setNoDelay calls: ${JSON.stringify(calls)}`,
    );
    assert.equal(info.size, chunk.length * count);
    // What landed on the server, read from its disk (not through the client under test).
    const onDisk = join(client.root, 'generations', GEN, 'snapshots', '00000001.snapshot.lz4');
    assert.deepEqual(await fileDigest(onDisk), { bytes: chunk.length * count, sha256 }, 'bytes stored on the server');
    const back = await client.snapshotReader(GEN, 1);
    const got = createHash('sha256');
    let total = 0;
    for await (const c of back) {
      got.update(c as Buffer);
      total += (c as Buffer).length;
    }
    assert.equal(total, chunk.length * count);
    assert.equal(got.digest('hex'), sha256, 'bytes read back');
  });

  test('listed createdAt is the file mtime on the server (whole seconds), not the listing time', async () => {
    const client = makeClient();
    const pos = { generation: GEN, index: 2, offset: 4152 };
    await client.writeSnapshot(GEN, 1, Readable.from([Buffer.from('a')]));
    await client.writeSnapshot(GEN, 2, Readable.from([Buffer.from('b')]));
    await client.writeWALSegment(pos, Readable.from([Buffer.from('c')]));
    const dir = join(client.root, 'generations', GEN);
    // Set known, distinct times on the server's files behind the client's back.
    const t1 = new Date('2021-03-04T05:06:07Z');
    const t2 = new Date('2022-06-07T08:09:10Z');
    await utimes(join(dir, 'snapshots', '00000001.snapshot.lz4'), t1, t1);
    await utimes(join(dir, 'wal', '00000002_00001038.wal.lz4'), t2, t2);
    const fresh = await stat(join(dir, 'snapshots', '00000002.snapshot.lz4'));
    const snaps = await client.snapshots(GEN);
    const segs = await client.walSegments(GEN);
    assert.equal(snaps.find((x) => x.index === 1)?.createdAt.toISOString(), t1.toISOString(), 'snapshot 1: the mtime set on the server');
    assert.equal(segs[0]?.createdAt.toISOString(), t2.toISOString(), 'segment: the mtime set on the server');
    assert.equal(
      snaps.find((x) => x.index === 2)?.createdAt.getTime(),
      Math.floor(fresh.mtimeMs / 1000) * 1000,
      'snapshot 2: its mtime on the server, to the second',
    );
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

  test('scoped clients share one SSH session, dialled by whichever is used first; closing one keeps it', async () => {
    const proxy = await countingProxy(server.port);
    try {
      const parent = makeClient({ host: `127.0.0.1:${proxy.port}` });
      const a = parent.scoped('tenants/a.db');
      const b = parent.scoped('tenants/b.db');
      // Both scoped clients are used, concurrently, before the parent has connected.
      await Promise.all([
        a.writeSnapshot(GEN, 1, Readable.from([Buffer.from('a')])),
        b.writeSnapshot(GEN, 1, Readable.from([Buffer.from('b')])),
      ]);
      await stat(join(parent.root, 'tenants/a.db/generations', GEN, 'snapshots/00000001.snapshot.lz4'));
      assert.deepEqual(await parent.databases(), ['tenants/a.db', 'tenants/b.db']);
      assert.deepEqual(await parent.generations(), []);
      assert.equal(proxy.connections(), 1, 'one SSH connection for the client and its scoped clients');
      await a.close();
      assert.equal((await readAll(await b.snapshotReader(GEN, 1))).toString(), 'b');
      assert.equal((await readAll(await a.snapshotReader(GEN, 1))).toString(), 'a');
      assert.equal(proxy.connections(), 1, 'closing a scoped client leaves the shared connection open');
      await parent.close();
      // The parent's close ends the shared connection; a later call of either dials one anew.
      await Promise.all([a.generations(), b.generations(), parent.generations()]);
      assert.equal(proxy.connections(), 2, 'one new connection after the parent closed');
    } finally {
      await proxy.close();
    }
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

  test('wrong credentials are refused, not retried', { timeout: 120_000 }, async () => {
    const proxy = await countingProxy(server.port);
    try {
      const client = makeClient({ host: `127.0.0.1:${proxy.port}`, keyPath: undefined, password: 'wrong' });
      const err = await client.generations().then(
        () => assert.fail('generations() must reject with wrong credentials'),
        (e: unknown) => e,
      );
      assert.equal(proxy.connections(), 1, 'an authentication failure must not be retried (one connection to sshd)');
      assert.ok(err instanceof BackendError, `expected BackendError, got ${String(err)}`);
      assert.equal(err.retryable, false);
      assert.match(err.message, /authentication failed/);
    } finally {
      await proxy.close();
    }
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
    await writeFile(unknown, `${knownHostsLine(server).replace(`:${server.port}`, `:${server.port + 1}`)}\n`);
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
    // Restart while an operation is already retrying: once its dial has been refused.
    const dials = watchRefusedDials(server.port);
    let gens: string[];
    try {
      const pending = client.generations();
      pending.catch(() => {});
      await waitFor('a refused dial of the retrying operation', () => dials.count() >= 1);
      await server.start();
      gens = await pending;
    } finally {
      dials.stop();
    }
    assert.deepEqual(gens, [GEN]);
    await client.writeWALSegment({ generation: GEN, index: 1, offset: 0 }, Readable.from([Buffer.from('after')]));
    assert.deepEqual(await readAll(await client.snapshotReader(GEN, 1)), Buffer.from('before'));
    // Kill again between operations (no retry wait needed: the server comes straight back).
    await server.kill();
    await server.start();
    assert.equal((await client.walSegments(GEN)).length, 1);
  });
});
