import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { filler, LitestreamFixture, sqliteDump } from './helpers/litestream-fixture.js';
import { tempDir } from './helpers/restore-fixtures.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const child = path.join(here, 'helpers', 'restore-bench-child.ts');
const WAL_TARGET = Number(process.env.WALSHIP_RESTORE_BENCH_MB ?? 220) * 1024 * 1024;
const BIG_DB_TARGET = Number(process.env.WALSHIP_RESTORE_BIG_MB ?? 200) * 1024 * 1024;

let dir: string;
let fx: LitestreamFixture;
let walShipped = 0;

before(() => {
  dir = tempDir('restore-speed');
  // ~5 MB database; then many small transactions updating the same pages again and again, all
  // in one WAL index (no checkpoint), shipped as ~8 MB segments.
  fx = benchFixture('fx', (ins) => {
    for (let i = 0; i < 5000; i++) ins.run(filler(i, 800));
  });
  const upd = fx.db.prepare('UPDATE t SET v = ? WHERE id = ?');
  let x = 12345;
  let step = 0;
  while (walShipped < WAL_TARGET) {
    for (let t = 0; t < 200; t++) {
      fx.tx(() => {
        for (let r = 0; r < 10; r++) {
          x = (x * 1103515245 + 12345) >>> 0;
          upd.run(filler(step++, 800), 1 + (x % 5000));
        }
      });
    }
    const p = fx.ship();
    if (p) walShipped = p.end;
  }
  fx.close();
});

after(() => {
  fs.rmSync(dir, { recursive: true, force: true });
});

/** Table `t` filled by `fill`, then index 1 with a snapshot: what the tests add goes to index 1. */
function benchFixture(name: string, fill: (ins: { run: (v: string) => unknown }) => void): LitestreamFixture {
  const f = new LitestreamFixture({ dir: path.join(dir, name), recordDumps: false, lz4Variants: [['-B7', '-1']] });
  f.db.exec('CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)');
  const ins = f.db.prepare('INSERT INTO t (v) VALUES (?)');
  f.tx(() => fill(ins));
  f.ship();
  f.newIndex('TRUNCATE');
  f.snapshot();
  return f;
}

function run(args: string[]): { ms: number; walBytes: number; maxRssMB: number } {
  const outp = execFileSync(process.execPath, ['--conditions=walship-source', '--import', 'tsx', child, ...args], {
    cwd: path.join(here, '..'),
    encoding: 'utf8',
  });
  return JSON.parse(outp.trim().split('\n').at(-1)!) as { ms: number; walBytes: number; maxRssMB: number };
}

describe('restore: speed (figures are logged, not asserted)', () => {
  test('a database larger than every memory budget restores within 256 MB of RSS', () => {
    // ~200 MB of new pages in one index: the committed page map fills and flushes many times.
    const big = benchFixture('big', () => {});
    const ins = big.db.prepare('INSERT INTO t (v) VALUES (?)');
    let shipped = 0;
    let i = 0;
    while (shipped < BIG_DB_TARGET) {
      big.tx(() => {
        for (let r = 0; r < 2000; r++) ins.run(filler(i++, 1000));
      });
      const p = big.ship();
      if (p) shipped = p.end;
    }
    const expected = sqliteDump(big.dbPath).length;
    big.close();
    const o = path.join(dir, 'big-out.db');
    const r = run(['walship', big.replicaDir, o, 'integrity']);
    const mb = (n: number) => (n / 1024 / 1024).toFixed(0);
    console.log(
      `large restore: ${mb(fs.statSync(o).size)} MB database from ${mb(r.walBytes)} MB of WAL in ${(r.ms / 1000).toFixed(2)} s ` +
        `(${(r.walBytes / 1024 / 1024 / (r.ms / 1000)).toFixed(0)} MB/s incl. integrity_check), max RSS ${r.maxRssMB.toFixed(0)} MB`,
    );
    assert.equal(sqliteDump(o).length, expected);
    assert.ok(r.maxRssMB < 256, `max RSS ${r.maxRssMB.toFixed(0)} MB`);
  });

  test(`≥ 200 MB of WAL in one index: walship vs. the Litestream way`, () => {
    const stored = fs.readdirSync(path.join(fx.replicaDir, 'generations', fx.generation, 'wal')).length;
    const mb = (n: number) => (n / 1024 / 1024).toFixed(1);
    const ours = path.join(dir, 'ours.db');
    const oursNone = path.join(dir, 'ours-none.db');
    const theirs = path.join(dir, 'theirs.db');
    const w = run(['walship', fx.replicaDir, ours, 'integrity']);
    const wn = run(['walship', fx.replicaDir, oursNone, 'none']);
    const l = run(['litestream', fx.replicaDir, theirs, fx.generation, '1']);
    assert.ok(w.walBytes >= 200 * 1024 * 1024, `WAL processed: ${mb(w.walBytes)} MB`);
    assert.equal(w.walBytes, l.walBytes);
    const dbMB = mb(fs.statSync(ours).size);
    const rate = (r: { ms: number; walBytes: number }) => (r.walBytes / 1024 / 1024 / (r.ms / 1000)).toFixed(0);
    const lines = [
      `restore speed: ${mb(w.walBytes)} MB of WAL in 1 index (${stored} segments), database ${dbMB} MB`,
      `  walship (integrity_check): ${(w.ms / 1000).toFixed(2)} s = ${rate(w)} MB/s of WAL, max RSS ${w.maxRssMB.toFixed(0)} MB`,
      `  walship (verify none):     ${(wn.ms / 1000).toFixed(2)} s = ${rate(wn)} MB/s of WAL, max RSS ${wn.maxRssMB.toFixed(0)} MB`,
      `  Litestream way (same decoder, -wal + wal_checkpoint(TRUNCATE), no check): ${(l.ms / 1000).toFixed(2)} s = ${rate(l)} MB/s, max RSS ${l.maxRssMB.toFixed(0)} MB`,
      `  speed-up: ${(l.ms / wn.ms).toFixed(2)}x (no check), ${(l.ms / w.ms).toFixed(2)}x (with integrity_check)`,
    ];
    for (const line of lines) console.log(line);
    assert.equal(sqliteDump(ours), sqliteDump(theirs), 'both ways produce the same database');
    assert.equal(fs.statSync(ours).size, fs.statSync(theirs).size);
  });
});
