import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { describe, test } from 'node:test';
import { FileReplicaClient } from '@walship/file';
import { restore, RestoreError, type DamageReport, type RestoreReplica } from '../src/restore/index.js';
import { FaultyClient, type Faults } from './helpers/faulty-client.js';
import { hex8, LZ4, sqliteDump, type FixturePoint } from './helpers/litestream-fixture.js';
import { assertRestored, sharedStandardFixture, strayFiles } from './helpers/restore-fixtures.js';

const S = sharedStandardFixture('restore-damage');

/** A copy of the replica, mutated by `mutate(genDir)` for generation `gen`. */
function damaged(gen: string, mutate: (genDir: string) => void, faults?: Faults): { replicas: RestoreReplica[]; out: string } {
  const { root } = S.copyReplica();
  mutate(path.join(root, 'replica', 'generations', gen));
  const client = new FileReplicaClient({ path: path.join(root, 'replica') });
  return {
    replicas: [{ name: 'file', client: faults ? new FaultyClient(client, faults) : client }],
    out: path.join(root, 'out', 'restored.db'),
  };
}

const segFile = (genDir: string, p: { index: number; offset: number }) =>
  path.join(genDir, 'wal', `${hex8(p.index)}_${hex8(p.offset)}.wal.lz4`);
const snapFile = (genDir: string, index: number) => path.join(genDir, 'snapshots', `${hex8(index)}.snapshot.lz4`);
const pointsOf = (gen: string, index?: number) =>
  S.fx.points.filter((p) => p.generation === gen && (index === undefined || p.index === index));

function flipMiddle(file: string): void {
  const b = fs.readFileSync(file);
  const st = fs.statSync(file);
  const at = Math.floor(b.length / 2);
  for (let i = 0; i < 4; i++) b[at + i] = b[at + i]! ^ 0x5a;
  fs.writeFileSync(file, b);
  fs.utimesSync(file, st.atime, st.mtime);
}

function truncateHalf(file: string): void {
  const st = fs.statSync(file);
  fs.truncateSync(file, Math.floor(st.size / 2));
  fs.utimesSync(file, st.atime, st.mtime);
}

async function expectDamaged(p: Promise<unknown>): Promise<DamageReport> {
  let report: DamageReport | undefined;
  await assert.rejects(p, (e: unknown) => {
    assert.ok(e instanceof RestoreError, String(e));
    assert.equal(e.code, 'WALSHIP_RESTORE_DAMAGED', e.message);
    assert.ok(e.damage);
    report = e.damage;
    return true;
  });
  return report!;
}

