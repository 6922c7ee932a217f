// Issue #19 on S3: the real Litestream v0.3.13 replicates to the bucket and stops; walship,
// started on the same database and replica, continues Litestream's generation with no new
// snapshot, and both tools restore the same rows. On radosgw (Litestream's listing breaks on
// s3rver: no common prefixes for folders holding only folders).
import { execFile, spawn } from 'node:child_process';
import { existsSync, readdirSync, statSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { promisify } from 'node:util';
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import Database from 'better-sqlite3';
import { type ReplicaClient, Replicator, restore } from '@walship/core';
import { decodeObject } from '@walship/core/format';
import {
  clientFor,
  createBucket,
  destroyBucket,
  radosgwFromEnv,
  rawClient,
  uniqueBucketName,
  unavailableMode,
  IS_CI,
} from './helpers/servers.js';
import { litestreamBin, writeLitestreamConfig } from './helpers/litestream.js';

const run = promisify(execFile);

function insert(db: Database.Database, n: number): void {
  const ins = db.prepare('INSERT INTO t (v) VALUES (?)');
  db.transaction(() => {
    for (let i = 0; i < n; i++) ins.run('x'.repeat(100));
  })();
}

function rowsOf(path: string): unknown[] {
  const db = new Database(path, { readonly: true });
  try {
    return db.prepare('SELECT * FROM t ORDER BY id').all();
  } finally {
    db.close();
  }
}

/** Size of Litestream's newest shadow WAL and its index. */
function newestShadow(dbPath: string, generation: string): { index: number; size: number } | undefined {
  const dir = join(dirname(dbPath), `.app.db-litestream`, 'generations', generation, 'wal');
  if (!existsSync(dir)) return undefined;
  const last = readdirSync(dir)
    .filter((n) => /^[0-9a-f]{8}\.wal$/.test(n))
    .sort()
    .at(-1);
  return last ? { index: parseInt(last.slice(0, 8), 16), size: statSync(join(dir, last)).size } : undefined;
}

/** Decoded WAL bytes the replica holds for `index`. */
async function replicaWalBytes(client: ReplicaClient, generation: string, index: number): Promise<number> {
  let n = 0;
  for (const s of await client.walSegments(generation)) {
    if (s.index !== index) continue;
    await pipeline(
      decodeObject(await client.walSegmentReader({ generation, index, offset: s.offset })),
      new Writable({
        write(c: Buffer, _e, cb) {
          n += c.length;
          cb();
        },
      }),
    );
  }
  return n;
}

async function until(cond: () => Promise<boolean>, ms: number, what: string): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

const TITLE = 'radosgw: walship continues the generation Litestream v0.3.13 was replicating (no new snapshot), both tools restore it';
const result = radosgwFromEnv();
if (!result.server) {
  const m = unavailableMode(result.unavailable);
  if ('skip' in m) test(TITLE, { skip: m.skip }, () => {});
  else test(TITLE, () => assert.fail(m.fail));
} else {
  const server = result.server;
  after(() => server.stop());
  test(TITLE, { timeout: 240_000 }, async (t) => {
    const bin = litestreamBin();
    if (!bin) {
      if (IS_CI)
        assert.fail('the Litestream binary is required under CI=true: set LITESTREAM_BIN or provide ../shared/bin/litestream-v0.3.13');
      t.skip('Litestream binary not found (LITESTREAM_BIN or ../shared/bin/litestream-v0.3.13)');
      return;
    }
    const raw = rawClient(server);
    const bucket = uniqueBucketName('mig');
    await createBucket(raw, bucket);
    const dir = await mkdtemp(join(tmpdir(), 'walship-s3-migrate-'));
    const dbPath = join(dir, 'app.db');
    const prefix = 'app';
    const client = clientFor(server, bucket, { path: prefix });
    const app = new Database(dbPath);
    try {
      app.pragma('journal_mode = WAL');
      app.pragma('wal_autocheckpoint = 0');
      app.exec('CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT NOT NULL)');
      insert(app, 100);
      const config = await writeLitestreamConfig(join(dir, 'litestream.yml'), dbPath, server, bucket, prefix, ['sync-interval: 100ms']);
      const ls = spawn(bin, ['replicate', '-config', config], { stdio: ['ignore', 'ignore', 'pipe'] });
      let lsOut = '';
      ls.stderr.on('data', (c: Buffer) => (lsOut += c.toString()));
      const lsExit = new Promise<number | null>((r) => ls.once('exit', (code) => r(code)));
      let generation = '';
      const caughtUp = async (minShadow: number) => {
        const gens = await client.generations();
        if (gens.length !== 1) return false;
        generation = gens[0]!;
        const shadow = newestShadow(dbPath, generation);
        if (!shadow || shadow.size <= minShadow || (await client.snapshots(generation)).length === 0) return false;
        return (await replicaWalBytes(client, generation, shadow.index)) === shadow.size;
      };
      try {
        await until(() => caughtUp(0), 60_000, 'litestream to replicate the first rows');
        insert(app, 100);
        await until(() => caughtUp(100 * 100), 60_000, 'litestream to replicate the second rows');
      } finally {
        ls.kill('SIGTERM');
        assert.equal(await lsExit, 0, `litestream exited non-zero: ${lsOut}`);
      }
      const snapshots = (await client.snapshots(generation)).map((s) => s.index);
      insert(app, 50); // while neither tool runs

      const rep = new Replicator(dbPath, { monitorInterval: 25, replicas: [{ name: 's3', client, syncInterval: 25 }] });
      const generations: string[] = [];
      const continued: string[] = [];
      rep.on('generation', (e) => generations.push(`${e.generation}: ${e.reason}`));
      rep.on('litestream-continued', (e) => continued.push(e.generation));
      try {
        await rep.start();
        await rep.sync({ timeout: 60_000 });
        insert(app, 50);
        await rep.sync({ timeout: 60_000 });
      } finally {
        await rep.stop();
      }
      assert.deepEqual(generations, [], 'no new generation');
      assert.deepEqual(continued, [generation], "Litestream's generation continued");
      assert.deepEqual(await client.generations(), [generation]);
      assert.deepEqual(
        (await client.snapshots(generation)).map((s) => s.index),
        snapshots,
        'no snapshot written',
      );

      const want = app.prepare('SELECT * FROM t ORDER BY id').all();
      assert.equal(want.length, 300);
      const mine = join(dir, 'walship.db');
      await restore({ outputPath: mine, replicas: [{ name: 's3', client: clientFor(server, bucket, { path: prefix }) }] });
      assert.deepEqual(rowsOf(mine), want, 'walship restores every row');
      const theirs = join(dir, 'litestream.db');
      await run(bin, ['restore', '-config', config, '-o', theirs, dbPath], { timeout: 120_000 });
      assert.deepEqual(rowsOf(theirs), want, 'Litestream restores every row');
    } finally {
      app.close();
      await client.close();
      await destroyBucket(raw, bucket).catch(() => {});
      raw.destroy();
      await rm(dir, { recursive: true, force: true });
    }
  });
}
