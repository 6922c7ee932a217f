// The pin (walship's long-lived read transaction) must never leave the WAL unprotected, not even
// between two statements: a replicator frozen there (SIGSTOP, a GC pause) would let the
// application checkpoint and restart the WAL, and continuity would be lost (issue #13, the
// second generation the SIGSTOP test saw). These tests interleave an application connection
// with DbConnections' steps one statement at a time, deterministically.
import assert from 'node:assert/strict';
import fsSync from 'node:fs';
import fs from 'node:fs/promises';
import path from 'node:path';
import { test } from 'node:test';
import type Database from 'better-sqlite3';
import { DbConnections } from '../src/db/connections.js';
import { insertRows, openApp, tempDir } from './support/db.js';

/** The WAL header's salts (bytes 16–23): what a restart changes. */
const walHeader = (dbPath: string): string => fsSync.readFileSync(`${dbPath}-wal`).subarray(16, 24).toString('hex');

/** What an application with autocheckpoint does: copy everything it can, then write again. */
function appCheckpointsAndWrites(app: Database.Database): { busy: number; log: number; checkpointed: number } {
  const r = (app.pragma('wal_checkpoint(PASSIVE)') as Array<{ busy: number; log: number; checkpointed: number }>)[0]!;
  insertRows(app, 1);
  return r;
}

async function setup(t: {
  after: (fn: () => Promise<void>) => void;
}): Promise<{ dbPath: string; app: Database.Database; conns: DbConnections }> {
  const dir = await tempDir('walship-pin-');
  const dbPath = path.join(dir, 'app.db');
  const app = openApp(dbPath);
  insertRows(app, 50);
  const conns = await DbConnections.open(dbPath, { busyTimeoutMs: 1000, journalSizeLimit: 0 });
  t.after(async () => {
    await conns.close();
    app.close();
    await fs.rm(dir, { recursive: true, force: true });
  });
  return { dbPath, app, conns };
}

test('a restarting write keeps the WAL pinned until the pin moves onto the new WAL', async (t) => {
  const { dbPath, app, conns } = await setup(t);
  conns.pinRead();
  insertRows(app, 20);
  // walship's controlled restart: move the pin to the end, copy everything, re-take the lock.
  assert.ok(conns.repin());
  const r = conns.checkpoint('PASSIVE');
  assert.equal(r.checkpointed, r.log, 'everything copied');
  const before = walHeader(dbPath);
  assert.ok(conns.tryLockWrites(100));
  conns.commitRestartingWrite();
  const restarted = walHeader(dbPath);
  assert.notEqual(restarted, before, 'our write restarted the WAL');
  // Frozen here, before the pin moved: the application copies what it can and writes on.
  appCheckpointsAndWrites(app);
  appCheckpointsAndWrites(app);
  assert.equal(walHeader(dbPath), restarted, 'nobody else could restart the WAL before the pin moved');
  assert.ok(conns.pinned);
  // After the pin moved onto the new WAL it still holds it.
  assert.ok(conns.repin());
  appCheckpointsAndWrites(app);
  appCheckpointsAndWrites(app);
  assert.equal(walHeader(dbPath), restarted, 'the moved pin holds the WAL');
  // Control: without any pin the application restarts the WAL (so the checks above can fail).
  conns.unpin();
  const r2 = appCheckpointsAndWrites(app);
  assert.equal(r2.checkpointed, r2.log);
  appCheckpointsAndWrites(app);
  assert.notEqual(walHeader(dbPath), restarted, 'unpinned, the application restarts the WAL');
});

test('a moved pin keeps holding the WAL, and follows the newest commits', async (t) => {
  const { dbPath, app, conns } = await setup(t);
  conns.pinRead();
  for (let i = 0; i < 20; i++) {
    insertRows(app, 5);
    const header = walHeader(dbPath);
    assert.ok(conns.repin(), `round ${i}: the pin moved`);
    // Whatever the application does now, the WAL stays.
    appCheckpointsAndWrites(app);
    appCheckpointsAndWrites(app);
    assert.equal(walHeader(dbPath), header, `round ${i}: the WAL was not restarted`);
  }
  // A pin that moved sees the newest commits (it is not stuck on an old snapshot).
  const seenByApp = Number(app.prepare('SELECT COUNT(*) FROM t').pluck().get());
  conns.repin();
  const r = conns.checkpoint('PASSIVE');
  assert.equal(r.checkpointed, r.log, `the pin allows copying every frame (${seenByApp} rows)`);
});

test('shed() keeps only the pin: the WAL stays pinned, and the closed connections reopen on demand', async (t) => {
  const { dbPath, app, conns } = await setup(t);
  conns.pinRead();
  insertRows(app, 20);
  assert.ok(conns.repin(), 'pin moved (opens the second pin connection)');
  conns.checkpoint('PASSIVE');
  assert.ok(conns.openCount >= 3, `writer, checkpointer and two pins open before shedding (${conns.openCount})`);
  const open = conns.openCount;
  assert.equal(conns.shed(), open - 1, 'shed closes every connection but the pin');
  assert.equal(conns.openCount, 1, 'only the pin connection left');
  assert.ok(conns.pinned, 'still pinned');
  // The application copies what it can and writes on: with the pin still held, nobody restarts.
  insertRows(app, 5);
  const before = walHeader(dbPath);
  appCheckpointsAndWrites(app);
  appCheckpointsAndWrites(app);
  assert.equal(walHeader(dbPath), before, 'the remaining pin kept the WAL from being restarted');
  // walship's own restart still works, reopening writer, checkpointer and the other pin.
  assert.ok(conns.repin());
  assert.ok(conns.tryLockWrites(100), 'write lock taken on a reopened writer');
  const r = conns.checkpoint('PASSIVE');
  assert.equal(r.checkpointed, r.log, 'everything copied');
  conns.unlockWrites();
  assert.ok(conns.tryLockWrites(100));
  conns.commitRestartingWrite();
  assert.notEqual(walHeader(dbPath), before, 'our write restarted the WAL');
  assert.ok(conns.pinned, 'bridged onto the new WAL');
});

test('shed() never closes a connection inside a transaction (held write lock, streaming snapshot)', async (t) => {
  const { conns } = await setup(t);
  conns.pinRead();
  assert.ok(conns.tryLockWrites(100));
  const snap = conns.snapshotReader;
  snap.exec('BEGIN');
  snap.prepare('SELECT COUNT(1) FROM t').get();
  conns.checkpoint('PASSIVE');
  conns.shed();
  assert.equal(conns.openCount, 3, 'pin, writer (write lock) and snapshot reader kept; checkpointer closed');
  assert.ok(conns.writer.inTransaction, 'the write lock is still held');
  assert.ok(snap.open && snap.inTransaction, 'the snapshot read transaction is still open');
  snap.exec('COMMIT');
  conns.unlockWrites();
  conns.shed();
  assert.equal(conns.openCount, 1, 'idle again: only the pin');
});
