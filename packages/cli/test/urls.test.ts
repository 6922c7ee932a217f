import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { ABS_BACKEND, FILE_BACKEND, GCS_BACKEND, S3_BACKEND, SFTP_BACKEND, requires, runCli, tempDir, writeConfig } from './helpers.js';

interface DryRunReplica {
  name: string;
  type: string;
  config: Record<string, unknown>;
}

/** Runs `replicate --dry-run DB URL…` and returns the resolved replicas. */
async function adHoc(urls: string[], opts: { cwd?: string; env?: Record<string, string | undefined> } = {}): Promise<DryRunReplica[]> {
  const r = await runCli(['replicate', '--dry-run', '/tmp/walship-url-test.db', ...urls], opts);
  assert.equal(r.code, 0, r.stderr);
  return JSON.parse(r.stdout).dbs[0].replicas as DryRunReplica[];
}

/** Keys of `config` that are set (ignores undefined/null/empty and the keys listed). */
function pick(config: Record<string, unknown>, keys: string[]): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const k of keys) if (config[k] !== undefined && config[k] !== null && config[k] !== '') out[k] = config[k];
  return out;
}

const S3_KEYS = ['bucket', 'path', 'region', 'endpoint', 'force-path-style'];

describe('replica URLs → backend config (ad-hoc mode)', () => {
  const skips: Record<string, string | false> = {};
  before(async () => {
    skips.file = await requires([FILE_BACKEND]);
    skips.s3 = await requires([S3_BACKEND]);
    skips.gcs = await requires([GCS_BACKEND]);
    skips.abs = await requires([ABS_BACKEND]);
    skips.sftp = await requires([SFTP_BACKEND]);
  });

  test('plain paths and file:// URLs are file replicas', async (t) => {
    if (skips.file) return t.skip(skips.file);
    const { dir, cleanup } = tempDir();
    t.after(cleanup);
    const reps = await adHoc(['backup', `${dir}/abs`, `file://${dir}/url`, '~/home-replica'], { cwd: dir });
    assert.deepEqual(
      reps.map((r) => [r.name, r.type]),
      [
        ['file', 'file'],
        ['file-2', 'file'],
        ['file-3', 'file'],
        ['file-4', 'file'],
      ],
    );
    assert.equal(reps[0]!.config.path, join(dir, 'backup'), 'relative path made absolute');
    assert.equal(reps[1]!.config.path, `${dir}/abs`);
    assert.equal(reps[2]!.config.path, `${dir}/url`);
    assert.equal(reps[3]!.config.path, join(process.env.HOME ?? '', 'home-replica'), '~ expanded');
  });

  const s3Cases: [string, Record<string, unknown>][] = [
    // §10: Litestream's own tests.
    ['s3://foo/bar', { bucket: 'foo', path: 'bar' }],
    [
      's3://foo.localhost:9000/bar',
      { bucket: 'foo', path: 'bar', region: 'us-east-1', endpoint: 'http://localhost:9000', 'force-path-style': true },
    ],
    [
      's3://foo.s3.us-west-000.backblazeb2.com/bar',
      { bucket: 'foo', path: 'bar', region: 'us-west-000', endpoint: 'https://s3.us-west-000.backblazeb2.com', 'force-path-style': true },
    ],
    // §7.3 host rules.
    ['s3://foo.localhost/bar', { bucket: 'foo', path: 'bar', region: 'us-east-1', endpoint: 'http://localhost', 'force-path-style': true }],
    ['s3://foo.s3.filebase.com/bar', { bucket: 'foo', path: 'bar', endpoint: 'https://s3.filebase.com', 'force-path-style': true }],
    [
      's3://foo.nyc3.digitaloceanspaces.com/bar',
      { bucket: 'foo', path: 'bar', region: 'nyc3', endpoint: 'https://nyc3.digitaloceanspaces.com', 'force-path-style': true },
    ],
    [
      's3://foo.s3.fr-par.scw.cloud/bar',
      { bucket: 'foo', path: 'bar', region: 'fr-par', endpoint: 'https://s3.fr-par.scw.cloud', 'force-path-style': true },
    ],
    [
      's3://foo.us-east-1.linodeobjects.com/bar',
      { bucket: 'foo', path: 'bar', region: 'us-east-1', endpoint: 'https://us-east-1.linodeobjects.com', 'force-path-style': true },
    ],
    ['s3://my.bucket.com/a/b', { bucket: 'my.bucket.com', path: 'a/b' }],
  ];
  for (const [url, expected] of s3Cases) {
    test(`s3: ${url}`, async (t) => {
      if (skips.s3) return t.skip(skips.s3);
      const [rep] = await adHoc([url]);
      assert.equal(rep!.type, 's3');
      assert.equal(rep!.name, 's3');
      const got = pick(rep!.config, S3_KEYS);
      if (got['force-path-style'] === false) delete got['force-path-style'];
      assert.deepEqual(got, expected);
    });
  }

  test('gcs:// and gs://', async (t) => {
    if (skips.gcs) return t.skip(skips.gcs);
    const reps = await adHoc(['gcs://foo/bar', 'gs://baz/qux/quux']);
    assert.deepEqual(
      reps.map((r) => [r.name, r.type, pick(r.config, ['bucket', 'path'])]),
      [
        ['gcs', 'gcs', { bucket: 'foo', path: 'bar' }],
        ['gcs-2', 'gcs', { bucket: 'baz', path: 'qux/quux' }],
      ],
    );
  });

  test('abs://account@container/path', async (t) => {
    if (skips.abs) return t.skip(skips.abs);
    const [rep] = await adHoc(['abs://myaccount@mycontainer/some/db'], {
      env: { LITESTREAM_AZURE_ACCOUNT_KEY: Buffer.from('k').toString('base64') },
    });
    assert.equal(rep!.type, 'abs');
    assert.deepEqual(pick(rep!.config, ['account-name', 'bucket', 'path']), {
      'account-name': 'myaccount',
      bucket: 'mycontainer',
      path: 'some/db',
    });
  });

  test('sftp://user:password@host:port/path keeps the leading / and never shows the password', async (t) => {
    if (skips.sftp) return t.skip(skips.sftp);
    const r = await runCli(['replicate', '--dry-run', '/tmp/x.db', 'sftp://alice:hunter2@example.com:2222/backups/db']);
    assert.equal(r.code, 0, r.stderr);
    assert.ok(!r.stdout.includes('hunter2') && !r.stderr.includes('hunter2'), 'password not printed');
    const [rep] = JSON.parse(r.stdout).dbs[0].replicas as DryRunReplica[];
    assert.equal(rep!.type, 'sftp');
    assert.equal(rep!.config.user, 'alice');
    assert.equal(rep!.config.path, '/backups/db');
    assert.match(String(rep!.config.host), /^example\.com(:2222)?$/);
    assert.equal(rep!.config.password, 'REDACTED');
  });

  test('unknown scheme', async () => {
    const r = await runCli(['replicate', '/tmp/x.db', 'ftp://host/db']);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /^walship: replica URL "ftp:\/\/host\/db": unknown replica type in config: "ftp"/);
  });

  test('one positional is not enough', async () => {
    const r = await runCli(['replicate', '/tmp/x.db']);
    assert.equal(r.code, 1);
    assert.equal(r.stderr, 'walship: must specify at least one replica URL for /tmp/x.db\n');
  });
});

