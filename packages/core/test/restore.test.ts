import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { FileReplicaClient } from '@walship/file';
import {
  calcRestoreTarget,
  listGenerations,
  listSnapshots,
  listWalSegments,
  restore,
  RestoreError,
  type RestoreProgress,
  type RestoreReplica,
} from '../src/restore/index.js';
import type { LitestreamFixture } from './helpers/litestream-fixture.js';
import { litestreamWayRestore } from './helpers/litestream-way.js';
import { assertRestored, buildStandardFixture, copyDir, strayFiles, tempDir } from './helpers/restore-fixtures.js';
import { sqliteDump } from './helpers/litestream-fixture.js';

let dir: string;
let fx: LitestreamFixture;
let genA: string;
let genB: string;
let replicas: RestoreReplica[];
let outDir: string;
let n = 0;
const out = () => path.join(outDir, `r${n++}`, 'restored.db');
/** Index of the snapshot §6.2 picks: highest ≤ index (or the newest). */
const snapshotFor = (gen: string, index = Infinity) =>
  Math.max(...fx.snapshots.filter((s) => s.generation === gen && s.index <= index).map((s) => s.index));

before(() => {
  dir = tempDir('restore');
  ({ fx, genA, genB } = buildStandardFixture(path.join(dir, 'fx')));
  replicas = [{ name: 'file', client: new FileReplicaClient({ path: fx.replicaDir }) }];
  outDir = path.join(dir, 'out');
});

after(() => {
  fs.rmSync(dir, { recursive: true, force: true });
});

