/**
 * walship's output and exit codes against the real Litestream v0.3.13 binary (issue 19): the
 * listing tables, `restore -replica` edge cases and the log fields an operator's queries use.
 * Plus the Azure missing-key error against Azurite.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { after, before, describe, test } from 'node:test';
import {
  ABS_BACKEND,
  FILE_BACKEND,
  LISTINGS,
  PACKAGE_DIR,
  RESTORE,
  fileUrl,
  litestreamBin,
  openWriter,
  readIds,
  requires,
  runCli,
  sleep,
  spawnCli,
  tempDir,
  writeConfig,
  type CliResult,
} from './helpers.js';

/** Runs the Litestream binary to completion. */
function runLitestream(bin: string, args: readonly string[], cwd: string): Promise<CliResult> {
  return new Promise((done, fail) => {
    const child = spawn(bin, args, { cwd, stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, LITESTREAM_CONFIG: '' } });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    child.once('error', fail);
    child.once('close', (code, signal) => done({ code, signal, stdout, stderr }));
  });
}

/** The `key=value` field names of the first text log line whose msg is `msg`. */
function fieldsOf(log: string, msg: string): Map<string, string> {
  const quoted = msg.includes(' ') ? JSON.stringify(msg) : msg;
  const line = log.split('\n').find((l) => l.includes(` msg=${quoted} `) || l.endsWith(` msg=${quoted}`));
  assert.ok(line, `a log line with msg=${quoted} in:\n${log}`);
  const out = new Map<string, string>();
  for (const m of line.matchAll(/([^\s=]+)=("(?:[^"\\]|\\.)*"|\S*)/g)) out.set(m[1]!, m[2]!);
  return out;
}

/** What this file uses of @walship/azure's Azurite test helper (loaded at run time: another package). */
interface AzuriteServer {
  readonly endpoint: string;
  readonly accountName: string;
  readonly accountKey: string;
  createContainer(prefix?: string): Promise<string>;
  stop(): Promise<void>;
}

async function startAzuriteOrSkip(): Promise<AzuriteServer | string> {
  const helper = pathToFileURL(join(PACKAGE_DIR, '..', 'azure', 'test', 'helpers', 'azurite.ts')).href;
  const mod = (await import(helper)) as { startAzuriteOrSkip(): Promise<AzuriteServer | string> };
  return mod.startAzuriteOrSkip();
}

const GO_DURATION = /^(\d+(\.\d+)?(ns|µs|us|ms|s|m|h))+$/;

describe('output and exit codes as Litestream v0.3.13 prints them', () => {
  const { dir, cleanup } = tempDir();
  after(cleanup);
  const bin = litestreamBin();
  const db = join(dir, 'app.db');
  const replica = join(dir, 'replica');
  const url = fileUrl(replica);
  let cfg = '';
  let litestreamLog = '';
  let skip: string | false = false;

  before(async () => {
    skip = await requires([FILE_BACKEND, RESTORE, ...LISTINGS]);
    if (skip) return;
    if (!bin) {
      if (process.env.CI === 'true')
        assert.fail('the Litestream binary is required under CI=true: set LITESTREAM_BIN or provide ../shared/bin/litestream-v0.3.13');
      skip = 'Litestream binary not found (LITESTREAM_BIN or ../shared/bin/litestream-v0.3.13)';
      return;
    }
    // Litestream writes the replica: a snapshot, segments at non-zero offsets and, after a
    // checkpoint (a low min-checkpoint-page-count), a second WAL index.
    cfg = writeConfig(
      dir,
      `dbs:\n  - path: ${db}\n    min-checkpoint-page-count: 20\n    replicas:\n      - path: ${replica}\n`,
      'litestream.yml',
    );
    const w = openWriter(db);
    const child = spawn(bin, ['replicate', '-config', cfg], { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] });
    let log = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (log += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (log += d));
    const closed = new Promise<void>((r) => child.once('close', () => r()));
    try {
      await sleep(1500);
      for (let round = 0; round < 3; round++) {
        w.db.transaction(() => {
          for (let i = 0; i < 30; i++) w.insert('x'.repeat(3000));
        })();
        await sleep(1500);
      }
      w.insert('last');
      await sleep(2500);
    } finally {
      child.kill('SIGTERM');
      await closed;
      w.close();
    }
    litestreamLog = log;
  });

  test('wal and snapshots tables are byte for byte what Litestream prints (decimal index and offset)', async (t) => {
    if (skip) return t.skip(skip);
    for (const args of [
      ['wal', url],
      ['snapshots', url],
      ['wal', '-config', cfg, db],
      ['snapshots', '-config', cfg, db],
    ]) {
      const ls = await runLitestream(bin!, args, dir);
      assert.equal(ls.code, 0, ls.stderr);
      const ws = await runCli(args, { cwd: dir });
      assert.equal(ws.code, 0, ws.stderr);
      assert.equal(ws.stdout, ls.stdout, `walship ${args.join(' ')}`);
    }
    // The fixture is not trivial: decimal offsets past 9 and a second WAL index.
    const rows = (await runCli(['wal', url])).stdout
      .trimEnd()
      .split('\n')
      .slice(1)
      .map((l) => l.split(/ {2,}/));
    assert.ok(
      rows.some((r) => Number(r[2]) >= 1),
      'a segment in WAL index 1',
    );
    assert.ok(
      rows.some((r) => /^\d{5,}$/.test(r[3]!)),
      'a decimal offset',
    );
    // --json keeps the replica file names' 8-digit hex.
    const json = JSON.parse((await runCli(['wal', '--json', url])).stdout) as { index: string; offset: string }[];
    assert.equal(json.length, rows.length);
    json.forEach((j, i) => {
      assert.match(j.index, /^[0-9a-f]{8}$/);
      assert.equal(parseInt(j.index, 16), Number(rows[i]![2]));
      assert.equal(parseInt(j.offset, 16), Number(rows[i]![3]));
    });
  });

  test('restore -if-replica-exists -replica nope: exit 0, "no matching backups found", as Litestream', async (t) => {
    if (skip) return t.skip(skip);
    const noReplicas = writeConfig(dir, `dbs:\n  - path: ${join(dir, 'bare.db')}\n`, 'no-replicas.yml');
    for (const [who, run] of [
      ['litestream', (a: string[]) => runLitestream(bin!, a, dir)],
      ['walship', (a: string[]) => runCli(a, { cwd: dir })],
    ] as const) {
      const out = join(dir, `${who}-nope.db`);
      let r = await run(['restore', '-config', cfg, '-if-replica-exists', '-replica', 'nope', '-o', out, db]);
      assert.equal(r.code, 0, `${who}: ${r.stdout}${r.stderr}`);
      assert.match(r.stdout + r.stderr, /level=INFO msg="no matching backups found"/, who);
      assert.ok(!existsSync(out), `${who} wrote nothing`);
      // Without the flag both fail (walship names the unknown replica).
      r = await run(['restore', '-config', cfg, '-replica', 'nope', '-o', out, db]);
      assert.equal(r.code, 1, `${who}: ${r.stdout}${r.stderr}`);
      assert.ok(!existsSync(out), `${who} wrote nothing`);
      // A database without replicas is no backup either.
      r = await run(['restore', '-config', noReplicas, '-if-replica-exists', '-o', out, join(dir, 'bare.db')]);
      assert.equal(r.code, 0, `${who}: ${r.stdout}${r.stderr}`);
      assert.match(r.stdout + r.stderr, /level=INFO msg="no matching backups found"/, who);
      assert.ok(!existsSync(out), `${who} wrote nothing`);
    }
    assert.match(
      (await runCli(['restore', '-config', cfg, '-if-replica-exists', '-replica', 'nope', '-o', join(dir, 'x.db'), db])).stdout,
      /level=WARN msg="replica \\"nope\\" not found for database/,
    );
  });

  test('restore -replica with a replica URL: the flag is ignored (warning), the URL restored, as Litestream', async (t) => {
    if (skip) return t.skip(skip);
    const lsOut = join(dir, 'ls-url.db');
    const wsOut = join(dir, 'ws-url.db');
    const ls = await runLitestream(bin!, ['restore', '-replica', 'nope', '-o', lsOut, url], dir);
    assert.equal(ls.code, 0, ls.stderr);
    const ws = await runCli(['restore', '-replica', 'nope', '-o', wsOut, url], { cwd: dir });
    assert.equal(ws.code, 0, ws.stderr);
    assert.match(ws.stdout, /level=WARN msg="-replica \\"nope\\" ignored: the replica URL .* is the only replica/);
    assert.deepEqual(readIds(wsOut), readIds(lsOut));
    assert.ok(readIds(wsOut).length > 90);
    // The listings ignore it too: same table as Litestream's, the warning on stderr only.
    const ls2 = await runLitestream(bin!, ['wal', '-replica', 'nope', url], dir);
    const ws2 = await runCli(['wal', '-replica', 'nope', url], { cwd: dir });
    assert.equal(ls2.code, 0, ls2.stderr);
    assert.equal(ws2.code, 0, ws2.stderr);
    assert.equal(ws2.stdout, ls2.stdout);
    assert.match(ws2.stderr, /level=WARN msg="-replica \\"nope\\" ignored/);
  });

  test('replicate logs the fields Litestream logs: version=, position=, elapsed= as a Go duration, segments at INFO', async (t) => {
    if (skip) return t.skip(skip);
    const work = join(dir, 'ws');
    mkdirSync(work);
    const wdb = join(work, 'app.db');
    const w = openWriter(wdb);
    w.insert();
    const cli = spawnCli(['replicate', wdb, join(work, 'replica')]);
    try {
      await cli.waitFor(/msg="snapshot written"[^\n]*\n/);
      await cli.waitFor(/msg="wal segment written"[^\n]*\n/);
    } finally {
      cli.kill('SIGTERM');
      await cli.exited;
      w.close();
    }
    const wsLog = cli.output().stdout;
    const version = fieldsOf(wsLog, 'walship');
    assert.match(version.get('version') ?? '', /^v\d+\.\d+\.\d+/, "version=v<semver>, like Litestream's version=v0.3.13");
    assert.match(fieldsOf(litestreamLog, 'litestream').get('version') ?? '', /^v0\.3\.13$/);
    for (const msg of ['wal segment written', 'snapshot written']) {
      const theirs = fieldsOf(litestreamLog, msg);
      const ours = fieldsOf(wsLog, msg);
      assert.equal(theirs.get('level'), 'INFO');
      assert.equal(ours.get('level'), 'INFO', `${msg} at INFO, as Litestream`);
      for (const key of theirs.keys())
        assert.ok(ours.has(key), `${msg}: walship logs ${key}= as Litestream does (${[...ours.keys()].join(' ')})`);
      assert.ok(!ours.has('pos'), `${msg}: position=, not pos=`);
      assert.match(ours.get('position')!, /^[0-9a-f]{16}\/[0-9a-f]{8}:\d+$/);
      assert.match(theirs.get('elapsed')!, GO_DURATION);
      assert.match(ours.get('elapsed')!, GO_DURATION, `${msg}: elapsed with a unit`);
      assert.match(ours.get('sz')!, /^\d+$/);
    }
  });
});

describe('abs replica without an account key over plain http (Azurite)', () => {
  const { dir, cleanup } = tempDir();
  let server: AzuriteServer | undefined;
  let skip: string | false = false;
  before(async () => {
    skip = await requires([ABS_BACKEND, ...LISTINGS]);
    if (skip) return;
    const started = await startAzuriteOrSkip();
    if (typeof started === 'string') skip = started;
    else server = started;
  });
  after(async () => {
    await server?.stop();
    cleanup();
  });

  test('listing names the missing key and where to set it, not the SDK bearer-token error; with the key it lists', async (t) => {
    if (skip) return t.skip(skip);
    const s = server!;
    const container = await s.createContainer('nokey');
    const db = join(dir, 'app.db');
    const cfg = writeConfig(
      dir,
      `dbs:\n  - path: ${db}\n    replicas:\n      - type: abs\n        account-name: ${s.accountName}\n        bucket: ${container}\n        path: app.db\n        endpoint: ${s.endpoint}\n`,
    );
    const env = { LITESTREAM_AZURE_ACCOUNT_KEY: undefined, AZURE_STORAGE_SAS_TOKEN: undefined };
    for (const command of ['generations', 'snapshots', 'wal']) {
      const r = await runCli([command, '-config', cfg, db], { env });
      assert.equal(r.code, 1, r.stderr);
      assert.equal(r.stdout, '');
      assert.equal(
        r.stderr,
        `walship: ${cfg}:4: dbs[0].replicas[0]: account key missing for abs replica at ${s.endpoint}: plain http needs a shared key (Azure AD tokens require https); set account-key in the config or the LITESTREAM_AZURE_ACCOUNT_KEY environment variable (or a sas-token / AZURE_STORAGE_SAS_TOKEN)\n`,
      );
      assert.doesNotMatch(r.stderr, /Bearer/);
    }
    // The fix the message names: the same command with LITESTREAM_AZURE_ACCOUNT_KEY lists.
    const r = await runCli(['generations', '-config', cfg, db], { env: { ...env, LITESTREAM_AZURE_ACCOUNT_KEY: s.accountKey } });
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, 'name  generation  lag  start  end\n');
  });
});
