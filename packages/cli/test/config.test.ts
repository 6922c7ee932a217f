import assert from 'node:assert/strict';
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { FILE_BACKEND, requires, runCli, tempDir, writeConfig, type CliResult } from './helpers.js';

function assertConfigError(r: CliResult, file: string, line: number | undefined, re: RegExp): void {
  assert.equal(r.code, 1, `exit code; stderr: ${r.stderr}`);
  assert.equal(r.stdout, '', 'nothing on stdout');
  const lines = r.stderr.trimEnd().split('\n');
  assert.equal(lines.length, 1, `exactly one line on stderr, got:\n${r.stderr}`);
  const prefix = line === undefined ? `walship: ${file}` : `walship: ${file}:${line}: `;
  assert.ok(lines[0]!.startsWith(prefix), `"${lines[0]}" starts with "${prefix}"`);
  assert.match(lines[0]!, re);
}

describe('config errors: one line naming file, key and line; nothing started', () => {
  const { dir, cleanup } = tempDir();
  after(cleanup);
  const db = join(dir, 'db.sqlite');

  const cases: { name: string; yaml: string; line: number | undefined; re: RegExp }[] = [
    {
      name: 'unknown top-level key with suggestion',
      yaml: `adr: ":9090"\ndbs: []\n`,
      line: 1,
      re: /adr: unknown top-level key "adr": did you mean "addr"\?/,
    },
    {
      name: 'unknown top-level key without suggestion',
      yaml: `dbs: []\nwhatever: 1\n`,
      line: 2,
      re: /whatever: unknown top-level key "whatever": remove it or check the spelling/,
    },
    {
      name: 'unknown database key',
      yaml: `dbs:\n  - path: ${db}\n    monitor-intervall: 1s\n`,
      line: 3,
      re: /dbs\[0\]\.monitor-intervall: unknown database key "monitor-intervall": did you mean "monitor-interval"\?/,
    },
    {
      name: 'snake_case key suggests the kebab-case one',
      yaml: `dbs:\n  - path: ${db}\n    checkpoint_interval: 1m\n`,
      line: 3,
      re: /did you mean "checkpoint-interval"\?/,
    },
    {
      name: 'unknown logging key',
      yaml: `logging:\n  levle: debug\n`,
      line: 2,
      re: /logging\.levle: unknown logging key "levle": did you mean "level"\?/,
    },
    {
      name: 'bad duration',
      yaml: `dbs:\n  - path: ${db}\n    monitor-interval: 10 seconds\n`,
      line: 3,
      re: /dbs\[0\]\.monitor-interval: invalid duration "10 seconds": use a Go duration such as 10s, 5m or 24h/,
    },
    {
      name: '"d" is not a Go duration unit',
      yaml: `shutdown-sync-timeout: 1d\n`,
      line: 1,
      re: /shutdown-sync-timeout: invalid duration "1d"/,
    },
    {
      name: 'negative duration',
      yaml: `dbs:\n  - path: ${db}\n    checkpoint-interval: -1s\n`,
      line: 3,
      re: /duration must not be negative/,
    },
    {
      name: 'bad busy-timeout',
      yaml: `dbs:\n  - path: ${db}\n    busy-timeout: soon\n`,
      line: 3,
      re: /dbs\[0\]\.busy-timeout: invalid duration "soon"/,
    },
    {
      name: 'page count not a number',
      yaml: `dbs:\n  - path: ${db}\n    min-checkpoint-page-count: lots\n`,
      line: 3,
      re: /expected a whole number/,
    },
    {
      name: 'truncate-page-count not a number',
      yaml: `dbs:\n  - path: ${db}\n    truncate-page-count: -5\n`,
      line: 3,
      re: /dbs\[0\]\.truncate-page-count: expected a whole number/,
    },
    { name: 'logging.type', yaml: `logging:\n  type: xml\n`, line: 2, re: /logging\.type: unknown log type "xml": use text or json/ },
    {
      name: 'logging.stderr not a boolean',
      yaml: `logging:\n  stderr: sometimes\n`,
      line: 2,
      re: /logging\.stderr: expected true or false/,
    },
    { name: 'addr without port', yaml: `addr: localhost\n`, line: 1, re: /addr: must specify port for bind address: "localhost"/ },
    { name: 'invalid YAML', yaml: `dbs:\n  - path: [unclosed\n`, line: undefined, re: /invalid YAML/ },
    { name: 'duplicate key', yaml: `addr: ":1"\naddr: ":2"\n`, line: undefined, re: /invalid YAML: .*(unique|duplicate)/i },
    { name: 'dbs not a list', yaml: `dbs:\n  path: ${db}\n`, line: 2, re: /dbs: dbs must be a list/ },
    { name: 'database path missing', yaml: `dbs:\n  - monitor-interval: 1s\n`, line: 2, re: /dbs\[0\]: database path required/ },
    { name: 'duplicate database', yaml: `dbs:\n  - path: ${db}\n  - path: ${db}\n`, line: 3, re: /dbs\[1\]: duplicate database path/ },
    {
      name: 'unknown replica type',
      yaml: `dbs:\n  - path: ${db}\n    replicas:\n      - type: ftp\n        path: /x\n`,
      line: 4,
      re: /dbs\[0\]\.replicas\[0\]: unknown replica type in config: "ftp"/,
    },
    {
      name: 'unknown URL scheme',
      yaml: `dbs:\n  - path: ${db}\n    replicas:\n      - url: ftp://host/x\n`,
      line: 4,
      re: /unknown replica type in config: "ftp"/,
    },
    {
      name: 'path that looks like a URL',
      yaml: `dbs:\n  - path: ${db}\n    replicas:\n      - path: s3://bucket/db\n`,
      line: 4,
      re: /replica path cannot be a url, please use the 'url' field instead: s3:\/\/bucket\/db/,
    },
    {
      name: 'malformed age recipient',
      yaml: `dbs:\n  - path: ${db}\n    replicas:\n      - path: /x\n        age:\n          recipients: [abc]\n`,
      line: 6,
      re: /dbs\[0\]\.replicas\[0\]\.age\.recipients\[0\]: malformed recipient: separator "1" at invalid position/,
    },
    {
      name: 'replicas not a list',
      yaml: `dbs:\n  - path: ${db}\n    replicas:\n      url: s3://b/p\n`,
      line: 4,
      re: /replicas must be a list/,
    },
    {
      name: 'bad replica duration',
      yaml: `dbs:\n  - path: ${db}\n    replicas:\n      - path: /x\n        sync-interval: often\n`,
      line: 5,
      re: /dbs\[0\]\.replicas\[0\]\.sync-interval: invalid duration "often"/,
    },
  ];

  for (const c of cases) {
    test(c.name, async () => {
      const file = writeConfig(dir, c.yaml, `${c.name.replace(/\W+/g, '-')}.yml`);
      assertConfigError(await runCli(['databases', '-config', file]), file, c.line, c.re);
    });
  }

  test('replicate with an invalid config starts nothing and writes nothing', async () => {
    const work = join(dir, 'work');
    const { mkdirSync } = await import('node:fs');
    mkdirSync(work);
    const file = writeConfig(
      work,
      `dbs:\n  - path: ${work}/app.db\n    replicas:\n      - path: ${work}/replica\n  - path: ${work}/other.db\n    checkpoint-interval: 1 minute\n`,
    );
    const r = await runCli(['replicate', '-config', file]);
    assertConfigError(r, file, 6, /dbs\[1\]\.checkpoint-interval: invalid duration/);
    assert.deepEqual(readdirSync(work), ['walship.yml'], 'no database, meta directory or replica created');
  });

  test('several problems: all reported in one run, one line each (file, line, key), in line order; nothing started', async () => {
    const work = join(dir, 'many');
    const { mkdirSync } = await import('node:fs');
    mkdirSync(work);
    const file = writeConfig(
      work,
      [
        'adr: ":9090"', // 1
        'logging:', // 2
        '  levle: debug', // 3
        '  type: xml', // 4
        'dbs:', // 5
        `  - path: ${work}/app.db`, // 6
        '    monitor-interval: 10 seconds', // 7
        '    replicas:', // 8
        `      - path: ${work}/replica`, // 9
        '        retention: often', // 10
        '        sync-intreval: 1s', // 11
        '      - type: ftp', // 12
        '        path: /x', // 13
        '  - monitor-interval: 1s', // 14
        `  - path: ${work}/other.db`, // 15
        '    replicas:', // 16
        '      - type: s3', // 17
        '        path: app.db', // 18
        '',
      ].join('\n'),
    );
    const expected = [
      `walship: ${file}:1: adr: unknown top-level key "adr": did you mean "addr"?`,
      `walship: ${file}:3: logging.levle: unknown logging key "levle": did you mean "level"?`,
      `walship: ${file}:4: logging.type: unknown log type "xml": use text or json`,
      `walship: ${file}:7: dbs[0].monitor-interval: invalid duration "10 seconds": use a Go duration such as 10s, 5m or 24h (units ns, us, ms, s, m, h)`,
      `walship: ${file}:10: dbs[0].replicas[0].retention: invalid duration "often": use a Go duration such as 10s, 5m or 24h (units ns, us, ms, s, m, h)`,
      `walship: ${file}:11: dbs[0].replicas[0].sync-intreval: unknown replica key "sync-intreval": did you mean "sync-interval"?`,
      `walship: ${file}:12: dbs[0].replicas[1]: unknown replica type in config: "ftp" (use one of file, s3, gcs, abs, sftp)`,
      `walship: ${file}:14: dbs[1]: database path required: add "path: /path/to/db.sqlite" (or "dir: /path/to/dbs" with a pattern) to this entry`,
      `walship: ${file}:17: dbs[2].replicas[0]: bucket required for s3 replica`,
    ];
    for (const args of [['databases'], ['replicate'], ['replicate', '-dry-run']]) {
      const r = await runCli([...args, '-config', file]);
      assert.equal(r.code, 1, r.stderr);
      assert.equal(r.stdout, '');
      assert.deepEqual(r.stderr.trimEnd().split('\n'), expected, args.join(' '));
    }
    assert.deepEqual(readdirSync(work), ['walship.yml'], 'no database, meta directory or replica created');
  });

  test('a misspelt replica key is reported without its consequence (bucket required)', async () => {
    const file = writeConfig(
      dir,
      `dbs:\n  - path: ${db}\n    replicas:\n      - type: s3\n        buckt: b\n        path: x\n`,
      'consequence.yml',
    );
    assertConfigError(
      await runCli(['databases', '-config', file]),
      file,
      5,
      /dbs\[0\]\.replicas\[0\]\.buckt: unknown replica key "buckt": did you mean "bucket"\?/,
    );
  });
});

