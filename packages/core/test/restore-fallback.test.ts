// Issue #14 §4: with several replicas, the one that is intact wins. A replica that is damaged
// or fails mid-restore gives way to another holding the same point; an unreachable one is
// skipped; one holding an older point is never used silently. The result says which replica
// was used and why the others were skipped.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { Replicator } from '@walship/core';
import { FileReplicaClient } from '@walship/file';
import { calcRestoreTarget, restore, RestoreError, type RestoreReplica } from '../src/restore/index.js';
import { FaultyClient } from './helpers/faulty-client.js';
import { insertRows, openApp, tempDir } from './support/db.js';
import { rows } from './support/replica-check.js';

interface Fixture {
  readonly dir: string;
  readonly expected: unknown[];
  readonly replicaDir: (name: string) => string;
}

/** One database replicated to two file replicas `a` and `b` (same generation, same point). */
async function twoReplicas(): Promise<Fixture> {
  const dir = await tempDir('walship-restore-fallback-');
  const dbPath = path.join(dir, 'app.db');
  const replicaDir = (name: string) => path.join(dir, `replica-${name}`);
  const app = openApp(dbPath);
  try {
    const rep = new Replicator(dbPath, {
      monitorInterval: 25,
      replicas: ['a', 'b'].map((name) => ({ name, client: new FileReplicaClient({ path: replicaDir(name) }), syncInterval: 25 })),
    });
    await rep.start();
    insertRows(app, 200);
    await rep.sync({ timeout: 20_000 });
    insertRows(app, 50);
    await rep.sync({ timeout: 20_000 });
    await rep.stop();
    return { dir, expected: app.prepare('SELECT * FROM t ORDER BY id').all(), replicaDir };
  } finally {
    app.close();
  }
}

function replicas(f: Fixture, wrap: (name: string, c: FileReplicaClient) => RestoreReplica['client'] = (_n, c) => c): RestoreReplica[] {
  return ['a', 'b'].map((name) => ({ name, client: wrap(name, new FileReplicaClient({ path: f.replicaDir(name) })) }));
}

/** Overwrites the newest WAL segment object of a file replica with bytes that are no LZ4 frame. */
function damageLastSegment(replicaDir: string): string {
  const gens = fs.readdirSync(path.join(replicaDir, 'generations'));
  const walDir = path.join(replicaDir, 'generations', gens[0]!, 'wal');
  const last = fs.readdirSync(walDir).sort().at(-1)!;
  const file = path.join(walDir, last);
  fs.writeFileSync(file, Buffer.alloc(fs.statSync(file).size, 0x5a));
  return last;
}

test('a damaged replica gives way to the other replica holding the same point; the result names both', async () => {
  const f = await twoReplicas();
  const first = await calcRestoreTarget({ replicas: replicas(f) });
  assert.ok(first);
  const other = first.replicaName === 'a' ? 'b' : 'a';
  damageLastSegment(f.replicaDir(first.replicaName));
  const out = path.join(f.dir, 'restored.db');
  const res = await restore({ outputPath: out, replicas: replicas(f) });
  assert.equal(res.status, 'restored');
  assert.equal(res.replicaName, other, 'restored from the intact replica');
  assert.equal(res.skippedReplicas?.length, 1);
  assert.equal(res.skippedReplicas![0]!.replicaName, first.replicaName);
  assert.match(res.skippedReplicas![0]!.reason, /^restore failed: /);
  assert.deepEqual(rows(out), f.expected, 'every row');
  assert.deepEqual(
    fs.readdirSync(f.dir).filter((n) => n.includes('walship-restore')),
    [],
    'no temp files left',
  );

  // Pinned to the damaged replica, there is nothing to fall back on: the damage is the error.
  await assert.rejects(
    restore({ outputPath: path.join(f.dir, 'pinned.db'), replicas: replicas(f), replicaName: first.replicaName }),
    (err: unknown) => err instanceof RestoreError && err.code === 'WALSHIP_RESTORE_DAMAGED',
  );
});

test('a replica whose reads fail mid-restore, and one whose listing fails, are skipped with the reason', async () => {
  const f = await twoReplicas();
  // Reads of the chosen replica fail for good (a store that went away after listing).
  const first = (await calcRestoreTarget({ replicas: replicas(f) }))!.replicaName;
  const failing = replicas(f, (name, c) => (name === first ? new FaultyClient(c, { permanent: true }) : c));
  const out = path.join(f.dir, 'restored.db');
  const res = await restore({ outputPath: out, replicas: failing });
  assert.deepEqual(rows(out), f.expected);
  assert.equal(res.replicaName, first === 'a' ? 'b' : 'a');
  assert.equal(res.skippedReplicas?.[0]?.replicaName, first);
  assert.match(res.skippedReplicas![0]!.reason, /^restore failed: /);

  // A listing that fails: the replica root is a regular file.
  const notADir = path.join(f.dir, 'not-a-directory');
  fs.writeFileSync(notADir, 'x');
  const broken: RestoreReplica = { name: 'broken', client: new FileReplicaClient({ path: notADir }) };
  const out2 = path.join(f.dir, 'restored-2.db');
  const res2 = await restore({ outputPath: out2, replicas: [broken, ...replicas(f)] });
  assert.deepEqual(rows(out2), f.expected);
  const skipped = res2.skippedReplicas?.find((r) => r.replicaName === 'broken');
  assert.ok(skipped, `the unreachable replica is reported: ${JSON.stringify(res2.skippedReplicas)}`);
  assert.match(skipped.reason, /^listing failed: /);
  // Alone, its listing error is the restore's error, as before.
  await assert.rejects(restore({ outputPath: path.join(f.dir, 'restored-3.db'), replicas: [broken] }));
});

test('a replica holding an older point is never used in place of a damaged newer one (unless partial)', async () => {
  const f = await twoReplicas();
  // `b` loses its newest WAL segment: it holds an older point than `a`.
  const walDirB = path.join(f.replicaDir('b'), 'generations', fs.readdirSync(path.join(f.replicaDir('b'), 'generations'))[0]!, 'wal');
  fs.rmSync(path.join(walDirB, fs.readdirSync(walDirB).sort().at(-1)!));
  const first = await calcRestoreTarget({ replicas: replicas(f) });
  assert.equal(first?.replicaName, 'a', 'the replica with more wal is chosen');
  damageLastSegment(f.replicaDir('a'));
  await assert.rejects(
    restore({ outputPath: path.join(f.dir, 'restored.db'), replicas: replicas(f) }),
    (err: unknown) => err instanceof RestoreError && err.code === 'WALSHIP_RESTORE_DAMAGED',
  );
  assert.equal(fs.existsSync(path.join(f.dir, 'restored.db')), false, 'nothing written');
  // With partial, the best replica up to its latest restorable point; `b` is reported as older.
  const res = await restore({ outputPath: path.join(f.dir, 'partial.db'), replicas: replicas(f), partial: true });
  assert.equal(res.replicaName, 'a');
  assert.ok(res.partial, 'a partial restore');
  assert.match(res.skippedReplicas?.find((r) => r.replicaName === 'b')?.reason ?? '', /^holds an older point/);
});