describe('restore: target selection and contents', () => {
  test('latest: newest generation, all indexes, equals the live database at its last point', async () => {
    const o = out();
    const r = await restore({ outputPath: o, replicas });
    const last = fx.lastPoint(genB)!;
    assert.equal(r.status, 'restored');
    assert.equal(r.replicaName, 'file');
    assert.equal(r.generation, genB);
    assert.equal(r.snapshotIndex, 0);
    assert.deepEqual(r.restoredTo, { generation: genB, index: last.index, offset: last.end });
    assert.ok(r.walBytes! > 0);
    assert.equal(r.partial, undefined);
    assertRestored(o, last.dump);
    assert.deepEqual(strayFiles(path.dirname(o)), []);
  });

  test('latest of an older generation uses its newest snapshot and the indexes from it', async () => {
    const o = out();
    const r = await restore({ outputPath: o, replicas, generation: genA });
    assert.equal(r.generation, genA);
    assert.equal(r.snapshotIndex, snapshotFor(genA));
    assertRestored(o, fx.lastPoint(genA)!.dump);
  });

  test('by index (inclusive), with a generation: every index of generation A', async () => {
    const indexes = [...new Set(fx.points.filter((p) => p.generation === genA).map((p) => p.index))];
    assert.ok(indexes.length >= 5);
    for (const index of indexes) {
      const o = out();
      const r = await restore({ outputPath: o, replicas, generation: genA, index });
      assert.equal(r.snapshotIndex, snapshotFor(genA, index), `snapshot for index ${index}`);
      const exp = fx.lastPointOfIndex(genA, index)!;
      assert.deepEqual(r.restoredTo, { generation: genA, index, offset: exp.end });
      assertRestored(o, exp.dump, `index ${index}`);
    }
  });

  test('by index without a generation restores within the latest generation', async () => {
    const o = out();
    const r = await restore({ outputPath: o, replicas, index: 0 });
    assert.equal(r.generation, genB);
    assertRestored(o, fx.lastPointOfIndex(genB, 0)!.dump);
  });

  test('by timestamp: every shipped segment and every snapshot time, both generations', async () => {
    for (const p of fx.points) {
      const o = out();
      const r = await restore({ outputPath: o, replicas, timestamp: p.createdAt, verify: 'quick' });
      assert.equal(r.generation, p.generation);
      assert.deepEqual(r.restoredTo, { generation: p.generation, index: p.index, offset: p.end }, `point ${p.index}:${p.offset}`);
      assert.equal(sqliteDump(o), p.dump, `timestamp ${p.createdAt.toISOString()} (${p.index}:${p.offset})`);
    }
    for (const s of fx.snapshots) {
      const o = out();
      const r = await restore({ outputPath: o, replicas, timestamp: s.createdAt, verify: 'none' });
      assert.equal(r.snapshotIndex, s.index);
      assert.equal(sqliteDump(o), s.dump, `snapshot time ${s.createdAt.toISOString()}`);
    }
  });

  test('timestamps outside every generation match nothing', async () => {
    const before0 = new Date(fx.snapshots[0]!.createdAt.getTime() - 1000);
    await assert.rejects(restore({ outputPath: out(), replicas, timestamp: before0 }), (e: unknown) => {
      assert.ok(e instanceof RestoreError);
      assert.equal(e.code, 'WALSHIP_RESTORE_NO_BACKUPS');
      assert.equal(e.message, 'no matching backups found');
      return true;
    });
    const r = await restore({ outputPath: out(), replicas, timestamp: fx.now, ifReplicaExists: true });
    assert.equal(r.status, 'skipped-no-backups');
  });

  test('matches the Litestream algorithm (lz4 CLI + wal_checkpoint(TRUNCATE)) for latest and each index', async () => {
    const cases: Array<{ gen: string; snapshotIndex: number; index?: number }> = [
      { gen: genB, snapshotIndex: 0 },
      { gen: genA, snapshotIndex: snapshotFor(genA) },
      ...[0, 1, 2, 3].map((index) => ({ gen: genA, snapshotIndex: snapshotFor(genA, index), index })),
    ];
    for (const c of cases) {
      const ours = out();
      await restore({ outputPath: ours, replicas, generation: c.gen, ...(c.index !== undefined ? { index: c.index } : {}) });
      const theirs = out();
      fs.mkdirSync(path.dirname(theirs), { recursive: true });
      const segs = fx.points
        .filter((p) => p.generation === c.gen && p.index >= c.snapshotIndex && (c.index === undefined || p.index <= c.index))
        .map((p) => ({ index: p.index, offset: p.offset }));
      await litestreamWayRestore({
        replicaDir: fx.replicaDir,
        generation: c.gen,
        snapshotIndex: c.snapshotIndex,
        segments: segs,
        outputPath: theirs,
      });
      assert.equal(sqliteDump(ours), sqliteDump(theirs));
    }
  });

  test('stale segments below the snapshot (partially deleted older indexes) are ignored (#527)', async () => {
    const rdir = path.join(dir, 'retained');
    copyDir(fx.replicaDir, rdir);
    const g = path.join(rdir, 'generations', genA);
    const keep = snapshotFor(genA);
    // Retention removed the older snapshots and their WAL, but a batch delete was interrupted:
    // one segment of each older index remains (never the one at offset 0).
    for (const s of fx.snapshots.filter((x) => x.generation === genA && x.index < keep)) {
      fs.rmSync(path.join(g, 'snapshots', `${s.index.toString(16).padStart(8, '0')}.snapshot.lz4`));
    }
    const wal = fs.readdirSync(path.join(g, 'wal')).sort();
    for (let idx = 0; idx < keep; idx++) {
      const files = wal.filter((f) => f.startsWith(`${idx.toString(16).padStart(8, '0')}_`));
      for (const f of files.filter((_, i) => i !== 1)) fs.rmSync(path.join(g, 'wal', f));
    }
    const rr: RestoreReplica[] = [{ name: 'file', client: new FileReplicaClient({ path: rdir }) }];
    const o = out();
    const r = await restore({ outputPath: o, replicas: rr, generation: genA });
    assert.equal(r.snapshotIndex, keep);
    assertRestored(o, fx.lastPoint(genA)!.dump);
    // Generation bounds ignore the stale segments too.
    const gens = await listGenerations(rr);
    const a = gens.find((x) => x.generation === genA)!;
    const snap = fx.snapshots.find((s) => s.generation === genA && s.index === keep)!;
    const firstKept = fx.points.find((p) => p.generation === genA && p.index === keep)!;
    assert.equal(a.createdAt.getTime(), Math.min(snap.createdAt.getTime(), firstKept.createdAt.getTime()));
  });

  test('progress is reported per phase and ends complete', async () => {
    const seen: RestoreProgress[] = [];
    await restore({ outputPath: out(), replicas, onProgress: (p) => seen.push(p) });
    for (const phase of ['snapshot', 'wal', 'verify'] as const) {
      const last = seen.filter((p) => p.phase === phase).at(-1);
      assert.ok(last, `phase ${phase}`);
      assert.equal(last.bytesDone, last.bytesTotal, `phase ${phase} complete`);
    }
  });

  test('two replicas: the one whose generation is newest wins; replicaName restricts', async () => {
    const older = path.join(dir, 'older-replica');
    copyDir(fx.replicaDir, older);
    fs.rmSync(path.join(older, 'generations', genB), { recursive: true });
    const two: RestoreReplica[] = [
      { name: 'old', client: new FileReplicaClient({ path: older }) },
      { name: 'new', client: new FileReplicaClient({ path: fx.replicaDir }) },
    ];
    const t = await calcRestoreTarget({ replicas: two });
    assert.equal(t?.replicaName, 'new');
    assert.equal(t?.generation, genB);
    assert.equal(t?.updatedAt.getTime(), fx.lastPoint(genB)!.createdAt.getTime());
    const r = await restore({ outputPath: out(), replicas: two, replicaName: 'old' });
    assert.equal(r.replicaName, 'old');
    assert.equal(r.generation, genA);
    await assert.rejects(restore({ outputPath: out(), replicas: two, replicaName: 'nope' }), { code: 'WALSHIP_RESTORE_INVALID' });
  });
});

