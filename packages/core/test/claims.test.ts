/**
 * README claims of @walship/core that had no test of their own: the emergency truncate
 * (`truncatePageCount`), `sync({ timeout })`, `WALSHIP_BUSY`, starting before the database
 * exists, the `generation` event, the idle PASSIVE checkpoint, and restoring from the oldest
 * snapshot retention kept. Every wait is for an event or a state; deadlines only bound a hang.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import path from 'node:path';
import type { Readable } from 'node:stream';
import { afterEach, test } from 'node:test';
import {
  BackendError,
  comparePos,
  type Pos,
  type ReplicaClient,
  type ReplicaOperation,
  Replicator,
  restore,
  WalshipError,
  type WALSegmentInfo,
} from '@walship/core';
import { calcWalSize } from '@walship/core/format';
import { FileReplicaClient } from '@walship/file';
import Database from 'better-sqlite3';
import { insertRows, openApp, tempDir, until } from './support/db.js';
import { rebuildLikeLitestream, rows } from './support/replica-check.js';
import { exited, spawnScript } from './support/spawn.js';

const PAGE = 4096;
const pagesOf = (p: Pos): number => Math.max(0, (p.offset - 32) / (PAGE + 24));

/** Resolves with the next event `name` the replicator emits. */
function next<T>(rep: Replicator, name: 'sync' | 'generation'): Promise<T> {
  return new Promise((resolve) => rep.once(name, resolve as never));
}

