import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import path from 'node:path';
import type { Readable } from 'node:stream';
import { test } from 'node:test';
import { BackendError, type Pos, type ReplicaClient, Replicator } from '@walship/core';
import { calcWalSize } from '@walship/core/format';
import { FileReplicaClient } from '@walship/file';
import { insertRows, openApp, tempDir, until } from './support/db.js';
import { rebuildLikeLitestream, rows } from './support/replica-check.js';

/** A real file client behind an outage switch: while `down`, every call fails like a network error. */
class OutageClient implements ReplicaClient {
  down = true;
  readonly type = 'file';
  constructor(private readonly inner: ReplicaClient) {}
  #check(): void {
    if (this.down) throw new BackendError('connection refused (simulated outage)', { retryable: true });
  }
  async generations() {
    this.#check();
    return this.inner.generations();
  }
  async deleteGeneration(g: string) {
    this.#check();
    return this.inner.deleteGeneration(g);
  }
  async snapshots(g: string) {
    this.#check();
    return this.inner.snapshots(g);
  }
  async writeSnapshot(g: string, i: number, body: Readable) {
    this.#check();
    return this.inner.writeSnapshot(g, i, body);
  }
  async snapshotReader(g: string, i: number) {
    this.#check();
    return this.inner.snapshotReader(g, i);
  }
  async deleteSnapshot(g: string, i: number) {
    this.#check();
    return this.inner.deleteSnapshot(g, i);
  }
  async walSegments(g: string) {
    this.#check();
    return this.inner.walSegments(g);
  }
  async writeWALSegment(p: Pos, body: Readable) {
    this.#check();
    return this.inner.writeWALSegment(p, body);
  }
  async walSegmentReader(p: Pos) {
    this.#check();
    return this.inner.walSegmentReader(p);
  }
  async deleteWALSegments(ps: readonly Pos[]) {
    this.#check();
    return this.inner.deleteWALSegments(ps);
  }
}

async function spillFiles(metaPath: string): Promise<string[]> {
  const out: string[] = [];
  const walk = async (d: string) => {
    for (const e of await fs.readdir(d, { withFileTypes: true }).catch(() => [])) {
      const p = path.join(d, e.name);
      if (e.isDirectory()) await walk(p);
      else if (e.name.endsWith('.wal')) out.push(p);
    }
  };
  await walk(path.join(metaPath, 'generations'));
  return out;
}

test('one failing replica never stops the others, and catches up when it comes back', async () => {
  const dir = await tempDir();
  const dbPath = path.join(dir, 'app.db');
  const good = new FileReplicaClient({ path: path.join(dir, 'good') });
  const flaky = new OutageClient(new FileReplicaClient({ path: path.join(dir, 'flaky') }));
  const app = openApp(dbPath);
  const rep = new Replicator(dbPath, {
    monitorInterval: 30,
    minCheckpointPageCount: 20,
    maxCheckpointPageCount: 40,
    replicas: [
      { name: 'good', client: good, syncInterval: 30 },
      { name: 'flaky', client: flaky, syncInterval: 30 },
    ],
  });
  let errors = 0;
  rep.on('replica-error', (e) => e.replica === 'flaky' && errors++);
  await rep.start();
  for (let i = 0; i < 30; i++) {
    insertRows(app, 5, 500);
    await new Promise((r) => setTimeout(r, 20));
  }
  // Writes are over; give the monitor (30 ms) time to see the last commit before comparing.
  await new Promise((r) => setTimeout(r, 300));
  await until(
    () => {
      const s = rep.status();
      const g = s.replicas.find((r) => r.name === 'good')!;
      return g.pos.generation === s.pos.generation && g.pos.index === s.pos.index && g.pos.offset === s.pos.offset;
    },
    15_000,
    'good replica caught up',
  );
  const st = rep.status().replicas.find((r) => r.name === 'flaky')!;
  assert.ok(errors > 0, 'the outage was reported');
  assert.match(st.lastError ?? '', /simulated outage/);
  assert.equal(st.healthy, false);
  const goodCopy = await rebuildLikeLitestream(good, path.join(dir, 'rebuild-good'));
  assert.deepEqual(rows(goodCopy), rows(dbPath));

  flaky.down = false;
  await rep.sync({ timeout: 30_000 });
  const after = rep.status().replicas.find((r) => r.name === 'flaky')!;
  assert.equal(after.lastError, undefined);
  assert.equal(after.healthy, true);
  await rep.stop();
  const flakyCopy = await rebuildLikeLitestream(new FileReplicaClient({ path: path.join(dir, 'flaky') }), path.join(dir, 'rebuild-flaky'));
  assert.deepEqual(rows(flakyCopy), rows(dbPath));
  app.close();
});

