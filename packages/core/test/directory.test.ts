/**
 * Directory replication: a real directory of real SQLite databases, replicated to file
 * replicas, restored from each tenant's own replica root.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import Database from 'better-sqlite3';
import { ConfigError, DirectoryReplicator, type DirectoryReplicatorEvents, type ReplicaClient, restore } from '@walship/core';
import { FileReplicaClient } from '@walship/file';
import { insertRows, openApp, tempDir, until } from './support/db.js';
import { rows } from './support/replica-check.js';

/** Records every event of a directory replicator. */
function record(dir: DirectoryReplicator): Array<{ name: keyof DirectoryReplicatorEvents; relPath?: string; reason?: string }> {
  const seen: Array<{ name: keyof DirectoryReplicatorEvents; relPath?: string; reason?: string }> = [];
  for (const name of ['database-added', 'database-removed', 'database-skipped', 'database-error', 'scan-error'] as const) {
    dir.on(name, (e: { relPath?: string; reason?: string }) =>
      seen.push({ name, relPath: e.relPath, ...(e.reason ? { reason: e.reason } : {}) }),
    );
  }
  return seen;
}

function makeDb(file: string, n: number): void {
  fs.mkdirSync(path.dirname(file), { recursive: true });
  const db = openApp(file);
  insertRows(db, n);
  db.close();
}

async function restoredRows(backup: string, relPath: string, out: string): Promise<unknown[]> {
  await restore({ outputPath: out, replicas: [{ name: 'file', client: new FileReplicaClient({ path: path.join(backup, relPath) }) }] });
  return rows(out);
}

test('scan once: each matching database gets its own replica under <replica>/<relative path>; other files are skipped once', async () => {
  const root = await tempDir();
  const dir = path.join(root, 'tenants');
  const backup = path.join(root, 'backup');
  makeDb(path.join(dir, 'a.db'), 3);
  makeDb(path.join(dir, 'b.db'), 5);
  makeDb(path.join(dir, 'sub', 'c.db'), 7); // not replicated without recursive
  makeDb(path.join(dir, 'other.sqlite'), 1); // does not match the pattern
  fs.writeFileSync(path.join(dir, 'notes.db'), 'plain text, not a database'.repeat(10));
  const d = new DirectoryReplicator(dir, { pattern: '*.db', replicas: [{ client: new FileReplicaClient({ path: backup }) }] });
  const seen = record(d);
  await d.start();
  try {
    assert.deepEqual(
      d
        .databases()
        .map((x) => x.relPath)
        .sort(),
      ['a.db', 'b.db'],
    );
    assert.deepEqual(
      seen.filter((e) => e.name === 'database-skipped'),
      [{ name: 'database-skipped', relPath: 'notes.db', reason: 'not a SQLite database' }],
    );
    await d.sync();
    await d.rescan(); // an unchanged non-database is not reported again
    assert.equal(seen.filter((e) => e.name === 'database-skipped').length, 1);
    assert.equal(fs.existsSync(path.join(backup, 'sub')), false);
    assert.equal(fs.existsSync(path.join(backup, 'other.sqlite')), false);
    assert.equal(fs.existsSync(path.join(backup, 'notes.db')), false);
    assert.equal(fs.existsSync(path.join(dir, '.notes.db-walship')), false, 'nothing is written beside a file that is not a database');
    const status = d.status();
    assert.equal(status.watching, false);
    assert.deepEqual(
      status.skipped.map((s) => s.relPath),
      ['notes.db'],
    );
    assert.ok(
      status.databases.every((x) => x.state === 'running'),
      JSON.stringify(status.databases.map((x) => x.state)),
    );
  } finally {
    await d.stop();
  }
  assert.equal((await restoredRows(backup, 'a.db', path.join(root, 'r', 'a.db'))).length, 3);
  assert.equal((await restoredRows(backup, 'b.db', path.join(root, 'r', 'b.db'))).length, 5);
});

