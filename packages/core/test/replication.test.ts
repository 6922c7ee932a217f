import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import path from 'node:path';
import { test } from 'node:test';
import { type ReplicaClient, Replicator, type ReplicatorOptions } from '@walship/core';
import { FileReplicaClient } from '@walship/file';
import Database from 'better-sqlite3';
import { insertRows, openApp, tempDir, until } from './support/db.js';
import { integrityOk, latestGeneration, rebuildLikeLitestream, rows, walByIndex } from './support/replica-check.js';

interface Fixture {
  dir: string;
  dbPath: string;
  client: ReplicaClient;
  replicaDir: string;
}

async function fixture(): Promise<Fixture> {
  const dir = await tempDir();
  const replicaDir = path.join(dir, 'replica');
  return { dir, dbPath: path.join(dir, 'app.db'), client: new FileReplicaClient({ path: replicaDir }), replicaDir };
}

function replicator(f: Fixture, extra: Partial<ReplicatorOptions> = {}, replicaExtra: Record<string, unknown> = {}): Replicator {
  return new Replicator(f.dbPath, {
    monitorInterval: 50,
    replicas: [{ client: f.client, syncInterval: 50, ...replicaExtra }],
    ...extra,
  });
}

test('replicated WAL segments equal the WAL bytes and rebuild the database', async () => {
  const f = await fixture();
  const app = openApp(f.dbPath);
  const rep = replicator(f, { minCheckpointPageCount: 100_000, maxCheckpointPageCount: 0 });
  await rep.start();
  for (let i = 0; i < 20; i++) insertRows(app, 10);
  const pos = await rep.sync();
  assert.equal(pos.generation.length, 16);
  const gens = await f.client.generations();
  assert.deepEqual(gens, [pos.generation]);
  const wal = await walByIndex(f.client, pos.generation);
  const local = await fs.readFile(`${f.dbPath}-wal`);
  const mine = wal.get(pos.index)!;
  assert.ok(mine.length >= 32 + 20 * 4120, `index ${pos.index} holds ${mine.length} bytes`);
  assert.equal(mine.length, pos.offset);
  assert.ok(local.subarray(0, mine.length).equals(mine), 'decompressed segments equal the WAL bytes');
  await rep.stop();
  const out = await rebuildLikeLitestream(f.client, path.join(f.dir, 'rebuild'));
  assert.deepEqual(rows(out), rows(f.dbPath));
  assert.equal(rows(out).length, 200);
  app.close();
});

test('many WAL indexes under small checkpoint thresholds rebuild exactly', async () => {
  const f = await fixture();
  const app = openApp(f.dbPath);
  const rep = replicator(f, { minCheckpointPageCount: 20 });
  await rep.start();
  for (let i = 0; i < 60; i++) {
    insertRows(app, 5, 300);
    if (i % 10 === 0) await rep.sync();
    await new Promise((r) => setTimeout(r, 5));
  }
  await rep.sync();
  const gen = rep.status().generation;
  const wal = await walByIndex(f.client, gen);
  assert.ok(wal.size >= 3, `expected several WAL indexes, got ${wal.size}`);
  await rep.stop();
  const out = await rebuildLikeLitestream(f.client, path.join(f.dir, 'rebuild'));
  assert.deepEqual(rows(out), rows(f.dbPath));
  assert.ok(integrityOk(out));
  app.close();
});

test('restarting walship continues the same generation without a new snapshot', async () => {
  const f = await fixture();
  const app = openApp(f.dbPath);
  let rep = replicator(f);
  await rep.start();
  insertRows(app, 50);
  const first = await rep.sync();
  await rep.stop();
  const snapsBefore = await f.client.snapshots(first.generation);
  assert.equal(snapsBefore.length, 1);

  insertRows(app, 50); // the app keeps writing while walship is down
  rep = replicator(f);
  await rep.start();
  insertRows(app, 50);
  const second = await rep.sync();
  await rep.stop();
  assert.equal(second.generation, first.generation, 'same generation');
  assert.deepEqual(await f.client.generations(), [first.generation]);
  assert.equal((await f.client.snapshots(first.generation)).length, 1, 'no new snapshot');
  const out = await rebuildLikeLitestream(f.client, path.join(f.dir, 'rebuild'));
  assert.equal(rows(out).length, 150);
  app.close();
});

test('a clean stop survives the application deleting the WAL on close', async () => {
  const f = await fixture();
  let app = openApp(f.dbPath);
  let rep = replicator(f);
  await rep.start();
  insertRows(app, 30);
  const first = await rep.sync();
  await rep.stop();
  app.close(); // last connection: SQLite checkpoints and deletes the -wal
  await assert.rejects(fs.stat(`${f.dbPath}-wal`), { code: 'ENOENT' });
  app = openApp(f.dbPath);
  insertRows(app, 10); // a brand-new WAL
  rep = replicator(f);
  await rep.start();
  const second = await rep.sync();
  await rep.stop();
  assert.equal(second.generation, first.generation);
  assert.equal((await f.client.snapshots(first.generation)).length, 1);
  const out = await rebuildLikeLitestream(f.client, path.join(f.dir, 'rebuild'));
  assert.deepEqual(rows(out), rows(f.dbPath));
  app.close();
});

