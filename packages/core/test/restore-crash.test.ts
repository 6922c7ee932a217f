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

/** Pids of live restore janitors for `outDir` (argv: node -e <script> <dir> <prefix>); undefined without /proc. */
function janitorPids(outDir: string): number[] | undefined {
  if (!fs.existsSync('/proc/self/cmdline')) return undefined;
  const pids: number[] = [];
  for (const name of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    let argv: string[];
    try {
      argv = fs.readFileSync(`/proc/${name}/cmdline`, 'utf8').split('\0');
    } catch {
      continue; // exited meanwhile
    }
    if (argv[1] === '-e' && argv[argv.length - 3] === outDir) pids.push(Number(name));
  }
  return pids;
}

/**
 * After the restoring process was killed: waits until its janitor has exited (so its work is
 * done), then returns the temp files left. Without /proc, waits for the files to go instead.
 * The deadline only bounds a hang.
 */
async function afterJanitor(outDir: string): Promise<string[]> {
  const end = Date.now() + 60_000;
  for (;;) {
    const pids = janitorPids(outDir);
    const left = strayFiles(outDir);
    if (pids ? pids.length === 0 : left.length === 0) return left;
    if (Date.now() > end) throw new Error(`janitor still running after 60 s (pids ${pids?.join(', ')}; files ${left.join(', ')})`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

describe('restore: kill -9', () => {
  for (const phase of ['snapshot', 'wal', 'verify']) {
    test(`during the ${phase} phase leaves no output and no stray files`, async () => {
      const outDir = path.join(dir, `out-${phase}`);
      const output = path.join(outDir, 'restored.db');
      const c = runChild(output, phase);
      await c.waitFor(new RegExp(`^phase ${phase}$`), 60_000);
      assert.ok(strayFiles(outDir).length > 0, 'the restore had temp files when it was killed');
      assert.notDeepEqual(janitorPids(outDir), [], 'a janitor watches the restore');
      c.kill('SIGKILL');
      await exited(c);
      const left = await afterJanitor(outDir);
      assert.deepEqual(left, [], 'the janitor removed every temp file');
      assert.ok(!fs.existsSync(output), 'no output');
    });
  }

  test('while SQLite has the temp database open (-wal/-shm exist)', async () => {
    const outDir = path.join(dir, 'out-sqlite');
    const output = path.join(outDir, 'restored.db');
    // This child blocks right after SQLite's integrity check returns, with the connection open.
    const c = spawnScript('restore-verify-child.ts', [fx.replicaDir, output]);
    await c.waitFor(/^sqlite-open$/, 60_000);
    const seen = strayFiles(outDir);
    assert.ok(
      seen.some((n) => n.endsWith('-shm')) && seen.some((n) => n.endsWith('-wal')),
      `killed while SQLite had it open: ${seen.join(', ')}`,
    );
    assert.notDeepEqual(janitorPids(outDir), [], 'a janitor watches the restore');
    c.kill('SIGKILL');
    await exited(c);
    assert.ok(!c.lines.includes('done'));
    assert.deepEqual(await afterJanitor(outDir), []);
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
