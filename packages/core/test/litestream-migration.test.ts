// Issue #19: moving from Litestream v0.3 to walship on the same database and replica continues
// Litestream's generation — no new snapshot — when the WAL proves continuity, and starts a new
// generation saying why when it does not. Checked against the real Litestream v0.3.13.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { test, type TestContext } from 'node:test';
import { type Logger, type ReplicaClient, Replicator, restore } from '@walship/core';
import { FileReplicaClient } from '@walship/file';
import type Database from 'better-sqlite3';
import { insertRows, openApp, tempDir, until } from './support/db.js';
import { litestreamBin, replicateWithLitestream, restoreWithLitestream } from './support/litestream.js';
import { rows, walByIndex } from './support/replica-check.js';

interface Setup {
  readonly dir: string;
  readonly dbPath: string;
  readonly replicaDir: string;
  readonly client: FileReplicaClient;
  readonly app: Database.Database;
  /** Litestream's generation, once it has replicated. */
  readonly generation: string;
  /** Litestream's meta directory (the default, or the `meta-path` both tools share). */
  readonly lsMeta: string;
  readonly config: string;
  /** walship's `metaPath` option (shared with Litestream), or undefined for both defaults. */
  readonly sharedMeta: string | undefined;
}

function appRows(app: Database.Database): unknown[] {
  return app.prepare('SELECT * FROM t ORDER BY id').all();
}

/** The shadow WAL of Litestream's newest index (`.<db>-litestream/generations/G/wal/%08x.wal`). */
function newestShadow(lsMeta: string, generation: string): { index: number; size: number } | undefined {
  const dir = path.join(lsMeta, 'generations', generation, 'wal');
  if (!fs.existsSync(dir)) return undefined;
  const names = fs
    .readdirSync(dir)
    .filter((n) => /^[0-9a-f]{8}\.wal$/.test(n))
    .sort();
  const last = names[names.length - 1];
  return last ? { index: parseInt(last.slice(0, 8), 16), size: fs.statSync(path.join(dir, last)).size } : undefined;
}

/** True once the replica holds every byte of Litestream's newest shadow WAL. */
async function litestreamCaughtUp(client: ReplicaClient, lsMeta: string): Promise<boolean> {
  const gens = await client.generations();
  if (gens.length !== 1) return false;
  const shadow = newestShadow(lsMeta, gens[0]!);
  if (!shadow || (await client.snapshots(gens[0]!)).length === 0) return false;
  return (await walByIndex(client, gens[0]!)).get(shadow.index)?.length === shadow.size;
}

/** Litestream's second generation holds its newest shadow WAL (after going back to Litestream). */
async function litestreamCaughtUp2(s: Setup): Promise<boolean> {
  const file = path.join(s.lsMeta, 'generation');
  const g = fs.existsSync(file) ? fs.readFileSync(file, 'utf8').trim() : '';
  if (g === '' || g === s.generation) return false;
  const shadow = newestShadow(s.lsMeta, g);
  if (!shadow || (await s.client.snapshots(g)).length === 0) return false;
  return (await walByIndex(s.client, g)).get(shadow.index)?.length === shadow.size;
}

/**
 * An application database replicated by the real Litestream to a file replica: 100 small rows,
 * 100 large ones (Litestream checkpoints, the WAL restarts), 10 small ones in the new WAL index;
 * then Litestream is stopped with SIGTERM (the app stays open).
 */
async function replicatedByLitestream(t: TestContext, bin: string, shared = false): Promise<Setup> {
  const dir = await tempDir('walship-from-litestream-');
  const dbPath = path.join(dir, 'app.db');
  const sharedMeta = shared ? path.join(dir, 'meta') : undefined;
  const lsMeta = sharedMeta ?? path.join(dir, '.app.db-litestream');
  const replicaDir = path.join(dir, 'replica');
  const app = openApp(dbPath);
  t.after(() => app.close());
  insertRows(app, 100);
  const config = path.join(dir, 'litestream.yml');
  fs.writeFileSync(
    config,
    `dbs:\n  - path: ${dbPath}\n${sharedMeta ? `    meta-path: ${sharedMeta}\n` : ''}    replicas:\n      - type: file\n        path: ${replicaDir}\n        sync-interval: 100ms\n`,
  );
  const ls = replicateWithLitestream(bin, config);
  const client = new FileReplicaClient({ path: replicaDir });
  try {
    await until(() => litestreamCaughtUp(client, lsMeta), 30_000, 'litestream to replicate the first rows');
    // More than Litestream's min-checkpoint-page-count (1000 pages): it checkpoints and the WAL
    // restarts, so the generation continues at a later index than 0.
    insertRows(app, 100, 45_000);
    await until(
      async () => (newestShadow(lsMeta, (await client.generations())[0]!)?.index ?? 0) >= 1,
      30_000,
      'litestream to restart the wal',
    );
    insertRows(app, 10);
    // Litestream copies new frames to its shadow WAL at its next monitor tick (1 s), then ships them.
    await until(
      async () =>
        (await litestreamCaughtUp(client, lsMeta)) && (newestShadow(lsMeta, (await client.generations())[0]!)?.size ?? 0) > 32 + 4096 * 2,
      30_000,
      'litestream to replicate the last rows',
    );
  } finally {
    const code = await ls.stop();
    assert.equal(code, 0, `litestream exited ${code}: ${ls.output()}`);
  }
  assert.ok(await litestreamCaughtUp(client, lsMeta), 'the replica holds everything litestream shadowed');
  const gens = await client.generations();
  assert.equal(gens.length, 1);
  return { dir, dbPath, replicaDir, client, app, generation: gens[0]!, lsMeta, config, sharedMeta };
}

