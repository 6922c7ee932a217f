import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { ConfigError } from '@walship/core';
import { parseArgs } from '../src/args.js';
import { copyLitestreamCredentials } from '../src/cli.js';
import { parseHexIndex, parseTimestamp } from '../src/commands/restore.js';
import { expandEnv } from '../src/expand-env.js';
import { formatLag, formatTable, formatTime } from '../src/format.js';
import { createLogger, isSecretKey, scrubString } from '../src/logger.js';
import { BackendRegistry } from '../src/registry.js';
import { splitShellWords } from '../src/shellwords.js';
import { didYouMean } from '../src/yaml-tree.js';

describe('expandEnv (Go os.ExpandEnv)', () => {
  const env = { A: 'x', B_2: 'y', EMPTY: '' };
  const cases: [string, string][] = [
    ['$A', 'x'],
    ['${A}', 'x'],
    ['a$A/b', 'ax/b'],
    ['$B_2$A', 'yx'],
    ['${UNSET}z', 'z'],
    ['$UNSET', ''],
    ['$', '$'],
    ['a$', 'a$'],
    ['$ a', '$ a'],
    ['$$', ''],
    ['$1', ''],
    ['${}', ''],
    ['${A', 'A'],
    ['price: 5$/h', 'price: 5$/h'],
    ['${A:-default}', ''],
    ['$A-b', 'x-b'],
  ];
  for (const [input, want] of cases) test(JSON.stringify(input), () => assert.equal(expandEnv(input, env), want));
});

describe('splitShellWords (go-shellwords)', () => {
  const cases: [string, string[]][] = [
    ['a b  c', ['a', 'b', 'c']],
    [`node -e "console.log('hi there')"`, ['node', '-e', `console.log('hi there')`]],
    [`'a b' "c d" e\\ f`, ['a b', 'c d', 'e f']],
    [`"" x`, ['', 'x']],
    [`echo $HOME \`pwd\``, ['echo', '$HOME', '`pwd`']],
    ['  ', []],
  ];
  for (const [input, want] of cases) test(input, () => assert.deepEqual(splitShellWords(input), want));
  test('unclosed quote', () => assert.throws(() => splitShellWords(`"abc`), /unclosed quote/));
  test('shell operators', () => assert.throws(() => splitShellWords('a | b'), /shell operator "\|"/));
});

describe('parseArgs', () => {
  const specs = [
    { name: 'output', aliases: ['o'], type: 'string', help: '' },
    { name: 'json', type: 'boolean', help: '' },
  ] as const;
  test('Go and GNU forms', () => {
    for (const argv of [['-o', 'x'], ['-o=x'], ['--output', 'x'], ['--output=x'], ['-output', 'x'], ['--o', 'x']]) {
      assert.equal(parseArgs('t', specs, argv).flags.output, 'x', argv.join(' '));
    }
  });
  test('booleans never take the next argument', () => {
    const a = parseArgs('t', specs, ['-json', 'pos']);
    assert.equal(a.flags.json, true);
    assert.deepEqual(a.positionals, ['pos']);
    assert.equal(parseArgs('t', specs, ['--json=false']).flags.json, false);
  });
  test('flags after positionals and --', () => {
    const a = parseArgs('t', specs, ['p1', '-o', 'x', '--', '-json']);
    assert.deepEqual(a.positionals, ['p1', '-json']);
    assert.equal(a.flags.output, 'x');
  });
  test('a string value may start with a dash', () => {
    assert.equal(parseArgs('t', specs, ['-o', '-weird']).flags.output, '-weird');
  });
  test('errors', () => {
    assert.throws(() => parseArgs('t', specs, ['-x']), /unknown flag -x for t \(see walship t -h\)/);
    assert.throws(() => parseArgs('t', specs, ['---o']), /bad flag syntax/);
    assert.throws(() => parseArgs('t', specs, ['-o']), /flag -o needs a value/);
  });
  test('help', () => assert.equal(parseArgs('t', specs, ['-h']).help, true));
});

describe('restore value parsing', () => {
  test('hex index like strconv.ParseInt(s, 16, 32)', () => {
    assert.equal(parseHexIndex('0'), 0);
    assert.equal(parseHexIndex('1f'), 31);
    assert.equal(parseHexIndex('7FFFFFFF'), 0x7fffffff);
    for (const bad of ['', '0x1', 'g', '80000000', '-1', '1 '])
      assert.throws(() => parseHexIndex(bad), /^UsageError: invalid hexadecimal format$|invalid hexadecimal format/);
  });
  test('RFC 3339 timestamps', () => {
    assert.equal(parseTimestamp('2000-01-01T00:00:00Z').toISOString(), '2000-01-01T00:00:00.000Z');
    assert.equal(parseTimestamp('2000-01-01T01:00:00.5+01:00').toISOString(), '2000-01-01T00:00:00.500Z');
    assert.equal(parseTimestamp('2024-02-29t12:00:00z').toISOString(), '2024-02-29T12:00:00.000Z');
    for (const bad of ['2000-01-01', '2000-01-01T00:00:00', '2023-02-29T00:00:00Z', '2000-01-01T00:00:60Z', 'now']) {
      assert.throws(() => parseTimestamp(bad), /invalid -timestamp, must specify in ISO 8601 format/);
    }
  });
});