/** Rejects with `what` if `p` has not settled after `ms` (bounds a hang; not a timing claim). */
async function settles<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const guard = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} did not settle within ${ms} ms`)), ms);
  });
  try {
    return await Promise.race([p, guard]);
  } finally {
    clearTimeout(timer);
  }
}

/** Everything a test opened, closed after it even when it failed (so a red test never hangs the file). */
const opened: Array<() => Promise<void> | void> = [];
function track<T extends Replicator | Database.Database>(x: T): T {
  if (x instanceof Replicator) opened.push(() => settles(x.stop({ timeout: 2000 }), 10_000, 'stop()').catch(() => {}));
  else opened.push(() => void (x.open && x.close()));
  return x;
}
afterEach(async () => {
  for (const close of opened.splice(0).reverse()) await close();
});

test('truncatePageCount: a WAL that reaches it while a reader blocks normal restarts is restarted and truncated', async () => {
  const dir = await tempDir();
  const dbPath = path.join(dir, 'app.db');
  const client = new FileReplicaClient({ path: path.join(dir, 'replica') });
  const app = track(openApp(dbPath));
  insertRows(app, 5, 500);
  const minPages = 50;
  const truncatePages = 300;
  const holdMs = 500;
  const rep = track(
    new Replicator(dbPath, {
      monitorInterval: 30,
      minCheckpointPageCount: minPages,
      maxCheckpointPageCount: 0,
      truncatePageCount: truncatePages,
      busyTimeout: 15_000, // the emergency checkpoint waits this long for readers at most
      replicas: [{ client, syncInterval: 30 }],
    }),
  );
  const modes: string[] = [];
  rep.on('checkpoint', (e) => modes.push(e.mode));
  await rep.start();
  const idx0 = (await rep.sync()).index;

  // Another process reads from the WAL: no checkpoint can copy past it, so no normal restart.
  const reader = spawnScript('reader-child.ts', [dbPath, String(holdMs)]);
  try {
    await reader.waitFor(/^reading$/, 20_000);
    let maxPagesAtIdx0 = 0;
    let blockedAttempts = 0;
    rep.on('sync', (e) => {
      if (e.pos.index === idx0) maxPagesAtIdx0 = Math.max(maxPagesAtIdx0, pagesOf(e.pos));
    });
    rep.on('checkpoint', (e) => {
      if (e.mode === 'PASSIVE' && rep.pos.index === idx0 && pagesOf(rep.pos) >= minPages) blockedAttempts++;
      // The emergency checkpoint's own count of WAL frames (a sync event may not come first).
      if (e.mode === 'TRUNCATE') maxPagesAtIdx0 = Math.max(maxPagesAtIdx0, e.walFrames ?? 0);
    });
    // Write in steps the monitor sees one by one, until the WAL reaches truncatePageCount.
    const deadline = Date.now() + 30_000;
    while (rep.pos.index === idx0 && pagesOf(rep.pos) < truncatePages) {
      if (Date.now() > deadline) throw new Error(`wal never reached ${truncatePages} pages (at ${pagesOf(rep.pos)})`);
      insertRows(app, 20, 2000);
      await next(rep, 'sync');
    }
    await until(() => rep.pos.index > idx0, 30_000, 'the emergency restart');
    const released = await reader.waitFor(/^released /, 10_000);
    assert.ok(maxPagesAtIdx0 >= truncatePages, `the WAL grew to ${maxPagesAtIdx0} pages without a restart while the reader held it`);
    assert.ok(blockedAttempts >= 1, 'normal restarts were attempted and failed while the reader held the WAL');
    assert.ok(modes.includes('TRUNCATE'), `an emergency (TRUNCATE) checkpoint ran: ${[...new Set(modes)].join(', ')}`);
    assert.ok(Number(released.split(' ')[1]) >= holdMs, `walship held the write lock waiting for the reader (${released})`);
    // The restarting commit truncates the WAL to journal_size_limit (minCheckpointPageCount pages).
    const walSize = (await fs.stat(`${dbPath}-wal`)).size;
    assert.ok(walSize <= calcWalSize(PAGE, minPages), `wal truncated to ${walSize} bytes`);
  } finally {
    reader.kill('SIGKILL');
    await exited(reader);
  }
  insertRows(app, 3);
  await rep.sync();
  await rep.stop();
  const out = await rebuildLikeLitestream(client, path.join(dir, 'rebuild'));
  assert.deepEqual(rows(out), rows(dbPath));
  app.close();
});

/**
 * A real file client whose WAL uploads hang while `hang` is set (until `release()`), or fail like
 * a network error while `fail` is set.
 */
class HangingClient implements ReplicaClient {
  hang = false;
  fail = false;
  started = 0;
  readonly type = 'file';
  #held: Array<() => void> = [];
  constructor(private readonly inner: ReplicaClient) {}
  release(): void {
    this.hang = false;
    for (const go of this.#held.splice(0)) go();
  }
  generations() {
    return this.inner.generations();
  }
  deleteGeneration(g: string) {
    return this.inner.deleteGeneration(g);
  }
  snapshots(g: string) {
    return this.inner.snapshots(g);
  }
  writeSnapshot(g: string, i: number, body: Readable) {
    return this.inner.writeSnapshot(g, i, body);
  }
  snapshotReader(g: string, i: number) {
    return this.inner.snapshotReader(g, i);
  }
  deleteSnapshot(g: string, i: number) {
    return this.inner.deleteSnapshot(g, i);
  }
  walSegments(g: string) {
    return this.inner.walSegments(g);
  }
  async writeWALSegment(p: Pos, body: Readable): Promise<WALSegmentInfo> {
    if (this.fail) throw new BackendError('connection refused (simulated outage)', { retryable: true });
    if (this.hang) {
      this.started++;
      await new Promise<void>((r) => this.#held.push(r));
    }
    return this.inner.writeWALSegment(p, body);
  }
  walSegmentReader(p: Pos) {
    return this.inner.walSegmentReader(p);
  }
  deleteWALSegments(ps: readonly Pos[]) {
    return this.inner.deleteWALSegments(ps);
  }
}

// sync() never awaits a replica's upload directly, so an upload that hangs cannot hold back its timeout.
test('sync({ timeout }) rejects with WALSHIP_TIMEOUT when a replica upload never finishes', async () => {
  const dir = await tempDir();
  const dbPath = path.join(dir, 'app.db');
  const client = new HangingClient(new FileReplicaClient({ path: path.join(dir, 'replica') }));
  const app = track(openApp(dbPath));
  const rep = track(new Replicator(dbPath, { monitorInterval: 30, replicas: [{ client, syncInterval: 30 }] }));
  await rep.start();
  try {
    insertRows(app, 5);
    await rep.sync();
    client.hang = true;
    insertRows(app, 5);
    await until(() => client.started >= 1, 20_000, 'an upload to hang');
    const t0 = Date.now();
    const err = await settles(
      rep.sync({ timeout: 300 }).then(
        () => undefined,
        (e: unknown) => e,
      ),
      5_000,
      'sync({ timeout: 300 })',
    );
    assert.ok(err instanceof WalshipError, `rejected with a WalshipError: ${String(err)}`);
    assert.equal((err as WalshipError).code, 'WALSHIP_TIMEOUT');
    assert.match((err as Error).message, /sync timed out/);
    assert.ok(Date.now() - t0 >= 290, 'not before the timeout');
    client.release();
    await rep.sync({ timeout: 15_000 });
  } finally {
    client.release();
    await rep.stop({ timeout: 15_000 });
    app.close();
  }
  const out = await rebuildLikeLitestream(client, path.join(dir, 'rebuild'));
  assert.deepEqual(rows(out), rows(dbPath));
});

test('sync({ timeout }) rejects with WALSHIP_TIMEOUT naming the replica while its uploads fail', async () => {
  const dir = await tempDir();
  const dbPath = path.join(dir, 'app.db');
  const client = new HangingClient(new FileReplicaClient({ path: path.join(dir, 'replica') }));
  const app = track(openApp(dbPath));
  const rep = track(new Replicator(dbPath, { monitorInterval: 30, replicas: [{ name: 'flaky', client, syncInterval: 30 }] }));
  await rep.start();
  try {
    insertRows(app, 5);
    await rep.sync();
    client.fail = true;
    insertRows(app, 5);
    const t0 = Date.now();
    const err = await settles(
      rep.sync({ timeout: 300 }).then(
        () => undefined,
        (e: unknown) => e,
      ),
      10_000,
      'sync({ timeout: 300 })',
    );
    assert.ok(err instanceof WalshipError, `rejected with a WalshipError: ${String(err)}`);
    assert.equal((err as WalshipError).code, 'WALSHIP_TIMEOUT');
    assert.match((err as Error).message, /sync timed out waiting for replicas: flaky \(.*simulated outage/);
    assert.ok(Date.now() - t0 >= 290, 'not before the timeout');
    client.fail = false;
    await rep.sync({ timeout: 15_000 });
  } finally {
    client.fail = false;
    await rep.stop({ timeout: 15_000 });
    app.close();
  }
  const out = await rebuildLikeLitestream(client, path.join(dir, 'rebuild'));
  assert.deepEqual(rows(out), rows(dbPath));
});

test('start() rejects with WALSHIP_BUSY when another connection keeps the write lock past the deadline', async () => {
  const dir = await tempDir();
  const dbPath = path.join(dir, 'app.db');
  const client = new FileReplicaClient({ path: path.join(dir, 'replica') });
  const app = track(openApp(dbPath));
  insertRows(app, 5);
  // walship's helper tables exist (as after any earlier run), so only the start-up write waits.
  app.exec(
    'CREATE TABLE IF NOT EXISTS _litestream_seq (id INTEGER PRIMARY KEY, seq INTEGER); CREATE TABLE IF NOT EXISTS _litestream_lock (id INTEGER);',
  );
  const holder = track(new Database(dbPath));
  holder.exec('BEGIN IMMEDIATE');
  // The start-up deadline is max(busyTimeout, 1 s) × 10, i.e. 10 s here.
  const rep = track(new Replicator(dbPath, { busyTimeout: 10, monitorInterval: 30, replicas: [{ client, syncInterval: 30 }] }));
  const t0 = Date.now();
  const err = await settles(
    rep.start().then(
      () => undefined,
      (e: unknown) => e,
    ),
    60_000,
    'start()',
  );
  const elapsed = Date.now() - t0;
  holder.exec('ROLLBACK');
  holder.close();
  assert.ok(err instanceof WalshipError, `start() rejected with a WalshipError: ${String(err)}`);
  assert.equal((err as WalshipError).code, 'WALSHIP_BUSY');
  assert.match((err as Error).message, /write lock/);
  assert.ok(elapsed >= 9_500, `gave up only after the deadline (${elapsed} ms)`);
  assert.deepEqual(rep.pos, { generation: '', index: 0, offset: 0 }, 'the database is not open');
  assert.deepEqual(await client.generations(), [], 'nothing was replicated');
  // Once the lock is free, the same replicator starts.
  await rep.start();
  insertRows(app, 2);
  await rep.sync();
  await rep.stop();
  const out = await rebuildLikeLitestream(client, path.join(dir, 'rebuild'));
  assert.deepEqual(rows(out), rows(dbPath));
  app.close();
});

test('start() before the database exists: replication starts when the file appears', async () => {
  const dir = await tempDir();
  const dbPath = path.join(dir, 'app.db');
  const client = new FileReplicaClient({ path: path.join(dir, 'replica') });
  const rep = track(new Replicator(dbPath, { monitorInterval: 30, replicas: [{ client, syncInterval: 30 }] }));
  const generations: Array<{ generation: string; reason: string }> = [];
  rep.on('generation', (e) => generations.push(e));
  await rep.start();
  assert.equal(rep.status().generation, '');
  assert.deepEqual(rep.pos, { generation: '', index: 0, offset: 0 });
  // With no database yet nothing has been committed: sync() resolves at once (issue #19).
  assert.deepEqual(await rep.sync({ timeout: 30_000 }), { generation: '', index: 0, offset: 0 });
  await assert.rejects(fs.stat(dbPath), { code: 'ENOENT' }, 'walship did not create the database');
  assert.deepEqual(await client.generations(), []);

  const app = track(openApp(dbPath));
  insertRows(app, 10);
  await until(() => rep.status().generation !== '', 20_000, 'replication to start');
  const pos = await rep.sync({ timeout: 20_000 });
  assert.equal(pos.generation, rep.status().generation);
  assert.deepEqual(generations, [{ generation: pos.generation, reason: 'no generation exists' }]);
  await rep.stop();
  assert.deepEqual(await client.generations(), [pos.generation]);
  const out = await rebuildLikeLitestream(client, path.join(dir, 'rebuild'));
  assert.deepEqual(rows(out), rows(dbPath));
  assert.equal(rows(out).length, 10);
  app.close();
});

test('the generation event: first start, not on a continuing restart, and a database replaced while running', async () => {
  const dir = await tempDir();
  const dbPath = path.join(dir, 'app.db');
  const client = new FileReplicaClient({ path: path.join(dir, 'replica') });
  let app = track(openApp(dbPath));
  insertRows(app, 3);
  const make = () => track(new Replicator(dbPath, { monitorInterval: 30, replicas: [{ client, syncInterval: 30 }] }));
  const events: Array<{ generation: string; reason: string }> = [];
  let rep = make();
  rep.on('generation', (e) => events.push(e));
  await rep.start();
  assert.deepEqual(events, [{ generation: rep.status().generation, reason: 'no generation exists' }]);
  const first = await rep.sync();
  await rep.stop();

  rep = make();
  rep.on('generation', (e) => events.push(e));
  await rep.start();
  insertRows(app, 2);
  assert.equal((await rep.sync()).generation, first.generation);
  assert.equal(events.length, 1, 'a continuing start emits no generation event');

  const replaced = next<{ generation: string; reason: string }>(rep, 'generation');
  app.close();
  for (const s of ['', '-wal', '-shm']) await fs.rm(dbPath + s, { force: true });
  app = track(openApp(dbPath));
  insertRows(app, 4);
  const e = await settles(replaced, 20_000, 'the generation event after the database was replaced');
  assert.equal(e.reason, 'database file replaced');
  assert.notEqual(e.generation, first.generation);
  assert.equal(rep.status().generation, e.generation);
  const pos = await rep.sync();
  assert.equal(pos.generation, e.generation);
  await rep.stop();
  assert.equal(events.length, 2);
  const out = await rebuildLikeLitestream(client, path.join(dir, 'rebuild'), e.generation);
  assert.deepEqual(rows(out), rows(dbPath));
  app.close();
});

test('checkpointInterval: an idle WAL gets PASSIVE checkpoints and no storage requests', async () => {
  const dir = await tempDir();
  const dbPath = path.join(dir, 'app.db');
  const client = new FileReplicaClient({ path: path.join(dir, 'replica') });
  const app = track(openApp(dbPath));
  const checkpointIntervalMs = 200;
  const rep = track(
    new Replicator(dbPath, { monitorInterval: 30, checkpointInterval: checkpointIntervalMs, replicas: [{ client, syncInterval: 30 }] }),
  );
  await rep.start();
  insertRows(app, 1);
  await rep.sync(); // the first snapshot (its checkpoint copies what is there so far)
  insertRows(app, 200, 1000); // ~50 pages that only the WAL holds
  const pos = await rep.sync();
  const dbSizeBefore = (await fs.stat(dbPath)).size;
  // One whole monitor pass after the upload before watching.
  await next(rep, 'sync');
  await next(rep, 'sync');

  const ops: ReplicaOperation[] = [];
  let passive = 0;
  const onOp = (e: { operation: ReplicaOperation }) => ops.push(e.operation);
  const onCheckpoint = (e: { mode: string }) => e.mode === 'PASSIVE' && passive++;
  rep.on('operation', onOp);
  rep.on('checkpoint', onCheckpoint);
  const t0 = Date.now();
  await until(() => ops.length > 0 || (Date.now() - t0 >= 8 * checkpointIntervalMs && passive >= 1), 20_000, 'an idle PASSIVE checkpoint');
  rep.off('operation', onOp);
  rep.off('checkpoint', onCheckpoint);
  assert.deepEqual(ops, [], `no storage requests over ${Date.now() - t0} ms idle`);
  // One copies every frame (the read lock is at the WAL's end); then there is nothing left to
  // copy, and an idle database checkpoints no more (each would reopen the checkpointer).
  assert.ok(
    passive >= 1 && passive <= 2,
    `${passive} PASSIVE checkpoints in ${Date.now() - t0} ms idle (interval ${checkpointIntervalMs} ms): one, not one per interval`,
  );
  assert.deepEqual(rep.pos, pos, 'no WAL restart, nothing new to ship');
  const dbSizeAfter = (await fs.stat(dbPath)).size;
  assert.ok(
    dbSizeAfter > dbSizeBefore + 40 * PAGE,
    `the checkpoint copied the WAL's pages into the database file (${dbSizeBefore} → ${dbSizeAfter} bytes)`,
  );

  insertRows(app, 1);
  let after = 0;
  rep.on('operation', () => after++);
  await rep.sync();
  assert.ok(after > 0, 'a write is uploaded');
  await rep.stop();
  app.close();
});

