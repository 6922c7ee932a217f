// Idle costs nothing (#12 §4): an idle replicator does not poll its database; a watch on the
// database directory wakes it when the -wal changes, and a slow poll is only a safety net.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import fs from 'node:fs/promises';
import path from 'node:path';
import { test } from 'node:test';
import { Replicator, type ReplicatorOptions } from '@walship/core';
import { FileReplicaClient } from '@walship/file';
import { watchedDirectoryCount, watchWal } from '../src/db/wal-watch.js';
import { insertRows, openApp, tempDir, until } from './support/db.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Every file under `dir` with its size and mtime: what a file replica stored. */
async function listing(dir: string): Promise<string[]> {
  const out: string[] = [];
  for (const e of await fs.readdir(dir, { recursive: true, withFileTypes: true })) {
    const p = path.join(e.parentPath ?? (e as unknown as { path: string }).path, e.name);
    const st = await fs.stat(p);
    out.push(`${path.relative(dir, p)} ${st.size} ${st.mtimeMs}`);
  }
  return out.sort();
}

/**
 * Commits (`commit` resolves with the time just after its commit) and resolves with how long
 * after that commit `rep` shipped it: the first replica-sync event since the call.
 */
async function shipTime(rep: Replicator, commit: () => number | Promise<number>): Promise<number> {
  let shippedAt = 0;
  const onSync = () => {
    shippedAt ||= Date.now();
  };
  rep.on('replica-sync', onSync);
  try {
    const committedAt = await commit();
    await until(() => shippedAt > 0, 30_000, 'the commit to be shipped');
    return shippedAt - committedAt;
  } finally {
    rep.off('replica-sync', onSync);
  }
}

const inProcess = (app: ReturnType<typeof openApp>) => () => {
  insertRows(app, 1);
  return Date.now();
};

/** A commit by another process (node + better-sqlite3); resolves with the time right after it. */
function byOtherProcess(dbPath: string): () => Promise<number> {
  const script = `const D=require('better-sqlite3');const d=new D(${JSON.stringify(dbPath)});d.pragma('busy_timeout=5000');d.prepare("INSERT INTO t(v) VALUES ('other')").run();console.log(Date.now());d.close()`;
  return () =>
    new Promise((resolve, reject) =>
      execFile(process.execPath, ['-e', script], { cwd: import.meta.dirname }, (err, stdout) =>
        err ? reject(err) : resolve(Number(stdout.trim())),
      ),
    );
}

for (const thread of ['worker', 'inline'] as const) {
  test(`[${thread}] idle: no polling scans and no storage requests`, async (t) => {
    const dir = await tempDir();
    const dbPath = path.join(dir, 'app.db');
    const replicaDir = path.join(dir, 'replica');
    const app = openApp(dbPath);
    // monitorInterval 50 ms: polling would scan 20 times a second; the idle safety-net poll is
    // 10 × monitorInterval = 500 ms, so a 3 s window allows about 6 scans, polling 60.
    const opts = { monitorInterval: 50, thread, replicas: [{ client: new FileReplicaClient({ path: replicaDir }), syncInterval: 50 }] };
    const rep = new Replicator(dbPath, opts as ReplicatorOptions);
    t.after(async () => {
      await rep.stop({ timeout: 2000 }).catch(() => {});
      app.close();
    });
    await rep.start();
    insertRows(app, 10);
    await rep.sync();
    await sleep(300); // scans the watch asked for while shipping

    let scans = 0;
    let ops = 0;
    rep.on('sync', () => scans++);
    rep.on('operation', () => ops++);
    const stored = await listing(replicaDir);
    const windowMs = 3000;
    await sleep(windowMs);
    t.diagnostic(
      `${scans} scans and ${ops} storage requests in ${windowMs} ms idle (polling every 50 ms would scan ~${windowMs / 50} times)`,
    );
    assert.equal(ops, 0, 'no storage requests while idle');
    assert.deepEqual(await listing(replicaDir), stored, 'nothing written to the replica while idle');
    assert.ok(
      scans <= windowMs / 500 + 2,
      `${scans} scans in ${windowMs} ms idle: the monitor polls instead of waiting for the -wal watch`,
    );
    const ms = await shipTime(rep, inProcess(app));
    assert.ok(ms < 1000, `a commit after idle shipped in ${ms} ms`);
  });
}