describe('restore: inspection API', () => {
  test('listGenerations: bounds, lag, counts, sizes; sorted', async () => {
    const now = new Date(fx.now.getTime() + 5000);
    const gens = await listGenerations(replicas, { now });
    assert.deepEqual(
      gens.map((g) => g.generation),
      [genA, genB].sort(),
    );
    for (const g of gens) {
      const objs = [
        ...fx.snapshots.filter((s) => s.generation === g.generation).map((s) => s.createdAt.getTime()),
        ...fx.points.filter((p) => p.generation === g.generation).map((p) => p.createdAt.getTime()),
      ];
      assert.equal(g.createdAt.getTime(), Math.min(...objs));
      assert.equal(g.updatedAt.getTime(), Math.max(...objs));
      assert.equal(g.lagMs, now.getTime() - g.updatedAt.getTime());
      assert.equal(g.snapshotCount, fx.snapshots.filter((s) => s.generation === g.generation).length);
      assert.equal(g.walSegmentCount, fx.points.filter((p) => p.generation === g.generation).length);
      assert.ok(g.size > 0);
      assert.equal(g.replicaName, 'file');
    }
  });

  test('listSnapshots and listWalSegments: per replica, sorted, with sizes and times', async () => {
    const snaps = await listSnapshots(replicas);
    assert.equal(snaps.length, fx.snapshots.length);
    const sortedSnaps = [...snaps].sort((a, b) => (a.generation < b.generation ? -1 : a.generation > b.generation ? 1 : a.index - b.index));
    assert.deepEqual(snaps, sortedSnaps);
    assert.ok(snaps.every((s) => s.replicaName === 'file' && s.size > 0));
    const segs = await listWalSegments(replicas, { generation: genA });
    assert.deepEqual(
      segs.map((s) => [s.index, s.offset, s.createdAt.getTime()]),
      fx.points.filter((p) => p.generation === genA).map((p) => [p.index, p.offset, p.createdAt.getTime()]),
    );
    assert.equal((await listWalSegments(replicas)).length, fx.points.length);
  });
});

