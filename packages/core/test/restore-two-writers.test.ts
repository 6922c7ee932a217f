// A replica two writers damaged (issue #13 §3): restore names the lineages it finds and restores
// the newest consistent one, never a mix.
// - Two replicators of one database shipped the same WAL with different segment bounds, so
//   segments overlap: the overlap is dropped and the checksum chain proves the rest continues.
// - A segment of another WAL (another lineage) in the generation: the chain stops the restore
//   there (damage), never a database mixed from two WALs.
// - Two databases shipped generations to one replica at the same time: restore takes the
//   newest and names the generations written beside it.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { FileReplicaClient } from '@walship/file';
import { listGenerations, restore, RestoreError } from '../src/restore/index.js';
import { hex8, LitestreamFixture, LZ4, lz4Compress, workload, type FixturePoint } from './helpers/litestream-fixture.js';
import { assertRestored, copyDir, sharedStandardFixture } from './helpers/restore-fixtures.js';

const S = sharedStandardFixture('restore-two-writers');

const segFile = (genDir: string, p: { index: number; offset: number }) =>
  path.join(genDir, 'wal', `${hex8(p.index)}_${hex8(p.offset)}.wal.lz4`);
const raw = (file: string): Buffer => execFileSync(LZ4, ['-dc', file], { maxBuffer: 1 << 28 });

/** Replaces the object at `at`'s key with `data` (keeping its time), as a second writer would. */
function writeSegment(genDir: string, at: FixturePoint, data: Buffer): void {
  const file = segFile(genDir, at);
  const st = fs.statSync(file);
  lz4Compress(data, file, ['-B4']);
  fs.utimesSync(file, st.atime, st.mtime);
}

function copyOfReplica(): { root: string; genDir: (g: string) => string; client: FileReplicaClient; out: string } {
  const { root } = S.copyReplica();
  return {
    root,
    genDir: (g) => path.join(root, 'replica', 'generations', g),
    client: new FileReplicaClient({ path: path.join(root, 'replica') }),
    out: path.join(root, 'out', 'restored.db'),
  };
}

/** genA's last index: three segments [0,e1) [e1,e2) [e2,e3) after its newest snapshot. */
function lastIndexOfA(): [FixturePoint, FixturePoint, FixturePoint] {
  const pts = S.fx.points.filter((p) => p.generation === S.genA);
  const idx = pts.at(-1)!.index;
  const inIdx = pts.filter((p) => p.index === idx);
  assert.equal(inIdx.length, 3, 'fixture shape: three segments in the last index of the first generation');
  return inIdx as [FixturePoint, FixturePoint, FixturePoint];
}

test('overlapping segments of the same WAL (two replicators of one database) restore to the latest state', async () => {
  const c = copyOfReplica();
  const [p1, p2, p3] = lastIndexOfA();
  const g = c.genDir(S.genA);
  const [r1, r2, r3] = [raw(segFile(g, p1)), raw(segFile(g, p2)), raw(segFile(g, p3))];
  // One writer shipped [0,e1) [e1,e2) [e2,e3); the other [0,e2) and [e1,e3) over the same keys.
  writeSegment(g, p1, Buffer.concat([r1, r2]));
  writeSegment(g, p2, Buffer.concat([r2, r3]));
  const res = await restore({ outputPath: c.out, replicas: [{ name: 'r', client: c.client }], generation: S.genA });
  assert.equal(res.restoredTo!.offset, p3.end, 'restored to the end of the index');
  assertRestored(c.out, p3.dump, 'the state after the last segment');
});

test('a segment of another WAL overlapping the generation stops the restore there: never a mix', async () => {
  const c = copyOfReplica();
  const [p1, p2] = lastIndexOfA();
  const g = c.genDir(S.genA);
  // Frames of genB's WAL (other salts), long enough to reach past the overlap.
  const bPoints = S.fx.points.filter((p) => p.generation === S.genB && p.offset > 0).slice(0, 3);
  const foreign = Buffer.concat(bPoints.map((p) => raw(segFile(c.genDir(S.genB), p))));
  const r1 = raw(segFile(g, p1));
  assert.ok(foreign.length > p2.end - p1.end, 'the foreign segment reaches past the overlap');
  writeSegment(g, p1, Buffer.concat([r1, raw(segFile(g, p2))]));
  writeSegment(g, p2, foreign);
  const replicas = [{ name: 'r', client: c.client }];
  await assert.rejects(restore({ outputPath: c.out, replicas, generation: S.genA }), (e: unknown) => {
    assert.ok(e instanceof RestoreError, String(e));
    assert.equal(e.damage?.kind, 'invalid-wal', e.message);
    return true;
  });
  assert.equal(fs.existsSync(c.out), false, 'nothing written');
  const res = await restore({ outputPath: c.out, replicas, generation: S.genA, partial: true });
  assert.ok(res.partial, 'reported as partial');
  assert.equal(res.restoredTo!.offset, p2.end, 'stopped at the last commit of its own WAL');
  assertRestored(c.out, p2.dump, 'the state before the foreign frames');
});

test('generations written at the same time by two databases: the newest is restored and the other named', async () => {
  const c = copyOfReplica();
  // Consecutive generations of one database are not flagged.
  const plain = await restore({ outputPath: path.join(c.root, 'plain.db'), replicas: [{ name: 'r', client: c.client }] });
  assert.equal(plain.generation, S.genB);
  assert.equal(plain.concurrentGenerations, undefined, "one database's generations follow each other");
  // A second database starts shipping to the same replica while S.genB is still being written.
  const gens = await listGenerations([{ name: 'r', client: c.client }]);
  const b = gens.find((x) => x.generation === S.genB)!;
  const other = new LitestreamFixture({ dir: path.join(c.root, 'other'), startTime: new Date(b.updatedAt.getTime() - 3000) });
  const genC = other.generation;
  for (let i = 0; i < 6; i++) {
    workload(other, 100 + i);
    other.ship();
  }
  other.close();
  copyDir(path.join(other.replicaDir, 'generations', genC), c.genDir(genC));
  const res = await restore({ outputPath: c.out, replicas: [{ name: 'r', client: c.client }] });
  assert.equal(res.generation, genC, 'the newest generation');
  assertRestored(c.out, other.lastPoint()!.dump);
  assert.deepEqual(
    res.concurrentGenerations?.map((x) => x.generation),
    [S.genB],
    'the generation written beside it is named',
  );
});
