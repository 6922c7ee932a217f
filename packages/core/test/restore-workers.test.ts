/**
 * The decode-worker path (off by default; see defaultWorkerCount),
 * forced here with `restoreWith(…, { workers, workerThresholdBytes: 0 })`: same results and
 * the same damage reports as the main-thread path.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { FileReplicaClient } from '@walship/file';
import { RestoreError, type RestoreReplica } from '../src/restore/index.js';
import { restoreWith } from '../src/restore/restore.js';
import { SegmentVerifier } from '../src/restore/segment-verifier.js';
import { hex8, LZ4, sqliteDump, type LitestreamFixture } from './helpers/litestream-fixture.js';
import { assertRestored, buildStandardFixture, copyDir, strayFiles, tempDir } from './helpers/restore-fixtures.js';

let dir: string;
let fx: LitestreamFixture;
let be: LitestreamFixture;
let genA: string;
let genB: string;
let n = 0;
const forced = { workers: 2, workerThresholdBytes: 0 };

before(() => {
  dir = tempDir('restore-workers');
  ({ fx, genA, genB } = buildStandardFixture(path.join(dir, 'le')));
  ({ fx: be } = buildStandardFixture(path.join(dir, 'be'), { pageSize: 1024, bigEndian: true }));
});
after(() => {
  fs.rmSync(dir, { recursive: true, force: true });
});

const out = () => path.join(dir, 'out', `w${n++}`, 'restored.db');
const replicasOf = (root: string): RestoreReplica[] => [{ name: 'file', client: new FileReplicaClient({ path: root }) }];

describe('restore with decode workers', () => {
  test('latest of each generation, little- and big-endian checksums', async () => {
    for (const [f, gens] of [
      [fx, [genA, genB]],
      [be, be.generations],
    ] as const) {
      for (const generation of gens) {
        const o = out();
        const r = await restoreWith({ outputPath: o, replicas: replicasOf(f.replicaDir), generation }, forced);
        assert.equal(r.status, 'restored');
        assertRestored(o, f.lastPoint(generation)!.dump);
      }
    }
  });

  test('points in time (one worker)', async () => {
    for (const p of fx.points.filter((_, i) => i % 4 === 1)) {
      const o = out();
      await restoreWith(
        { outputPath: o, replicas: replicasOf(fx.replicaDir), timestamp: p.createdAt, verify: 'none' },
        { workers: 1, workerThresholdBytes: 0 },
      );
      assert.equal(sqliteDump(o), p.dump);
    }
  });

  test('corrupt, truncated and missing segments give the same reports', async () => {
    const segs = fx.points.filter((p) => p.generation === genA && p.index === 4);
    const cases: Array<{ name: string; mutate: (g: string) => void; kinds: string[]; offset: number }> = [
      {
        name: 'flip',
        mutate: (g) => flip(path.join(g, 'wal', `${hex8(4)}_${hex8(segs[1]!.offset)}.wal.lz4`)),
        kinds: ['corrupt-segment', 'invalid-wal'],
        offset: segs[1]!.offset,
      },
      {
        name: 'truncate',
        mutate: (g) => fs.truncateSync(path.join(g, 'wal', `${hex8(4)}_${hex8(segs[1]!.offset)}.wal.lz4`), 100),
        kinds: ['truncated-segment'],
        offset: segs[1]!.offset,
      },
      {
        name: 'missing',
        mutate: (g) => fs.rmSync(path.join(g, 'wal', `${hex8(4)}_${hex8(segs[1]!.offset)}.wal.lz4`)),
        kinds: ['missing-segment'],
        offset: segs[1]!.offset,
      },
    ];
    for (const c of cases) {
      const root = path.join(dir, `dmg-${c.name}`);
      copyDir(fx.replicaDir, root);
      c.mutate(path.join(root, 'generations', genA));
      const o = out();
      await assert.rejects(restoreWith({ outputPath: o, replicas: replicasOf(root), generation: genA }, forced), (e: unknown) => {
        assert.ok(e instanceof RestoreError && e.damage, String(e));
        assert.ok(c.kinds.includes(e.damage.kind), `${c.name}: ${e.message}`);
        assert.equal(e.damage.index, 4);
        if (c.name !== 'flip') assert.equal(e.damage.offset, c.offset);
        else assert.ok(e.damage.offset >= c.offset && e.damage.offset < segs[1]!.end, e.message);
        assert.deepEqual(e.damage.restorable?.pos, { generation: genA, index: 4, offset: segs[0]!.end });
        return true;
      });
      assert.deepEqual(strayFiles(path.dirname(o)), []);
      const r = await restoreWith({ outputPath: o, replicas: replicasOf(root), generation: genA, partial: true }, forced);
      assertRestored(o, segs[0]!.dump);
      assert.ok(r.partial);
    }
  });
});

function flip(file: string): void {
  const st = fs.statSync(file);
  const b = fs.readFileSync(file);
  for (let i = 0; i < 4; i++) b[(b.length >> 1) + i] = b[(b.length >> 1) + i]! ^ 0x5a;
  fs.writeFileSync(file, b);
  fs.utimesSync(file, st.atime, st.mtime);
}

describe('SegmentVerifier', () => {
  test('verifies links inside a segment and reports the first bad frame', () => {
    const pageSize = 1024;
    const fsz = 24 + pageSize;
    // Real WAL bytes of index 0 of the big-endian fixture (decoded with the lz4 CLI).
    const file = path.join(be.replicaDir, 'generations', be.generations[0]!, 'wal', '00000000_00000000.wal.lz4');
    const raw = execFileSync(LZ4, ['-d', '-c', file], { maxBuffer: 1 << 28 });
    const frames = (raw.length - 32) / fsz;
    assert.ok(frames >= 3);
    const whole = new SegmentVerifier(0, pageSize);
    whole.feed(raw.subarray(0, 1000));
    whole.feed(raw.subarray(1000));
    assert.equal(whole.badAt, -1);
    assert.equal(whole.bigEndian, true);
    // A later segment (frame-aligned) detects the byte order itself.
    const later = new SegmentVerifier(32 + fsz, pageSize);
    later.feed(raw.subarray(32 + fsz));
    assert.equal(later.badAt, -1);
    assert.equal(later.bigEndian, true);
    assert.equal(SegmentVerifier.trustedFrom(32 + fsz, pageSize), 32 + 2 * fsz);
    assert.equal(SegmentVerifier.trustedFrom(100, pageSize), Infinity);
    // A flipped page byte in frame 2 is reported at frame 2's offset.
    const bad = Buffer.from(raw);
    bad[32 + 2 * fsz + 24 + 7] = bad[32 + 2 * fsz + 24 + 7]! ^ 1;
    const v = new SegmentVerifier(0, pageSize);
    v.feed(bad);
    assert.equal(v.badAt, 32 + 2 * fsz);
  });
});
