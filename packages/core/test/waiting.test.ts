/**
 * A replicator started before its database file exists: `sync()` resolves at once (nothing is
 * committed), `status()` says it is waiting and no replica is healthy; once the file appears,
 * replication starts by itself and `waiting` clears. Through the public `Replicator`, in the
 * engine worker (the default) and inline.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { Replicator, restore, ZERO_POS } from '@walship/core';
import { FileReplicaClient } from '@walship/file';
import { insertRows, openApp, tempDir, until } from './support/db.js';
import { rows } from './support/replica-check.js';

for (const thread of ['worker', 'inline'] as const) {
  test(`${thread}: sync() resolves at once and status() says waiting until the database file appears`, async () => {
    const dir = await tempDir('walship-waiting-');
    const dbPath = path.join(dir, 'app.db');
    const client = new FileReplicaClient({ path: path.join(dir, 'replica') });
    const rep = new Replicator(dbPath, { thread, monitorInterval: 50, replicas: [{ name: 'file', client, syncInterval: 50 }] });
    let app: ReturnType<typeof openApp> | undefined;
    try {
      await rep.start();
      let s = rep.status();
      assert.equal(s.waiting, 'database does not exist yet');
      assert.equal(s.generation, '');
      assert.deepEqual(
        s.replicas.map((r) => r.healthy),
        [false],
      );

      const t0 = performance.now();
      const pos = await rep.sync({ timeout: 5000 });
      assert.ok(performance.now() - t0 < 1000, `sync took ${Math.round(performance.now() - t0)} ms`);
      assert.deepEqual(pos, ZERO_POS);
      // Still waiting, later too (lags advance in the facade's status; health must not).
      await new Promise((r) => setTimeout(r, 200));
      s = rep.status();
      assert.equal(s.waiting, 'database does not exist yet');
      assert.deepEqual(
        s.replicas.map((r) => r.healthy),
        [false],
      );

      app = openApp(dbPath);
      insertRows(app, 25);
      await until(() => rep.status().waiting === undefined, 10_000, 'waiting to clear');
      const synced = await rep.sync({ timeout: 20_000 });
      assert.equal(synced.generation.length, 16);
      s = rep.status();
      assert.equal(s.waiting, undefined);
      assert.equal(s.generation, synced.generation);
      await until(() => rep.status().replicas.every((r) => r.healthy), 10_000, 'healthy replica');
      await rep.stop();
      const out = path.join(dir, 'restored.db');
      await restore({ outputPath: out, replicas: [{ name: 'file', client }] });
      assert.equal(rows(out).length, 25);
      // Stopped: not waiting any more.
      assert.equal(rep.status().waiting, undefined);
    } finally {
      await rep.stop({ timeout: 2000 }).catch(() => {});
      app?.close();
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
}
