import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { FileReplicaClient } from '@walship/file';
import { restore, type RestoreReplica } from '../src/restore/index.js';
import { restoreWith } from '../src/restore/restore.js';
import { silentLogger } from '../src/logger.js';
import { filler, LitestreamFixture, sqliteDump, workload } from './helpers/litestream-fixture.js';
import { litestreamWayRestore } from './helpers/litestream-way.js';
import { assertRestored, buildStandardFixture, strayFiles, tempDir } from './helpers/restore-fixtures.js';

let dir: string;
before(() => {
  dir = tempDir('restore-formats');
});
after(() => {
  fs.rmSync(dir, { recursive: true, force: true });
});

const variants: Array<{ name: string; pageSize: number; bigEndian: boolean }> = [
  { name: '1024-byte pages, big-endian checksums', pageSize: 1024, bigEndian: true },
  { name: '65536-byte pages', pageSize: 65536, bigEndian: false },
  { name: '4096-byte pages, big-endian checksums', pageSize: 4096, bigEndian: true },
  { name: '512-byte pages', pageSize: 512, bigEndian: false },
];

for (const v of variants) {
  describe(`restore: ${v.name}`, () => {
    let fx: LitestreamFixture;
    let genA: string;
    let genB: string;
    let replicas: RestoreReplica[];
    let k = 0;
    let base: string;
    const out = () => path.join(base, 'out', `r${k++}.db`);
    before(() => {
      base = path.join(dir, `ps${v.pageSize}${v.bigEndian ? 'be' : 'le'}`);
      ({ fx, genA, genB } = buildStandardFixture(base, { pageSize: v.pageSize, bigEndian: v.bigEndian }));
      replicas = [{ name: 'file', client: new FileReplicaClient({ path: fx.replicaDir }) }];
      if (v.bigEndian) {
        const seg = fs.readdirSync(path.join(fx.replicaDir, 'generations', genA, 'wal'))[0]!;
        assert.equal(seg, '00000000_00000000.wal.lz4');
      }
    });

    test('latest of each generation equals the live state and the Litestream algorithm', async () => {
      for (const gen of [genA, genB]) {
        const o = out();
        const r = await restore({ outputPath: o, replicas, generation: gen });
        assertRestored(o, fx.lastPoint(gen)!.dump);
        const theirs = out();
        fs.mkdirSync(path.dirname(theirs), { recursive: true });
        await litestreamWayRestore({ replicaDir: fx.replicaDir, generation: gen, snapshotIndex: r.snapshotIndex!, outputPath: theirs });
        assert.equal(sqliteDump(theirs), fx.lastPoint(gen)!.dump, 'oracle agrees');
        assert.ok(fs.readFileSync(o).equals(fs.readFileSync(theirs)), 'byte-identical to what SQLite checkpointing produces');
      }
    });

    test('every point in time', async () => {
      for (const p of fx.points) {
        const o = out();
        await restore({ outputPath: o, replicas, timestamp: p.createdAt, verify: 'quick' });
        assert.equal(sqliteDump(o), p.dump, `${p.generation}/${p.index}:${p.offset}`);
      }
      assert.deepEqual(strayFiles(path.dirname(out())), []);
    });
  });
}

describe('restore: bounded memory paths', () => {
  let fx: LitestreamFixture;
  let replicas: RestoreReplica[];
  let base: string;
  before(() => {
    base = path.join(dir, 'bigtx');
    fx = new LitestreamFixture({ dir: base, pageSize: 4096 });
    fx.db.exec('CREATE TABLE big (id INTEGER PRIMARY KEY, v TEXT)');
    const ins = fx.db.prepare('INSERT INTO big (v) VALUES (?)');
    // One transaction of ~1000 pages, then updates touching many pages, then a shrink.
    fx.tx(() => {
      for (let i = 0; i < 4000; i++) ins.run(filler(i, 900));
    });
    fx.ship();
    for (let s = 0; s < 6; s++) {
      fx.tx(() => fx.db.prepare('UPDATE big SET v = ? WHERE id % 5 = ?').run(filler(s + 77, 880), s % 5));
      fx.ship();
    }
    fx.newIndex('RESTART');
    fx.tx(() => fx.db.exec('DELETE FROM big WHERE id > 1000'));
    fx.ship();
    fx.db.exec('VACUUM');
    fx.ship();
    for (let s = 0; s < 3; s++) {
      workload(fx, s);
      fx.ship();
    }
    fx.close();
    replicas = [{ name: 'file', client: new FileReplicaClient({ path: fx.replicaDir }) }];
  });

  test('transactions larger than the in-memory share spill to disk; small page maps flush often', async () => {
    for (const [i, internals] of [
      { committedBytes: 16 * 4096, pendingBytes: 16 * 4096, segmentBufferBytes: 4096 },
      { committedBytes: 1 << 20, pendingBytes: 64 * 4096 },
      {},
    ].entries()) {
      const o = path.join(base, 'out', `m${i}.db`);
      const applied: Array<Record<string, unknown>> = [];
      const logger = {
        ...silentLogger,
        debug: (m: string, f?: Record<string, unknown>) => void (m === 'applied wal' && applied.push(f ?? {})),
      };
      const r = await restoreWith({ outputPath: o, replicas, parallelism: i + 1, logger }, internals);
      assert.equal(r.status, 'restored');
      const spilled = applied.reduce((s, f) => s + Number(f.pagesSpilled), 0);
      if (i === 0) assert.ok(spilled > 900, `the big transaction spilled (${spilled} pages)`);
      if (i === 2) assert.equal(spilled, 0);
      assertRestored(o, fx.lastPoint()!.dump);
      assert.deepEqual(strayFiles(path.dirname(o)), []);
    }
    // Every intermediate point too, with the smallest budgets.
    for (const p of fx.points) {
      const o = path.join(base, 'out', `p${p.index}-${p.offset}.db`);
      await restoreWith(
        { outputPath: o, replicas, timestamp: p.createdAt, verify: 'none' },
        { committedBytes: 16 * 4096, pendingBytes: 16 * 4096 },
      );
      assert.equal(sqliteDump(o), p.dump);
    }
  });
});