/** Runs the failing restore, checks its report, then the partial restore and its contents. */
async function checkDamage(
  c: { replicas: RestoreReplica[]; out: string },
  opts: { generation?: string; index?: number },
  expect: {
    kind: string | string[];
    index: number;
    offset?: number;
    offsetIn?: [number, number];
    restorable?: FixturePoint | { snapshotOnly: { index: number; dump: string; time: Date } };
    snapshotIndex?: number;
  },
): Promise<DamageReport> {
  const errOut = c.out.replace('restored.db', 'failed.db');
  let failMessage = '';
  const report = await expectDamaged(
    restore({ outputPath: errOut, replicas: c.replicas, ...opts }).catch((e: unknown) => {
      failMessage = (e as Error).message;
      throw e;
    }),
  );
  const kinds = Array.isArray(expect.kind) ? expect.kind : [expect.kind];
  assert.ok(kinds.includes(report.kind), `kind ${report.kind} in ${kinds.join('|')}: ${failMessage}`);
  assert.equal(report.index, expect.index, failMessage);
  if (expect.offset !== undefined) assert.equal(report.offset, expect.offset, failMessage);
  if (expect.offsetIn)
    assert.ok(
      report.offset >= expect.offsetIn[0] && report.offset < expect.offsetIn[1],
      `${report.offset} in [${expect.offsetIn}): ${failMessage}`,
    );
  assert.equal(report.replicaName, 'file');
  assert.ok(!fs.existsSync(errOut), 'no output after a failed restore');
  assert.deepEqual(strayFiles(path.dirname(errOut)), []);
  if (!expect.restorable) {
    assert.equal(report.restorable, undefined, failMessage);
    assert.match(failMessage, /nothing in this generation can be restored/);
    await expectDamaged(restore({ outputPath: c.out, replicas: c.replicas, ...opts, partial: true }));
    return report;
  }
  assert.ok(report.restorable, `restorable point expected: ${failMessage}`);
  assert.match(
    failMessage,
    /latest restorable point is [0-9a-f]{16}\/[0-9a-f]{8}:\d+ \(\d{4}-.*Z, snapshot [0-9a-f]{8}\); restore up to it with partial: true/,
  );
  const r = expect.restorable;
  let expectedPos: { index: number; offset: number };
  let expectedTime: Date;
  let expectedDump: string;
  if ('snapshotOnly' in r) {
    expectedPos = { index: r.snapshotOnly.index, offset: 0 };
    expectedTime = r.snapshotOnly.time;
    expectedDump = r.snapshotOnly.dump;
  } else {
    expectedPos = { index: r.index, offset: r.end };
    expectedTime = r.createdAt;
    expectedDump = r.dump;
  }
  assert.equal(report.restorable.pos.index, expectedPos.index, failMessage);
  assert.equal(report.restorable.pos.offset, expectedPos.offset, failMessage);
  assert.equal(report.restorable.time.getTime(), expectedTime.getTime());
  if (expect.snapshotIndex !== undefined) assert.equal(report.restorable.snapshotIndex, expect.snapshotIndex);
  // partial: true restores exactly that point.
  const res = await restore({ outputPath: c.out, replicas: c.replicas, ...opts, partial: true });
  assert.equal(res.status, 'restored');
  assert.ok(res.partial, 'result.partial is set');
  assert.equal(res.partial.kind, report.kind);
  assert.deepEqual(res.restoredTo, report.restorable.pos);
  if (expect.snapshotIndex !== undefined) assert.equal(res.snapshotIndex, expect.snapshotIndex);
  assertRestored(c.out, expectedDump, 'partial restore equals the state at the restorable point');
  assert.deepEqual(strayFiles(path.dirname(c.out)), []);
  return report;
}