test('watch + recursive: databases created later (also in new subdirectories) are replicated within 2 s; deleted ones stop, their replicas kept', async () => {
  const root = await tempDir();
  const dir = path.join(root, 'tenants');
  const backup = path.join(root, 'backup');
  makeDb(path.join(dir, 'eu', 'one.db'), 2);
  const d = new DirectoryReplicator(dir, {
    pattern: '*.db',
    recursive: true,
    watch: true,
    replicas: [{ client: new FileReplicaClient({ path: backup }) }],
  });
  const seen = record(d);
  await d.start();
  try {
    assert.deepEqual(
      d.databases().map((x) => x.relPath),
      ['eu/one.db'],
    );

    // A new database in the root.
    let t0 = Date.now();
    makeDb(path.join(dir, 'two.db'), 4);
    await until(() => d.replicator('two.db') !== undefined, 5_000, 'two.db replicated');
    const addedAfter = Date.now() - t0;
    assert.ok(addedAfter < 2_000, `two.db picked up after ${addedAfter} ms (target < 2 s)`);
    await d.replicator('two.db')!.sync();

    // A new database in a subdirectory created after start (its directory is watched from then on).
    t0 = Date.now();
    makeDb(path.join(dir, 'us', 'deep', 'three.db'), 6);
    await until(() => d.replicator('us/deep/three.db') !== undefined, 5_000, 'us/deep/three.db replicated');
    assert.ok(Date.now() - t0 < 2_000, `us/deep/three.db picked up after ${Date.now() - t0} ms`);
    await d.sync();

    // A file created empty (as an application opening a new database) waits silently until it holds a database.
    const pendingPath = path.join(dir, 'four.db');
    fs.writeFileSync(pendingPath, '');
    await new Promise((r) => setTimeout(r, 1_200));
    assert.equal(d.replicator('four.db'), undefined);
    assert.equal(seen.filter((e) => e.relPath === 'four.db').length, 0, 'an empty file is neither skipped nor failed');
    const app = openApp(pendingPath);
    insertRows(app, 1);
    await until(() => d.replicator('four.db') !== undefined, 5_000, 'four.db replicated once it is a database');
    await d.replicator('four.db')!.sync();
    app.close();

    // A non-database that matches is reported once, also while watching.
    fs.writeFileSync(path.join(dir, 'junk.db'), 'x'.repeat(500));
    await until(() => seen.some((e) => e.name === 'database-skipped' && e.relPath === 'junk.db'), 5_000, 'junk.db skipped');

    // Deleting a database stops its replication; the replica stays.
    t0 = Date.now();
    for (const suffix of ['', '-wal', '-shm']) fs.rmSync(path.join(dir, `two.db${suffix}`), { force: true });
    await until(
      () => seen.some((e) => e.name === 'database-removed' && e.relPath === 'two.db' && e.reason === 'deleted'),
      5_000,
      'two.db removed',
    );
    assert.ok(Date.now() - t0 < 2_500, `two.db removed after ${Date.now() - t0} ms (target < 2 s plus the stop)`);
    assert.equal(d.replicator('two.db'), undefined);
    if (process.platform === 'linux') {
      // Its descriptors (the engine's and the probe's, all in this process) are closed: the space is freed.
      const open = fs.readdirSync('/proc/self/fd').map((fd) => {
        try {
          return fs.readlinkSync(`/proc/self/fd/${fd}`);
        } catch {
          return '';
        }
      });
      const leftover = open.filter((l) => l.startsWith(path.join(dir, 'two.db')) && l.endsWith('(deleted)'));
      assert.deepEqual(leftover, [], 'no descriptor keeps the deleted database alive');
    }
    assert.equal(seen.filter((e) => e.name === 'database-skipped' && e.relPath === 'junk.db').length, 1);
    assert.deepEqual(
      d
        .databases()
        .map((x) => x.relPath)
        .sort(),
      ['eu/one.db', 'four.db', 'us/deep/three.db'],
    );
    assert.equal(seen.filter((e) => e.name === 'database-error').length, 0, JSON.stringify(seen));
  } finally {
    await d.stop();
  }
  assert.equal(
    (await restoredRows(backup, 'two.db', path.join(root, 'r', 'two.db'))).length,
    4,
    'the deleted database restores from its kept replica',
  );
  assert.equal((await restoredRows(backup, 'us/deep/three.db', path.join(root, 'r', 'three.db'))).length, 6);
  assert.equal((await restoredRows(backup, 'four.db', path.join(root, 'r', 'four.db'))).length, 1);
  assert.equal((await restoredRows(backup, 'eu/one.db', path.join(root, 'r', 'one.db'))).length, 2);
});