describe('environment expansion', () => {
  const { dir, cleanup } = tempDir();
  after(cleanup);

  test('$VAR and ${VAR} are expanded, unset variables become empty', async () => {
    const file = writeConfig(dir, 'dbs:\n  - path: ${WS_DIR}/a.db\n  - path: $WS_DIR/b${WS_UNSET}.db\n');
    const r = await runCli(['databases', '--json', '-config', file], { env: { WS_DIR: dir, WS_UNSET: undefined } });
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(
      JSON.parse(r.stdout).map((d: { path: string }) => d.path),
      [`${dir}/a.db`, `${dir}/b.db`],
    );
  });

  test('-no-expand-env keeps the text literally (both spellings)', async () => {
    const file = writeConfig(dir, 'dbs:\n  - path: /data/${WS_DIR}/a.db\n', 'literal.yml');
    for (const flag of ['-no-expand-env', '--no-expand-env']) {
      const r = await runCli(['databases', '--json', flag, '-config', file], { env: { WS_DIR: dir } });
      assert.equal(r.code, 0, r.stderr);
      assert.deepEqual(JSON.parse(r.stdout), [{ path: '/data/${WS_DIR}/a.db', replicas: [] }]);
    }
  });

  test('expansion happens before parsing: a variable can hold YAML', async () => {
    const file = writeConfig(dir, 'dbs: $WS_DBS\n', 'yaml-in-var.yml');
    const r = await runCli(['databases', '--json', '-config', file], { env: { WS_DBS: `[{path: ${dir}/v.db}]` } });
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(JSON.parse(r.stdout), [{ path: `${dir}/v.db`, replicas: [] }]);
  });
});

