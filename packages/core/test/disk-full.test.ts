// Issue #13 §5: the replica directory and the meta directory on a full file system (a small
// tmpfs), then space freed. Each case asserts a one-line error naming the path, the problem and
// what to do; that the application's writes keep committing meanwhile; and that after space is
// freed the replica catches up and restores identical to the database, with every transaction
// acknowledged by sync() in it. Needs root (to mount the tmpfs): skipped otherwise, except under
// CI=true, where it fails.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fsSync from 'node:fs';
import fs from 'node:fs/promises';
import path from 'node:path';
import { after, before, test, type TestContext } from 'node:test';
import { BackendError, type LogFields, type Logger, Replicator, restore } from '@walship/core';
import { FileReplicaClient } from '@walship/file';
import type Database from 'better-sqlite3';
import { insertRows, openApp, tempDir, until } from './support/db.js';
import { integrityOk, rows } from './support/replica-check.js';

const TMPFS_SIZE = 4 * 1024 * 1024;
const ENOSPC_TEXT = 'no space left on device (ENOSPC): free space on that file system';
/** A commit of the application may take this long at most while walship fails (it takes ms). */
const MAX_COMMIT_MS = 2000;

let base = '';
const mounts: string[] = [];
let unavailable: string | undefined;

function mountTmpfs(dir: string): string | undefined {
  if (typeof process.getuid === 'function' && process.getuid() !== 0) return 'not running as root';
  const r = spawnSync('mount', ['-t', 'tmpfs', '-o', `size=${TMPFS_SIZE},mode=0700`, 'tmpfs', dir], { encoding: 'utf8' });
  if (r.error) return `cannot run mount: ${r.error.message}`;
  if (r.status !== 0) return `mount -t tmpfs failed: ${(r.stderr || r.stdout).trim() || `exit ${r.status}`}`;
  mounts.push(dir);
  return undefined;
}

function unmount(dir: string): void {
  if (spawnSync('umount', [dir]).status !== 0) spawnSync('umount', ['-l', dir]);
}

before(async () => {
  base = await tempDir('walship-disk-full-');
  for (const name of ['replica-fs', 'meta-fs']) {
    const dir = path.join(base, name);
    await fs.mkdir(dir);
    unavailable ??= mountTmpfs(dir);
  }
});

after(async () => {
  for (const dir of mounts.splice(0)) unmount(dir);
  if (base) await fs.rm(base, { recursive: true, force: true });
});

/** True when the tmpfs is there; otherwise skips the test (locally) or fails it (CI=true). */
function haveTmpfs(t: TestContext): boolean {
  if (unavailable === undefined) return true;
  const why = `disk-full tests need a small tmpfs (mount -t tmpfs, as root): ${unavailable}`;
  if (process.env.CI === 'true') assert.fail(`${why}; CI=true requires them to run`);
  t.skip(why);
  return false;
}

/** Fills the file system holding `dir` to the last byte; returns the filler file (delete it to free the space). */
function fill(dir: string): string {
  const filler = path.join(dir, 'filler');
  const fd = fsSync.openSync(filler, 'w');
  const buf = Buffer.alloc(1024 * 1024, 0xa5);
  try {
    for (const n of [buf.length, 4096, 1]) {
      for (;;) {
        try {
          fsSync.writeSync(fd, buf, 0, n);
        } catch (err) {
          if ((err as NodeJS.ErrnoException).code === 'ENOSPC') break;
          throw err;
        }
      }
    }
  } finally {
    fsSync.closeSync(fd);
  }
  const probe = path.join(dir, 'probe');
  assert.throws(() => fsSync.writeFileSync(probe, 'x'), { code: 'ENOSPC' }, `${dir} should be full`);
  fsSync.rmSync(probe, { force: true });
  return filler;
}

interface LogLine {
  level: string;
  message: string;
  fields: LogFields;
}

function captureLogger(lines: LogLine[]): Logger {
  const log =
    (level: string) =>
    (message: string, fields: LogFields = {}) =>
      void lines.push({ level, message, fields });
  return { debug: log('debug'), info: log('info'), warn: log('warn'), error: log('error') };
}