test('concurrency: snapshots across the directory never exceed the limit, and every database still gets one', async () => {
  const root = await tempDir();
  const dir = path.join(root, 'tenants');
  const backup = path.join(root, 'backup');
  const N = 12;
  for (let i = 0; i < N; i++) makeDb(path.join(dir, `t${i}.db`), 50 + i);
  let active = 0;
  let most = 0;
  let snapshots = 0;
  const counting = (inner: ReplicaClient): ReplicaClient =>
    new Proxy(inner, {
      get(target, prop, receiver) {
        if (prop === 'writeSnapshot') {
          return async (...args: Parameters<ReplicaClient['writeSnapshot']>) => {
            active++;
            most = Math.max(most, active);
            try {
              await new Promise((r) => setTimeout(r, 30)); // long enough for overlaps to show
              return await target.writeSnapshot(...args);
            } finally {
              active--;
              snapshots++;
            }
          };
        }
        const v = Reflect.get(target, prop, receiver);
        return typeof v === 'function' ? v.bind(target) : v;
      },
    });
  const d = new DirectoryReplicator(dir, {
    pattern: '*.db',
    concurrency: { snapshots: 1, starting: 4 },
    replicas: (db) => [{ client: counting(new FileReplicaClient({ path: path.join(backup, db.relPath) })) }],
  });
  await d.start();
  try {
    await d.sync({ timeout: 60_000 });
  } finally {
    await d.stop();
  }
  assert.equal(snapshots, N, 'one snapshot per database');
  assert.equal(most, 1, `at most one snapshot at a time across the directory (saw ${most})`);
  for (let i = 0; i < N; i++) assert.equal((await restoredRows(backup, `t${i}.db`, path.join(root, 'r', `t${i}.db`))).length, 50 + i);
});

test('a database in rollback-journal mode is switched to WAL mode and replicated; added reports walMode false', async () => {
  const root = await tempDir();
  const dir = path.join(root, 'tenants');
  fs.mkdirSync(dir);
  const db = new Database(path.join(dir, 'legacy.db'));
  db.exec('CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT); INSERT INTO t (v) VALUES (1), (2)');
  db.close();
  const d = new DirectoryReplicator(dir, {
    pattern: '*.db',
    replicas: [{ client: new FileReplicaClient({ path: path.join(root, 'backup') }) }],
  });
  const added: boolean[] = [];
  d.on('database-added', (e) => added.push(e.walMode));
  await d.start();
  await d.sync();
  await d.stop();
  assert.deepEqual(added, [false]);
  assert.equal((await restoredRows(path.join(root, 'backup'), 'legacy.db', path.join(root, 'r.db'))).length, 2);
});

test('bad options and a missing directory fail with one line naming the fix', async () => {
  const root = await tempDir();
  const client = new FileReplicaClient({ path: path.join(root, 'b') });
  assert.throws(
    () => new DirectoryReplicator(root, { replicas: [{ client }] } as never),
    (e: unknown) => e instanceof ConfigError && /pattern required.*pattern: "\*\.db"/.test(e.message),
  );
  assert.throws(
    () => new DirectoryReplicator(root, { pattern: 'a/*.db', replicas: [{ client }] }),
    (e: unknown) => e instanceof ConfigError && /cannot hold "\/".*recursive: true/.test(e.message),
  );
  const unscoped = { ...client, type: 'custom', scoped: undefined } as unknown as ReplicaClient;
  assert.throws(
    () => new DirectoryReplicator(root, { pattern: '*.db', replicas: [{ client: unscoped }] }),
    (e: unknown) => e instanceof ConfigError && /"custom" cannot be scoped.*pass replicas as a function/.test(e.message),
  );
  assert.throws(() => new DirectoryReplicator(root, { pattern: '*.db', monitorInterval: 'soon', replicas: [{ client }] }), ConfigError);
  const missing = new DirectoryReplicator(path.join(root, 'nope'), { pattern: '*.db', replicas: [{ client }] });
  await assert.rejects(
    missing.start(),
    (e: unknown) => e instanceof ConfigError && /nope: it does not exist: create it or fix dir/.test(e.message),
  );
});

