// End to end: replicate a real SQLite database to S3 (s3rver, and radosgw when configured), then
// restore it from the bucket and compare rows.
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { Replicator, restore } from '@walship/core';
import {
  clientFor,
  createBucket,
  destroyBucket,
  listAllKeys,
  radosgwFromEnv,
  rawClient,
  startS3rver,
  uniqueBucketName,
  unavailableMode,
  type ServerResult,
} from './helpers/servers.js';

function e2e(name: string, result: ServerResult): void {
  if (!result.server) {
    const m = unavailableMode(result.unavailable);
    if ('skip' in m) test(`${name}: replicate and restore`, { skip: m.skip }, () => {});
    else test(`${name}: replicate and restore`, () => assert.fail(m.fail));
    return;
  }
  const server = result.server;
  after(() => server.stop());
  test(`${name}: replicate a SQLite database to S3 and restore it`, { timeout: 180_000 }, async () => {
    const raw = rawClient(server);
    const bucket = uniqueBucketName('e2e');
    const dir = await mkdtemp(join(tmpdir(), 'walship-s3-e2e-'));
    await createBucket(raw, bucket);
    try {
      const dbPath = join(dir, 'app.db');
      const app = new Database(dbPath);
      app.pragma('journal_mode = WAL');
      app.exec('CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT NOT NULL)');

      const client = clientFor(server, bucket, { path: 'app.db' });
      const rep = new Replicator(dbPath, { replicas: [{ name: 's3', client }], monitorInterval: 100 });
      await rep.start();
      const insert = app.prepare('INSERT INTO t (v) VALUES (?)');
      for (let batch = 0; batch < 5; batch++) {
        app.transaction(() => {
          for (let i = 0; i < 200; i++) insert.run(`row-${batch}-${i}-${'x'.repeat(100)}`);
        })();
        await rep.sync();
      }
      app.prepare('UPDATE t SET v = ? WHERE id = ?').run('updated', 7);
      app.prepare('DELETE FROM t WHERE id > ?').run(990);
      await rep.sync();
      const expected = app.prepare('SELECT id, v FROM t ORDER BY id').all();
      await rep.stop();
      app.close();
      await client.close();

      const keys = await listAllKeys(raw, bucket);
      assert.ok(
        keys.some((k) => /^app\.db\/generations\/[0-9a-f]{16}\/snapshots\/[0-9a-f]{8}\.snapshot\.lz4$/.test(k)),
        `a snapshot in ${keys.join(', ')}`,
      );
      assert.ok(
        keys.some((k) => /^app\.db\/generations\/[0-9a-f]{16}\/wal\/[0-9a-f]{8}_[0-9a-f]{8}\.wal\.lz4$/.test(k)),
        'WAL segments',
      );

      const outputPath = join(dir, 'restored.db');
      const restoreClient = clientFor(server, bucket, { path: 'app.db' });
      await restore({ outputPath, replicas: [{ name: 's3', client: restoreClient }] });
      await restoreClient.close();
      const restored = new Database(outputPath, { readonly: true });
      try {
        assert.equal(restored.pragma('integrity_check', { simple: true }), 'ok');
        assert.deepEqual(restored.prepare('SELECT id, v FROM t ORDER BY id').all(), expected);
      } finally {
        restored.close();
      }
    } finally {
      await destroyBucket(raw, bucket).catch(() => {});
      raw.destroy();
      await rm(dir, { recursive: true, force: true });
    }
  });
}

e2e('s3rver', await startS3rver());
e2e('radosgw', radosgwFromEnv());
