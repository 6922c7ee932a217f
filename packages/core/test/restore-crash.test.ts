import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { filler, LitestreamFixture } from './helpers/litestream-fixture.js';
import { strayFiles, tempDir } from './helpers/restore-fixtures.js';
import { exited, spawnScript } from './support/spawn.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const child = path.join(here, 'helpers', 'restore-child.ts');

let dir: string;
let fx: LitestreamFixture;

before(() => {
  dir = tempDir('restore-crash');
  // ~60 MB database, ~60 MB of WAL over two indexes: the restore takes a while.
  fx = new LitestreamFixture({ dir: path.join(dir, 'fx'), recordDumps: false, lz4Variants: [['-B7', '-1']] });
  fx.db.exec('CREATE TABLE big (id INTEGER PRIMARY KEY, v TEXT)');
  const ins = fx.db.prepare('INSERT INTO big (v) VALUES (?)');
  for (let b = 0; b < 15; b++) {
    fx.tx(() => {
      for (let i = 0; i < 4000; i++) ins.run(filler(b * 4000 + i, 1000));
    });
    fx.ship();
  }
  fx.newIndex('TRUNCATE');
  fx.snapshot();
  for (let s = 0; s < 10; s++) {
    fx.tx(() => fx.db.prepare('UPDATE big SET v = ? WHERE id % 10 = ?').run(filler(s, 990), s));
    fx.ship();
  }
  fx.close();
});

after(() => {
  fs.rmSync(dir, { recursive: true, force: true });
});

function runChild(output: string, blockPhase: string) {
  return spawnScript(path.relative(path.join(here, 'support'), child), [fx.replicaDir, output, blockPhase]);
}

async function waitClean(d: string, ms: number): Promise<string[]> {
  const end = Date.now() + ms;
  let left = strayFiles(d);
  while (left.length > 0 && Date.now() < end) {
    await new Promise((r) => setTimeout(r, 50));
    left = strayFiles(d);
  }
  return left;
}

describe('restore: kill -9', () => {
  for (const phase of ['snapshot', 'wal', 'verify']) {
    test(`during the ${phase} phase leaves no output and no stray files`, async () => {
      const outDir = path.join(dir, `out-${phase}`);
      const output = path.join(outDir, 'restored.db');
      const c = runChild(output, phase);
      await c.waitFor(new RegExp(`^phase ${phase}$`), 60_000);
      assert.ok(strayFiles(outDir).length > 0, 'the restore had temp files when it was killed');
      c.kill('SIGKILL');
      await exited(c);
      const left = await waitClean(outDir, 5000);
      assert.deepEqual(left, [], 'the janitor removed every temp file');
      assert.ok(!fs.existsSync(output), 'no output');
    });
  }

  test('while SQLite has the temp database open (-wal/-shm exist)', async () => {
    const outDir = path.join(dir, 'out-sqlite');
    const output = path.join(outDir, 'restored.db');
    const c = runChild(output, 'none');
    // Poll until SQLite's -shm of the temp database appears, then kill.
    const end = Date.now() + 60_000;
    let seen: string[] = [];
    while (Date.now() < end) {
      seen = fs.existsSync(outDir) ? strayFiles(outDir) : [];
      if (seen.some((n) => n.endsWith('-shm')) || c.lines.includes('done')) break;
      await new Promise((r) => setTimeout(r, 2));
    }
    c.kill('SIGKILL');
    await exited(c);
    if (c.lines.includes('done')) {
      // The restore finished before we caught it: nothing to clean, output is complete.
      assert.deepEqual(strayFiles(outDir), []);
      return;
    }
    assert.ok(seen.some((n) => n.endsWith('-shm')), `killed while verifying: ${seen.join(', ')}`);
    assert.deepEqual(await waitClean(outDir, 5000), []);
    assert.ok(!fs.existsSync(output));
  });

  test('a later restore removes leftovers whose janitor died too, then succeeds', async () => {
    const outDir = path.join(dir, 'out-janitorless');
    fs.mkdirSync(outDir, { recursive: true });
    fs.writeFileSync(path.join(outDir, '.restored.db.walship-restore-999999998-0a0b0c'), 'x');
    fs.writeFileSync(path.join(outDir, '.restored.db.walship-restore-999999998-0a0b0c-shm'), 'x');
    const output = path.join(outDir, 'restored.db');
    const c = runChild(output, 'none');
    await c.waitFor(/^done$/, 120_000);
    assert.deepEqual(strayFiles(outDir), []);
    assert.ok(fs.existsSync(output));
  });
});
