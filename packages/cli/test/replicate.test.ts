import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { createServer, type AddressInfo } from 'node:net';
import { dirname, join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { before, describe, test } from 'node:test';
import type { HealthReport } from '../src/metrics.js';
import {
  FILE_BACKEND,
  PACKAGE_DIR,
  REPLICATOR,
  RESTORE,
  S3_BACKEND,
  fileUrl,
  httpGet,
  integrity,
  openWriter,
  readIds,
  requires,
  runCli,
  sleep,
  spawnCli,
  tempDir,
  writeConfig,
} from './helpers.js';

/** Restores `replica` to `<dir>/restored-N.db` with the CLI and returns the ids in it. */
let restoreCounter = 0;
async function restoreIds(dir: string, replica: string): Promise<number[]> {
  const out = join(dir, `restored-${++restoreCounter}.db`);
  const r = await runCli(['restore', '-o', out, fileUrl(replica)]);
  assert.equal(r.code, 0, `restore failed:\n${r.stdout}\n${r.stderr}`);
  assert.equal(integrity(out), 'ok');
  return readIds(out);
}

function range(n: number): number[] {
  return Array.from({ length: n }, (_, i) => i + 1);
}

function escapeRe(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&');
}

function count(text: string, re: RegExp): number {
  return [...text.matchAll(re)].length;
}

/** A port on 127.0.0.1 that refuses connections (free a moment ago; nothing listens on it). */
async function closedPort(): Promise<number> {
  const srv = createServer();
  await new Promise<void>((resolve) => srv.listen(0, '127.0.0.1', resolve));
  const port = (srv.address() as AddressInfo).port;
  await new Promise<void>((resolve) => srv.close(() => resolve()));
  return port;
}

type Health = HealthReport;

function replicaOf(body: Health, name: string): Health['dbs'][number]['replicas'][number] | undefined {
  return body.dbs.flatMap((d) => d.replicas).find((r) => r.name === name);
}

/** Polls `/healthz` until `ok(status, body)`; the deadline only bounds a hang. */
async function waitForHealth(
  base: string,
  ok: (status: number, body: Health) => boolean,
  timeoutMs = 120_000,
): Promise<{ status: number; body: Health }> {
  const deadline = Date.now() + timeoutMs;
  let last = '';
  for (;;) {
    const res = await httpGet(`${base}/healthz`);
    last = `${res.status} ${res.body}`;
    const body = JSON.parse(res.body) as Health;
    if (ok(res.status, body)) return { status: res.status, body };
    if (Date.now() > deadline) assert.fail(`/healthz never reached the expected state; last: ${last}`);
    await sleep(200);
  }
}

/**
 * Restores with `walship restore <args>` until the output holds exactly `expected` ids (a replica
 * may still be catching up); fails with the last result after a deadline that only bounds a hang.
 */
async function restoreUntil(dir: string, args: string[], expected: number[], timeoutMs = 120_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const out = join(dir, `restored-${++restoreCounter}.db`);
    const r = await runCli(['restore', '-o', out, ...args]);
    let ids: number[] | undefined;
    if (r.code === 0) {
      assert.equal(integrity(out), 'ok');
      ids = readIds(out);
      if (ids.length === expected.length && ids.every((id, i) => id === expected[i])) return;
    }
    if (Date.now() > deadline) {
      assert.equal(r.code, 0, `restore ${args.join(' ')} failed:\n${r.stdout}\n${r.stderr}`);
      assert.deepEqual(ids, expected);
    }
    await sleep(500);
  }
}

/** s3rver's CLI script (a dev dependency of @walship/s3, hoisted by npm workspaces). */
function s3rverBin(): { bin: string; unavailable?: undefined } | { bin?: undefined; unavailable: string } {
  for (const from of [import.meta.url, pathToFileURL(join(PACKAGE_DIR, '..', 's3', 'package.json')).href]) {
    try {
      return { bin: join(dirname(createRequire(from).resolve('s3rver/package.json')), 'bin', 's3rver.js') };
    } catch {
      // try the next place
    }
  }
  return { unavailable: 's3rver is not installed (npm ci installs it as a dev dependency of @walship/s3)' };
}