describe('restore: output handling and options', () => {
  test('an existing output fails unless overwrite; overwrite replaces it and removes its -wal/-shm', async () => {
    const o = out();
    fs.mkdirSync(path.dirname(o), { recursive: true });
    fs.writeFileSync(o, 'not a database');
    await assert.rejects(restore({ outputPath: o, replicas }), (e: unknown) => {
      assert.ok(e instanceof RestoreError);
      assert.equal(e.code, 'WALSHIP_RESTORE_OUTPUT_EXISTS');
      assert.match(e.message, /^cannot restore, output path already exists: .*restored\.db/);
      assert.match(e.message, /overwrite/);
      return true;
    });
    assert.equal(fs.readFileSync(o, 'utf8'), 'not a database');
    fs.writeFileSync(`${o}-wal`, 'stale wal');
    fs.writeFileSync(`${o}-shm`, 'stale shm');
    const r = await restore({ outputPath: o, replicas, overwrite: true });
    assert.equal(r.status, 'restored');
    assert.ok(!fs.existsSync(`${o}-shm`) || fs.readFileSync(`${o}-shm`, 'utf8') !== 'stale shm');
    assertRestored(o, fx.lastPoint(genB)!.dump);
    assert.deepEqual(strayFiles(path.dirname(o)), []);
  });

  test('a stray -wal next to a missing output counts as existing', async () => {
    const o = out();
    fs.mkdirSync(path.dirname(o), { recursive: true });
    fs.writeFileSync(`${o}-wal`, 'x');
    await assert.rejects(restore({ outputPath: o, replicas }), { code: 'WALSHIP_RESTORE_OUTPUT_EXISTS' });
    assert.ok(!fs.existsSync(o));
  });

  test('ifDbNotExists skips an existing output without touching it', async () => {
    const o = out();
    fs.mkdirSync(path.dirname(o), { recursive: true });
    fs.writeFileSync(o, 'keep');
    const r = await restore({ outputPath: o, replicas, ifDbNotExists: true });
    assert.deepEqual(r, { status: 'skipped-db-exists' });
    assert.equal(fs.readFileSync(o, 'utf8'), 'keep');
    const o2 = out();
    assert.equal((await restore({ outputPath: o2, replicas, ifDbNotExists: true })).status, 'restored');
  });

  test('ifReplicaExists: empty replica → skipped-no-backups; without it → NO_BACKUPS', async () => {
    const empty: RestoreReplica[] = [{ name: 'e', client: new FileReplicaClient({ path: path.join(dir, 'empty-replica') }) }];
    assert.deepEqual(await restore({ outputPath: out(), replicas: empty, ifReplicaExists: true }), { status: 'skipped-no-backups' });
    await assert.rejects(restore({ outputPath: out(), replicas: empty }), {
      code: 'WALSHIP_RESTORE_NO_BACKUPS',
      message: 'no matching backups found',
    });
    assert.equal(await calcRestoreTarget({ replicas: empty }), undefined);
  });

  test('invalid option combinations', async () => {
    const bad: Array<[string, object]> = [
      ['cannot specify index & timestamp to restore', { index: 1, timestamp: new Date() }],
      ['output path required', { outputPath: '' }],
      ['invalid index', { index: -1 }],
      ['invalid generation', { generation: 'XYZ' }],
      ['invalid verify', { verify: 'full' }],
      ['at least one replica', { replicas: [] }],
      ['duplicate replica name', { replicas: [replicas[0], replicas[0]] }],
    ];
    for (const [msg, o] of bad) {
      await assert.rejects(restore({ outputPath: out(), replicas, ...o } as never), (e: unknown) => {
        assert.ok(e instanceof RestoreError, msg);
        assert.equal(e.code, 'WALSHIP_RESTORE_INVALID');
        assert.ok(e.message.includes(msg), `${e.message} should include ${msg}`);
        return true;
      });
    }
  });

  test('no snapshot at or below the requested index → NO_BACKUPS naming the index', async () => {
    // Generation B has only snapshot 0, so this cannot fail; remove it in a copy.
    const rdir = path.join(dir, 'no-snap0');
    copyDir(fx.replicaDir, rdir);
    fs.rmSync(path.join(rdir, 'generations', genA, 'snapshots', '00000000.snapshot.lz4'));
    const rr: RestoreReplica[] = [{ name: 'file', client: new FileReplicaClient({ path: rdir }) }];
    await assert.rejects(restore({ outputPath: out(), replicas: rr, generation: genA, index: 0 }), (e: unknown) => {
      assert.ok(e instanceof RestoreError);
      assert.equal(e.code, 'WALSHIP_RESTORE_NO_BACKUPS');
      assert.match(e.message, /no snapshots available at or below index 00000000/);
      return true;
    });
  });

  test('abort: rejects with the reason and leaves nothing behind', async () => {
    const o = out();
    const ac = new AbortController();
    const p = restore({
      outputPath: o,
      replicas,
      signal: ac.signal,
      onProgress: (pr) => {
        if (pr.phase === 'wal') ac.abort(new Error('stop'));
      },
    });
    await assert.rejects(p, /stop/);
    assert.ok(!fs.existsSync(o));
    assert.deepEqual(strayFiles(path.dirname(o)), []);
  });

  test('stale temp files of a dead restore are removed at start; live ones are kept', async () => {
    const o = out();
    fs.mkdirSync(path.dirname(o), { recursive: true });
    const d = path.dirname(o);
    const dead = `.restored.db.walship-restore-999999999-abcdef`;
    const live = `.restored.db.walship-restore-${process.pid}-123456`;
    fs.writeFileSync(path.join(d, dead), 'x');
    fs.writeFileSync(path.join(d, `${dead}-wal`), 'x');
    fs.writeFileSync(path.join(d, live), 'x');
    await restore({ outputPath: o, replicas });
    assert.deepEqual(strayFiles(d), [live]);
    fs.rmSync(path.join(d, live));
  });
});