for (const thread of ['worker', 'inline'] as const) {
  test(`[${thread}] a commit after idle is shipped through the watch, long before the next poll`, async (t) => {
    const dir = await tempDir();
    const dbPath = path.join(dir, 'app.db');
    const app = openApp(dbPath);
    // monitorInterval 1 s (the default): the idle safety-net poll is 10 s; the watch has a commit
    // scanned at once when the monitor's last scan is more than monitorInterval old.
    const opts = {
      monitorInterval: 1000,
      thread,
      replicas: [{ client: new FileReplicaClient({ path: path.join(dir, 'r') }), syncInterval: 50 }],
    };
    const rep = new Replicator(dbPath, opts as ReplicatorOptions);
    t.after(async () => {
      await rep.stop({ timeout: 2000 }).catch(() => {});
      app.close();
    });
    await rep.start();
    insertRows(app, 1);
    await rep.sync();
    // A commit by this process, then one by another process, each more than monitorInterval
    // after the monitor's last scan (≤ 1 s after the writes above: the watch's).
    await sleep(2300);
    const same = await shipTime(rep, inProcess(app));
    await sleep(2300);
    const other = await shipTime(rep, byOtherProcess(dbPath));
    t.diagnostic(
      `shipped ${same} ms after a commit by this process, ${other} ms after one by another process (the next poll was up to 10 s away)`,
    );
    // Typically 20-100 ms. Never more than about monitorInterval (a scan that found commits holds
    // the next back that long); the bound leaves room for a loaded machine, and is far below the
    // 10 s a missed notification costs.
    assert.ok(same < 2500, `a commit by this process took ${same} ms to ship`);
    assert.ok(other < 2500, `a commit by another process took ${other} ms to ship`);
    const pos = await rep.sync({ timeout: 10_000 });
    assert.deepEqual(rep.status().replicas[0]!.pos, pos);
  });
}

test('the watch is what ships a commit: with WALSHIP_WAL_WATCH=0 the monitor polls every monitorInterval again', async (t) => {
  const dir = await tempDir();
  const dbPath = path.join(dir, 'app.db');
  const app = openApp(dbPath);
  const before = process.env.WALSHIP_WAL_WATCH;
  process.env.WALSHIP_WAL_WATCH = '0'; // read when the inline replicator starts its watch
  const rep = new Replicator(dbPath, {
    monitorInterval: 50,
    thread: 'inline',
    replicas: [{ client: new FileReplicaClient({ path: path.join(dir, 'r') }), syncInterval: 50 }],
  } as ReplicatorOptions);
  t.after(async () => {
    if (before === undefined) delete process.env.WALSHIP_WAL_WATCH;
    else process.env.WALSHIP_WAL_WATCH = before;
    await rep.stop({ timeout: 2000 }).catch(() => {});
    app.close();
  });
  await rep.start();
  assert.equal(watchedDirectoryCount(), 0, 'no watch');
  insertRows(app, 1);
  await rep.sync();
  let scans = 0;
  rep.on('sync', () => scans++);
  await sleep(1000);
  assert.ok(scans >= 8, `${scans} scans in 1 s: without a watch the monitor polls every 50 ms`);
  const ms = await shipTime(rep, inProcess(app));
  assert.ok(ms < 3000, `shipped after ${ms} ms by polling`);
});

test('one shared watch per directory; stop() closes it; a database created after start() is picked up', async (t) => {
  const dir = await tempDir();
  const names = ['a.db', 'b.db', 'c.db'];
  const reps = names.map(
    (n) =>
      new Replicator(path.join(dir, n), {
        monitorInterval: 50,
        thread: 'inline',
        replicas: [{ client: new FileReplicaClient({ path: path.join(dir, `${n}-r`) }), syncInterval: 50 }],
      } as ReplicatorOptions),
  );
  const apps: ReturnType<typeof openApp>[] = [];
  t.after(async () => {
    for (const r of reps) await r.stop({ timeout: 2000 }).catch(() => {});
    for (const a of apps) a.close();
  });
  const before = watchedDirectoryCount();
  for (const r of reps) await r.start(); // none of the databases exists yet
  assert.equal(watchedDirectoryCount(), before + 1, 'three databases in one directory share one watch');
  await sleep(700); // past the first safety-net poll: from here only the watch is quick
  for (const n of names) apps.push(openApp(path.join(dir, n)));
  const t0 = Date.now();
  for (const [i, r] of reps.entries()) {
    insertRows(apps[i]!, 1);
    await until(() => r.status().replicas[0]!.pos.offset > 0, 20_000, `${names[i]} replicated`);
  }
  t.diagnostic(`three databases created after start() replicated within ${Date.now() - t0} ms`);
  for (const r of reps) await r.stop();
  assert.equal(watchedDirectoryCount(), before, 'stop() closed the watch');
});

test('the watch is one-shot: one notification however many commits until arm(), none for reads or other files', async (t) => {
  const dir = await tempDir();
  const dbPath = path.join(dir, 'app.db');
  let n = 0;
  const w = watchWal(dbPath, () => n++);
  t.after(() => w.close());
  assert.equal(w.active, true);
  const app = openApp(dbPath); // creates the database and its -wal
  t.after(() => app.close());
  await until(() => n === 1, 5000, 'the database to be reported');
  for (let i = 0; i < 200; i++) insertRows(app, 1);
  await sleep(200);
  assert.equal(n, 1, 'not armed again: no more notifications');
  w.arm();
  const reader = openApp(path.join(dir, 'other.db')); // another database in the directory
  insertRows(reader, 5);
  reader.close();
  app.prepare('SELECT count(*) FROM t').get();
  await sleep(200);
  assert.equal(n, 1, 'reads and other databases are not news');
  for (let i = 0; i < 200; i++) insertRows(app, 1);
  await until(() => n === 2, 5000, 'the next commit after arm()');
  await sleep(200);
  assert.equal(n, 2, 'one notification for 200 commits');
});
