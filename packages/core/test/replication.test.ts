import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import path from 'node:path';
import { test } from 'node:test';
import { type ReplicaClient, Replicator, type ReplicatorOptions } from '@walship/core';
import { FileReplicaClient } from '@walship/file';
import Database from 'better-sqlite3';
import { insertRows, openApp, tempDir, until } from './support/db.js';
import { exited, spawnScript } from './support/spawn.js';
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

/** Stops the replicator and closes connections (no-ops when the test already did): a red test never hangs the file. */
async function closeAll(rep: Replicator, ...dbs: Database.Database[]): Promise<void> {
  await rep.stop({ timeout: 2000 }).catch(() => {});
  for (const db of dbs) db.close();
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

test('app autocheckpoint and external TRUNCATE checkpoints never lose a committed transaction', async (t) => {
  const f = await fixture();
  const app = openApp(f.dbPath, { autocheckpoint: 50 });
  const rep = replicator(f, { minCheckpointPageCount: 200 });
  t.after(() => closeAll(rep, app));
  const generations: string[] = [];
  rep.on('generation', (e) => generations.push(e.reason));
  await rep.start();
  // An external TRUNCATE from a connection of this process and from another process (POSIX
  // locks are per process: only the other process sees what the locks themselves refuse).
  const other = new Database(f.dbPath);
  t.after(() => other.close());
  other.pragma('busy_timeout = 0');
  const child = spawnScript('checkpoint-child.ts', [f.dbPath, 'TRUNCATE']);
  t.after(async () => {
    child.kill('SIGKILL');
    await exited(child);
  });
  await child.waitFor(/^ready$/, 20_000);
  let attempts = 0;
  const outcomes: string[] = [];
  const walSize = async () => (await fs.stat(`${f.dbPath}-wal`).catch(() => ({ size: -1 }))).size; // -1: deleted
  for (let i = 0; i < 200; i++) {
    insertRows(app, 3, 500);
    if (i % 7 === 0) {
      attempts++;
      let before = await walSize();
      try {
        const [r] = other.pragma('wal_checkpoint(TRUNCATE)') as Array<{ busy: number; log: number; checkpointed: number }>;
        // SQLite reports SQLITE_BUSY of a checkpoint as busy = 1 in the pragma's row.
        outcomes.push(r!.busy === 1 ? 'busy' : `in-process completed (log ${r!.log}, checkpointed ${r!.checkpointed})`);
      } catch (err) {
        outcomes.push(String((err as { code?: unknown }).code).startsWith('SQLITE_BUSY') ? 'busy' : `in-process error ${String(err)}`);
      }
      let after = await walSize();
      if (after < before) outcomes.push(`in-process truncated the -wal: ${before} → ${after} bytes`);
      before = after;
      child.stdin!.write(`ckpt ${attempts}\n`);
      const line = await child.waitFor(new RegExp(`^ckpt ${attempts} `), 20_000);
      const result = line.split(' ').slice(2).join(' ');
      outcomes.push(result.startsWith('busy') ? 'busy' : `other process: ${result}`);
      after = await walSize();
      if (after < before) outcomes.push(`other process truncated the -wal: ${before} → ${after} bytes`);
    }
    if (i % 50 === 0) await new Promise((r) => setTimeout(r, 60));
  }
  // walship's read lock refuses every external TRUNCATE (README: "gets SQLITE_BUSY").
  assert.equal(attempts, 29);
  assert.deepEqual(outcomes, Array(2 * attempts).fill('busy'));
  await rep.sync();
  await rep.stop();
  assert.deepEqual(generations, ['no generation exists'], 'the WAL was never reset behind walship (no new generation)');
  const out = await rebuildLikeLitestream(f.client, path.join(f.dir, 'rebuild'));
  assert.deepEqual(rows(out), rows(f.dbPath));
  assert.equal(rows(out).length, 600);
});

test('idle databases make no storage requests', async (t) => {
  const f = await fixture();
  const app = openApp(f.dbPath);
  const rep = replicator(f);
  t.after(() => closeAll(rep, app));
  await rep.start();
  insertRows(app, 10);
  await rep.sync();
  // Count monitor passes: the window is 40 passes (about 2 s at 50 ms), however slow they run.
  let passes = 0;
  rep.on('sync', () => passes++);
  // One whole monitor pass after the upload before watching.
  await until(() => passes >= 2, 20_000, 'a monitor pass after the upload');
  let ops = 0;
  rep.on('operation', () => ops++);
  const from = passes;
  await until(() => ops > 0 || passes - from >= 40, 30_000, '40 idle monitor passes');
  assert.equal(ops, 0, 'no requests while idle');
  insertRows(app, 1);
  await rep.sync();
  assert.ok(ops > 0, 'a write is uploaded');
  await rep.stop();
  app.close();
});

test('a lagging replica is served its unsent WAL from kept tails across forced restarts, without a new snapshot', async (t) => {
  const f = await fixture();
  const slowDir = path.join(f.dir, 'slow');
  const slow = new FileReplicaClient({ path: slowDir });
  const app = openApp(f.dbPath);
  const rep = new Replicator(f.dbPath, {
    monitorInterval: 30,
    // Only maxCheckpointPageCount restarts the WAL here: every restart is a forced one.
    minCheckpointPageCount: 100_000,
    maxCheckpointPageCount: 20,
    replicas: [
      { name: 'fast', client: f.client, syncInterval: 20 },
      // Syncs at start, then only when sync() asks.
      { name: 'slow', client: slow, syncInterval: 600_000 },
    ],
  });
  t.after(() => closeAll(rep, app));
  const snapshots = new Map<string, number>();
  rep.on('snapshot', (e) => snapshots.set(e.replica, (snapshots.get(e.replica) ?? 0) + 1));
  // A segment of an index the WAL has already left can only come from a kept tail.
  const fromKeptTails = new Set<number>();
  rep.on('replica-sync', (e) => {
    if (e.replica === 'slow' && e.pos.index < rep.pos.index) fromKeptTails.add(e.pos.index);
  });
  await rep.start();
  const slowStatus = () => rep.status().replicas.find((r) => r.name === 'slow')!;
  await until(() => slowStatus().lastSyncAt !== undefined, 20_000, "the slow replica's first sync");
  const slowStart = slowStatus().pos;
  const deadline = Date.now() + 20_000;
  while (rep.pos.index < slowStart.index + 3) {
    if (Date.now() > deadline) throw new Error(`no forced restarts: still at index ${rep.pos.index}`);
    insertRows(app, 4, 1000);
    await new Promise((r) => setTimeout(r, 25));
  }
  assert.deepEqual(slowStatus().pos, slowStart, 'the slow replica lagged through the restarts');
  await rep.sync();
  await rep.stop();
  assert.equal(snapshots.get('slow'), 1, 'the slow replica took no new snapshot');
  const gen = await latestGeneration(slow);
  assert.equal((await slow.snapshots(gen)).length, 1);
  for (let i = slowStart.index + 1; i < slowStart.index + 3; i++) {
    assert.ok(fromKeptTails.has(i), `index ${i} reached the slow replica from a kept tail (${[...fromKeptTails].join(', ')})`);
  }
  assert.ok((await walByIndex(slow, gen)).size >= 3, 'the slow replica holds every index');
  for (const [c, name] of [
    [f.client, 'fast'],
    [slow, 'slow'],
  ] as const) {
    const out = await rebuildLikeLitestream(c, path.join(f.dir, `rebuild-${name}`));
    assert.deepEqual(rows(out), rows(f.dbPath), `${name} replica`);
  }
  assert.equal((await slow.generations()).length, 1);
  assert.equal(gen, await latestGeneration(f.client));
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
  assert.throws(
    () => new Replicator(f.dbPath, { replicas: [{ client: f.client }], 'bogus-key': 1 } as never),
    /unknown database option "bogus-key"/,
  );
  const kebab = new Replicator(f.dbPath, {
    replicas: [{ client: f.client, 'sync-interval': '2s' } as never],
    'monitor-interval': '100ms',
  } as never);
  assert.equal(kebab.status().replicas[0]!.syncIntervalMs, 2000);
  await assert.rejects(
    new Replicator(path.join(f.dir, 'missing', 'x.db'), { replicas: [{ client: f.client }] }).start(),
    /database directory does not exist/,
  );
});