test('kept WAL tails are pruned once every replica has them', async (t) => {
  const dir = await tempDir();
  const dbPath = path.join(dir, 'app.db');
  const metaPath = path.join(dir, 'meta');
  const fast = new FileReplicaClient({ path: path.join(dir, 'fast') });
  const slow = new FileReplicaClient({ path: path.join(dir, 'slow') });
  const app = openApp(dbPath);
  const rep = new Replicator(dbPath, {
    metaPath,
    monitorInterval: 20,
    minCheckpointPageCount: 10,
    maxCheckpointPageCount: 20,
    replicas: [
      { name: 'fast', client: fast, syncInterval: 20 },
      { name: 'slow', client: slow, syncInterval: 60_000 },
    ],
  });
  t.after(async () => {
    await rep.stop({ timeout: 2000 }).catch(() => {});
    app.close();
  });
  const snapshots = new Map<string, number>();
  rep.on('snapshot', (e) => snapshots.set(e.replica, (snapshots.get(e.replica) ?? 0) + 1));
  // A segment of an index the WAL has already left can only come from a kept tail.
  let slowFromKeptTails = 0;
  rep.on('replica-sync', (e) => {
    if (e.replica === 'slow' && e.pos.index < rep.pos.index) slowFromKeptTails++;
  });
  await rep.start();
  const start = await rep.sync();
  for (let i = 0; i < 30; i++) {
    insertRows(app, 4, 1000);
    await new Promise((r) => setTimeout(r, 20));
  }
  await until(async () => (await spillFiles(metaPath)).length > 0, 10_000, 'tails kept for the slow replica');
  // Once every replica has synced, the next controlled restart deletes every kept tail. (Under
  // load the monitor may restart the WAL in between, and the replicas then need that index's
  // tail until their next sync — hence the loop.)
  let restarts = 0;
  await until(
    async () => {
      await rep.sync();
      if (await rep.checkpoint()) restarts++;
      return (await spillFiles(metaPath)).length === 0;
    },
    20_000,
    'kept tails pruned after every replica synced',
  );
  assert.ok(restarts >= 1, 'a controlled restart happened');
  assert.ok(rep.pos.index > start.index, `the WAL was restarted (index ${start.index} → ${rep.pos.index})`);
  await rep.stop();
  assert.ok(slowFromKeptTails > 0, 'the slow replica got WAL of closed indexes from kept tails');
  assert.equal(snapshots.get('slow'), 1, 'the slow replica took no new snapshot');
  assert.equal((await slow.snapshots(start.generation)).length, 1);
  const out = await rebuildLikeLitestream(slow, path.join(dir, 'rebuild'));
  assert.deepEqual(rows(out), rows(dbPath));
  app.close();
});