describe('formatting', () => {
  test('tabwriter-style table', () => {
    assert.equal(
      formatTable([
        ['a', 'bb', 'c'],
        ['ccc', 'd', 'eeee'],
      ]),
      'a    bb  c\nccc  d   eeee\n',
    );
  });
  test('RFC 3339 UTC, seconds', () => assert.equal(formatTime(new Date('2024-01-02T03:04:05.678Z')), '2024-01-02T03:04:05Z'));
  test('lag truncation like Litestream', () => {
    assert.equal(formatLag(0), '0s');
    assert.equal(formatLag(90_000), '1m30s');
    assert.equal(formatLag(12_345), '12s');
    assert.equal(formatLag(3_456), '3.4s');
    assert.equal(formatLag(12.3456), '12ms');
    assert.equal(formatLag(0.5), '500µs');
    assert.equal(formatLag(-12_345), '-12s');
    assert.equal(formatLag(26 * 3_600_000 + 61_500), '26h1m1s');
  });
  test('did you mean', () => {
    assert.equal(didYouMean('sync-intreval', ['sync-interval', 'retention']), 'sync-interval');
    assert.equal(didYouMean('snapshot_interval', ['snapshot-interval']), 'snapshot-interval');
    assert.equal(didYouMean('zzz', ['sync-interval']), undefined);
  });
});

describe('logger', () => {
  function capture(format: 'text' | 'json', level: 'DEBUG' | 'INFO' = 'INFO') {
    const lines: string[] = [];
    const logger = createLogger({
      format,
      level,
      stream: { write: (s: string) => lines.push(s) },
      now: () => new Date('2024-01-02T03:04:05.006Z'),
    });
    return { logger, lines };
  }
  test('text lines like slog', () => {
    const { logger, lines } = capture('text');
    logger.info('replicating to', { name: 's3', path: 'a b', n: 3, ok: true, empty: '' });
    logger.debug('hidden');
    assert.deepEqual(lines, ['time=2024-01-02T03:04:05.006Z level=INFO msg="replicating to" name=s3 path="a b" n=3 ok=true empty=""\n']);
  });
  test('json lines', () => {
    const { logger, lines } = capture('json', 'DEBUG');
    logger.warn('x', { error: new Error('boom\nsecond line'), when: new Date(0) });
    assert.deepEqual(JSON.parse(lines[0]!), {
      time: '2024-01-02T03:04:05.006Z',
      level: 'WARN',
      msg: 'x',
      error: 'boom',
      when: '1970-01-01T00:00:00.000Z',
    });
  });
  test('credentials are redacted', () => {
    const { logger, lines } = capture('text');
    logger.info('cfg', {
      'secret-access-key': 's3cr3t',
      'access-key-id': 'AKIA123',
      'account-key': 'k',
      password: 'pw',
      sasToken: 't',
      url: 'sftp://bob:hunter2@host/x',
      nested: { 'key-passphrase': 'pp' },
    });
    for (const secret of ['s3cr3t', 'AKIA123', 'hunter2', '=pw', '=k ', 'sasToken=t', '"pp"'])
      assert.ok(!lines[0]!.includes(secret), `${secret} in ${lines[0]}`);
    assert.match(lines[0]!, /url=sftp:\/\/bob:REDACTED@host\/x/);
  });
  test('secret key names', () => {
    for (const k of ['secret-access-key', 'access-key-id', 'account-key', 'password', 'token', 'sas-token', 'key-passphrase', 'key'])
      assert.ok(isSecretKey(k), k);
    for (const k of ['path', 'bucket', 'db', 'replica', 'generation', 'index', 'name']) assert.ok(!isSecretKey(k), k);
    assert.equal(scrubString('https://x.blob.core.windows.net/c?sig=abc&se=1'), 'https://x.blob.core.windows.net/c?sig=REDACTED&se=1');
  });
});

describe('backend registry', () => {
  test('a missing package gives a one-line error only when used', async () => {
    const reg = new BackendRegistry(
      [
        { type: 'file', schemes: ['file'], packageName: 'ok-pkg', exportNames: ['fileBackend'] },
        { type: 'gcs', schemes: ['gcs', 'gs'], packageName: '@walship/not-installed', exportNames: ['gcsBackend'] },
        { type: 'abs', schemes: ['abs'], packageName: 'empty-pkg', exportNames: ['absBackend'] },
      ],
      async (spec) => {
        if (spec === 'ok-pkg')
          return { fileBackend: { type: 'file', schemes: ['file'], configKeys: [], parseUrl: () => ({}), createClient: () => ({}) } };
        if (spec === 'empty-pkg') return {};
        throw new Error(`Cannot find package '${spec}'`);
      },
    );
    assert.equal((await reg.load('file')).type, 'file');
    assert.equal(reg.typeForScheme('gs'), 'gcs');
    await assert.rejects(reg.load('gcs'), (err: unknown) => {
      assert.ok(err instanceof ConfigError);
      assert.equal(
        err.message,
        `replica type "gcs" is not available in this build: cannot load @walship/not-installed: Cannot find package '@walship/not-installed'`,
      );
      return true;
    });
    await assert.rejects(reg.load('abs'), /replica type "abs" is not available in this build: empty-pkg does not export absBackend/);
    await assert.rejects(reg.load('ftp'), /unknown replica type in config: "ftp"/);
  });
});

describe('LITESTREAM_* credential aliases', () => {
  test('copied to AWS_* only when unset', () => {
    const env: Record<string, string | undefined> = { LITESTREAM_ACCESS_KEY_ID: 'a', LITESTREAM_SECRET_ACCESS_KEY: 'b' };
    copyLitestreamCredentials(env);
    assert.equal(env.AWS_ACCESS_KEY_ID, 'a');
    assert.equal(env.AWS_SECRET_ACCESS_KEY, 'b');
    const env2: Record<string, string | undefined> = { LITESTREAM_ACCESS_KEY_ID: 'a', AWS_ACCESS_KEY_ID: 'keep' };
    copyLitestreamCredentials(env2);
    assert.equal(env2.AWS_ACCESS_KEY_ID, 'keep');
  });
});
