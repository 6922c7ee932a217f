import assert from 'node:assert/strict';
import { existsSync, mkdirSync, readFileSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { FILE_BACKEND, REPLICATOR, RESTORE, fileUrl, integrity, makeReplica, readIds, requires, runCli, tempDir, writeConfig } from './helpers.js';

describe('restore', () => {
  const { dir, cleanup } = tempDir();
  after(cleanup);
  let skip: string | false = false;
  let fx: { db: string; replica: string; ids: number[] } | undefined;
  let cfg = '';

  before(async () => {
    skip = await requires([FILE_BACKEND, REPLICATOR, RESTORE]);
    if (skip) return;
    fx = await makeReplica(dir, 40);
    cfg = writeConfig(dir, `dbs:\n  - path: ${fx.db}\n    replicas:\n      - name: local\n        path: ${fx.replica}\n`);
  });

  test('restore -o OUT URL (Go and GNU spellings)', async (t) => {
    if (skip) return t.skip(skip);
    for (const args of [['-o', 'a.db'], ['--output', 'b.db'], ['-o=c.db'], ['--output=d.db'], ['-output', 'e.db']]) {
      const r = await runCli(['restore', ...args, fileUrl(fx!.replica)], { cwd: dir });
      assert.equal(r.code, 0, r.stderr);
      const out = join(dir, args.length === 2 ? args[1]! : args[0]!.split('=')[1]!);
      assert.equal(integrity(out), 'ok');
      assert.deepEqual(readIds(out), fx!.ids);
    }
  });

  test('a URL needs -o', async (t) => {
    if (skip) return t.skip(skip);
    const r = await runCli(['restore', fileUrl(fx!.replica)]);
    assert.equal(r.code, 1);
    assert.equal(r.stderr, 'walship: output path required\n');
  });

  test('config mode: DB_PATH, -replica, output defaults to the DB path', async (t) => {
    if (skip) return t.skip(skip);
    const out = join(dir, 'cfg-out.db');
    let r = await runCli(['restore', '-config', cfg, '-replica', 'local', '-o', out, fx!.db]);
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(readIds(out), fx!.ids);
    // Without -o the database path itself is the target, which exists.
    r = await runCli(['restore', '-config', cfg, fx!.db]);
    assert.equal(r.code, 1);
    assert.equal(r.stdout, '');
    assert.match(r.stderr, /^walship: .*already exists.*\n$/);
    r = await runCli(['restore', '-config', cfg, '-replica', 'nope', '-o', out, fx!.db]);
    assert.equal(r.code, 1);
    assert.equal(r.stderr, `walship: replica "nope" not found for database "${fx!.db}"\n`);
  });

  test('existing output: error and untouched; -if-db-not-exists skips; --overwrite replaces', async (t) => {
    if (skip) return t.skip(skip);
    const out = join(dir, 'exists.db');
    writeFileSync(out, 'precious');
    let r = await runCli(['restore', '-o', out, fileUrl(fx!.replica)]);
    assert.equal(r.code, 1);
    assert.equal(r.stdout, '');
    assert.equal(r.stderr.split('\n').length, 2, 'one line');
    assert.equal(r.stderr, `walship: cannot restore, output path already exists: ${out} (use --overwrite to replace it or -if-db-not-exists to skip)\n`);
    assert.equal(readFileSync(out, 'utf8'), 'precious');

    for (const flag of ['-if-db-not-exists', '--if-db-not-exists']) {
      r = await runCli(['restore', flag, '-o', out, fileUrl(fx!.replica)]);
      assert.equal(r.code, 0, r.stderr);
      assert.equal(r.stdout.match(/level=INFO msg="database already exists, skipping"/g)?.length, 1, r.stdout);
      assert.equal(readFileSync(out, 'utf8'), 'precious');
    }

    r = await runCli(['restore', '--overwrite', '-o', out, fileUrl(fx!.replica)]);
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(readIds(out), fx!.ids);
  });

  test('no backups: error, or exit 0 with -if-replica-exists', async (t) => {
    if (skip) return t.skip(skip);
    const empty = join(dir, 'empty-replica');
    mkdirSync(empty);
    const out = join(dir, 'none.db');
    let r = await runCli(['restore', '-o', out, fileUrl(empty)]);
    assert.equal(r.code, 1);
    assert.equal(r.stdout, '');
    assert.equal(r.stderr, 'walship: no matching backups found\n');
    assert.ok(!existsSync(out));
    for (const flag of ['-if-replica-exists', '--if-replica-exists=true']) {
      r = await runCli(['restore', flag, '-o', out, fileUrl(empty)]);
      assert.equal(r.code, 0, r.stderr);
      assert.equal(r.stdout.match(/level=INFO msg="no matching backups found"/g)?.length, 1, r.stdout);
      assert.ok(!existsSync(out));
    }
    assert.deepEqual(readdirSync(empty), [], 'nothing written to the replica');
  });

  test('-generation, -index, -timestamp, -parallelism, --verify', async (t) => {
    if (skip) return t.skip(skip);
    const gen = readdirSync(join(fx!.replica, 'generations'))[0]!;
    const cases: string[][] = [
      ['-generation', gen],
      ['--generation', gen, '-index', '0'],
      ['-timestamp', new Date(Date.now() + 0).toISOString().replace(/\.\d+Z$/, 'Z'), '-if-replica-exists'],
      ['-parallelism', '1'],
      ['--parallelism=3', '--verify', 'quick'],
      ['--verify=none'],
      ['--verify', 'integrity', '--partial'],
    ];
    let n = 0;
    for (const args of cases) {
      const out = join(dir, `opt-${n++}.db`);
      const r = await runCli(['restore', ...args, '-o', out, fileUrl(fx!.replica)]);
      assert.equal(r.code, 0, `${args.join(' ')}: ${r.stderr}`);
      if (existsSync(out)) assert.equal(integrity(out), 'ok');
    }
    const r = await runCli(['restore', '-generation', 'ffffffffffffffff', '-o', join(dir, 'nogen.db'), fileUrl(fx!.replica)]);
    assert.equal(r.code, 1);
    assert.equal(r.stderr, 'walship: no matching backups found\n');
  });

  test('--progress shows bytes, percent and speed on stderr; quiet by default off a terminal', async (t) => {
    if (skip) return t.skip(skip);
    let r = await runCli(['restore', '--progress', '-o', join(dir, 'p1.db'), fileUrl(fx!.replica)]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stderr, /\r(snapshot|wal|verify) {2}\d+(\.\d)? (B|KiB|MiB)( \/ \d+(\.\d)? (B|KiB|MiB))? {2}(\d+% {2})?\d+(\.\d)? (B|KiB|MiB)\/s/);
    r = await runCli(['restore', '-o', join(dir, 'p2.db'), fileUrl(fx!.replica)]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stderr, '');
  });

  test('restore creates missing parent directories of the output', async (t) => {
    if (skip) return t.skip(skip);
    const out = join(dir, 'sub', 'dir', 'deep.db');
    const r = await runCli(['restore', '-o', out, fileUrl(fx!.replica)]);
    assert.equal(r.code, 0, r.stderr);
    assert.ok(statSync(out).isFile());
    assert.deepEqual(readIds(out), fx!.ids);
  });
});
