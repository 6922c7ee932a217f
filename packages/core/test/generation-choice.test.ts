// Issue #13 §1, restore side: when a store lists whole seconds, the previous generation's last
// object and the next generation's objects can carry the same time. Restore must still pick the
// generation that began later, whatever the names (Litestream keeps the first name on a tie).
import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import path from 'node:path';
import { test } from 'node:test';
import { calcRestoreTarget, Replicator, restore } from '@walship/core';
import { FileReplicaClient } from '@walship/file';
import { insertRows, openApp, tempDir } from './support/db.js';
import { rows } from './support/replica-check.js';

async function filesUnder(dir: string): Promise<string[]> {
  const out: string[] = [];
  for (const e of await fs.readdir(dir, { withFileTypes: true, recursive: true })) {
    if (e.isFile()) out.push(path.join(e.parentPath, e.name));
  }
  return out.sort();
}

test('a tie on the latest time goes to the generation that began later, whatever the names', async () => {
  const dir = await tempDir();
  const replicaDir = path.join(dir, 'replica');
  const client = new FileReplicaClient({ path: replicaDir });
  const wanted: unknown[][] = [];
  const gens: string[] = [];
  // Two generations of two different databases replicated to one replica, one after the other.
  for (const [k, n] of [
    [0, 30],
    [1, 70],
  ] as const) {
    const dbPath = path.join(dir, `db${k}`, 'app.db');
    await fs.mkdir(path.dirname(dbPath));
    const app = openApp(dbPath);
    insertRows(app, n);
    const rep = new Replicator(dbPath, { replicas: [{ client }] });
    await rep.start();
    gens.push((await rep.sync({ timeout: 30_000 })).generation);
    await rep.stop();
    wanted.push(rows(dbPath));
    app.close();
  }
  // Name them so that the older one sorts first (the order a "ties keep the first" rule picks),
  // and give them whole-second times: the old one from T-5 s to T, the new one T throughout.
  const genDir = path.join(replicaDir, 'generations');
  const oldName = '1111111111111111';
  const newName = '2222222222222222';
  await fs.rename(path.join(genDir, gens[0]!), path.join(genDir, oldName));
  await fs.rename(path.join(genDir, gens[1]!), path.join(genDir, newName));
  const t = Math.floor(Date.now() / 1000) - 60;
  const oldFiles = await filesUnder(path.join(genDir, oldName));
  assert.ok(oldFiles.length >= 2, 'the old generation has a snapshot and wal');
  for (const [i, f] of oldFiles.entries())
    await fs.utimes(f, t - 5 + (i === oldFiles.length - 1 ? 5 : 0), t - 5 + (i === oldFiles.length - 1 ? 5 : 0));
  for (const f of await filesUnder(path.join(genDir, newName))) await fs.utimes(f, t, t);

  const target = await calcRestoreTarget({ replicas: [{ name: 'r', client }] });
  assert.equal(target?.generation, newName);
  const out = path.join(dir, 'restored.db');
  const res = await restore({ outputPath: out, replicas: [{ name: 'r', client }] });
  assert.equal(res.generation, newName);
  assert.deepEqual(rows(out), wanted[1]);
});
