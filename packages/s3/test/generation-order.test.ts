// Issue #13 §1: S3 lists whole-second LastModified times. A generation that begins within the
// second of the previous generation's last upload must still be the one a restore picks —
// walship's restore and the real Litestream v0.3.13's (which keeps the first of two equal times).
import { execFile } from 'node:child_process';
import { mkdtemp, rm, unlink } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import Database from 'better-sqlite3';
import { Replicator, restore } from '@walship/core';
import {
  clientFor,
  createBucket,
  destroyBucket,
  radosgwFromEnv,
  rawClient,
  startS3rver,
  uniqueBucketName,
  unavailableMode,
  IS_CI,
  type S3TestServer,
  type ServerResult,
} from './helpers/servers.js';
import { litestreamBin, writeLitestreamConfig } from './helpers/litestream.js';

const run = promisify(execFile);

const ATTEMPTS = 3;

function rowsOf(path: string): unknown[] {
  const db = new Database(path, { readonly: true });
  try {
    return db.prepare('SELECT id, v FROM t ORDER BY id').all();
  } finally {
    db.close();
  }
}

function newDb(path: string, tag: string, n: number): Database.Database {
  const db = new Database(path);
  db.pragma('journal_mode = WAL');
  db.exec('CREATE TABLE IF NOT EXISTS t (id INTEGER PRIMARY KEY, v TEXT NOT NULL)');
  const ins = db.prepare('INSERT INTO t (v) VALUES (?)');
  db.transaction(() => {
    for (let i = 0; i < n; i++) ins.run(`${tag}-${i}`);
  })();
  return db;
}

async function litestreamRestore(bin: string, server: S3TestServer, bucket: string, prefix: string, dir: string): Promise<string> {
  const out = join(dir, 'litestream-restored.db');
  const config = await writeLitestreamConfig(join(dir, 'litestream.yml'), join(dir, 'app.db'), server, bucket, prefix);
  await run(bin, ['restore', '-config', config, '-o', out, join(dir, 'app.db')], { timeout: 120_000 });
  return out;
}

function suite(name: string, result: ServerResult, withLitestream: boolean): void {
  const title = `${name}: a generation begun within the second of the previous one's last upload is the one restored`;
  if (!result.server) {
    const m = unavailableMode(result.unavailable);
    if ('skip' in m) test(title, { skip: m.skip }, () => {});
    else test(title, () => assert.fail(m.fail));
    return;
  }
  const server = result.server;
  after(() => server.stop());
  const bin = withLitestream ? litestreamBin() : undefined;
  test(title, { timeout: 240_000 }, async (t) => {
    if (withLitestream && !bin) {
      if (IS_CI)
        assert.fail('the Litestream binary is required under CI=true: set LITESTREAM_BIN or provide ../shared/bin/litestream-v0.3.13');
      t.diagnostic('Litestream binary not found (LITESTREAM_BIN or ../shared/bin/litestream-v0.3.13): its half of the check is skipped');
    }
    const raw = rawClient(server);
    const bucket = uniqueBucketName('gen');
    await createBucket(raw, bucket);
    try {
      for (let attempt = 0; attempt < ATTEMPTS; attempt++) {
        const dir = await mkdtemp(join(tmpdir(), 'walship-s3-gen-'));
        const prefix = `attempt-${attempt}`;
        const dbPath = join(dir, 'app.db');
        const client = clientFor(server, bucket, { path: prefix });
        let app = newDb(dbPath, 'old', 50);
        const rep = new Replicator(dbPath, { monitorInterval: 20, replicas: [{ name: 's3', client, syncInterval: 20 }] });
        const generations: string[] = [];
        rep.on('generation', (e) => generations.push(e.generation));
        await rep.start();
        try {
          const old = await rep.sync({ timeout: 60_000 });
          // Replace the database: walship sees a new file and must begin a new generation.
          app.close();
          for (const f of [dbPath, `${dbPath}-wal`, `${dbPath}-shm`]) await unlink(f).catch(() => {});
          app = newDb(dbPath, 'new', 20);
          const deadline = Date.now() + 60_000;
          let acked = old;
          while (acked.generation === old.generation) {
            assert.ok(Date.now() < deadline, 'walship began a new generation for the replaced database');
            await new Promise((r) => setTimeout(r, 20));
            acked = await rep.sync({ timeout: 60_000 });
          }
          assert.equal(generations.at(-1), acked.generation);

          // Every object of the new generation is listed as strictly later than every object of the old.
          const times = async (g: string) =>
            [...(await client.snapshots(g)), ...(await client.walSegments(g))].map((x) => x.createdAt.getTime());
          const oldLast = Math.max(...(await times(old.generation)));
          const newFirst = Math.min(...(await times(acked.generation)));
          assert.ok(
            newFirst > oldLast,
            `new generation's first object (${new Date(newFirst).toISOString()}) listed after the old one's last (${new Date(oldLast).toISOString()})`,
          );

          const want = rowsOf(dbPath);
          const out = join(dir, 'restored.db');
          const res = await restore({ outputPath: out, replicas: [{ name: 's3', client: clientFor(server, bucket, { path: prefix }) }] });
          assert.equal(res.generation, acked.generation, `attempt ${attempt}: walship restored the new generation (old ${old.generation})`);
          assert.deepEqual(rowsOf(out), want);
          if (bin) {
            const lout = await litestreamRestore(bin, server, bucket, prefix, dir);
            assert.deepEqual(rowsOf(lout), want, `attempt ${attempt}: Litestream v0.3.13 restored the new generation`);
          }
        } finally {
          await rep.stop();
          app.close();
          await client.close();
          await rm(dir, { recursive: true, force: true });
        }
      }
    } finally {
      await destroyBucket(raw, bucket).catch(() => {});
      raw.destroy();
    }
  });
}

// s3rver's listings break Litestream's (no common prefixes for folders holding only folders),
// so Litestream's half runs against radosgw.
suite('s3rver', await startS3rver(), false);
suite('radosgw', radosgwFromEnv(), true);