test('a database deleted and recreated under the same path starts a new generation', async () => {
  const f = await fixture();
  let app = openApp(f.dbPath);
  let rep = replicator(f);
  await rep.start();
  insertRows(app, 10);
  const first = await rep.sync();
  await rep.stop();
  app.close();
  for (const s of ['', '-wal', '-shm']) await fs.rm(f.dbPath + s, { force: true });
  app = openApp(f.dbPath);
  insertRows(app, 3);
  rep = replicator(f);
  await rep.start();
  const second = await rep.sync();
  assert.notEqual(second.generation, first.generation);
  // While running: delete and recreate again.
  app.close();
  for (const s of ['', '-wal', '-shm']) await fs.rm(f.dbPath + s, { force: true });
  app = openApp(f.dbPath);
  insertRows(app, 4);
  await until(() => rep.status().generation !== second.generation, 10_000, 'new generation after recreate');
  const third = await rep.sync();
  await rep.stop();
  assert.notEqual(third.generation, second.generation);
  const out = await rebuildLikeLitestream(f.client, path.join(f.dir, 'rebuild'), third.generation);
  assert.equal(rows(out).length, 4);
  app.close();
});

test('app autocheckpoint and external TRUNCATE checkpoints never lose a committed transaction', async () => {
  const f = await fixture();
  const app = openApp(f.dbPath, { autocheckpoint: 50 });
  const rep = replicator(f, { minCheckpointPageCount: 200 });
  await rep.start();
  const other = new Database(f.dbPath);
  other.pragma('busy_timeout = 0');
  let attempts = 0;
  for (let i = 0; i < 200; i++) {
    insertRows(app, 3, 500);
    if (i % 7 === 0) {
      attempts++;
      try {
        other.pragma('wal_checkpoint(TRUNCATE)');
      } catch {
        /* busy: walship's read lock refuses it, as intended */
      }
    }
    if (i % 50 === 0) await new Promise((r) => setTimeout(r, 60));
  }
  await rep.sync();
  await rep.stop();
  other.close();
  const out = await rebuildLikeLitestream(f.client, path.join(f.dir, 'rebuild'));
  assert.deepEqual(rows(out), rows(f.dbPath));
  assert.equal(rows(out).length, 600);
  assert.ok(attempts > 20);
  app.close();
});

test('idle databases make no storage requests', async () => {
  const f = await fixture();
  const app = openApp(f.dbPath);
  const rep = replicator(f);
  await rep.start();
  insertRows(app, 10);
  await rep.sync();
  await new Promise((r) => setTimeout(r, 300));
  let ops = 0;
  rep.on('operation', () => ops++);
  await new Promise((r) => setTimeout(r, 2000));
  assert.equal(ops, 0, 'no requests while idle');
  insertRows(app, 1);
  await rep.sync();
  assert.ok(ops > 0, 'a write is uploaded');
  await rep.stop();
  app.close();
});

test('a lagging replica keeps its unsent WAL locally across forced restarts', async () => {
  const f = await fixture();
  const slowDir = path.join(f.dir, 'slow');
  const slow = new FileReplicaClient({ path: slowDir });
  const app = openApp(f.dbPath);
  const rep = new Replicator(f.dbPath, {
    monitorInterval: 30,
    minCheckpointPageCount: 10,
    maxCheckpointPageCount: 20,
    replicas: [
      { name: 'fast', client: f.client, syncInterval: 20 },
      { name: 'slow', client: slow, syncInterval: 1500 },
    ],
  });
  await rep.start();
  for (let i = 0; i < 40; i++) {
    insertRows(app, 4, 1000);
    await new Promise((r) => setTimeout(r, 25));
  }
  await rep.sync();
  await rep.stop();
  for (const [c, name] of [[f.client, 'fast'], [slow, 'slow']] as const) {
    const out = await rebuildLikeLitestream(c, path.join(f.dir, `rebuild-${name}`));
    assert.deepEqual(rows(out), rows(f.dbPath), `${name} replica`);
  }
  assert.equal((await slow.generations()).length, 1);
  assert.equal(await latestGeneration(slow), await latestGeneration(f.client));
  app.close();
});

test('sync() waits for durability on every replica and status reports lag 0 after', async () => {
  const f = await fixture();
  const app = openApp(f.dbPath);
  const rep = replicator(f, {}, { syncInterval: 10_000 });
  await rep.start();
  insertRows(app, 1);
  const pos = await rep.sync();
  const st = rep.status();
  assert.equal(st.replicas[0]!.lagMs, 0);
  assert.deepEqual(st.replicas[0]!.pos, pos);
  assert.equal(st.replicas[0]!.healthy, true);
  await rep.stop();
  await assert.rejects(rep.sync(), { code: 'WALSHIP_CLOSED' });
  app.close();
});

test('bad options are rejected with ConfigError', async () => {
  const f = await fixture();
  assert.throws(() => new Replicator(f.dbPath, {} as never), { code: 'WALSHIP_CONFIG' });
  assert.throws(() => new Replicator(f.dbPath, { replicas: [{ client: f.client }, { client: f.client }] }), /duplicate replica name/);
  assert.throws(() => new Replicator(f.dbPath, { replicas: [{ client: f.client, syncInterval: '5 minutes' }] }), /invalid sync-interval/);
  assert.throws(() => new Replicator(f.dbPath, { replicas: [{ client: f.client }], 'bogus-key': 1 } as never), /unknown database option "bogus-key"/);
  const kebab = new Replicator(f.dbPath, { replicas: [{ client: f.client, 'sync-interval': '2s' } as never], 'monitor-interval': '100ms' } as never);
  assert.equal(kebab.status().replicas[0]!.syncIntervalMs, 2000);
  await assert.rejects(new Replicator(path.join(f.dir, 'missing', 'x.db'), { replicas: [{ client: f.client }] }).start(), /database directory does not exist/);
});