describe('config values and defaults (replicate --dry-run)', () => {
  const { dir, cleanup } = tempDir();
  after(cleanup);
  let skip: string | false = false;
  before(async () => {
    skip = await requires([FILE_BACKEND]);
  });

  test('defaults are Litestream v0.3 defaults', async (t) => {
    if (skip) return t.skip(skip);
    const file = writeConfig(dir, `dbs:\n  - path: ${dir}/a.db\n    replicas:\n      - path: ${dir}/replica\n`, 'defaults.yml');
    const r = await runCli(['replicate', '-config', file, '--dry-run']);
    assert.equal(r.code, 0, r.stderr);
    const out = JSON.parse(r.stdout);
    assert.equal(out.config, file);
    assert.equal(out.shutdownSyncTimeout, '30s');
    assert.deepEqual(out.logging, { level: 'INFO', format: 'text', stderr: false });
    const d = out.dbs[0];
    assert.equal(d.path, `${dir}/a.db`);
    assert.equal(d.monitorInterval, '1s');
    assert.equal(d.checkpointInterval, '1m0s');
    assert.equal(d.minCheckpointPageCount, 1000);
    assert.equal(d.maxCheckpointPageCount, 10000);
    const rep = d.replicas[0];
    assert.equal(rep.name, 'file');
    assert.equal(rep.type, 'file');
    assert.equal(rep.syncInterval, '1s');
    assert.equal(rep.retention, '24h0m0s');
    assert.equal(rep.retentionCheckInterval, '1h0m0s');
    assert.equal(rep.snapshotInterval, '0s');
    assert.equal(rep.validationInterval, '0s');
    assert.equal(rep.config.path, `${dir}/replica`);
  });

  test('every key is read', async (t) => {
    if (skip) return t.skip(skip);
    const file = writeConfig(
      dir,
      [
        'addr: "127.0.0.1:9091"',
        'exec: "sleep 1"',
        'shutdown-sync-timeout: 5s',
        'logging:',
        '  level: warning',
        '  type: json',
        '  stderr: yes',
        'dbs:',
        `  - path: ${dir}/b.db`,
        `    meta-path: ${dir}/meta`,
        '    monitor-interval: 250ms',
        '    checkpoint-interval: 2m',
        '    min-checkpoint-page-count: 10',
        '    max-checkpoint-page-count: 20',
        '    truncate-page-count: 30',
        '    busy-timeout: 3s',
        '    replicas:',
        '      - name: local',
        '        type: file',
        `        path: ${dir}/r1`,
        '        sync-interval: 10s',
        '        retention: 72h',
        '        retention-check-interval: 30m',
        '        snapshot-interval: 6h',
        '        validation-interval: 12h',
        `      - url: file://${dir}/r2`,
        '',
      ].join('\n'),
      'all.yml',
    );
    const r = await runCli(['replicate', '-config', file, '--dry-run']);
    assert.equal(r.code, 0, r.stderr);
    const out = JSON.parse(r.stdout);
    assert.equal(out.addr, '127.0.0.1:9091');
    assert.equal(out.exec, 'sleep 1');
    assert.equal(out.shutdownSyncTimeout, '5s');
    assert.deepEqual(out.logging, { level: 'WARN', format: 'json', stderr: true });
    const d = out.dbs[0];
    assert.equal(d.metaPath, `${dir}/meta`);
    assert.equal(d.monitorInterval, '250ms');
    assert.equal(d.checkpointInterval, '2m0s');
    assert.equal(d.minCheckpointPageCount, 10);
    assert.equal(d.maxCheckpointPageCount, 20);
    assert.equal(d.truncatePageCount, 30);
    assert.equal(d.busyTimeout, '3s');
    assert.deepEqual(
      d.replicas.map((x: Record<string, unknown>) => [
        x.name,
        x.type,
        x.syncInterval,
        x.retention,
        x.retentionCheckInterval,
        x.snapshotInterval,
        x.validationInterval,
      ]),
      [
        ['local', 'file', '10s', '72h0m0s', '30m0s', '6h0m0s', '12h0m0s'],
        ['file', 'file', '1s', '24h0m0s', '1h0m0s', '0s', '0s'],
      ],
    );
    assert.equal(d.replicas[1].config.path, `${dir}/r2`);
  });

  test('-exec, -addr and -shutdown-sync-timeout flags override the file', async (t) => {
    if (skip) return t.skip(skip);
    const file = writeConfig(dir, `addr: ":1"\nexec: a\ndbs: []\n`, 'override.yml');
    const r = await runCli(['replicate', '-config', file, '-exec', 'b c', '--addr=:2', '--shutdown-sync-timeout', '1m', '-dry-run']);
    assert.equal(r.code, 0, r.stderr);
    const out = JSON.parse(r.stdout);
    assert.equal(out.exec, 'b c');
    assert.equal(out.addr, ':2');
    assert.equal(out.shutdownSyncTimeout, '1m0s');
  });

  test('bare integer durations are nanoseconds, with a warning', async (t) => {
    if (skip) return t.skip(skip);
    const file = writeConfig(dir, `dbs:\n  - path: ${dir}/c.db\n    checkpoint-interval: 5000000000\n`, 'ns.yml');
    const r = await runCli(['replicate', '-config', file, '--dry-run']);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(JSON.parse(r.stdout).dbs[0].checkpointInterval, '5s');
    assert.match(r.stdout + r.stderr, /bare number 5000000000 is read as nanoseconds/);
  });

  test('two unnamed replicas of one type', async (t) => {
    if (skip) return t.skip(skip);
    const file = writeConfig(dir, `dbs:\n  - path: /x\n    replicas:\n      - path: ${dir}/r1\n      - path: ${dir}/r2\n`, 'dup.yml');
    assertConfigError(
      await runCli(['databases', '-config', file]),
      file,
      5,
      /dbs\[0\]\.replicas\[1\]: duplicate replica name "file" for db \/x: give each replica a unique name:/,
    );
  });

  test('url and path together', async (t) => {
    if (skip) return t.skip(skip);
    const file = writeConfig(
      dir,
      `dbs:\n  - path: /x\n    replicas:\n      - url: file://${dir}/r1\n        path: ${dir}/r2\n`,
      'urlpath.yml',
    );
    assertConfigError(await runCli(['databases', '-config', file]), file, 4, /cannot specify url & path for file replica/);
  });

  test('unknown replica key with suggestion', async (t) => {
    if (skip) return t.skip(skip);
    const file = writeConfig(dir, `dbs:\n  - path: /x\n    replicas:\n      - path: ${dir}/r1\n        sync-intreval: 1s\n`, 'typo.yml');
    assertConfigError(
      await runCli(['databases', '-config', file]),
      file,
      5,
      /dbs\[0\]\.replicas\[0\]\.sync-intreval: unknown replica key "sync-intreval": did you mean "sync-interval"\?/,
    );
  });

  test('file replica without a path', async (t) => {
    if (skip) return t.skip(skip);
    const file = writeConfig(dir, `dbs:\n  - path: /x\n    replicas:\n      - name: nowhere\n`, 'nopath.yml');
    assertConfigError(await runCli(['databases', '-config', file]), file, 4, /file replica path required/);
  });

  test('databases lists replica names', async (t) => {
    if (skip) return t.skip(skip);
    const file = writeConfig(
      dir,
      `dbs:\n  - path: /x\n    replicas:\n      - path: ${dir}/r1\n      - name: second\n        path: ${dir}/r2\n`,
      'names.yml',
    );
    const r = await runCli(['databases', '-config', file]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, 'path  replicas\n/x    file,second\n');
  });
});