/**
 * Starts s3rver on 127.0.0.1:`port` with `bucket` created, data in `dir`; resolves once it
 * listens. Runs under --openssl-legacy-provider (s3rver's continuation tokens use DES).
 */
async function startS3rverOn(bin: string, port: number, bucket: string, dir: string): Promise<{ stop(): Promise<void> }> {
  mkdirSync(dir, { recursive: true });
  const child = spawn(
    process.execPath,
    ['--openssl-legacy-provider', bin, '-d', dir, '-a', '127.0.0.1', '-p', String(port), '--configure-bucket', bucket],
    {
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  );
  const killOnExit = () => child.kill('SIGKILL');
  process.once('exit', killOnExit);
  let output = '';
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`s3rver did not start within 60 s: ${output}`)), 60_000);
    child.stdout!.setEncoding('utf8').on('data', (d: string) => {
      output += d;
      if (/listening on 127\.0\.0\.1:\d+/.test(output)) {
        clearTimeout(timer);
        resolve();
      }
    });
    child.stderr!.setEncoding('utf8').on('data', (d: string) => (output += d));
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`s3rver exited with code ${code}: ${output}`));
    });
  });
  return {
    stop: async () => {
      process.removeListener('exit', killOnExit);
      if (child.exitCode !== null || child.signalCode !== null) return;
      const exited = new Promise((resolve) => child.once('exit', resolve));
      child.kill('SIGTERM');
      await exited;
    },
  };
}

