import assert from 'node:assert/strict';
import path from 'node:path';
import { test } from 'node:test';
import { Replicator } from '@walship/core';
import { FileReplicaClient } from '@walship/file';
import { insertRows, openApp, tempDir, until } from './support/db.js';

test('wal-restart names the new WAL index; `await using` stops the replicator at the end of its scope', async () => {
  const dir = await tempDir();
  const dbPath = path.join(dir, 'app.db');
  const app = openApp(dbPath);
  insertRows(app, 10);
  const client = new FileReplicaClient({ path: path.join(dir, 'replica') });
  const restarts: { index: number; durationMs: number }[] = [];
  const order: string[] = [];
  let generation: string | undefined;
  {
    await using rep = new Replicator(dbPath, { replicas: [{ name: 'r', client }] });
    rep.on('wal-restart', (e) => {
      restarts.push(e);
      order.push('wal-restart');
    });
    rep.on('checkpoint', (e) => {
      if (e.restarted) order.push('checkpoint');
    });
    await rep.start();
    const before = await rep.sync();
    insertRows(app, 10);
    await rep.sync();
    assert.equal(await rep.checkpoint(), true, 'the controlled checkpoint restarted the WAL');
    await until(() => restarts.length > 0, 5_000, 'a wal-restart event');
    assert.equal(restarts[0]!.index, before.index + 1, 'the event names the index after the restart');
    assert.ok(restarts[0]!.durationMs >= 0, `durationMs is a duration (${restarts[0]!.durationMs})`);
    assert.equal(rep.pos.index, restarts.at(-1)!.index, 'replication continues in the index the event named');
    assert.deepEqual(order.slice(0, 2), ['checkpoint', 'wal-restart'], 'the checkpoint event comes first');
    generation = rep.status().generation;
    assert.match(generation ?? '', /^[0-9a-f]{16}$/, 'a generation is running');
  }
  // The scope's end ran stop(): the lock is free (a running replicator would make start() throw
  // LockedError) and the clean stop lets the next replicator continue the same generation.
  const again = new Replicator(dbPath, { replicas: [{ name: 'r', client }] });
  await again.start();
  try {
    assert.equal(again.status().generation, generation, 'same generation after the disposed replicator stopped cleanly');
  } finally {
    await again.stop();
    app.close();
  }
});