/** The application: commits one batch, timing it; `committed` counts rows (ids are 1..committed). */
class App {
  committed = 0;
  slowestMs = 0;
  constructor(readonly db: Database.Database) {}
  commit(n = 20, size = 500): void {
    const t0 = performance.now();
    insertRows(this.db, n, size);
    this.slowestMs = Math.max(this.slowestMs, performance.now() - t0);
    this.committed += n;
  }
  /** Commits batches every 20 ms until `done()` (checked between batches) or `ms` pass. */
  async commitUntil(done: () => boolean, ms: number): Promise<void> {
    const deadline = Date.now() + ms;
    while (!done() && Date.now() < deadline) {
      this.commit();
      await new Promise((r) => setTimeout(r, 20));
    }
  }
  rows(): unknown[] {
    return this.db.prepare('SELECT * FROM t ORDER BY id').all();
  }
}

/** Restores the replica and checks it equals the database and holds every acknowledged row. */
async function assertRestoresIdentical(client: FileReplicaClient, outDir: string, app: App, acked: number): Promise<void> {
  const out = path.join(outDir, 'restored.db');
  const r = await restore({ outputPath: out, replicas: [{ name: 'file', client }] });
  assert.equal(r.status, 'restored');
  assert.ok(integrityOk(out), 'restored database passes integrity_check');
  const restored = rows(out) as Array<{ id: number }>;
  assert.equal(restored.length, app.committed, 'every committed row is restored');
  assert.deepEqual(
    restored.map((x) => x.id),
    Array.from({ length: app.committed }, (_, i) => i + 1),
    'ids contiguous from 1',
  );
  assert.ok(app.committed >= acked && acked > 0, `acknowledged ${acked} of ${app.committed} rows`);
  assert.deepEqual(restored, app.rows(), 'restored rows equal the database');
}

interface Scenario {
  readonly dir: string;
  readonly app: App;
  readonly rep: Replicator;
  /** Generation at the start; it must never change. */
  readonly generation: string;
  /** Rows acknowledged by a resolved sync(). */
  acked: number;
  /** Errors the replicator reported, by event. */
  readonly errors: { readonly replica: Error[]; readonly checkpoint: Error[]; readonly sync: Error[] };
  /** Fills the tmpfs `fsName` to the last byte. */
  fill(): void;
  /** Frees the space again. */
  free(): void;
}

/**
 * Starts a replicator (built by `make`) beside an application, runs `body` (which fills the
 * tmpfs, asserts the errors, frees it), then checks that the replica catches up in the same
 * generation and restores identical to the database with every acknowledged row.
 */
async function runScenario(
  t: TestContext,
  fsName: 'replica-fs' | 'meta-fs',
  make: (dbPath: string, dir: string) => { client: FileReplicaClient; rep: Replicator },
  body: (s: Scenario) => Promise<void>,
): Promise<void> {
  const dir = await tempDir('walship-disk-full-case-');
  const dbPath = path.join(dir, 'app.db');
  const app = new App(openApp(dbPath));
  const { client, rep } = make(dbPath, dir);
  const errors = { replica: [] as Error[], checkpoint: [] as Error[], sync: [] as Error[] };
  rep.on('replica-error', (e) => errors.replica.push(e.error));
  rep.on('checkpoint-error', (e) => errors.checkpoint.push(e.error));
  rep.on('sync-error', (e) => errors.sync.push(e.error));
  let filler: string | undefined;
  let whileFull = 0;
  try {
    await rep.start();
    app.commit();
    await rep.sync({ timeout: 10_000 });
    const s: Scenario = {
      dir,
      app,
      rep,
      generation: rep.status().generation,
      acked: app.committed,
      errors,
      fill: () => {
        filler = fill(path.join(base, fsName));
        whileFull = -app.committed;
      },
      free: () => {
        if (filler) fsSync.rmSync(filler);
        filler = undefined;
        whileFull += app.committed;
      },
    };
    await body(s);
    assert.equal(filler, undefined, 'the scenario frees the space');
    for (let i = 0; i < 10; i++) app.commit();
    await rep.sync({ timeout: 15_000 });
    s.acked = app.committed;
    assert.equal(rep.status().replicas[0]!.healthy, true);
    assert.equal(rep.status().generation, s.generation, 'the full file system did not start a new generation');
    assert.ok(app.slowestMs < MAX_COMMIT_MS, `slowest application commit ${app.slowestMs.toFixed(0)} ms`);
    await rep.stop();
    await assertRestoresIdentical(client, dir, app, s.acked);
    t.diagnostic(
      `${fsName} full: ${whileFull} rows committed while full, ${app.committed} in all, ${s.acked} acknowledged by sync(), 0 lost; ` +
        `errors: ${errors.replica.length} replica, ${errors.checkpoint.length} checkpoint, ${errors.sync.length} sync; ` +
        `slowest commit ${app.slowestMs.toFixed(0)} ms`,
    );
  } finally {
    if (filler) fsSync.rmSync(filler, { force: true });
    await rep.stop({ timeout: 2000 }).catch(() => {});
    app.db.close();
    await fs.rm(dir, { recursive: true, force: true });
  }
}