test('with no replicas the WAL stays within minCheckpointPageCount and the meta directory stays empty', async (t) => {
  const dir = await tempDir();
  const dbPath = path.join(dir, 'app.db');
  const app = openApp(dbPath);
  const minPages = 50;
  const rep = new Replicator(dbPath, { monitorInterval: 20, minCheckpointPageCount: minPages, replicas: [] });
  t.after(async () => {
    await rep.stop({ timeout: 2000 }).catch(() => {});
    app.close();
  });
  let passes = 0;
  const ends = new Map<number, number>(); // WAL index → committed end seen by the monitor
  rep.on('sync', (e) => {
    passes++;
    ends.set(e.pos.index, Math.max(ends.get(e.pos.index) ?? 0, e.pos.offset));
  });
  await rep.start();
  const startIndex = rep.pos.index;
  // Each write is ~11 pages; after each, wait for two monitor passes, so at most a few writes land
  // between two checkpoint decisions however slowly the monitor runs. The WAL must restart once
  // it holds minCheckpointPageCount pages, and the restart truncates it to journal_size_limit.
  const pagesPerWrite = 12;
  const bound = calcWalSize(4096, minPages + 3 * pagesPerWrite);
  let maxWal = 0;
  for (let i = 0; i < 100; i++) {
    insertRows(app, 20, 2000);
    maxWal = Math.max(maxWal, (await fs.stat(`${dbPath}-wal`)).size);
    const seen = passes;
    await until(() => passes >= seen + 2, 20_000, 'two monitor passes');
  }
  await rep.sync();
  await rep.stop();
  const restarts = Math.max(...ends.keys()) - startIndex;
  const written = [...ends.values()].reduce((a, b) => a + b, 0);
  t.diagnostic(`largest -wal ${maxWal} bytes (bound ${bound}); ${written} bytes of WAL written; ${restarts} restarts`);
  assert.ok(written >= 8 * bound, `wrote ${written} bytes of WAL, ${Math.round(written / bound)}× the bound`);
  assert.ok(
    maxWal <= bound,
    `the WAL stayed within ${minPages} + ${3 * pagesPerWrite} pages: at most ${maxWal} bytes (bound ${bound}) after ${written} bytes of WAL writes`,
  );
  assert.ok(restarts >= 5, `the WAL was restarted ${restarts} times`);
  assert.deepEqual(await spillFiles(path.join(dir, '.app.db-walship')), []);
});

test('snapshot-interval takes snapshots; retention deletes old generations, snapshots and WAL but never what the newest snapshot needs', async (t) => {
  const dir = await tempDir();
  const dbPath = path.join(dir, 'app.db');
  const client = new FileReplicaClient({ path: path.join(dir, 'replica') });
  // An older generation on the same replica.
  let app = openApp(dbPath);
  let rep = new Replicator(dbPath, { monitorInterval: 20, replicas: [{ client, syncInterval: 20 }] });
  await rep.start();
  insertRows(app, 5);
  const old = await rep.sync();
  await rep.stop();
  app.close();
  for (const s of ['', '-wal', '-shm']) await fs.rm(dbPath + s, { force: true });

  app = openApp(dbPath);
  rep = new Replicator(dbPath, {
    monitorInterval: 20,
    minCheckpointPageCount: 10,
    replicas: [{ client, syncInterval: 20, snapshotInterval: 250, retention: 700, retentionCheckInterval: 150 }],
  });
  t.after(async () => {
    await rep.stop({ timeout: 2000 }).catch(() => {});
    app.close();
  });
  let snapshots = 0;
  let deletes = 0;
  rep.on('snapshot', () => snapshots++);
  rep.on('operation', (e) => e.operation === 'DELETE' && deletes++);
  await rep.start();
  // Write until the snapshot interval produced several snapshots (not for a fixed time).
  const deadline = Date.now() + 30_000;
  while (snapshots < 8) {
    if (Date.now() > deadline) throw new Error(`only ${snapshots} snapshots`);
    insertRows(app, 3, 800);
    await new Promise((r) => setTimeout(r, 25));
  }
  const now = await rep.sync();
  // Let a retention pass delete something after the last writes (a new snapshot is due every
  // 250 ms, so each pass has an expired one).
  const deletesBefore = deletes;
  await until(() => deletes > deletesBefore, 20_000, 'a retention pass after the last writes');
  await rep.sync();
  await rep.stop();
  assert.notEqual(now.generation, old.generation);
  assert.ok(snapshots >= 5, `snapshot-interval produced ${snapshots} snapshots`);
  assert.deepEqual(await client.generations(), [now.generation], 'old generation deleted');
  const snaps = (await client.snapshots(now.generation)).sort((a, b) => a.index - b.index);
  assert.ok(snaps.length >= 1 && snaps.length < snapshots, `old snapshots deleted (${snaps.length} of ${snapshots} left)`);
  const minIndex = snaps[0]!.index;
  const segs = await client.walSegments(now.generation);
  assert.ok(
    segs.every((s) => s.index >= minIndex),
    'no WAL below the oldest kept snapshot',
  );
  assert.ok(
    segs.some((s) => s.index === minIndex),
    'the oldest kept snapshot still has its WAL',
  );
  const out = await rebuildLikeLitestream(client, path.join(dir, 'rebuild'));
  assert.deepEqual(rows(out), rows(dbPath));
  app.close();
});