describe('replica keys in YAML', () => {
  const { dir, cleanup } = tempDir();
  after(cleanup);
  let skip: string | false = false;
  before(async () => {
    skip = await requires([S3_BACKEND]);
  });

  async function dryRun(yaml: string, env: Record<string, string | undefined> = {}) {
    const file = writeConfig(dir, yaml, `c${Math.random().toString(36).slice(2)}.yml`);
    return { file, r: await runCli(['replicate', '--dry-run', '-config', file], { env }) };
  }

  test('explicit keys win over URL keys; a URL can only switch path-style on', async (t) => {
    if (skip) return t.skip(skip);
    const { r } = await dryRun(
      `dbs:\n  - path: /x.db\n    replicas:\n      - url: s3://foo.localhost:9000/bar\n        region: eu-west-1\n        force-path-style: false\n`,
    );
    assert.equal(r.code, 0, r.stderr);
    const rep = JSON.parse(r.stdout).dbs[0].replicas[0];
    assert.deepEqual(pick(rep.config, S3_KEYS), {
      bucket: 'foo',
      path: 'bar',
      region: 'eu-west-1',
      endpoint: 'http://localhost:9000',
      'force-path-style': true,
    });
  });

  test('type: s3 with bucket/path keys; global credentials propagate and are never printed', async (t) => {
    if (skip) return t.skip(skip);
    const { r } = await dryRun(
      `access-key-id: AKIAGLOBAL\nsecret-access-key: topsecretglobal\ndbs:\n  - path: /x.db\n    replicas:\n      - type: s3\n        bucket: b\n        path: p\n      - name: own\n        type: s3\n        bucket: b2\n        access-key-id: AKIAOWN\n        secret-access-key: topsecretown\n`,
    );
    assert.equal(r.code, 0, r.stderr);
    for (const secret of ['topsecretglobal', 'topsecretown', 'AKIAGLOBAL', 'AKIAOWN'])
      assert.ok(!(r.stdout + r.stderr).includes(secret), `${secret} not printed`);
    const reps = JSON.parse(r.stdout).dbs[0].replicas;
    assert.equal(reps[0].config['access-key-id'], 'REDACTED');
    assert.equal(reps[0].config['secret-access-key'], 'REDACTED');
    assert.equal(reps[0].config.bucket, 'b');
    assert.equal(reps[1].name, 'own');
  });

  test('missing bucket', async (t) => {
    if (skip) return t.skip(skip);
    const { file, r } = await dryRun(`dbs:\n  - path: /x.db\n    replicas:\n      - type: s3\n        path: p\n`);
    assert.equal(r.code, 1);
    assert.equal(r.stdout, '');
    assert.match(r.stderr, new RegExp(`^walship: ${file}:4: dbs\\[0\\]\\.replicas\\[0\\]: bucket required for s3 replica\\n$`));
  });

  test('url with bucket or path', async (t) => {
    if (skip) return t.skip(skip);
    let { file, r } = await dryRun(`dbs:\n  - path: /x.db\n    replicas:\n      - url: s3://foo/bar\n        bucket: other\n`);
    assert.equal(r.code, 1);
    assert.match(r.stderr, new RegExp(`^walship: ${file}:4: .*cannot specify url & bucket for s3 replica`));
    ({ file, r } = await dryRun(`dbs:\n  - path: /x.db\n    replicas:\n      - url: s3://foo/bar\n        path: other\n`));
    assert.equal(r.code, 1);
    assert.match(r.stderr, /cannot specify url & path for s3 replica/);
  });

  test('two unnamed s3 replicas', async (t) => {
    if (skip) return t.skip(skip);
    const { r } = await dryRun(`dbs:\n  - path: /x.db\n    replicas:\n      - url: s3://a/db\n      - url: s3://b/db\n`);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /duplicate replica name "s3" for db \/x\.db: give each replica a unique name:/);
  });

  test('a key of another backend is ignored with a warning', async (t) => {
    if (skip) return t.skip(skip);
    const { r } = await dryRun(`dbs:\n  - path: /x.db\n    replicas:\n      - url: s3://a/db\n        account-name: acct\n`);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stderr, /key \\?"account-name\\?" does not apply to s3 replicas/);
    assert.equal(JSON.parse(r.stdout).dbs[0].replicas[0].config['account-name'], undefined);
  });
});
