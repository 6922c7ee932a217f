import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { PACKAGE_DIR, runCli, tempDir, writeConfig } from './helpers.js';

const pkg = JSON.parse(readFileSync(join(PACKAGE_DIR, 'package.json'), 'utf8')) as { version: string };

/** One line on stderr starting with `walship: `, nothing on stdout, exit 1. */
function assertUserError(r: { code: number | null; stdout: string; stderr: string }, re: RegExp): void {
  assert.equal(r.code, 1, `exit code (stderr: ${r.stderr})`);
  assert.equal(r.stdout, '', 'nothing on stdout');
  const lines = r.stderr.trimEnd().split('\n');
  assert.equal(lines.length, 1, `one line on stderr, got:\n${r.stderr}`);
  assert.match(lines[0]!, /^walship: /);
  assert.match(lines[0]!, re);
  assert.doesNotMatch(r.stderr, /\n\s+at /, 'no stack trace');
}

describe('version and help', () => {
  test('version prints the package.json version, v-prefixed as Litestream prints its own', async () => {
    const r = await runCli(['version']);
    assert.equal(r.code, 0);
    assert.equal(r.stdout, `v${pkg.version}\n`);
    assert.equal(r.stderr, '');
  });

  test('--version is an alias', async () => {
    const r = await runCli(['--version']);
    assert.equal(r.code, 0);
    assert.equal(r.stdout.trim(), `v${pkg.version}`);
  });

  test('version takes no arguments', async () => {
    assertUserError(await runCli(['version', 'x']), /too many arguments/);
  });

  test('no command prints the usage on stderr and exits 1 (as Litestream)', async () => {
    const r = await runCli([]);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /walship <command> \[arguments\]/);
    for (const c of ['databases', 'generations', 'replicate', 'restore', 'snapshots', 'version', 'wal'])
      assert.match(r.stderr, new RegExp(`\\t${c}\\s`));
  });

  test('help, -h and --help print the usage on stdout and exit 0', async () => {
    for (const args of [['help'], ['-h'], ['--help']]) {
      const r = await runCli(args);
      assert.equal(r.code, 0, args.join(' '));
      assert.match(r.stdout, /The commands are:/);
    }
  });

  test('help COMMAND and COMMAND -h/--help/-help show the command flags', async () => {
    for (const args of [
      ['help', 'restore'],
      ['restore', '-h'],
      ['restore', '--help'],
      ['restore', '-help'],
    ]) {
      const r = await runCli(args);
      assert.equal(r.code, 0, args.join(' '));
      assert.match(r.stdout, /walship restore \[flags\] DB_PATH/);
      for (const f of [
        '--config',
        '--no-expand-env',
        '-o, --output',
        '--replica',
        '--generation',
        '--index',
        '--timestamp',
        '--parallelism',
        '--if-db-not-exists',
        '--if-replica-exists',
        '--overwrite',
        '--partial',
        '--verify',
      ]) {
        assert.ok(r.stdout.includes(f), `${f} in help`);
      }
    }
  });

  test('every command has -h', async () => {
    for (const c of ['databases', 'generations', 'replicate', 'restore', 'snapshots', 'wal', 'version']) {
      const r = await runCli([c, '-h']);
      assert.equal(r.code, 0, c);
      assert.match(r.stdout, new RegExp(`walship ${c}`));
    }
  });

  test('unknown command', async () => {
    assertUserError(await runCli(['frobnicate']), /unknown command "frobnicate"/);
  });

  test('unknown flag: one line with a usage hint, Go and GNU spelling', async () => {
    assertUserError(await runCli(['restore', '-bogus', 'x']), /unknown flag -bogus for restore \(see walship restore -h\)/);
    assertUserError(await runCli(['restore', '--bogus=1', 'x']), /unknown flag --bogus for restore/);
    assertUserError(await runCli(['generations', '--overwrite', 'x']), /unknown flag --overwrite for generations/);
  });

  test('a flag before the command is rejected with a hint', async () => {
    assertUserError(await runCli(['-config', 'x', 'databases']), /flags go after the command/);
  });

  test('a string flag without a value', async () => {
    assertUserError(await runCli(['restore', 'x', '-o']), /flag -o needs a value/);
  });

  test('a bad boolean value', async () => {
    assertUserError(await runCli(['databases', '--json=maybe']), /invalid boolean value "maybe" for -json/);
  });

  test('Litestream restore usage mentions -v: walship accepts it', async () => {
    const r = await runCli(['restore', '-v', '-index', 'zz', 'x']);
    assertUserError(r, /invalid hexadecimal format/);
  });
});

