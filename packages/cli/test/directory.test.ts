/**
 * Directory entries (`dir:`, issue 16) through the real CLI: replicate a directory of tenant
 * databases while watching it, restore one tenant by its path, restore the whole directory,
 * and have the real Litestream v0.3.13 restore one tenant's replica on its own.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import {
  FILE_BACKEND,
  RESTORE,
  litestreamBin,
  openWriter,
  readIds,
  requires,
  runCli,
  sleep,
  spawnCli,
  tempDir,
  writeConfig,
} from './helpers.js';

function makeTenant(file: string, rows: number): void {
  mkdirSync(join(file, '..'), { recursive: true });
  const w = openWriter(file);
  for (let i = 0; i < rows; i++) w.insert();
  w.close();
}

test('replicate a dir: entry, watching: each tenant replicated under <replica>/<relative path>, new ones picked up, restore one and all', async (t) => {
  const missing = await requires([FILE_BACKEND, RESTORE]);
  if (missing) return t.skip(missing);
  const { dir, cleanup } = tempDir('walship-cli-dir-');
  t.after(cleanup);
  const tenants = join(dir, 'tenants');
  const backup = join(dir, 'backup');
  makeTenant(join(tenants, 'a.db'), 3);
  makeTenant(join(tenants, 'eu', 'b.db'), 5);
  writeFileSync(join(tenants, 'readme.db'), 'not a database '.repeat(20));
  const cfg = writeConfig(
    dir,
    `dbs:\n  - dir: ${tenants}\n    pattern: "*.db"\n    recursive: true\n    watch: true\n    replica:\n      path: ${backup}\n`,
  );
  const cli = spawnCli(['replicate', '-config', cfg], { timeoutMs: 90_000 });
  t.after(() => cli.kill('SIGKILL'));
  await cli.waitFor(/msg="initialized dir"[^\n]*databases=2/);
  await cli.waitFor(/skipping file: not a SQLite database[^\n]*readme\.db/);
  // A tenant created while watching.
  makeTenant(join(tenants, 'eu', 'c.db'), 7);
  await cli.waitFor(/msg="replicating database"[^\n]*eu\/c\.db/, 10_000);
  await sleep(1_500);
  cli.kill('SIGTERM');
  const r = await cli.exited;
  assert.equal(r.code, 0, r.stdout + r.stderr);
  assert.equal((r.stdout.match(/not a SQLite database/g) ?? []).length, 1, 'the non-database is reported once');
  for (const rel of ['a.db', 'eu/b.db', 'eu/c.db'])
    assert.ok(existsSync(join(backup, rel, 'generations')), `${rel} has its own replica root`);

  // `walship databases` lists the entry.
  const listed = await runCli(['databases', '-config', cfg]);
  assert.equal(listed.code, 0, listed.stderr);
  assert.match(listed.stdout, new RegExp(`${tenants}/\\*\\*/\\*\\.db\\s+file`));

  // One tenant by its path (the config's entry gives its replica).
  const one = join(dir, 'one.db');
  const r1 = await runCli(['restore', '-config', cfg, '-o', one, join(tenants, 'eu', 'c.db')]);
  assert.equal(r1.code, 0, r1.stdout + r1.stderr);
  assert.equal(readIds(one).length, 7);
  // Its generations, like any database's.
  const gens = await runCli(['generations', '-config', cfg, join(tenants, 'eu', 'b.db')]);
  assert.equal(gens.code, 0, gens.stderr);
  assert.match(gens.stdout, /^name\s+generation/m);

  // The whole directory, into a new place.
  const out = join(dir, 'restored');
  const all = await runCli(['restore', '-config', cfg, '-o', out, tenants]);
  assert.equal(all.code, 0, all.stdout + all.stderr);
  assert.match(all.stdout + all.stderr, /directory restore finished[^\n]*restored=3 skipped=0 failed=0/);
  assert.deepEqual(
    ['a.db', 'eu/b.db', 'eu/c.db'].map((rel) => readIds(join(out, rel)).length),
    [3, 5, 7],
  );
  // Again: every output exists — each fails alone, the summary says so, exit 1; -if-db-not-exists skips them.
  const again = await runCli(['restore', '-config', cfg, '-o', out, tenants]);
  assert.equal(again.code, 1, again.stdout + again.stderr);
  assert.match(again.stdout + again.stderr, /directory restore incomplete[^\n]*failed=3/);
  const skip = await runCli(['restore', '-config', cfg, '-o', out, '-if-db-not-exists', tenants]);
  assert.equal(skip.code, 0, skip.stdout + skip.stderr);
  assert.match(skip.stdout + skip.stderr, /restored=0 skipped=3 failed=0/);

  // -replica picks the entry's replica; an unknown one is an error.
  const named = await runCli(['restore', '-config', cfg, '-o', join(dir, 'named'), '-replica', 'file', tenants]);
  assert.equal(named.code, 0, named.stdout + named.stderr);
  assert.match(named.stdout + named.stderr, /restored=3 skipped=0 failed=0/);
  const unknown = await runCli(['restore', '-config', cfg, '-o', join(dir, 'named'), '-replica', 'nope', tenants]);
  assert.equal(unknown.code, 1);
  assert.match(unknown.stderr, /replica "nope" not found for directory/);

  // Flags that name one database's history are usage errors with a directory.
  const bad = await runCli(['restore', '-config', cfg, '-o', out, '-index', '1', tenants]);
  assert.equal(bad.code, 1, bad.stderr);
  assert.match(bad.stderr, /cannot combine a directory .* with -index/);
  const notOne = await runCli(['snapshots', '-config', cfg, tenants]);
  assert.notEqual(notOne.code, 0);
  assert.match(notOne.stderr, /is a directory entry .*name one of its databases/);
});

test('dir: config errors are one line each, naming the key and the fix', async () => {
  const { dir, cleanup } = tempDir('walship-cli-dir-cfg-');
  try {
    const cases: Array<[string, RegExp]> = [
      [
        `dbs:\n  - dir: ${dir}\n    replicas:\n      - path: ${dir}/b\n`,
        /:2: .*pattern required for dir: add a glob on file names, e.g. pattern: "\*\.db"/,
      ],
      [`dbs:\n  - dir: ${dir}\n    pattern: "x/*.db"\n    replicas:\n      - path: ${dir}/b\n`, /:3: .*cannot hold "\/"/],
      [`dbs:\n  - path: ${dir}/a.db\n    dir: ${dir}\n    pattern: "*.db"\n`, /either path \(one database\) or dir/],
      [`dbs:\n  - path: ${dir}/a.db\n    watch: true\n    replicas:\n      - path: ${dir}/b\n`, /watch applies only to dir entries/],
      [`dbs:\n  - dir: ${dir}\n    pattern: "*.db"\n    meta-path: ${dir}/m\n`, /meta-path does not apply to dir entries/],
      [
        `dbs:\n  - dir: ${dir}\n    pattern: "*.db"\n    replica:\n      path: ${dir}/b\n    replicas:\n      - path: ${dir}/c\n`,
        /either replica \(one replica\) or replicas/,
      ],
      [
        `dbs:\n  - dir: ${dir}/missing\n    pattern: "*.db"\n    replica:\n      path: ${dir}/b\n`,
        /directory does not exist: .*missing \(create it or fix dir at /,
      ],
      [
        `dbs:\n  - dir: ${dir}\n    pattern: "*.db"\n    replica:\n      path: ${dir}/b\n  - path: ${dir}/t.db\n    replica:\n      path: ${dir}/c\n`,
        /:6: dbs\[1\]: database .*t\.db is also covered by the dir entry at .*:2: dbs\[0\]: remove it from one of them/,
      ],
      [
        `dbs:\n  - dir: ${dir}\n    pattern: "*.db"\n    recursive: true\n  - dir: ${dir}/sub\n    pattern: "*.db"\n`,
        /directory .*sub is inside the recursive dir entry at .*: remove one, or make the outer one non-recursive/,
      ],
      [`dbs:\n  - dir: ${dir}\n    pattern:\n`, /:2: .*pattern required for dir/],
    ];
    for (const [text, want] of cases) {
      const cfg = writeConfig(dir, text);
      const r = await runCli(['replicate', '-config', cfg]);
      assert.notEqual(r.code, 0, `${text}\n${r.stdout}${r.stderr}`);
      assert.match(r.stderr, want, `${text}\n${r.stderr}`);
      assert.equal(r.stderr.trim().split('\n').length, 1, `one line:\n${r.stderr}`);
    }
  } finally {
    cleanup();
  }
});

test('Litestream v0.3.13 restores one tenant of a directory replica on its own', async (t) => {
  const missing = await requires([FILE_BACKEND, RESTORE]);
  if (missing) return t.skip(missing);
  const bin = litestreamBin();
  if (!bin) {
    if (process.env.CI === 'true')
      assert.fail('the Litestream binary is required under CI=true: set LITESTREAM_BIN or provide ../shared/bin/litestream-v0.3.13');
    return t.skip('Litestream binary not found (LITESTREAM_BIN or ../shared/bin/litestream-v0.3.13)');
  }
  const { dir, cleanup } = tempDir('walship-cli-dir-ls-');
  t.after(cleanup);
  const tenants = join(dir, 'tenants');
  const backup = join(dir, 'backup');
  makeTenant(join(tenants, 'x.db'), 11);
  const cfg = writeConfig(dir, `dbs:\n  - dir: ${tenants}\n    pattern: "*.db"\n    replicas:\n      - url: file://${backup}\n`);
  const cli = spawnCli(['replicate', '-config', cfg]);
  t.after(() => cli.kill('SIGKILL'));
  await cli.waitFor(/msg="initialized dir"[^\n]*databases=1/);
  await cli.waitFor(/snapshot written/, 20_000);
  cli.kill('SIGTERM');
  assert.equal((await cli.exited).code, 0);
  const out = join(dir, 'ls.db');
  const r = await new Promise<{ code: number | null; text: string }>((resolve, reject) => {
    const child = spawn(bin, ['restore', '-o', out, `file://${join(backup, 'x.db')}`], {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, LITESTREAM_CONFIG: '' },
    });
    let text = '';
    child.stdout.on('data', (d) => (text += d));
    child.stderr.on('data', (d) => (text += d));
    child.once('error', reject);
    child.once('close', (code) => resolve({ code, text }));
  });
  assert.equal(r.code, 0, r.text);
  assert.equal(readIds(out).length, 11);
});