function recordingLogger(): Logger & { lines: string[] } {
  const lines: string[] = [];
  const at = (level: string) => (message: string, fields?: Record<string, unknown>) =>
    lines.push(`${level} ${message} ${JSON.stringify(fields ?? {})}`);
  return { lines, debug: () => {}, info: at('info'), warn: at('warn'), error: at('error') };
}

function walship(s: Setup): {
  rep: Replicator;
  generations: { generation: string; reason: string }[];
  continued: { generation: string; index: number }[];
  log: ReturnType<typeof recordingLogger>;
} {
  const log = recordingLogger();
  const rep = new Replicator(s.dbPath, {
    monitorInterval: 25,
    logger: log,
    replicas: [{ client: s.client, syncInterval: 25 }],
    // As the CLI does with a `meta-path`: one directory for both tools' state.
    ...(s.sharedMeta ? { metaPath: s.sharedMeta, litestreamMetaPath: s.sharedMeta } : {}),
  });
  const generations: { generation: string; reason: string }[] = [];
  const continued: { generation: string; index: number }[] = [];
  rep.on('generation', (e) => generations.push(e));
  rep.on('litestream-continued', (e) => continued.push(e));
  return { rep, generations, continued, log };
}

/** walship's restore and Litestream's restore of the replica both give `expected`. */
async function bothRestore(bin: string, s: Setup, expected: unknown[], tag: string): Promise<void> {
  const mine = path.join(s.dir, `walship-${tag}.db`);
  await restore({ outputPath: mine, replicas: [{ name: 'file', client: s.client }] });
  assert.deepEqual(rows(mine), expected, 'walship restores every row');
  const theirs = path.join(s.dir, `litestream-${tag}.db`);
  await restoreWithLitestream(bin, theirs, [`file://${s.replicaDir}`]);
  assert.deepEqual(rows(theirs), expected, 'litestream restores every row');
}

for (const shared of [false, true]) {
  test(`walship continues the generation Litestream v0.3.13 was replicating: no new snapshot, both tools restore it, and going back to Litestream starts a new generation (${shared ? 'one meta-path for both' : 'default meta directories'})`, async (t) => {
    const bin = litestreamBin(t);
    if (!bin) return;
    const s = await replicatedByLitestream(t, bin, shared);
    const snapshotsBefore = await s.client.snapshots(s.generation);
    assert.equal(snapshotsBefore.length, 1);
    // Written while neither tool runs: past Litestream's shadow end, in the same WAL.
    insertRows(s.app, 50);

    const w = walship(s);
    try {
      await w.rep.start();
      await w.rep.sync({ timeout: 20_000 });
      assert.deepEqual(w.generations, [], `no new generation (${JSON.stringify(w.generations)})`);
      assert.equal(w.continued.length, 1, 'the litestream-continued event');
      assert.equal(w.continued[0]!.generation, s.generation);
      assert.equal(w.rep.status().generation, s.generation);
      assert.ok(
        w.log.lines.some((l) => l.startsWith('info continuing litestream generation')),
        w.log.lines.join('\n'),
      );
      insertRows(s.app, 50);
      await w.rep.sync({ timeout: 20_000 });
    } finally {
      await w.rep.stop();
    }
    assert.deepEqual(await s.client.generations(), [s.generation], 'still one generation on the replica');
    assert.deepEqual(
      (await s.client.snapshots(s.generation)).map((x) => x.index),
      snapshotsBefore.map((x) => x.index),
      'no snapshot was written',
    );
    if (s.sharedMeta) {
      // walship's own `generation` file replaced Litestream's; the newest shadow WAL is gone.
      assert.equal(newestShadow(s.lsMeta, s.generation), undefined, 'the newest shadow wal is retired');
    } else {
      assert.equal(fs.existsSync(path.join(s.lsMeta, 'generation')), false, "Litestream's generation file is retired");
    }
    const expected = appRows(s.app);
    assert.equal(expected.length, 310);
    assert.ok(w.continued[0]!.index >= 1, `continued at wal index ${w.continued[0]!.index}`);
    await bothRestore(bin, s, expected, 'continued');

    // A restart of walship continues from its own state now. (A Litestream `generation` file still
    // naming the generation — walship killed before it retired it — is removed at that start.)
    const lsGenerationFile = path.join(s.lsMeta, 'generation');
    if (!s.sharedMeta) fs.writeFileSync(lsGenerationFile, `${s.generation}\n`);
    const again = walship(s);
    try {
      await again.rep.start();
      insertRows(s.app, 10);
      await again.rep.sync({ timeout: 20_000 });
      assert.deepEqual(again.generations, []);
      assert.deepEqual(again.continued, []);
    } finally {
      await again.rep.stop();
    }
    if (!s.sharedMeta)
      assert.equal(fs.existsSync(lsGenerationFile), false, "a leftover Litestream generation file naming walship's generation is removed");
    await bothRestore(bin, s, appRows(s.app), 'restarted');

    // Going back: Litestream does not continue what walship wrote; it begins a new generation.
    insertRows(s.app, 10);
    const ls = replicateWithLitestream(bin, s.config);
    try {
      await until(
        async () => (await s.client.generations()).length === 2 && (await litestreamCaughtUp2(s)),
        30_000,
        'litestream to begin a new generation',
      );
    } finally {
      assert.equal(await ls.stop(), 0, ls.output());
    }
    assert.match(ls.output(), /new generation/);
    const back = path.join(s.dir, 'litestream-back.db');
    await restoreWithLitestream(bin, back, [`file://${s.replicaDir}`]);
    assert.deepEqual(rows(back), appRows(s.app), 'litestream restores its new generation with every row');
  });
}

