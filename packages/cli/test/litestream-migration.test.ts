/**
 * Issue 19, as an operator does it: `litestream replicate` runs, is stopped, and `walship
 * replicate` with the same litestream.yml continues Litestream's generation — no snapshot, no
 * new generation — and both tools restore every row.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { test } from 'node:test';
import {
  FILE_BACKEND,
  REPLICATOR,
  RESTORE,
  litestreamBin,
  openWriter,
  readIds,
  requires,
  runCli,
  spawnCli,
  tempDir,
  writeConfig,
} from './helpers.js';

const count = (text: string, re: RegExp) => text.split('\n').filter((l) => re.test(l)).length;

async function until(cond: () => boolean, ms: number, what: string, output: () => string): Promise<void> {
  const deadline = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}:\n${output()}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

for (const metaPath of [false, true]) {
  test(`walship replicate continues the generation litestream replicate left (${metaPath ? 'with meta-path' : 'default meta directories'})`, async (t) => {
    const missing = await requires([FILE_BACKEND, REPLICATOR, RESTORE]);
    if (missing) return t.skip(missing);
    const bin = litestreamBin();
    if (!bin) {
      if (process.env['CI'] === 'true')
        assert.fail('the Litestream binary is required under CI=true: set LITESTREAM_BIN or provide ../shared/bin/litestream-v0.3.13');
      return t.skip('Litestream binary not found (LITESTREAM_BIN or ../shared/bin/litestream-v0.3.13)');
    }
    const { dir, cleanup } = tempDir('walship-cli-migrate-');
    t.after(cleanup);
    const db = join(dir, 'app.db');
    const config = writeConfig(
      dir,
      [
        'dbs:',
        `  - path: ${db}`,
        ...(metaPath ? [`    meta-path: ${join(dir, 'meta')}`] : []),
        '    replicas:',
        '      - type: file',
        `        path: ${join(dir, 'replica')}`,
        '        sync-interval: 100ms',
        '',
      ].join('\n'),
      'litestream.yml',
    );
    const w = openWriter(db);
    t.after(() => w.close());
    for (let i = 0; i < 20; i++) w.insert();

    const ls = spawn(bin, ['replicate', '-config', config], {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, LITESTREAM_CONFIG: '' },
    });
    let lsLog = '';
    ls.stdout.setEncoding('utf8').on('data', (d: string) => (lsLog += d));
    ls.stderr.setEncoding('utf8').on('data', (d: string) => (lsLog += d));
    const lsExit = new Promise<number | null>((r) => ls.once('close', (code) => r(code)));
    try {
      await until(
        () => count(lsLog, /wal segment written/) >= 1,
        30_000,
        'litestream to replicate',
        () => lsLog,
      );
      const before = count(lsLog, /wal segment written/);
      for (let i = 0; i < 10; i++) w.insert();
      await until(
        () => count(lsLog, /wal segment written/) > before,
        30_000,
        'litestream to ship the new rows',
        () => lsLog,
      );
    } finally {
      ls.kill('SIGTERM');
      assert.equal(await lsExit, 0, lsLog);
    }
    const generation = /generation=([0-9a-f]{16})/.exec(lsLog)?.[1];
    assert.ok(generation, `litestream's generation in:\n${lsLog}`);
    for (let i = 0; i < 10; i++) w.insert(); // while neither tool runs

    const cli = spawnCli(['replicate', '-config', config], { timeoutMs: 60_000 });
    try {
      const m = await cli.waitFor(/msg="continuing litestream generation"[^\n]*\n/);
      assert.match(m[0], new RegExp(`generation=${generation}`));
      await cli.waitFor(/msg="wal segment written"/);
      const out = () => cli.output().stdout + cli.output().stderr;
      const before = count(out(), /msg="wal segment written"/);
      for (let i = 0; i < 10; i++) w.insert();
      await until(() => count(out(), /msg="wal segment written"/) > before, 30_000, 'walship to ship the new rows', out);
    } finally {
      cli.kill('SIGTERM');
    }
    const r = await cli.exited;
    assert.equal(r.code, 0, r.stdout + r.stderr);
    assert.doesNotMatch(r.stdout + r.stderr, /msg="new generation"|msg="snapshot written"/, 'no new generation, no snapshot');

    const ids = Array.from({ length: w.maxId() }, (_, i) => i + 1);
    assert.equal(ids.length, 50);
    const mine = join(dir, 'walship-restored.db');
    const res = await runCli(['restore', '-config', config, '-o', mine, db]);
    assert.equal(res.code, 0, res.stderr);
    assert.deepEqual(readIds(mine), ids, 'walship restore');
    const theirs = join(dir, 'litestream-restored.db');
    const lr = await new Promise<number | null>((done) =>
      spawn(bin, ['restore', '-config', config, '-o', theirs, db], { stdio: 'ignore' }).once('close', done),
    );
    assert.equal(lr, 0);
    assert.deepEqual(readIds(theirs), ids, 'litestream restore');
  });
}