test('/healthz counts a directory database that failed to start as unhealthy, naming it and why', async (t) => {
  const { DirectoryReplicator } = await import('@walship/core');
  const { FileReplicaClient } = await import('@walship/file');
  const { Metrics } = await import('../src/metrics.js');
  const { dir, cleanup } = tempDir('walship-cli-dir-health-');
  const tenants = join(dir, 'tenants');
  makeTenant(join(tenants, 'a.db'), 2);
  makeTenant(join(tenants, 'b.db'), 2);
  const client = new FileReplicaClient({ path: join(dir, 'backup') });
  // Another replicator holds b.db: the directory's start of b.db fails with LockedError.
  const holder = new DirectoryReplicator(tenants, { pattern: 'b.db', replicas: [{ client }] });
  await holder.start();
  const d = new DirectoryReplicator(tenants, { pattern: '*.db', replicas: [{ client }] });
  t.after(async () => {
    await d.stop();
    await holder.stop();
    cleanup();
  });
  await d.start();
  const metrics = new Metrics();
  metrics.watchDirectory(tenants, d);
  for (const db of d.databases()) metrics.watch(db.path, d.replicator(db.path)!, new Map([['file', 'file']]));
  const h = metrics.health();
  assert.equal(h.status, 'unhealthy', JSON.stringify(h));
  assert.deepEqual(
    h.unhealthy.map((u) => u.db),
    [join(tenants, 'b.db')],
    'only the database that is not replicated is unhealthy',
  );
  assert.match(h.unhealthy[0]!.error ?? '', /^not replicated: .*already being replicated/, 'the reason is named');
  assert.ok(
    h.dbs.some((x) => x.path === join(tenants, 'a.db') && x.replicas.length === 1 && x.replicas[0]!.healthy),
    JSON.stringify(h.dbs),
  );
});