describe('restore flag validation (before anything is read or written)', () => {
  test('-index must be hex: Go and GNU forms', async () => {
    for (const args of [
      ['-index', 'xyz'],
      ['-index=xyz'],
      ['--index', 'xyz'],
      ['--index=xyz'],
      ['-index', '0x10'],
      ['-index', '-1'],
      ['-index', '100000000'],
    ]) {
      assertUserError(
        await runCli(['restore', ...args, '-o', '/tmp/none', 'file:///nonexistent']),
        /^walship: invalid hexadecimal format$/,
      );
    }
  });

  test('-timestamp must be RFC 3339', async () => {
    for (const ts of [
      'yesterday',
      '2024-01-02',
      '2024-01-02 03:04:05Z',
      '2024-13-02T03:04:05Z',
      '2024-02-30T03:04:05Z',
      '2024-01-02T25:00:00Z',
    ]) {
      assertUserError(
        await runCli(['restore', '-timestamp', ts, '-o', '/tmp/none', 'file:///nonexistent']),
        /^walship: invalid -timestamp, must specify in ISO 8601 format \(e\.g\. 2000-01-01T00:00:00Z\)$/,
      );
    }
  });

  test('-index and -timestamp together', async () => {
    assertUserError(
      await runCli(['restore', '-index', '1', '--timestamp=2024-01-02T03:04:05Z', '-o', '/tmp/none', 'file:///x']),
      /cannot specify index & timestamp to restore/,
    );
  });

  test('-parallelism must be a number', async () => {
    assertUserError(
      await runCli(['restore', '-parallelism', 'many', '-o', '/tmp/x', 'file:///x']),
      /invalid value "many" for -parallelism/,
    );
  });

  test('--verify takes integrity, quick or none', async () => {
    assertUserError(
      await runCli(['restore', '--verify', 'full', '-o', '/tmp/x', 'file:///x']),
      /invalid value "full" for -verify: use integrity, quick or none/,
    );
  });

  test('--overwrite and -if-db-not-exists conflict', async () => {
    assertUserError(
      await runCli(['restore', '--overwrite', '-if-db-not-exists', '-o', '/tmp/x', 'file:///x']),
      /cannot combine -overwrite and -if-db-not-exists/,
    );
  });

  test('missing and extra positionals', async () => {
    assertUserError(await runCli(['restore']), /^walship: database path or replica URL required$/);
    assertUserError(await runCli(['restore', 'a', 'b']), /^walship: too many arguments$/);
    assertUserError(await runCli(['generations']), /^walship: database path or replica URL required$/);
    assertUserError(await runCli(['snapshots']), /^walship: database path required$/);
    assertUserError(await runCli(['wal']), /^walship: database path required$/);
    assertUserError(await runCli(['wal', 'a', 'b']), /^walship: too many arguments$/);
  });

  test('a replica URL together with -config', async () => {
    const { dir, cleanup } = tempDir();
    after(cleanup);
    const cfg = writeConfig(dir, 'dbs: []\n');
    const re = /^walship: cannot specify a replica URL and the -config flag$/;
    assertUserError(await runCli(['restore', '-config', cfg, '-o', join(dir, 'out'), 's3://bucket/db']), re);
    for (const cmd of ['generations', 'snapshots', 'wal']) assertUserError(await runCli([cmd, '--config', cfg, 's3://bucket/db']), re);
    assertUserError(await runCli(['replicate', '-config', cfg, join(dir, 'db'), 's3://bucket/db']), re);
  });
});