test('a WAL restarted after Litestream stopped cannot be continued: a new generation, and the reason says why', async (t) => {
  const bin = litestreamBin(t);
  if (!bin) return;
  const s = await replicatedByLitestream(t, bin);
  // The application checkpoints and restarts the WAL while no replicator runs: frames that
  // Litestream never shadowed may be gone from the WAL (here: the restart overwrites them).
  insertRows(s.app, 20);
  const r = s.app.pragma('wal_checkpoint(TRUNCATE)') as Array<{ busy: number }>;
  assert.equal(r[0]?.busy, 0);
  insertRows(s.app, 20);

  const w = walship(s);
  try {
    await w.rep.start();
    await w.rep.sync({ timeout: 20_000 });
  } finally {
    await w.rep.stop();
  }
  assert.deepEqual(w.continued, []);
  assert.equal(w.generations.length, 1, JSON.stringify(w.generations));
  assert.notEqual(w.generations[0]!.generation, s.generation);
  assert.match(
    w.generations[0]!.reason,
    new RegExp(`^litestream generation ${s.generation} cannot be continued: the wal was restarted after litestream stopped`),
  );
  assert.ok(
    fs.existsSync(path.join(s.dir, '.app.db-litestream', 'generation')),
    "a generation walship did not take over stays Litestream's",
  );
  await bothRestore(bin, s, appRows(s.app), 'rejected');
});

test('a replica ahead of the local WAL starts a new generation instead of forking the current one', async (t) => {
  const dir = await tempDir('walship-replica-ahead-');
  const dbPath = path.join(dir, 'app.db');
  const client = new FileReplicaClient({ path: path.join(dir, 'replica') });
  let app = openApp(dbPath);
  t.after(() => app.close());
  const rep = new Replicator(dbPath, { monitorInterval: 25, replicas: [{ client, syncInterval: 25 }] });
  await rep.start();
  insertRows(app, 100);
  await rep.sync({ timeout: 20_000 });
  // An older copy of the database (the WAL holds the 100 rows)…
  const oldDb = fs.readFileSync(dbPath);
  const oldWal = fs.readFileSync(`${dbPath}-wal`);
  insertRows(app, 100);
  const at = await rep.sync({ timeout: 20_000 });
  await rep.stop();
  const generation = at.generation;
  // …put back in place of the current one (same file, same WAL header: the replica holds 100
  // rows the local database no longer has).
  app.close();
  for (const f of [`${dbPath}-shm`]) fs.rmSync(f, { force: true });
  fs.writeFileSync(dbPath, oldDb);
  fs.writeFileSync(`${dbPath}-wal`, oldWal);
  app = openApp(dbPath);
  assert.equal(appRows(app).length, 100);

  const log = recordingLogger();
  const rep3 = new Replicator(dbPath, { monitorInterval: 25, logger: log, replicas: [{ client, syncInterval: 25 }] });
  const generations: { generation: string; reason: string }[] = [];
  rep3.on('generation', (e) => generations.push(e));
  try {
    await rep3.start();
    insertRows(app, 7);
    await until(() => generations.length > 0, 20_000, 'a new generation');
    await rep3.sync({ timeout: 20_000 });
  } finally {
    await rep3.stop();
  }
  assert.equal(generations.length, 1, JSON.stringify(generations));
  assert.notEqual(generations[0]!.generation, generation);
  assert.match(generations[0]!.reason, /is ahead of the local database in generation/);
  // The old generation was not written to after it went ahead: its WAL still ends at 200 rows.
  const out = path.join(dir, 'restored.db');
  await restore({ outputPath: out, replicas: [{ name: 'file', client }], generation });
  assert.equal(rows(out).length, 200, 'the old generation is untouched');
  const latest = path.join(dir, 'latest.db');
  await restore({ outputPath: latest, replicas: [{ name: 'file', client }] });
  assert.deepEqual(rows(latest), appRows(app), 'the new generation holds the local database');
});
