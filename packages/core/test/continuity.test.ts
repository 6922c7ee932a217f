// Issue #13: no acknowledged transaction lost under kill -9, one generation across restarts
// that keep continuity, and one replicator per database.
import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { test } from 'node:test';
import { LockedError, Replicator, restore } from '@walship/core';
import { FileReplicaClient } from '@walship/file';
import { insertRows, openApp, tempDir } from './support/db.js';
import { killRounds } from './support/kill-rounds.js';
import { rows } from './support/replica-check.js';
import { exited, spawnScript } from './support/spawn.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const ROUNDS = Number(process.env.WALSHIP_KILL_ROUNDS ?? 10);

test(`an embedding app killed with -9 ${ROUNDS} times loses no acknowledged transaction and keeps one generation (file)`, {
  timeout: 300_000,
}, async (t) => {
  const dir = await tempDir();
  const replicaDir = path.join(dir, 'replica');
  process.env.WALSHIP_TEST_REPLICA_DIR = replicaDir;
  const client = new FileReplicaClient({ path: replicaDir });
  const r = await killRounds({
    dbPath: path.join(dir, 'app.db'),
    clientModule: path.join(here, 'support', 'file-client-module.ts'),
    client,
    workDir: dir,
    rounds: ROUNDS,
    minCheckpointPages: 40, // restarts the WAL every few hundred rows, so kills land around restarts too
  });
  t.diagnostic(
    `rounds ${r.rounds}, acknowledged up to id ${r.maxAcked}, restored ${r.restoredMax} rows, generation events: ${r.generationEvents.join(' | ')}`,
  );
  assert.ok(r.maxAcked > 0, 'the app acknowledged transactions');
  assert.equal(r.generationEvents.length, 1, `only the first start begins a generation: ${r.generationEvents.join(' | ')}`);
  assert.match(r.generationEvents[0]!, /^round 0: generation [0-9a-f]{16} no generation exists$/);
  assert.equal((await client.generations()).length, 1, 'one generation on the replica');
});

test('a clean stop and restart while the application keeps the database open continues the generation', async () => {
  const dir = await tempDir();
  const dbPath = path.join(dir, 'app.db');
  const client = new FileReplicaClient({ path: path.join(dir, 'replica') });
  const app = openApp(dbPath); // the application's connection stays open throughout
  try {
    insertRows(app, 50);
    const generations: string[] = [];
    const snapshots: string[] = [];
    let first = '';
    for (let run = 0; run < 3; run++) {
      const rep = new Replicator(dbPath, { monitorInterval: 20, replicas: [{ client, syncInterval: 20 }] });
      rep.on('generation', (e) => generations.push(`${run}: ${e.reason}`));
      rep.on('snapshot', (e) => snapshots.push(`${run}: ${e.index}`));
      await rep.start();
      let p;
      try {
        await rep.sync({ timeout: 30_000 });
        for (let k = 0; k < 2; k++) {
          insertRows(app, 100);
          // Restarts by walship's own connection advance the header's checkpoint sequence, which
          // the next run's new connection does not know (SQLite keeps it per connection).
          assert.equal(await rep.checkpoint(), true, `run ${run}: walship restarted the wal`);
        }
        insertRows(app, 100);
        p = await rep.sync({ timeout: 30_000 });
      } finally {
        await rep.stop();
      }
      if (run === 0) first = p.generation;
      else assert.equal(p.generation, first, `run ${run} continues the generation (${generations.join(', ')})`);
      // After run 0 nothing is written while walship is stopped, so the next start's own write
      // restarts the fully checkpointed WAL; after run 1 the application's write restarts it.
      if (run === 1) insertRows(app, 10);
    }
    assert.deepEqual(generations, ['0: no generation exists']);
    assert.equal(snapshots.length, 1, `one snapshot, when the generation began: ${snapshots.join(', ')}`);
    const out = path.join(dir, 'restored.db');
    const res = await restore({ outputPath: out, replicas: [{ name: 'r', client }] });
    assert.equal(res.generation, first);
    assert.deepEqual(rows(out), rows(dbPath));
  } finally {
    app.close();
  }
});

