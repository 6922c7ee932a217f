/**
 * restore's `offset` option: with `index`, the restore stops at a byte offset inside that WAL
 * index (a commit boundary), also in the middle of a WAL segment object.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { type Pos, Replicator, restore, RestoreError } from '@walship/core';
import { FileReplicaClient } from '@walship/file';
import Database from 'better-sqlite3';
import { insertRows, openApp, tempDir } from './support/db.js';
import { readObject, rows, walByIndex } from './support/replica-check.js';

let dir: string;
let client: FileReplicaClient;
/** WAL offsets right after each app transaction (index `index`), with the row count then. */
const commits: { offset: number; rows: number }[] = [];
let index = -1;
let generation = '';
let end: Pos;
let app: Database.Database;
let n = 0;
const out = () => path.join(dir, 'out', `r${n++}.db`);

before(async () => {
  dir = await tempDir('walship-restore-offset-');
  const dbPath = path.join(dir, 'app.db');
  client = new FileReplicaClient({ path: path.join(dir, 'replica') });
  app = openApp(dbPath);
  insertRows(app, 3);
  const rep = new Replicator(dbPath, {
    monitorInterval: 50,
    minCheckpointPageCount: 100_000,
    maxCheckpointPageCount: 0,
    checkpointInterval: 0,
    replicas: [{ client, syncInterval: 50 }],
  });
  await rep.start();
  try {
    const first = await rep.sync();
    index = first.index;
    generation = first.generation;
    // Several commits, then one sync: one WAL segment object holding them all (the replicator
    // uploads at most every syncInterval; the commits land within a few milliseconds).
    let count = 3;
    for (let i = 0; i < 6; i++) {
      insertRows(app, 4 + i, 300);
      count += 4 + i;
      commits.push({ offset: fs.statSync(`${dbPath}-wal`).size, rows: count });
    }
    end = await rep.sync();
  } finally {
    await rep.stop();
  }
  assert.equal(end.index, index, 'no WAL restart meanwhile');
  assert.equal(end.offset, commits[commits.length - 1]!.offset);
});

after(() => {
  app?.close();
  if (dir) fs.rmSync(dir, { recursive: true, force: true });
});

test('offset restores exactly to each commit boundary of an index, also inside a segment object', async () => {
  const segments = (await client.walSegments(generation)).filter((s) => s.index === index);
  const starts = new Set(segments.map((s) => s.offset));
  // At least one boundary lies strictly inside a stored segment object.
  assert.ok(
    commits.some((c) => !starts.has(c.offset)),
    `segments start at ${[...starts].join(',')}; commits end at ${commits.map((c) => c.offset).join(',')}`,
  );
  for (const c of commits) {
    const o = out();
    const r = await restore({ outputPath: o, replicas: [{ name: 'file', client }], index, offset: c.offset });
    assert.equal(r.status, 'restored');
    assert.deepEqual(r.restoredTo, { generation, index, offset: c.offset });
    const got = rows(o) as { id: number }[];
    assert.equal(got.length, c.rows, `rows at offset ${c.offset}`);
    // Rows after the boundary are absent: the ids are exactly 1..rows.
    assert.equal(got[got.length - 1]!.id, c.rows);
  }
  // Without offset: the whole index.
  const whole = await restore({ outputPath: out(), replicas: [{ name: 'file', client }], index });
  assert.deepEqual(whole.restoredTo, end);
});

test('each offset restore holds the same rows as SQLite reading the replica WAL cut at that offset', async () => {
  // Independent of walship's restore: the snapshot and the replica's WAL bytes up to the offset,
  // opened by SQLite (its WAL recovery reads exactly the commits before the cut).
  const snaps = (await client.snapshots(generation)).filter((s) => s.index <= index).sort((a, b) => b.index - a.index);
  const snapshot = await readObject(await client.snapshotReader(generation, snaps[0]!.index));
  const wal = (await walByIndex(client, generation)).get(index)!;
  assert.equal(wal.length, end.offset);
  for (const c of commits) {
    const ref = path.join(dir, 'ref', `at-${c.offset}.db`);
    fs.mkdirSync(path.dirname(ref), { recursive: true });
    fs.writeFileSync(ref, snapshot);
    fs.writeFileSync(`${ref}-wal`, wal.subarray(0, c.offset));
    const o = out();
    await restore({ outputPath: o, replicas: [{ name: 'file', client }], index, offset: c.offset });
    const db = new Database(ref);
    const want = db.prepare('SELECT * FROM t ORDER BY id').all();
    db.close();
    assert.equal(want.length, c.rows);
    assert.deepEqual(rows(o), want, `offset ${c.offset}`);
  }
});

test('an offset that is not a commit boundary is damage, never a torn database', async () => {
  const c = commits[2]!;
  await assert.rejects(
    restore({ outputPath: out(), replicas: [{ name: 'file', client }], index, offset: c.offset + 100 }),
    (err: unknown) => err instanceof RestoreError && err.code === 'WALSHIP_RESTORE_DAMAGED',
  );
  // With `partial`, it stops at the last whole commit before the offset.
  const o = out();
  const r = await restore({ outputPath: o, replicas: [{ name: 'file', client }], index, offset: c.offset + 100, partial: true });
  assert.deepEqual(r.restoredTo, { generation, index, offset: c.offset });
  assert.equal(rows(o).length, c.rows);
});

test('an offset past the end of the index restores to its end', async () => {
  const r = await restore({ outputPath: out(), replicas: [{ name: 'file', client }], index, offset: end.offset + 4096 * 10 });
  assert.deepEqual(r.restoredTo, end);
});

test('offset is validated: it needs index, and a non-negative integer', async () => {
  const invalid = (re: RegExp) => (err: unknown) =>
    err instanceof RestoreError && err.code === 'WALSHIP_RESTORE_INVALID' && re.test(err.message);
  await assert.rejects(
    restore({ outputPath: out(), replicas: [{ name: 'file', client }], offset: commits[0]!.offset }),
    invalid(/cannot specify offset without index/),
  );
  await assert.rejects(
    restore({ outputPath: out(), replicas: [{ name: 'file', client }], index, offset: -1 }),
    invalid(/invalid offset -1/),
  );
  await assert.rejects(
    restore({ outputPath: out(), replicas: [{ name: 'file', client }], index, offset: 1.5 }),
    invalid(/invalid offset 1\.5/),
  );
  await assert.rejects(
    restore({ outputPath: out(), replicas: [{ name: 'file', client }], index, offset: 32, timestamp: new Date() }),
    (err: unknown) => err instanceof RestoreError && err.code === 'WALSHIP_RESTORE_INVALID',
  );
});
