/**
 * End to end: replicate a real SQLite database to an OpenSSH sshd through the sftp client,
 * restart the server mid-replication, then restore and compare rows.
 */
import assert from 'node:assert/strict';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import Database from 'better-sqlite3';
import { Replicator, restore } from '@walship/core';
import { SftpReplicaClient } from '../src/index.js';
import { requireSshd, startSshd, type SshdServer } from './helpers/sshd.js';

// Skips locally without sshd; under CI=true requireSshd throws, so the file fails.
const skip = requireSshd();

describe('sftp end to end (replicate, restart sshd, restore)', { skip }, () => {
  let server: SshdServer;
  let local: string;

  before(async () => {
    server = await startSshd();
    local = await mkdtemp(join(tmpdir(), 'walship-sftp-e2e-'));
  });
  after(async () => {
    await server?.stop();
    if (local) await rm(local, { recursive: true, force: true });
  });

  function client(): SftpReplicaClient {
    return new SftpReplicaClient({
      host: `127.0.0.1:${server.port}`,
      user: server.user,
      keyPath: server.clientKeyPath,
      hostKey: server.hostKeyLine,
      path: join(server.dataDir, 'replica'),
    });
  }

  let expected: unknown[] = [];

  test('replicates rows written before, during and after an sshd restart', async () => {
    const dbPath = join(local, 'app.db');
    const app = new Database(dbPath);
    app.pragma('journal_mode = WAL');
    app.exec('CREATE TABLE t (id INTEGER PRIMARY KEY, body TEXT NOT NULL)');
    const insert = app.prepare('INSERT INTO t (body) VALUES (?)');

    const replicaClient = client();
    const rep = new Replicator(dbPath, { replicas: [{ name: 'x', client: replicaClient }], monitorInterval: 100 });
    await rep.start();
    try {
      const insertMany = app.transaction((from: number, count: number) => {
        for (let i = from; i < from + count; i++) insert.run(`row ${i} `.padEnd(200, String(i % 10)));
      });
      insertMany(0, 500);
      await rep.sync();

      // The server goes away mid-replication and comes back on the same port.
      await server.kill();
      insertMany(500, 500);
      await new Promise((r) => setTimeout(r, 300));
      await server.start();
      insertMany(1000, 500);
      await rep.sync();
    } finally {
      await rep.stop();
      await replicaClient.close();
    }
    expected = app.prepare('SELECT id, body FROM t ORDER BY id').all();
    app.close();
    assert.equal(expected.length, 1500);

    // Litestream v0.3 layout on the server, no temporary files left behind.
    const generations = await readdir(join(server.dataDir, 'replica', 'generations'));
    assert.equal(generations.length, 1);
    const walFiles = await readdir(join(server.dataDir, 'replica', 'generations', generations[0]!, 'wal'));
    assert.ok(walFiles.length > 0);
    for (const f of walFiles) assert.match(f, /^[0-9a-f]{8}_[0-9a-f]{8}\.wal\.lz4$/);
    const snapshots = await readdir(join(server.dataDir, 'replica', 'generations', generations[0]!, 'snapshots'));
    assert.ok(snapshots.length > 0);
    for (const f of snapshots) assert.match(f, /^[0-9a-f]{8}\.snapshot\.lz4$/);
  });

  test('restores them from the sftp replica', async () => {
    assert.equal(expected.length, 1500, 'the replication test must run first');

    const outputPath = join(local, 'restored.db');
    const restoreClient = client();
    try {
      await restore({ outputPath, replicas: [{ name: 'x', client: restoreClient }] });
    } finally {
      await restoreClient.close();
    }
    const restored = new Database(outputPath, { readonly: true });
    try {
      assert.deepEqual(restored.prepare('SELECT id, body FROM t ORDER BY id').all(), expected);
      assert.equal(restored.pragma('integrity_check', { simple: true }), 'ok');
    } finally {
      restored.close();
    }
  });
});