describe('restore: damaged replicas', () => {
  test('missing segment in the middle of an index', async () => {
    const idx = 4;
    const segs = pointsOf(S.genA, idx);
    const gone = segs[1]!;
    const c = damaged(S.genA, (g) => fs.rmSync(segFile(g, gone)));
    const rep = await checkDamage(
      c,
      { generation: S.genA },
      { kind: 'missing-segment', index: idx, offset: gone.offset, restorable: segs[0]!, snapshotIndex: 3 },
    );
    assert.equal(rep.object, `wal/${hex8(idx)}_${hex8(gone.offset)}.wal.lz4`);
    assert.equal(rep.generation, S.genA);
  });

  test('missing initial segment (offset 0) of an index', async () => {
    const first = pointsOf(S.genA, 4)[0]!;
    const c = damaged(S.genA, (g) => fs.rmSync(segFile(g, first)));
    await checkDamage(
      c,
      { generation: S.genA },
      { kind: 'missing-segment', index: 4, offset: 0, restorable: S.fx.lastPointOfIndex(S.genA, 3)! },
    );
  });

  test('missing index between the snapshot and later indexes', async () => {
    // Without snapshots 2 and 3, generation A restores from snapshot 1 through indexes 1–4.
    const c = damaged(S.genA, (g) => {
      fs.rmSync(snapFile(g, 2));
      fs.rmSync(snapFile(g, 3));
      for (const p of pointsOf(S.genA, 2)) fs.rmSync(segFile(g, p));
    });
    const rep = await checkDamage(
      c,
      { generation: S.genA },
      { kind: 'missing-index', index: 2, offset: 0, restorable: S.fx.lastPointOfIndex(S.genA, 1)!, snapshotIndex: 1 },
    );
    assert.match(rep.detail, /WAL index 00000002 has no segments/);
  });

  test('corrupted segment objects (bytes flipped), across LZ4 variants', async () => {
    // Generation B: one transaction per segment; the objects cycle through the lz4 variants.
    const segs = pointsOf(S.genB);
    const snap = S.fx.snapshots.find((s) => s.generation === S.genB)!;
    for (let i = 0; i < segs.length; i++) {
      const bad = segs[i]!;
      const c = damaged(S.genB, (g) => flipMiddle(segFile(g, bad)));
      const prev = segs[i - 1];
      await checkDamage(
        c,
        {},
        {
          kind: ['corrupt-segment', 'invalid-wal'],
          index: bad.index,
          offsetIn: [bad.offset, bad.end],
          restorable:
            prev && prev.index === bad.index
              ? prev
              : prev && bad.offset === 0
                ? prev
                : { snapshotOnly: { index: 0, dump: snap.dump, time: snap.createdAt } },
        },
      );
    }
  });

  test('truncated segment object (cut in half, and empty)', async () => {
    const segs = pointsOf(S.genA, 4);
    const c = damaged(S.genA, (g) => truncateHalf(segFile(g, segs[1]!)));
    const rep = await checkDamage(
      c,
      { generation: S.genA },
      { kind: 'truncated-segment', index: 4, offset: segs[1]!.offset, restorable: segs[0]! },
    );
    assert.match(rep.detail, /truncated LZ4 frame/);
    const c2 = damaged(S.genA, (g) => fs.truncateSync(segFile(g, segs[2]!), 0));
    await checkDamage(c2, { generation: S.genA }, { kind: 'truncated-segment', index: 4, offset: segs[2]!.offset, restorable: segs[1]! });
  });

  test('a segment that ends in the middle of a transaction (its rest missing) is damage', async () => {
    // Re-cut index 4's second segment so that it stops one frame early.
    const segs = pointsOf(S.genA, 4);
    const s = segs[1]!;
    const c = damaged(S.genA, (g) => {
      const file = segFile(g, s);
      const st = fs.statSync(file);
      const raw = execFileSync(LZ4, ['-d', '-c', file], { maxBuffer: 1 << 28 });
      fs.writeFileSync(`${file}.raw`, raw.subarray(0, raw.length - (24 + 4096)));
      execFileSync(LZ4, ['-q', '-f', `${file}.raw`, file]);
      fs.rmSync(`${file}.raw`);
      fs.utimesSync(file, st.atime, st.mtime);
    });
    await checkDamage(c, { generation: S.genA }, { kind: ['missing-segment', 'invalid-wal'], index: 4, restorable: segs[0]! });
  });

  test('WAL damage before the snapshot is complete falls back to an older snapshot', async () => {
    // Snapshot 1 was taken after segment 3 of index 1 (its file holds pages of those frames),
    // so stopping inside them would mix states: the restorable point comes from snapshot 0.
    const idx1 = pointsOf(S.genA, 1);
    const snap1 = S.fx.snapshots.find((s) => s.generation === S.genA && s.index === 1)!;
    assert.ok(idx1[2]!.createdAt < snap1.createdAt);
    const c = damaged(S.genA, (g) => flipMiddle(segFile(g, idx1[1]!)));
    await checkDamage(
      c,
      { generation: S.genA, index: 1 },
      {
        kind: ['corrupt-segment', 'invalid-wal'],
        index: 1,
        offsetIn: [idx1[1]!.offset, idx1[1]!.end],
        restorable: idx1[0]!,
        snapshotIndex: 0,
      },
    );
    // Without the older snapshot nothing consistent can be restored.
    const c2 = damaged(S.genA, (g) => {
      flipMiddle(segFile(g, idx1[1]!));
      fs.rmSync(snapFile(g, 0));
    });
    await checkDamage(c2, { generation: S.genA, index: 1 }, { kind: ['corrupt-segment', 'invalid-wal'], index: 1 });
  });

  test('a corrupt or vanished snapshot falls back to an older snapshot and still restores everything', async () => {
    const c = damaged(S.genA, (g) => flipMiddle(snapFile(g, 3)));
    const r = await restore({ outputPath: c.out, replicas: c.replicas, generation: S.genA });
    assert.equal(r.snapshotIndex, 2);
    assert.equal(r.partial, undefined);
    assertRestored(c.out, S.fx.lastPoint(S.genA)!.dump);

    const c2 = damaged(S.genA, () => {}, { missingSnapshots: [3, 2] });
    const r2 = await restore({ outputPath: c2.out, replicas: c2.replicas, generation: S.genA });
    assert.equal(r2.snapshotIndex, 1);
    assertRestored(c2.out, S.fx.lastPoint(S.genA)!.dump);
  });

  test('the only snapshot corrupt → DAMAGED with nothing restorable', async () => {
    const c = damaged(S.genB, (g) => flipMiddle(snapFile(g, 0)));
    const rep = await checkDamage(c, {}, { kind: 'corrupt-snapshot', index: 0, offset: 0 });
    assert.equal(rep.object, 'snapshots/00000000.snapshot.lz4');
    const c2 = damaged(S.genB, () => {}, { missingSnapshots: [0] });
    const rep2 = await checkDamage(c2, {}, { kind: 'missing-snapshot', index: 0, offset: 0 });
    assert.equal(rep2.detail, 'snapshot object not found');
  });

  test('a database failing integrity_check is never handed back', async () => {
    // A snapshot-only generation whose snapshot has a garbage b-tree page.
    const snap = S.fx.snapshots.find((s) => s.generation === S.genB)!;
    const c = damaged(S.genB, (g) => {
      fs.rmSync(path.join(g, 'wal'), { recursive: true });
      const file = snapFile(g, 0);
      const st = fs.statSync(file);
      const raw = Buffer.from(execFileSync(LZ4, ['-d', '-c', file], { maxBuffer: 1 << 28 }));
      const pageSize = 4096;
      const pages = raw.length / pageSize;
      assert.ok(pages >= 3);
      raw.fill(0x77, (pages - 1) * pageSize + 100, pages * pageSize - 100);
      raw.fill(0x33, pageSize + 8, pageSize + 200);
      fs.writeFileSync(`${file}.raw`, raw);
      execFileSync(LZ4, ['-q', '-f', `${file}.raw`, file]);
      fs.rmSync(`${file}.raw`);
      fs.utimesSync(file, st.atime, st.mtime);
    });
    void snap;
    await assert.rejects(restore({ outputPath: c.out, replicas: c.replicas }), (e: unknown) => {
      assert.ok(e instanceof RestoreError);
      assert.equal(e.code, 'WALSHIP_RESTORE_VERIFY_FAILED', e.message);
      assert.match(e.message, /integrity_check/);
      return true;
    });
    assert.ok(!fs.existsSync(c.out));
    assert.deepEqual(strayFiles(path.dirname(c.out)), []);
  });
});