/** Rows in the database, read through the application's connection. */
function count(app: App): number {
  return (app.db.prepare('SELECT count(*) AS n FROM t').get() as { n: number }).n;
}

test('replica directory on a full file system: clear error, app unaffected, catch-up after space is freed', {
  timeout: 25_000,
}, async (t) => {
  if (!haveTmpfs(t)) return;
  const replicaDir = path.join(base, 'replica-fs', 'replica');
  const make = (dbPath: string) => {
    const client = new FileReplicaClient({ path: replicaDir });
    // Small checkpoint threshold: WAL restarts happen while the replica lags, so its unsent
    // tail is kept in the meta dir (on the normal disk) and sent from there after the outage.
    const rep = new Replicator(dbPath, { monitorInterval: 50, minCheckpointPageCount: 50, replicas: [{ client, syncInterval: 50 }] });
    return { client, rep };
  };
  await runScenario(t, 'replica-fs', make, async (s) => {
    const { app, rep } = s;
    const errors = s.errors.replica;
    s.fill();
    const before = app.committed;
    const index = rep.pos.index;
    await app.commitUntil(() => errors.length >= 2 && app.committed - before >= 400 && rep.pos.index > index, 10_000);
    assert.ok(errors.length >= 2, `replica errors while the replica's file system is full: ${errors.length}`);
    assert.ok(app.committed - before >= 400, 'the application kept committing');
    assert.ok(rep.pos.index > index, 'the WAL was restarted while the replica lagged (its tail is kept in the meta dir)');

    const err = errors[0]!;
    assert.ok(err instanceof BackendError, `BackendError, got ${err.name}: ${err.message}`);
    assert.equal(err.code, 'WALSHIP_BACKEND');
    assert.equal(err.retryable, true, 'a full disk is retried');
    assert.equal((err.cause as NodeJS.ErrnoException | undefined)?.code, 'ENOSPC');
    const named = /^file replica: cannot write (\S+): /.exec(err.message)?.[1];
    assert.ok(
      named?.startsWith(`${replicaDir}${path.sep}generations${path.sep}${s.generation}${path.sep}`),
      `names the replica file: ${err.message}`,
    );
    assert.ok(/\.(wal|snapshot)\.lz4$/.test(named ?? ''), `names the object, not its temporary file: ${err.message}`);
    assert.ok(err.message.endsWith(`: ${ENOSPC_TEXT}`), `says the problem and what to do: ${err.message}`);
    assert.ok(!err.message.includes('\n'), 'one line');

    const st = rep.status().replicas[0]!;
    assert.equal(st.healthy, false);
    assert.equal(st.lastError, errors[errors.length - 1]!.message);
    await assert.rejects(rep.sync({ timeout: 300 }), (e: Error & { code?: string }) => {
      assert.equal(e.code, 'WALSHIP_TIMEOUT');
      assert.ok(e.message.includes(replicaDir) && e.message.includes(ENOSPC_TEXT), `the timeout names the cause: ${e.message}`);
      return true;
    });
    assert.equal(count(app), app.committed, 'every application commit is in the database');
    assert.deepEqual(
      s.errors.checkpoint.map((e) => e.message),
      [],
      'checkpoints unaffected (the meta dir is elsewhere)',
    );
    assert.deepEqual(
      s.errors.sync.map((e) => e.message),
      [],
      'monitoring unaffected',
    );
    // Free the space: runScenario's sync() retries the replica at once; it catches up from the
    // WAL and the kept tails.
    s.free();
  });
});

