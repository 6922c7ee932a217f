// Issue #12 §1: the engine runs in a worker thread, off the application's event loop. These
// tests check the thread boundary itself: work happens while the application's thread is
// blocked, a worker that dies is reported and replaced without losing anything, stages of the
// application's own run on its thread, and `thread: 'inline'` keeps the old behaviour.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { Transform, type TransformCallback } from 'node:stream';
import { test } from 'node:test';
import { isMainThread } from 'node:worker_threads';
import { lz4Stage, type ObjectStage, Replicator, restore, type ReplicatorOptions } from '@walship/core';
import { FileReplicaClient } from '@walship/file';
import { crashEngineWorkerForTest } from '../src/replicator-facade.js';
import { insertRows, openApp, tempDir, until } from './support/db.js';
import { rows } from './support/replica-check.js';

/** The WAL header's salts: what a restart changes. */
const salts = (dbPath: string): string => fs.readFileSync(`${dbPath}-wal`).subarray(16, 24).toString('hex');

/** Blocks this thread without using the CPU (the worker keeps one core to itself). */
const blockThread = (ms: number): void => {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
};

async function withDb(t: { after: (fn: () => Promise<void>) => void }) {
  const dir = await tempDir('walship-worker-');
  t.after(() => fsp.rm(dir, { recursive: true, force: true }));
  const dbPath = path.join(dir, 'app.db');
  const app = openApp(dbPath);
  t.after(async () => {
    app.close();
  });
  const replicaDir = path.join(dir, 'replica');
  return { dir, dbPath, app, replicaDir, client: new FileReplicaClient({ path: replicaDir }) };
}

for (const thread of ['worker', 'inline'] as const) {
  test(`${thread}: WAL restarts happen while the application's thread is blocked only off-thread`, { timeout: 60_000 }, async (t) => {
    const { dbPath, app, client } = await withDb(t);
    // A forced restart at 50 pages happens without waiting for uploads (none is due: 10 s).
    const rep = new Replicator(dbPath, {
      replicas: [{ client, syncInterval: '10s' }],
      monitorInterval: '50ms',
      minCheckpointPageCount: 20,
      maxCheckpointPageCount: 50,
      thread,
    });
    const restarts: Array<{ lockHeldMs?: number; restarted?: boolean }> = [];
    rep.on('checkpoint', (e) => restarts.push(e));
    await rep.start();
    t.after(() => rep.stop());
    await rep.sync();
    insertRows(app, 600, 400); // ~70 pages
    const before = salts(dbPath);
    blockThread(3000);
    // Read at once, before this thread runs anything else: only another thread could have
    // restarted the WAL in the meantime.
    const after = salts(dbPath);
    if (thread === 'worker') assert.notEqual(after, before, 'the engine worker restarted the WAL while the application was blocked');
    else assert.equal(after, before, 'inline, nothing runs while the application is blocked');
    await rep.sync();
    // Each controlled restart reports how long it held SQLite's write lock.
    await until(() => restarts.some((e) => e.restarted), 10_000, 'a restart reported');
    for (const e of restarts.filter((x) => x.restarted)) {
      assert.ok(typeof e.lockHeldMs === 'number' && e.lockHeldMs > 0 && e.lockHeldMs < 1000, `write lock held ${e.lockHeldMs} ms`);
    }
    const out = path.join(path.dirname(dbPath), `restored-${thread}.db`);
    await restore({ outputPath: out, replicas: [{ name: 'file', client }] });
    assert.deepEqual(rows(out), rows(dbPath));
  });
}

test('a worker that dies is reported and replaced; sync() carries on and nothing is lost', { timeout: 60_000 }, async (t) => {
  const { dbPath, app, client } = await withDb(t);
  const rep = new Replicator(dbPath, { replicas: [{ client }], monitorInterval: '100ms' });
  const errors: Error[] = [];
  rep.on('sync-error', (e) => errors.push(e.error));
  const generations: string[] = [];
  rep.on('generation', (e) => generations.push(e.reason));
  await rep.start();
  insertRows(app, 100);
  await rep.sync();
  crashEngineWorkerForTest();
  await until(() => errors.length > 0, 10_000, 'the lost worker reported');
  assert.equal((errors[0] as { code?: string }).code, 'WALSHIP_ENGINE_WORKER');
  assert.match(errors[0]!.message, /engine worker stopped unexpectedly \(engine worker crashed on purpose/);
  // The replacement takes over (sync() waits for it), then replicates what follows. (Had the
  // application restarted the WAL while no worker pinned it, continuity would really be lost,
  // as after a kill -9 of a sidecar: a new generation then, still without losing anything.)
  await rep.sync({ timeout: 30_000 });
  insertRows(app, 100);
  await rep.sync({ timeout: 30_000 });
  assert.equal(rep.status().replicas[0]!.healthy, true);
  await rep.stop();
  const out = path.join(path.dirname(dbPath), 'restored.db');
  await restore({ outputPath: out, replicas: [{ name: 'file', client }] });
  assert.equal((rows(out) as unknown[]).length, 200);
  assert.equal((await client.generations()).length, 1, 'the replacement continued the same generation');
  assert.deepEqual(generations, ['no generation exists'], 'no generation after the first');
});

test("an application's own object stage runs on its thread; LZ4 in the worker", { timeout: 60_000 }, async (t) => {
  const { dbPath, app, client } = await withDb(t);
  const threads = new Set<string>();
  const tag: ObjectStage = {
    name: 'tag',
    encoder: () =>
      new Transform({
        transform(chunk: Buffer, _e, cb: TransformCallback) {
          threads.add(isMainThread ? 'main' : 'worker');
          cb(null, Buffer.from(chunk.map((b) => b ^ 0x5a)));
        },
      }),
    decoder: () =>
      new Transform({
        transform(chunk: Buffer, _e, cb: TransformCallback) {
          cb(null, Buffer.from(chunk.map((b) => b ^ 0x5a)));
        },
      }),
  };
  const stages = [lz4Stage, tag];
  const rep = new Replicator(dbPath, { replicas: [{ client, stages }] } satisfies ReplicatorOptions);
  await rep.start();
  insertRows(app, 300);
  await rep.sync();
  await rep.stop();
  assert.deepEqual([...threads], ['main'], 'the stage ran on the application thread');
  const out = path.join(path.dirname(dbPath), 'restored.db');
  await restore({ outputPath: out, replicas: [{ name: 'file', client, stages }] });
  assert.deepEqual(rows(out), rows(dbPath));
  // Stored objects are the stage's output (restoring them as plain LZ4 fails).
  await assert.rejects(restore({ outputPath: path.join(path.dirname(dbPath), 'plain.db'), replicas: [{ name: 'file', client }] }));
});

test('thread: a bad value is a ConfigError naming it', () => {
  assert.throws(
    () => new Replicator('/tmp/x.db', { replicas: [], thread: 'gpu' as never }),
    /invalid thread: "gpu": expected "worker" or "inline"/,
  );
});