describe('replicate', () => {
  let skip: string | false = false;
  let skipRestore: string | false = false;
  before(async () => {
    skip = await requires([FILE_BACKEND, REPLICATOR]);
    skipRestore = await requires([FILE_BACKEND, REPLICATOR, RESTORE]);
  });

  test('ad-hoc replicate logs like Litestream, then SIGTERM: final sync and exit 0; restore gets every row', async (t) => {
    if (skipRestore) return t.skip(skipRestore);
    const { dir, cleanup } = tempDir();
    t.after(cleanup);
    const db = join(dir, 'app.db');
    const replica = join(dir, 'replica');
    const w = openWriter(db);
    for (let i = 0; i < 20; i++) w.insert();
    const cli = spawnCli(['replicate', db, replica]);
    t.after(() => cli.kill('SIGKILL'));
    await cli.waitFor(/msg="replicating to"/);
    for (let i = 0; i < 30; i++) w.insert();
    const last = w.maxId();
    cli.kill('SIGTERM');
    const r = await cli.exited;
    w.close();
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /level=INFO msg=walship version=/);
    assert.match(r.stdout, new RegExp(`level=INFO msg="initialized db" path=${db}`));
    assert.match(r.stdout, new RegExp(`level=INFO msg="replicating to" name=file type=file sync-interval=1s path=${replica}`));
    assert.match(r.stdout, /msg="signal received, walship shutting down" signal=SIGTERM/);
    assert.match(r.stdout, /msg="walship shut down"/);
    assert.deepEqual(await restoreIds(dir, replica), range(last));
  });

  for (const signal of ['SIGTERM', 'SIGINT'] as const) {
    test(`${signal} with a writer running loses no committed transaction`, async (t) => {
      if (skipRestore) return t.skip(skipRestore);
      const { dir, cleanup } = tempDir();
      t.after(cleanup);
      const db = join(dir, 'app.db');
      const replica = join(dir, 'replica');
      const cfg = writeConfig(
        dir,
        `dbs:\n  - path: ${db}\n    monitor-interval: 100ms\n    replicas:\n      - path: ${replica}\n        sync-interval: 200ms\n`,
      );
      const w = openWriter(db);
      w.insert();
      const cli = spawnCli(['replicate', '-config', cfg]);
      t.after(() => cli.kill('SIGKILL'));
      await cli.waitFor(/msg="replicating to"/);
      let writing = true;
      const writer = (async () => {
        while (writing) {
          for (let i = 0; i < 5; i++) w.insert();
          await sleep(5);
        }
      })();
      await sleep(2500);
      // Everything committed up to here must survive.
      const committed = w.maxId();
      cli.kill(signal);
      await sleep(200);
      writing = false;
      await writer;
      const r = await cli.exited;
      w.close();
      assert.equal(r.code, 0, r.stderr);
      const ids = await restoreIds(dir, replica);
      assert.ok(ids.length >= committed, `restored ${ids.length} rows, committed ${committed} before ${signal}`);
      assert.deepEqual(ids.slice(0, committed), range(committed));
    });
  }

  test('-exec: the child runs with inherited stdio; walship syncs after it exits and exits with its code', async (t) => {
    if (skipRestore) return t.skip(skipRestore);
    const { dir, cleanup } = tempDir();
    t.after(cleanup);
    const db = join(dir, 'app.db');
    const replica = join(dir, 'replica');
    const script = join(dir, 'child.mjs');
    // The child is the application: it writes 200 rows and exits 3 right after the last commit.
    writeFileSync(
      script,
      `import Database from ${JSON.stringify(import.meta.resolve('better-sqlite3'))};\n` +
        `const db = new Database(process.argv[2]); db.pragma('journal_mode = WAL');\n` +
        `db.exec('CREATE TABLE IF NOT EXISTS t (id INTEGER PRIMARY KEY, v TEXT NOT NULL)');\n` +
        `const ins = db.prepare('INSERT INTO t (v) VALUES (?)');\n` +
        `for (let i = 0; i < 200; i++) { ins.run('row ' + i); await new Promise((r) => setTimeout(r, 2)); }\n` +
        `db.close(); console.log('child done'); process.exit(3);\n`,
    );
    openWriter(db).close();
    const r = await runCli(['replicate', '-exec', `'${process.execPath}' '${script}' '${db}'`, db, replica]);
    assert.equal(r.code, 3, r.stderr);
    assert.match(r.stdout, /child done/, 'child stdout inherited');
    assert.match(r.stdout, /msg="subprocess exited, walship shutting down" code=3/);
    assert.deepEqual(await restoreIds(dir, replica), range(200));
  });

  test('-exec exit code 0 and --exec=CMD form', async (t) => {
    if (skip) return t.skip(skip);
    const { dir, cleanup } = tempDir();
    t.after(cleanup);
    const r = await runCli(['replicate', `--exec=${process.execPath} -e "process.exit(0)"`, join(dir, 'a.db'), join(dir, 'r')]);
    assert.equal(r.code, 0, r.stderr);
  });

  test('exec from the config file', async (t) => {
    if (skip) return t.skip(skip);
    const { dir, cleanup } = tempDir();
    t.after(cleanup);
    const cfg = writeConfig(
      dir,
      `exec: ${process.execPath} -e "process.exit(5)"\ndbs:\n  - path: ${dir}/a.db\n    replicas:\n      - path: ${dir}/r\n`,
    );
    const r = await runCli(['replicate', '-config', cfg]);
    assert.equal(r.code, 5, r.stderr);
  });

  test('SIGTERM is forwarded to the child; its exit code is used even when non-zero (unlike Litestream)', async (t) => {
    if (skip) return t.skip(skip);
    const { dir, cleanup } = tempDir();
    t.after(cleanup);
    const script = join(dir, 'trap.mjs');
    writeFileSync(
      script,
      `process.on('SIGTERM', () => { console.log('child got SIGTERM'); process.exit(7); }); console.log('child ready'); setInterval(() => {}, 1000);\n`,
    );
    const cli = spawnCli(['replicate', '-exec', `${process.execPath} ${script}`, join(dir, 'a.db'), join(dir, 'r')]);
    t.after(() => cli.kill('SIGKILL'));
    await cli.waitFor(/child ready/);
    cli.kill('SIGTERM');
    const r = await cli.exited;
    assert.match(r.stdout, /child got SIGTERM/);
    assert.match(r.stdout, /msg="waiting for exec process to close"/);
    assert.match(r.stdout, /msg="walship shut down"/, 'final sync and shutdown happened');
    assert.equal(r.code, 7);
  });

  test('a child ended by the forwarded signal counts as a clean exit (0)', async (t) => {
    if (skip) return t.skip(skip);
    const { dir, cleanup } = tempDir();
    t.after(cleanup);
    const script = join(dir, 'plain.mjs');
    writeFileSync(script, `console.log('child ready'); setInterval(() => {}, 1000);\n`);
    const cli = spawnCli(['replicate', '-exec', `${process.execPath} ${script}`, join(dir, 'a.db'), join(dir, 'r')]);
    t.after(() => cli.kill('SIGKILL'));
    await cli.waitFor(/child ready/);
    cli.kill('SIGINT');
    const r = await cli.exited;
    assert.equal(r.code, 0, r.stderr);
  });

  test('-exec with an unknown program fails before anything starts', async (t) => {
    if (skip) return t.skip(skip);
    const { dir, cleanup } = tempDir();
    t.after(cleanup);
    const r = await runCli(['replicate', '-exec', 'no-such-program-walship --flag', join(dir, 'a.db'), join(dir, 'r')]);
    assert.equal(r.code, 1);
    assert.equal(r.stdout, '');
    assert.equal(r.stderr, 'walship: exec: command not found: no-such-program-walship (not in PATH)\n');
    assert.deepEqual(readdirSync(dir), []);
  });

  test('-exec with shell operators is refused (no shell is used)', async (t) => {
    if (skip) return t.skip(skip);
    const { dir, cleanup } = tempDir();
    t.after(cleanup);
    const r = await runCli(['replicate', '-exec', 'echo a && echo b', join(dir, 'a.db'), join(dir, 'r')]);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /^walship: exec command contains the shell operator "&", but no shell is used/);
  });

  test('missing database directory: user error, nothing written', async (t) => {
    if (skip) return t.skip(skip);
    const { dir, cleanup } = tempDir();
    t.after(cleanup);
    const r = await runCli(['replicate', join(dir, 'nope', 'app.db'), join(dir, 'replica')]);
    assert.equal(r.code, 1);
    assert.equal(r.stdout, '');
    assert.equal(
      r.stderr,
      `walship: database directory does not exist: ${join(dir, 'nope')} (create it or fix the path of ${join(dir, 'nope', 'app.db')})\n`,
    );
    assert.deepEqual(readdirSync(dir), []);
  });

  test('unreachable replica at start-up: replicate keeps running and retries it; config errors still fail fast', async (t) => {
    const s = skip || (await requires([S3_BACKEND]));
    if (s) return t.skip(s);
    const { dir, cleanup } = tempDir();
    t.after(cleanup);
    const db = join(dir, 'app.db');
    openWriter(db).close();

    // A replica that is down is not a start-up error (as Litestream): walship runs and retries it.
    const port = await closedPort();
    const cli = spawnCli(['replicate', '-shutdown-sync-timeout', '1s', db, `s3://bucket.localhost:${port}/db`], {
      env: { AWS_ACCESS_KEY_ID: 'x', AWS_SECRET_ACCESS_KEY: 'y', AWS_MAX_ATTEMPTS: '1' },
      timeoutMs: 180_000,
    });
    t.after(() => cli.kill('SIGKILL'));
    await cli.waitFor(/msg="replicating to" name=s3 type=s3/, 90_000);
    await cli.waitFor(
      new RegExp(`level=WARN msg="replica unavailable, retrying with backoff" db=${escapeRe(db)} name=s3 type=s3 error=`),
      90_000,
    );
    // Retried: a second failed attempt is logged by the replicator, the state change only once.
    await cli.waitFor(/msg="replica sync error"[^\n]*\n[\s\S]*msg="replica sync error"/, 90_000);
    assert.equal(cli.child.exitCode, null, 'still running');
    assert.equal(count(cli.output().stdout, /msg="replica unavailable, retrying with backoff"/g), 1, 'state change logged once');
    cli.kill('SIGTERM');
    const r = await cli.exited;
    assert.equal(r.code, 0, r.stdout + r.stderr);
    assert.match(r.stdout, /msg="final sync incomplete"/);
    assert.match(r.stdout, /msg="walship shut down"/);

    // Configuration errors are still caught before anything starts.
    const work = join(dir, 'work');
    mkdirSync(work);
    const cfg = writeConfig(work, `dbs:\n  - path: ${work}/app.db\n    replicas:\n      - type: s3\n        path: db\n`);
    const bad = await runCli(['replicate', '-config', cfg]);
    assert.equal(bad.code, 1, bad.stdout + bad.stderr);
    assert.equal(bad.stdout, '');
    assert.match(bad.stderr, /^walship: .*bucket required for s3 replica\n$/);
    assert.deepEqual(readdirSync(work), ['walship.yml'], 'nothing created');
  });

  test('a replica down at start-up: the child starts, the others replicate, it is reported unhealthy, then catches up', async (t) => {
    const s = skipRestore || (await requires([S3_BACKEND]));
    if (s) return t.skip(s);
    const s3rver = s3rverBin();
    if (!s3rver.bin) {
      if (process.env.CI === 'true') assert.fail(s3rver.unavailable);
      return t.skip(s3rver.unavailable);
    }
    const { dir, cleanup } = tempDir();
    t.after(cleanup);
    const db = join(dir, 'app.db');
    const replica = join(dir, 'replica');
    const port = await closedPort();
    const bucket = 'walship-down-at-start';
    const cfg = writeConfig(
      dir,
      `addr: "127.0.0.1:0"\n` +
        `dbs:\n  - path: ${db}\n    monitor-interval: 100ms\n    replicas:\n` +
        `      - name: local\n        path: ${replica}\n        sync-interval: 100ms\n` +
        `      - name: s3\n        type: s3\n        bucket: ${bucket}\n        path: app.db\n        endpoint: http://127.0.0.1:${port}\n` +
        `        region: us-east-1\n        access-key-id: S3RVER\n        secret-access-key: S3RVER\n        sync-interval: 100ms\n`,
    );
    // The application: writes 100 rows, says so, then runs until it is told to stop.
    const app = join(dir, 'app.mjs');
    writeFileSync(
      app,
      `import Database from ${JSON.stringify(import.meta.resolve('better-sqlite3'))};\n` +
        `const db = new Database(process.argv[2]); db.pragma('journal_mode = WAL'); db.pragma('busy_timeout = 5000');\n` +
        `const ins = db.prepare('INSERT INTO t (v) VALUES (?)');\n` +
        `for (let i = 0; i < 100; i++) ins.run('row ' + i);\n` +
        `console.log('app wrote 100 rows');\n` +
        `process.on('SIGTERM', () => { db.close(); console.log('app stopped'); process.exit(0); });\n` +
        `setInterval(() => {}, 1000);\n`,
    );
    openWriter(db).close(); // creates table t
    const cli = spawnCli(['replicate', '-config', cfg, '-shutdown-sync-timeout', '5s', '-exec', `'${process.execPath}' '${app}' '${db}'`], {
      timeoutMs: 600_000,
    });
    t.after(() => cli.kill('SIGKILL'));
    const [, url] = await cli.waitFor(/msg="serving metrics on" url=(http:\/\/127\.0\.0\.1:\d+\/metrics)/, 90_000);
    const base = url!.replace(/\/metrics$/, '');
    await cli.waitFor(/app wrote 100 rows/, 90_000);

    // While S3 refuses connections: /healthz is 503 naming it, the file replica is healthy.
    const down = await waitForHealth(base, (res, body) => {
      const s3 = replicaOf(body, 's3');
      return res === 503 && s3?.healthy === false && typeof s3.lastError === 'string' && replicaOf(body, 'local')?.healthy === true;
    });
    assert.equal(down.body.status, 'unhealthy');
    assert.deepEqual(
      down.body.unhealthy.map((u) => [u.db, u.replica, typeof u.error]),
      [[db, 's3', 'string']],
    );
    const esc = escapeRe(db);
    const m1 = (await httpGet(url!)).body;
    assert.match(m1, new RegExp(`^walship_replica_healthy\\{db="${esc}",replica="s3"\\} 0$`, 'm'));
    assert.match(m1, new RegExp(`^walship_replica_healthy\\{db="${esc}",replica="local"\\} 1$`, 'm'));
    assert.match(m1, new RegExp(`^walship_replica_errors_total\\{db="${esc}",replica="s3"\\} [1-9]`, 'm'));
    assert.match(cli.output().stdout, /level=WARN msg="replica unavailable, retrying with backoff" db=\S+ name=s3 type=s3 error=/);
    assert.doesNotMatch(cli.output().stdout, /name=local type=file error=/, 'the file replica never failed');

    // The file replica has every row the application wrote.
    await restoreUntil(dir, ['-config', cfg, '-replica', 'local', db], range(100));

    // S3 comes back on the same port: the replica catches up without a restart.
    const server = await startS3rverOn(s3rver.bin, port, bucket, join(dir, 's3rver'));
    t.after(() => server.stop());
    await waitForHealth(
      base,
      (res, body) => res === 200 && replicaOf(body, 's3')?.healthy === true && replicaOf(body, 's3')?.lastSyncAt !== undefined,
    );
    await cli.waitFor(/level=INFO msg="replica available again" db=\S+ name=s3 type=s3 failed-for=\S+ failed-attempts=[1-9]/, 90_000);
    await restoreUntil(dir, ['-config', cfg, '-replica', 's3', db], range(100));
    const m2 = (await httpGet(url!)).body;
    assert.match(m2, new RegExp(`^walship_replica_healthy\\{db="${esc}",replica="s3"\\} 1$`, 'm'));
    assert.equal(count(cli.output().stdout, /msg="replica unavailable, retrying with backoff"/g), 1, 'one outage, one warning');

    cli.kill('SIGTERM');
    const r = await cli.exited;
    assert.equal(r.code, 0, r.stdout + r.stderr);
    assert.match(r.stdout, /app stopped/);
  });

  test('metrics and /healthz on addr; 503 naming the replica once it fails', async (t) => {
    if (skip) return t.skip(skip);
    const { dir, cleanup } = tempDir();
    t.after(cleanup);
    const db = join(dir, 'app.db');
    const replica = join(dir, 'replica');
    const cfg = writeConfig(
      dir,
      `addr: "127.0.0.1:0"\ndbs:\n  - path: ${db}\n    monitor-interval: 100ms\n    replicas:\n      - name: backup\n        path: ${replica}\n        sync-interval: 100ms\n`,
    );
    const w = openWriter(db);
    t.after(() => w.close());
    w.insert();
    const cli = spawnCli(['replicate', '-config', cfg]);
    t.after(() => cli.kill('SIGKILL'));
    const [, url] = await cli.waitFor(/msg="serving metrics on" url=(http:\/\/127\.0\.0\.1:\d+\/metrics)/);
    for (let i = 0; i < 20; i++) w.insert();
    // Wait until the first uploads are done (the first PUT may be the replica's lease, which
    // carries no payload bytes: wait for payload).
    let metrics = '';
    for (let i = 0; i < 100; i++) {
      metrics = (await httpGet(url!)).body;
      if (/walship_replica_operation_bytes_total\{[^}]*operation="PUT"[^}]*\} [1-9]/.test(metrics)) break;
      await sleep(100);
    }
    const res = await httpGet(url!);
    assert.equal(res.status, 200);
    assert.match(res.contentType ?? '', /text\/plain/);
    const esc = db.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&');
    for (const re of [
      new RegExp(`^walship_db_size_bytes\\{db="${esc}"\\} [1-9]\\d*$`, 'm'),
      new RegExp(`^walship_wal_size_bytes\\{db="${esc}"\\} \\d+$`, 'm'),
      new RegExp(`^walship_replica_lag_seconds\\{db="${esc}",replica="backup"\\} [\\d.e+-]+$`, 'm'),
      new RegExp(`^walship_sync_total\\{db="${esc}"\\} [1-9]\\d*$`, 'm'),
      /^# TYPE walship_sync_errors_total counter$/m,
      /^# TYPE walship_sync_seconds histogram$/m,
      /^# TYPE walship_checkpoint_total counter$/m,
      /^# TYPE walship_checkpoint_errors_total counter$/m,
      /^# TYPE walship_checkpoint_seconds histogram$/m,
      /^# TYPE walship_generation_changes_total counter$/m,
      new RegExp(`^walship_replica_operation_total\\{db="${esc}",replica="backup",replica_type="file",operation="PUT"\\} [1-9]\\d*$`, 'm'),
      new RegExp(
        `^walship_replica_operation_bytes_total\\{db="${esc}",replica="backup",replica_type="file",operation="PUT"\\} [1-9]\\d*$`,
        'm',
      ),
    ]) {
      assert.match(res.body, re);
    }
    assert.doesNotMatch(res.body, /^litestream_/m, 'own registry, walship names');
    const base = url!.replace(/\/metrics$/, '');
    const ok = await httpGet(`${base}/healthz`);
    assert.equal(ok.status, 200, ok.body);
    const okBody = JSON.parse(ok.body);
    assert.equal(okBody.status, 'ok');
    assert.equal(okBody.dbs[0].path, db);
    assert.equal(okBody.dbs[0].replicas[0].name, 'backup');

    // Break the replica: its directory becomes a file, so uploads fail.
    rmSync(replica, { recursive: true, force: true });
    writeFileSync(replica, 'not a directory');
    let health = ok;
    for (let i = 0; i < 200 && health.status === 200; i++) {
      w.insert();
      await sleep(100);
      health = await httpGet(`${base}/healthz`);
    }
    assert.equal(health.status, 503, health.body);
    const bad = JSON.parse(health.body);
    assert.equal(bad.status, 'unhealthy');
    assert.equal(bad.unhealthy[0].db, db);
    assert.equal(bad.unhealthy[0].replica, 'backup');
    assert.equal(typeof bad.unhealthy[0].error, 'string');
    const errors = (await httpGet(url!)).body;
    assert.match(errors, new RegExp(`^walship_replica_errors_total\\{db="${esc}",replica="backup"\\} [1-9]`, 'm'));

    // Shutdown is bounded by shutdown-sync-timeout even though the replica cannot catch up,
    // and a second signal exits at once.
    cli.kill('SIGTERM');
    await cli.waitFor(/signal received/);
    // The final sync cannot finish (the replica stays broken; default bound 30 s), so only the
    // second signal can end the process now: 143 and no orderly shutdown prove it exited at once.
    // (Sent later than a duplicate delivery of the first, which is ignored.)
    await sleep(600);
    cli.kill('SIGTERM');
    const r = await cli.exited;
    assert.equal(r.code, 143, r.stdout + r.stderr);
    assert.match(r.stdout, /msg="second signal received, exiting immediately" signal=SIGTERM/);
    assert.doesNotMatch(r.stdout, /msg="walship shut down"/);
  });

  test('final sync is bounded by -shutdown-sync-timeout', async (t) => {
    if (skip) return t.skip(skip);
    const { dir, cleanup } = tempDir();
    t.after(cleanup);
    const db = join(dir, 'app.db');
    const replica = join(dir, 'replica');
    const w = openWriter(db);
    t.after(() => w.close());
    w.insert();
    const cli = spawnCli(['replicate', '-addr', '127.0.0.1:0', '-shutdown-sync-timeout', '2s', db, replica], { timeoutMs: 180_000 });
    t.after(() => cli.kill('SIGKILL'));
    const [, url] = await cli.waitFor(/msg="serving metrics on" url=(http:\/\/127\.0\.0\.1:\d+\/metrics)/, 90_000);
    const base = url!.replace(/\/metrics$/, '');
    // Replicated once, then broken: every row written after that can never reach it.
    await waitForHealth(base, (res, body) => res === 200 && replicaOf(body, 'file')?.lastSyncAt !== undefined);
    rmSync(replica, { recursive: true, force: true });
    writeFileSync(replica, 'not a directory');
    for (let i = 0; i < 10; i++) w.insert();
    await waitForHealth(base, (res, body) => res === 503 && typeof replicaOf(body, 'file')?.lastError === 'string');
    cli.kill('SIGTERM');
    // Without a bound the process would wait for the broken replica forever; it ends on its own,
    // reporting the incomplete sync, and exits 0 (SIGTERM, no child).
    const r = await cli.exited;
    assert.equal(r.signal, null, 'exited on its own, not killed by the hang guard');
    assert.equal(r.code, 0, r.stdout + r.stderr);
    assert.match(r.stdout, /level=WARN msg="final sync incomplete" db=\S+ error="sync timed out waiting for replicas: file/);
    assert.match(r.stdout, /walship shut down/);
  });

  test('metrics address in use: user error before anything starts', async (t) => {
    if (skip) return t.skip(skip);
    const { dir, cleanup } = tempDir();
    t.after(cleanup);
    const { createServer } = await import('node:net');
    const srv = createServer().listen(0, '127.0.0.1');
    await new Promise((r) => srv.once('listening', r));
    t.after(() => srv.close());
    const port = (srv.address() as { port: number }).port;
    mkdirSync(join(dir, 'data'));
    const r = await runCli(['replicate', '-addr', `127.0.0.1:${port}`, join(dir, 'data', 'a.db'), join(dir, 'r')]);
    assert.equal(r.code, 1);
    assert.match(r.stderr, new RegExp(`^walship: cannot listen on 127\\.0\\.0\\.1:${port} for metrics: address already in use\\n$`));
    assert.ok(!existsSync(join(dir, 'r')));
    assert.deepEqual(readdirSync(join(dir, 'data')), []);
  });

  test('logging.type json and logging.stderr', async (t) => {
    if (skip) return t.skip(skip);
    const { dir, cleanup } = tempDir();
    t.after(cleanup);
    const cfg = writeConfig(
      dir,
      `logging:\n  type: json\n  stderr: true\nexec: ${process.execPath} -e "0"\ndbs:\n  - path: ${dir}/a.db\n    replicas:\n      - url: ${fileUrl(join(dir, 'r'))}\n`,
    );
    const r = await runCli(['replicate', '-config', cfg]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, '');
    const lines = r.stderr
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as Record<string, unknown>);
    for (const l of lines) {
      assert.equal(typeof l.time, 'string');
      assert.ok(['DEBUG', 'INFO', 'WARN', 'ERROR'].includes(l.level as string));
      assert.equal(typeof l.msg, 'string');
    }
    assert.ok(lines.some((l) => l.msg === 'initialized db' && l.path === `${dir}/a.db`));
    assert.ok(lines.some((l) => l.msg === 'replicating to' && l.name === 'file' && l.type === 'file'));
  });

  test('logging.level ERROR hides INFO lines', async (t) => {
    if (skip) return t.skip(skip);
    const { dir, cleanup } = tempDir();
    t.after(cleanup);
    const cfg = writeConfig(
      dir,
      `logging:\n  level: error\nexec: ${process.execPath} -e "0"\ndbs:\n  - path: ${dir}/a.db\n    replicas:\n      - path: ${dir}/r\n`,
    );
    const r = await runCli(['replicate', '-config', cfg]);
    assert.equal(r.code, 0, r.stderr);
    assert.doesNotMatch(r.stdout, /level=INFO/);
  });
});
