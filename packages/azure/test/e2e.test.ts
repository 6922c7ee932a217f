import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { buffer as readAll } from 'node:stream/consumers';
import Database from 'better-sqlite3';
import { Replicator, restore } from '@walship/core';
import { createLz4FrameDecoder } from '@walship/core/format';
import { AzureReplicaClient } from '../src/index.js';
import { startAzuriteOrSkip } from './helpers/azurite.js';

const started = await startAzuriteOrSkip();
// Under CI=true startAzuriteOrSkip throws (the file fails) instead of returning a skip reason.
const skip = typeof started === 'string' ? started : false;
if (typeof started !== 'string') after(() => started.stop());

type Row = { id: number; body: string };

test('replicate a live SQLite database to Azurite, then restore it', { skip }, async (t) => {
  assert.ok(typeof started !== 'string');
  const container = await started.createContainer('e2e');
  const dir = await mkdtemp(join(tmpdir(), 'walship-abs-e2e-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const dbPath = join(dir, 'app.db');
  const client = new AzureReplicaClient({
    container,
    path: 'app',
    accountName: started.accountName,
    accountKey: started.accountKey,
    endpoint: started.endpoint,
  });

  const app = new Database(dbPath);
  app.pragma('journal_mode = WAL');
  app.exec('CREATE TABLE t (id INTEGER PRIMARY KEY, body TEXT NOT NULL)');
  const insert = app.prepare('INSERT INTO t (body) VALUES (?)');

  const rep = new Replicator(dbPath, { replicas: [{ name: 'x', client, syncInterval: 100 }], monitorInterval: 100 });
  await rep.start();
  try {
    for (let batch = 0; batch < 5; batch++) {
      app.transaction(() => {
        for (let i = 0; i < 200; i++) insert.run(`row ${batch}-${i} ${'x'.repeat(i % 50)}`);
      })();
      await rep.sync({ timeout: 30_000 });
    }
    app.prepare('UPDATE t SET body = body || ? WHERE id % 7 = 0').run(' updated');
    app.prepare('DELETE FROM t WHERE id % 11 = 0').run();
    await rep.sync({ timeout: 30_000 });
  } finally {
    await rep.stop({ timeout: 30_000 });
  }
  const expected = app.prepare('SELECT id, body FROM t ORDER BY id').all() as Row[];
  app.close();
  assert.ok(expected.length > 800);

  // What landed in the container: one generation, a snapshot that is an LZ4-framed SQLite file, WAL segments.
  const generations = await client.generations();
  assert.equal(generations.length, 1);
  const gen = generations[0]!;
  const snapshots = await client.snapshots(gen);
  assert.ok(snapshots.length >= 1, 'expected a snapshot');
  assert.ok((await client.walSegments(gen)).length >= 1, 'expected WAL segments');
  const names: string[] = [];
  for await (const b of started.service.getContainerClient(container).listBlobsFlat()) names.push(b.name);
  // Beside the generation only walship's lease of the replica (see the core README).
  assert.ok(names.includes('app/walship-lease.json'), `the replica's lease: ${names.join(', ')}`);
  assert.ok(
    names.filter((n) => n !== 'app/walship-lease.json').every((n) => n.startsWith(`app/generations/${gen}/`)),
    names.join(', '),
  );
  const snap = await client.snapshotReader(gen, snapshots[0]!.index);
  const decoded = await readAll(snap.pipe(createLz4FrameDecoder()));
  assert.equal(decoded.subarray(0, 16).toString('latin1'), 'SQLite format 3\0');

  const outputPath = join(dir, 'restored.db');
  await restore({ outputPath, replicas: [{ name: 'x', client }] });
  const restored = new Database(outputPath, { readonly: true });
  try {
    assert.equal(restored.pragma('integrity_check', { simple: true }), 'ok');
    assert.deepEqual(restored.prepare('SELECT id, body FROM t ORDER BY id').all(), expected);
  } finally {
    restored.close();
  }
});