test('a second replicator on the same database is refused, in this process and in another', async () => {
  const dir = await tempDir();
  const dbPath = path.join(dir, 'app.db');
  const app = openApp(dbPath);
  insertRows(app, 5);
  const a = new Replicator(dbPath, { replicas: [{ client: new FileReplicaClient({ path: path.join(dir, 'r1') }) }] });
  await a.start();
  try {
    const b = new Replicator(dbPath, { replicas: [{ client: new FileReplicaClient({ path: path.join(dir, 'r2') }) }] });
    await assert.rejects(b.start(), (err: unknown) => {
      assert.ok(err instanceof LockedError);
      assert.equal(err.code, 'WALSHIP_LOCKED');
      assert.match(
        err.message,
        new RegExp(
          `^${dbPath.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')} is already being replicated by another walship \\(pid ${process.pid} on .+\\): stop it first`,
        ),
      );
      return true;
    });
    // Another process gets the same refusal and exits non-zero.
    const child = spawnScript('replicate-child.ts', [dbPath, path.join(dir, 'r3')]);
    assert.notEqual(await exited(child), 0);
    assert.ok(!child.lines.includes('ready'), 'the second process never started replicating');
  } finally {
    await a.stop();
    app.close();
  }
  // Once stopped, the lock is free again.
  const c = new Replicator(dbPath, { replicas: [{ client: new FileReplicaClient({ path: path.join(dir, 'r1') }) }] });
  await c.start();
  await c.stop();
});

test('the lock of a replicator killed with -9 is taken over', async () => {
  const dir = await tempDir();
  const dbPath = path.join(dir, 'app.db');
  const app = openApp(dbPath);
  insertRows(app, 5);
  try {
    const child = spawnScript('replicate-child.ts', [dbPath, path.join(dir, 'r')]);
    await child.waitFor(/^synced/);
    const other = new Replicator(dbPath, { replicas: [{ client: new FileReplicaClient({ path: path.join(dir, 'r') }) }] });
    await assert.rejects(other.start(), LockedError); // held while the child lives
    child.kill('SIGKILL');
    await exited(child);
    await other.start();
    const p = await other.sync({ timeout: 30_000 });
    await other.stop();
    assert.ok(p.offset > 0);
    assert.deepEqual(JSON.parse(await fs.readFile(path.join(dir, '.app.db-walship', 'state.json'), 'utf8')).generation, p.generation);
  } finally {
    app.close();
  }
});

test('frequent snapshots while the WAL restarts leave no hole: the oldest snapshot restores to the latest state', {
  timeout: 120_000,
}, async () => {
  const dir = await tempDir();
  const dbPath = path.join(dir, 'app.db');
  const client = new FileReplicaClient({ path: path.join(dir, 'replica') });
  const app = openApp(dbPath);
  const rep = new Replicator(dbPath, {
    monitorInterval: 10,
    minCheckpointPageCount: 8,
    replicas: [{ client, syncInterval: 10, snapshotInterval: 40, retention: 0 }],
  });
  let snapshots = 0;
  let restarts = 0;
  rep.on('snapshot', () => snapshots++);
  rep.on('checkpoint', () => restarts++);
  await rep.start();
  let final;
  try {
    // Commits land between a replica's sync and its next snapshot, and restarts close indexes
    // the replica has not finished: a snapshot must first ship the end of such an index.
    const until = Date.now() + 4000;
    while (Date.now() < until || snapshots < 20) {
      insertRows(app, 2, 500);
      await new Promise((r) => setTimeout(r, 3));
    }
    final = await rep.sync({ timeout: 30_000 });
  } finally {
    await rep.stop();
  }
  const gen = final.generation;
  const snaps = (await client.snapshots(gen)).sort((a, b) => a.index - b.index);
  assert.ok(
    snaps.length >= 10 && snaps.at(-1)!.index - snaps[0]!.index >= 5,
    `snapshots across indexes: ${snaps.map((s) => s.index).join(',')} (${restarts} checkpoints)`,
  );
  for (const s of snaps.slice(1)) await client.deleteSnapshot(gen, s.index);
  const out = path.join(dir, 'restored.db');
  const res = await restore({ outputPath: out, replicas: [{ name: 'r', client }] });
  assert.equal(res.snapshotIndex, snaps[0]!.index);
  assert.deepEqual(rows(out), rows(dbPath), 'restored from the oldest snapshot, every later transaction is there');
  app.close();
});