describe('restore: transient storage errors', () => {
  test('failed opens and broken streams are retried and resumed', async () => {
    const c = damaged(S.genA, () => {}, { failOpens: 2, breakAfterBytes: 3000 });
    const r = await restore({ outputPath: c.out, replicas: c.replicas, generation: S.genA, parallelism: 3 });
    assert.equal(r.status, 'restored');
    assertRestored(c.out, S.fx.lastPoint(S.genA)!.dump);
    const fc = c.replicas[0]!.client as FaultyClient;
    assert.ok(
      [...fc.opens.values()].every((v) => v >= 3),
      'every object was opened at least 3 times',
    );
  });

  test('a permanent backend error fails the restore as it is, leaving nothing behind', async () => {
    const c = damaged(S.genA, () => {}, { permanent: true });
    await assert.rejects(restore({ outputPath: c.out, replicas: c.replicas }), { code: 'WALSHIP_BACKEND', message: /access denied/ });
    assert.ok(!fs.existsSync(c.out));
    assert.deepEqual(strayFiles(path.dirname(c.out)), []);
  });

  test('sqlite3 .dump of a partial restore equals the state at its restorable point (sanity of the oracle)', () => {
    // The expected dumps differ from point to point (otherwise the tests above prove nothing).
    const dumps = new Set(S.fx.points.map((p) => p.dump));
    assert.equal(dumps.size, S.fx.points.length);
    assert.ok(sqliteDump(S.fx.dbPath).length > 0);
  });
});