test('a kept WAL tail cut short (a power loss before its fsync) costs a new snapshot, not a stuck replica', async () => {
  const dir = await tempDir();
  const dbPath = path.join(dir, 'app.db');
  const metaPath = path.join(dir, 'meta');
  const flaky = new OutageClient(new FileReplicaClient({ path: path.join(dir, 'flaky') }));
  flaky.down = false;
  const app = openApp(dbPath);
  const opts = {
    metaPath,
    monitorInterval: 20,
    minCheckpointPageCount: 10_000,
    replicas: [{ name: 'flaky', client: flaky, syncInterval: 20 }],
  };
  const rep = new Replicator(dbPath, opts);
  await rep.start();
  insertRows(app, 10, 500);
  await rep.sync();
  // The replica goes away; the WAL is restarted, so its unsent tail is kept in the meta dir.
  flaky.down = true;
  insertRows(app, 40, 500);
  await until(async () => (await rep.checkpoint()) && (await spillFiles(metaPath)).length > 0, 10_000, 'a kept tail');
  await rep.stop({ timeout: 500 }).catch(() => {});
  const [tail] = await spillFiles(metaPath);
  const size = (await fs.stat(tail!)).size;
  await fs.truncate(tail!, Math.floor(size / 2));
  // Back up, with the tail short: the replica takes a new snapshot and holds every row.
  flaky.down = false;
  const rep2 = new Replicator(dbPath, opts);
  let snapshots = 0;
  rep2.on('snapshot', () => snapshots++);
  await rep2.start();
  insertRows(app, 5, 500);
  await rep2.sync({ timeout: 20_000 });
  await rep2.stop();
  assert.equal(snapshots, 1, 'one new snapshot instead of the lost tail');
  const out = await rebuildLikeLitestream(new FileReplicaClient({ path: path.join(dir, 'flaky') }), path.join(dir, 'rebuild'));
  assert.deepEqual(rows(out), rows(dbPath));
  app.close();
});

test('a replica slower than the writer does not hold off forced restarts: the WAL stays bounded while its uploads run', async () => {
  const dir = await tempDir();
  const dbPath = path.join(dir, 'app.db');
  const inner = new FileReplicaClient({ path: path.join(dir, 'slow') });
  let inflight = 0;
  // Every upload takes 300 ms: under continuous writes one is always in flight.
  const slow: ReplicaClient = Object.create(inner, {
    writeWALSegment: {
      value: async (p: Pos, body: Readable) => {
        inflight++;
        try {
          await new Promise((r) => setTimeout(r, 300));
          return await inner.writeWALSegment(p, body);
        } finally {
          inflight--;
        }
      },
    },
  });
  const app = openApp(dbPath);
  const maxPages = 60;
  const rep = new Replicator(dbPath, {
    monitorInterval: 20,
    minCheckpointPageCount: 20,
    maxCheckpointPageCount: maxPages,
    replicas: [{ client: slow, syncInterval: 20 }],
  });
  let restartsDuringUploads = 0;
  rep.on('checkpoint', (e) => {
    if (e.restarted && inflight > 0) restartsDuringUploads++;
  });
  await rep.start();
  let maxWal = 0;
  let written = 0;
  for (let i = 0; i < 80; i++) {
    insertRows(app, 20, 1000);
    written += 20 * 1000;
    await new Promise((r) => setTimeout(r, 25));
    maxWal = Math.max(maxWal, (await fs.stat(`${dbPath}-wal`)).size);
  }
  const pageBytes = 4096 + 24;
  assert.ok(restartsDuringUploads >= 1, 'the WAL was restarted while an upload was in flight');
  assert.ok(
    maxWal <= 3 * maxPages * pageBytes,
    `largest -wal ${maxWal} bytes, bound ${3 * maxPages * pageBytes} (${written} bytes of rows written)`,
  );
  await rep.sync({ timeout: 60_000 });
  await rep.stop();
  const out = await rebuildLikeLitestream(inner, path.join(dir, 'rebuild'));
  assert.deepEqual(rows(out), rows(dbPath));
  app.close();
});