describe('databases', () => {
  const { dir, cleanup } = tempDir();
  after(cleanup);
  const cfg = writeConfig(dir, `dbs:\n  - path: ${dir}/b.db\n  - path: ${dir}/a-longer-name.db\n`);

  test('lists databases as an aligned table (all flag spellings)', async () => {
    for (const args of [['-config', cfg], ['--config', cfg], [`-config=${cfg}`], [`--config=${cfg}`]]) {
      const r = await runCli(['databases', ...args]);
      assert.equal(r.code, 0, r.stderr);
      const width = `${dir}/a-longer-name.db`.length + 2;
      assert.equal(
        r.stdout,
        `${'path'.padEnd(width)}replicas\n${`${dir}/b.db`.padEnd(width)}\n${`${dir}/a-longer-name.db`.padEnd(width)}\n`,
      );
    }
  });

  test('--json and -json print an array of objects', async () => {
    for (const flag of ['--json', '-json', '--json=true']) {
      const r = await runCli(['databases', '-config', cfg, flag]);
      assert.equal(r.code, 0, r.stderr);
      assert.deepEqual(JSON.parse(r.stdout), [
        { path: `${dir}/b.db`, replicas: [] },
        { path: `${dir}/a-longer-name.db`, replicas: [] },
      ]);
    }
  });

  test('config from WALSHIP_CONFIG, then LITESTREAM_CONFIG', async () => {
    const other = writeConfig(dir, `dbs:\n  - path: /other.db\n`, 'other.yml');
    let r = await runCli(['databases', '--json'], { env: { WALSHIP_CONFIG: cfg, LITESTREAM_CONFIG: other } });
    assert.equal(JSON.parse(r.stdout).length, 2);
    r = await runCli(['databases', '--json'], { env: { LITESTREAM_CONFIG: other } });
    assert.deepEqual(JSON.parse(r.stdout), [{ path: '/other.db', replicas: [] }]);
    r = await runCli(['databases', '--json', '-config', other], { env: { WALSHIP_CONFIG: cfg } });
    assert.deepEqual(JSON.parse(r.stdout), [{ path: '/other.db', replicas: [] }], '-config wins');
  });

  test('relative -config and db paths resolve against the working directory', async () => {
    writeConfig(dir, `dbs:\n  - path: rel.db\n`, 'rel.yml');
    const r = await runCli(['databases', '--json', '-config', 'rel.yml'], { cwd: dir });
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(JSON.parse(r.stdout), [{ path: join(dir, 'rel.db'), replicas: [] }]);
  });

  test('missing config file', async () => {
    assertUserError(await runCli(['databases', '-config', join(dir, 'nope.yml')]), new RegExp(`config file not found: ${dir}/nope.yml`));
    assertUserError(await runCli(['databases'], { env: { WALSHIP_CONFIG: join(dir, 'nope.yml') } }), /config file not found/);
  });

  test('no config anywhere', async (t) => {
    if (existsSync('/etc/walship.yml') || existsSync('/etc/litestream.yml')) return t.skip('a default config file exists on this machine');
    for (const cmd of ['databases', 'replicate']) {
      assertUserError(
        await runCli([cmd]),
        /config file not found: tried \/etc\/walship\.yml and \/etc\/litestream\.yml; pass -config FILE or set WALSHIP_CONFIG/,
      );
    }
    assertUserError(
      await runCli(['snapshots', '/data/app.db']),
      /config file not found: .* \(to read a replica directly, pass its URL, e\.g\. file:\/\/\/backups\/db\)/,
    );
  });

  test('databases takes no positional argument', async () => {
    assertUserError(await runCli(['databases', '-config', cfg, 'x']), /^walship: too many arguments$/);
  });

  test('database not found in config', async () => {
    for (const cmd of ['generations', 'snapshots', 'wal', 'restore']) {
      assertUserError(
        await runCli([cmd, '-config', cfg, join(dir, 'missing.db')]),
        new RegExp(`database not found in config: ${dir}/missing.db`),
      );
    }
  });
});
