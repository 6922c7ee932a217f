/**
 * The default host-key check: with neither `host-key` nor `known-hosts-path`, the client
 * verifies the server against `~/.ssh/known_hosts` (HOME pointed at a temp dir here), against
 * a live OpenSSH sshd.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { homedir, tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { after, afterEach, before, describe, test } from 'node:test';
import { BackendError, type ReplicaClient } from '@walship/core';
import { SftpReplicaClient, sftpBackend } from '../src/index.js';
import { knownHostsLine, requireSshd, startSshd, type SshdServer } from './helpers/sshd.js';

const GEN = '0123456789abcdef';
// Skips locally without sshd; under CI=true requireSshd throws, so the file fails.
const skip = requireSshd();

describe('default ~/.ssh/known_hosts against a live sshd', { skip }, () => {
  let server: SshdServer;
  let home: string;
  let n = 0;
  const savedHome = process.env.HOME;
  const clients: ReplicaClient[] = [];

  before(async () => {
    server = await startSshd();
    home = await mkdtemp(join(tmpdir(), 'walship-sftp-home-'));
    await mkdir(join(home, '.ssh'), { mode: 0o700 });
    process.env.HOME = home;
    assert.equal(homedir(), home, 'os.homedir() follows HOME');
  });
  afterEach(async () => {
    await Promise.all(clients.splice(0).map((c) => c.close?.()));
  });
  after(async () => {
    if (savedHome === undefined) delete process.env.HOME;
    else process.env.HOME = savedHome;
    await server?.stop();
    if (home) await rm(home, { recursive: true, force: true });
  });

  const knownHosts = () => join(home, '.ssh', 'known_hosts');
  /** A client with no host-key and no known-hosts-path: the default file decides. */
  function client(): SftpReplicaClient {
    const c = new SftpReplicaClient({
      host: `127.0.0.1:${server.port}`,
      user: server.user,
      keyPath: server.clientKeyPath,
      path: join(server.dataDir, `kh${++n}`),
    });
    clients.push(c);
    return c;
  }
  async function otherKeyLine(): Promise<string> {
    const other = join(home, `other_key_${++n}`);
    const r = spawnSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', other], { encoding: 'utf8' });
    assert.equal(r.status, 0, r.stderr);
    const [type, b64] = (await readFile(`${other}.pub`, 'utf8')).split(/\s+/);
    return `[127.0.0.1]:${server.port} ${type} ${b64}`;
  }

  test('the server key in ~/.ssh/known_hosts: connects, writes and reads', async () => {
    await writeFile(knownHosts(), `# test\n${knownHostsLine(server)}\n`);
    const c = client();
    assert.deepEqual(await c.generations(), []);
    await c.writeSnapshot(GEN, 1, Readable.from([Buffer.from('snapshot bytes')], { objectMode: false }));
    assert.deepEqual(await c.generations(), [GEN]);
    const chunks: Buffer[] = [];
    for await (const chunk of await c.snapshotReader(GEN, 1)) chunks.push(chunk as Buffer);
    assert.equal(Buffer.concat(chunks).toString(), 'snapshot bytes');
  });

  test('also through the backend config the CLI uses (no host-key, no known-hosts-path)', async () => {
    await writeFile(knownHosts(), `${knownHostsLine(server)}\n`);
    const c = sftpBackend.createClient(
      {
        type: 'sftp',
        host: `127.0.0.1:${server.port}`,
        user: server.user,
        'key-path': server.clientKeyPath,
        path: join(server.dataDir, 'kh-backend'),
      },
      { env: {}, warn: (m) => assert.fail(`unexpected warning: ${m}`) },
    );
    clients.push(c);
    assert.deepEqual(await c.generations(), []);
  });

  test('a different key for the server in ~/.ssh/known_hosts: a clear, non-retryable error', async () => {
    await writeFile(knownHosts(), `${await otherKeyLine()}\n`);
    await assert.rejects(client().generations(), (err: unknown) => {
      assert.ok(err instanceof BackendError, `expected BackendError, got ${String(err)}`);
      assert.equal(err.retryable, false);
      assert.doesNotMatch(err.message, /\n/);
      assert.ok(err.message.includes(server.hostKeyFingerprint), err.message);
      assert.ok(err.message.includes(`[127.0.0.1]:${server.port}`), err.message);
      assert.ok(err.message.includes(knownHosts()), `names the default file: ${err.message}`);
      assert.match(err.message, /does not match/);
      return true;
    });
  });

  test('the server missing from ~/.ssh/known_hosts, or no such file: refused, naming the file', async () => {
    // An entry for another port only.
    await writeFile(knownHosts(), `${knownHostsLine(server).replace(`:${server.port}`, `:${server.port + 1}`)}\n`);
    await assert.rejects(client().generations(), (err: unknown) => {
      assert.ok(err instanceof BackendError);
      assert.equal(err.retryable, false);
      assert.ok(err.message.includes(`is not in ${knownHosts()}`), err.message);
      assert.doesNotMatch(err.message, /file not found/);
      return true;
    });
    await rm(knownHosts());
    await assert.rejects(client().generations(), (err: unknown) => {
      assert.ok(err instanceof BackendError);
      assert.ok(err.message.includes(`is not in ${knownHosts()} (file not found)`), err.message);
      return true;
    });
  });
});
