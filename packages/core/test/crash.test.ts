import assert from 'node:assert/strict';
import path from 'node:path';
import { test } from 'node:test';
import { comparePos, formatPos, Replicator, restore } from '@walship/core';
import { FileReplicaClient } from '@walship/file';
import { tempDir } from './support/db.js';
import { integrityOk, rebuildLikeLitestream, rows } from './support/replica-check.js';
import { exited, spawnScript } from './support/spawn.js';

test('kill -9 of the replicator at random moments under load keeps the replica consistent', { timeout: 180_000 }, async () => {
  const dir = await tempDir();
  const dbPath = path.join(dir, 'app.db');
  const replicaDir = path.join(dir, 'replica');
  // The application writes from another process, with its own automatic checkpoints on.
  const writer = spawnScript('writer-child.ts', [dbPath, '200', '0']);
  await writer.waitFor(/committed/);
  const syncedIds: number[] = [];
  for (let round = 0; round < 6; round++) {
    const rep = spawnScript('replicate-child.ts', [dbPath, replicaDir, '40']);
    await rep.waitFor(/^ready/);
    await rep.waitFor(/^synced/);
    await new Promise((r) => setTimeout(r, 100 + Math.random() * 400));
    rep.kill('SIGKILL');
    await exited(rep);
    // What sync() acknowledged before the kill is on the replica: walship's restore reaches it.
    const acked = rep.lines
      .filter((l) => l.startsWith('synced '))
      .at(-1)!
      .split(' ');
    const ackedPos = { generation: acked[1]!, index: Number(acked[2]), offset: Number(acked[3]) };
    const res = await restore({
      outputPath: path.join(dir, `restore-${round}.db`),
      replicas: [{ name: 'r', client: new FileReplicaClient({ path: replicaDir }) }],
    });
    assert.equal(res.generation, ackedPos.generation, `round ${round}: the restore uses the generation sync() acknowledged`);
    assert.ok(
      comparePos(res.restoredTo!, ackedPos) >= 0,
      `round ${round}: restored to ${formatPos(res.restoredTo!)}, acknowledged ${formatPos(ackedPos)}`,
    );
    // After every crash the replica restores to a consistent prefix of the application's rows.
    const out = await rebuildLikeLitestream(new FileReplicaClient({ path: replicaDir }), path.join(dir, `rebuild-${round}`));
    assert.ok(integrityOk(out), `round ${round}: integrity`);
    const ids = (rows(out, 'SELECT id FROM t ORDER BY id') as Array<{ id: number }>).map((r) => r.id);
    assert.ok(ids.length > 0, `round ${round}: rows replicated`);
    assert.deepEqual(
      ids,
      Array.from({ length: ids.length }, (_, i) => i + 1),
      `round ${round}: contiguous prefix`,
    );
    syncedIds.push(ids.length);
  }
  writer.kill('SIGTERM');
  assert.equal(await exited(writer), 0);
  // A last clean run brings the replica fully up to date.
  const rep = new Replicator(dbPath, { replicas: [{ client: new FileReplicaClient({ path: replicaDir }) }] });
  await rep.start();
  await rep.sync({ timeout: 60_000 });
  await rep.stop();
  const out = await rebuildLikeLitestream(new FileReplicaClient({ path: replicaDir }), path.join(dir, 'rebuild-final'));
  assert.deepEqual(rows(out), rows(dbPath));
  assert.ok(
    syncedIds.every((n, i) => i === 0 || n >= syncedIds[i - 1]!),
    `replicated row counts never go back: ${syncedIds.join(',')}`,
  );
});

test('another process writing with external TRUNCATE checkpoints loses nothing', { timeout: 120_000 }, async () => {
  const dir = await tempDir();
  const dbPath = path.join(dir, 'app.db');
  const replicaDir = path.join(dir, 'replica');
  const writer = spawnScript('writer-child.ts', [dbPath, '1000', '25']);
  await writer.waitFor(/committed/);
  const rep = new Replicator(dbPath, {
    monitorInterval: 30,
    minCheckpointPageCount: 100,
    replicas: [{ client: new FileReplicaClient({ path: replicaDir }), syncInterval: 30 }],
  });
  await rep.start();
  await new Promise((r) => setTimeout(r, 3000));
  writer.kill('SIGTERM');
  assert.equal(await exited(writer), 0);
  await rep.sync();
  await rep.stop();
  const out = await rebuildLikeLitestream(new FileReplicaClient({ path: replicaDir }), path.join(dir, 'rebuild'));
  const want = rows(dbPath);
  assert.ok(want.length > 500, `writer wrote ${want.length} rows`);
  assert.deepEqual(rows(out), want);
});