test('links: a symbolic link is skipped with its reason; two hard links of one database get one replicator', async () => {
  const root = await tempDir();
  const dir = path.join(root, 'tenants');
  makeDb(path.join(dir, 'a.db'), 2);
  fs.symlinkSync(path.join(dir, 'a.db'), path.join(dir, 'link.db'));
  fs.linkSync(path.join(dir, 'a.db'), path.join(dir, 'hard.db'));
  const d = new DirectoryReplicator(dir, {
    pattern: '*.db',
    replicas: [{ client: new FileReplicaClient({ path: path.join(root, 'backup') }) }],
  });
  const seen = record(d);
  await d.start();
  try {
    const replicated = d.databases().map((x) => x.relPath);
    assert.equal(replicated.length, 1, `one replicator for the two hard links: ${replicated.join(',')}`);
    const skipped = seen.filter((e) => e.name === 'database-skipped');
    assert.deepEqual(
      skipped.find((e) => e.relPath === 'link.db')?.reason,
      'a symbolic link (SQLite writes its -wal beside the target): replicate the target instead',
    );
    const other = replicated[0] === 'a.db' ? 'hard.db' : 'a.db';
    assert.match(
      skipped.find((e) => e.relPath === other)?.reason ?? '',
      new RegExp(`^the same file as ${replicated[0]!.replace('.', '\\.')} \\(a hard link\\)`),
    );
  } finally {
    await d.stop();
  }
});

test('a database that cannot start (another walship replicates it) is reported once and retried after a backoff, not on every commit', async () => {
  const root = await tempDir();
  const dir = path.join(root, 'tenants');
  makeDb(path.join(dir, 'a.db'), 2);
  const client = new FileReplicaClient({ path: path.join(root, 'backup') });
  const first = new DirectoryReplicator(dir, { pattern: '*.db', replicas: [{ client }] });
  await first.start();
  const second = new DirectoryReplicator(dir, { pattern: '*.db', watch: true, replicas: [{ client }] });
  const seen = record(second);
  const app = openApp(path.join(dir, 'a.db'));
  try {
    await second.start();
    assert.deepEqual(
      seen.map((e) => e.name),
      ['database-error'],
    );
    assert.equal(second.status().failed[0]?.error.name, 'LockedError', String(second.status().failed[0]?.error));
    // Commits change the file's size and mtime and fire the watch: no new attempt, no new report.
    for (let i = 0; i < 15; i++) {
      insertRows(app, 1);
      await new Promise((r) => setTimeout(r, 100));
    }
    await second.rescan();
    assert.equal(seen.length, 1, JSON.stringify(seen));
    assert.equal(second.databases().length, 0);
  } finally {
    app.close();
    await second.stop();
    await first.stop();
  }
});

test('stop() during start() leaves nothing running', async () => {
  const root = await tempDir();
  const dir = path.join(root, 'tenants');
  makeDb(path.join(dir, 'a.db'), 2);
  const d = new DirectoryReplicator(dir, {
    pattern: '*.db',
    watch: true,
    replicas: [{ client: new FileReplicaClient({ path: path.join(root, 'backup') }) }],
  });
  const started = d.start();
  await d.stop();
  await started;
  await new Promise((r) => setTimeout(r, 300));
  assert.deepEqual(d.status().databases, []);
  assert.equal(d.status().watching, false);
  assert.equal(fs.existsSync(path.join(dir, '.a.db-walship')), false, 'no replicator started');
  makeDb(path.join(dir, 'b.db'), 1);
  await new Promise((r) => setTimeout(r, 1_000));
  assert.deepEqual(d.status().databases, [], 'a stopped directory replicator does not pick up new databases');
});
