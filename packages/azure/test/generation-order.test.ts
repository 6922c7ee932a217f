// Issue #13 §1: Azure lists whole-second creation times (Azurite too). A generation that begins within the
// second of the previous generation's last upload must still be the one a restore picks —
// walship's restore and the real Litestream v0.3.13's (which keeps the first of two equal times).
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, rm, unlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import Database from 'better-sqlite3';
import { Replicator, restore } from '@walship/core';
import { AzureReplicaClient } from '../src/index.js';
import { startAzuriteOrSkip, type AzuriteServer } from './helpers/azurite.js';

const run = promisify(execFile);
const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');

/** The real Litestream v0.3.13: `LITESTREAM_BIN`, or `../shared/bin/` beside the checkout. */
function litestreamBin(): string | undefined {
  const candidates = [process.env['LITESTREAM_BIN'], join(repoRoot, '..', 'shared', 'bin', 'litestream-v0.3.13')];
  return candidates.find((p): p is string => !!p && existsSync(p));
}

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

async function litestreamRestore(bin: string, server: AzuriteServer, container: string, prefix: string, dir: string): Promise<string> {
  const out = join(dir, 'litestream-restored.db');
  const config = join(dir, 'litestream.yml');
  await writeFile(
    config,
    [
      'dbs:',
      `  - path: ${join(dir, 'app.db')}`,
      '    replicas:',
      '      - type: abs',
      `        account-name: ${server.accountName}`,
      `        account-key: ${server.accountKey}`,
      `        bucket: ${container}`,
      `        path: ${prefix}`,
      `        endpoint: ${server.endpoint}`,
      '',
    ].join('\n'),
  );
  await run(bin, ['restore', '-config', config, '-o', out, join(dir, 'app.db')], { timeout: 120_000 });
  return out;
}

const started = await startAzuriteOrSkip();
const title =
  "azurite: a generation begun within the second of the previous one's last upload is the one restored (walship and Litestream v0.3.13)";
if (typeof started === 'string') {
  test(title, { skip: started }, () => {});
} else {
  const server = started;
  after(() => server.stop());
  test(title, { timeout: 240_000 }, async (t) => {
    const bin = litestreamBin();
    if (!bin) {
      if (process.env['CI'] === 'true')
        assert.fail('the Litestream binary is required under CI=true: set LITESTREAM_BIN or provide ../shared/bin/litestream-v0.3.13');
      t.diagnostic('Litestream binary not found (LITESTREAM_BIN or ../shared/bin/litestream-v0.3.13): its half of the check is skipped');
    }
    const container = await server.createContainer('gen');
    const clientFor = (prefix: string) =>
      new AzureReplicaClient({
        container,
        path: prefix,
        accountName: server.accountName,
        accountKey: server.accountKey,
        endpoint: server.endpoint,
      });
    for (let attempt = 0; attempt < ATTEMPTS; attempt++) {
      const dir = await mkdtemp(join(tmpdir(), 'walship-abs-gen-'));
      const prefix = `attempt-${attempt}`;
      const dbPath = join(dir, 'app.db');
      const client = clientFor(prefix);
      let app = newDb(dbPath, 'old', 50);
      const rep = new Replicator(dbPath, { monitorInterval: 20, replicas: [{ name: 'abs', client, syncInterval: 20 }] });
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
        const res = await restore({ outputPath: out, replicas: [{ name: 'abs', client: clientFor(prefix) }] });
        assert.equal(res.generation, acked.generation, `attempt ${attempt}: walship restored the new generation (old ${old.generation})`);
        assert.deepEqual(rowsOf(out), want);
        if (bin) {
          const lout = await litestreamRestore(bin, server, container, prefix, dir);
          assert.deepEqual(rowsOf(lout), want, `attempt ${attempt}: Litestream v0.3.13 restored the new generation`);
        }
      } finally {
        await rep.stop();
        app.close();
        await rm(dir, { recursive: true, force: true });
      }
    }
  });
}
