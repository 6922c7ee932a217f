// A snapshot is the database file, labelled with a WAL index; restore replays that index from its
// start on top. The file may already hold frames a checkpoint copied (up to the pin's read
// mark), so the snapshot's point must be at or past them, and the replica must hold the WAL up
// to that point before the snapshot lands — else a kill -9 between the two uploads, or a pin
// that began on frames the last scan had not seen, restores a torn database (issue #13: the CI
// kill -9 test restored "database disk image is malformed").
import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import path from 'node:path';
import type { Readable } from 'node:stream';
import { test } from 'node:test';
import { comparePos, formatPos, type Pos, Replicator, type ReplicaClient, restore } from '@walship/core';
import { FileReplicaClient } from '@walship/file';
import { WalEngine } from '../src/db/engine.js';
import { silentLogger } from '../src/logger.js';
import { insertRows, openApp, tempDir } from './support/db.js';
import { integrityOk, rows } from './support/replica-check.js';

test("a snapshot's point covers every frame the database file can hold, even when the pin began after the last scan", async (t) => {
  const dir = await tempDir('walship-snappoint-');
  const dbPath = path.join(dir, 'app.db');
  const app = openApp(dbPath);
  insertRows(app, 50);
  const settings = {
    metaPath: path.join(dir, '.app.db-walship'),
    checkpointIntervalMs: 0,
    minCheckpointPageCount: 1000,
    maxCheckpointPageCount: 10_000,
    truncatePageCount: 0,
    busyTimeoutMs: 1000,
    logger: silentLogger,
  };
  const engine = new WalEngine(dbPath, settings, () => []);
  assert.ok(await engine.open());
  t.after(async () => {
    await engine.close({ clean: false });
    app.close();
    await fs.rm(dir, { recursive: true, force: true });
  });
  await engine.scan();
  // The application commits after the scan; the pin moves onto those frames (what scan() does
  // when another process commits between its read and its repin) and the application's
  // checkpoint copies them into the database file.
  insertRows(app, 30);
  assert.ok(engine.connections.repin());
  const r = (app.pragma('wal_checkpoint(PASSIVE)') as Array<{ log: number; checkpointed: number }>)[0]!;
  assert.equal(r.checkpointed, r.log, 'the file holds every frame, including the unscanned ones');
  const snapPos = await engine.withSnapshot(async ({ pos }) => pos);
  await engine.scan();
  const end = engine.pos;
  assert.equal(comparePos(snapPos, end), 0, `snapshot labelled ${formatPos(snapPos)}, but the file holds frames up to ${formatPos(end)}`);
});

test("a generation's first snapshot lands after the WAL it may contain: a replica cut right then restores", async () => {
  const dir = await tempDir('walship-snapfirst-');
  const dbPath = path.join(dir, 'app.db');
  const app = openApp(dbPath);
  insertRows(app, 200);
  // The file holds part of the WAL before replication starts (the application checkpointed).
  app.pragma('wal_checkpoint(PASSIVE)');
  insertRows(app, 20);
  const inner = new FileReplicaClient({ path: path.join(dir, 'replica') });
  const order: string[] = [];
  let cut: Promise<void> | undefined;
  let release!: () => void;
  const gate = new Promise<void>((r) => (release = r));
  let snapshotEntered!: () => void;
  const entered = new Promise<void>((r) => (snapshotEntered = r));
  const client: ReplicaClient = Object.create(inner, {
    writeWALSegment: {
      value: async (pos: Pos, body: Readable) => {
        const info = await inner.writeWALSegment(pos, body);
        order.push(`wal ${pos.index}/${pos.offset}`);
        return info;
      },
    },
    writeSnapshot: {
      value: async (generation: string, index: number, body: Readable) => {
        snapshotEntered();
        await gate;
        const info = await inner.writeSnapshot(generation, index, body);
        order.push(`snapshot ${index}`);
        // A kill -9 right after the snapshot lands: keep the replica as it is now.
        cut ??= fs.cp(path.join(dir, 'replica'), path.join(dir, 'cut'), { recursive: true });
        await cut;
        return info;
      },
    },
  });
  const rep = new Replicator(dbPath, { thread: 'inline', replicas: [{ client, syncInterval: 10 }] });
  await rep.start();
  let acked = false;
  const synced = rep.sync().then(() => (acked = true));
  await entered;
  // The WAL is on the replica, the snapshot not yet: nothing is restorable, nothing acknowledged.
  await new Promise((r) => setTimeout(r, 300));
  assert.deepEqual(order, ['wal 0/0'], 'the WAL went first');
  assert.equal(acked, false, 'sync() must not resolve before the generation has its snapshot');
  release();
  await synced;
  await rep.stop();
  app.close();
  assert.ok(order.length >= 2, `uploads: ${order.join(', ')}`);
  assert.match(order[0]!, /^wal 0\/0$/, `the generation's first object is its WAL from the start, not the snapshot: ${order.join(', ')}`);
  const out = path.join(dir, 'restored.db');
  await restore({ outputPath: out, replicas: [{ name: 'cut', client: new FileReplicaClient({ path: path.join(dir, 'cut') }) }] });
  assert.ok(integrityOk(out));
  assert.deepEqual(rows(out, 'SELECT COUNT(*) AS n FROM t'), [{ n: 220 }]);
});
