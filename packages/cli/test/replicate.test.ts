import assert from 'node:assert/strict';
import { existsSync, mkdirSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { before, describe, test } from 'node:test';
import {
  FILE_BACKEND,
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
      const cfg = writeConfig(dir, `dbs:\n  - path: ${db}\n    monitor-interval: 100ms\n    replicas:\n      - path: ${replica}\n        sync-interval: 200ms\n`);
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
    const cfg = writeConfig(dir, `exec: ${process.execPath} -e "process.exit(5)"\ndbs:\n  - path: ${dir}/a.db\n    replicas:\n      - path: ${dir}/r\n`);
    const r = await runCli(['replicate', '-config', cfg]);
    assert.equal(r.code, 5, r.stderr);
  });

  test('SIGTERM is forwarded to the child; its exit code is used even when non-zero (unlike Litestream)', async (t) => {
    if (skip) return t.skip(skip);
    const { dir, cleanup } = tempDir();
    t.after(cleanup);
    const script = join(dir, 'trap.mjs');
    writeFileSync(script, `process.on('SIGTERM', () => { console.log('child got SIGTERM'); process.exit(7); }); console.log('child ready'); setInterval(() => {}, 1000);\n`);
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
    assert.equal(r.stderr, `walship: database directory does not exist: ${join(dir, 'nope')} (create it or fix the path of ${join(dir, 'nope', 'app.db')})\n`);
    assert.deepEqual(readdirSync(dir), []);
  });

  test('unreachable replica at start: user error, nothing written', async (t) => {
    const s = skip || (await requires([S3_BACKEND]));
    if (s) return t.skip(s);
    const { dir, cleanup } = tempDir();
    t.after(cleanup);
    const db = join(dir, 'app.db');
    openWriter(db).close();
    const before = readdirSync(dir).sort();
    const r = await runCli(['replicate', db, 's3://bucket.localhost:1/db'], {
      env: { AWS_ACCESS_KEY_ID: 'x', AWS_SECRET_ACCESS_KEY: 'y', AWS_MAX_ATTEMPTS: '1' },
      timeoutMs: 120_000,
    });
    assert.equal(r.code, 1, r.stdout + r.stderr);
    assert.equal(r.stdout, '');
    assert.match(r.stderr, new RegExp(`^walship: cannot reach replica "s3" \\(s3\\) of db ${db}: .+\\n$`));
    assert.deepEqual(readdirSync(dir).sort(), before, 'no meta directory created');
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
    // Wait until the first uploads are done.
    let metrics = '';
    for (let i = 0; i < 100; i++) {
      metrics = (await httpGet(url!)).body;
      if (/walship_replica_operation_total\{[^}]*operation="PUT"[^}]*\} [1-9]/.test(metrics)) break;
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
      new RegExp(`^walship_replica_operation_bytes_total\\{db="${esc}",replica="backup",replica_type="file",operation="PUT"\\} [1-9]\\d*$`, 'm'),
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
    await sleep(300);
    const t0 = Date.now();
    cli.kill('SIGTERM');
    const r = await cli.exited;
    assert.ok(Date.now() - t0 < 5000, 'second signal exits at once');
    assert.equal(r.code, 143);
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
    const cli = spawnCli(['replicate', '-shutdown-sync-timeout', '2s', db, replica]);
    t.after(() => cli.kill('SIGKILL'));
    await cli.waitFor(/msg="replicating to"/);
    await sleep(1500);
    rmSync(replica, { recursive: true, force: true });
    writeFileSync(replica, 'not a directory');
    for (let i = 0; i < 10; i++) w.insert();
    await sleep(500);
    const t0 = Date.now();
    cli.kill('SIGTERM');
    const r = await cli.exited;
    const took = Date.now() - t0;
    assert.ok(took < 9000, `exited after ${took} ms`);
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
    const lines = r.stderr.trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
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
    const cfg = writeConfig(dir, `logging:\n  level: error\nexec: ${process.execPath} -e "0"\ndbs:\n  - path: ${dir}/a.db\n    replicas:\n      - path: ${dir}/r\n`);
    const r = await runCli(['replicate', '-config', cfg]);
    assert.equal(r.code, 0, r.stderr);
    assert.doesNotMatch(r.stdout, /level=INFO/);
  });
});