test('restore from the oldest snapshot retention kept equals the database', async () => {
  const dir = await tempDir();
  const dbPath = path.join(dir, 'app.db');
  const client = new FileReplicaClient({ path: path.join(dir, 'replica') });
  const app = track(openApp(dbPath));
  const rep = track(
    new Replicator(dbPath, {
      monitorInterval: 20,
      minCheckpointPageCount: 10,
      replicas: [{ client, syncInterval: 20, snapshotInterval: 300, retention: 1000, retentionCheckInterval: 100 }],
    }),
  );
  let deletes = 0;
  rep.on('operation', (e) => e.operation === 'DELETE' && deletes++);
  await rep.start();
  // Write until retention has deleted snapshots and WAL at least twice.
  const deadline = Date.now() + 20_000;
  while (deletes < 4) {
    if (Date.now() > deadline) throw new Error(`retention did not run (${deletes} deletes)`);
    insertRows(app, 3, 800);
    await new Promise((r) => setTimeout(r, 25));
  }
  const final = await rep.sync();
  await rep.stop();

  const gen = final.generation;
  assert.deepEqual(await client.generations(), [gen]);
  const snaps = (await client.snapshots(gen)).sort((a, b) => a.index - b.index);
  assert.ok(snaps.length >= 2, `several snapshots retained (${snaps.length})`);
  const oldest = snaps[0]!.index;
  assert.ok(oldest > 0, `retention deleted the older snapshots (oldest kept at index ${oldest})`);
  const segs = await client.walSegments(gen);
  assert.ok(
    segs.every((s) => s.index >= oldest),
    'no WAL below the oldest kept snapshot',
  );
  // Only the oldest kept snapshot remains: the restore must start there and replay all later WAL.
  for (const s of snaps.slice(1)) await client.deleteSnapshot(gen, s.index);
  const out = path.join(dir, 'restored', 'app.db');
  const result = await restore({ outputPath: out, replicas: [{ name: 'file', client }] });
  assert.equal(result.status, 'restored');
  assert.equal(result.snapshotIndex, oldest);
  // stop()'s final sync may ship a little more (a restart's first frame) than `final`.
  assert.ok(
    comparePos(result.restoredTo!, final) >= 0,
    `restored to ${JSON.stringify(result.restoredTo)}, at least ${JSON.stringify(final)}`,
  );
  const ids = (p: string) => (rows(p, 'SELECT id FROM t ORDER BY id') as Array<{ id: number }>).map((r) => r.id);
  assert.deepEqual(ids(out), ids(dbPath), 'the restored database has exactly the rows');
  assert.deepEqual(rows(out), rows(dbPath));
  app.close();
});
