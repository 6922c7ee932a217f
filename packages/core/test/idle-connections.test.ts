// An idle database keeps one SQLite connection (#16: a thousand idle databases must not hold six
// thousand): after SHED_IDLE_MS without a change the replicator closes all but the pin's, and
// replication goes on in the same generation when writes resume.
import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import path from 'node:path';
import { test } from 'node:test';
import { Replicator, restore, type ReplicatorOptions } from '@walship/core';
import { FileReplicaClient } from '@walship/file';
import { SHED_IDLE_MS } from '../src/db/engine.js';
import { insertRows, openApp, tempDir, until } from './support/db.js';

/** Descriptors this process has open on `file` (every SQLite connection that read a WAL-mode database holds one on its `-wal`). */
async function fdsOn(file: string): Promise<number> {
  let n = 0;
  for (const fd of await fs.readdir('/proc/self/fd')) {
    const target = await fs.readlink(`/proc/self/fd/${fd}`).catch(() => '');
    if (target === file) n++;
  }
  return n;
}

for (const thread of ['worker', 'inline'] as const) {
  test(`[${thread}] an idle database closes every connection but the pin's, and replicates on when writes resume`, {
    timeout: 120_000,
  }, async (t) => {
    const dir = await fs.realpath(await tempDir());
    const dbPath = path.join(dir, 'app.db');
    const walPath = `${dbPath}-wal`;
    const replicaDir = path.join(dir, 'replica');
    const app = openApp(dbPath, { autocheckpoint: 1000 });
    insertRows(app, 50);
    const appFds = await fdsOn(walPath);
    const opts = { monitorInterval: 100, thread, replicas: [{ client: new FileReplicaClient({ path: replicaDir }), syncInterval: 100 }] };
    const rep = new Replicator(dbPath, opts as ReplicatorOptions);
    const generations: string[] = [];
    rep.on('generation', (e: { generation: string }) => generations.push(e.generation));
    t.after(async () => {
      await rep.stop({ timeout: 5000 }).catch(() => {});
      app.close();
      await fs.rm(dir, { recursive: true, force: true });
    });
    await rep.start();
    insertRows(app, 10);
    const committedAt = Date.now();
    const first = await rep.sync();
    generations.length = 0;
    const busy = (await fdsOn(walPath)) - appFds;
    // The -wal descriptors walship holds: its WAL reader, and one per SQLite connection that read.
    assert.ok(busy >= 3, `walship holds ${busy} descriptors on the -wal while working (its reader and at least two connections)`);
    await until(
      async () => (await fdsOn(walPath)) - appFds <= 2,
      SHED_IDLE_MS + 15_000,
      'the idle database to close its spare connections',
    );
    const shedAfter = Date.now() - committedAt;
    t.diagnostic(`${busy} -wal descriptors while working, 2 (reader + pin) ${shedAfter} ms after the last commit`);
    assert.ok(
      shedAfter >= SHED_IDLE_MS - 50,
      `connections closed only once the database was idle for ${SHED_IDLE_MS} ms (${shedAfter} ms after the last commit)`,
    );

    // The pin still holds the WAL: the application's checkpoints cannot restart it behind walship.
    const header = async () => (await fs.readFile(walPath)).subarray(16, 24).toString('hex');
    const before = await header();
    app.pragma('wal_checkpoint(PASSIVE)');
    insertRows(app, 5);
    app.pragma('wal_checkpoint(PASSIVE)');
    insertRows(app, 5);
    assert.equal(await header(), before, 'the WAL was not restarted while walship was idle');

    // Writes resume: shipped in the same generation; walship's own checkpoint reopens what it needs.
    await rep.sync();
    assert.equal(await rep.checkpoint(), true, 'walship restarted the WAL after shedding');
    insertRows(app, 7);
    const pos = await rep.sync();
    assert.deepEqual(generations, [], 'no new generation');
    assert.equal(pos.generation, first.generation, 'the same generation throughout');
    const out = path.join(dir, 'restored.db');
    await restore({ outputPath: out, replicas: [{ name: 'r', client: new FileReplicaClient({ path: replicaDir }) }] });
    const count = (db: string) => {
      const d = openApp(db);
      try {
        return (d.prepare('SELECT COUNT(*) AS n FROM t').get() as { n: number }).n;
      } finally {
        d.close();
      }
    };
    assert.equal(count(out), 77, 'every row restored');
    assert.equal(count(out), (app.prepare('SELECT COUNT(*) AS n FROM t').get() as { n: number }).n, 'as many as the local database');
  });
}