test('meta directory on a full file system: clear error, app and replica unaffected, checkpoints resume after space is freed', {
  timeout: 25_000,
}, async (t) => {
  if (!haveTmpfs(t)) return;
  const metaPath = path.join(base, 'meta-fs', 'meta');
  const stateJson = path.join(metaPath, 'state.json');
  const log: LogLine[] = [];
  const make = (dbPath: string, dir: string) => {
    const client = new FileReplicaClient({ path: path.join(dir, 'replica') });
    const rep = new Replicator(dbPath, {
      metaPath,
      monitorInterval: 50,
      minCheckpointPageCount: 20,
      logger: captureLogger(log),
      replicas: [{ client, syncInterval: 50 }],
    });
    return { client, rep };
  };
  await runScenario(t, 'meta-fs', make, async (s) => {
    const { app, rep } = s;
    const errors = s.errors.checkpoint;
    s.fill();
    const before = app.committed;
    // The application writes on; the replica (elsewhere) keeps acknowledging; WAL restarts fail.
    while (errors.length < 2 || app.committed - before < 400) {
      assert.ok(app.committed - before < 4000, `background checkpoints should fail while ${metaPath} is full (errors: ${errors.length})`);
      await app.commitUntil(() => false, 200);
      await rep.sync({ timeout: 10_000 });
      s.acked = app.committed;
    }

    for (const err of errors) {
      const m = err.message;
      assert.ok(m.startsWith('cannot ') && m.includes(`${metaPath}${path.sep}`), `names the file in the meta dir: ${m}`);
      assert.ok(m.endsWith(`: ${ENOSPC_TEXT}`), `says the problem and what to do: ${m}`);
      assert.ok(!m.includes('\n'), 'one line');
      assert.equal((err as NodeJS.ErrnoException).code, 'ENOSPC', 'the Node error code is kept');
      assert.equal((err.cause as NodeJS.ErrnoException | undefined)?.code, 'ENOSPC', 'the original error is the cause');
    }
    const logged = log.find((l) => l.level === 'error' && l.message === 'checkpoint error');
    assert.ok(logged, 'checkpoint errors are logged');
    assert.equal(logged.fields.error, errors[0]!.message, 'the log line carries the whole message');

    // An explicit checkpoint (the replica is caught up, so nothing needs keeping): the state write fails.
    let explicit: unknown;
    for (let i = 0; i < 20 && explicit === undefined; i++) {
      await rep.checkpoint().then(
        (restarted) => assert.equal(restarted, false, 'no WAL restart without recording it'),
        (e: unknown) => void (explicit = e),
      );
    }
    assert.ok(explicit instanceof Error, 'checkpoint() rejects while the meta dir is full');
    assert.equal(explicit.message, `cannot write walship state to ${stateJson}: ${ENOSPC_TEXT}`);
    assert.equal(count(app), app.committed, 'every application commit is in the database');
    assert.deepEqual(
      s.errors.replica.map((e) => e.message),
      [],
      'the replica (elsewhere) is unaffected',
    );
    assert.deepEqual(
      s.errors.sync.map((e) => e.message),
      [],
      'monitoring unaffected',
    );

    // Free the space: the next checkpoint restarts the WAL and records it.
    s.free();
    app.commit();
    await rep.sync({ timeout: 10_000 });
    s.acked = app.committed;
    let restarted = false;
    await until(async () => (restarted = await rep.checkpoint()), 10_000, 'a WAL restart after space was freed');
    assert.ok(restarted);
    const state = JSON.parse(await fs.readFile(stateJson, 'utf8')) as { generation: string; index: number };
    assert.equal(state.generation, s.generation, 'the same generation continues');
    assert.equal(state.index, rep.pos.index, 'state.json records the current WAL index');
  });
});
